//! The inbox acts only on real bounces of our own mail and on real requests: forged
//! delivery reports, questions, indented quotations, reused Message-IDs and upper-case
//! addresses, through a Maildir folder, the real `gazette` binary, a real SQLite store
//! and `/metrics` over HTTP.

use crate::support::{TempDir, copy_sections, describe, fixture, gazette, http, prometheus};
use crate::support::{add_active, write_config};
use clap::Parser;
use gazette::app::{Cli, Context};
use gazette::domain::{IssueId, TokenPurpose};
use gazette::render::message_id;
use gazette::store::{Store, SubscriberStatus};
use std::path::PathBuf;

const ISSUE: &str = "2025-09-01";

/// A folder with settings, a store, and the Maildir the worker reads.
struct Setup {
    dir: TempDir,
    config: PathBuf,
    ctx: Context,
    store: Store,
}

impl Setup {
    async fn new(label: &str) -> Self {
        let dir = TempDir::new(label);
        let config = write_config(dir.path(), &[]);
        let cli = Cli::parse_from(["gazette", "--config", config.to_str().unwrap(), "status"]);
        let ctx = Context::load(&cli).expect("settings load");
        let store = Store::open(&ctx.settings.store.url).await.unwrap();
        Self {
            dir,
            config,
            ctx,
            store,
        }
    }

    fn inbox(&self) -> PathBuf {
        self.dir.path().join("inbox")
    }

    /// Drops `raw` into the Maildir's `new/`.
    fn deliver(&self, name: &str, raw: &[u8]) {
        let new = self.inbox().join("new");
        std::fs::create_dir_all(&new).unwrap();
        std::fs::write(new.join(name), raw).unwrap();
    }

    /// `gazette inbox --once`, which must succeed.
    fn poll(&self) {
        let out = gazette(&["--config", self.config.to_str().unwrap(), "inbox", "--once"]);
        assert!(out.status.success(), "{}", describe(&out));
    }

    /// What the store has recorded of the inbox: messages handled, unverified reports.
    async fn recorded(&self) -> (u64, u64) {
        let figures = self.store.inbox_figures().await.unwrap();
        (figures.processed, figures.unverified_reports)
    }

    /// Sends the reference issue for `ISSUE` with `send-now` (file transport) and returns
    /// each message's recipient and header block, as a bounce would quote them.
    fn send_issue(&self) -> Vec<(String, String)> {
        copy_sections(&fixture("2021-09"), &self.dir.path().join("sections"));
        crate::support::send_now(&self.config, ISSUE);
        let outbox = self.dir.path().join("outbox");
        let mut sent = Vec::new();
        for path in crate::support::walk(&outbox) {
            let folders = path.strip_prefix(&outbox).unwrap().parent().unwrap();
            if folders.components().any(|c| c.as_os_str() == "notices") {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .unwrap()
                .replace("\r\n", "\n");
            let headers = text.split("\n\n").next().unwrap().to_owned();
            let to = headers
                .lines()
                .find_map(|l| l.strip_prefix("To: "))
                .unwrap()
                .trim()
                .to_owned();
            sent.push((to, headers));
        }
        sent
    }

    async fn status(&self, id: i64) -> SubscriberStatus {
        self.store.subscriber(id).await.unwrap().unwrap().status
    }

    async fn bounce_count(&self, id: i64) -> u32 {
        self.store
            .subscriber(id)
            .await
            .unwrap()
            .unwrap()
            .bounce_count
    }

    /// Messages left in the inbox for a person: in `cur/`, not seen, not moved.
    fn left_for_a_person(&self) -> Vec<String> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.inbox().join("cur"))
            .unwrap()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(!name.ends_with(":2,S"), "{name} was marked seen");
            out.push(std::fs::read_to_string(entry.path()).unwrap());
        }
        out
    }

    /// Messages filed as handled, in the processed folder.
    fn processed(&self) -> usize {
        ["new", "cur"]
            .iter()
            .filter_map(|sub| std::fs::read_dir(self.inbox().join(".Processed").join(sub)).ok())
            .map(|entries| entries.count())
            .sum()
    }

    /// One value from `/metrics`, served by the web side on a port of its own.
    async fn metric(&self, name: &str) -> Option<f64> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = gazette::app::web_state(&self.ctx).await.expect("web state");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(gazette::web::serve(state, listener, async {
            let _ = rx.await;
        }));
        let text = http::get(addr, "/metrics").await.text();
        let _ = tx.send(());
        task.await.unwrap().unwrap();
        prometheus::parse(&text).unwrap().value(name, &[])
    }
}

