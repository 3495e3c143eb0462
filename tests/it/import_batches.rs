//! An import longer than one batch: a mailbox met in an earlier batch (added, known or
//! suppressed, in any spelling) is a duplicate of the line that met it first, a rename
//! is applied once, and new subscribers get ids in file order.

use crate::support::TempDir;
use chrono::Utc;
use gazette::app::import::{ImportReport, LineOutcome, LineReport, import_file};
use gazette::domain::{HeaderText, SubscriberEmail};
use gazette::store::{Consent, NewSubscriber, Store, Subscriber, SubscriberStatus, Withdrawal};
use std::path::{Path, PathBuf};

pub(crate) fn email(raw: &str) -> SubscriberEmail {
    SubscriberEmail::parse(raw).unwrap()
}

/// `lines` written to `name` in `dir`, one per line.
pub(crate) fn write(dir: &TempDir, name: &str, lines: &[String]) -> PathBuf {
    let file = dir.path().join(name);
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    file
}

/// Imports `file` into `store`; every line of it is reported once, in order, and
/// counted once.
pub(crate) async fn import(store: &Store, file: &Path) -> (ImportReport, Vec<LineReport>) {
    let mut got: Vec<LineReport> = Vec::new();
    let report = import_file(store, file, Utc::now(), |l| got.push(l.clone()))
        .await
        .unwrap();
    assert_eq!(report.totals.sum(), report.lines);
    let numbers: Vec<u64> = got.iter().map(|l| l.line).collect();
    assert_eq!(numbers, (1..=report.lines).collect::<Vec<_>>());
    (report, got)
}

/// Each (line, address as written, first line) is reported as a duplicate of that
/// first line.
pub(crate) fn assert_duplicates(got: &[LineReport], duplicates: &[(u64, &str, u64)]) {
    for &(line, raw, first_line) in duplicates {
        assert_eq!(
            got[(line - 1) as usize].outcome,
            LineOutcome::Duplicate {
                email: email(raw),
                first_line
            },
            "line {line}"
        );
    }
}

/// The addresses the import reported added, in file order, and the subscribers with ids
/// above `before` (the highest id before the import): the same addresses in the same
/// order, so new subscribers are numbered in file order.
pub(crate) async fn added_in_file_order(
    store: &Store,
    got: &[LineReport],
    before: i64,
) -> (Vec<SubscriberEmail>, Vec<Subscriber>) {
    let added: Vec<SubscriberEmail> = got
        .iter()
        .filter_map(|l| match &l.outcome {
            LineOutcome::Added(e) => Some(e.clone()),
            _ => None,
        })
        .collect();
    let stored: Vec<Subscriber> = store
        .subscribers(None)
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.id > before)
        .collect();
    assert_eq!(stored.len(), added.len());
    assert!(
        stored
            .iter()
            .zip(&added)
            .all(|(s, a)| s.email.as_str() == a.as_str())
    );
    (added, stored)
}

/// A store in `dir` holding `active` (address, name) and `left` (address, name), who
/// unsubscribed: the two kinds of subscriber an import meets again. Returns the store
/// and the id of the one who left (the highest id before the import).
pub(crate) async fn store_with_active_and_left(
    dir: &TempDir,
    active: (&str, &str),
    left: (&str, &str),
) -> (Store, i64) {
    let store = Store::open(&crate::support::store_url(dir.path()))
        .await
        .unwrap();
    let now = Utc::now();
    for (raw, name) in [active, left] {
        store
            .add_subscriber(
                &NewSubscriber {
                    email: email(raw),
                    name: Some(HeaderText::parse(name).unwrap()),
                    status: SubscriberStatus::Active,
                    consent: Consent::default(),
                },
                now,
            )
            .await
            .unwrap();
    }
    let gone = store
        .subscriber_by_email(&email(left.0))
        .await
        .unwrap()
        .unwrap();
    store
        .unsubscribe(
            gone.id,
            &Withdrawal::CommandLine {
                by: "test".to_owned(),
            },
            now,
        )
        .await
        .unwrap();
    (store, gone.id)
}

