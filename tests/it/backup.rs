//! Backups taken while a real send runs, restores, and stores written by earlier versions.

use crate::delivery_support::{issue_id, smtp_config};
use crate::support::mailstack::SmtpSink;
use crate::support::{TempDir, describe, fixture, gazette_command as gazette, import_readers};
use gazette::store::{self, BackupError, Store, StoreError, SubscriberStatus};
use std::process::Stdio;
use std::time::{Duration, Instant};

const SUBSCRIBERS: usize = 1500;

fn store_url(dir: &TempDir) -> String {
    format!("sqlite://{}", dir.path().join("gazette.db").display())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_taken_during_a_send_restores_and_its_ledger_resumes() {
    let sink = SmtpSink::start(&[]);
    let dir = TempDir::new("backup-send");
    // A rate limit spreads the send over a few seconds, so the backup lands inside it.
    let config = smtp_config(&dir, sink.port(), &[("smtp.rate_per_second", "400")]);
    import_readers(&config, SUBSCRIBERS);

    let mut send = gazette(&config, &["send-now", "--date", "2021-09-01"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while sink.received_count() < SUBSCRIBERS / 4 {
        assert!(
            send.try_wait().unwrap().is_none(),
            "send-now ended too soon"
        );
        assert!(Instant::now() < deadline, "the send did not get going");
        std::thread::sleep(Duration::from_millis(20));
    }
    let backup_file = dir.path().join("backup.db");
    let out = gazette(&config, &["backup", backup_file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let still_sending = send.try_wait().unwrap().is_none();
    assert!(still_sending, "the backup was not taken during the send");
    assert!(send.wait().unwrap().success());
    assert_eq!(sink.received_count(), SUBSCRIBERS);

    // The backup holds the store as it was at one instant of the send.
    let summary = store::verify_backup(&backup_file).await.unwrap();
    assert_eq!(summary.subscribers, SUBSCRIBERS as i64);
    assert_eq!(summary.active, SUBSCRIBERS as i64);
    assert_eq!(summary.issues, 1);
    assert_eq!(summary.deliveries, SUBSCRIBERS as i64);
    assert!(
        summary.deliveries_pending > 0 && summary.deliveries_pending < SUBSCRIBERS as i64,
        "{summary:?}"
    );

    // A second backup never overwrites the first.
    let out = gazette(&config, &["backup", backup_file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", describe(&out));

    // While any process has the store open, a restore is refused.
    let url = store_url(&dir);
    let open = Store::open(&url).await.unwrap();
    let refused = store::restore(&url, &backup_file).await;
    assert!(
        matches!(refused, Err(BackupError::InUse { .. })),
        "{refused:?}"
    );
    open.close().await;
    drop(open);

    let out = gazette(&config, &["restore", backup_file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let kept: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".before-restore-"))
        .collect();
    assert_eq!(kept.len(), 1, "the replaced store is kept");

    let restored = Store::open(&url).await.unwrap();
    let counts = restored.delivery_counts(issue_id()).await.unwrap();
    assert_eq!(counts.total(), SUBSCRIBERS as u64);
    assert_eq!(
        counts.queued + counts.retrying,
        summary.deliveries_pending as u64
    );
    restored.close().await;
    drop(restored);

    // The restored ledger resumes: exactly the rows it still had to send go out.
    let before = sink.received_count();
    let out = gazette(&config, &["send-now", "--date", "2021-09-01"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let resent = sink.wait_for_received(
        before + summary.deliveries_pending as usize,
        Duration::from_secs(60),
    );
    assert_eq!(resent.len() - before, summary.deliveries_pending as usize);
    let restored = Store::open(&url).await.unwrap();
    let counts = restored.delivery_counts(issue_id()).await.unwrap();
    assert_eq!(counts.sent, SUBSCRIBERS as u64, "{counts:?}");
}

/// A store written by gazette 0.1.0 (kept in `tests/fixtures/stores/`): five
/// subscribers (one unsubscribed, one bounced), one issue sent to the four active ones.
fn old_store(dir: &TempDir) -> String {
    let file = dir.path().join("gazette.db");
    std::fs::copy(fixture("stores/gazette-0.1.0.db"), &file).unwrap();
    format!("sqlite://{}", file.display())
}

#[tokio::test]
async fn a_store_from_version_0_1_0_migrates_forward_with_its_data() {
    let dir = TempDir::new("old-store");
    let url = old_store(&dir);
    let store = Store::open(&url).await.unwrap();
    let status = |email: &str| {
        let store = store.clone();
        let email = gazette::domain::SubscriberEmail::parse(email).unwrap();
        async move {
            store
                .subscriber_by_email(&email)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("{email} lost in the migration"))
                .status
        }
    };
    assert_eq!(status("ada@example.org").await, SubscriberStatus::Active);
    assert_eq!(status("grace@example.net").await, SubscriberStatus::Active);
    assert_eq!(
        status("alan@example.com").await,
        SubscriberStatus::Unsubscribed
    );
    assert_eq!(
        status("bounce-me@example.org").await,
        SubscriberStatus::Bounced
    );
    let issue = gazette::domain::IssueId::parse("2026-11-01").unwrap();
    assert!(store.issue(issue).await.unwrap().is_some());
    let counts = store.delivery_counts(issue).await.unwrap();
    assert_eq!(
        counts.queued + counts.retrying + counts.failed,
        0,
        "{counts:?}"
    );
    assert!(counts.sent >= 3, "{counts:?}");
    // Opening it again is a no-op: every migration is recorded as applied.
    store.close().await;
    drop(store);
    Store::open(&url).await.unwrap();
}

#[tokio::test]
async fn a_store_from_a_newer_version_is_refused_and_left_untouched() {
    let dir = TempDir::new("newer-store");
    let url = old_store(&dir);
    let file = dir.path().join("gazette.db");
    {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", file.display()))
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations \
             (version, description, installed_on, success, checksum, execution_time) \
             VALUES (99999999, 'from the future', CURRENT_TIMESTAMP, TRUE, x'00', 0)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
    }
    let before = std::fs::read(&file).unwrap();
    match Store::open(&url).await {
        Err(StoreError::NewerSchema { found, .. }) => assert_eq!(found, 99999999),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(
        std::fs::read(&file).unwrap(),
        before,
        "the newer store was changed"
    );
}

#[tokio::test]
async fn upgrading_an_old_store_is_reported_by_gazette_once_with_the_versions() {
    // The newest migration, as sqlx reads the folder the binary embeds.
    let newest = sqlx::migrate::Migrator::new(
        crate::support::repo_root()
            .join("migrations/sqlite")
            .as_path(),
    )
    .await
    .unwrap()
    .iter()
    .map(|m| m.version)
    .max()
    .unwrap();
    let dir = TempDir::new("upgrade-log");
    let url = old_store(&dir);
    let config = crate::support::write_config(dir.path(), &[("store.url", &format!("\"{url}\""))]);
    let empty = dir.path().join("empty.csv");
    std::fs::write(&empty, "email,name\n").unwrap();
    let run = || {
        let out = gazette(&config, &["subscribers", "import", empty.to_str().unwrap()])
            .env("GAZETTE_LOG", "info")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", describe(&out));
        String::from_utf8(out.stderr).unwrap()
    };
    let log = run();
    let upgrading: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("upgrading the store"))
        .collect();
    assert_eq!(upgrading.len(), 1, "{log}");
    assert!(upgrading[0].contains(" INFO "), "{log}");
    assert!(upgrading[0].contains("from=5 "), "{log}");
    assert!(upgrading[0].contains(&format!("to={newest} ")), "{log}");
    assert_eq!(
        log.lines().filter(|l| l.contains("store upgraded")).count(),
        1,
        "{log}"
    );
    // sqlx's own lines about the upgrade's statements (a slow one is logged as a warning
    // with the whole migration's text) are not the operator's business.
    assert!(!log.contains("slow statement"), "{log}");

    // Up to date now: nothing to say.
    let again = run();
    assert!(!again.contains("upgrading the store"), "{again}");
}
