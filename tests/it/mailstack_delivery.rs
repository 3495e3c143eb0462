//! An issue delivered through a real Postfix into real Dovecot mailboxes.

use crate::delivery_support::{add_subscribers, context, freeze, smtp_config};
use crate::support::TempDir;
use crate::support::mailstack::{MailStack, PASSWORD};
use gazette::app::delivery;
use gazette::domain::{SystemClock, TokenPurpose};
use gazette::store::Store;
use mail_parser::MessageParser;
use std::process::Command;
use std::time::Duration;

/// A fresh 2048-bit RSA key in PKCS#1 PEM, from openssl.
fn dkim_key(dir: &TempDir) -> std::path::PathBuf {
    let path = dir.path().join("dkim.pem");
    let out = Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&path)
        .arg("2048")
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "{out:?}");
    path
}

#[test]
fn every_subscriber_gets_their_own_complete_message_in_their_mailbox() {
    let stack = MailStack::start(&["alice", "bob", "carol"]);
    let dir = TempDir::new("mailstack-delivery");
    let key = dkim_key(&dir);
    let key = format!("\"{}\"", key.display());
    let config = smtp_config(
        &dir,
        stack.smtp_port(),
        &[
            // AUTH as the stack's user: exercised because it is configured.
            ("smtp.username", "\"alice\""),
            ("smtp.password", &format!("\"{PASSWORD}\"")),
            ("dkim.domain", "\"example.org\""),
            ("dkim.selector", "\"news\""),
            ("dkim.private_key_file", &key),
        ],
    );
    let ctx = context(&config);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let people = [
        (stack.address("alice"), Some("Alice Example")),
        (stack.address("bob"), Some("Bøb Ünicode")),
        (stack.address("carol"), None),
    ];
    let (ids, frozen, totals) = rt.block_on(async {
        let store = Store::open(&ctx.settings.store.url).await.unwrap();
        let refs: Vec<(&str, Option<&str>)> =
            people.iter().map(|(e, n)| (e.as_str(), *n)).collect();
        let ids = add_subscribers(&store, &refs).await;
        let frozen = freeze(&ctx, &store, chrono::Utc::now()).await;
        let mut worker = delivery::delivery_worker(&ctx, store.clone()).unwrap();
        let totals = delivery::deliver_due_now(&mut worker, 3, &SystemClock)
            .await
            .unwrap();
        (ids, frozen, totals)
    });
    assert_eq!((totals.sent, totals.failed, totals.retrying), (3, 0, 0));

    let newsletter = &ctx.settings.newsletter;
    for (((address, name), id), user) in people.iter().zip(&ids).zip(["alice", "bob", "carol"]) {
        let raw = stack.wait_for_messages(user, 1, Duration::from_secs(30));
        assert_eq!(raw.len(), 1, "{user} got one message");
        let text = String::from_utf8_lossy(&raw[0]).into_owned();
        let m = MessageParser::default()
            .parse(&raw[0])
            .expect("a parsable message");

        let from = m.from().and_then(|a| a.first()).expect("From");
        assert_eq!(from.address(), Some("newsletter@example.org"));
        assert_eq!(from.name(), Some(newsletter.name.as_str()));
        let to = m.to().and_then(|a| a.first()).expect("To");
        assert_eq!(to.address(), Some(address.as_str()));
        assert_eq!(to.name(), *name);
        assert_eq!(
            m.reply_to()
                .and_then(|a| a.first())
                .and_then(|a| a.address()),
            Some("newsletter@example.org")
        );
        assert_eq!(m.subject(), Some(frozen.rendered.subject.as_str()));
        assert_eq!(
            m.date().map(|d| d.to_timestamp()),
            Some(frozen.message_date.timestamp())
        );

        // Message-ID: our domain, naming the issue and (by its token) the recipient.
        let message_id = m.message_id().expect("Message-ID");
        assert!(message_id.starts_with("2021-09-01."), "{message_id}");
        assert!(message_id.ends_with("@example.org"), "{message_id}");
        assert_eq!(
            ctx.tokens.find_in(TokenPurpose::Message, message_id),
            Some(*id)
        );

        let list_id = m.header_raw("List-Id").expect("List-Id");
        assert!(
            list_id.contains(&format!("<{}>", newsletter.list_id)),
            "{list_id}"
        );
        // RFC 8058: an https one-click URL and a mailto, both with this recipient's token.
        let unsubscribe: String = m
            .header_raw("List-Unsubscribe")
            .expect("List-Unsubscribe")
            .split_whitespace()
            .collect();
        let token = ctx.tokens.sign(TokenPurpose::Unsubscribe, *id).to_string();
        let https = format!("<https://news.example.org/unsubscribe/{token}>");
        let mailto = format!("<mailto:newsletter@example.org?subject=UNSUBSCRIBE%20{token}>");
        assert_eq!(unsubscribe, format!("{https},{mailto}"));
        let url_token = https
            .trim_end_matches('>')
            .rsplit('/')
            .next()
            .unwrap()
            .to_owned();
        assert_eq!(
            ctx.tokens.verify(TokenPurpose::Unsubscribe, &url_token),
            Some(*id)
        );
        assert_eq!(
            m.header_raw("List-Unsubscribe-Post").map(str::trim),
            Some("List-Unsubscribe=One-Click")
        );

        // DKIM covers every header RFC 8058 and the issue ask for.
        let dkim = m
            .header_raw("DKIM-Signature")
            .expect("DKIM-Signature")
            .to_ascii_lowercase();
        let signed: String = dkim
            .split(';')
            .map(str::trim)
            .find_map(|tag| tag.strip_prefix("h="))
            .expect("h= tag")
            .split_whitespace()
            .collect();
        for header in [
            "From",
            "To",
            "Subject",
            "Date",
            "Message-ID",
            "List-Unsubscribe",
            "List-Unsubscribe-Post",
        ] {
            assert!(
                signed.split(':').any(|h| h == header.to_ascii_lowercase()),
                "{header} not signed: {signed}"
            );
        }
        assert!(dkim.contains("d=example.org"), "{dkim}");

        // Both parts, each with this recipient's own link.
        assert!(text.contains("multipart/alternative"), "{text}");
        let plain = m.body_text(0).expect("a text part");
        let html = m.body_html(0).expect("an HTML part");
        assert!(plain.contains(&format!("https://news.example.org/unsubscribe/{token}")));
        assert!(html.contains(&format!("https://news.example.org/unsubscribe/{token}")));
        assert!(plain.contains("UNSUBSCRIBE"), "{plain}");
        assert!(html.contains("<table") || html.contains("<div"), "{html}");
        for section in &frozen.sources {
            // Every section title made it into the text part's table of contents.
            let title_line = section.1.lines().find(|l| l.starts_with("# "));
            if let Some(title) = title_line {
                let title = title.trim_start_matches("# ").trim();
                assert!(plain.contains(title), "{title} missing from {plain}");
            }
        }
        for (other_id, _) in ids.iter().zip(0..).filter(|(o, _)| *o != id) {
            let theirs = ctx
                .tokens
                .sign(TokenPurpose::Unsubscribe, *other_id)
                .to_string();
            assert!(!text.contains(&theirs), "{user} got someone else's token");
        }
    }
}

