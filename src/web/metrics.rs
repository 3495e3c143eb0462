//! `/metrics` in the Prometheus text exposition format (version 0.0.4).
//!
//! Most numbers are read from the store on each scrape (the delivery ledger, the
//! subscribers, the inbox log), so they are right whichever process did the work; the
//! web's own events are counted in memory since the process started.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// What the web itself has done since it started.
#[derive(Debug, Default)]
pub struct WebCounters {
    pub signups: AtomicU64,
    pub signups_rate_limited: AtomicU64,
    pub confirmations: AtomicU64,
    pub unsubscribes: AtomicU64,
    pub resubscribes: AtomicU64,
    pub rejected_tokens: AtomicU64,
}

impl WebCounters {
    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Numbers read from the store for one scrape.
#[derive(Debug, Clone, Default)]
pub struct StoreFigures {
    /// Delivery ledger rows by status (`queued`, `sent`, `retrying`, `failed`, `skipped`).
    pub deliveries: Vec<(String, u64)>,
    /// Subscribers by status (`pending`, `active`, `unsubscribed`, `bounced`).
    pub subscribers: Vec<(String, u64)>,
    /// Inbox messages processed, when the store has the inbox log.
    pub inbox_processed: Option<u64>,
    /// Delivery reports the inbox could not tie to a message we sent (left for a person).
    pub inbox_unverified_reports: Option<u64>,
    /// When the inbox was last polled (Unix seconds), when known.
    pub inbox_last_poll: Option<f64>,
    /// The relay's state as the delivery worker last saw it, once it has tried.
    pub relay: Option<crate::store::RelayStatus>,
}

/// What this process knows of itself, read at each scrape.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessFigures {
    /// Confirmation messages the web has promised and not yet handed to the transport.
    pub confirmations_in_flight: u64,
    /// Steps the scheduler in this process has finished (`serve` only).
    pub scheduler_steps: Option<u64>,
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The exposition text for one scrape.
pub fn render(store: &StoreFigures, web: &WebCounters, process: &ProcessFigures) -> String {
    let mut out = String::with_capacity(2048);
    family(
        &mut out,
        "gazette_messages",
        "gauge",
        "Delivery ledger rows by status (sent, retrying, failed, queued, skipped).",
    );
    for (status, n) in &store.deliveries {
        let _ = writeln!(out, "gazette_messages{{status=\"{}\"}} {n}", label(status));
    }
    family(
        &mut out,
        "gazette_subscribers",
        "gauge",
        "Subscribers by status.",
    );
    for (status, n) in &store.subscribers {
        let _ = writeln!(
            out,
            "gazette_subscribers{{status=\"{}\"}} {n}",
            label(status)
        );
    }
    if let Some(relay) = &store.relay {
        family(
            &mut out,
            "gazette_relay_up",
            "gauge",
            "1 while the relay (or the outbox folder) takes messages, 0 while sending is stopped by a relay or local fault.",
        );
        let _ = writeln!(out, "gazette_relay_up {}", u8::from(relay.up));
        family(
            &mut out,
            "gazette_relay_failures",
            "gauge",
            "Failed tries of the relay in a row (0 while it is up).",
        );
        let _ = writeln!(out, "gazette_relay_failures {}", relay.failures);
        family(
            &mut out,
            "gazette_relay_retry_timestamp_seconds",
            "gauge",
            "While the relay is down: when the next try is due, in Unix seconds (0 while it is up).",
        );
        let _ = writeln!(
            out,
            "gazette_relay_retry_timestamp_seconds {}",
            relay.retry_at.map_or(0, |at| at.timestamp())
        );
    }
    if let Some(n) = store.inbox_processed {
        family(
            &mut out,
            "gazette_inbox_processed_total",
            "counter",
            "Inbox messages processed.",
        );
        let _ = writeln!(out, "gazette_inbox_processed_total {n}");
    }
    if let Some(n) = store.inbox_unverified_reports {
        family(
            &mut out,
            "gazette_inbox_unverified_reports_total",
            "counter",
            "Delivery reports not proven to be about a message we sent: counted against \
             nobody, left for a person.",
        );
        let _ = writeln!(out, "gazette_inbox_unverified_reports_total {n}");
    }
    if let Some(t) = store.inbox_last_poll {
        family(
            &mut out,
            "gazette_inbox_last_poll_timestamp_seconds",
            "gauge",
            "When the inbox was last polled, in Unix seconds.",
        );
        let _ = writeln!(out, "gazette_inbox_last_poll_timestamp_seconds {t}");
    }
    if let Some(n) = process.scheduler_steps {
        family(
            &mut out,
            "gazette_scheduler_steps_total",
            "counter",
            "Scheduler steps finished since start: each looks at the slots and does what is due.",
        );
        let _ = writeln!(out, "gazette_scheduler_steps_total {n}");
    }
    family(
        &mut out,
        "gazette_web_confirmations_in_flight",
        "gauge",
        "Confirmation messages promised to visitors and not yet handed to the transport.",
    );
    let _ = writeln!(
        out,
        "gazette_web_confirmations_in_flight {}",
        process.confirmations_in_flight
    );
    let counters: [(&str, &str, &AtomicU64); 6] = [
        (
            "gazette_web_signups_total",
            "Sign-up forms accepted since start.",
            &web.signups,
        ),
        (
            "gazette_web_signups_rate_limited_total",
            "Sign-ups refused or not mailed because of a rate limit since start.",
            &web.signups_rate_limited,
        ),
        (
            "gazette_web_confirmations_total",
            "Subscriptions confirmed through the web since start.",
            &web.confirmations,
        ),
        (
            "gazette_web_unsubscribes_total",
            "Unsubscribes through the web (page or one-click) since start.",
            &web.unsubscribes,
        ),
        (
            "gazette_web_resubscribes_total",
            "Requests to come back after an unsubscribe (each mails a confirmation link) since start.",
            &web.resubscribes,
        ),
        (
            "gazette_web_rejected_tokens_total",
            "Requests with a forged, altered or expired token since start.",
            &web.rejected_tokens,
        ),
    ];
    for (name, help, counter) in counters {
        family(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {}", counter.load(Ordering::Relaxed));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_families_with_help_and_type() {
        let figures = StoreFigures {
            deliveries: vec![("sent".into(), 3)],
            subscribers: vec![("active".into(), 2), ("we\"ird".into(), 1)],
            inbox_processed: None,
            inbox_unverified_reports: None,
            inbox_last_poll: None,
            relay: None,
        };
        let text = render(
            &figures,
            &WebCounters::default(),
            &ProcessFigures::default(),
        );
        assert!(
            text.contains("# TYPE gazette_messages gauge\ngazette_messages{status=\"sent\"} 3\n")
        );
        assert!(text.contains("gazette_subscribers{status=\"we\\\"ird\"} 1\n"));
        assert!(!text.contains("inbox"));
        assert!(!text.contains("relay"));
        assert!(!text.contains("scheduler"));
        assert!(text.ends_with("gazette_web_rejected_tokens_total 0\n"));
    }

    #[test]
    fn shows_a_relay_that_is_down_and_when_it_is_tried_again() {
        let at = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let figures = StoreFigures {
            relay: Some(crate::store::RelayStatus {
                up: false,
                since: at,
                retry_at: Some(at),
                failures: 3,
                error: Some("cannot connect".into()),
            }),
            ..StoreFigures::default()
        };
        let text = render(
            &figures,
            &WebCounters::default(),
            &ProcessFigures::default(),
        );
        assert!(text.contains("\ngazette_relay_up 0\n"), "{text}");
        assert!(text.contains("\ngazette_relay_failures 3\n"), "{text}");
        assert!(text.contains("\ngazette_relay_retry_timestamp_seconds 1700000000\n"));
    }
}
