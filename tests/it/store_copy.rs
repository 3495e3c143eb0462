//! `gazette store copy --to URL`: a SQLite store made by the real binary moves into a
//! fresh PostgreSQL database (and into another SQLite file) row for row, ids kept, and
//! the copy carries on where the original stopped. Both stores are read back through
//! sqlx with each column's declared type, not through gazette's own queries.

use crate::delivery_support::{ISSUE, context, file_config, issue_id};
use crate::support::{
    TempDir, add_active, describe, gazette_command as gazette, import_readers, postgres,
    sqlite_url, with_sqlite_store, with_store,
};
use crate::web::{link_path, token_of};
use gazette::domain::{HeaderText, SubscriberEmail, TokenPurpose};
use gazette::store::SubscriberStatus;
use sqlx::{AssertSqlSafe, Connection, Row};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

/// One value as its column's declared type reads it.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Integer(Option<i64>),
    Real(Option<f64>),
    Text(Option<String>),
    Blob(Option<Vec<u8>>),
}

/// Every table of a store (gazette's own: not the migrations' bookkeeping, not SQLite's
/// internals) with all its rows, sorted by all their columns.
type Dump = BTreeMap<String, Vec<Vec<Cell>>>;

/// `SELECT` every column of `table`, sorted by all of them.
fn select_all(table: &str, columns: &[(String, String)]) -> String {
    let names: Vec<String> = columns.iter().map(|(n, _)| format!("\"{n}\"")).collect();
    let order: Vec<String> = (1..=columns.len()).map(|i| i.to_string()).collect();
    format!(
        "SELECT {} FROM \"{table}\" ORDER BY {}",
        names.join(", "),
        order.join(", ")
    )
}

/// What a SQLite store at `url` holds.
async fn sqlite_dump(url: &str) -> Dump {
    let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite!_%' ESCAPE '!' AND name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let mut dump = Dump::new();
    for table in tables {
        let columns: Vec<(String, String)> =
            sqlx::query_as("SELECT name, upper(type) FROM pragma_table_info($1) ORDER BY cid")
                .bind(&table)
                .fetch_all(&mut conn)
                .await
                .unwrap();
        let rows = sqlx::query(AssertSqlSafe(select_all(&table, &columns)))
            .fetch_all(&mut conn)
            .await
            .unwrap();
        let rows = rows
            .iter()
            .map(|row| {
                (0..columns.len())
                    .map(|i| match columns[i].1.as_str() {
                        "INTEGER" => Cell::Integer(row.try_get(i).unwrap()),
                        "REAL" => Cell::Real(row.try_get(i).unwrap()),
                        "TEXT" => Cell::Text(row.try_get(i).unwrap()),
                        "BLOB" => Cell::Blob(row.try_get(i).unwrap()),
                        other => panic!("{table}.{} is {other}", columns[i].0),
                    })
                    .collect()
            })
            .collect();
        dump.insert(table, rows);
    }
    conn.close().await.unwrap();
    dump
}

/// What a PostgreSQL store at `url` holds.
async fn postgres_dump(url: &str) -> Dump {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
         AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let mut dump = Dump::new();
    for table in tables {
        let columns: Vec<(String, String)> = sqlx::query_as(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 \
             ORDER BY ordinal_position",
        )
        .bind(&table)
        .fetch_all(&mut conn)
        .await
        .unwrap();
        let rows = sqlx::query(AssertSqlSafe(select_all(&table, &columns)))
            .fetch_all(&mut conn)
            .await
            .unwrap();
        let rows = rows
            .iter()
            .map(|row| {
                (0..columns.len())
                    .map(|i| match columns[i].1.as_str() {
                        "bigint" => Cell::Integer(row.try_get(i).unwrap()),
                        "double precision" => Cell::Real(row.try_get(i).unwrap()),
                        "text" => Cell::Text(row.try_get(i).unwrap()),
                        "bytea" => Cell::Blob(row.try_get(i).unwrap()),
                        other => panic!("{table}.{} is {other}", columns[i].0),
                    })
                    .collect()
            })
            .collect();
        dump.insert(table, rows);
    }
    conn.close().await.unwrap();
    dump
}

