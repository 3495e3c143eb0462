//! `subscribers import` accounts for every line of the file: against a SQLite file on
//! disk, through the library's typed report and through the real binary.

use crate::delivery_support::file_config;
use crate::support::{TempDir, describe, gazette, peak};
use chrono::Utc;
use gazette::app::import::{
    Delimiter, ImportError, ImportReport, LineOutcome, LineReport, MAX_FIELD, MAX_LINE, import_file,
};
use gazette::domain::SubscriberEmail;
use gazette::store::{Store, SubscriberStatus};
use std::path::Path;

async fn store_in(dir: &TempDir) -> Store {
    Store::open(&crate::support::store_url(dir.path()))
        .await
        .unwrap()
}

async fn import(store: &Store, file: &Path) -> (ImportReport, Vec<LineReport>) {
    let mut lines = Vec::new();
    let report = import_file(store, file, Utc::now(), |l| lines.push(l.clone()))
        .await
        .unwrap();
    (report, lines)
}

/// Lines as `wc -l` plus a last line without a newline, the way an editor numbers them.
fn line_count(bytes: &[u8]) -> u64 {
    let newlines = bytes.iter().filter(|b| **b == b'\n').count() as u64;
    newlines + u64::from(!bytes.is_empty() && !bytes.ends_with(b"\n"))
}

/// Every line is reported once, in order, and the totals add up to the file's lines.
fn assert_accounted(report: &ImportReport, lines: &[LineReport], bytes: &[u8]) {
    let numbers: Vec<u64> = lines.iter().map(|l| l.line).collect();
    let want: Vec<u64> = (1..=line_count(bytes)).collect();
    assert_eq!(numbers, want, "every line reported once, in order");
    assert_eq!(report.lines, line_count(bytes));
    assert_eq!(report.totals.sum(), report.lines, "{report:?}");
}

fn invalid_reason(lines: &[LineReport], line: u64) -> String {
    match &lines[(line - 1) as usize].outcome {
        LineOutcome::Invalid(reason) => reason.clone(),
        other => panic!("line {line}: {other:?}"),
    }
}

#[tokio::test]
async fn a_stray_quote_costs_its_own_line_and_nothing_more() {
    let dir = TempDir::new("import-stray");
    let store = store_in(&dir).await;
    let file = dir.path().join("big.csv");
    let mut text = String::from("name,email\n");
    for i in 2..=20_000 {
        if i == 1_001 {
            text.push_str("\"O Brien,ob@x.org\n");
        } else {
            text.push_str(&format!("Reader {i},reader{i}@example.org\n"));
        }
    }
    std::fs::write(&file, &text).unwrap();
    let (report, lines) = import(&store, &file).await;
    assert_accounted(&report, &lines, text.as_bytes());
    assert_eq!(report.totals.added, 19_998);
    assert_eq!(report.totals.invalid, 1);
    let reason = invalid_reason(&lines, 1_001);
    assert!(reason.contains("not closed on this line"), "{reason}");
    assert_eq!(
        store
            .count_subscribers(SubscriberStatus::Active)
            .await
            .unwrap(),
        19_998
    );
    // The line after the stray quote is read as its own row.
    assert!(
        matches!(&lines[1_001].outcome, LineOutcome::Added(e) if e.as_str() == "reader1002@example.org")
    );
    store.close().await;
}

