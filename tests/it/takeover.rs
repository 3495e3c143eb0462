//! Work left behind by a worker that died: ledger rows it had claimed and a slot claim,
//! taken over by another worker on the same SQLite file, with each subscriber served
//! once. A holder that looks alive (on another host) is waited for until its time is up.

use crate::delivery_support::{Sending, issue_id, sending, worker};
use crate::support::TempDir;
use crate::support::mailstack::SmtpSink;
use crate::support::scheduler::{MONTHLY, context, setup, slot_state, utc};
use chrono::{DateTime, Utc};
use gazette::app::Context;
use gazette::app::daemon::scheduler as new_scheduler;
use gazette::domain::IssueId;
use gazette::send::{ConfiguredTransport, DeliveryWorker, Outcome};
use gazette::store::Store;
use std::time::Duration;

/// A worker on another host: it can never be seen to be gone from here.
const ELSEWHERE: &str = "elsewhere.example:4242:1";

/// The name a worker of a process that has exited would have left: this host, the pid
/// of a child that ran and was reaped.
fn dead_worker_name() -> String {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    format!("{}:{pid}:1", host.trim())
}

/// Steps `w` at `now` until nothing is due; the messages sent.
async fn drain(w: &mut DeliveryWorker<ConfiguredTransport>, now: DateTime<Utc>) -> u64 {
    let mut sent = 0;
    loop {
        match w.try_once(now).await.unwrap() {
            Outcome::Worked(report) => sent += report.sent,
            Outcome::NothingDue { .. } => return sent,
            other => panic!("the worker should be sending: {other:?}"),
        }
    }
}

/// Every subscriber got the issue exactly once, and the ledger says so.
async fn each_once(s: &Sending, sink: &SmtpSink) {
    sink.wait_for_received(s.emails.len(), Duration::from_secs(20));
    let counts = sink.recipient_counts();
    for email in &s.emails {
        assert_eq!(counts.get(email), Some(&1), "{email}: {counts:?}");
    }
    assert_eq!(counts.len(), s.emails.len(), "{counts:?}");
    let ledger = s.store.delivery_counts(issue_id()).await.unwrap();
    assert_eq!(
        (ledger.sent, ledger.total()),
        (s.emails.len() as u64, s.emails.len() as u64),
        "{ledger:?}"
    );
}