fn dump(url: &str) -> Dump {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        if url.starts_with("sqlite:") {
            sqlite_dump(url).await
        } else {
            postgres_dump(url).await
        }
    })
}

/// SQLite's high-water mark for `table`'s AUTOINCREMENT ids.
fn sqlite_sequence(url: &str, table: &str) -> Option<i64> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        let seq = sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = $1")
            .bind(table)
            .fetch_optional(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        seq
    })
}

fn run(config: &Path, args: &[&str]) -> Output {
    gazette(config, args).output().expect("run gazette")
}

fn copy(config: &Path, to: &str) -> Output {
    run(config, &["store", "copy", "--to", to])
}

/// The settings file `config` with its store at `url`, written beside it as `name`.
fn config_with_store(config: &Path, url: &str, name: &str) -> PathBuf {
    let mut doc: toml::Table = toml::from_str(&std::fs::read_to_string(config).unwrap()).unwrap();
    doc["store"]
        .as_table_mut()
        .unwrap()
        .insert("url".into(), toml::Value::String(url.to_owned()));
    let path = config.with_file_name(name);
    std::fs::write(&path, toml::to_string(&doc).unwrap()).unwrap();
    path
}

/// The highest subscriber id in a dump.
fn highest_subscriber_id(dump: &Dump) -> i64 {
    dump["subscribers"]
        .iter()
        .filter_map(|row| match row[0] {
            Cell::Integer(id) => id,
            _ => None,
        })
        .max()
        .unwrap()
}

