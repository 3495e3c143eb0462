//! DKIM as receivers judge it: every signature gazette makes is verified by dkimpy
//! against keys and DNS records made by openssl, and tampering breaks it.

use crate::delivery_support::{context, file_config, send_issue_to};
use crate::support::TempDir;
use crate::support::dkim::{ed25519_key, rsa_key, verify};
use gazette::domain::DkimSigner;
use std::collections::BTreeMap;

const DOMAIN: &str = "example.org";

struct Signed {
    _dir: TempDir,
    messages: Vec<Vec<u8>>,
    records: BTreeMap<String, String>,
}

/// Sends the fixture issue to three subscribers with the file transport, signed with a
/// fresh RSA-2048 key (selector `news`) and an Ed25519 key (selector `news-ed`).
fn send_signed_issue() -> Signed {
    let dir = TempDir::new("dkim");
    let rsa = rsa_key(dir.path(), 2048);
    let ed = ed25519_key(dir.path());
    let rsa_file = format!("\"{}\"", rsa.file.display());
    let ed_file = format!("\"{}\"", ed.file.display());
    let config = file_config(
        &dir,
        &[
            ("dkim.domain", "\"example.org\""),
            ("dkim.selector", "\"news\""),
            ("dkim.private_key_file", &rsa_file),
            ("dkim.ed25519_selector", "\"news-ed\""),
            ("dkim.ed25519_private_key_file", &ed_file),
        ],
    );
    let people = [
        ("ada@example.net", Some("Ada O'Lovelace")),
        ("bob@example.net", Some("Bøb Ünicode")),
        ("carol@example.net", None),
    ];
    let mut messages: Vec<Vec<u8>> = send_issue_to(&config, &people)
        .into_iter()
        .map(|(_, bytes)| bytes)
        .collect();
    messages.sort();
    assert_eq!(messages.len(), 3);
    let records = BTreeMap::from([
        (format!("news._domainkey.{DOMAIN}"), rsa.record),
        (format!("news-ed._domainkey.{DOMAIN}"), ed.record),
    ]);
    Signed {
        _dir: dir,
        messages,
        records,
    }
}

#[test]
fn every_issue_message_carries_rsa_and_ed25519_signatures_that_dkimpy_verifies() {
    let signed = send_signed_issue();
    for message in &signed.messages {
        let text = String::from_utf8_lossy(message);
        assert_eq!(
            verify(message, &signed.records),
            [true, true],
            "{}",
            &text[..text.len().min(3000)]
        );
        // The whole body is covered, and each header line stays within 78 columns.
        let head = text.split("\r\n\r\n").next().unwrap();
        assert!(!head.contains(" l="), "{head}");
        assert!(head.lines().all(|l| l.len() <= 998), "{head}");
        let dkim_lines: Vec<&str> = head
            .split("\r\n")
            .skip_while(|l| !l.starts_with("DKIM-Signature:"))
            .take_while(|l| l.starts_with("DKIM-Signature:") || l.starts_with('\t'))
            .collect();
        assert!(dkim_lines.iter().all(|l| l.len() <= 78), "{dkim_lines:#?}");
    }
}

/// `message` with `line` put first among its headers (after the signatures), as a relay
/// or a forwarder adding a header would.
fn with_added_header(message: &[u8], line: &str) -> Vec<u8> {
    let text = String::from_utf8(message.to_vec()).unwrap();
    let at = text.find("\r\nFrom:").expect("a From header") + 2;
    format!("{}{line}\r\n{}", &text[..at], &text[at..]).into_bytes()
}

#[test]
fn a_header_added_or_replaced_after_signing_breaks_every_signature() {
    let signed = send_signed_issue();
    let message = &signed.messages[0];
    let text = String::from_utf8(message.clone()).unwrap();
    let reply_to = text
        .split("\r\n")
        .find(|l| l.starts_with("Reply-To:"))
        .expect("Reply-To")
        .to_owned();
    let tampered = [
        (
            "a second Subject",
            with_added_header(message, "Subject: You won"),
        ),
        (
            "a second List-Unsubscribe",
            with_added_header(message, "List-Unsubscribe: <https://evil.example/>"),
        ),
        (
            "a second List-Unsubscribe-Post",
            with_added_header(message, "List-Unsubscribe-Post: List-Unsubscribe=One-Click"),
        ),
        (
            "a second From",
            with_added_header(message, "From: boss@example.org"),
        ),
        (
            "a replaced Reply-To",
            text.replace(&reply_to, "Reply-To: thief@example.net")
                .into_bytes(),
        ),
        (
            "a changed body",
            text.replacen("UNSUBSCRIBE", "SUBSCRIBE", 1).into_bytes(),
        ),
    ];
    for (what, bytes) in tampered {
        assert_ne!(&bytes, message, "{what}: nothing was changed");
        assert_eq!(verify(&bytes, &signed.records), [false, false], "{what}");
    }
}