/// A delivery status report as Postfix writes one: `blocks` recipient blocks (address,
/// status) and, when given, the returned message's headers.
fn report(id: &str, blocks: &[(&str, &str)], returned_headers: Option<&str>) -> Vec<u8> {
    let mut status = String::from("Reporting-MTA: dns; mx.elsewhere.test\n\n");
    for (address, code) in blocks {
        status.push_str(&format!(
            "Final-Recipient: rfc822; {address}\nOriginal-Recipient: rfc822;{address}\n\
             Action: failed\nStatus: {code}\nDiagnostic-Code: smtp; 550 {code} no such user\n\n"
        ));
    }
    let mut out = format!(
        "Return-Path: <>\nFrom: MAILER-DAEMON@mx.elsewhere.test (Mail Delivery System)\n\
         To: newsletter@example.org\nSubject: Undelivered Mail Returned to Sender\n\
         Message-ID: <{id}>\nAuto-Submitted: auto-replied\nMIME-Version: 1.0\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"B0\"\n\n\
         --B0\nContent-Type: text/plain\n\nI'm sorry to have to inform you that your message \
         could not be delivered.\n\n--B0\nContent-Type: message/delivery-status\n\n{status}"
    );
    if let Some(headers) = returned_headers {
        out.push_str(&format!(
            "--B0\nContent-Type: text/rfc822-headers\n\n{headers}\n\n"
        ));
    }
    out.push_str("--B0--\n");
    out.replace('\n', "\r\n").into_bytes()
}

fn plain(headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut out = String::new();
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\n"));
    }
    out.push_str("MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n");
    out.push_str(body);
    out.replace('\n', "\r\n").into_bytes()
}

