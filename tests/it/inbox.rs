//! The inbox worker against a real Postfix → Dovecot (IMAP with a password) and against
//! a Maildir folder; hostile input; and the timing of one poll of 1 000 messages.

use crate::support::mailstack::{self, MailStack, PASSWORD};
use crate::support::{TempDir, describe, gazette, write_config};
use clap::Parser;
use gazette::app::{Cli, Context};
use gazette::domain::{HeaderText, IssueId, TokenPurpose};
use gazette::render::{Personalized, RenderedIssue, message_id};
use gazette::store::{DeliveryStatus, DeliveryUpdate, FrozenIssue, Store, SubscriberStatus};
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const ISSUE: &str = "2025-09-01";
const ISSUE_SUBJECT: &str = "Gazette newsletter: September 2025";

fn context(config: &Path) -> Context {
    let cli = Cli::parse_from(["gazette", "--config", config.to_str().unwrap(), "status"]);
    Context::load(&cli).expect("settings load")
}

async fn add(store: &Store, email: &str) -> i64 {
    crate::support::add_active(store, email).await
}

/// Freezes a small issue `ISSUE` now, queued to every active subscriber; returns its id
/// and the time.
async fn freeze_issue(store: &Store) -> (IssueId, chrono::DateTime<chrono::Utc>) {
    let issue = IssueId::parse(ISSUE).unwrap();
    let rendered = RenderedIssue {
        subject: HeaderText::parse(ISSUE_SUBJECT).unwrap(),
        html: Personalized::parse("<p>hi</p>", true),
        text: Personalized::parse("hi", false),
    };
    let now = chrono::Utc::now();
    store
        .freeze_and_snapshot(&FrozenIssue::new(issue, &rendered, vec![], now), now)
        .await
        .unwrap();
    (issue, now)
}

async fn status(store: &Store, id: i64) -> SubscriberStatus {
    store.subscriber(id).await.unwrap().unwrap().status
}

/// Our Message-ID of the issue to subscriber `id`.
fn our_message_id(ctx: &Context, id: i64) -> String {
    let token = ctx.tokens.sign(TokenPurpose::Unsubscribe, id).to_string();
    message_id(
        &ctx.settings.newsletter,
        IssueId::parse(ISSUE).unwrap(),
        &token,
    )
}

