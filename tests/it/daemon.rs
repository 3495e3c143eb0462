//! The daemon: the scheduler step with the clock passed in (proofs, time zones, holds,
//! catch-up, two daemons on one store), and the real `gazette serve` process end to end.

use crate::support::mailstack::MailStack;
use crate::support::scheduler::{
    MONTHLY, context, cron_at, deliver, setup, spawn_serve, terminate, utc,
};
use crate::support::{copy_sections, describe, files, fixture, store_url, with_store};
use chrono::Utc;
use gazette::app::daemon::scheduler as new_scheduler;
use gazette::domain::IssueId;
use gazette::schedule::Action;
use std::path::Path;
use std::time::Duration;

/// A working folder with the September 2021 sections, `subscribers` subscribers, and
/// settings with `overrides`.
#[tokio::test]
async fn proof_goes_out_proof_lead_before_the_slot_and_only_once() {
    let (work, config) = setup(
        "proof",
        2,
        &[
            ("schedule.send", "\"0 10 1 * *\""),
            ("schedule.timezone", "\"Europe/London\""),
        ],
    );
    let (ctx, store) = context(&config).await;
    let scheduler = new_scheduler(&ctx, store.clone());
    let slot = utc(2021, 9, 1, 9, 0); // 10:00 BST
    let report = scheduler.try_once(utc(2021, 8, 31, 8, 59)).await.unwrap();
    assert_eq!(report.actions, vec![]);
    assert_eq!(report.wake_at, Some(utc(2021, 8, 31, 9, 0)));
    let report = scheduler.try_once(utc(2021, 8, 31, 9, 0)).await.unwrap();
    assert_eq!(report.actions, vec![Action::SendProof(slot)]);
    let again = scheduler.try_once(utc(2021, 8, 31, 9, 30)).await.unwrap();
    assert_eq!(again.actions, vec![]);
    let outbox = work.path().join("outbox");
    assert_eq!(files(&outbox), vec!["editors/proof/2021-09-01/*.eml"]);
    let raw = crate::support::only_message(&outbox.join("editors/proof/2021-09-01")).into_bytes();
    let proof = mail_parser::MessageParser::default().parse(&raw).unwrap();
    assert_eq!(
        proof.subject(),
        Some("[PROOF] Independent review of children's social care newsletter: September 2021")
    );
    assert_eq!(
        proof.to().unwrap().first().unwrap().address(),
        Some("editor@example.org")
    );
    let text = proof.body_text(0).unwrap();
    assert!(
        text.starts_with(
            "PROOF of the issue 2021-09-01, to be sent Wednesday 1 September 2021 at 10:00 BST"
        ),
        "{text}"
    );
    assert!(text.contains("No warnings"), "{text}");
    assert!(
        text.contains("Bridge the Gap"),
        "the proof carries the issue"
    );
    assert!(
        proof
            .body_html(0)
            .unwrap()
            .contains("PROOF of the issue 2021-09-01")
    );
    // Nothing was sent to subscribers, and the sections are still in place.
    assert_eq!(files(&work.path().join("sections")).len(), 6);
    assert_eq!(store.latest_issue().await.unwrap(), None);
}

#[tokio::test]
async fn the_slot_fires_in_the_configured_time_zone_across_a_dst_change() {
    // Daily at 10:00 London: 09:00 UTC before 25 October 2026, 10:00 UTC after.
    let (work, config) = setup(
        "dst",
        1,
        &[
            ("schedule.send", "\"0 10 * * *\""),
            ("schedule.timezone", "\"Europe/London\""),
            ("schedule.proof_lead", "\"0s\""),
            ("schedule.hold_window", "\"1h\""),
            ("schedule.catch_up", "\"1h\""),
        ],
    );
    let (ctx, store) = context(&config).await;
    let scheduler = new_scheduler(&ctx, store.clone());
    let quiet = scheduler.try_once(utc(2026, 10, 24, 8, 59)).await.unwrap();
    assert_eq!(quiet.actions, vec![]);
    assert_eq!(quiet.wake_at, Some(utc(2026, 10, 24, 9, 0)));
    let summer = scheduler.try_once(utc(2026, 10, 24, 9, 0)).await.unwrap();
    assert_eq!(
        summer.actions,
        vec![Action::Compose(utc(2026, 10, 24, 9, 0))]
    );
    assert_eq!(
        store.latest_issue().await.unwrap(),
        Some(IssueId::parse("2026-10-24").unwrap())
    );

    // After the change, 09:00 UTC is 09:00 in London: nothing fires until 10:00 UTC.
    copy_sections(&fixture("2021-11"), &work.path().join("sections"));
    let early = scheduler.try_once(utc(2026, 10, 26, 9, 0)).await.unwrap();
    assert_eq!(early.actions, vec![]);
    assert_eq!(early.wake_at, Some(utc(2026, 10, 26, 10, 0)));
    let winter = scheduler.try_once(utc(2026, 10, 26, 10, 0)).await.unwrap();
    assert_eq!(
        winter.actions,
        vec![Action::Compose(utc(2026, 10, 26, 10, 0))]
    );
    assert_eq!(
        store.latest_issue().await.unwrap(),
        Some(IssueId::parse("2026-10-26").unwrap())
    );
}

