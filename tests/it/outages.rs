//! Exactly one copy, promptly: a relay that is down or refuses our sender, a full outbox
//! disk, signals in the middle of a batch, explicit throttling, and a worker whose claim
//! on its rows ran out while it sent. Against Postfix's smtp-sink, a port nothing
//! listens on, a tmpfs, and the real binary where the case is about the process.

use crate::delivery_support::{
    add_subscribers, context, file_config, freeze, issue_id, sending, smtp_config, worker,
};
use crate::support::mailstack::{SmtpSink, free_port};
use crate::support::{TempDir, describe, gazette_command, import_readers};
use chrono::{Duration as Span, Utc};
use gazette::send::{ConfiguredTransport, DeliveryWorker, Outcome};
use gazette::store::{DeliveryStatus, Store, SubscriberStatus};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn run(config: &Path, args: &[&str]) -> Output {
    gazette_command(config, args).output().expect("run gazette")
}

/// Waits for `child` to end, killing it (and failing) after `limit`: a liveness bound,
/// far above what the case needs, so a hang fails instead of blocking the suite.
fn wait_for_exit(mut child: Child, limit: Duration, what: &str) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("{what} did not end within {limit:?}\n{}", describe(&out));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// Every ledger row of the fixture issue: (status, attempts) by subscriber id.
async fn ledger(store: &Store) -> BTreeMap<i64, (DeliveryStatus, u32)> {
    let mut out = BTreeMap::new();
    for s in store.subscribers(None).await.unwrap() {
        if let Some((status, attempts, _)) = store.delivery(issue_id(), s.id).await.unwrap() {
            out.insert(s.id, (status, attempts));
        }
    }
    out
}