#[tokio::test]
async fn every_line_of_a_garbage_laden_file_is_accounted_for() {
    let dir = TempDir::new("import-garbage");
    let store = store_in(&dir).await;
    // Already known: one to rename, one suppressed.
    let seed = dir.path().join("seed.csv");
    std::fs::write(
        &seed,
        "email,name\nzed@example.org,Zed\ngone@example.org,Gone\n",
    )
    .unwrap();
    import(&store, &seed).await;
    let gone = store
        .subscriber_by_email(&SubscriberEmail::parse("gone@example.org").unwrap())
        .await
        .unwrap()
        .unwrap();
    store
        .unsubscribe(gone.id, &crate::web::cli_removal(), Utc::now())
        .await
        .unwrap();

    let long_line = format!("{}@example.org,x", "a".repeat(MAX_LINE));
    let long_field = format!("long@example.org,{}", "n".repeat(MAX_FIELD + 1));
    let text = format!(
        "\u{feff}email,name\r\n\
         ok@example.org,Fine\r\n\
         \r\n\
         \x20  \r\n\
         ,,\r\n\
         \"unclosed@example.org,Oops\r\n\
         Zed@Example.org,Zedekiah\r\n\
         gone@example.org,Back Again\r\n\
         OK@example.org,Twin\r\n\
         {long_line}\r\n\
         {long_field}\r\n\
         not-an-address,Bad\r\n\
         last@example.org,No Newline"
    );
    let file = dir.path().join("garbage.csv");
    std::fs::write(&file, &text).unwrap();
    let (report, lines) = import(&store, &file).await;
    assert_accounted(&report, &lines, text.as_bytes());

    let outcomes: Vec<&LineOutcome> = lines.iter().map(|l| &l.outcome).collect();
    assert_eq!(outcomes[0], &LineOutcome::Header);
    assert!(matches!(outcomes[1], LineOutcome::Added(_)));
    assert_eq!(outcomes[2..5], [&LineOutcome::Blank; 3]);
    assert!(invalid_reason(&lines, 6).contains("not closed on this line"));
    match outcomes[6] {
        LineOutcome::Updated {
            email,
            old_name,
            new_name,
        } => {
            assert_eq!(email.as_str(), "Zed@example.org");
            assert_eq!(old_name.as_ref().map(|n| n.as_str()), Some("Zed"));
            assert_eq!(new_name.as_str(), "Zedekiah");
        }
        other => panic!("line 7: {other:?}"),
    }
    assert!(matches!(
        outcomes[7],
        LineOutcome::Suppressed(_, SubscriberStatus::Unsubscribed)
    ));
    assert!(matches!(
        outcomes[8],
        LineOutcome::Duplicate { first_line: 2, .. }
    ));
    assert!(invalid_reason(&lines, 10).contains(&format!("longer than {MAX_LINE} bytes")));
    assert!(invalid_reason(&lines, 11).contains(&format!("longer than {MAX_FIELD} characters")));
    assert!(invalid_reason(&lines, 12).contains("'not-an-address'"));
    assert!(matches!(outcomes[12], LineOutcome::Added(e) if e.as_str() == "last@example.org"));

    let t = &report.totals;
    assert_eq!(
        (
            t.header,
            t.blank,
            t.added,
            t.updated,
            t.suppressed,
            t.duplicate,
            t.invalid
        ),
        (1, 3, 2, 1, 1, 1, 4)
    );
    // The suppressed address stays as it was; the stored spelling is kept.
    let gone = store.subscriber(gone.id).await.unwrap().unwrap();
    assert_eq!(gone.status, SubscriberStatus::Unsubscribed);
    assert_eq!(gone.name.as_ref().map(|n| n.as_str()), Some("Gone"));
    store.close().await;
}

#[tokio::test]
async fn a_file_that_is_not_utf8_is_named_with_the_way_to_convert_it() {
    let dir = TempDir::new("import-encoding");
    let store = store_in(&dir).await;

    let latin1 = dir.path().join("latin1.csv");
    std::fs::write(&latin1, b"email,name\nzoe@example.org,Zo\xe9\n").unwrap();
    let err = import_file(&store, &latin1, Utc::now(), |_| {})
        .await
        .unwrap_err();
    match &err {
        ImportError::NotUtf8 {
            line,
            encoding,
            iconv,
            ..
        } => {
            assert_eq!(*line, 2);
            assert!(encoding.contains("Latin-1"), "{encoding}");
            assert_eq!(*iconv, "latin1");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().contains("iconv -f latin1 -t utf-8"),
        "{err}"
    );

    let utf16 = dir.path().join("utf16.csv");
    let mut bytes = vec![0xFF, 0xFE];
    for unit in "email,name\nzoe@example.org,Zoë\n".encode_utf16() {
        bytes.extend_from_slice(&unit.to_le_bytes());
    }
    std::fs::write(&utf16, &bytes).unwrap();
    let err = import_file(&store, &utf16, Utc::now(), |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, ImportError::Utf16 { .. }), "{err:?}");
    assert!(
        err.to_string().contains("iconv -f utf-16 -t utf-8"),
        "{err}"
    );

    // Nothing was imported from either.
    assert!(store.subscribers(None).await.unwrap().is_empty());
    store.close().await;
}