#[tokio::test]
async fn a_hold_tells_the_editors_sends_nothing_and_sends_once_fixed() {
    let (work, config) = setup(
        "hold",
        3,
        &[
            ("schedule.send", "\"0 10 1 * *\""),
            ("schedule.timezone", "\"UTC\""),
            ("schedule.proof_lead", "\"0s\""),
            ("schedule.hold_recheck", "\"10m\""),
        ],
    );
    let sections = work.path().join("sections");
    let intro = std::fs::read(sections.join("introduction.md")).unwrap();
    std::fs::remove_file(sections.join("introduction.md")).unwrap();
    let (ctx, store) = context(&config).await;
    let scheduler = new_scheduler(&ctx, store.clone());
    let slot = utc(2021, 9, 1, 10, 0);
    let held = scheduler.try_once(slot).await.unwrap();
    assert_eq!(held.actions, vec![Action::Compose(slot)]);
    assert_eq!(store.latest_issue().await.unwrap(), None, "nothing frozen");
    let outbox = work.path().join("outbox");
    assert_eq!(files(&outbox), vec!["editors/held/2021-09-01/*.eml"]);
    let notice = crate::support::only_message(&outbox.join("editors/held/2021-09-01"));
    assert!(
        notice.contains("required section 'introduction' is missing"),
        "{notice}"
    );
    assert!(
        notice.contains("Auto-Submitted: auto-generated"),
        "{notice}"
    );
    // Re-checked at the interval, still held: no second notice.
    assert_eq!(
        scheduler
            .try_once(utc(2021, 9, 1, 10, 5))
            .await
            .unwrap()
            .actions,
        vec![]
    );
    assert_eq!(
        scheduler
            .try_once(utc(2021, 9, 1, 10, 10))
            .await
            .unwrap()
            .actions,
        vec![Action::Compose(slot)]
    );
    assert_eq!(files(&outbox).len(), 1);
    // The editor fixes it: the next re-check sends.
    std::fs::write(sections.join("introduction.md"), intro).unwrap();
    crate::support::age_file(&sections.join("introduction.md"));
    scheduler.try_once(utc(2021, 9, 1, 10, 20)).await.unwrap();
    assert_eq!(
        store.latest_issue().await.unwrap(),
        Some(IssueId::parse("2021-09-01").unwrap())
    );
    assert_eq!(deliver(&ctx, &store, utc(2021, 9, 1, 10, 20)).await, 3);
    assert!(files(&sections).is_empty(), "consumed files are archived");
    assert_eq!(files(&work.path().join("archive/2021-09-01")).len(), 6);
}

#[tokio::test]
async fn a_held_slot_is_given_up_when_the_window_ends() {
    let (work, config) = setup(
        "give-up",
        1,
        &[
            ("schedule.send", "\"0 10 1 * *\""),
            ("schedule.timezone", "\"UTC\""),
            ("schedule.proof_lead", "\"0s\""),
            ("schedule.hold_window", "\"1h\""),
        ],
    );
    std::fs::remove_file(work.path().join("sections/introduction.md")).unwrap();
    let (ctx, store) = context(&config).await;
    let scheduler = new_scheduler(&ctx, store.clone());
    let slot = utc(2021, 9, 1, 10, 0);
    scheduler.try_once(slot).await.unwrap();
    let report = scheduler.try_once(utc(2021, 9, 1, 11, 0)).await.unwrap();
    assert_eq!(report.actions, vec![Action::GiveUp(slot)]);
    assert_eq!(
        scheduler
            .try_once(utc(2021, 9, 1, 11, 5))
            .await
            .unwrap()
            .actions,
        vec![]
    );
    assert_eq!(store.latest_issue().await.unwrap(), None);
    let notices = files(&work.path().join("outbox"));
    assert_eq!(
        notices,
        vec![
            "editors/given-up/2021-09-01/*.eml",
            "editors/held/2021-09-01/*.eml"
        ]
    );
}

