//! One mailbox, several daemons: the inbox is read by one daemon at a time (a lease in
//! the store), so a request is acted on and its notice sent once however many run; a
//! daemon that dies hands the mailbox over when its lease ends, or at once when its
//! process is gone from this host. Maildir on disk, a SQLite file, a real smtp-sink.

use crate::delivery_support::{context, smtp_config};
use crate::support::mailstack::{SmtpSink, free_port};
use crate::support::{TempDir, add_active, unsubscribe_request};
use chrono::{Duration as Span, Utc};
use gazette::app::inbox_worker;
use gazette::inbox::Outcome;
use gazette::store::{Store, SubscriberStatus, from_ts, ts};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_daemons_reading_one_mailbox_send_an_owed_notice_once() {
    // The relay answers each message after a second, so both daemons are in the middle
    // of sending at the same time.
    let sink = SmtpSink::start(&["-w", "1"]);
    let dir = TempDir::new("inbox-two-daemons");
    let down = smtp_config(&dir, free_port(), &[]);
    let ctx = context(&down);
    let store = Store::open(&ctx.settings.store.url).await.unwrap();
    let alice = add_active(&store, "alice@example.net").await;
    unsubscribe_request(&ctx, &dir.path().join("inbox"), alice, 1);
    let t0 = from_ts(ts(Utc::now()));

    // A first daemon acts on the request while the relay is down: the notice is owed.
    let mut first = inbox_worker(&ctx, store.clone()).unwrap();
    let Outcome::Worked(report) = first.try_once(t0).await.unwrap() else {
        panic!("a request was waiting");
    };
    assert_eq!((report.unsubscribed, report.notices_failed), (1, 1));
    drop(first);
    assert_eq!(store.owed_notices(10).await.unwrap().len(), 1);
    // Its lease ends (it stopped without giving it up).
    let later = t0 + Span::minutes(30);

    let up = context(&smtp_config(&dir, sink.port(), &[]));
    let mut a = inbox_worker(&up, store.clone()).unwrap();
    let mut b = inbox_worker(&up, store.clone()).unwrap();
    let (ra, rb) = tokio::join!(a.try_once(later), b.try_once(later));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(sink.received_count(), 1, "one notice: {ra:?} {rb:?}");
    let standing_by = [&ra, &rb]
        .iter()
        .filter(|r| matches!(r, Outcome::StandingBy { .. }))
        .count();
    assert_eq!(standing_by, 1, "{ra:?} {rb:?}");
    assert!(store.owed_notices(10).await.unwrap().is_empty());
    assert_eq!(
        store.subscriber(alice).await.unwrap().unwrap().status,
        SubscriberStatus::Unsubscribed
    );
}

#[tokio::test]
async fn a_daemon_on_another_host_keeps_the_mailbox_until_its_lease_ends() {
    let dir = TempDir::new("inbox-lease-expiry");
    let ctx = context(&smtp_config(&dir, free_port(), &[]));
    let store = Store::open(&ctx.settings.store.url).await.unwrap();
    let alice = add_active(&store, "alice@example.net").await;
    unsubscribe_request(&ctx, &dir.path().join("inbox"), alice, 1);
    let t0 = from_ts(ts(Utc::now()));
    let until = t0 + Span::minutes(3);
    assert!(
        store
            .acquire_lease("inbox", "elsewhere.example:4242:1", t0, until)
            .await
            .unwrap()
    );

    let mut worker = inbox_worker(&ctx, store.clone()).unwrap();
    let before = worker.try_once(until - Span::seconds(1)).await.unwrap();
    assert_eq!(
        before,
        Outcome::StandingBy {
            holder: "elsewhere.example:4242:1".into()
        }
    );
    assert_eq!(
        store.subscriber(alice).await.unwrap().unwrap().status,
        SubscriberStatus::Active,
        "nothing is read while another daemon holds the mailbox"
    );
    let leases = store.leases().await.unwrap();
    assert_eq!(
        leases,
        [(
            "inbox".to_owned(),
            "elsewhere.example:4242:1".to_owned(),
            until
        )],
        "status can tell who reads the mailbox"
    );
    let after = worker.try_once(until + Span::seconds(1)).await.unwrap();
    assert!(matches!(after, Outcome::Worked(_)), "{after:?}");
    assert_eq!(
        store.subscriber(alice).await.unwrap().unwrap().status,
        SubscriberStatus::Unsubscribed
    );
}

#[tokio::test]
async fn a_daemon_whose_process_is_gone_hands_the_mailbox_over_at_once() {
    let dir = TempDir::new("inbox-lease-gone");
    let ctx = context(&smtp_config(&dir, free_port(), &[]));
    let store = Store::open(&ctx.settings.store.url).await.unwrap();
    let alice = add_active(&store, "alice@example.net").await;
    unsubscribe_request(&ctx, &dir.path().join("inbox"), alice, 1);
    let t0 = from_ts(ts(Utc::now()));
    // A process of this host that has exited.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let dead = format!("{}:{pid}:1", host.trim());
    assert!(
        store
            .acquire_lease("inbox", &dead, t0, t0 + Span::hours(1))
            .await
            .unwrap()
    );

    let mut worker = inbox_worker(&ctx, store.clone()).unwrap();
    let outcome = worker.try_once(t0).await.unwrap();
    assert!(matches!(outcome, Outcome::Worked(_)), "{outcome:?}");
    assert_eq!(
        store.subscriber(alice).await.unwrap().unwrap().status,
        SubscriberStatus::Unsubscribed
    );
}
