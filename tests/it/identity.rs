//! One mailbox, one subscriber: every spelling of an address is the same subscriber, on
//! every path (add, import, sign-up, token, inbox lookup), and a store written before
//! this rule has its twins merged when it is opened. Also `subscribers reactivate`.

use crate::delivery_support::{context, file_config, new_active};
use crate::support::{TempDir, describe, gazette};
use chrono::{TimeZone, Utc};
use gazette::app::import::{LineOutcome, import_file};
use gazette::domain::{HeaderText, SubscriberEmail};
use gazette::store::{DeliveryCounts, SignupOutcome, Store, SubscriberStatus};
use std::path::Path;

fn run(config: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    gazette(&all)
}

fn email(raw: &str) -> SubscriberEmail {
    SubscriberEmail::parse(raw).unwrap()
}

#[tokio::test]
async fn every_spelling_of_a_mailbox_is_one_subscriber_on_every_path() {
    let dir = TempDir::new("identity-paths");
    let url = crate::support::store_url(dir.path());
    let store = Store::open(&url).await.unwrap();
    let now = Utc::now();

    let (first, added) = store
        .add_subscriber(&new_active("Ada@Example.ORG", Some("Ada")), now)
        .await
        .unwrap();
    assert!(added);
    // The spelling first given is the one kept for sending.
    assert_eq!(first.email.as_str(), "Ada@example.org");

    let (again, added) = store
        .add_subscriber(&new_active("ADA@example.org", None), now)
        .await
        .unwrap();
    assert!(!added, "a second spelling was added as a new subscriber");
    assert_eq!(again.id, first.id);
    assert_eq!(again.email.as_str(), "Ada@example.org");

    let found = store
        .subscriber_by_email(&email("ada@EXAMPLE.org"))
        .await
        .unwrap()
        .expect("found in another spelling");
    assert_eq!(found.id, first.id);

    // The web sign-up finds the same row (already active: nothing to confirm).
    let outcome = store
        .web_signup(&email("aDA@example.org"), None, "192.0.2.1", now)
        .await
        .unwrap();
    assert_eq!(outcome, SignupOutcome::AlreadyActive);
    let outcome = store
        .web_signup(&email("New@Example.org"), None, "192.0.2.1", now)
        .await
        .unwrap();
    let SignupOutcome::Confirm { subscriber_id, .. } = outcome else {
        panic!("{outcome:?}");
    };
    let outcome = store
        .web_signup(&email("NEW@example.org"), None, "192.0.2.1", now)
        .await
        .unwrap();
    let SignupOutcome::Confirm {
        subscriber_id: same,
        email: kept,
        ..
    } = outcome
    else {
        panic!("{outcome:?}");
    };
    assert_eq!(same, subscriber_id);
    assert_eq!(kept.as_str(), "New@example.org");

    // An import reports other spellings as the same mailbox.
    let file = dir.path().join("people.csv");
    std::fs::write(
        &file,
        "email,name\nADA@EXAMPLE.ORG,\nbob@example.org,Bob\nBOB@example.org,Bobby\n",
    )
    .unwrap();
    let mut lines = Vec::new();
    let report = import_file(&store, &file, now, |l| lines.push(l.clone()))
        .await
        .unwrap();
    assert_eq!(report.totals.added, 1);
    assert_eq!(report.totals.unchanged, 1);
    assert_eq!(report.totals.duplicate, 1);
    assert!(
        lines
            .iter()
            .any(|l| l.line == 4
                && matches!(&l.outcome, LineOutcome::Duplicate { first_line: 3, .. })),
        "{lines:?}"
    );

    let all = store.subscribers(None).await.unwrap();
    let emails: Vec<&str> = all.iter().map(|s| s.email.as_str()).collect();
    assert_eq!(
        emails,
        ["Ada@example.org", "New@example.org", "bob@example.org"]
    );
    store.close().await;
}