#[tokio::test]
async fn a_latin1_line_after_several_batches_refuses_the_whole_file() {
    let dir = TempDir::new("import-late-encoding");
    let store = store_in(&dir).await;
    let path = dir.path().join("late.csv");
    let mut bytes = b"email,name\n".to_vec();
    for i in 1..=25_000 {
        bytes.extend_from_slice(format!("user{i}@example.org,User {i}\n").as_bytes());
    }
    bytes.extend_from_slice(b"zoe@example.org,Zo\xe9\nlast@example.org,Last\n");
    std::fs::write(&path, &bytes).unwrap();

    let err = import_file(&store, &path, Utc::now(), |_| {})
        .await
        .unwrap_err();
    match &err {
        ImportError::NotUtf8 { line, iconv, .. } => {
            assert_eq!(*line, 25_002);
            assert_eq!(*iconv, "latin1");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("nothing was imported"), "{err}");
    // The rows before it were not kept either: the import is one transaction.
    assert!(store.subscribers(None).await.unwrap().is_empty());
    store.close().await;
}

#[tokio::test]
async fn semicolon_and_tab_separated_files_are_recognised() {
    let dir = TempDir::new("import-delimiters");
    let store = store_in(&dir).await;
    for (name, text, want) in [
        (
            "semi.csv",
            "Name;Email\n\"Lovelace; Ada\";ada@example.org\n",
            Delimiter::Semicolon,
        ),
        (
            "tab.tsv",
            "email\tname\ngrace@example.org\tGrace\n",
            Delimiter::Tab,
        ),
    ] {
        let file = dir.path().join(name);
        std::fs::write(&file, text).unwrap();
        let (report, lines) = import(&store, &file).await;
        assert_accounted(&report, &lines, text.as_bytes());
        assert_eq!(report.delimiter, want);
        assert_eq!(report.totals.added, 1, "{lines:?}");
    }
    let names: Vec<String> = store
        .subscribers(None)
        .await
        .unwrap()
        .iter()
        .map(|s| s.name.as_ref().unwrap().as_str().to_owned())
        .collect();
    assert_eq!(names, ["Lovelace; Ada", "Grace"]);

    let file = dir.path().join("pipes.csv");
    std::fs::write(&file, "mail|name\nx@example.org|X\n").unwrap();
    let err = import_file(&store, &file, Utc::now(), |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(err, ImportError::NoEmailColumn { line: 1, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("semicolon- or tab-separated"),
        "{err}"
    );
    store.close().await;
}

#[test]
fn the_printed_report_names_each_line_that_needs_a_look_and_totals_every_line() {
    let dir = TempDir::new("import-cli");
    let config = file_config(&dir, &[]);
    let config = config.to_str().unwrap();
    let first = dir.path().join("first.csv");
    std::fs::write(&first, "email,name\nzed@example.org,Zed\n").unwrap();
    let out = gazette(&[
        "--config",
        config,
        "subscribers",
        "import",
        first.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", describe(&out));

    let second = dir.path().join("second.csv");
    std::fs::write(
        &second,
        "email;name\n\nZED@example.org;Other\n\"O Brien;ob@x.org\nnew@example.org;New\n",
    )
    .unwrap();
    let out = gazette(&[
        "--config",
        config,
        "subscribers",
        "import",
        second.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0], "line 3: ZED@example.org: name updated from \"Zed\" to \"Other\"",
        "{text}"
    );
    assert!(
        lines[1].starts_with("line 4: invalid: the quoted field in column 1"),
        "{text}"
    );
    assert!(text.contains("read as semicolon-separated"), "{text}");
    // The totals line, parsed: each count and the lines they add up to.
    let totals = lines.last().unwrap();
    let numbers: Vec<u64> = totals
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    // added, updated, unchanged, suppressed, invalid, duplicate, blank, header, sum, lines
    assert_eq!(numbers, [1, 1, 0, 0, 1, 0, 1, 1, 5, 5], "{totals}");
}

/// Runs `gazette subscribers import FILE` to its end; returns its peak RSS in KiB.
fn import_peak_rss_kib(config: &Path, file: &Path) -> u64 {
    let dir = config.parent().unwrap();
    gazette_peak_rss_kib(
        dir,
        &[
            "--config".as_ref(),
            config.as_os_str(),
            "subscribers".as_ref(),
            "import".as_ref(),
            file.as_os_str(),
        ],
    )
}

/// Runs gazette with `args` to its end, successfully; returns its own peak RSS in KiB.
fn gazette_peak_rss_kib(dir: &Path, args: &[&std::ffi::OsStr]) -> u64 {
    let report = peak::report_file(dir, "gazette");
    let status = peak::command(env!("CARGO_BIN_EXE_gazette"), &report)
        .args(args)
        .current_dir(crate::support::repo_root())
        .env("GAZETTE_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "gazette {args:?}: {status}");
    peak::read_kib(&report)
}

/// The memory figures above are the child's own, whatever this process (which runs other
/// tests meanwhile) holds: a child's peak is not charged with its parent's.
#[test]
fn a_childs_peak_rss_is_its_own_not_this_processs() {
    const HELD: usize = 256 << 20;
    let held = vec![1u8; HELD];
    let dir = TempDir::new("peak-rss");
    let peak = gazette_peak_rss_kib(dir.path(), &["--help".as_ref()]);
    assert_eq!(held.iter().map(|&b| usize::from(b)).sum::<usize>(), HELD);
    assert!(
        peak < 64 * 1024,
        "gazette --help: {peak} KiB, while this process held {} KiB",
        HELD >> 10
    );
}

#[test]
fn a_long_import_needs_no_more_memory_than_a_short_one() {
    let rss = |rows: usize| {
        let dir = TempDir::new("import-memory");
        let config = file_config(&dir, &[]);
        let file = dir.path().join("many.csv");
        let mut text = String::from("email,name\n");
        for i in 0..rows {
            text.push_str(&format!("reader{i}@example.org,Reader number {i}\n"));
        }
        std::fs::write(&file, text).unwrap();
        import_peak_rss_kib(&config, &file)
    };
    let short = rss(20_000);
    let long = rss(300_000);
    eprintln!("peak RSS: 20 000 rows {short} KiB, 300 000 rows {long} KiB");
    // Holding the rows would cost well over 30 MiB more; a stream costs the same.
    assert!(
        long < short + 16 * 1024,
        "20 000 rows: {short} KiB, 300 000 rows: {long} KiB"
    );
}