/// The issue's plain text as a mail client quotes it, footer included.
fn quoted_issue(to: &str) -> String {
    let text = format!(
        "{ISSUE_SUBJECT}\n\n- Introduction\n- Events\n\nWelcome to this month's issue.\n\n--\n\
         If you know someone who might be interested, please ask them to sign up:\n\n\
         <http://127.0.0.1:8080/subscribe>\n\nUNSUBSCRIBE\n\n\
         If you no longer wish to receive emails from the Gazette, reply to this email with\n\
         UNSUBSCRIBE in the subject, or email us with UNSUBSCRIBE in the subject:\n\n\
         news@gazette.test\n\nThis email was sent to {to}.\n"
    );
    text.lines()
        .map(|l| {
            if l.is_empty() {
                ">".to_owned()
            } else {
                format!("> {l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

fn message(headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut out = String::new();
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n");
    out.push_str(&body.replace("\r\n", "\n").replace('\n', "\r\n"));
    out.push_str("\r\n");
    out.into_bytes()
}

/// Submits `data` to Postfix on `port` (no AUTH: loopback is in mynetworks).
pub(crate) fn smtp_send(port: u16, from: &str, to: &str, data: &[u8]) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let t = Duration::from_secs(10);
    let reply = |s: &mut TcpStream| {
        let r = mailstack::read_until(s, t, |b| {
            b.ends_with(b"\r\n")
                && b.split(|&c| c == b'\n')
                    .rev()
                    .nth(1)
                    .is_some_and(|l| l.len() >= 4 && l[3] == b' ')
        })
        .unwrap();
        String::from_utf8_lossy(&r).into_owned()
    };
    let cmd = |s: &mut TcpStream, line: &str, want: &str| {
        s.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        let r = reply(s);
        assert!(r.starts_with(want), "{line} → {r}");
    };
    assert!(reply(&mut s).starts_with("220"));
    cmd(&mut s, "EHLO test.gazette.test", "250");
    cmd(&mut s, &format!("MAIL FROM:<{from}>"), "250");
    cmd(&mut s, &format!("RCPT TO:<{to}>"), "250");
    cmd(&mut s, "DATA", "354");
    let mut stuffed = Vec::new();
    for line in data.split_inclusive(|&c| c == b'\n') {
        if line.starts_with(b".") {
            stuffed.push(b'.');
        }
        stuffed.extend_from_slice(line);
    }
    s.write_all(&stuffed).unwrap();
    cmd(&mut s, ".", "250");
    cmd(&mut s, "QUIT", "221");
}

/// Files in a Maildir folder's `cur/` and `new/` with their info part (`:2,FLAGS`).
fn maildir_files(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(entries) = std::fs::read_dir(dir.join(sub)) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let flags = name
                    .split_once(":2,")
                    .map(|(_, f)| f.to_owned())
                    .unwrap_or_default();
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                out.push((flags, text));
            }
        }
    }
    out
}

/// `gazette inbox --once`, which must succeed; what it did is read from the store.
fn run_inbox_once(config: &Path) {
    let out = gazette(&["--config", config.to_str().unwrap(), "inbox", "--once"]);
    assert!(out.status.success(), "{}", describe(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_through_postfix_and_dovecot_end_as_designed() {
    let stack = MailStack::start(&["news", "alice", "bob", "carol", "dave", "erin"]);
    let dir = TempDir::new("inbox-imap");
    let imap_port = stack.imap_port().to_string();
    let smtp_port = stack.smtp_port().to_string();
    let config = write_config(
        dir.path(),
        &[
            ("newsletter.from", "\"Gazette <news@gazette.test>\""),
            ("newsletter.reply_to", "\"news@gazette.test\""),
            ("newsletter.name", "\"Gazette\""),
            ("transport.kind", "\"smtp\""),
            ("smtp.host", "\"127.0.0.1\""),
            ("smtp.port", &smtp_port),
            ("smtp.tls", "\"none\""),
            ("inbox.kind", "\"imap\""),
            ("inbox.host", "\"127.0.0.1\""),
            ("inbox.port", &imap_port),
            ("inbox.tls", "\"none\""),
            ("inbox.username", "\"news\""),
            ("inbox.password", &format!("\"{PASSWORD}\"")),
            ("delivery.bounce_threshold", "1"),
        ],
    );
    let ctx = context(&config);
    let store = Store::open(&ctx.settings.store.url).await.unwrap();
    let alice = add(&store, "alice@gazette.test").await;
    let bob = add(&store, "bob@gazette.test").await;
    let carol = add(&store, "carol@gazette.test").await;
    let dave = add(&store, "dave@gazette.test").await;
    let nobody = add(&store, "nobody@gazette.test").await;
    let news = "news@gazette.test";
    let port = stack.smtp_port();
    // The ledger shows the issue sent to `nobody`: a report is believed only about a
    // message we sent.
    let (issue, now) = freeze_issue(&store).await;
    store
        .record_deliveries(&[(issue, nobody, DeliveryUpdate::Sent { at: now })])
        .await
        .unwrap();

    // 1. A plain UNSUBSCRIBE reply, matched by address.
    let alice_mail = message(
        &[
            ("From", "Alice <alice@gazette.test>"),
            ("To", news),
            ("Subject", "Re: UNSUBSCRIBE"),
            ("Message-ID", "<alice-1@client.test>"),
            ("In-Reply-To", &our_message_id(&ctx, alice)),
        ],
        "UNSUBSCRIBE\n",
    );
    smtp_send(port, "alice@gazette.test", news, &alice_mail);
    // 2. A `Re:` from a mail client quoting the whole issue, footer and all.
    smtp_send(
        port,
        "bob@gazette.test",
        news,
        &message(
            &[
                ("From", "Bob <bob@gazette.test>"),
                ("To", news),
                ("Subject", &format!("Re: {ISSUE_SUBJECT}")),
                ("Message-ID", "<bob-1@client.test>"),
                ("In-Reply-To", &our_message_id(&ctx, bob)),
                ("References", &our_message_id(&ctx, bob)),
            ],
            &format!(
                "Thanks, a great issue! The events list was really useful.\n\n\
                 On Mon, 1 Sep 2025 at 10:00, Gazette <news@gazette.test> wrote:\n{}",
                quoted_issue("bob@gazette.test")
            ),
        ),
    );
    // 3. From an alias: only our Message-ID in In-Reply-To says who it is.
    smtp_send(
        port,
        "c.smith@alias.gazette.test",
        news,
        &message(
            &[
                ("From", "C. Smith <c.smith@alias.gazette.test>"),
                ("To", news),
                ("Subject", &format!("RE: {ISSUE_SUBJECT}")),
                ("Message-ID", "<carol-1@client.test>"),
                ("In-Reply-To", &our_message_id(&ctx, carol)),
            ],
            &format!(
                "Unsubscribe\n\n-----Original Message-----\nFrom: Gazette\n{}",
                quoted_issue("carol@gazette.test")
            ),
        ),
    );
    // 4. An out-of-office auto-reply.
    smtp_send(
        port,
        "dave@gazette.test",
        news,
        &message(
            &[
                ("From", "Dave <dave@gazette.test>"),
                ("To", news),
                ("Subject", &format!("Out of office: {ISSUE_SUBJECT}")),
                ("Message-ID", "<dave-ooo@client.test>"),
                ("Auto-Submitted", "auto-replied"),
                ("X-Autoreply", "yes"),
                ("In-Reply-To", &our_message_id(&ctx, dave)),
            ],
            "I am out of the office until Monday.\nunsubscribe\n",
        ),
    );
    // 5. A real Postfix bounce: our issue to a user Dovecot does not know.
    smtp_send(
        port,
        news,
        "nobody@gazette.test",
        &message(
            &[
                ("From", "Gazette <news@gazette.test>"),
                ("To", "nobody@gazette.test"),
                ("Subject", ISSUE_SUBJECT),
                ("Message-ID", &our_message_id(&ctx, nobody)),
            ],
            "Welcome to this month's issue.\n",
        ),
    );
    // 6. A message for a person.
    smtp_send(
        port,
        "erin@gazette.test",
        news,
        &message(
            &[
                ("From", "Erin <erin@gazette.test>"),
                ("To", news),
                ("Subject", "Could I write for the next issue?"),
                ("Message-ID", "<erin-1@client.test>"),
            ],
            "Hello, I would love to contribute an article about kinship care.\n",
        ),
    );
    stack.wait_for_messages("news", 6, Duration::from_secs(30));

    run_inbox_once(&config);
    assert_eq!(store.inbox_message_count().await.unwrap(), 6);

    assert_eq!(status(&store, alice).await, SubscriberStatus::Unsubscribed);
    assert_eq!(
        status(&store, bob).await,
        SubscriberStatus::Active,
        "a quoted footer is not a request"
    );
    assert_eq!(
        status(&store, carol).await,
        SubscriberStatus::Unsubscribed,
        "found by In-Reply-To"
    );
    assert_eq!(
        status(&store, dave).await,
        SubscriberStatus::Active,
        "auto-replies are never requests"
    );
    assert_eq!(
        status(&store, nobody).await,
        SubscriberStatus::Bounced,
        "5.1.1 with threshold 1"
    );
    let withdrawn = store.consent_withdrawn(alice).await.unwrap().unwrap();
    assert_eq!(withdrawn.source, "reply");
    assert!(
        withdrawn
            .evidence
            .as_deref()
            .is_some_and(|e| e.starts_with("mid:<alice-1@client.test> ")),
        "{withdrawn:?}"
    );

    // The notices arrive in the subscribers' own mailboxes (carol's, not the alias).
    for (user, id) in [("alice", alice), ("carol", carol)] {
        let got = stack.wait_for_messages(user, 1, Duration::from_secs(30));
        let text = String::from_utf8_lossy(&got[0]).into_owned();
        assert!(text.contains("Auto-Submitted: auto-replied"), "{text}");
        let token = ctx.tokens.sign(TokenPurpose::Resubscribe, id).to_string();
        assert!(text.contains(&format!("/resubscribe/{token}")), "{text}");
    }
    for user in ["bob", "dave", "erin"] {
        assert!(stack.messages(user).is_empty(), "{user} was answered");
    }

    // The mailbox: requests and the bounce filed as seen in Processed; the rest unread.
    let inbox = maildir_files(&stack.maildir("news"));
    let processed = maildir_files(&stack.maildir("news").join(".Processed"));
    assert_eq!(inbox.len(), 3, "{inbox:?}");
    assert!(
        inbox.iter().all(|(flags, _)| !flags.contains('S')),
        "{inbox:?}"
    );
    for needle in ["<bob-1@", "<dave-ooo@", "<erin-1@"] {
        assert!(
            inbox.iter().any(|(_, t)| t.contains(needle)),
            "{needle} not left in INBOX"
        );
    }
    assert_eq!(processed.len(), 3, "{processed:?}");
    assert!(processed.iter().all(|(flags, _)| flags.contains('S')));
    assert!(
        processed
            .iter()
            .any(|(_, t)| t.contains("multipart/report"))
    );

    // A restart processes nothing twice: the same request delivered again (as after a
    // crash between recording and moving) is filed without a second notice.
    let recorded = store.inbox_message_count().await.unwrap();
    smtp_send(port, "alice@gazette.test", news, &alice_mail);
    stack.wait_for_messages("news", 4, Duration::from_secs(30));
    run_inbox_once(&config);
    assert_eq!(store.inbox_message_count().await.unwrap(), recorded);
    run_inbox_once(&config);
    assert_eq!(store.inbox_message_count().await.unwrap(), recorded);
    let alice_email = gazette::domain::SubscriberEmail::parse("alice@gazette.test").unwrap();
    assert_eq!(store.notices_sent_to(&alice_email).await.unwrap(), 1);
    assert_eq!(stack.messages("alice").len(), 1, "one notice only");
    assert_eq!(maildir_files(&stack.maildir("news")).len(), 3);
    store.close().await;
}

fn write_maildir_message(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let new = dir.join("new");
    std::fs::create_dir_all(&new).unwrap();
    let path = new.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[tokio::test]
async fn maildir_source_unsubscribes_skips_queued_deliveries_and_files_messages() {
    let dir = TempDir::new("inbox-maildir");
    let config = write_config(dir.path(), &[]);
    let ctx = context(&config);
    let store = Store::open(&ctx.settings.store.url).await.unwrap();
    let alice = add(&store, "alice@example.net").await;
    let bob = add(&store, "bob@example.net").await;
    // An issue with both queued: Alice's row must end skipped.
    let (issue, _) = freeze_issue(&store).await;

    let inbox = dir.path().join("inbox");
    let token = ctx.tokens.sign(TokenPurpose::Unsubscribe, alice);
    // The List-Unsubscribe mailto: the token in the subject, from another address.
    write_maildir_message(
        &inbox,
        "1700000000.M1P1.host",
        &message(
            &[
                ("Return-Path", "<someone@elsewhere.test>"),
                ("From", "someone@elsewhere.test"),
                ("To", "newsletter@example.org"),
                ("Subject", &format!("UNSUBSCRIBE {token}")),
                ("Message-ID", "<mailto-1@elsewhere.test>"),
            ],
            "",
        ),
    );
    write_maildir_message(
        &inbox,
        "1700000001.M1P1.host",
        &message(
            &[
                ("From", "bob@example.net"),
                ("Subject", "Hello"),
                ("Message-ID", "<b@x.test>"),
            ],
            "Just saying hello.\n",
        ),
    );
    run_inbox_once(&config);
    assert_eq!(store.inbox_message_count().await.unwrap(), 2);
    assert_eq!(status(&store, alice).await, SubscriberStatus::Unsubscribed);
    assert_eq!(status(&store, bob).await, SubscriberStatus::Active);
    assert_eq!(
        store.delivery(issue, alice).await.unwrap().unwrap().0,
        DeliveryStatus::Skipped
    );
    assert_eq!(
        store.delivery(issue, bob).await.unwrap().unwrap().0,
        DeliveryStatus::Queued
    );
    // The notice, with the file transport, in outbox/notices/.
    let notices = dir.path().join("outbox/notices");
    let files: Vec<_> = walk(&notices);
    assert_eq!(files.len(), 1, "{files:?}");
    let notice = std::fs::read_to_string(&files[0]).unwrap();
    assert!(notice.contains("To: alice@example.net"), "{notice}");
    assert!(notice.contains("Auto-Submitted: auto-replied"));
    // Filed: processed one seen in .Processed/cur, the other unread in cur/.
    let processed = maildir_files(&inbox.join(".Processed"));
    assert_eq!(processed.len(), 1);
    assert_eq!(processed[0].0, "S");
    let left: Vec<_> = std::fs::read_dir(inbox.join("cur"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(left.len(), 1);
    assert!(left[0].file_name().to_string_lossy().ends_with(":2,"));
    assert_eq!(std::fs::read_dir(inbox.join("new")).unwrap().count(), 0);
    // Again: nothing.
    run_inbox_once(&config);
    assert_eq!(store.inbox_message_count().await.unwrap(), 2);
    assert_eq!(walk(&notices).len(), 1);
    store.close().await;
}

/// Every file under `dir` but hidden ones, at any depth.
fn walk(dir: &Path) -> Vec<PathBuf> {
    crate::support::walk(dir)
        .into_iter()
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect()
}

/// Prints how long one poll of 1 000 waiting messages takes, from a Maildir and over
/// IMAP from Dovecot. Run with
/// `cargo test --release --test it inbox::poll_of_1000_messages -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn poll_of_1000_messages() {
    const N: usize = 1000;
    let sample = |i: usize| {
        let (subject, body) = match i % 4 {
            0 => ("UNSUBSCRIBE".to_owned(), "UNSUBSCRIBE".to_owned()),
            1 => (
                format!("Re: {ISSUE_SUBJECT}"),
                format!(
                    "Thanks!\n\nOn Monday you wrote:\n{}",
                    quoted_issue("x@y.test")
                ),
            ),
            2 => ("Out of office".to_owned(), "Away".to_owned()),
            _ => ("A question".to_owned(), "Hello there, ".repeat(200)),
        };
        message(
            &[
                ("Return-Path", &format!("<user{i}@gazette.test>")),
                ("From", &format!("user{i}@gazette.test")),
                ("Subject", &subject),
                ("Message-ID", &format!("<bench-{i}@client.test>")),
                (
                    "Auto-Submitted",
                    if i % 4 == 2 { "auto-replied" } else { "no" },
                ),
            ],
            &body,
        )
    };
    async fn setup(config: &Path) -> Store {
        let ctx = context(config);
        let store = Store::open(&ctx.settings.store.url).await.unwrap();
        for i in (0..N).step_by(4) {
            add(&store, &format!("user{i}@gazette.test")).await;
        }
        store
    }

    // Maildir.
    let dir = TempDir::new("inbox-bench-maildir");
    let config = write_config(dir.path(), &[]);
    let store = setup(&config).await;
    for i in 0..N {
        write_maildir_message(
            &dir.path().join("inbox"),
            &format!("{}.M{i}P1.bench", 1_700_000_000 + i),
            &sample(i),
        );
    }
    let start = Instant::now();
    run_inbox_once(&config);
    let maildir_time = start.elapsed();
    assert_eq!(store.inbox_message_count().await.unwrap(), N as u64);
    store.close().await;

    // IMAP: the messages are placed in Dovecot's Maildir directly (Postfix would take
    // longer than what is measured), then read over IMAP.
    let stack = MailStack::start(&["news"]);
    let dir = TempDir::new("inbox-bench-imap");
    let imap_port = stack.imap_port().to_string();
    let config = write_config(
        dir.path(),
        &[
            ("inbox.kind", "\"imap\""),
            ("inbox.host", "\"127.0.0.1\""),
            ("inbox.port", &imap_port),
            ("inbox.tls", "\"none\""),
            ("inbox.username", "\"news\""),
            ("inbox.password", &format!("\"{PASSWORD}\"")),
        ],
    );
    let store = setup(&config).await;
    // Log in once so Dovecot creates the Maildir with its owner.
    run_inbox_once(&config);
    assert_eq!(store.inbox_message_count().await.unwrap(), 0);
    let maildir = stack.maildir("news");
    let owner = std::fs::metadata(&maildir).unwrap();
    use std::os::unix::fs::MetadataExt;
    for i in 0..N {
        let path = write_maildir_message(
            &maildir,
            &format!("{}.M{i}P1.bench", 1_700_000_000 + i),
            &sample(i),
        );
        std::os::unix::fs::chown(&path, Some(owner.uid()), Some(owner.gid())).unwrap();
    }
    let start = Instant::now();
    run_inbox_once(&config);
    let imap_time = start.elapsed();
    assert_eq!(store.inbox_message_count().await.unwrap(), N as u64);
    store.close().await;
    println!(
        "one poll of {N} waiting messages (250 requests, 250 quoting replies, 250 auto-replies, \
         250 for a person; whole `gazette inbox --once` run): Maildir {maildir_time:.2?}, \
         IMAP (Dovecot on loopback) {imap_time:.2?}"
    );
}

/// Hostile input: malformed messages and a deterministic generator through the parser
/// and classifier. Nothing panics, nothing that is not a request unsubscribes anyone,
/// and what is read from a source is capped.
mod hostile {
    use gazette::domain::TokenKey;
    use gazette::inbox::source::{MAX_MESSAGE_BYTES, MaildirSource, Source};
    use gazette::inbox::{Command, Incoming, Recognizer};

    fn recognizer() -> Recognizer {
        Recognizer {
            tokens: TokenKey::new(b"0123456789abcdef0123", "gazette.example.org"),
            own_addresses: vec!["news@example.org".into()],
            message_id_domain: "example.org".into(),
        }
    }

    fn classify(raw: &[u8]) -> Command {
        Command::parse(&Incoming::parse(raw, false), &recognizer())
    }

    fn corpus() -> Vec<(&'static str, Vec<u8>)> {
        let mut c: Vec<(&'static str, Vec<u8>)> = vec![
            ("empty", b"".to_vec()),
            ("no headers", b"\r\n\r\nUNSUBSCRIBE".to_vec()),
            ("binary", (0..=255u8).cycle().take(5000).collect()),
            ("invalid utf-8 subject", b"From: a@b.org\r\nSubject: \xff\xfe UNSUB\xc3\x28\r\n\r\nhi".to_vec()),
            ("unknown charset", b"From: a@b.org\r\nSubject: =?x-klingon?Q?hello?=\r\nContent-Type: text/plain; charset=x-klingon\r\n\r\n\xff\xff".to_vec()),
            ("broken boundary", b"From: a@b.org\r\nContent-Type: multipart/mixed; boundary=\"\r\n\r\n--\r\n--\r\n".to_vec()),
            ("unterminated multipart", b"From: a@b.org\r\nContent-Type: multipart/alternative; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nThanks\r\n--x\r\nContent-Type: text/html\r\n\r\n<blockquote>UNSUBSCRIBE".to_vec()),
            ("header injection in subject", b"From: a@b.org\r\nSubject: hi\r\n Bcc: victim@x.org\r\nSubject: UNSUBSCRIBE\r\n\r\nthanks".to_vec()),
            ("bad base64", b"From: a@b.org\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!!====****".to_vec()),
            ("forged token", b"From: stranger@x.org\r\nSubject: Re: hello\r\nIn-Reply-To: <2025-09-01.7-00000000000000000000000000000000@example.org>\r\n\r\nnice".to_vec()),
            ("bounce without status", b"From: MAILER-DAEMON@x.org\r\nReturn-Path: <>\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n\xff\xfe\r\n--b--\r\n".to_vec()),
            ("question in the subject", b"From: a@b.org\r\nSubject: Unsubscribe? No - keep it coming!\r\n\r\nI love it.".to_vec()),
            ("negation in the subject", b"From: a@b.org\r\nSubject: Re: UNSUBSCRIBE - no, please don't\r\n\r\nhi".to_vec()),
            ("footer quoted by indenting", b"From: a@b.org\r\nSubject: Re: Gazette newsletter: September 2025\r\n\r\nThanks, a great issue!\r\n\r\n    If you know someone who might be interested, please ask them to sign up:\r\n\r\n    <http://127.0.0.1:8080/subscribe>\r\n\r\n    UNSUBSCRIBE\r\n\r\n    If you no longer wish to receive emails from us, reply with\r\n".to_vec()),
            ("footer quoted with a tab", b"From: a@b.org\r\nSubject: Re: hello\r\n\r\nsee below\r\n\tUNSUBSCRIBE\r\n".to_vec()),
            ("read receipt", b"From: a@b.org\r\nContent-Type: multipart/report; report-type=disposition-notification; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nUNSUBSCRIBE\r\n--b--\r\n".to_vec()),
        ];
        let mut huge_header = b"From: a@b.org\r\nSubject: ".to_vec();
        huge_header.extend(std::iter::repeat_n(b'x', 2_000_000));
        huge_header.extend(b"\r\n\r\nunsubscribe?\r\n");
        c.push(("2 MB header", huge_header));
        let mut many_headers = Vec::new();
        for i in 0..50_000 {
            many_headers.extend(format!("X-H{i}: v\r\n").as_bytes());
        }
        many_headers.extend(b"\r\nhi\r\n");
        c.push(("50 000 headers", many_headers));
        let mut nested =
            b"From: a@b.org\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n".to_vec();
        for i in 0..2000 {
            nested.extend(
                format!(
                    "--b{i}\r\nContent-Type: multipart/mixed; boundary=b{}\r\n\r\n",
                    i + 1
                )
                .as_bytes(),
            );
        }
        nested.extend(b"--b2000\r\nContent-Type: text/plain\r\n\r\nUNSUBSCRIBE in a deep part\r\n");
        c.push(("2000 nested multiparts", nested));
        let mut nested_rfc822 =
            b"From: a@b.org\r\nContent-Type: message/rfc822\r\n\r\n".repeat(200);
        nested_rfc822.extend(b"\r\nhi");
        c.push(("200 nested message/rfc822", nested_rfc822));
        let mut attachment = b"From: a@b.org\r\nSubject: photos\r\nContent-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\nContent-Type: text/plain\r\n\r\nSee attached\r\n--z\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n".to_vec();
        while attachment.len() < 20 * 1024 * 1024 {
            attachment
                .extend(b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0123456789abcdefghijklmnopqrstuv\r\n");
        }
        c.push(("20 MB attachment", attachment));
        c
    }

    #[test]
    fn malformed_messages_never_unsubscribe_or_panic() {
        for (name, raw) in corpus() {
            let command = classify(&raw);
            assert!(
                !matches!(command, Command::Unsubscribe(_)),
                "{name}: {command:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_20_mb_message_is_read_only_up_to_the_cap() {
        let dir = crate::support::TempDir::new("inbox-hostile");
        let (_, big) = corpus().pop().unwrap();
        std::fs::create_dir_all(dir.path().join("new")).unwrap();
        std::fs::write(dir.path().join("new/1.M1P1.x"), &big).unwrap();
        let mut source = Source::Maildir(MaildirSource::new(dir.path(), "Processed"));
        assert_eq!(source.start_poll().await.unwrap(), 1);
        let batch = source.next_batch().await.unwrap();
        assert_eq!(batch.len(), 1);
        assert!(batch[0].truncated);
        assert_eq!(batch[0].raw.len(), MAX_MESSAGE_BYTES);
        assert!(matches!(
            Command::parse(&Incoming::parse(&batch[0].raw, true), &recognizer()),
            Command::ForAPerson
        ));
    }

    /// A Message-ID is the sender's to choose: messages that share one are told apart by
    /// their sender, subject and body, while one message delivered twice (other
    /// `Received` headers, other line ends) is recognised as the same.
    #[test]
    fn a_reused_message_id_does_not_make_messages_the_same() {
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        let senders = [
            "ada@example.net",
            "bob@example.net",
            "USER00032@EXAMPLE.NET",
        ];
        let subjects = ["UNSUBSCRIBE", "Hello", "Re: UNSUBSCRIBE", ""];
        let bodies = ["", "UNSUBSCRIBE", "Thanks!", "Thanks!\n"];
        let mut seen = std::collections::HashMap::new();
        for case in 0..500u32 {
            let (from, subject, body) =
                (rng.pick(&senders), rng.pick(&subjects), rng.pick(&bodies));
            let hops = rng.next() % 3;
            let mut raw = String::new();
            for hop in 0..hops {
                raw.push_str(&format!("Received: from hop{hop}.{case} by mx\r\n"));
            }
            raw.push_str(&format!(
                "From: {from}\r\nSubject: {subject}\r\nMessage-ID: <shared@client.test>\r\n\r\n{body}"
            ));
            if rng.next().is_multiple_of(2) {
                raw = raw.replace("\r\n", "\n");
            }
            let message = Incoming::parse(raw.as_bytes(), false);
            assert_eq!(message.legacy_key, "mid:<shared@client.test>");
            let key = message.key.clone();
            let content = (from, subject, body);
            if let Some(before) = seen.insert(key.clone(), content) {
                assert_eq!(before, content, "case {case}: one key for two messages");
            }
        }
        assert_eq!(
            seen.len(),
            senders.len() * subjects.len() * bodies.len(),
            "every combination is its own message"
        );
    }

    /// xorshift64*: deterministic, so a failure names the seed that reproduces it.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn pick<T: Copy>(&mut self, items: &[T]) -> T {
            items[(self.next() % items.len() as u64) as usize]
        }
    }

    /// Messages that are *not* requests by construction: UNSUBSCRIBE only inside
    /// quotations, after a signature, in prose, in auto-replies or in reports; then
    /// byte-level mutations of them. None may become an Unsubscribe, and nothing panics.
    #[test]
    fn generated_non_requests_never_unsubscribe() {
        let prefixes = [
            "",
            "Re: ",
            "AW: ",
            "Fwd: ",
            "RE: RE: ",
            "[ext] Re: ",
            "Re[2]: ",
        ];
        let subjects = [
            "Gazette newsletter: September 2025",
            "hello",
            "Question about unsubscribing",
            "Why unsubscribe?",
            "unsubscribed already",
            "Unsubscribe? No - keep it coming!",
            "UNSUBSCRIBE?",
            "Unsubscribe - not me",
            "unsubscribe please, no wait",
            "",
        ];
        let openers = [
            "Thanks!",
            "Great issue.",
            "",
            "Could you send me the events list?",
            "I won't unsubscribe, promise",
            "Please do not unsubscribe me",
            "Unsubscribe? Never!",
            "Don't unsubscribe me",
        ];
        let quote_intros = [
            "On Mon, 1 Sep 2025 at 10:00, Gazette <news@example.org> wrote:",
            "-----Original Message-----",
            "From: Gazette <news@example.org>\nSent: Monday",
            "Am 01.09.2025 um 10:00 schrieb Gazette:",
            "-- \nAda Lovelace\nAnalytical Engines Ltd",
            "________________________________",
            "---------- Forwarded message ---------",
            "    If you no longer wish to receive emails, reply with",
            "\tThe Gazette",
        ];
        let quoted = [
            "> UNSUBSCRIBE",
            "UNSUBSCRIBE",
            "> > unsubscribe",
            "reply with UNSUBSCRIBE in the subject",
            "Unsubscribe.",
            "    UNSUBSCRIBE",
            "\tunsubscribe",
        ];
        let auto = [
            "Auto-Submitted: auto-replied",
            "Precedence: bulk",
            "X-Autoreply: yes",
            "Return-Path: <>",
            "From: MAILER-DAEMON@x.org",
            "From: news@example.org",
        ];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for case in 0..3000u32 {
            let kind = rng.next() % 3;
            let subject = format!("{}{}", rng.pick(&prefixes), rng.pick(&subjects));
            let mut headers = format!(
                "From: someone{case}@example.net\r\nSubject: {subject}\r\nMessage-ID: <g{case}@x>\r\n"
            );
            let mut body = format!("{}\n\n{}\n", rng.pick(&openers), rng.pick(&quote_intros));
            for _ in 0..(rng.next() % 6) {
                body.push_str(rng.pick(&quoted[..]));
                body.push('\n');
            }
            if kind == 1 {
                // An automatic message may even say UNSUBSCRIBE plainly.
                headers = headers.replace("From: ", &format!("{}\r\nFrom: ", rng.pick(&auto)));
                if rng.next().is_multiple_of(2) {
                    headers =
                        headers.replace(&format!("Subject: {subject}"), "Subject: UNSUBSCRIBE");
                }
                body.insert_str(0, "UNSUBSCRIBE\n");
            }
            let mut raw = format!("{headers}Content-Type: text/plain\r\n\r\n{body}").into_bytes();
            if kind == 2 {
                // Mutations: flip, drop or duplicate bytes; they must not *create* a request
                // out of the quoted lines above, so only the quotation's bytes are hit.
                let start = raw.len() - body.len() + body.find('\n').unwrap_or(0) + 1;
                for _ in 0..(1 + rng.next() % 8) {
                    if start >= raw.len() {
                        break;
                    }
                    let at = start + (rng.next() as usize % (raw.len() - start));
                    match rng.next() % 3 {
                        0 => raw[at] = (rng.next() % 256) as u8,
                        1 => {
                            raw.remove(at);
                        }
                        _ => {
                            let b = raw[at];
                            raw.insert(at, b);
                        }
                    }
                }
            }
            let command = classify(&raw);
            // A mutation can turn a quotation line into an unquoted "UNSUBSCRIBE" that
            // now stands above the quote: that *is* a request, so only unmutated cases
            // assert the exact answer; mutated ones must merely not panic.
            if kind != 2 {
                assert!(
                    !matches!(command, Command::Unsubscribe(_)),
                    "case {case}: {command:?}\n{}",
                    String::from_utf8_lossy(&raw)
                );
            }
        }
        // Fully random bytes and random header soup: no panic, no request.
        for _ in 0..2000 {
            let len = (rng.next() % 4096) as usize;
            let raw: Vec<u8> = (0..len).map(|_| (rng.next() % 256) as u8).collect();
            assert!(!matches!(classify(&raw), Command::Unsubscribe(_)));
        }
    }
}
