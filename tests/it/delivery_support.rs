//! Helpers for the store and delivery tests: a context from a settings file, an issue
//! frozen from a fixture, subscribers.
#![allow(dead_code)]

use crate::support::{TempDir, copy_sections, fixture, write_config};
use chrono::{DateTime, Utc};
use clap::Parser;
use gazette::app::{Cli, Context, delivery};
use gazette::compose;
use gazette::domain::{HeaderText, IssueId, SubscriberEmail};
use gazette::send::{BatchReport, ConfiguredTransport, DeliveryWorker, RunEnd, WorkerError};
use gazette::store::{Consent, FrozenIssue, NewSubscriber, Store, SubscriberStatus};
use std::path::{Path, PathBuf};
use tokio_util::sync::CancellationToken;

/// The issue date the fixtures are composed for.
pub const ISSUE: &str = "2021-09-01";

/// A public URL on https, as RFC 8058 wants for the one-click link.
pub const PUBLIC_URL: &str = "\"https://news.example.org\"";
/// A web secret as `openssl rand -hex 32` makes one.
pub const TEST_SECRET: &str =
    "\"4f1c2a9be03d7765c81e5a2f9b60d4e3a7c19f0825be6d3c4a9e1f7b20c58d61\"";

/// Loads settings and templates the way the binary does.
pub fn context(config: &Path) -> Context {
    let cli = Cli::parse_from(["gazette", "--config", config.to_str().unwrap(), "status"]);
    Context::load(&cli).expect("load settings")
}

/// A settings file in `dir` sending through SMTP on 127.0.0.1:`port` without TLS, plus
/// `extra` overrides; the 2021-09 fixture sections are copied in.
pub fn smtp_config(dir: &TempDir, port: u16, extra: &[(&str, &str)]) -> PathBuf {
    copy_sections(&fixture("2021-09"), &dir.path().join("sections"));
    let port = port.to_string();
    let mut overrides: Vec<(&str, &str)> = vec![
        ("transport.kind", "\"smtp\""),
        ("smtp.host", "\"127.0.0.1\""),
        ("smtp.port", &port),
        ("smtp.tls", "\"none\""),
        ("smtp.pool_size", "4"),
        ("smtp.timeout", "\"10s\""),
        ("newsletter.public_url", PUBLIC_URL),
        // Links point at a public host: gazette sends over SMTP only with a real key.
        ("web.secret", TEST_SECRET),
    ];
    overrides.extend_from_slice(extra);
    write_config(dir.path(), &overrides)
}

/// A settings file with the default file transport and the fixture sections.
pub fn file_config(dir: &TempDir, extra: &[(&str, &str)]) -> PathBuf {
    copy_sections(&fixture("2021-09"), &dir.path().join("sections"));
    let mut overrides: Vec<(&str, &str)> = vec![("newsletter.public_url", PUBLIC_URL)];
    overrides.extend_from_slice(extra);
    write_config(dir.path(), &overrides)
}

/// An active subscriber `email` named `name`, who consented now (source `test`).
pub fn new_active(email: &str, name: Option<&str>) -> NewSubscriber {
    NewSubscriber {
        email: SubscriberEmail::parse(email).unwrap(),
        name: name.map(|n| HeaderText::parse(n).unwrap()),
        status: SubscriberStatus::Active,
        consent: Consent {
            at: Some(Utc::now()),
            source: Some("test".into()),
            ip: None,
        },
    }
}

/// Adds active subscribers; returns their ids in order.
pub async fn add_subscribers(store: &Store, people: &[(&str, Option<&str>)]) -> Vec<i64> {
    let mut ids = Vec::new();
    for (email, name) in people {
        let new = new_active(email, *name);
        let (subscriber, added) = store.add_subscriber(&new, Utc::now()).await.unwrap();
        assert!(added, "{email} added twice");
        ids.push(subscriber.id);
    }
    ids
}

