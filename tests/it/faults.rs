//! The failure policy against Postfix's smtp-sink injecting faults. The clock is passed
//! to the worker, so retries "hours later" take no time.

use crate::delivery_support::{Sending, context, issue_id, sending, smtp_config, worker};
use crate::support::mailstack::SmtpSink;
use chrono::{DateTime, Duration as Span, Utc};
use gazette::app::Context;
use gazette::send::Outcome;
use gazette::store::{DeliveryStatus, SubscriberStatus};
use std::collections::BTreeMap;
use std::time::Duration;

/// The same store and issue, sending to another port (the fault is "gone").
fn context_for(setup: &Sending, port: u16, extra: &[(&str, &str)]) -> Context {
    context(&smtp_config(&setup.dir, port, extra))
}

async fn statuses(setup: &Sending) -> BTreeMap<DeliveryStatus, usize> {
    let mut out = BTreeMap::new();
    for id in &setup.ids {
        let (status, _, _) = setup
            .store
            .delivery(issue_id(), *id)
            .await
            .unwrap()
            .unwrap();
        *out.entry(status).or_insert(0) += 1;
    }
    out
}

/// The last error recorded on the first subscriber's ledger row.
async fn first_error(setup: &Sending) -> Option<String> {
    let (_, _, error) = setup
        .store
        .delivery(issue_id(), setup.ids[0])
        .await
        .unwrap()
        .unwrap();
    error
}

fn worked(outcome: Outcome) -> gazette::send::BatchReport {
    match outcome {
        Outcome::Worked(report) => report,
        other => panic!("expected a batch, got {other:?}"),
    }
}