#[tokio::test]
async fn forged_delivery_reports_mark_nobody_bounced_and_are_left_for_a_person() {
    let s = Setup::new("inbox-forged-reports").await;
    let mut ids = Vec::new();
    for i in 0..16 {
        ids.push(add_active(&s.store, &format!("reader{i:02}@example.net")).await);
    }
    let sent = s.send_issue();
    assert_eq!(sent.len(), 16);
    let addresses: Vec<String> = (0..16)
        .map(|i| format!("reader{i:02}@example.net"))
        .collect();
    // Three report blocks for each of the 16 addresses.
    let all_blocks: Vec<(&str, &str)> = addresses
        .iter()
        .flat_map(|a| std::iter::repeat_n((a.as_str(), "5.1.1"), 3))
        .collect();
    let others: Vec<(&str, &str)> = all_blocks
        .iter()
        .copied()
        .filter(|(a, _)| *a != "reader00@example.net")
        .collect();
    let domain = &s.ctx.settings.newsletter.message_id_domain;
    let token = |id: i64| s.ctx.tokens.sign(TokenPurpose::Unsubscribe, id).to_string();
    let reader00_headers = &sent
        .iter()
        .find(|(to, _)| to.contains("reader00@"))
        .unwrap()
        .1;
    let forged = [
        // Nothing returned at all.
        report("f1@mx.elsewhere.test", &all_blocks, None),
        // A Message-ID in our domain with a made-up token.
        report(
            "f2@mx.elsewhere.test",
            &all_blocks,
            Some(&format!(
                "Message-ID: <{ISSUE}.{}-0123456789abcdef0123456789abcdef@{domain}>",
                ids[1]
            )),
        ),
        // reader00's own genuine copy, quoted in a report about everyone else.
        report("f3@mx.elsewhere.test", &others, Some(reader00_headers)),
        // A genuine token, but for an issue that was never sent.
        report(
            "f4@mx.elsewhere.test",
            &all_blocks,
            Some(&format!(
                "Message-ID: <2024-01-01.{}@{domain}>",
                token(ids[2])
            )),
        ),
        // A genuine Message-ID of ours in another domain's clothing.
        report(
            "f5@mx.elsewhere.test",
            &all_blocks,
            Some(&format!(
                "Message-ID: <{ISSUE}.{}@elsewhere.test>",
                token(ids[3])
            )),
        ),
    ];
    for (i, raw) in forged.iter().enumerate() {
        s.deliver(&format!("17000000{i:02}.M{i}P1.host"), raw);
    }
    // Three polls: a threshold of three must not be reached by repetition either.
    s.poll();
    assert_eq!(s.recorded().await, (5, 5), "five reports, none proven");
    for round in 1..3 {
        for (i, raw) in forged.iter().enumerate() {
            s.deliver(&format!("1700000{round}{i:02}.M{i}P2.host"), raw);
        }
        s.poll();
        assert_eq!(
            s.recorded().await,
            (5, 5),
            "the same reports, recorded once"
        );
        assert_eq!(s.left_for_a_person().len(), 5 * (round + 1));
    }
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            s.status(*id).await,
            SubscriberStatus::Active,
            "reader{i:02}"
        );
        assert_eq!(s.bounce_count(*id).await, 0, "reader{i:02}");
    }
    assert_eq!(s.left_for_a_person().len(), 15);
    assert_eq!(s.processed(), 0);
    // Counted once each: a report delivered again is the same report.
    assert_eq!(
        s.metric("gazette_inbox_unverified_reports_total").await,
        Some(5.0)
    );
    s.store.close().await;
}

#[tokio::test]
async fn a_report_about_our_message_counts_once_for_that_subscriber_only() {
    let s = Setup::new("inbox-real-report").await;
    let ada = add_active(&s.store, "Ada@example.net").await;
    let bob = add_active(&s.store, "bob@example.net").await;
    let sent = s.send_issue();
    let ada_headers = &sent.iter().find(|(to, _)| to.contains("Ada@")).unwrap().1;
    // The reporting server writes the address in its own case; three blocks for Ada,
    // and a block for Bob that this message was never sent to.
    let raw = report(
        "r1@mx.example.net",
        &[
            ("ada@example.net", "5.1.1"),
            ("ADA@example.net", "5.1.1"),
            ("ada@EXAMPLE.net", "5.1.1"),
            ("bob@example.net", "5.1.1"),
        ],
        Some(ada_headers),
    );
    s.deliver("1700000000.M1P1.host", &raw);
    s.poll();
    assert_eq!(s.recorded().await, (1, 0), "a proven report");
    assert_eq!(s.bounce_count(ada).await, 1, "one report, one count");
    assert_eq!(s.bounce_count(bob).await, 0);
    // The same report again (another Message-ID, the same returned message): the
    // issue to Ada has bounced once, and counts once.
    s.deliver(
        "1700000001.M2P1.host",
        &report(
            "r2@mx.example.net",
            &[("ada@example.net", "5.1.1")],
            Some(ada_headers),
        ),
    );
    s.poll();
    assert_eq!(s.bounce_count(ada).await, 1);
    assert_eq!(s.status(ada).await, SubscriberStatus::Active);
    assert_eq!(s.processed(), 2);
    assert_eq!(
        s.metric("gazette_inbox_unverified_reports_total").await,
        Some(0.0)
    );
    // A Message-ID of ours that names the issue and Ada with a genuine token is what
    // proves it; the token alone is what `message_id` builds.
    let token = s.ctx.tokens.sign(TokenPurpose::Message, ada).to_string();
    let expected = message_id(
        &s.ctx.settings.newsletter,
        IssueId::parse(ISSUE).unwrap(),
        &token,
    );
    assert!(ada_headers.contains(&expected), "{ada_headers}");
    s.store.close().await;
}

