//! Several relays: `[smtp]` and `[[smtp.relays]]`, by priority and weight. A relay that
//! is down is passed over and the others carry the load; a standby is used only when the
//! first choice is down. Against real smtp-sinks and a port nothing listens on, through
//! the real binary.

use crate::delivery_support::{add_subscribers, context, smtp_config};
use crate::support::mailstack::{SmtpSink, free_port};
use crate::support::{TempDir, describe, gazette_command};
use gazette::settings::{Settings, SettingsError};
use gazette::store::{DeliveryStatus, Store};
use std::path::Path;

/// `n` active subscribers `reader{i}@example.org` in the config's store.
async fn subscribers(config: &Path, n: usize) -> Store {
    let ctx = context(config);
    let store = Store::open(&ctx.settings.store.url).await.unwrap();
    let emails: Vec<String> = (0..n).map(|i| format!("reader{i}@example.org")).collect();
    let people: Vec<(&str, Option<&str>)> = emails.iter().map(|e| (e.as_str(), None)).collect();
    add_subscribers(&store, &people).await;
    store
}

/// Every ledger row of the issue, by status.
async fn statuses(store: &Store) -> Vec<DeliveryStatus> {
    let issue = gazette::domain::IssueId::parse("2021-09-01").unwrap();
    let mut out = Vec::new();
    for s in store.subscribers(None).await.unwrap() {
        if let Some((status, _, _)) = store.delivery(issue, s.id).await.unwrap() {
            out.push(status);
        }
    }
    out
}

fn relay(port: u16, priority: u32, weight: u32) -> String {
    format!(
        "{{ host = \"127.0.0.1\", port = {port}, tls = \"none\", priority = {priority}, weight = {weight} }}"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_that_is_down_is_passed_over_and_the_others_share_the_load() {
    let (b, c) = (SmtpSink::start(&[]), SmtpSink::start(&[]));
    let dir = TempDir::new("pool-down");
    // `[smtp]` itself points at a port nothing listens on.
    let relays = format!("[{}, {}]", relay(b.port(), 0, 1), relay(c.port(), 0, 1));
    let config = smtp_config(&dir, free_port(), &[("smtp.relays", &relays)]);
    let store = subscribers(&config, 40).await;

    let out = gazette_command(&config, &["send-now", "--date", "2021-09-01"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));

    let mut counts = b.recipient_counts();
    for (to, n) in c.recipient_counts() {
        *counts.entry(to).or_insert(0) += n;
    }
    assert_eq!(counts.len(), 40, "every subscriber got the issue");
    assert!(counts.values().all(|&n| n == 1), "exactly once: {counts:?}");
    let (nb, nc) = (b.received_count(), c.received_count());
    assert!(
        nb > 0 && nc > 0,
        "both relays carried a share: {nb} and {nc}"
    );
    let rows = statuses(&store).await;
    assert_eq!(rows.len(), 40);
    assert!(rows.iter().all(|s| *s == DeliveryStatus::Sent), "{rows:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standby_relay_carries_nothing_while_the_first_is_up() {
    let (first, standby) = (SmtpSink::start(&[]), SmtpSink::start(&[]));
    let dir = TempDir::new("pool-standby");
    let relays = format!("[{}]", relay(standby.port(), 1, 1));
    let config = smtp_config(&dir, first.port(), &[("smtp.relays", &relays)]);
    subscribers(&config, 12).await;

    let out = gazette_command(&config, &["send-now", "--date", "2021-09-01"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(first.received_count(), 12);
    assert_eq!(standby.received_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standby_relay_takes_every_message_while_the_first_is_down() {
    let standby = SmtpSink::start(&[]);
    let dir = TempDir::new("pool-takeover");
    let relays = format!("[{}]", relay(standby.port(), 1, 1));
    let config = smtp_config(&dir, free_port(), &[("smtp.relays", &relays)]);
    subscribers(&config, 12).await;

    let out = gazette_command(&config, &["send-now", "--date", "2021-09-01"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let counts = standby.recipient_counts();
    assert_eq!(counts.len(), 12);
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
}

#[test]
fn a_relay_entry_that_cannot_work_is_refused_by_its_key() {
    let dir = TempDir::new("pool-settings");
    for (relays, key) in [
        (
            "[{ host = \"127.0.0.1\", weight = 0 }]",
            "smtp.relays[0].weight",
        ),
        (
            "[{ host = \"a.example.org\" }, { host = \"b.example.org\", tls = \"ssl\" }]",
            "smtp.relays[1].tls",
        ),
        (
            "[{ host = \"a.example.org\", username = \"only-a-name\" }]",
            "smtp.relays[0].username",
        ),
    ] {
        let config = smtp_config(&dir, 25, &[("smtp.relays", relays)]);
        match Settings::load(&config) {
            Err(SettingsError::Invalid { key: k, .. }) => assert_eq!(k, key, "{relays}"),
            other => panic!("{relays}: {other:?}"),
        }
    }
}
