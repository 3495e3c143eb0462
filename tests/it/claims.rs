//! Several workers on one store send one issue together: each claims its own rows, so
//! every subscriber gets the issue exactly once and every worker sends a share.

use crate::delivery_support::{context, freeze, issue_id, sending, smtp_config, worker};
use crate::support::mailstack::{SmtpSink, free_port};
use crate::support::{TempDir, import_readers};
use chrono::Duration as Span;
use gazette::domain::SystemClock;
use gazette::send::{Outcome, RunEnd};
use gazette::settings::{Settings, SettingsError};
use gazette::store::{DeliveryStatus, DeliveryUpdate, Store};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread")]
async fn two_workers_on_one_store_each_send_a_share_and_everyone_once() {
    const READERS: usize = 2_000;
    let sink = SmtpSink::start(&[]);
    let dir = TempDir::new("claims-share");
    let config = smtp_config(&dir, sink.port(), &[]);
    let emails = import_readers(&config, READERS);
    let ctx = context(&config);
    // Two handles on one SQLite file, as two processes would have.
    let (store_a, store_b) = (
        Store::open(&ctx.settings.store.url).await.unwrap(),
        Store::open(&ctx.settings.store.url).await.unwrap(),
    );
    freeze(&ctx, &store_a, chrono::Utc::now()).await;

    let (mut a, mut b) = (worker(&ctx, &store_a), worker(&ctx, &store_b));
    let stop = CancellationToken::new();
    let (ran_a, ran_b) = tokio::join!(
        a.deliver_due_until(&SystemClock, &stop, |_| {}),
        b.deliver_due_until(&SystemClock, &stop, |_| {}),
    );
    let ((sent_a, end_a), (sent_b, end_b)) = (ran_a.unwrap(), ran_b.unwrap());
    assert_eq!((end_a, end_b), (RunEnd::Done, RunEnd::Done));
    assert!(
        sent_a.sent > 0 && sent_b.sent > 0,
        "each worker sends a share: {} and {}",
        sent_a.sent,
        sent_b.sent
    );
    assert_eq!(sent_a.sent + sent_b.sent, READERS as u64);

    sink.wait_for_received(READERS, Duration::from_secs(60));
    let counts = sink.recipient_counts();
    for email in &emails {
        assert_eq!(counts.get(email), Some(&1), "{email}");
    }
    assert_eq!(counts.len(), READERS);
    let ledger = store_a.delivery_counts(issue_id()).await.unwrap();
    assert_eq!(
        (ledger.sent, ledger.total()),
        (READERS as u64, READERS as u64)
    );
}

#[test]
fn the_claim_time_defaults_to_a_minute_and_a_short_one_is_refused_by_its_key() {
    let dir = TempDir::new("claims-settings");
    let config = smtp_config(&dir, 25, &[]);
    let settings = Settings::load(&config).unwrap();
    assert_eq!(settings.delivery.claim_ttl, Duration::from_secs(60));

    let config = smtp_config(&dir, 25, &[("delivery.claim_ttl", "\"2m\"")]);
    let settings = Settings::load(&config).unwrap();
    assert_eq!(settings.delivery.claim_ttl, Duration::from_secs(120));

    let config = smtp_config(&dir, 25, &[("delivery.claim_ttl", "\"5s\"")]);
    match Settings::load(&config) {
        Err(SettingsError::Invalid { key, .. }) => assert_eq!(key, "delivery.claim_ttl"),
        other => panic!("a 5 s claim was accepted: {other:?}"),
    }
}

#[tokio::test]
async fn a_late_result_for_a_row_taken_over_is_dropped_with_its_side_effects() {
    // Three rows; nothing listens on the port, as no message is sent here: the results
    // are written straight through the store, as two workers would write them.
    let (s, _ctx) = sending("claims-late", 9, 3, &[]).await;
    let [first, second, third] = [s.ids[0], s.ids[1], s.ids[2]];
    let issue = issue_id();
    let a = "worker-a.example:1:1#1";
    let b = "worker-b.example:2:1#1";
    let a_rows = s
        .store
        .claim_due_deliveries(s.t0, 10, a, s.t0 + Span::seconds(60))
        .await
        .unwrap();
    assert_eq!(a_rows.len(), 3);
    // A live claim is not taken again.
    let none = s
        .store
        .claim_due_deliveries(s.t0 + Span::seconds(59), 10, b, s.t0 + Span::seconds(119))
        .await
        .unwrap();
    assert!(none.is_empty(), "{none:?}");

    // A's claim ran out; B took all three and recorded two of them.
    let later = s.t0 + Span::seconds(61);
    let b_rows = s
        .store
        .claim_due_deliveries(later, 10, b, later + Span::seconds(60))
        .await
        .unwrap();
    assert_eq!(b_rows.len(), 3);
    let bounce = |at| DeliveryUpdate::Failed {
        at,
        error: "550 5.1.1 no such user".into(),
        bounce_threshold: Some(5),
    };
    let dropped = s
        .store
        .record_claimed_deliveries(
            b,
            &[
                (issue, first, bounce(later)),
                (issue, second, DeliveryUpdate::Sent { at: later }),
            ],
        )
        .await
        .unwrap();
    assert_eq!(dropped, 0);
    // The row B did not try is free again at once.
    assert!(s.store.claim_holders(later).await.unwrap().is_empty());
    assert_eq!(s.store.next_due_at().await.unwrap(), Some(s.t0));

    // A's late results: none is written, and neither has its side effect (a sent row
    // clearing the bounce count, a 5xx counting toward bounced).
    let dropped = s
        .store
        .record_claimed_deliveries(
            a,
            &[
                (issue, first, DeliveryUpdate::Sent { at: later }),
                (issue, second, bounce(later)),
                (issue, third, DeliveryUpdate::Sent { at: later }),
            ],
        )
        .await
        .unwrap();
    assert_eq!(dropped, 3);
    let row = |id| {
        let store = s.store.clone();
        async move {
            let (status, attempts, _) = store.delivery(issue, id).await.unwrap().unwrap();
            let bounces = store.subscriber(id).await.unwrap().unwrap().bounce_count;
            (status, attempts, bounces)
        }
    };
    assert_eq!(row(first).await, (DeliveryStatus::Failed, 1, 1));
    assert_eq!(row(second).await, (DeliveryStatus::Sent, 1, 0));
    assert_eq!(row(third).await, (DeliveryStatus::Queued, 0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_that_ends_early_frees_the_rows_it_did_not_try() {
    // Nothing listens: the relay is down before any row is handed over.
    let (s, ctx) = sending("claims-relay-down", free_port(), 40, &[]).await;
    let mut w = worker(&ctx, &s.store);
    let outcome = w.try_once(s.t0).await.unwrap();
    assert!(matches!(outcome, Outcome::RelayDown { .. }), "{outcome:?}");
    // Due now, for any worker, not when the claim would have run out.
    assert!(s.store.claim_holders(s.t0).await.unwrap().is_empty());
    assert_eq!(s.store.next_due_at().await.unwrap(), Some(s.t0));
    let counts = s.store.delivery_counts(issue_id()).await.unwrap();
    assert_eq!(counts.queued, 40);
}