#[test]
fn the_command_line_refuses_a_second_spelling() {
    let dir = TempDir::new("identity-cli");
    let config = file_config(&dir, &[]);
    let out = run(&config, &["subscribers", "add", "ada@example.org"]);
    assert!(out.status.success(), "{}", describe(&out));
    let out = run(&config, &["subscribers", "add", "ADA@Example.ORG"]);
    assert!(out.status.success(), "{}", describe(&out));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ctx = context(&config);
        let store = Store::open(&ctx.settings.store.url).await.unwrap();
        let all = store.subscribers(None).await.unwrap();
        assert_eq!(all.len(), 1, "{all:?}");
        assert_eq!(all[0].email.as_str(), "ada@example.org");
        store.close().await;
    });
}

/// Writes issue 2021-09-01 into an old store with raw SQL, and its ledger rows as
/// (subscriber, status).
async fn add_issue_2021_09(pool: &sqlx::SqlitePool, deliveries: &[(i64, &str)]) {
    sqlx::query(
        "INSERT INTO issues (id, subject, html_template, text_template, message_date, frozen_at) \
         VALUES ('2021-09-01', 'S', '', '', 0, 0)",
    )
    .execute(pool)
    .await
    .unwrap();
    for (subscriber, status) in deliveries {
        sqlx::query(
            "INSERT INTO deliveries (issue_id, subscriber_id, status, next_attempt_at, updated_at) \
             VALUES ('2021-09-01', ?1, ?2, 0, 0)",
        )
        .bind(subscriber)
        .bind(status)
        .execute(pool)
        .await
        .unwrap();
    }
}

