//! What receivers make of the mail gazette sends, judged by Python's email parser and
//! SpamAssassin rather than by gazette's own code.

use crate::delivery_support::{file_config, send_issue_to};
use crate::support::TempDir;
use crate::support::judges::{python_parse, spamassassin_rules};

/// The fixture issue sent with the file transport to subscribers with awkward names.
fn issue_messages(dir: &TempDir) -> Vec<(String, Vec<u8>)> {
    let config = file_config(dir, &[]);
    let people = [
        ("ada@example.net", Some("Ada O'Lovelace")),
        ("bob@example.net", Some("Bøb Ünicode-Smith")),
        ("carol@example.net", Some("Carol \"CJ\" Jones, Jr.")),
        ("dan@example.net", None),
    ];
    send_issue_to(&config, &people)
        .into_iter()
        .map(|(path, bytes)| (path.display().to_string(), bytes))
        .collect()
}

#[test]
fn names_in_address_headers_read_back_exactly_and_ascii_ones_are_not_encoded() {
    let dir = TempDir::new("judges-names");
    let messages = issue_messages(&dir);
    assert_eq!(messages.len(), 4);
    let mut names = Vec::new();
    for (file, bytes) in &messages {
        let parsed = python_parse(bytes);
        assert!(parsed.defects.is_empty(), "{file}: {:?}", parsed.defects);
        assert_eq!(
            parsed.from,
            [(
                "Independent review of children's social care".to_owned(),
                "newsletter@example.org".to_owned()
            )],
            "{file}"
        );
        assert_eq!(parsed.reply_to[0].1, "newsletter@example.org");
        names.push(parsed.to[0].clone());
        // An ASCII display name needs no encoded-words at all.
        let text = String::from_utf8_lossy(bytes);
        let from_line = text.lines().find(|l| l.starts_with("From:")).unwrap();
        assert!(!from_line.contains("=?"), "{file}: {from_line}");
    }
    names.sort();
    assert_eq!(
        names,
        [
            ("".to_owned(), "dan@example.net".to_owned()),
            ("Ada O'Lovelace".to_owned(), "ada@example.net".to_owned()),
            ("Bøb Ünicode-Smith".to_owned(), "bob@example.net".to_owned()),
            (
                "Carol \"CJ\" Jones, Jr.".to_owned(),
                "carol@example.net".to_owned()
            ),
        ]
    );
}

#[test]
fn spamassassin_finds_nothing_wrong_with_the_headers_of_an_issue() {
    let dir = TempDir::new("judges-spamassassin");
    let messages = issue_messages(&dir);
    // Rules about how a message is made; NO_RECEIVED/NO_RELAYS only say it has not
    // travelled yet, HTML_MESSAGE that it has an HTML part.
    let faults = [
        "FROM_EXCESS_BASE64",
        "MISSING_MID",
        "MISSING_DATE",
        "MISSING_MIME_HB_SEP",
        "MIME_HTML_ONLY",
        "MISSING_HEADERS",
        "FROM_EXCESS_QP",
        "TO_NO_BRKTS_FROM_MSSP",
    ];
    for (file, bytes) in messages.iter().take(2) {
        let rules = spamassassin_rules(bytes);
        let fired: Vec<&String> = rules
            .iter()
            .filter(|r| faults.contains(&r.as_str()))
            .collect();
        assert!(fired.is_empty(), "{file}: {fired:?} (all: {rules:?})");
    }
}

#[test]
fn the_message_id_does_not_carry_the_unsubscribe_token() {
    let dir = TempDir::new("judges-message-id");
    for (file, bytes) in issue_messages(&dir) {
        let text = String::from_utf8_lossy(&bytes);
        let parsed = python_parse(&bytes);
        let message_id = parsed.message_id.expect("a Message-ID");
        // The token is the last path segment of the one-click URL.
        let token = text
            .lines()
            .find(|l| l.starts_with("List-Unsubscribe:"))
            .and_then(|l| l.split("/unsubscribe/").nth(1))
            .and_then(|rest| rest.split('>').next())
            .expect("an unsubscribe URL")
            .to_owned();
        assert!(!token.is_empty(), "{file}");
        assert!(
            !message_id.contains(&token),
            "{file}: {message_id} carries the unsubscribe token {token}"
        );
        assert!(
            message_id.ends_with("@example.org>"),
            "{file}: {message_id}"
        );
    }
}