/// A SQLite store in `dir` made with the real binary: subscribers imported with names,
/// one who left (`subscribers remove`), one bounced, a pending web sign-up, and the
/// fixture issue sent on the file transport. Returns the settings file.
fn a_store_with_history(dir: &TempDir) -> PathBuf {
    let config = with_sqlite_store(&file_config(dir, &[]), dir.path());
    let people = dir.path().join("people.csv");
    std::fs::write(
        &people,
        "email,name\n\
         ada@example.org,\"Lovelace, Ada\"\n\
         grace@example.org,Grace Hopper\n\
         zoe@example.org,Zoë Ümlaut\n\
         leaver@example.org,Leaves Early\n\
         bouncer@example.org,Bounces Often\n",
    )
    .unwrap();
    let out = run(
        &config,
        &["subscribers", "import", people.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let out = run(
        &config,
        &[
            "subscribers",
            "remove",
            "leaver@example.org",
            "--by",
            "cli:test",
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));
    with_store(&sqlite_url(dir.path()), async |store| {
        let now = chrono::Utc::now();
        let bouncer = SubscriberEmail::parse("bouncer@example.org").unwrap();
        let id = store
            .subscriber_by_email(&bouncer)
            .await
            .unwrap()
            .unwrap()
            .id;
        let status = store.record_bounce(id, 1, now).await.unwrap();
        assert_eq!(status, SubscriberStatus::Bounced);
        let newcomer = SubscriberEmail::parse("newcomer@example.org").unwrap();
        let name = HeaderText::parse("New Comer").unwrap();
        store
            .web_signup(&newcomer, Some(&name), "192.0.2.7", now)
            .await
            .unwrap();
    });
    let out = run(&config, &["send-now", "--date", ISSUE]);
    assert!(out.status.success(), "{}", describe(&out));
    config
}

/// The store's files in the outbox with their modification times.
fn outbox(dir: &TempDir) -> Vec<(PathBuf, std::time::SystemTime)> {
    let mut files: Vec<_> = std::fs::read_dir(dir.path().join("outbox").join(ISSUE))
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
            (path, modified)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn a_sqlite_store_moves_to_postgres_row_for_row_and_carries_on() {
    let dir = TempDir::new("store-copy-pg");
    let config = a_store_with_history(&dir);
    let source = sqlite_url(dir.path());
    let original = dump(&source);
    // The fixture holds what a copy must carry: people, consent, suppression, history.
    for (table, rows) in [
        ("subscribers", 6),
        ("issues", 1),
        ("deliveries", 3),
        ("web_signups", 1),
    ] {
        assert_eq!(
            original[table].len(),
            rows,
            "{table}: {:?}",
            original[table]
        );
    }
    assert!(!original["issue_sources"].is_empty());

    let pg = postgres::database();
    let out = copy(&config, pg.url());
    assert!(out.status.success(), "{}", describe(&out));

    let copied = dump(pg.url());
    assert_eq!(
        copied.keys().collect::<Vec<_>>(),
        original.keys().collect::<Vec<_>>()
    );
    for (table, rows) in &original {
        assert_eq!(&copied[table], rows, "table {table}");
    }
    // The report: one line per table with its rows, and the total.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let reported: BTreeMap<String, u64> = stdout
        .lines()
        .skip(1)
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(words.len(), 3, "{line:?}");
            (words[0].to_owned(), words[1].parse().unwrap())
        })
        .collect();
    for (table, rows) in &original {
        assert_eq!(reported.get(table), Some(&(rows.len() as u64)), "{stdout}");
    }
    let total: usize = original.values().map(Vec::len).sum();
    assert_eq!(reported.get("total"), Some(&(total as u64)), "{stdout}");

    // A new subscriber on the copy gets an id above every copied one.
    let highest = highest_subscriber_id(&original);
    let new_id = with_store(pg.url(), async |store| {
        add_active(store, "late@example.org").await
    });
    assert!(new_id > highest, "new id {new_id}, copied up to {highest}");

    // A link in mail the original sent names the same subscriber on the copy.
    let ctx = context(&config);
    let (message, _) = &outbox(&dir)[0];
    let text = std::fs::read_to_string(message).unwrap();
    let path = link_path(&text, "unsubscribe");
    let id = ctx
        .tokens
        .verify(TokenPurpose::Unsubscribe, token_of(&path))
        .expect("a genuine token");
    let on_original = with_store(&source, async |store| {
        store.web_subscriber(id).await.unwrap()
    });
    let on_copy = with_store(pg.url(), async |store| {
        store.web_subscriber(id).await.unwrap()
    });
    assert!(on_original.is_some());
    assert_eq!(on_copy, on_original);

    // The issue was sent before the move: sending it again from the copy sends nothing.
    let before = outbox(&dir);
    let moved = config_with_store(&config, pg.url(), "moved.toml");
    let out = run(&moved, &["send-now", "--date", ISSUE]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(outbox(&dir), before);
    let counts = with_store(pg.url(), async |store| {
        store.delivery_counts(issue_id()).await.unwrap()
    });
    assert_eq!((counts.sent, counts.total()), (3, 3), "{counts:?}");
}

#[test]
fn a_store_copies_between_sqlite_files_and_postgres_and_ids_given_out_are_never_reused() {
    let dir = TempDir::new("store-copy-sqlite");
    let config = with_sqlite_store(&file_config(&dir, &[]), dir.path());
    import_readers(&config, 4);
    let source = sqlite_url(dir.path());
    // As a merge of two spellings of one mailbox leaves it: the highest id given out is
    // no longer in the table, but a token may still name it.
    let given_out = highest_subscriber_id(&dump(&source)) + 50;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut conn = sqlx::SqliteConnection::connect(&source).await.unwrap();
        sqlx::query("UPDATE sqlite_sequence SET seq = $1 WHERE name = 'subscribers'")
            .bind(given_out)
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    });
    let original = dump(&source);

    let target_dir = TempDir::new("store-copy-sqlite-target");
    let target = sqlite_url(target_dir.path());
    let out = copy(&config, &target);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(dump(&target), original);
    assert_eq!(sqlite_sequence(&target, "subscribers"), Some(given_out));

    let pg = postgres::database();
    let out = copy(&config, pg.url());
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(dump(pg.url()), original);

    // And back from PostgreSQL into SQLite: the same rows, the same high-water mark.
    let back_dir = TempDir::new("store-copy-back");
    let back = sqlite_url(back_dir.path());
    let on_pg = config_with_store(&config, pg.url(), "on-pg.toml");
    let out = copy(&on_pg, &back);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(dump(&back), original);
    assert_eq!(sqlite_sequence(&back, "subscribers"), Some(given_out));

    for url in [target.as_str(), pg.url(), back.as_str()] {
        let new_id = with_store(url, async |store| {
            add_active(store, "late@example.org").await
        });
        assert_eq!(new_id, given_out + 1, "{url}");
    }
}