#[test]
fn the_records_to_publish_are_the_ones_openssl_derives_from_the_keys() {
    let dir = TempDir::new("dkim-records");
    let rsa = rsa_key(dir.path(), 2048);
    let ed = ed25519_key(dir.path());
    let signer = DkimSigner::rsa(DOMAIN, "news", &std::fs::read_to_string(&rsa.file).unwrap())
        .unwrap()
        .with_ed25519("news-ed", &std::fs::read_to_string(&ed.file).unwrap())
        .unwrap();
    assert_eq!(
        signer.dns_records(),
        [
            (format!("news._domainkey.{DOMAIN}"), rsa.record),
            (format!("news-ed._domainkey.{DOMAIN}"), ed.record),
        ]
    );
}

#[test]
fn a_weak_or_wrong_key_is_refused_naming_its_settings_key() {
    let dir = TempDir::new("dkim-weak");
    let weak = rsa_key(dir.path(), 1024);
    let ed = ed25519_key(dir.path());
    for (rsa_file, key) in [
        (&weak.file, "dkim.private_key_file"),
        (&ed.file, "dkim.private_key_file"),
    ] {
        let rsa_file = format!("\"{}\"", rsa_file.display());
        let config = file_config(
            &dir,
            &[
                ("dkim.domain", "\"example.org\""),
                ("dkim.selector", "\"news\""),
                ("dkim.private_key_file", &rsa_file),
            ],
        );
        let error = context(&config).dkim_signer().unwrap_err();
        assert!(format!("{error:#}").contains(key), "{error:#}");
    }
}

#[test]
fn the_messages_of_one_issue_share_their_body_up_to_the_first_personal_line() {
    // What every recipient's body has in common is hashed once per issue: for that the
    // MIME boundary must be the issue's, not a fresh one per message.
    let signed = send_signed_issue();
    let bodies: Vec<&[u8]> = signed
        .messages
        .iter()
        .map(|m| {
            let at = m.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
            &m[at + 4..]
        })
        .collect();
    let common = bodies[1..].iter().fold(bodies[0].len(), |n, body| {
        n.min(
            bodies[0]
                .iter()
                .zip(*body)
                .take_while(|(a, b)| a == b)
                .count(),
        )
    });
    let shared = String::from_utf8_lossy(&bodies[0][..common]);
    // The boundary, the text part's headers and its text up to the personal footer.
    assert!(shared.starts_with("--=_gazette_"), "{shared}");
    assert!(shared.contains("Content-Type: text/plain"), "{shared}");
    assert!(common > 4096, "{common} bytes in common: {shared}");
    for who in ["ada@example.net", "bob@example.net", "carol@example.net"] {
        assert!(!shared.contains(who), "{who} in {shared}");
    }
}

#[test]
fn messages_signed_several_at_a_time_on_every_core_all_verify() {
    // More recipients than one signing task takes: the messages are signed by several
    // tasks at once, each from the issue's shared body start.
    let dir = TempDir::new("dkim-many");
    let rsa = rsa_key(dir.path(), 2048);
    let rsa_file = format!("\"{}\"", rsa.file.display());
    let config = file_config(
        &dir,
        &[
            ("dkim.domain", "\"example.org\""),
            ("dkim.selector", "\"news\""),
            ("dkim.private_key_file", &rsa_file),
        ],
    );
    let emails: Vec<String> = (0..19).map(|i| format!("reader{i}@example.net")).collect();
    let names: Vec<String> = (0..19).map(|i| format!("Réader  {i}")).collect();
    let people: Vec<(&str, Option<&str>)> = emails
        .iter()
        .zip(&names)
        .enumerate()
        .map(|(i, (e, n))| (e.as_str(), (i % 3 != 0).then_some(n.as_str())))
        .collect();
    let messages = send_issue_to(&config, &people);
    assert_eq!(messages.len(), people.len());
    let records = BTreeMap::from([(format!("news._domainkey.{DOMAIN}"), rsa.record)]);
    for (path, message) in &messages {
        assert_eq!(verify(message, &records), [true], "{}", path.display());
    }
}
