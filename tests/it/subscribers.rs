//! `gazette subscribers …` against a SQLite file on disk, through the real binary.

use crate::delivery_support::{context, file_config};
use crate::support::{TempDir, describe, gazette, with_store};
use gazette::domain::SubscriberEmail;
use gazette::store::SubscriberStatus;
use std::path::Path;
use std::time::{Duration, Instant};

fn run(config: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    gazette(&all)
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every subscriber in the store beside `config`: address, name and status, in the order
/// they were added.
fn subscribers(config: &Path) -> Vec<(String, Option<String>, SubscriberStatus)> {
    with_store(&context(config).settings.store.url, async |store| {
        store
            .subscribers(None)
            .await
            .unwrap()
            .into_iter()
            .map(|s| {
                let name = s.name.map(|n| n.to_string());
                (s.email.to_string(), name, s.status)
            })
            .collect()
    })
}

fn read_csv(text: &str) -> Vec<Vec<String>> {
    csv::Reader::from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

#[test]
fn import_then_export_round_trips_and_the_database_is_on_disk() {
    let dir = TempDir::new("subs-roundtrip");
    let config = file_config(&dir, &[]);
    let input = dir.path().join("people.csv");
    std::fs::write(
        &input,
        "name,email,extra\n\
         \"Lovelace, Ada\",ada@Example.ORG,x\n\
         Grace \"Amazing\" Hopper,grace@example.org,\n\
         Zoë Ümlaut,zoe@example.org,\n\
         ,nameless@example.org,\n",
    )
    .unwrap();
    let out = run(&config, &["subscribers", "import", input.to_str().unwrap()]);
    assert!(out.status.success(), "{}", describe(&out));
    if crate::BACKEND == crate::support::Backend::Sqlite {
        assert!(dir.path().join("gazette.db").is_file());
    }
    assert_eq!(subscribers(&config).len(), 4);

    let out = run(&config, &["subscribers", "export"]);
    assert!(out.status.success(), "{}", describe(&out));
    let text = stdout(&out);
    assert!(text.starts_with("email,name,status,"), "{text}");
    let rows = read_csv(&text);
    let got: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str(), r[2].as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("ada@example.org", "Lovelace, Ada", "active"),
            ("grace@example.org", "Grace \"Amazing\" Hopper", "active"),
            ("zoe@example.org", "Zoë Ümlaut", "active"),
            ("nameless@example.org", "", "active"),
        ]
    );
    // The consent record says how they came.
    assert!(rows.iter().all(|r| r[4] == "import:people.csv"), "{text}");

    // The export imports cleanly: nothing new, nothing changed.
    let exported = dir.path().join("exported.csv");
    std::fs::write(&exported, &text).unwrap();
    let before = subscribers(&config);
    let out = run(
        &config,
        &["subscribers", "import", exported.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(subscribers(&config), before);
    let out = run(&config, &["subscribers", "export"]);
    assert_eq!(stdout(&out), text, "the consent records are unchanged too");

    // The whole address compares case-insensitively: one mailbox, one subscriber.
    let out = run(&config, &["subscribers", "add", "ADA@EXAMPLE.org"]);
    assert!(out.status.success(), "{}", describe(&out));
    let out = run(&config, &["subscribers", "add", "ada@EXAMPLE.org"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(subscribers(&config), before);
}

#[test]
fn suppressed_addresses_are_not_brought_back_by_an_import() {
    let dir = TempDir::new("subs-suppress");
    let config = file_config(&dir, &[]);
    for email in [
        "keep@example.org",
        "gone@example.org",
        "bounced@example.org",
    ] {
        let out = run(&config, &["subscribers", "add", email]);
        assert!(out.status.success(), "{}", describe(&out));
    }
    let out = run(&config, &["subscribers", "remove", "gone@example.org"]);
    assert!(out.status.success(), "{}", describe(&out));
    with_store(&context(&config).settings.store.url, async |store| {
        let s = store
            .subscriber_by_email(&SubscriberEmail::parse("bounced@example.org").unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            store
                .record_bounce(s.id, 1, chrono::Utc::now())
                .await
                .unwrap(),
            SubscriberStatus::Bounced
        );
    });

    let input = dir.path().join("again.csv");
    std::fs::write(
        &input,
        "email,name\nkeep@example.org,Keeper\ngone@example.org,Gone Again\nbounced@example.org,\n",
    )
    .unwrap();
    let out = run(&config, &["subscribers", "import", input.to_str().unwrap()]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        text.contains("line 2: keep@example.org: name updated"),
        "{text}"
    );
    assert!(
        text.contains("line 3: gone@example.org: skipped, unsubscribed"),
        "{text}"
    );
    assert!(
        text.contains("line 4: bounced@example.org: skipped, bounced"),
        "{text}"
    );
    assert_eq!(
        subscribers(&config),
        [
            (
                "keep@example.org".to_owned(),
                Some("Keeper".to_owned()),
                SubscriberStatus::Active
            ),
            (
                "gone@example.org".to_owned(),
                None,
                SubscriberStatus::Unsubscribed
            ),
            (
                "bounced@example.org".to_owned(),
                None,
                SubscriberStatus::Bounced
            ),
        ]
    );

    let out = run(&config, &["subscribers", "list", "--status", "active"]);
    let rows = read_csv(&stdout(&out));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][0], "keep@example.org");
    let out = run(
        &config,
        &["subscribers", "list", "--status", "unsubscribed"],
    );
    let rows = read_csv(&stdout(&out));
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0][0].as_str(), rows[0][1].as_str()),
        ("gone@example.org", "")
    );

    // Adding a suppressed address by hand does not revive it either.
    let before = subscribers(&config);
    let out = run(&config, &["subscribers", "add", "gone@example.org"]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert_eq!(subscribers(&config), before);
}