fn count(ledger: &BTreeMap<i64, (DeliveryStatus, u32)>, status: DeliveryStatus) -> usize {
    ledger.values().filter(|(s, _)| *s == status).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn send_now_with_nothing_listening_returns_with_every_row_still_queued() {
    let dir = TempDir::new("relay-unreachable");
    let config = smtp_config(&dir, free_port(), &[]);
    import_readers(&config, 3000);
    let child = gazette_command(&config, &["send-now", "--date", "2021-09-01"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_for_exit(child, Duration::from_secs(120), "send-now");
    assert!(!out.status.success(), "{}", describe(&out));
    let text = describe(&out);
    assert!(text.contains("relay unreachable"), "{text}");

    let ctx = context(&config);
    let store = Store::open(&ctx.settings.store.url).await.unwrap();
    let rows = ledger(&store).await;
    assert_eq!(rows.len(), 3000);
    // Nothing was held against the recipients: every row is as it was queued.
    assert!(
        rows.values().all(|r| *r == (DeliveryStatus::Queued, 0)),
        "{:?}",
        rows.values()
            .filter(|r| **r != (DeliveryStatus::Queued, 0))
            .take(5)
            .collect::<Vec<_>>()
    );
    let relay = store.relay_status().await.unwrap().expect("a relay status");
    assert!(!relay.up && relay.retry_at.is_some(), "{relay:?}");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_refusing_our_sender_is_a_system_fault_and_every_subscriber_stays_active() {
    let sink = SmtpSink::start(&["-f", "MAIL"]);
    let dir = TempDir::new("relay-mail-from");
    let config = smtp_config(&dir, sink.port(), &[]);
    import_readers(&config, 30);
    for _ in 0..3 {
        let out = run(&config, &["send-now", "--date", "2021-09-01"]);
        assert!(!out.status.success(), "{}", describe(&out));
        assert!(
            describe(&out).contains("relay refuses"),
            "{}",
            describe(&out)
        );
    }
    let ctx = context(&config);
    let store = Store::open(&ctx.settings.store.url).await.unwrap();
    let subscribers = store.subscribers(None).await.unwrap();
    assert_eq!(subscribers.len(), 30);
    for s in &subscribers {
        assert_eq!(
            (s.status, s.bounce_count),
            (SubscriberStatus::Active, 0),
            "{}",
            s.email
        );
    }
    let rows = ledger(&store).await;
    assert_eq!(count(&rows, DeliveryStatus::Queued), 30, "{rows:?}");
    assert_eq!(sink.received_count(), 0);
    let relay = store.relay_status().await.unwrap().expect("a relay status");
    assert!(!relay.up, "{relay:?}");
    assert!(
        relay.error.as_deref().unwrap_or("").contains("MAIL FROM"),
        "{relay:?}"
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_send_now_records_what_was_in_flight_and_the_resume_sends_no_duplicate() {
    // Each message waits a second for the DATA reply: a batch is in flight for seconds.
    let sink = SmtpSink::start(&["-w", "1"]);
    let dir = TempDir::new("send-now-sigterm");
    let config = smtp_config(&dir, sink.port(), &[]);
    let emails = import_readers(&config, 40);
    let mut child = gazette_command(&config, &["send-now", "--date", "2021-09-01"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while sink.received_count() < 4 {
        assert!(Instant::now() < deadline, "nothing sent after 60 s");
        assert!(child.try_wait().unwrap().is_none(), "send-now ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = wait_for_exit(child, Duration::from_secs(30), "send-now after SIGTERM");
    assert!(!out.status.success(), "{}", describe(&out));
    let before = sink.received_count();
    assert!(before < 40, "the signal came too late to test anything");
    // What was left is in the ledger, to be resumed.
    let store = Store::open(&context(&config).settings.store.url)
        .await
        .unwrap();
    let counts = store.delivery_counts(issue_id()).await.unwrap();
    store.close().await;
    assert_eq!(counts.total(), 40, "{counts:?}");
    assert!(counts.pending() > 0, "{counts:?}");

    let out = run(&config, &["send-now", "--date", "2021-09-01"]);
    assert!(out.status.success(), "{}", describe(&out));
    sink.wait_for_received(40, Duration::from_secs(60));
    let counts = sink.recipient_counts();
    for e in &emails {
        assert_eq!(counts.get(e), Some(&1), "{e}: {counts:?}");
    }
    assert_eq!(sink.received_count(), 40);
}

/// A tmpfs mounted for the test, unmounted on drop.
struct TinyDisk(std::path::PathBuf);

impl TinyDisk {
    fn mount(at: &Path, size: &str) -> TinyDisk {
        std::fs::create_dir_all(at).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap();
        assert!(status.success(), "cannot mount a tmpfs at {}", at.display());
        TinyDisk(at.to_owned())
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Every file under `dir`, temporary (hidden) ones too.
fn files_under(dir: &Path) -> Vec<String> {
    crate::support::walk(dir)
        .iter()
        .map(|p| p.display().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_outbox_disk_stops_sending_names_the_folder_and_loses_nothing() {
    let dir = TempDir::new("outbox-full");
    let config = file_config(&dir, &[]);
    let outbox = dir.path().join("outbox");
    let disk = TinyDisk::mount(&outbox, "96k");
    import_readers(&config, 20);
    let child = gazette_command(&config, &["send-now", "--date", "2021-09-01"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_for_exit(child, Duration::from_secs(60), "send-now");
    assert!(!out.status.success(), "{}", describe(&out));
    let text = describe(&out);
    assert!(text.contains(&outbox.display().to_string()), "{text}");
    assert!(!text.contains("throttl"), "{text}");
    let files = files_under(&outbox);
    assert!(
        files.iter().all(|f| f.ends_with(".eml")),
        "temporary files left: {files:?}"
    );

    let ctx = context(&config);
    let store = Store::open(&ctx.settings.store.url).await.unwrap();
    let rows = ledger(&store).await;
    // Every row marked sent has its file; every other row is untouched.
    for (id, (status, attempts)) in &rows {
        let file = outbox.join("2021-09-01").join(format!("{id}.eml"));
        match status {
            DeliveryStatus::Sent => assert!(file.exists(), "{id} sent without a file"),
            DeliveryStatus::Queued => assert_eq!(*attempts, 0),
            other => panic!("row {id} is {other:?}"),
        }
    }
    let sent_before = count(&rows, DeliveryStatus::Sent);
    assert!(sent_before < 20, "the disk never filled up");

    drop(disk);
    let out = run(&config, &["send-now", "--date", "2021-09-01"]);
    assert!(out.status.success(), "{}", describe(&out));
    let rows = ledger(&store).await;
    assert_eq!(count(&rows, DeliveryStatus::Sent), 20);
    assert_eq!(
        files_under(&outbox.join("2021-09-01")).len(),
        20 - sent_before
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_temporary_failures_do_not_slow_the_pace() {
    // 450 4.3.0 on every RCPT: the recipients' servers are unhappy, not asking us to slow down.
    let sink = SmtpSink::start(&["-r", "RCPT"]);
    let (s, ctx) = sending("pace-450", sink.port(), 24, &[]).await;
    let mut w = worker(&ctx, &s.store);
    let Outcome::Worked(report) = w.try_once(s.t0).await.unwrap() else {
        panic!("a batch was due");
    };
    assert_eq!(report.retrying, 24);
    assert_eq!(w.rate_limit(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_enhanced_throttling_code_slows_the_pace_without_counting_an_attempt() {
    // 4.4.5: "system congestion", the relay's way of saying "slower", without the words.
    let sink = SmtpSink::start(&["-r", "RCPT", "-b", "451 4.4.5 Please try again later"]);
    let (s, ctx) = sending("pace-throttle", sink.port(), 8, &[]).await;
    let mut w = worker(&ctx, &s.store);
    let Outcome::Worked(report) = w.try_once(s.t0).await.unwrap() else {
        panic!("a batch was due");
    };
    assert_eq!(report.throttled, 8);
    assert!(w.rate_limit().is_some());
    for (_, (status, attempts)) in ledger(&s.store).await {
        assert_eq!((status, attempts), (DeliveryStatus::Retrying, 0));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_that_lost_its_claim_cannot_write_over_the_new_holder() {
    // Each message takes two seconds: worker A is mid-batch when B takes over.
    let sink = SmtpSink::start(&["-w", "2"]);
    let (s, ctx) = sending("claim-lost", sink.port(), 4, &[]).await;
    let mut a = worker(&ctx, &s.store);
    let t0 = s.t0;
    let a_batch = tokio::spawn(async move {
        let outcome = a.try_once(t0).await;
        (a, outcome)
    });
    // A's claim has lapsed by B's clock (a long batch, a suspended VM): B takes over.
    let deadline = Instant::now() + Duration::from_secs(20);
    // A's messages are in flight (each transaction has its dump file open in the sink).
    while sink.in_progress() < 4 {
        assert!(Instant::now() < deadline, "A never started sending");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut b = worker(&ctx, &s.store);
    let later = t0 + Span::minutes(30);
    let Outcome::Worked(b_report) = b.try_once(later).await.unwrap() else {
        panic!("B should have taken the lapsed claim");
    };
    assert_eq!(b_report.sent, 4);
    let (_, a_outcome) = a_batch.await.unwrap();
    let Outcome::Worked(a_report) = a_outcome.unwrap() else {
        panic!("A's batch ran");
    };
    assert_eq!(
        (a_report.sent, a_report.dropped),
        (4, 4),
        "A's late results are dropped"
    );
    // B's results stand: sent at B's time, one attempt each.
    for (_, (status, attempts)) in ledger(&s.store).await {
        assert_eq!((status, attempts), (DeliveryStatus::Sent, 1));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_that_comes_back_is_used_at_full_speed_within_one_back_off() {
    let port = free_port();
    const READERS: usize = 600;
    let (s, ctx) = sending("relay-back", port, READERS, &[]).await;
    let mut w = worker(&ctx, &s.store);
    let initial = ctx.settings.delivery.relay_retry_initial;

    let Outcome::RelayDown {
        retry_at: first, ..
    } = w.try_once(s.t0).await.unwrap()
    else {
        panic!("nothing listens: the relay is down");
    };
    assert_eq!((first - s.t0).to_std().unwrap(), initial);
    // Before the back-off ends nothing is tried; after it, the wait grows.
    assert!(matches!(
        w.try_once(s.t0 + Span::seconds(1)).await.unwrap(),
        Outcome::RelayDown { retry_at, .. } if retry_at == first
    ));
    let Outcome::RelayDown {
        retry_at: second, ..
    } = w.try_once(first).await.unwrap()
    else {
        panic!("still down");
    };
    assert_eq!((second - first).to_std().unwrap(), initial * 2);
    for (_, row) in ledger(&s.store).await {
        assert_eq!(row, (DeliveryStatus::Queued, 0), "no attempt counted");
    }
    let relay = s.store.relay_status().await.unwrap().unwrap();
    assert_eq!(
        (relay.up, relay.failures, relay.retry_at),
        (false, 2, Some(second))
    );

    // The relay is back where it was: the first step after the back-off sends a full
    // batch at the full pace, and the rest follows.
    let sink = SmtpSink::start_on(port, &[]);
    let Outcome::Worked(report) = w.try_once(second).await.unwrap() else {
        panic!("the relay is back");
    };
    assert_eq!(report.sent, u64::from(w.batch_size()));
    assert_eq!(w.rate_limit(), None);
    assert_eq!(w.relay_retry_at(), None);
    loop {
        match w.try_once(second).await.unwrap() {
            Outcome::Worked(_) => {}
            Outcome::NothingDue { .. } => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        count(&ledger(&s.store).await, DeliveryStatus::Sent),
        READERS
    );
    assert!(s.store.relay_status().await.unwrap().unwrap().up);
    sink.wait_for_received(READERS, Duration::from_secs(30));
    assert!(sink.recipient_counts().values().all(|n| *n == 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_stops_within_the_grace_and_records_unanswered_messages_as_unknown() {
    // The relay takes 30 s to answer DATA, far longer than the grace.
    let sink = SmtpSink::start(&["-w", "30"]);
    let dir = TempDir::new("serve-grace");
    let config = smtp_config(
        &dir,
        sink.port(),
        &[
            ("smtp.timeout", "\"60s\""),
            ("delivery.stop_grace", "\"1s\""),
            ("web.bind", "\"127.0.0.1:0\""),
            // No proof to the editors through the slow relay meanwhile.
            ("schedule.proof_lead", "\"0s\""),
        ],
    );
    let ctx = context(&config);
    let store = Store::open(&ctx.settings.store.url).await.unwrap();
    let emails: Vec<String> = (0..8).map(|i| format!("reader{i}@example.org")).collect();
    let refs: Vec<(&str, Option<&str>)> = emails.iter().map(|e| (e.as_str(), None)).collect();
    add_subscribers(&store, &refs).await;
    freeze(&ctx, &store, Utc::now()).await;

    let log = dir.path().join("serve.log");
    let mut daemon = gazette_command(&config, &["serve"])
        .env("GAZETTE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while sink.in_progress() < 4 {
        assert!(
            Instant::now() < deadline,
            "no batch in flight after 30 s\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(daemon.try_wait().unwrap().is_none(), "serve ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .unwrap();
    // Without the grace, serve waited for the whole batch: 4 × 30 s per connection.
    let deadline = Instant::now() + Duration::from_secs(20);
    while daemon.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            let _ = daemon.kill();
            panic!(
                "serve did not stop within 20 s of SIGTERM\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = daemon.wait_with_output().unwrap();
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(out.status.code(), Some(0), "{logs}");

    let rows = ledger(&store).await;
    assert_eq!(count(&rows, DeliveryStatus::Unknown), 4, "{rows:?}\n{logs}");
    assert_eq!(count(&rows, DeliveryStatus::Queued), 4, "{rows:?}");
    let counts = store.delivery_counts(issue_id()).await.unwrap();
    assert_eq!((counts.unknown, counts.pending()), (4, 8));
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_show_the_relay_down_until_when_and_the_unknown_rows() {
    // The connection drops after the final dot: those rows are unknown.
    let sink = SmtpSink::start(&["-q", "."]);
    let (s, ctx) = sending("metrics-relay", sink.port(), 3, &[]).await;
    let mut w = worker(&ctx, &s.store);
    let Outcome::Worked(report) = w.try_once(s.t0).await.unwrap() else {
        panic!("a batch was due");
    };
    assert_eq!(report.unknown, 3);
    // Then nothing listens any more.
    drop(sink);
    let mut w = worker(&ctx, &s.store);
    let later = s.t0 + Span::minutes(5);
    let Outcome::RelayDown { retry_at, .. } = w.try_once(later).await.unwrap() else {
        panic!("nothing listens: the relay is down");
    };

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = gazette::app::web_state(&ctx).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(gazette::web::serve(state, listener, async {
        let _ = rx.await;
    }));
    let text = crate::support::http::get(addr, "/metrics").await.text();
    let _ = tx.send(());
    let _ = server.await;
    let metrics = crate::support::prometheus::parse(&text).unwrap();
    assert_eq!(metrics.value("gazette_relay_up", &[]), Some(0.0), "{text}");
    assert_eq!(metrics.value("gazette_relay_failures", &[]), Some(1.0));
    assert_eq!(
        metrics.value("gazette_relay_retry_timestamp_seconds", &[]),
        Some(retry_at.timestamp() as f64)
    );
    assert_eq!(
        metrics.value("gazette_messages", &[("status", "unknown")]),
        Some(3.0),
        "{text}"
    );
}

/// A relay on a plain socket that answers every command, correctly, after `delay`.
fn slow_relay(delay: Duration) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            std::thread::spawn(move || {
                let mut out = stream.try_clone().unwrap();
                let mut reply = |text: &str| {
                    std::thread::sleep(delay);
                    out.write_all(text.as_bytes()).is_ok()
                };
                if !reply("220 slow.example ESMTP\r\n") {
                    return;
                }
                let mut lines = BufReader::new(stream).lines();
                let mut in_data = false;
                while let Some(Ok(line)) = lines.next() {
                    let answer = if in_data {
                        if line != "." {
                            continue;
                        }
                        in_data = false;
                        "250 2.0.0 queued\r\n"
                    } else {
                        match line.get(..4).map(str::to_ascii_uppercase).as_deref() {
                            Some("EHLO") => "250 slow.example\r\n",
                            Some("DATA") => {
                                in_data = true;
                                "354 go ahead\r\n"
                            }
                            Some("QUIT") => "221 bye\r\n",
                            _ => "250 2.0.0 ok\r\n",
                        }
                    };
                    if !reply(answer) {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn the_smtp_timeout_bounds_each_command_not_the_whole_transaction() {
    // Each of the six answers takes 0.4 s: 2.4 s a message, each answer well within 1 s.
    let port = slow_relay(Duration::from_millis(400));
    let (s, ctx) = sending("per-command", port, 2, &[("smtp.timeout", "\"1s\"")]).await;
    let mut w = worker(&ctx, &s.store);
    let Outcome::Worked(report) = w.try_once(s.t0).await.unwrap() else {
        panic!("the slow relay answers every command in time");
    };
    assert_eq!(report.sent, 2, "{report:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_batch_keeps_its_claim_by_renewing_it_while_it_runs() {
    // One connection, two seconds a message: eight rows take sixteen seconds, longer
    // than the three-second claim (renewed every second).
    let sink = SmtpSink::start(&["-w", "2"]);
    let (s, ctx) = sending("claim-renew", sink.port(), 8, &[("smtp.pool_size", "1")]).await;
    let lease = |w: DeliveryWorker<ConfiguredTransport>| w.with_claim_ttl(Duration::from_secs(3));
    let mut a = lease(worker(&ctx, &s.store));
    let started = Utc::now();
    let a_batch = tokio::spawn(async move { a.try_once(started).await });
    // Two messages done: A has been at it for four seconds, past its first claim.
    let deadline = Instant::now() + Duration::from_secs(30);
    while sink.received_count() < 2 {
        assert!(Instant::now() < deadline, "A sent nothing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut b = lease(worker(&ctx, &s.store));
    let outcome = b
        .try_once(started + Span::milliseconds(3500))
        .await
        .unwrap();
    assert!(
        matches!(outcome, Outcome::NothingDue { next_due: Some(_) }),
        "B took rows from a live worker mid-batch: {outcome:?}"
    );
    let Outcome::Worked(report) = a_batch.await.unwrap().unwrap() else {
        panic!("A keeps its claim");
    };
    assert_eq!(report.sent, 8);
    assert_eq!(count(&ledger(&s.store).await, DeliveryStatus::Sent), 8);
}

/// Every subscriber is active with no bounce counted, and every row is as queued.
async fn nobody_charged(store: &Store) {
    for s in store.subscribers(None).await.unwrap() {
        assert_eq!(
            (s.status, s.bounce_count),
            (SubscriberStatus::Active, 0),
            "{}",
            s.email
        );
    }
    for (id, row) in ledger(store).await {
        assert_eq!(row, (DeliveryStatus::Queued, 0), "row {id}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_size_refusal_is_ours_not_the_recipients() {
    let sink = SmtpSink::start(&[
        "-f",
        "RCPT",
        "-B",
        "552 5.3.4 Message size exceeds fixed limit",
    ]);
    let (s, ctx) = sending(
        "size-refusal",
        sink.port(),
        5,
        &[("delivery.bounce_threshold", "1")],
    )
    .await;
    let mut w = worker(&ctx, &s.store);
    let Outcome::RelayDown { error, .. } = w.try_once(s.t0).await.unwrap() else {
        panic!("a size refusal stops sending");
    };
    assert!(error.contains("size") && error.contains("552"), "{error}");
    nobody_charged(&s.store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_smtp_credentials_are_a_relay_fault_and_nobody_is_charged() {
    let stack = crate::support::mailstack::MailStack::start(&["dora"]);
    let user = stack.address("dora");
    let (s, ctx) = sending(
        "auth-refused",
        stack.smtp_port(),
        3,
        &[
            ("smtp.username", &format!("\"{user}\"")),
            ("smtp.password", "\"not-the-password\""),
            ("delivery.bounce_threshold", "1"),
        ],
    )
    .await;
    let mut w = worker(&ctx, &s.store);
    let Outcome::RelayDown { error, .. } = w.try_once(s.t0).await.unwrap() else {
        panic!("refused credentials stop sending");
    };
    assert!(error.contains("AUTH"), "{error}");
    nobody_charged(&s.store).await;
}

#[tokio::test]
async fn a_run_of_clean_batches_restores_the_pace() {
    use gazette::send::{MessageFactory, RetryPolicy, SendError, StubTransport};
    let dir = TempDir::new("pace-restore");
    let ctx = context(&file_config(&dir, &[]));
    let store = Store::open(&ctx.settings.store.url).await.unwrap();
    let people: Vec<String> = (0..40).map(|i| format!("r{i:02}@example.org")).collect();
    let refs: Vec<(&str, Option<&str>)> = people.iter().map(|p| (p.as_str(), None)).collect();
    add_subscribers(&store, &refs).await;
    let now = Utc::now();
    freeze(&ctx, &store, now).await;
    let stub = StubTransport::new();
    // The first batch (the first eight by address) is throttled once each.
    for p in &people[..8] {
        stub.fail(p, vec![SendError::Throttled("421 4.7.0 slow down".into())]);
    }
    let messages = MessageFactory::new(ctx.settings.newsletter.clone(), ctx.tokens.clone(), None);
    let mut w = DeliveryWorker::new(
        store.clone(),
        stub,
        messages,
        RetryPolicy::from(&ctx.settings.delivery),
        200,
    )
    .with_batch_size(8);
    assert_eq!(w.rate_limit(), Some(200));
    let Outcome::Worked(report) = w.try_once(now).await.unwrap() else {
        panic!("a batch was due");
    };
    assert_eq!(report.throttled, 8);
    let slowed = w.rate_limit().unwrap();
    assert!(slowed <= 100, "{slowed}");
    // Two clean batches later the configured pace is back.
    for _ in 0..2 {
        let Outcome::Worked(report) = w.try_once(now).await.unwrap() else {
            panic!("rows are due");
        };
        assert_eq!(report.sent, 8);
    }
    assert_eq!(w.rate_limit(), Some(200));
}