#[tokio::test]
async fn a_missed_slot_is_caught_up_once_and_an_old_one_is_reported() {
    let (work, config) = setup(
        "catch-up",
        4,
        &[
            ("schedule.send", "\"0 10 1 * *\""),
            ("schedule.timezone", "\"UTC\""),
            ("schedule.proof_lead", "\"0s\""),
            ("schedule.catch_up", "\"6h\""),
        ],
    );
    let (ctx, store) = context(&config).await;
    // The daemon ran the day before, was down at 10:00, and starts again at 13:00, inside
    // the catch-up window.
    let before = new_scheduler(&ctx, store.clone());
    assert_eq!(
        before
            .try_once(utc(2021, 8, 31, 12, 0))
            .await
            .unwrap()
            .actions,
        vec![]
    );
    let scheduler = new_scheduler(&ctx, store.clone());
    let first = scheduler.try_once(utc(2021, 9, 1, 13, 0)).await.unwrap();
    assert_eq!(first.actions, vec![Action::Compose(utc(2021, 9, 1, 10, 0))]);
    assert_eq!(deliver(&ctx, &store, utc(2021, 9, 1, 13, 0)).await, 4);
    // A restart later that day does nothing again.
    let restarted = new_scheduler(&ctx, store.clone());
    assert_eq!(
        restarted
            .try_once(utc(2021, 9, 1, 15, 0))
            .await
            .unwrap()
            .actions,
        vec![]
    );
    assert_eq!(deliver(&ctx, &store, utc(2021, 9, 1, 15, 0)).await, 0);
    assert_eq!(files(&work.path().join("outbox/2021-09-01")).len(), 4);
    // October's slot is missed by more than the window: reported, not sent.
    copy_sections(&fixture("2021-11"), &work.path().join("sections"));
    let late = scheduler.try_once(utc(2021, 10, 1, 17, 0)).await.unwrap();
    assert_eq!(
        late.actions,
        vec![Action::ReportMissed(utc(2021, 10, 1, 10, 0))]
    );
    assert_eq!(
        store.latest_issue().await.unwrap(),
        Some(IssueId::parse("2021-09-01").unwrap())
    );
    assert!(
        files(&work.path().join("outbox")).contains(&"editors/missed/2021-10-01/*.eml".to_owned())
    );
}

#[tokio::test]
async fn two_daemons_sharing_one_store_send_a_slot_once() {
    let (work, config) = setup("two-daemons", 25, MONTHLY);
    let (ctx_a, store_a) = context(&config).await;
    let (ctx_b, store_b) = context(&config).await;
    let a = new_scheduler(&ctx_a, store_a.clone());
    let b = new_scheduler(&ctx_b, store_b.clone());
    let slot = utc(2021, 9, 1, 10, 0);
    let (ra, rb) = tokio::join!(a.try_once(slot), b.try_once(slot));
    ra.unwrap();
    rb.unwrap();
    let (sa, sb) = tokio::join!(
        deliver(&ctx_a, &store_a, slot),
        deliver(&ctx_b, &store_b, slot)
    );
    assert_eq!(
        sa + sb,
        25,
        "each subscriber's row is sent once between the two workers"
    );
    let counts = store_a
        .delivery_counts(IssueId::parse("2021-09-01").unwrap())
        .await
        .unwrap();
    assert_eq!((counts.sent, counts.total()), (25, 25));
    assert_eq!(files(&work.path().join("outbox/2021-09-01")).len(), 25);
    assert_eq!(files(&work.path().join("archive/2021-09-01")).len(), 6);
}

