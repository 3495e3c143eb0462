//! TLS from the first byte to the SMTP relay (sending, and `gazette doctor`'s probe) and
//! to the IMAP server, STARTTLS to IMAP, and the IMAP paths for servers that lack IDLE,
//! MOVE or UIDPLUS: against a real Postfix and Dovecot on loopback, the store a SQLite
//! file on disk.

use crate::delivery_support::{add_subscribers, context, freeze, issue_id, smtp_config};
use crate::inbox::smtp_send;
use crate::support::mailstack::{MailStack, Options, PASSWORD};
use crate::support::{TempDir, add_active, describe, gazette_command, write_config};
use gazette::app::{delivery, inbox_worker};
use gazette::domain::{SystemClock, TokenPurpose};
use gazette::store::{DeliveryStatus, Store, SubscriberStatus};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const NEWS: &str = "news@gazette.test";

/// Sends one issue to `user` through the stack's implicit-TLS port with `extra`
/// settings; the ledger status of their row afterwards.
fn deliver_over_implicit_tls(
    stack: &MailStack,
    dir: &TempDir,
    extra: &[(&str, &str)],
    user: &str,
) -> DeliveryStatus {
    let mut settings = vec![("smtp.tls", "\"tls\"")];
    settings.extend_from_slice(extra);
    let ctx = context(&smtp_config(dir, stack.smtps_port(), &settings));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Store::open(&ctx.settings.store.url).await.unwrap();
        let address = stack.address(user);
        let ids = add_subscribers(&store, &[(address.as_str(), None)]).await;
        freeze(&ctx, &store, chrono::Utc::now()).await;
        let mut worker = delivery::delivery_worker(&ctx, store.clone()).unwrap();
        delivery::deliver_due_now(&mut worker, 1, &SystemClock)
            .await
            .unwrap();
        store.delivery(issue_id(), ids[0]).await.unwrap().unwrap().0
    })
}

#[test]
fn implicit_tls_to_the_relay_checks_the_certificate_and_delivers() {
    let stack = MailStack::start(&["dora", "eve"]);
    // A certificate nobody vouched for: nothing is sent, and the row waits untouched.
    let untrusted = TempDir::new("implicit-tls-untrusted");
    assert_eq!(
        deliver_over_implicit_tls(&stack, &untrusted, &[], "eve"),
        DeliveryStatus::Queued
    );

    let dir = TempDir::new("implicit-tls");
    let ca = format!("\"{}\"", stack.tls_ca().display());
    assert_eq!(
        deliver_over_implicit_tls(&stack, &dir, &[("smtp.ca_file", &ca)], "dora"),
        DeliveryStatus::Sent
    );
    stack.assert_first_came_over_tls("dora");
    assert!(stack.messages("eve").is_empty());
}

// ---------------------------------------------------------------------------------
// The inbox over IMAP

/// Settings reading the stack's `news` mailbox at `port` with `tls`.
fn imap_config(dir: &TempDir, port: u16, tls: &str) -> PathBuf {
    let port = port.to_string();
    let tls = format!("\"{tls}\"");
    write_config(
        dir.path(),
        &[
            ("newsletter.reply_to", "\"news@gazette.test\""),
            ("inbox.kind", "\"imap\""),
            ("inbox.host", "\"127.0.0.1\""),
            ("inbox.port", &port),
            ("inbox.tls", &tls),
            ("inbox.username", "\"news\""),
            ("inbox.password", &format!("\"{PASSWORD}\"")),
            ("inbox.poll_interval", "\"1s\""),
        ],
    )
}

/// Mails an UNSUBSCRIBE request with `id`'s token to the newsletter's mailbox.
fn request_unsubscribe(stack: &MailStack, ctx: &gazette::app::Context, id: i64, n: u32) {
    let token = ctx.tokens.sign(TokenPurpose::Unsubscribe, id);
    let text = format!(
        "From: reader{n}@elsewhere.test\r\nTo: {NEWS}\r\nSubject: UNSUBSCRIBE {token}\r\n\
         Message-ID: <request-{n}@elsewhere.test>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nPlease take me off the list.\r\n"
    );
    smtp_send(
        stack.smtp_port(),
        &format!("reader{n}@elsewhere.test"),
        NEWS,
        text.as_bytes(),
    );
}

