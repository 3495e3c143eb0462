//! Two daemons on one store racing for the same work at the same instant: a proof and a
//! mailbox of a hundred requests are each acted on once. Runs on both backends (tests/it
//! on SQLite, tests/it_pg on PostgreSQL, where the daemons are separate connections that
//! really do run at once).

use crate::delivery_support::{context as load, smtp_config};
use crate::support::mailstack::SmtpSink;
use crate::support::scheduler::{context, setup, utc};
use crate::support::{TempDir, add_active, unsubscribe_request};
use chrono::Utc;
use gazette::app::daemon::scheduler as new_scheduler;
use gazette::app::inbox_worker;
use gazette::domain::SubscriberEmail;
use gazette::schedule::Action;
use gazette::store::{Store, SubscriberStatus, from_ts, ts};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_daemons_at_the_proof_time_send_one_proof() {
    let (work, config) = setup("race-proof", 2, &[("schedule.send", "\"0 10 1 * *\"")]);
    let (ctx_a, store_a) = context(&config).await;
    let (ctx_b, store_b) = context(&config).await;
    let a = new_scheduler(&ctx_a, store_a.clone());
    let b = new_scheduler(&ctx_b, store_b.clone());
    let proof_time = utc(2021, 8, 31, 10, 0);
    // Each plans the proof unless it sees the other's claim already; the store's claim
    // lets one of them send it.
    let (ra, rb) = tokio::join!(a.try_once(proof_time), b.try_once(proof_time));
    let planned = [ra.unwrap(), rb.unwrap()]
        .iter()
        .filter(|r| r.actions.iter().any(|a| matches!(a, Action::SendProof(_))))
        .count();
    assert!(planned >= 1, "the proof time was seen");
    let proofs = std::fs::read_dir(work.path().join("outbox/editors/proof/2021-09-01"))
        .unwrap()
        .count();
    assert_eq!(proofs, 1, "one proof in the outbox");
    let slots = store_a.slot_records(utc(2021, 9, 1, 0, 0)).await.unwrap();
    assert_eq!(slots.len(), 1);
    assert!(slots[0].proof_sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_daemons_reading_a_hundred_requests_act_on_each_once() {
    let sink = SmtpSink::start(&[]);
    let dir = TempDir::new("race-inbox");
    let ctx = load(&smtp_config(&dir, sink.port(), &[]));
    let store = Store::open(&ctx.settings.store.url).await.unwrap();
    let inbox = dir.path().join("inbox");
    let mut people = Vec::new();
    for n in 0..100 {
        let email = format!("reader{n}@example.net");
        let id = add_active(&store, &email).await;
        unsubscribe_request(&ctx, &inbox, id, n);
        people.push((id, email));
    }
    let other = Store::open(&ctx.settings.store.url).await.unwrap();
    let mut a = inbox_worker(&ctx, store.clone()).unwrap();
    let mut b = inbox_worker(&ctx, other.clone()).unwrap();
    // Both poll at the same instants until every request is recorded and no notice is
    // owed; the lease hands the mailbox to one of them at a time.
    let mut now = from_ts(ts(Utc::now()));
    for _ in 0..20 {
        let (ra, rb) = tokio::join!(a.try_once(now), b.try_once(now));
        ra.unwrap();
        rb.unwrap();
        if store.inbox_message_count().await.unwrap() == 100
            && store.owed_notices(10).await.unwrap().is_empty()
        {
            break;
        }
        now += chrono::Duration::seconds(61);
    }
    assert_eq!(store.inbox_message_count().await.unwrap(), 100);
    assert!(store.owed_notices(10).await.unwrap().is_empty());
    for (id, email) in &people {
        let subscriber = store.subscriber(*id).await.unwrap().unwrap();
        assert_eq!(subscriber.status, SubscriberStatus::Unsubscribed, "{email}");
        let notices = store
            .notices_sent_to(&SubscriberEmail::parse(email).unwrap())
            .await
            .unwrap();
        assert_eq!(notices, 1, "one notice to {email}");
    }
    assert_eq!(sink.received_count(), 100, "one notice each at the relay");
}