/// Delivers to `people` through the stack with `extra` settings; the totals.
fn deliver_with(
    stack: &MailStack,
    dir: &TempDir,
    extra: &[(&str, &str)],
    users: &[&str],
) -> gazette::send::BatchReport {
    let config = smtp_config(dir, stack.smtp_port(), extra);
    let ctx = context(&config);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Store::open(&ctx.settings.store.url).await.unwrap();
        let addresses: Vec<String> = users.iter().map(|u| stack.address(u)).collect();
        let refs: Vec<(&str, Option<&str>)> =
            addresses.iter().map(|a| (a.as_str(), None)).collect();
        let ids = add_subscribers(&store, &refs).await;
        freeze(&ctx, &store, chrono::Utc::now()).await;
        let mut worker = delivery::delivery_worker(&ctx, store.clone()).unwrap();
        let totals = delivery::deliver_due_now(&mut worker, users.len() as u64, &SystemClock)
            .await
            .unwrap();
        let rows = futures::future::join_all(
            ids.iter()
                .map(|id| store.delivery(crate::delivery_support::issue_id(), *id)),
        )
        .await;
        eprintln!("ledger rows: {rows:?}");
        totals
    })
}

#[test]
fn starttls_is_used_and_the_certificate_is_checked() {
    let stack = MailStack::start(&["dora", "eve"]);
    // The relay's certificate is not trusted: nothing goes out in plain text instead, and
    // the failure is the relay's, so the row stays queued without an attempt counted.
    let untrusted = TempDir::new("starttls-untrusted");
    let totals = deliver_with(
        &stack,
        &untrusted,
        &[("smtp.tls", "\"starttls\"")],
        &["eve"],
    );
    assert_eq!(
        (totals.sent, totals.retrying, totals.failed),
        (0, 0, 0),
        "{totals:?}"
    );
    assert!(stack.messages("eve").is_empty());

    // Trusted through smtp.ca_file: delivered over TLS.
    let dir = TempDir::new("starttls");
    let ca = format!("\"{}\"", stack.tls_ca().display());
    let totals = deliver_with(
        &stack,
        &dir,
        &[("smtp.tls", "\"starttls\""), ("smtp.ca_file", &ca)],
        &["dora"],
    );
    assert_eq!(
        (totals.sent, totals.failed, totals.retrying),
        (1, 0, 0),
        "{totals:?}"
    );
    stack.assert_first_came_over_tls("dora");
}