/// Claims `n` due rows at `at` for the batch `token`, until a minute later: what a worker
/// leaves in the store when it stops between claiming and recording.
async fn claim_left_in_store(s: &Sending, at: DateTime<Utc>, n: u32, token: &str) -> DateTime<Utc> {
    let until = at + chrono::Duration::seconds(60);
    let rows = s
        .store
        .claim_due_deliveries(at, n, token, until)
        .await
        .unwrap();
    assert_eq!(rows.len(), n as usize);
    until
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_claimed_by_a_dead_worker_of_this_host_are_taken_over_at_once_and_sent_once() {
    let sink = SmtpSink::start(&[]);
    let (s, ctx) = sending("claim-dead", sink.port(), 12, &[]).await;
    // A worker claimed four rows, then its process died before it sent or recorded them:
    // the claim is left in the store with a minute to run.
    let dead = dead_worker_name();
    claim_left_in_store(&s, s.t0, 4, &format!("{dead}#1")).await;

    // Another worker sends the rest, then sees that the holder's process is gone and
    // sends its four too, without waiting for the claim to end.
    let mut second = worker(&ctx, &s.store);
    let now = s.t0 + chrono::Duration::seconds(1);
    assert_eq!(drain(&mut second, now).await, 12);
    each_once(&s, &sink).await;
    assert!(s.store.claim_holders(now).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_claimed_by_a_live_worker_elsewhere_are_not_touched_before_the_claim_expires() {
    let sink = SmtpSink::start(&[]);
    let (s, ctx) = sending("claim-elsewhere", sink.port(), 6, &[]).await;
    let until = claim_left_in_store(&s, s.t0, 6, &format!("{ELSEWHERE}#7")).await;
    let mut w = worker(&ctx, &s.store);
    let during = s.t0 + chrono::Duration::seconds(30);
    let outcome = w.try_once(during).await.unwrap();
    assert_eq!(
        outcome,
        Outcome::NothingDue {
            next_due: Some(until)
        },
        "rows under a live claim were taken"
    );
    let ledger = s.store.delivery_counts(issue_id()).await.unwrap();
    assert_eq!((ledger.queued, ledger.sent), (6, 0), "{ledger:?}");
    // `status` shows who holds them.
    let holders = s.store.claim_holders(during).await.unwrap();
    assert_eq!(
        holders
            .iter()
            .map(|h| (h.holder.as_str(), h.rows, h.until))
            .collect::<Vec<_>>(),
        [(ELSEWHERE, 6, until)]
    );

    // Expired: the other host's worker is presumed gone.
    let sent = drain(&mut w, until + chrono::Duration::seconds(1)).await;
    assert_eq!(sent, 6);
    each_once(&s, &sink).await;
}

// ---------------------------------------------------------------------------------
// A slot claimed by a scheduler that died before freezing its issue

/// A monthly schedule at 10:00 UTC on the 1st, the September 2021 sections and
/// `readers` active subscribers, with the file transport.
async fn scheduled(label: &str, readers: usize) -> (TempDir, Context, Store) {
    let (dir, config) = setup(label, readers, MONTHLY);
    let (ctx, store) = context(&config).await;
    (dir, ctx, store)
}

/// Runs the delivery worker until nothing is due at `now`; the messages sent.
async fn deliver(ctx: &Context, store: &Store, now: DateTime<Utc>) -> u64 {
    let mut w = gazette::app::delivery::delivery_worker(ctx, store.clone()).unwrap();
    let mut sent = 0;
    loop {
        match w.try_once(now).await.unwrap() {
            Outcome::Worked(report) => sent += report.sent,
            Outcome::NothingDue { .. } => break,
            other => panic!("the worker should be sending: {other:?}"),
        }
    }
    sent
}

/// Claims the slot at 10:00 on 1 September 2021 for `holder` and freezes nothing: what
/// a scheduler stopped between claim and freeze leaves behind. The slot and its issue.
async fn claim_left_by(ctx: &Context, store: &Store, holder: &str) -> (DateTime<Utc>, IssueId) {
    let slot = utc(2021, 9, 1, 10, 0);
    let issue = new_scheduler(ctx, store.clone()).timing().issue_id(slot);
    assert!(store.claim_slot(slot, issue, holder, slot).await.unwrap());
    (slot, issue)
}

#[tokio::test]
async fn a_slot_claimed_by_a_dead_scheduler_is_finished_at_once_and_sent_once() {
    let (_dir, ctx, store) = scheduled("claim-dead", 3).await;
    let (slot, issue) = claim_left_by(&ctx, &store, &dead_worker_name()).await;
    let scheduler = new_scheduler(&ctx, store.clone());

    scheduler
        .try_once(slot + chrono::Duration::seconds(5))
        .await
        .unwrap();
    assert_eq!(slot_state(&store, slot).await.as_deref(), Some("sent"));
    assert_eq!(store.latest_issue().await.unwrap(), Some(issue));
    assert_eq!(
        deliver(&ctx, &store, slot + chrono::Duration::minutes(1)).await,
        3
    );

    // Later steps, by this scheduler and by a fresh one, send nothing more.
    scheduler
        .try_once(slot + chrono::Duration::minutes(2))
        .await
        .unwrap();
    new_scheduler(&ctx, store.clone())
        .try_once(slot + chrono::Duration::minutes(3))
        .await
        .unwrap();
    assert_eq!(
        deliver(&ctx, &store, slot + chrono::Duration::minutes(4)).await,
        0
    );
    let counts = store.delivery_counts(issue).await.unwrap();
    assert_eq!((counts.sent, counts.total()), (3, 3), "{counts:?}");
    assert_eq!(slot_state(&store, slot).await.as_deref(), Some("sent"));
}

#[tokio::test]
async fn a_slot_claimed_on_another_host_is_left_to_it_for_a_minute_then_finished_once() {
    let (_dir, ctx, store) = scheduled("claim-elsewhere", 2).await;
    let (slot, issue) = claim_left_by(&ctx, &store, ELSEWHERE).await;
    let scheduler = new_scheduler(&ctx, store.clone());

    // Within the grace the other daemon may still be freezing it.
    scheduler
        .try_once(slot + chrono::Duration::seconds(30))
        .await
        .unwrap();
    assert_eq!(slot_state(&store, slot).await.as_deref(), Some("claimed"));
    assert_eq!(store.latest_issue().await.unwrap(), None);

    // After it, this scheduler finishes the slot.
    scheduler
        .try_once(slot + chrono::Duration::seconds(61))
        .await
        .unwrap();
    assert_eq!(slot_state(&store, slot).await.as_deref(), Some("sent"));
    assert_eq!(
        deliver(&ctx, &store, slot + chrono::Duration::minutes(2)).await,
        2
    );
    scheduler
        .try_once(slot + chrono::Duration::minutes(3))
        .await
        .unwrap();
    assert_eq!(
        deliver(&ctx, &store, slot + chrono::Duration::minutes(4)).await,
        0
    );
    let counts = store.delivery_counts(issue).await.unwrap();
    assert_eq!((counts.sent, counts.total()), (2, 2), "{counts:?}");
}
