//! `gazette send-now` and `status` with the file transport, and the worker's policy with
//! the test double, all on a SQLite file on disk.

use crate::delivery_support::{add_subscribers, context, file_config, freeze, issue_id};
use crate::support::{TempDir, describe, gazette, store_url, with_store};
use chrono::{Duration as Days, Utc};
use gazette::app::delivery;
use gazette::send::{
    DeliveryWorker, MessageFactory, Outcome, RetryPolicy, SendError, StubTransport, WorkerError,
};
use gazette::store::{DeliveryStatus, Store, SubscriberStatus};
use std::path::Path;

fn run(config: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    gazette(&all)
}

#[test]
fn send_now_freezes_sends_once_and_a_dry_run_changes_nothing() {
    let dir = TempDir::new("send-now-file");
    let config = file_config(&dir, &[]);
    let people = dir.path().join("people.csv");
    std::fs::write(
        &people,
        "email,name\na@example.org,A\nb@example.org,B\nc@example.org,\n",
    )
    .unwrap();
    let out = run(
        &config,
        &["subscribers", "import", people.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", describe(&out));

    let url = store_url(dir.path());
    let issue = issue_id();
    let out = run(&config, &["send-now", "--date", "2021-09-01", "--dry-run"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(!dir.path().join("outbox").exists());
    let (active, frozen) = with_store(&url, async |store| {
        (
            store
                .count_subscribers(SubscriberStatus::Active)
                .await
                .unwrap(),
            store.issue(issue).await.unwrap(),
        )
    });
    assert_eq!(active, 3);
    assert!(frozen.is_none(), "a dry run froze the issue");

    let out = run(&config, &["send-now", "--date", "2021-09-01"]);
    assert!(out.status.success(), "{}", describe(&out));
    let outbox = dir.path().join("outbox/2021-09-01");
    let mut files: Vec<String> = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["1.eml", "2.eml", "3.eml"]);
    let first = std::fs::read(outbox.join("1.eml")).unwrap();
    let text = String::from_utf8_lossy(&first);
    assert!(text.contains("To: A <a@example.org>"), "{text}");
    let mtime = |f: &str| {
        std::fs::metadata(outbox.join(f))
            .unwrap()
            .modified()
            .unwrap()
    };
    let before = mtime("2.eml");

    // Again: the issue is frozen, its ledger complete; nothing new goes out, even to a
    // subscriber who joined since.
    let out = run(&config, &["subscribers", "add", "late@example.org"]);
    assert!(out.status.success(), "{}", describe(&out));
    let out = run(&config, &["send-now", "--date", "2021-09-01"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(std::fs::read_dir(&outbox).unwrap().count(), 3);
    assert_eq!(mtime("2.eml"), before);
    let counts = with_store(&url, async |store| {
        store.delivery_counts(issue).await.unwrap()
    });
    assert_eq!((counts.sent, counts.total()), (3, 3), "{counts:?}");
}

/// A worker over the test double, with the context's settings.
fn stub_worker(
    ctx: &gazette::app::Context,
    store: &Store,
    stub: StubTransport,
) -> DeliveryWorker<StubTransport> {
    let messages = MessageFactory::new(ctx.settings.newsletter.clone(), ctx.tokens.clone(), None);
    DeliveryWorker::new(
        store.clone(),
        stub,
        messages,
        RetryPolicy::from(&ctx.settings.delivery),
        0,
    )
}

#[tokio::test]
async fn a_subscriber_who_leaves_mid_send_is_skipped_and_a_frozen_issue_is_identical() {
    let dir = TempDir::new("send-skip");
    let config = file_config(&dir, &[]);
    let ctx = context(&config);
    let store = Store::open(&ctx.settings.store.url).await.unwrap();
    let ids = add_subscribers(
        &store,
        &[("stay@example.org", None), ("leave@example.org", None)],
    )
    .await;
    let now = Utc::now();
    let frozen = freeze(&ctx, &store, now).await;

    // The issue reads back exactly as frozen (what a resend after a restart uses).
    let again = store.issue(frozen.id).await.unwrap().unwrap();
    assert_eq!(again.rendered.html, frozen.rendered.html);
    assert_eq!(again.rendered.text, frozen.rendered.text);
    assert_eq!(again.rendered.subject, frozen.rendered.subject);
    assert_eq!(again.message_date, frozen.message_date);
    assert_eq!(again.sources.len(), 6);

    // The withdrawal itself skips the rows still to send.
    store
        .unsubscribe(ids[1], &crate::web::cli_removal(), now)
        .await
        .unwrap();
    let mut worker = stub_worker(&ctx, &store, StubTransport::new());
    let Outcome::Worked(report) = worker.try_once(now).await.unwrap() else {
        panic!("rows were due");
    };
    assert_eq!((report.sent, report.skipped), (1, 0));
    let sent = worker.transport().sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].name, Some(format!("{}/{}", issue_id(), ids[0])));
    assert_eq!(
        store.delivery(issue_id(), ids[1]).await.unwrap().unwrap().0,
        DeliveryStatus::Skipped
    );
    assert!(matches!(
        worker.try_once(now).await.unwrap(),
        Outcome::NothingDue { next_due: None }
    ));
}

#[tokio::test]
async fn throttling_slows_down_without_failing_rows() {
    let dir = TempDir::new("send-throttle");
    let config = file_config(&dir, &[]);
    let ctx = context(&config);
    let store = Store::open(&ctx.settings.store.url).await.unwrap();
    let people: Vec<String> = (0..12).map(|i| format!("r{i}@example.org")).collect();
    let refs: Vec<(&str, Option<&str>)> = people.iter().map(|p| (p.as_str(), None)).collect();
    add_subscribers(&store, &refs).await;
    let now = Utc::now();
    freeze(&ctx, &store, now).await;
    let stub = StubTransport::new();
    for p in &people[..4] {
        stub.fail(
            p,
            vec![SendError::Throttled(
                "421 4.7.0 Too many messages, slow down".into(),
            )],
        );
    }
    let mut worker = stub_worker(&ctx, &store, stub);
    assert_eq!(worker.rate_limit(), None);
    let Outcome::Worked(report) = worker.try_once(now).await.unwrap() else {
        panic!("rows were due");
    };
    assert_eq!((report.sent, report.retrying, report.throttled), (8, 4, 4));
    assert!(
        worker.rate_limit().is_some(),
        "throttling sets a rate limit"
    );
    let counts = store.delivery_counts(issue_id()).await.unwrap();
    assert_eq!((counts.sent, counts.retrying, counts.failed), (8, 4, 0));
    // Throttled rows come back soon and go through.
    let later = now + Days::minutes(5);
    let Outcome::Worked(report) = worker.try_once(later).await.unwrap() else {
        panic!("throttled rows are due again");
    };
    assert_eq!(report.sent, 4);
}

#[tokio::test]
async fn five_hundreds_fail_and_count_toward_bounced() {
    let dir = TempDir::new("send-bounce");
    let config = file_config(&dir, &[("delivery.bounce_threshold", "1")]);
    let ctx = context(&config);
    let store = Store::open(&ctx.settings.store.url).await.unwrap();
    let ids = add_subscribers(&store, &[("gone@example.org", None)]).await;
    let now = Utc::now();
    freeze(&ctx, &store, now).await;
    let stub = StubTransport::new();
    stub.fail(
        "gone@example.org",
        vec![SendError::Permanent("550 5.1.1 no such user".into())],
    );
    let mut worker = stub_worker(&ctx, &store, stub);
    worker.try_once(now).await.unwrap();
    let (status, attempts, error) = store.delivery(issue_id(), ids[0]).await.unwrap().unwrap();
    assert_eq!((status, attempts), (DeliveryStatus::Failed, 1));
    assert!(error.unwrap().contains("550"));
    let s = store.subscriber(ids[0]).await.unwrap().unwrap();
    assert_eq!((s.status, s.bounce_count), (SubscriberStatus::Bounced, 1));
}

#[tokio::test]
async fn a_ledger_that_cannot_be_written_stops_sending() {
    let dir = TempDir::new("send-store-error");
    let config = file_config(&dir, &[]);
    let ctx = context(&config);
    let store = Store::open(&ctx.settings.store.url).await.unwrap();
    let people: Vec<String> = (0..100).map(|i| format!("r{i}@example.org")).collect();
    let refs: Vec<(&str, Option<&str>)> = people.iter().map(|p| (p.as_str(), None)).collect();
    add_subscribers(&store, &refs).await;
    let now = Utc::now();
    freeze(&ctx, &store, now).await;

    // Break the ledger from outside (a test fixture, not gazette's SQL): every update of
    // a delivery row now fails, as a full disk or a read-only file would.
    crate::support::refuse_writes(
        &ctx.settings.store.url,
        "break_ledger",
        "UPDATE",
        "deliveries",
    )
    .await;

    let mut worker = stub_worker(&ctx, &store, StubTransport::new()).with_batch_size(10);
    let result = worker
        .run_until_stopped(
            &gazette::domain::SystemClock,
            std::time::Duration::from_millis(100),
            std::future::pending(),
        )
        .await;
    assert!(matches!(result, Err(WorkerError::Store(_))), "{result:?}");
    // A batch's rows are claimed in the ledger before anything is sent: the claim is the
    // first write that fails, so nothing went out that could not be recorded.
    assert_eq!(worker.transport().sent().len(), 0);
    let counts = store.delivery_counts(issue_id()).await.unwrap();
    assert_eq!(counts.queued, 100, "no row was marked");
}

#[tokio::test]
async fn freezing_twice_queues_nobody_new() {
    let dir = TempDir::new("send-freeze-twice");
    let config = file_config(&dir, &[]);
    let ctx = context(&config);
    let store = Store::open(&ctx.settings.store.url).await.unwrap();
    add_subscribers(&store, &[("one@example.org", None)]).await;
    let now = Utc::now();
    let frozen = freeze(&ctx, &store, now).await;
    add_subscribers(&store, &[("two@example.org", None)]).await;
    let issue = gazette::compose::compose(
        &ctx.settings.content.sections_dir,
        issue_id(),
        &ctx.compose_options(),
        std::time::SystemTime::now(),
    )
    .unwrap();
    let (again, outcome) =
        delivery::freeze_and_snapshot(&ctx, &store, &issue, now + Days::hours(1))
            .await
            .unwrap();
    assert!(!outcome.newly_frozen);
    assert_eq!(again.frozen_at, frozen.frozen_at);
    assert_eq!(store.delivery_counts(issue_id()).await.unwrap().total(), 1);
}
