//! PIPELINING (RFC 2920) on the way to the relay: MAIL FROM, RCPT TO and DATA in one
//! write, replies read in order, each recipient's reply sorted as before; with CHUNKING
//! (RFC 3030) the message goes in that write too, as one BDAT chunk.

use crate::delivery_support::{add_subscribers, context, freeze, issue_id, smtp_config};
use crate::support::TempDir;
use crate::support::mailstack::{MailStack, REFUSED_AT_RCPT};
use gazette::app::delivery;
use gazette::domain::SystemClock;
use gazette::store::{DeliveryStatus, Store};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Sends the fixture issue to `emails` through 127.0.0.1:`port`; the totals and each
/// row's status and last error, in the order of `emails`.
fn deliver(
    dir: &TempDir,
    port: u16,
    extra: &[(&str, &str)],
    emails: &[String],
) -> (
    gazette::send::BatchReport,
    Vec<(DeliveryStatus, Option<String>)>,
) {
    let ctx = context(&smtp_config(dir, port, extra));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Store::open(&ctx.settings.store.url).await.unwrap();
        let refs: Vec<(&str, Option<&str>)> = emails.iter().map(|e| (e.as_str(), None)).collect();
        let ids = add_subscribers(&store, &refs).await;
        freeze(&ctx, &store, chrono::Utc::now()).await;
        let mut worker = delivery::delivery_worker(&ctx, store.clone()).unwrap();
        let totals = delivery::deliver_due_now(&mut worker, emails.len() as u64, &SystemClock)
            .await
            .unwrap();
        let mut rows = Vec::new();
        for id in ids {
            let (status, _, error) = store.delivery(issue_id(), id).await.unwrap().unwrap();
            rows.push((status, error));
        }
        (totals, rows)
    })
}

#[test]
fn a_pipelined_session_through_postfix_delivers_each_message_once_and_a_rcpt_refusal_fails_only_its_recipient()
 {
    let stack = MailStack::start(&["alice", "bob", "carol"]);
    let dir = TempDir::new("pipelining-postfix");
    let mut emails: Vec<String> = ["alice", "bob", "carol"]
        .iter()
        .map(|u| stack.address(u))
        .collect();
    emails.insert(1, stack.address(REFUSED_AT_RCPT));
    // One connection: the refusal comes in the middle of a session that keeps going.
    let (totals, rows) = deliver(&dir, stack.smtp_port(), &[("smtp.pool_size", "1")], &emails);

    assert_eq!(
        (totals.sent, totals.failed, totals.retrying, totals.unknown),
        (3, 1, 0, 0),
        "{totals:?}\n{rows:?}\n{}",
        stack.log()
    );
    let (status, error) = &rows[1];
    assert_eq!(*status, DeliveryStatus::Failed, "{rows:?}");
    assert!(
        error.as_deref().is_some_and(|e| e.contains("550")),
        "{error:?}"
    );
    for (i, (status, _)) in rows.iter().enumerate() {
        if i != 1 {
            assert_eq!(*status, DeliveryStatus::Sent, "{}: {rows:?}", emails[i]);
        }
    }
    for user in ["alice", "bob", "carol"] {
        let got = stack.wait_for_messages(user, 1, Duration::from_secs(20));
        assert_eq!(got.len(), 1, "{user} got {} messages", got.len());
    }
    // Postfix names a client that pipelines without being offered it.
    assert!(
        !stack.log().contains("improper command pipelining"),
        "{}",
        stack.log()
    );
}

/// What the scripted relay saw of one transaction.
#[derive(Debug, Clone)]
struct Transaction {
    recipients: Vec<String>,
    /// The DATA payload up to (not including) the closing ".\r\n", as sent.
    payload: Vec<u8>,
}

/// A relay that offers PIPELINING and answers MAIL FROM only once DATA has arrived: a
/// client that waits for each reply before the next command gets no answer at all.
/// Refuses any recipient whose address starts with "refused" (550).
struct ScriptedRelay {
    port: u16,
    seen: Arc<Mutex<Vec<Transaction>>>,
}

impl ScriptedRelay {
    fn start() -> Self {
        let (port, seen) = start_scripted(serve);
        Self { port, seen }
    }
}

/// A relay on a free loopback port (the system's pick) that runs `serve` on each
/// connection, in a thread of its own, with the list it records into.
fn start_scripted<T: Send + 'static>(
    serve: fn(TcpStream, &Mutex<Vec<T>>) -> std::io::Result<()>,
) -> (u16, Arc<Mutex<Vec<T>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let record = record.clone();
            std::thread::spawn(move || {
                let _ = serve(stream, &record);
            });
        }
    });
    (port, seen)
}

