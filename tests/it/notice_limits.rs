//! The notice that confirms an unsubscribe by mail: given up after its attempts when it
//! cannot be sent, and at most `inbox.notices_per_day` to one address in 24 hours. The
//! inbox worker reads a Maildir folder on disk and records in a SQLite file; the clock
//! is passed in.

use crate::delivery_support::{context, smtp_config};
use crate::support::mailstack::free_port;
use crate::support::{TempDir, add_active, unsubscribe_request, write_config};
use chrono::{DateTime, Duration as Span, Utc};
use gazette::app::inbox_worker;
use gazette::domain::SubscriberEmail;
use gazette::inbox::{Outcome, PollReport};
use gazette::store::{Store, SubscriberStatus, from_ts, ts};

async fn poll(
    worker: &mut gazette::inbox::Worker<gazette::send::ConfiguredTransport>,
    now: DateTime<Utc>,
) -> PollReport {
    match worker.try_once(now).await.unwrap() {
        Outcome::Worked(report) => report,
        Outcome::Empty => PollReport::default(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_notice_that_cannot_be_sent_is_tried_five_times_then_given_up() {
    // Nothing listens on the relay's port: every attempt fails at once.
    let dir = TempDir::new("notice-give-up");
    let ctx = context(&smtp_config(&dir, free_port(), &[]));
    let store = Store::open(&ctx.settings.store.url).await.unwrap();
    let alice = add_active(&store, "alice@example.net").await;
    let inbox = dir.path().join("inbox");
    unsubscribe_request(&ctx, &inbox, alice, 1);
    let mut worker = inbox_worker(&ctx, store.clone()).unwrap();
    let t0 = from_ts(ts(Utc::now()));

    let first = poll(&mut worker, t0).await;
    assert_eq!(
        (first.unsubscribed, first.notices_sent, first.notices_failed),
        (1, 0, 1),
        "{first:?}"
    );
    assert_eq!(
        store.subscriber(alice).await.unwrap().unwrap().status,
        SubscriberStatus::Unsubscribed,
        "a notice that fails does not hold up the unsubscribe"
    );
    for attempt in 2..=5 {
        let report = poll(&mut worker, t0 + Span::minutes(attempt)).await;
        assert_eq!(
            (report.read, report.notices_sent, report.notices_failed),
            (0, 0, 1),
            "attempt {attempt}: {report:?}"
        );
    }
    assert!(store.owed_notices(100).await.unwrap().is_empty());
    // Given up: later polls find nothing to do.
    assert_eq!(
        worker.try_once(t0 + Span::minutes(10)).await.unwrap(),
        Outcome::Empty
    );
    let email = SubscriberEmail::parse("alice@example.net").unwrap();
    assert_eq!(store.notices_sent_to(&email).await.unwrap(), 0);
    // The request itself was filed as processed.
    let processed = std::fs::read_dir(inbox.join(".Processed/cur")).unwrap();
    assert_eq!(processed.count(), 1);
}

#[tokio::test]
async fn one_address_gets_at_most_the_daily_number_of_notices() {
    let dir = TempDir::new("notice-daily");
    // The file transport: notices are written to the outbox.
    let ctx = context(&write_config(dir.path(), &[("inbox.notices_per_day", "3")]));
    let store = Store::open(&ctx.settings.store.url).await.unwrap();
    let alice = add_active(&store, "alice@example.net").await;
    let email = SubscriberEmail::parse("alice@example.net").unwrap();
    let inbox = dir.path().join("inbox");
    let mut worker = inbox_worker(&ctx, store.clone()).unwrap();
    let t0 = from_ts(ts(Utc::now()));

    // Unsubscribed, back (as through the web), unsubscribed again: four times in three
    // hours. Each unsubscribe counts; the fourth is not confirmed by mail.
    let mut n = 0;
    let mut cycle = async |at: DateTime<Utc>| {
        n += 1;
        unsubscribe_request(&ctx, &inbox, alice, n);
        // Back through a confirmed sign-up, when an earlier cycle unsubscribed her.
        if let gazette::store::SignupOutcome::Confirm { request_id, .. } = store
            .web_signup(&email, None, "192.0.2.1", at)
            .await
            .unwrap()
        {
            store
                .web_confirm(request_id, "192.0.2.1", at - Span::days(1), at)
                .await
                .unwrap();
        }
        assert_eq!(
            store.subscriber(alice).await.unwrap().unwrap().status,
            SubscriberStatus::Active
        );
        poll(&mut worker, at).await
    };
    for hour in 0..3 {
        let report = cycle(t0 + Span::hours(hour)).await;
        assert_eq!(
            (report.unsubscribed, report.notices_sent),
            (1, 1),
            "hour {hour}: {report:?}"
        );
    }
    let fourth = cycle(t0 + Span::hours(3)).await;
    assert_eq!(
        (
            fourth.unsubscribed,
            fourth.notices_sent,
            fourth.notices_failed
        ),
        (1, 0, 0),
        "{fourth:?}"
    );
    assert_eq!(store.notices_sent_to(&email).await.unwrap(), 3);
    assert!(store.owed_notices(100).await.unwrap().is_empty());

    // A day after the second notice, one more is allowed.
    let next_day = cycle(t0 + Span::hours(25)).await;
    assert_eq!(
        (next_day.unsubscribed, next_day.notices_sent),
        (1, 1),
        "{next_day:?}"
    );
    assert_eq!(store.notices_sent_to(&email).await.unwrap(), 4);
    assert_eq!(
        store.subscriber(alice).await.unwrap().unwrap().status,
        SubscriberStatus::Unsubscribed
    );
}