/// Builds a store the way gazette did before addresses were compared whole: only the
/// migrations before this rule, then rows written with raw SQL.
async fn old_store(dir: &TempDir) -> String {
    let (url, pool) = crate::support::store_migrated_before(dir.path(), "0030").await;
    let t = |y, m, d| Utc.with_ymd_and_hms(y, m, d, 9, 0, 0).unwrap().timestamp();
    let subscribers = [
        // id, email, name, status, consent_at, consent_source, bounces, withdrawn_at
        (
            1,
            "ada@example.org",
            None,
            "active",
            Some(t(2021, 3, 1)),
            "cli",
            0,
            None,
        ),
        (
            2,
            "Ada@example.org",
            Some("Ada"),
            "unsubscribed",
            Some(t(2020, 5, 1)),
            "import:a.csv",
            0,
            Some(t(2021, 6, 1)),
        ),
        (3, "ADA@example.org", None, "pending", None, "web", 0, None),
        (
            4,
            "bob@example.org",
            None,
            "bounced",
            Some(t(2021, 1, 1)),
            "cli",
            3,
            None,
        ),
        (
            5,
            "Bob@example.org",
            Some("Bob"),
            "active",
            Some(t(2021, 2, 1)),
            "cli",
            1,
            None,
        ),
        (
            6,
            "carol@example.org",
            Some("Carol"),
            "active",
            Some(t(2021, 1, 1)),
            "cli",
            0,
            None,
        ),
        (7, "Dan@example.org", None, "pending", None, "web", 0, None),
        (
            8,
            "dan@example.org",
            None,
            "active",
            Some(t(2021, 4, 1)),
            "cli",
            0,
            None,
        ),
    ];
    for (id, email, name, status, consent_at, source, bounces, withdrawn) in subscribers {
        sqlx::query(
            "INSERT INTO subscribers (id, email, name, status, consent_at, consent_source, \
             bounce_count, created_at, updated_at, withdrawn_at, withdrawn_source) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9, CASE WHEN ?9 IS NULL THEN NULL ELSE 'web' END)",
        )
        .bind(id)
        .bind(email)
        .bind(name)
        .bind(status)
        .bind(consent_at)
        .bind(source)
        .bind(bounces)
        .bind(t(2021, 1, 1) + id)
        .bind(withdrawn)
        .execute(&pool)
        .await
        .unwrap();
    }
    // Ada got the issue under one spelling and is still queued under another; Bob's
    // active twin got it.
    add_issue_2021_09(
        &pool,
        &[(1, "sent"), (2, "queued"), (5, "sent"), (6, "sent")],
    )
    .await;
    sqlx::query(
        "INSERT INTO web_signups (subscriber_id, name, requested_at, requested_ip) \
         VALUES (3, NULL, 0, '192.0.2.9')",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO inbox_messages (key, command, disposition, subscriber_id, processed_at) \
         VALUES ('mid:<x@example.org>', 'unsubscribe', 'processed', 2, 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    // A table the merge code does not know (as a later feature might add) follows too.
    sqlx::query(
        "CREATE TABLE sent_messages (message_id TEXT PRIMARY KEY, \
         subscriber_id INTEGER NOT NULL REFERENCES subscribers (id))",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO sent_messages VALUES ('<a@x>', 5), ('<b@x>', 8), ('<c@x>', 6)")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    url
}

#[tokio::test]
async fn twins_in_an_old_store_are_merged_when_it_is_opened() {
    let dir = TempDir::new("identity-migrate");
    let url = old_store(&dir).await;
    let t = |y, m, d| Utc.with_ymd_and_hms(y, m, d, 9, 0, 0).unwrap();

    let store = Store::open(&url).await.unwrap();
    let all = store.subscribers(None).await.unwrap();
    let got: Vec<(i64, &str, SubscriberStatus)> = all
        .iter()
        .map(|s| (s.id, s.email.as_str(), s.status))
        .collect();
    assert_eq!(
        got,
        [
            // The first spelling, the strongest suppression.
            (1, "ada@example.org", SubscriberStatus::Unsubscribed),
            (4, "bob@example.org", SubscriberStatus::Bounced),
            (6, "carol@example.org", SubscriberStatus::Active),
            // Active beats pending.
            (7, "Dan@example.org", SubscriberStatus::Active),
        ]
    );
    let ada = &all[0];
    // The earliest consent, and the name the twin had.
    assert_eq!(ada.consent.at, Some(t(2020, 5, 1)));
    assert_eq!(ada.consent.source.as_deref(), Some("import:a.csv"));
    assert_eq!(ada.name.as_ref().map(HeaderText::as_str), Some("Ada"));
    let bob = &all[1];
    assert_eq!(bob.bounce_count, 3);
    assert_eq!(bob.name.as_ref().map(HeaderText::as_str), Some("Bob"));
    assert_eq!(all[3].consent.at, Some(t(2021, 4, 1)));

    // What was merged is on record, and logged at this first start.
    let merges = store.subscriber_merges().await.unwrap();
    let merged: Vec<(i64, i64, &str)> = merges
        .iter()
        .map(|m| (m.merged_id, m.kept_id, m.merged_email.as_str()))
        .collect();
    assert_eq!(
        merged,
        [
            (2, 1, "Ada@example.org"),
            (3, 1, "ADA@example.org"),
            (5, 4, "Bob@example.org"),
            (8, 7, "dan@example.org"),
        ]
    );
    assert_eq!(merges[0].kept_status, SubscriberStatus::Unsubscribed);

    // The ledger keeps one row per issue and mailbox, the one furthest along.
    let counts: DeliveryCounts = store
        .delivery_counts(gazette::domain::IssueId::parse("2021-09-01").unwrap())
        .await
        .unwrap();
    assert_eq!((counts.sent, counts.queued), (3, 0), "{counts:?}");

    // A token signed for a merged id (in mail already sent) still finds the subscriber.
    let via_old_id = store
        .subscriber(2)
        .await
        .unwrap()
        .expect("merged id resolves");
    assert_eq!(via_old_id.id, 1);
    let web = store
        .web_subscriber(5)
        .await
        .unwrap()
        .expect("merged id resolves on the web");
    assert_eq!(web.id, 4);

    // Every other reference follows the row kept.
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let refs: Vec<(String, i64)> =
        sqlx::query_as("SELECT message_id, subscriber_id FROM sent_messages ORDER BY message_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        refs,
        [
            ("<a@x>".into(), 4),
            ("<b@x>".into(), 7),
            ("<c@x>".into(), 6)
        ]
    );
    let signup_of: i64 = sqlx::query_scalar("SELECT subscriber_id FROM web_signups")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(signup_of, 1);
    pool.close().await;

    // From now on a third spelling is refused by the database itself.
    let (s, added) = store
        .add_subscriber(&new_active("CAROL@EXAMPLE.ORG", None), Utc::now())
        .await
        .unwrap();
    assert!(!added);
    assert_eq!(s.id, 6);
    store.close().await;

    // Opening again merges nothing more and keeps the record.
    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.subscriber_merges().await.unwrap().len(), 4);
    assert_eq!(store.subscribers(None).await.unwrap().len(), 4);
    store.close().await;
}

#[test]
fn reactivate_brings_back_a_bounced_address_and_refuses_an_unsubscribed_one() {
    let dir = TempDir::new("identity-reactivate");
    let config = file_config(&dir, &[]);
    for address in ["bounced@example.org", "left@example.org"] {
        let out = run(&config, &["subscribers", "add", address]);
        assert!(out.status.success(), "{}", describe(&out));
    }
    let out = run(&config, &["subscribers", "remove", "left@example.org"]);
    assert!(out.status.success(), "{}", describe(&out));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = context(&config).settings.store.url.clone();
    let original_consent = rt.block_on(async {
        let store = Store::open(&url).await.unwrap();
        let s = store
            .subscriber_by_email(&email("bounced@example.org"))
            .await
            .unwrap()
            .unwrap();
        store.record_bounce(s.id, 1, Utc::now()).await.unwrap();
        store.close().await;
        s.consent
    });

    let out = run(
        &config,
        &[
            "subscribers",
            "reactivate",
            "BOUNCED@example.org",
            "--by",
            "Grace (support ticket 42)",
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let out = run(&config, &["subscribers", "reactivate", "left@example.org"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("double opt-in"),
        "{}",
        describe(&out)
    );
    let out = run(
        &config,
        &["subscribers", "reactivate", "nobody@example.org"],
    );
    assert!(!out.status.success(), "{}", describe(&out));

    rt.block_on(async {
        let store = Store::open(&url).await.unwrap();
        let back = store
            .subscriber_by_email(&email("bounced@example.org"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back.status, SubscriberStatus::Active);
        assert_eq!(back.bounce_count, 0);
        let record = back.reactivated.expect("who and when are recorded");
        assert_eq!(record.by, "Grace (support ticket 42)");
        assert!(Utc::now() - record.at < chrono::Duration::minutes(5));
        // The subscriber's own consent record is kept as it was.
        assert_eq!(back.consent, original_consent);
        let left = store
            .subscriber_by_email(&email("left@example.org"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(left.status, SubscriberStatus::Unsubscribed);
        assert_eq!(left.reactivated, None);
        store.close().await;
    });
}

#[test]
fn the_first_start_after_the_upgrade_says_what_it_merged() {
    let dir = TempDir::new("identity-merge-log");
    // An upgrade of an older gazette's store: a SQLite file.
    let store = format!("\"{}\"", crate::support::sqlite_url(dir.path()));
    let config = file_config(&dir, &[("store.url", &store)]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = rt.block_on(old_store(&dir));
    assert_eq!(url, context(&config).settings.store.url);

    let out = run(&config, &["subscribers", "list"]);
    assert!(out.status.success(), "{}", describe(&out));
    let log = String::from_utf8_lossy(&out.stderr);
    for line in [
        "merged Ada@example.org into ada@example.org (now unsubscribed)",
        "merged ADA@example.org into ada@example.org (now unsubscribed)",
        "merged Bob@example.org into bob@example.org (now bounced)",
        "merged dan@example.org into Dan@example.org (now active)",
    ] {
        assert!(log.contains(line), "{line}\n{}", describe(&out));
    }
    // Said once: the next start is quiet.
    let out = run(&config, &["subscribers", "list"]);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("merged"),
        "{}",
        describe(&out)
    );
}

/// A store from before migration 0120, whose address column had a unique index of its
/// own beside the mailbox's: upgraded, it keeps every subscriber with its id and the
/// rows that point at them, one unique index answers for the address, a removed id is
/// still never handed out again, and a second spelling is still refused.
#[tokio::test]
async fn an_upgraded_store_keeps_its_subscribers_under_one_address_index() {
    upgraded_store_keeps_its_subscribers("0120").await;
}

/// A store from before migration 0130, whose status check SQLite ran by building a table
/// for each row: the table built again keeps the same, as for 0120.
#[tokio::test]
async fn a_store_whose_status_check_is_rewritten_keeps_its_subscribers() {
    upgraded_store_keeps_its_subscribers("0130").await;
}

/// A store migrated up to the migration `before`, with subscribers (one removed) and a
/// delivery, opened by this gazette: the subscribers' table is rebuilt by the migrations
/// after it and keeps every row, id, index, trigger and reference.
async fn upgraded_store_keeps_its_subscribers(before: &str) {
    let dir = TempDir::new(&format!("upgrade-{before}"));
    let (url, pool) = crate::support::store_migrated_before(dir.path(), before).await;
    for (id, email, name, status) in [
        (1, "ada@example.org", None, "active"),
        (2, "Bob@example.org", Some("Bob"), "unsubscribed"),
        (3, "carol@example.org", Some("Carol"), "active"),
    ] {
        sqlx::query(
            "INSERT INTO subscribers (id, email, name, status, consent_at, consent_source, \
             created_at, updated_at) VALUES (?1, ?2, ?3, ?4, 10, 'cli', 20, 30)",
        )
        .bind(id)
        .bind(email)
        .bind(name)
        .bind(status)
        .execute(&pool)
        .await
        .unwrap();
    }
    add_issue_2021_09(&pool, &[(1, "sent")]).await;
    // Carol was removed: her id was handed out once and must not come back.
    sqlx::query("DELETE FROM subscribers WHERE id = 3")
        .execute(&pool)
        .await
        .unwrap();
    let rows = "SELECT id, email, name, status, consent_at, consent_source, created_at, \
                updated_at FROM subscribers ORDER BY id";
    type Row = (i64, String, Option<String>, String, i64, String, i64, i64);
    let before: Vec<Row> = sqlx::query_as(rows).fetch_all(&pool).await.unwrap();
    pool.close().await;

    let store = Store::open(&url).await.unwrap();
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let after: Vec<Row> = sqlx::query_as(rows).fetch_all(&pool).await.unwrap();
    assert_eq!(after, before);
    let indexes: Vec<(String, bool)> = sqlx::query_as(
        "SELECT name, \"unique\" FROM pragma_index_list('subscribers') ORDER BY name",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        indexes,
        [
            ("subscribers_by_mailbox".to_owned(), true),
            ("subscribers_by_status".to_owned(), false)
        ]
    );
    let triggers: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'subscribers'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(triggers, ["web_signups_close_on_leaving"]);
    let broken: Vec<(String, i64)> =
        sqlx::query_as("SELECT \"table\", rowid FROM pragma_foreign_key_check")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(broken, []);
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(check, "ok");
    let delivered: Vec<i64> = sqlx::query_scalar("SELECT subscriber_id FROM deliveries")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(delivered, [1]);

    assert_eq!(
        crate::support::add_active(&store, "dan@example.org").await,
        4
    );
    assert_eq!(
        crate::support::add_active(&store, "ADA@example.org").await,
        1
    );
}