#[tokio::test]
async fn only_requests_unsubscribe() {
    let s = Setup::new("inbox-requests").await;
    let question = add_active(&s.store, "question@example.net").await;
    let indented = add_active(&s.store, "indented@example.net").await;
    let reused = add_active(&s.store, "reused@example.net").await;
    let shouting = add_active(&s.store, "user00032@example.net").await;
    let plain_me = add_active(&s.store, "plain@example.net").await;

    // Poll 1: a stranger's message takes a Message-ID first.
    s.deliver(
        "1700000000.M1P1.host",
        &plain(
            &[
                ("From", "stranger@elsewhere.test"),
                ("Subject", "Hello"),
                ("Message-ID", "<shared-1@client.test>"),
            ],
            "Just saying hello.\n",
        ),
    );
    s.poll();
    assert_eq!(s.recorded().await, (1, 0));
    assert_eq!(s.left_for_a_person().len(), 1, "the stranger's message");

    // Poll 2.
    s.deliver(
        "1700000001.M1P1.host",
        &plain(
            &[
                ("From", "question@example.net"),
                ("Subject", "Unsubscribe? No - keep it coming!"),
                ("Message-ID", "<q-1@client.test>"),
            ],
            "I love it.\n",
        ),
    );
    s.deliver(
        "1700000002.M1P1.host",
        &plain(
            &[
                ("From", "indented@example.net"),
                ("Subject", "Re: Gazette newsletter: September 2025"),
                ("Message-ID", "<i-1@client.test>"),
            ],
            "Thanks, a great issue!\n\n    If you know someone who might be interested, \
             please ask them to sign up:\n\n    <http://127.0.0.1:8080/subscribe>\n\n    \
             UNSUBSCRIBE\n\n    If you no longer wish to receive emails from us, reply \
             with\n    UNSUBSCRIBE in the subject.\n",
        ),
    );
    s.deliver(
        "1700000003.M1P1.host",
        &plain(
            &[
                ("From", "reused@example.net"),
                ("Subject", "UNSUBSCRIBE"),
                ("Message-ID", "<shared-1@client.test>"),
            ],
            "",
        ),
    );
    s.deliver(
        "1700000004.M1P1.host",
        &plain(
            &[
                ("From", "USER00032@EXAMPLE.NET"),
                ("Subject", "Re: UNSUBSCRIBE"),
                ("Message-ID", "<u-32@client.test>"),
            ],
            "",
        ),
    );
    s.deliver(
        "1700000005.M1P1.host",
        &plain(
            &[
                ("From", "plain@example.net"),
                ("Subject", "Re: Gazette newsletter: September 2025"),
                ("Message-ID", "<p-1@client.test>"),
            ],
            "Unsubscribe me\n\nOn Mon, 1 Sep 2025, Gazette wrote:\n> UNSUBSCRIBE\n",
        ),
    );
    s.poll();
    assert_eq!(s.recorded().await, (6, 0), "five more messages");
    assert_eq!(s.status(question).await, SubscriberStatus::Active);
    assert_eq!(s.status(indented).await, SubscriberStatus::Active);
    assert_eq!(
        s.status(reused).await,
        SubscriberStatus::Unsubscribed,
        "a reused Message-ID is not the same message"
    );
    assert_eq!(s.status(shouting).await, SubscriberStatus::Unsubscribed);
    assert_eq!(s.status(plain_me).await, SubscriberStatus::Unsubscribed);
    s.store.close().await;
}
