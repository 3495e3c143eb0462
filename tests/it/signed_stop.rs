//! A stop while a signed batch is being sent: the threads signing ahead of the
//! connections end with the batch, nothing hangs, and every reader gets the issue once
//! across the stop and the run after it.

use crate::delivery_support::{context, freeze, issue_id, smtp_config, spawn_delivery, worker};
use crate::support::TempDir;
use crate::support::dkim::rsa_key;
use crate::support::import_readers;
use crate::support::mailstack::SmtpSink;
use gazette::domain::SystemClock;
use gazette::send::RunEnd;
use gazette::store::Store;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread")]
async fn a_stop_during_a_signed_batch_ends_it_and_the_rest_go_out_once_on_the_next_run() {
    const READERS: usize = 24;
    // Each DATA is answered after a second: the stop comes while most of the batch is
    // signed or waiting, not sent.
    let sink = SmtpSink::start(&["-w", "1"]);
    let dir = TempDir::new("signed-stop");
    let key = rsa_key(dir.path(), 2048);
    let key_file = format!("\"{}\"", key.file.display());
    let config = smtp_config(
        &dir,
        sink.port(),
        &[
            ("dkim.domain", "\"example.org\""),
            ("dkim.selector", "\"news\""),
            ("dkim.private_key_file", &key_file),
        ],
    );
    let emails = import_readers(&config, READERS);
    let ctx = context(&config);
    let store = Store::open(&ctx.settings.store.url).await.unwrap();
    freeze(&ctx, &store, chrono::Utc::now()).await;

    let (run, stop) = spawn_delivery(&ctx, &store, READERS as u32);
    let deadline = Instant::now() + Duration::from_secs(30);
    while sink.received_count() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(sink.received_count() > 0, "the first messages went out");
    stop.cancel();
    let (report, end) = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the stopped batch ends")
        .unwrap()
        .unwrap();
    let (sent, unknown) = (report.sent, report.unknown);
    assert_eq!(end, RunEnd::Stopped);
    assert!(
        sent < READERS as u64,
        "the stop ended the batch: {sent} sent"
    );
    let ledger = store.delivery_counts(issue_id()).await.unwrap();
    assert_eq!((ledger.sent, ledger.unknown), (sent, unknown));
    assert_eq!(ledger.pending(), READERS as u64 - sent);

    // The next run sends the rest; rows claimed and not sent are free for it at once.
    let mut again = worker(&ctx, &store);
    let (report, end) = again
        .deliver_due_until(&SystemClock, &CancellationToken::new(), |_| {})
        .await
        .unwrap();
    assert_eq!(end, RunEnd::Done);
    assert_eq!(sent + report.sent, READERS as u64);
    sink.wait_for_received(READERS, Duration::from_secs(30));
    let counts = sink.recipient_counts();
    for email in &emails {
        assert_eq!(counts.get(email), Some(&1), "{email}");
    }
}