#[tokio::test]
async fn duplicates_across_batches_name_the_first_line_and_ids_follow_the_file() {
    let dir = TempDir::new("import-batches");
    let (store, gone_id) = store_with_active_and_left(
        &dir,
        ("Known@Example.org", "Old"),
        ("gone@example.org", "Gone"),
    )
    .await;

    // Line n (from 2) is user n-1, except for these; 25 000 rows make three batches.
    let rows = 25_000;
    let mut lines: Vec<String> = std::iter::once("email,name".to_owned())
        .chain((1..=rows).map(|i| format!("user{i}@example.org,User {i}")))
        .collect();
    let special = [
        (3, "known@example.org,New"),
        (5, "gone@example.org,Back"),
        (15_000, "KNOWN@example.org,Newer"),
        (15_001, "User8@EXAMPLE.org,Someone"),
        (22_000, "GONE@example.org,"),
        (22_001, "user30000@example.org,A"),
        (22_002, "USER30000@example.org,B"),
    ];
    for (line, text) in special {
        lines[line - 1] = text.to_owned();
    }
    let file = write(&dir, "long.csv", &lines);

    let (report, got) = import(&store, &file).await;
    assert_eq!(report.lines, rows as u64 + 1);
    let outcome = |line: u64| &got[(line - 1) as usize].outcome;
    assert_eq!(
        outcome(3),
        &LineOutcome::Updated {
            email: email("known@example.org"),
            old_name: Some(HeaderText::parse("Old").unwrap()),
            new_name: HeaderText::parse("New").unwrap(),
        }
    );
    assert_eq!(
        outcome(5),
        &LineOutcome::Suppressed(email("gone@example.org"), SubscriberStatus::Unsubscribed)
    );
    assert_duplicates(
        &got,
        &[
            (15_000, "KNOWN@example.org", 3),
            (15_001, "User8@EXAMPLE.org", 9),
            (22_000, "GONE@example.org", 5),
            (22_002, "USER30000@example.org", 22_001),
        ],
    );
    let t = &report.totals;
    assert_eq!(
        (
            t.header,
            t.updated,
            t.suppressed,
            t.duplicate,
            t.unchanged,
            t.invalid
        ),
        (1, 1, 1, 4, 0, 0)
    );
    assert_eq!(t.added, rows as u64 - 6);

    // The first spelling and the first name stay; later lines changed nothing.
    let known = store
        .subscriber_by_email(&email("KNOWN@example.org"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(known.name.as_ref().map(HeaderText::as_str), Some("New"));
    let gone = store.subscriber(gone_id).await.unwrap().unwrap();
    assert_eq!(gone.status, SubscriberStatus::Unsubscribed);
    assert_eq!(gone.name.as_ref().map(HeaderText::as_str), Some("Gone"));
    let user8 = store
        .subscriber_by_email(&email("user8@example.org"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user8.name.as_ref().map(HeaderText::as_str), Some("User 8"));

    // New subscribers, by id, are the added lines in file order.
    added_in_file_order(&store, &got, gone_id).await;
}

/// SQLite checks `status IN ('pending', 'active', …)` in a table's CHECK constraint by
/// building a throwaway table of the four values for every row it writes (an `IN` list
/// elsewhere is built once per statement). That was nearly a third of the store's work
/// in an import of 100 000 rows. The subscribers' status check makes SQLite compare
/// instead: an insert's program opens no such table. Any other status is still refused,
/// by an insert and by an update.
#[tokio::test]
async fn checking_a_subscribers_status_builds_no_table_per_row() {
    use sqlx::Row;
    let dir = TempDir::new("status-check-plan");
    // The plan is SQLite's, whichever backend the other tests run on.
    let url = format!("sqlite://{}/gazette.db", dir.path().display());
    Store::open(&url).await.unwrap().close().await;
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let insert = "INSERT INTO subscribers (email, status, created_at, updated_at) \
                  SELECT value, 'active', 1, 1 \
                  FROM json_each('[\"a@example.org\", \"b@example.org\"]')";
    let program = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN {insert}")))
        .fetch_all(&pool)
        .await
        .unwrap();
    let opcodes: Vec<String> = program.iter().map(|op| op.get("opcode")).collect();
    assert!(opcodes.iter().any(|op| op == "Insert"), "{opcodes:?}");
    assert!(
        !opcodes.iter().any(|op| op == "OpenEphemeral"),
        "{opcodes:?}"
    );
    sqlx::query(insert).execute(&pool).await.unwrap();

    let check_violation = |e: sqlx::Error| {
        assert_eq!(
            e.as_database_error().map(|e| e.kind()),
            Some(sqlx::error::ErrorKind::CheckViolation),
            "{e}"
        );
    };
    for status in ["pending", "unsubscribed", "bounced", "active"] {
        sqlx::query("UPDATE subscribers SET status = ?1 WHERE id = 1")
            .bind(status)
            .execute(&pool)
            .await
            .unwrap();
    }
    for status in ["gone", "Active", ""] {
        check_violation(
            sqlx::query("UPDATE subscribers SET status = ?1 WHERE id = 1")
                .bind(status)
                .execute(&pool)
                .await
                .unwrap_err(),
        );
        check_violation(
            sqlx::query(
                "INSERT INTO subscribers (email, status, created_at, updated_at) \
                 VALUES ('c@example.org', ?1, 1, 1)",
            )
            .bind(status)
            .execute(&pool)
            .await
            .unwrap_err(),
        );
    }
    let statuses: Vec<String> = sqlx::query_scalar("SELECT status FROM subscribers ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(statuses, ["active", "active"]);
    pool.close().await;
}