#[test]
fn a_copy_into_a_store_that_holds_rows_or_into_itself_is_refused_and_changes_nothing() {
    let dir = TempDir::new("store-copy-refused");
    let config = with_sqlite_store(&file_config(&dir, &[]), dir.path());
    import_readers(&config, 3);
    let source = sqlite_url(dir.path());
    let original = dump(&source);

    // A target already in use: one subscriber of its own.
    let pg = postgres::database();
    with_store(pg.url(), async |store| {
        add_active(store, "someone@example.org").await
    });
    let live = dump(pg.url());
    let out = copy(&config, pg.url());
    assert!(!out.status.success(), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(pg.url()),
        "the error names the target: {stderr}"
    );
    assert!(stderr.contains("not empty"), "{stderr}");
    assert_eq!(dump(pg.url()), live);

    // The store itself, spelled as configured and spelled another way.
    let elsewhere = format!("sqlite://{}/./gazette.db", dir.path().display());
    for itself in [source.as_str(), elsewhere.as_str()] {
        let out = copy(&config, itself);
        assert!(!out.status.success(), "{itself}: {}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("store being copied"), "{itself}: {stderr}");
        assert_eq!(dump(&source), original, "{itself}");
    }
}

#[test]
fn a_copy_taken_while_the_store_is_written_is_the_store_at_one_instant() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let dir = TempDir::new("store-copy-busy");
    let config = with_sqlite_store(&file_config(&dir, &[]), dir.path());
    import_readers(&config, 300);
    let source = sqlite_url(dir.path());

    // A web server signing people up meanwhile: each sign-up writes a subscriber and
    // their request in one transaction, so a coherent copy has both or neither.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, written, url) = (stop.clone(), written.clone(), source.clone());
        std::thread::spawn(move || {
            with_store(&url, async |store| {
                while !stop.load(Ordering::SeqCst) {
                    let n = written.load(Ordering::SeqCst);
                    let email = SubscriberEmail::parse(&format!("w{n}@example.org")).unwrap();
                    store
                        .web_signup(&email, None, "192.0.2.1", chrono::Utc::now())
                        .await
                        .unwrap();
                    written.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while written.load(Ordering::SeqCst) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the writer wrote nothing"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }

    let mut copies = Vec::new();
    for _ in 0..3 {
        let pg = postgres::database();
        let out = copy(&config, pg.url());
        assert!(out.status.success(), "{}", describe(&out));
        let copied = dump(pg.url());
        copies.push((pg, copied));
    }
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();

    for (pg, copied) in &copies {
        let signed_up = copied["subscribers"]
            .iter()
            .filter(|row| matches!(&row[1], Cell::Text(Some(e)) if e.starts_with('w')))
            .count();
        assert_eq!(signed_up, copied["web_signups"].len(), "{}", pg.url());
        assert_eq!(copied["subscribers"].len(), 300 + signed_up, "{}", pg.url());
    }
}