fn serve(stream: TcpStream, seen: &Mutex<Vec<Transaction>>) -> std::io::Result<()> {
    let mut out = stream.try_clone()?;
    let mut lines = BufReader::new(stream);
    let mut line = String::new();
    let mut read = |line: &mut String| -> std::io::Result<bool> {
        line.clear();
        Ok(lines.read_line(line)? > 0)
    };
    out.write_all(b"220 scripted ESMTP\r\n")?;
    while read(&mut line)? {
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" => out.write_all(b"250-scripted\r\n250-PIPELINING\r\n250 8BITMIME\r\n")?,
            "MAIL" => {
                // No reply until DATA: only a pipelining client gets this far.
                let mut recipients = Vec::new();
                loop {
                    if !read(&mut line)? {
                        return Ok(());
                    }
                    let upper = line.to_ascii_uppercase();
                    if upper.starts_with("RCPT TO:") {
                        recipients.push(line[8..].trim().trim_matches(['<', '>']).to_owned());
                    } else if upper.starts_with("DATA") {
                        break;
                    }
                }
                let mut replies = String::from("250 2.1.0 ok\r\n");
                let mut accepted = Vec::new();
                for rcpt in &recipients {
                    if rcpt.starts_with("refused") {
                        replies.push_str("550 5.1.1 no such user\r\n");
                    } else {
                        replies.push_str("250 2.1.5 ok\r\n");
                        accepted.push(rcpt.clone());
                    }
                }
                if accepted.is_empty() {
                    replies.push_str("554 5.5.1 no valid recipients\r\n");
                    out.write_all(replies.as_bytes())?;
                    continue;
                }
                replies.push_str("354 go ahead\r\n");
                out.write_all(replies.as_bytes())?;
                let mut payload = Vec::new();
                loop {
                    if !read(&mut line)? {
                        return Ok(());
                    }
                    if line == ".\r\n" {
                        break;
                    }
                    payload.extend_from_slice(line.as_bytes());
                }
                seen.lock().unwrap().push(Transaction {
                    recipients: accepted,
                    payload,
                });
                out.write_all(b"250 2.0.0 queued\r\n")?;
            }
            "QUIT" => {
                out.write_all(b"221 bye\r\n")?;
                return Ok(());
            }
            _ => out.write_all(b"250 ok\r\n")?,
        }
    }
    Ok(())
}

#[test]
fn mail_rcpt_and_data_go_in_one_write_when_the_relay_offers_pipelining() {
    let relay = ScriptedRelay::start();
    let dir = TempDir::new("pipelining-scripted");
    let emails: Vec<String> = [
        "reader1@example.org",
        "refused@example.org",
        "reader2@example.org",
    ]
    .iter()
    .map(|e| e.to_string())
    .collect();
    let (totals, rows) = deliver(
        &dir,
        relay.port,
        &[("smtp.timeout", "\"3s\""), ("smtp.pool_size", "1")],
        &emails,
    );
    assert_eq!(
        (totals.sent, totals.failed, totals.retrying, totals.unknown),
        (2, 1, 0, 0),
        "{totals:?} {rows:?}"
    );
    assert_eq!(rows[1].0, DeliveryStatus::Failed, "{rows:?}");
    assert!(
        rows[1].1.as_deref().is_some_and(|e| e.contains("550")),
        "{rows:?}"
    );

    let seen = relay.seen.lock().unwrap().clone();
    let mut recipients: Vec<&str> = seen
        .iter()
        .flat_map(|t| t.recipients.iter().map(String::as_str))
        .collect();
    recipients.sort();
    assert_eq!(recipients, ["reader1@example.org", "reader2@example.org"]);
    for t in &seen {
        // Every line CRLF-ended; the message's last line ended before the closing dot.
        assert!(t.payload.ends_with(b"\r\n"), "{:?}", t.recipients);
        let text = String::from_utf8_lossy(&t.payload);
        assert!(
            !text.replace("\r\n", "").contains('\n'),
            "a bare LF reached the wire"
        );
    }
}

/// The counts Postfix logs for each SMTP session when it ends ("disconnect from … mail=3
/// rcpt=3 bdat=3 quit=1 commands=10"): command name to the number it accepted.
fn session_commands(log: &str) -> Vec<std::collections::BTreeMap<String, u32>> {
    log.lines()
        .filter_map(|line| line.split_once(" disconnect from ").map(|(_, rest)| rest))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|field| field.split_once('='))
                .filter_map(|(name, count)| {
                    // "rcpt=3/4": 3 of 4 accepted.
                    let accepted = count.split('/').next()?.parse().ok()?;
                    Some((name.to_owned(), accepted))
                })
                .collect()
        })
        .collect()
}