/// The Maildir flags (the letters after `:2,`) of each message in a folder.
fn flags(folder: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(entries) = std::fs::read_dir(folder.join(sub)) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                out.push(
                    name.split_once(":2,")
                        .map(|(_, f)| f.to_owned())
                        .unwrap_or_default(),
                );
            }
        }
    }
    out.sort();
    out
}

async fn status(store: &Store, id: i64) -> SubscriberStatus {
    store.subscriber(id).await.unwrap().unwrap().status
}

/// Polls the store every 50 ms until `id` is unsubscribed; fails after 30 s.
async fn wait_unsubscribed(store: &Store, id: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(store, id).await != SubscriberStatus::Unsubscribed {
        assert!(
            Instant::now() < deadline,
            "subscriber {id} still subscribed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls every 50 ms until the messages in `folder` carry exactly `expected` flags;
/// fails after 30 s. The store records a message before the mailbox is told, so
/// "unsubscribed" alone does not mean the message has been filed yet.
async fn wait_flags(folder: &Path, expected: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while flags(folder) != expected {
        assert!(
            Instant::now() < deadline,
            "{} has {:?}",
            folder.display(),
            flags(folder)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `gazette inbox --once` with `env`; its output.
fn inbox_once(config: &Path, env: &[(&str, &Path)]) -> std::process::Output {
    let mut command = gazette_command(config, &["inbox", "--once"]);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

/// What Dovecot announces after login, less IDLE, MOVE and UIDPLUS.
const SMALL_SERVER: &str = "IMAP4rev1 LITERAL+ SASL-IR ID ENABLE UNSELECT CHILDREN NAMESPACE";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_idle_move_or_uidplus_is_polled_and_filed_by_copy() {
    let stack = MailStack::start_with(
        &["news"],
        &Options {
            imap_capability: Some(SMALL_SERVER.into()),
        },
    );
    let dir = TempDir::new("imap-small-server");
    let ctx = context(&imap_config(&dir, stack.imap_port(), "none"));
    let store = Store::open(&ctx.settings.store.url).await.unwrap();
    let alice = add_active(&store, "alice@example.net").await;
    let bob = add_active(&store, "bob@example.net").await;

    request_unsubscribe(&stack, &ctx, alice, 1);
    stack.wait_for_messages("news", 1, Duration::from_secs(30));
    let mut worker = inbox_worker(&ctx, store.clone()).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        worker
            .run_until_stopped(&SystemClock, async {
                let _ = stopped.await;
            })
            .await
    });
    wait_unsubscribed(&store, alice).await;
    // Mail arriving later is found by the next poll, without IDLE to announce it.
    request_unsubscribe(&stack, &ctx, bob, 2);
    wait_unsubscribed(&store, bob).await;
    // Without MOVE: copied to Processed, and without UIDPLUS the originals are only
    // flagged deleted (seen, trashed), not expunged with whatever else is deleted.
    let maildir = stack.maildir("news");
    wait_flags(&maildir.join(".Processed"), &["S", "S"]).await;
    wait_flags(&maildir, &["ST", "ST"]).await;
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    assert_eq!(
        flags(&maildir),
        vec!["ST", "ST"],
        "still there once stopped"
    );
    assert_eq!(store.inbox_message_count().await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_uidplus_but_without_move_has_the_originals_expunged() {
    let stack = MailStack::start_with(
        &["news"],
        &Options {
            imap_capability: Some(format!("{SMALL_SERVER} UIDPLUS")),
        },
    );
    let dir = TempDir::new("imap-uidplus");
    let config = imap_config(&dir, stack.imap_port(), "none");
    let ctx = context(&config);
    let store = Store::open(&ctx.settings.store.url).await.unwrap();
    let alice = add_active(&store, "alice@example.net").await;
    request_unsubscribe(&stack, &ctx, alice, 1);
    stack.wait_for_messages("news", 1, Duration::from_secs(30));

    let out = inbox_once(&config, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(status(&store, alice).await, SubscriberStatus::Unsubscribed);
    let maildir = stack.maildir("news");
    assert_eq!(flags(&maildir.join(".Processed")), vec!["S"]);
    assert!(flags(&maildir).is_empty(), "{:?}", flags(&maildir));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_is_read_over_starttls_and_over_implicit_tls() {
    let stack = MailStack::start(&["news"]);
    let ca = stack.tls_ca();
    let dir = TempDir::new("imap-tls");
    let starttls = imap_config(&dir, stack.imap_port(), "starttls");
    let ctx = context(&starttls);
    let store = Store::open(&ctx.settings.store.url).await.unwrap();
    let alice = add_active(&store, "alice@example.net").await;
    let bob = add_active(&store, "bob@example.net").await;
    request_unsubscribe(&stack, &ctx, alice, 1);
    stack.wait_for_messages("news", 1, Duration::from_secs(30));

    // The server's certificate is checked: with the system's roots alone (which do
    // not hold the test CA) nothing is read.
    let refused = inbox_once(&starttls, &[]);
    assert!(!refused.status.success(), "{}", describe(&refused));
    assert_eq!(status(&store, alice).await, SubscriberStatus::Active);

    let out = inbox_once(&starttls, &[("SSL_CERT_FILE", &ca)]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(status(&store, alice).await, SubscriberStatus::Unsubscribed);

    let implicit = imap_config(&dir, stack.imaps_port(), "tls");
    request_unsubscribe(&stack, &ctx, bob, 2);
    // Alice's request has moved to Processed; Bob's is the one in the inbox.
    stack.wait_for_messages("news", 1, Duration::from_secs(30));
    let out = inbox_once(&implicit, &[("SSL_CERT_FILE", &ca)]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(status(&store, bob).await, SubscriberStatus::Unsubscribed);
    assert_eq!(
        flags(&stack.maildir("news").join(".Processed")),
        vec!["S", "S"]
    );
}

#[test]
fn doctor_probes_an_implicit_tls_relay_through_to_auth() {
    use gazette::doctor::{CheckKind, DoctorOptions, Verdict, examine};
    let stack = MailStack::start(&["news"]);
    let dir = TempDir::new("doctor-implicit-tls");
    let port = stack.smtps_port().to_string();
    let ca = format!("\"{}\"", stack.tls_ca().display());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // Nobody answers DNS here: only the relay checks matter.
    let nobody =
        std::net::SocketAddr::from(([127, 0, 0, 1], crate::support::mailstack::free_port()));
    let report_for = |ca_file: Option<&str>| {
        let mut settings = vec![
            ("transport.kind", "\"smtp\""),
            ("smtp.host", "\"127.0.0.1\""),
            ("smtp.port", port.as_str()),
            ("smtp.tls", "\"tls\""),
            ("smtp.username", "\"news\""),
            ("smtp.timeout", "\"10s\""),
        ];
        let password = format!("\"{PASSWORD}\"");
        settings.push(("smtp.password", &password));
        if let Some(ca) = ca_file {
            settings.push(("smtp.ca_file", ca));
        }
        let settings =
            gazette::settings::Settings::load(&write_config(dir.path(), &settings)).unwrap();
        runtime.block_on(examine(
            &settings,
            None,
            &DoctorOptions {
                resolver: Some(nobody),
                timeout: Duration::from_secs(3),
            },
        ))
    };

    let good = report_for(Some(&ca));
    for kind in [CheckKind::Relay, CheckKind::StartTls, CheckKind::SmtpAuth] {
        assert_eq!(
            good.verdict(kind),
            Some(Verdict::Ok),
            "{kind:?}: {good:#?}\n{}",
            stack.log()
        );
    }
    // The certificate is checked during the probe as when sending.
    let untrusted = report_for(None);
    assert_eq!(
        untrusted.verdict(CheckKind::Relay),
        Some(Verdict::Problem),
        "{untrusted:#?}"
    );
}

#[test]
fn the_password_goes_in_plain_text_to_a_loopback_server_only() {
    use gazette::inbox::{InboxError, SourceError, source_from_settings};
    let dir = TempDir::new("imap-plain-remote");
    let settings_for = |host: &str| {
        let host = format!("\"{host}\"");
        gazette::settings::Settings::load(&write_config(
            dir.path(),
            &[
                ("inbox.kind", "\"imap\""),
                ("inbox.host", &host),
                ("inbox.port", "143"),
                ("inbox.tls", "\"none\""),
                ("inbox.username", "\"news\""),
                ("inbox.password", "\"secret\""),
            ],
        ))
        .unwrap()
    };
    let remote = source_from_settings(&settings_for("imap.example.org"));
    assert!(
        matches!(&remote, Err(InboxError::Source(SourceError::Tls(why))) if why.contains("tls")),
        "{remote:?}"
    );
    for host in ["127.0.0.1", "localhost", "[::1]"] {
        let local = source_from_settings(&settings_for(host));
        assert!(local.is_ok(), "{host}: {local:?}");
    }
}