/// A six-field crontab expression (with seconds) for the daily slot at `at`'s time.
/// Imports `addresses` as active subscribers with the real binary.
fn import(config: &Path, work: &Path, addresses: &[String]) {
    let csv = work.join("subscribers.csv");
    std::fs::write(&csv, format!("email\n{}\n", addresses.join("\n"))).unwrap();
    let out = crate::support::gazette(&[
        "--config",
        config.to_str().unwrap(),
        "subscribers",
        "import",
        csv.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", describe(&out));
}

/// Settings for `gazette serve` against `stack`: one slot a day at `slot`'s time (UTC,
/// the proof at the slot), mail through its Postfix without TLS, replies to
/// news@gazette.test, the web side on `web_port`; then `extra`.
fn serve_setup(
    label: &str,
    stack: &MailStack,
    slot: chrono::DateTime<Utc>,
    web_port: u16,
    extra: &[(&str, &str)],
) -> (crate::support::TempDir, std::path::PathBuf) {
    let cron = cron_at(slot);
    let smtp_port = stack.smtp_port().to_string();
    let web_bind = format!("\"127.0.0.1:{web_port}\"");
    let mut overrides = vec![
        ("schedule.send", cron.as_str()),
        ("schedule.timezone", "\"UTC\""),
        ("schedule.proof_lead", "\"0s\""),
        ("transport.kind", "\"smtp\""),
        ("smtp.host", "\"127.0.0.1\""),
        ("smtp.port", &smtp_port),
        ("smtp.tls", "\"none\""),
        ("newsletter.reply_to", "\"news@gazette.test\""),
        ("web.bind", &web_bind),
    ];
    overrides.extend_from_slice(extra);
    setup(label, 0, &overrides)
}

#[test]
fn serve_sends_on_schedule_through_postfix_stops_on_sigterm_and_never_twice() {
    let users = ["ada", "grace", "alan"];
    let stack = MailStack::start(&users);
    let slot = Utc::now() + chrono::Duration::seconds(6);
    let web_port = crate::support::mailstack::free_port();
    let (work, config) = serve_setup("serve", &stack, slot, web_port, &[]);
    let addresses: Vec<String> = users.iter().map(|u| stack.address(u)).collect();
    import(&config, work.path(), &addresses);
    let spawn = || {
        spawn_serve(
            &config,
            &work
                .path()
                .join(format!("serve-{}.log", Utc::now().timestamp_millis())),
            &[],
        )
    };
    let mut daemon = spawn();
    for user in users {
        let got = stack.wait_for_messages(user, 1, Duration::from_secs(40));
        let text = String::from_utf8_lossy(&got[0]);
        assert!(text.contains("newsletter: "), "{user} got: {text}");
        assert!(text.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"));
    }
    let status = terminate(&mut daemon);
    let logs: String = files(work.path())
        .iter()
        .filter(|f| f.starts_with("serve-"))
        .map(|f| std::fs::read_to_string(work.path().join(f)).unwrap())
        .collect();
    assert_eq!(status.code(), Some(0), "{logs}");
    assert!(logs.contains("stopped cleanly"), "{logs}");

    // Started again: the slot is claimed, nobody gets it twice.
    // Until its scheduler has looked at the slot.
    let mut again = spawn();
    crate::support::prometheus::wait_for_at_least(
        web_port,
        "gazette_scheduler_steps_total",
        1.0,
        Duration::from_secs(30),
        "the restarted scheduler took no step",
    );
    assert_eq!(terminate(&mut again).code(), Some(0));
    for user in users {
        assert_eq!(
            stack.messages(user).len(),
            1,
            "{user} got the issue more than once"
        );
    }
    let counts = with_store(&store_url(work.path()), async |store| {
        let issue = store.latest_issue().await.unwrap().expect("the issue sent");
        store.delivery_counts(issue).await.unwrap()
    });
    assert_eq!((counts.sent, counts.total()), (3, 3), "{counts:?}");
}

/// The whole cycle in one running `gazette serve`: an issue through Postfix into the
/// subscribers' Dovecot mailboxes; one subscriber replies UNSUBSCRIBE through Postfix to
/// the newsletter's mailbox; within a poll they are unsubscribed and get the notice; the
/// next issue reaches the others and not them.
#[test]
fn serve_unsubscribes_a_reply_within_a_poll_and_the_next_issue_skips_them() {
    let users = ["news", "ada", "grace"];
    let stack = MailStack::start(&users);
    let slot = Utc::now() + chrono::Duration::seconds(5);
    let imap_port = stack.imap_port().to_string();
    let web_port = crate::support::mailstack::free_port();
    let (work, config) = serve_setup(
        "cycle",
        &stack,
        slot,
        web_port,
        &[
            ("newsletter.from", "\"Gazette <news@gazette.test>\""),
            ("newsletter.editors", "[]"),
            ("inbox.kind", "\"imap\""),
            ("inbox.host", "\"127.0.0.1\""),
            ("inbox.port", &imap_port),
            ("inbox.tls", "\"none\""),
            ("inbox.username", "\"news\""),
            (
                "inbox.password",
                &format!("\"{}\"", crate::support::mailstack::PASSWORD),
            ),
            ("inbox.poll_interval", "\"2s\""),
        ],
    );
    import(
        &config,
        work.path(),
        &[stack.address("ada"), stack.address("grace")],
    );
    let log = work.path().join("serve.log");
    let mut daemon = spawn_serve(&config, &log, &[]);
    let issue = stack.wait_for_messages("ada", 1, Duration::from_secs(40));
    stack.wait_for_messages("grace", 1, Duration::from_secs(20));
    // Web, schedule, delivery and inbox share one runtime thread that polls their
    // sockets itself: no worker thread wakes it for every reply (see src/main.rs).
    let threads = thread_names(daemon.id());
    assert!(
        !threads
            .iter()
            .any(|name| name.starts_with("tokio-rt-worker")),
        "{threads:?}"
    );
    let parsed = mail_parser::MessageParser::default()
        .parse(&issue[0])
        .unwrap();
    let subject = parsed.subject().unwrap().to_owned();
    let message_id = parsed.message_id().unwrap().to_owned();

    // Ada replies from her mail client: "Re: <subject>", UNSUBSCRIBE on the first line.
    let reply = format!(
        "From: Ada <{ada}>\r\nTo: news@gazette.test\r\nSubject: Re: {subject}\r\nMessage-ID: <reply-1@gazette.test>\r\n\
         In-Reply-To: <{message_id}>\r\nDate: {date}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         UNSUBSCRIBE\r\n\r\nOn Monday, Gazette wrote:\r\n> {subject}\r\n",
        ada = stack.address("ada"),
        date = Utc::now().to_rfc2822(),
    );
    let sent_at = std::time::Instant::now();
    crate::inbox::smtp_send(
        stack.smtp_port(),
        &stack.address("ada"),
        "news@gazette.test",
        reply.as_bytes(),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while stack.messages("ada").len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no notice within 30 s; gazette's log:\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = stack.messages("ada");
    let took = sent_at.elapsed();
    let notice = after
        .iter()
        .map(|m| mail_parser::MessageParser::default().parse(m).unwrap())
        .find(|m| m.message_id() != Some(message_id.as_str()))
        .expect("a notice");
    assert_eq!(
        notice.header_raw("Auto-Submitted").map(str::trim),
        Some("auto-replied")
    );
    assert!(
        notice.body_text(0).unwrap().contains("/resubscribe/"),
        "{:?}",
        notice.body_text(0)
    );
    assert!(took < Duration::from_secs(15), "the notice took {took:?}");

    // /metrics shows the inbox at work.
    let metrics = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(crate::support::http::get(
            ([127, 0, 0, 1], web_port).into(),
            "/metrics",
        ))
        .text();
    let parsed = crate::support::prometheus::parse(&metrics).unwrap();
    assert_eq!(
        parsed.value("gazette_inbox_processed_total", &[]),
        Some(1.0),
        "{metrics}"
    );
    let last_poll = parsed
        .value("gazette_inbox_last_poll_timestamp_seconds", &[])
        .unwrap();
    assert!(
        (Utc::now().timestamp() as f64 - last_poll).abs() < 30.0,
        "{metrics}"
    );

    // The next issue (another date), sent while the daemon runs: Grace only.
    copy_sections(&fixture("2021-11"), &work.path().join("sections"));
    let tomorrow = (Utc::now() + chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    crate::support::send_now(&config, &tomorrow);
    stack.wait_for_messages("grace", 2, Duration::from_secs(30));
    // send-now has returned, so the ledger of the next issue is final: Grace's row is
    // the one sent, and nothing waits to go to anyone else.
    let issue = IssueId::parse(&tomorrow).unwrap();
    let counts = with_store(&store_url(work.path()), async |store| {
        store.delivery_counts(issue).await.unwrap()
    });
    assert_eq!(
        (counts.sent, counts.queued, counts.retrying, counts.unknown),
        (1, 0, 0, 0),
        "{counts:?}"
    );
    assert_eq!(
        stack.messages("ada").len(),
        2,
        "Ada got the next issue after unsubscribing"
    );
    let status = terminate(&mut daemon);
    let logs = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(0), "{logs}");
    let list =
        crate::support::gazette(&["--config", config.to_str().unwrap(), "subscribers", "list"]);
    let listed = String::from_utf8_lossy(&list.stdout).into_owned();
    assert!(
        listed.contains(&format!("{},,unsubscribed", stack.address("ada"))),
        "{listed}"
    );
    assert!(
        listed.contains(&format!("{},,active", stack.address("grace"))),
        "{listed}"
    );
}

#[tokio::test]
async fn a_second_slot_on_the_same_day_is_not_used_and_its_files_stay() {
    let (work, config) = setup(
        "same-day",
        2,
        &[
            ("schedule.send", "\"0 */6 * * *\""),
            ("schedule.timezone", "\"UTC\""),
            ("schedule.proof_lead", "\"0s\""),
        ],
    );
    let (ctx, store) = context(&config).await;
    let scheduler = new_scheduler(&ctx, store.clone());
    scheduler.try_once(utc(2021, 9, 1, 0, 0)).await.unwrap();
    assert_eq!(deliver(&ctx, &store, utc(2021, 9, 1, 0, 0)).await, 2);
    // New sections arrive; the 06:00 slot would be issue 2021-09-01 again.
    copy_sections(&fixture("2021-11"), &work.path().join("sections"));
    let report = scheduler.try_once(utc(2021, 9, 1, 6, 0)).await.unwrap();
    assert_eq!(report.actions, vec![Action::Compose(utc(2021, 9, 1, 6, 0))]);
    assert_eq!(deliver(&ctx, &store, utc(2021, 9, 1, 6, 0)).await, 0);
    assert_eq!(
        files(&work.path().join("sections")).len(),
        6,
        "the new files are left for the next issue"
    );
    let outbox = files(&work.path().join("outbox"));
    assert!(
        outbox.contains(&"editors/missed/2021-09-01/*.eml".to_owned()),
        "{outbox:?}"
    );
    assert!(
        !outbox.iter().any(|f| f.starts_with("editors/held")),
        "{outbox:?}"
    );
    // The next day's slot sends them.
    scheduler.try_once(utc(2021, 9, 2, 0, 0)).await.unwrap();
    assert_eq!(deliver(&ctx, &store, utc(2021, 9, 2, 0, 0)).await, 2);
    assert!(files(&work.path().join("sections")).is_empty());
}

/// The names of the threads of process `pid`.
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|task| {
            let path = task.unwrap().path().join("comm");
            std::fs::read_to_string(path).unwrap().trim().to_owned()
        })
        .collect()
}

/// Whether process `pid` still runs: `/proc/pid` is there and it is not a zombie
/// (killed, it stays one until reaped).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .next()?
                .to_owned();
            Some(state != "Z")
        })
        .unwrap_or(false)
}

#[test]
fn a_test_that_fails_while_its_daemon_runs_leaves_no_daemon_behind() {
    let (work, config) = setup("orphan", 0, &[("web.bind", "\"127.0.0.1:0\"")]);
    let log = work.path().join("serve.log");
    let (pid_tx, pid_rx) = std::sync::mpsc::channel();
    // A test's thread that starts `serve` and then fails, as an assertion would.
    let failed = std::thread::spawn(move || {
        // Reaped below by its pid, after the panic dropped it unwaited, as tests do.
        #[allow(clippy::zombie_processes)]
        let daemon = spawn_serve(&config, &log, &[]);
        pid_tx.send(daemon.id()).unwrap();
        panic!("an assertion failed while the daemon ran");
    })
    .join();
    assert!(failed.is_err());
    let pid = pid_rx.recv().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while running(pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = running(pid);
    // Stopped if it still runs, and reaped, so nothing outlives this test.
    // SAFETY: plain system calls on a pid this process started and has not reaped.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
        libc::waitpid(pid as i32, std::ptr::null_mut(), 0);
    }
    assert!(
        !left,
        "gazette serve (pid {pid}) still ran 10 s after its test failed"
    );
}