/// A relay that offers CHUNKING (RFC 3030; Postfix does) gets MAIL FROM, RCPT TO and the
/// message itself as one `BDAT … LAST` chunk, in one write: one round trip per message
/// instead of two (the envelope, then the content after 354), and no dot-stuffing. The
/// messages arrive byte for byte as signed: dkimpy verifies each one from the mailbox.
#[test]
fn a_relay_that_offers_chunking_gets_each_message_as_one_bdat_chunk_in_the_envelopes_write() {
    let stack = MailStack::start(&["alice", "bob", "carol"]);
    let dir = TempDir::new("chunking-postfix");
    let key = crate::support::dkim::rsa_key(dir.path(), 2048);
    let key_file = format!("\"{}\"", key.file.display());
    let emails: Vec<String> = ["alice", "bob", "carol"]
        .iter()
        .map(|u| stack.address(u))
        .collect();
    let (totals, rows) = deliver(
        &dir,
        stack.smtp_port(),
        &[
            ("smtp.pool_size", "1"),
            ("dkim.domain", "\"example.org\""),
            ("dkim.selector", "\"news\""),
            ("dkim.private_key_file", &key_file),
        ],
        &emails,
    );
    assert_eq!(
        (totals.sent, totals.failed, totals.retrying, totals.unknown),
        (3, 0, 0, 0),
        "{totals:?}\n{rows:?}\n{}",
        stack.log()
    );
    let records =
        std::collections::BTreeMap::from([("news._domainkey.example.org".to_owned(), key.record)]);
    for user in ["alice", "bob", "carol"] {
        let got = stack.wait_for_messages(user, 1, Duration::from_secs(20));
        assert_eq!(got.len(), 1, "{user} got {} messages", got.len());
        // Maildir keeps lines LF-ended; the wire form has CRLF.
        let wire = String::from_utf8_lossy(&got[0]).replace('\n', "\r\n");
        assert_eq!(
            crate::support::dkim::verify(wire.as_bytes(), &records),
            [true],
            "{user}'s message as delivered"
        );
    }
    // gazette's session: the one that sent mail (the stack's own checks send none).
    let sessions = session_commands(&stack.log());
    let sending: Vec<_> = sessions.iter().filter(|s| s.contains_key("mail")).collect();
    assert_eq!(sending.len(), 1, "{sessions:?}\n{}", stack.log());
    let counts = sending[0];
    assert_eq!(
        (
            counts.get("mail"),
            counts.get("rcpt"),
            counts.get("bdat"),
            counts.get("data")
        ),
        (Some(&3), Some(&3), Some(&3), None),
        "{}",
        stack.log()
    );
}

/// A relay that offers PIPELINING and CHUNKING, reads MAIL FROM, RCPT TO and a `BDAT …
/// LAST` chunk, records the chunk, and hangs up without a word.
fn serve_then_hang_up(stream: TcpStream, chunks: &Mutex<Vec<Vec<u8>>>) -> std::io::Result<()> {
    let mut out = stream.try_clone()?;
    let mut input = BufReader::new(stream);
    out.write_all(b"220 hangs up ESMTP\r\n")?;
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            out.write_all(b"250-hangs up\r\n250-PIPELINING\r\n250 CHUNKING\r\n")?;
        } else if let Some(size) = upper
            .strip_prefix("BDAT ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<usize>().ok())
        {
            let mut chunk = vec![0; size];
            std::io::Read::read_exact(&mut input, &mut chunk)?;
            chunks.lock().unwrap().push(chunk);
            // Gone before any reply, as a relay that crashes might be.
            return Ok(());
        } else if !upper.starts_with("MAIL") && !upper.starts_with("RCPT") {
            out.write_all(b"250 ok\r\n")?;
        }
    }
}

/// With CHUNKING the message goes out in the same write as its envelope, before any
/// reply: a relay that then falls silent may have taken it. The row is unknown (tried
/// again later, the recipient perhaps getting two copies), never a relay fault that
/// counts it as not sent.
#[test]
fn a_relay_lost_after_the_bdat_write_leaves_the_message_unknown_not_unsent() {
    let (port, chunks) = start_scripted(serve_then_hang_up);
    let dir = TempDir::new("chunking-hang-up");
    let (totals, rows) = deliver(
        &dir,
        port,
        &[("smtp.timeout", "\"3s\""), ("smtp.pool_size", "1")],
        &["reader@example.org".to_owned()],
    );
    assert_eq!(
        (totals.sent, totals.failed, totals.unknown),
        (0, 0, 1),
        "{totals:?} {rows:?}"
    );
    assert_eq!(rows[0].0, DeliveryStatus::Unknown, "{rows:?}");
    let chunks = chunks.lock().unwrap();
    assert_eq!(chunks.len(), 1, "the relay read the whole message once");
    assert!(
        String::from_utf8_lossy(&chunks[0]).contains("To: reader@example.org"),
        "the chunk is the message"
    );
}