/// Every subscriber appears exactly once among what the sink recorded.
fn assert_each_once(sink: &SmtpSink, emails: &[String]) {
    let counts = sink.recipient_counts();
    for e in emails {
        assert_eq!(counts.get(e), Some(&1), "{e}: {counts:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn soft_rcpt_rejections_retry_with_backoff_and_go_out_when_the_fault_is_gone() {
    let sink = SmtpSink::start(&["-r", "RCPT"]);
    let (s, ctx) = sending("fault-4xx", sink.port(), 12, &[]).await;
    let mut w = worker(&ctx, &s.store);
    let report = worked(w.try_once(s.t0).await.unwrap());
    assert_eq!((report.retrying, report.sent, report.failed), (12, 0, 0));
    assert_eq!(statuses(&s).await[&DeliveryStatus::Retrying], 12);
    let (_, attempts, error) = s
        .store
        .delivery(issue_id(), s.ids[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(attempts, 1);
    assert!(error.as_deref().unwrap_or("").contains("450"), "{error:?}");
    // A plain 450 is the recipient's server being unhappy, not a request to slow down.
    assert!(w.rate_limit().is_none());
    assert_eq!(sink.received_count(), 0);

    // Still failing at the first retry: the next wait doubles.
    let first_retry = s.t0 + Span::minutes(5);
    assert!(matches!(
        w.try_once(s.t0 + Span::minutes(4)).await.unwrap(),
        Outcome::NothingDue { next_due: Some(at) } if at == first_retry
    ));
    worked(w.try_once(first_retry).await.unwrap());
    let second_retry = first_retry + Span::minutes(10);
    assert!(matches!(
        w.try_once(first_retry + Span::minutes(9)).await.unwrap(),
        Outcome::NothingDue { next_due: Some(at) } if at == second_retry
    ));

    drop(sink);
    let good = SmtpSink::start(&[]);
    // Another worker, with the relay fixed, takes the rows that are due.
    let ctx = context_for(&s, good.port(), &[]);
    let mut w = worker(&ctx, &s.store);
    let report = worked(w.try_once(second_retry).await.unwrap());
    assert_eq!((report.sent, report.retrying), (12, 0));
    assert_eq!(statuses(&s).await[&DeliveryStatus::Sent], 12);
    good.wait_for_received(12, Duration::from_secs(10));
    assert_each_once(&good, &s.emails);
}

#[tokio::test(flavor = "multi_thread")]
async fn temporary_failures_give_up_after_the_retry_period() {
    let sink = SmtpSink::start(&["-r", "RCPT"]);
    let (s, ctx) = sending(
        "fault-4xx-giveup",
        sink.port(),
        2,
        &[("delivery.retry_for", "\"1h\"")],
    )
    .await;
    let mut w = worker(&ctx, &s.store);
    worked(w.try_once(s.t0).await.unwrap());
    let report = worked(w.try_once(s.t0 + Span::hours(2)).await.unwrap());
    assert_eq!(report.failed, 2);
    let (status, attempts, error) = s
        .store
        .delivery(issue_id(), s.ids[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!((status, attempts), (DeliveryStatus::Failed, 2));
    assert!(error.unwrap().contains("gave up"));
    // Giving up on temporary failures is not a bounce.
    let sub = s.store.subscriber(s.ids[0]).await.unwrap().unwrap();
    assert_eq!(
        (sub.status, sub.bounce_count),
        (SubscriberStatus::Active, 0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hard_rcpt_rejections_fail_and_count_toward_bounced() {
    let sink = SmtpSink::start(&["-f", "RCPT"]);
    let (s, ctx) = sending(
        "fault-5xx",
        sink.port(),
        3,
        &[("delivery.bounce_threshold", "2")],
    )
    .await;
    let mut w = worker(&ctx, &s.store);
    let report = worked(w.try_once(s.t0).await.unwrap());
    assert_eq!((report.failed, report.sent, report.retrying), (3, 0, 0));
    let error = first_error(&s).await;
    assert!(error.as_deref().unwrap_or("").contains("500"), "{error:?}");
    let sub = s.store.subscriber(s.ids[0]).await.unwrap().unwrap();
    assert_eq!(
        (sub.status, sub.bounce_count),
        (SubscriberStatus::Active, 1)
    );
    // Failed rows are final: nothing is due any more.
    assert!(matches!(
        w.try_once(s.t0 + Span::days(1)).await.unwrap(),
        Outcome::NothingDue { next_due: None }
    ));
    // A second permanent failure (the next issue, or a DSN) makes it bounced.
    let status = s
        .store
        .record_bounce(s.ids[0], ctx.settings.delivery.bounce_threshold, Utc::now())
        .await
        .unwrap();
    assert_eq!(status, SubscriberStatus::Bounced);
}

/// The relay failed: every row is as it was queued, and the relay is backed off.
fn relay_down(outcome: Outcome) -> (String, DateTime<Utc>) {
    match outcome {
        Outcome::RelayDown {
            report,
            error,
            retry_at,
        } => {
            assert_eq!(report.total(), 0, "{report:?}");
            (error, retry_at)
        }
        other => panic!("expected the relay to be down, got {other:?}"),
    }
}

async fn all_queued_untouched(setup: &Sending) {
    for id in &setup.ids {
        let (status, attempts, _) = setup
            .store
            .delivery(issue_id(), *id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((status, attempts), (DeliveryStatus::Queued, 0));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_421_on_data_stops_sending_without_charging_the_recipients() {
    let sink = SmtpSink::start(&["-Q", "DATA"]);
    let (s, ctx) = sending("fault-421", sink.port(), 3, &[]).await;
    let mut w = worker(&ctx, &s.store);
    let (error, retry_at) = relay_down(w.try_once(s.t0).await.unwrap());
    assert!(error.contains("421") && error.contains("DATA"), "{error}");
    assert!(retry_at > s.t0);
    all_queued_untouched(&s).await;
    let relay = s.store.relay_status().await.unwrap().unwrap();
    assert!(!relay.up);
    assert_eq!(relay.retry_at, Some(retry_at));
    assert_eq!(sink.received_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_dropped_after_the_final_dot_is_unknown_retried_and_no_row_is_lost() {
    let sink = SmtpSink::start(&["-q", "."]);
    let (s, ctx) = sending("fault-drop", sink.port(), 5, &[]).await;
    let mut w = worker(&ctx, &s.store);
    let report = worked(w.try_once(s.t0).await.unwrap());
    assert_eq!((report.unknown, report.sent, report.failed), (5, 0, 0));
    assert_eq!(statuses(&s).await[&DeliveryStatus::Unknown], 5);
    let error = first_error(&s).await;
    assert!(
        error.as_deref().unwrap_or("").contains("connection lost"),
        "{error:?}"
    );
    // The server did get them: we cannot know, so they go again (a duplicate at worst).
    sink.wait_for_received(5, Duration::from_secs(10));
    drop(sink);

    let good = SmtpSink::start(&[]);
    // Another worker, with the relay fixed, takes the rows that are due.
    let ctx = context_for(&s, good.port(), &[]);
    let mut w = worker(&ctx, &s.store);
    let report = worked(w.try_once(s.t0 + Span::minutes(5)).await.unwrap());
    assert_eq!(report.sent, 5);
    good.wait_for_received(5, Duration::from_secs(10));
    assert_each_once(&good, &s.emails);
    let counts = s.store.delivery_counts(issue_id()).await.unwrap();
    assert_eq!((counts.sent, counts.total()), (5, 5));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_server_is_a_relay_fault_and_a_patient_client_gets_through() {
    // DATA is answered after 2 s; with 1 s per command the relay counts as stalled.
    let sink = SmtpSink::start(&["-w", "2"]);
    let (s, ctx) = sending("fault-delay", sink.port(), 2, &[("smtp.timeout", "\"1s\"")]).await;
    let mut w = worker(&ctx, &s.store);
    let (error, _) = relay_down(w.try_once(s.t0).await.unwrap());
    assert!(
        error.contains("no answer") && error.contains("DATA"),
        "{error}"
    );
    all_queued_untouched(&s).await;

    // Another worker, with the relay fixed, takes the rows that are due.
    let ctx = context_for(&s, sink.port(), &[("smtp.timeout", "\"10s\"")]);
    let mut w = worker(&ctx, &s.store);
    let report = worked(w.try_once(s.t0 + Span::minutes(5)).await.unwrap());
    assert_eq!((report.sent, report.retrying), (2, 0));
    assert!(s.store.relay_status().await.unwrap().unwrap().up);
}