/// Composes the fixture issue from the context's sections folder and freezes it with
/// its audience at `now`.
pub async fn freeze(ctx: &Context, store: &Store, now: DateTime<Utc>) -> FrozenIssue {
    let issue = compose::compose(
        &ctx.settings.content.sections_dir,
        IssueId::parse(ISSUE).unwrap(),
        &ctx.compose_options(),
        std::time::SystemTime::now(),
    )
    .unwrap();
    assert!(issue.is_sendable(), "{:?}", issue.diagnostics);
    let (frozen, outcome) = delivery::freeze_and_snapshot(ctx, store, &issue, now)
        .await
        .unwrap();
    assert!(outcome.newly_frozen);
    frozen
}

/// The issue id of the fixtures.
pub fn issue_id() -> IssueId {
    IssueId::parse(ISSUE).unwrap()
}

/// Adds `people` as active subscribers beside `config` (the file transport), sends the
/// fixture issue with the real `gazette send-now`, and returns each message's file and
/// bytes, by file.
pub fn send_issue_to(config: &Path, people: &[(&str, Option<&str>)]) -> Vec<(PathBuf, Vec<u8>)> {
    let ctx = context(config);
    crate::support::with_store(&ctx.settings.store.url, async |store| {
        add_subscribers(store, people).await;
    });
    crate::support::send_now(config, ISSUE);
    let outbox = ctx.settings.transport.outbox_dir.join(ISSUE);
    let mut messages: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&outbox)
        .unwrap_or_else(|e| panic!("{}: {e}", outbox.display()))
        .map(|e| {
            let path = e.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    messages.sort();
    messages
}

/// A folder whose settings send over SMTP, its store, `n` readers and the fixture issue
/// frozen for them at `t0`.
pub struct Sending {
    pub dir: TempDir,
    pub store: Store,
    pub ids: Vec<i64>,
    /// `reader{i}@example.org`, in the order of `ids`.
    pub emails: Vec<String>,
    /// Whole seconds, as the ledger keeps times.
    pub t0: DateTime<Utc>,
}

/// [`Sending`] to 127.0.0.1:`port` with `extra` settings, and its context.
pub async fn sending(
    label: &str,
    port: u16,
    n: usize,
    extra: &[(&str, &str)],
) -> (Sending, Context) {
    let dir = TempDir::new(label);
    let ctx = context(&smtp_config(&dir, port, extra));
    let store = Store::open(&ctx.settings.store.url).await.unwrap();
    let emails: Vec<String> = (0..n).map(|i| format!("reader{i}@example.org")).collect();
    let refs: Vec<(&str, Option<&str>)> = emails.iter().map(|e| (e.as_str(), None)).collect();
    let ids = add_subscribers(&store, &refs).await;
    let t0 = chrono::DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
    freeze(&ctx, &store, t0).await;
    let sending = Sending {
        dir,
        store,
        ids,
        emails,
        t0,
    };
    (sending, ctx)
}

/// The delivery worker the binary would build from `ctx`, over `store`.
pub fn worker(ctx: &Context, store: &Store) -> DeliveryWorker<ConfiguredTransport> {
    delivery::delivery_worker(ctx, store.clone()).unwrap()
}

/// A delivery run in its own task: its totals and how it ended.
pub type DeliveryRun = tokio::task::JoinHandle<Result<(BatchReport, RunEnd), WorkerError>>;

/// A worker taking `batch` rows at a time, sending what is due on `store` in a task until
/// nothing is due or the returned token is cancelled.
pub fn spawn_delivery(
    ctx: &Context,
    store: &Store,
    batch: u32,
) -> (DeliveryRun, CancellationToken) {
    let mut w = worker(ctx, store).with_batch_size(batch);
    let stop = CancellationToken::new();
    let until = stop.clone();
    let run = tokio::spawn(async move {
        w.deliver_due_until(&gazette::domain::SystemClock, &until, |_| {})
            .await
    });
    (run, stop)
}
