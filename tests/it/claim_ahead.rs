//! The next batch is claimed while the batch before is sent, so the connections do not
//! wait for a write to the store between batches; rows claimed ahead and not sent are
//! given back when the worker stops.

use crate::delivery_support::{context, freeze, issue_id, smtp_config, spawn_delivery};
use crate::support::TempDir;
use crate::support::import_readers;
use crate::support::mailstack::SmtpSink;
use gazette::send::RunEnd;
use gazette::store::Store;
use std::time::{Duration, Instant};

/// The rows held by live claims now.
async fn claimed_rows(store: &Store) -> u64 {
    store
        .claim_holders(chrono::Utc::now())
        .await
        .unwrap()
        .iter()
        .map(|h| h.rows)
        .sum()
}

/// Polls until the store shows `rows` claimed while the sink has completed no message
/// yet (the first batch is still waiting for its answers), or the deadline passes;
/// returns the most rows seen held in that window.
async fn held_before_any_answer(store: &Store, sink: &SmtpSink, rows: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut most = 0;
    while Instant::now() < deadline {
        let held = claimed_rows(store).await;
        if sink.received_count() > 0 {
            break;
        }
        most = most.max(held);
        if most == rows {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    most
}

#[tokio::test(flavor = "multi_thread")]
async fn the_next_batch_is_claimed_while_a_batch_is_sent_and_everyone_gets_one_copy() {
    const READERS: usize = 12;
    const BATCH: u64 = 4;
    // The sink waits a second before answering each DATA: a batch is in flight long
    // enough to look at the store meanwhile.
    let sink = SmtpSink::start(&["-w", "1"]);
    let dir = TempDir::new("claim-ahead");
    let config = smtp_config(&dir, sink.port(), &[]);
    let emails = import_readers(&config, READERS);
    let ctx = context(&config);
    let store = Store::open(&ctx.settings.store.url).await.unwrap();
    freeze(&ctx, &store, chrono::Utc::now()).await;

    let (run, _stop) = spawn_delivery(&ctx, &store, BATCH as u32);
    // While the first batch waits for its answers, the second is claimed already.
    assert_eq!(
        held_before_any_answer(&store, &sink, 2 * BATCH).await,
        2 * BATCH,
        "rows held while the first batch is sent"
    );

    let (report, end) = run.await.unwrap().unwrap();
    let sent = report.sent;
    assert_eq!((sent, end), (READERS as u64, RunEnd::Done));
    let counts = sink.recipient_counts();
    for email in &emails {
        assert_eq!(counts.get(email), Some(&1), "{email}");
    }
    let ledger = store.delivery_counts(issue_id()).await.unwrap();
    assert_eq!(ledger.sent, READERS as u64);
    assert_eq!(claimed_rows(&store).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_claimed_ahead_are_given_back_when_the_worker_stops() {
    const READERS: usize = 12;
    const BATCH: u64 = 4;
    let sink = SmtpSink::start(&["-w", "1"]);
    let dir = TempDir::new("claim-ahead-stop");
    let config = smtp_config(&dir, sink.port(), &[]);
    import_readers(&config, READERS);
    let ctx = context(&config);
    let store = Store::open(&ctx.settings.store.url).await.unwrap();
    freeze(&ctx, &store, chrono::Utc::now()).await;

    let (run, stop) = spawn_delivery(&ctx, &store, BATCH as u32);
    assert_eq!(
        held_before_any_answer(&store, &sink, 2 * BATCH).await,
        2 * BATCH
    );
    stop.cancel();
    let (report, end) = run.await.unwrap().unwrap();
    let sent = report.sent;
    assert_eq!(end, RunEnd::Stopped);
    // The batch in flight finished within the stop grace; nothing else is held, and
    // the rest are due for whoever sends next.
    assert_eq!(claimed_rows(&store).await, 0);
    let ledger = store.delivery_counts(issue_id()).await.unwrap();
    assert_eq!(ledger.sent, sent);
    assert_eq!(ledger.pending(), READERS as u64 - sent);
    let next = store.next_due_at().await.unwrap();
    assert!(
        next.is_some_and(|at| at <= chrono::Utc::now()),
        "the rows claimed ahead are due at once: {next:?}"
    );
}