#[test]
fn invalid_rows_are_reported_with_their_line_numbers() {
    let dir = TempDir::new("subs-invalid");
    let config = file_config(&dir, &[]);
    let input = dir.path().join("mixed.csv");
    std::fs::write(
        &input,
        "email,name\n\
         ok@example.org,Fine\n\
         not-an-address,Bad\n\
         evil@example.org,\"Ada\r\nBcc: victim@example.com\"\n\
         also-ok@example.org,\n\
         spaced out@example.org,\n\
         ,Nobody\n\
         ok@EXAMPLE.org,Again\n",
    )
    .unwrap();
    let out = run(&config, &["subscribers", "import", input.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(text.contains("line 3: invalid: 'not-an-address'"), "{text}");
    // A quoted field may not run across lines: line 4 is invalid, and line 5 is read as
    // a row of its own (and is invalid too). Nothing reaches a header.
    assert!(
        text.contains("line 4: invalid: the quoted field in column 2 is not closed"),
        "{text}"
    );
    assert!(
        text.contains("line 5: invalid: 'Bcc: victim@example.com\"'"),
        "{text}"
    );
    assert!(
        text.contains("line 7: invalid: 'spaced out@example.org'"),
        "{text}"
    );
    assert!(
        text.contains("line 8: invalid: '': address is empty"),
        "{text}"
    );
    assert!(
        text.contains("line 9: ok@example.org: duplicate of line 2, ignored"),
        "{text}"
    );
    let added: Vec<_> = subscribers(&config)
        .into_iter()
        .map(|(email, name, _)| (email, name))
        .collect();
    assert_eq!(
        added,
        [
            ("ok@example.org".to_owned(), Some("Fine".to_owned())),
            ("also-ok@example.org".to_owned(), None),
        ]
    );

    // The CLI refuses header injection in a name too, and bad addresses with the reason.
    let out = run(
        &config,
        &[
            "subscribers",
            "add",
            "x@example.org",
            "--name",
            "X\r\nBcc: y@example.com",
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line break"),
        "{}",
        describe(&out)
    );
    let out = run(&config, &["subscribers", "add", "x@nodot"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a valid host name"),
        "{}",
        describe(&out)
    );
    let out = run(&config, &["subscribers", "list"]);
    assert_eq!(read_csv(&stdout(&out)).len(), 2);
}

#[test]
fn a_hundred_thousand_rows_import_in_seconds() {
    let dir = TempDir::new("subs-bulk");
    let config = file_config(&dir, &[]);
    let input = dir.path().join("big.csv");
    let mut text = String::from("email,name\n");
    for i in 0..100_000 {
        text.push_str(&format!("reader{i}@example.org,Reader {i}\n"));
    }
    std::fs::write(&input, text).unwrap();
    let started = Instant::now();
    let out = run(&config, &["subscribers", "import", input.to_str().unwrap()]);
    let took = started.elapsed();
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(subscribers(&config).len(), 100_000);
    // Seconds in a release build; the bound leaves room for a debug build on 2 cores.
    assert!(took < Duration::from_secs(20), "took {took:?}");
    eprintln!("100 000 rows imported in {took:?}");
}
