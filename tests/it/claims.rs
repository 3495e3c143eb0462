//! Several workers on one store send one issue together: each claims its own rows, so
//! every subscriber gets the issue exactly once and every worker sends a share.

use crate::delivery_support::{context, freeze, issue_id, smtp_config, worker};
use crate::support::mailstack::SmtpSink;
use crate::support::{TempDir, import_readers};
use gazette::domain::SystemClock;
use gazette::send::RunEnd;
use gazette::settings::{Settings, SettingsError};
use gazette::store::Store;
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
