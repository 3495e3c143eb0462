//! Address headers (`From`, `To`, `Reply-To`) written the way a careful sender writes
//! them, instead of lettre's encoder, which falls back to base64 for a whole display name
//! as soon as one character is outside `[A-Za-z0-9 ._-]` (an apostrophe is enough) and
//! may split a word across encoded-words. Spam filters score that (FROM_EXCESS_BASE64).
//!
//! - An ASCII display name is written as it is when its words are plain atoms
//!   (`Children's review <news@example.org>`), else as a quoted-string
//!   (`"Smith, Jr." <js@example.org>`).
//! - A name with other characters keeps its plain words as they are and encodes only the
//!   runs of words that need it, as RFC 2047 "Q" encoded-words that never split a
//!   character and carry the spaces between the words they hold.
//! - Lines are folded between words, within 78 columns where the words allow.

use lettre::message::Mailbox;
use lettre::message::header::{HeaderName, HeaderValue};

/// The longest encoded-word RFC 2047 allows.
const ENCODED_WORD_MAX: usize = 75;
/// Where lines are folded.
const LINE: usize = 78;

/// The header `name` (e.g. "From") carrying `mailbox`, encoded and folded as above.
pub fn mailbox_header(name: &'static str, mailbox: &Mailbox) -> HeaderValue {
    let encoded = encode_mailbox(name.len() + 2, mailbox);
    HeaderValue::dangerous_new_pre_encoded(
        HeaderName::new_from_ascii_str(name),
        mailbox.to_string(),
        encoded,
    )
}

/// `mailbox` as header text, the first line starting at column `start`.
pub fn encode_mailbox(start: usize, mailbox: &Mailbox) -> String {
    let address = format!("<{}>", mailbox.email);
    let Some(name) = mailbox.name.as_deref().filter(|n| !n.trim().is_empty()) else {
        return mailbox.email.to_string();
    };
    let mut tokens = display_name_tokens(name);
    tokens.push(address);
    fold(start, &tokens)
}

/// The display name as tokens separated by single spaces when written.
fn display_name_tokens(name: &str) -> Vec<String> {
    let name: String = name.split_whitespace().collect::<Vec<_>>().join(" ");
    if name.split(' ').all(is_atom) {
        return vec![name];
    }
    if name.chars().all(|c| c.is_ascii() && !c.is_ascii_control()) {
        return vec![quoted_string(&name)];
    }
    // Runs of words that need encoding become encoded-words holding the spaces between
    // them (a space between two encoded-words disappears when decoded); plain words
    // stay as they are.
    let mut tokens = Vec::new();
    let mut run: Vec<&str> = Vec::new();
    for word in name.split(' ') {
        if is_atom(word) {
            if !run.is_empty() {
                tokens.extend(encoded_words(&run.join(" ")));
                run.clear();
            }
            tokens.push(word.to_owned());
        } else {
            run.push(word);
        }
    }
    if !run.is_empty() {
        tokens.extend(encoded_words(&run.join(" ")));
    }
    tokens
}

/// RFC 5322 atext only: may stand unquoted in a phrase.
fn is_atom(word: &str) -> bool {
    !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b))
}

fn quoted_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `text` as one or more "Q" encoded-words of at most 75 characters each, split only
/// between characters.
fn encoded_words(text: &str) -> Vec<String> {
    const PREFIX: &str = "=?utf-8?q?";
    const SUFFIX: &str = "?=";
    let room = ENCODED_WORD_MAX - PREFIX.len() - SUFFIX.len();
    let mut words = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        let mut piece = String::new();
        if c == ' ' {
            piece.push('_');
        } else if c.is_ascii_alphanumeric() || "!*+-/".contains(c) {
            piece.push(c);
        } else {
            let mut buf = [0; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                piece.push_str(&format!("={b:02X}"));
            }
        }
        if current.len() + piece.len() > room {
            words.push(format!("{PREFIX}{current}{SUFFIX}"));
            current.clear();
        }
        current.push_str(&piece);
    }
    if !current.is_empty() {
        words.push(format!("{PREFIX}{current}{SUFFIX}"));
    }
    words
}

/// Joins `tokens` with spaces, folding before a token that would pass column 78.
fn fold(start: usize, tokens: &[String]) -> String {
    let mut out = String::new();
    let mut column = start;
    for (i, token) in tokens.iter().enumerate() {
        if i > 0 {
            if column + 1 + token.len() > LINE {
                out.push_str("\r\n ");
                column = 1;
            } else {
                out.push(' ');
                column += 1;
            }
        }
        out.push_str(token);
        column += token.len();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailbox(name: &str, address: &str) -> Mailbox {
        Mailbox::new(Some(name.to_owned()), address.parse().unwrap())
    }

    #[test]
    fn an_ascii_name_is_plain_or_a_quoted_string() {
        let m = mailbox(
            "Independent review of children's social care",
            "n@example.org",
        );
        assert_eq!(
            encode_mailbox(6, &m),
            "Independent review of children's social care <n@example.org>"
        );
        let m = mailbox("Smith, Jr.", "n@example.org");
        assert_eq!(encode_mailbox(6, &m), "\"Smith, Jr.\" <n@example.org>");
        let m = mailbox(r#"The "Best" \ list"#, "n@example.org");
        assert_eq!(
            encode_mailbox(6, &m),
            r#""The \"Best\" \\ list" <n@example.org>"#
        );
    }

    #[test]
    fn only_words_that_need_it_are_encoded_and_spaces_between_them_kept() {
        let m = mailbox("Bøb Ünicode Smith", "b@example.org");
        assert_eq!(
            encode_mailbox(4, &m),
            "=?utf-8?q?B=C3=B8b_=C3=9Cnicode?= Smith <b@example.org>"
        );
    }

    #[test]
    fn long_names_fold_and_never_split_a_character() {
        let name = "Ünïcödé ".repeat(12);
        let m = mailbox(name.trim(), "u@example.org");
        let text = encode_mailbox(6, &m);
        for line in text.split("\r\n") {
            assert!(line.len() <= LINE, "{line}");
        }
        for word in text.split_whitespace().filter(|w| w.starts_with("=?")) {
            assert!(word.len() <= ENCODED_WORD_MAX, "{word}");
            let payload = word.trim_start_matches("=?utf-8?q?").trim_end_matches("?=");
            let bytes: Vec<u8> = decode_q(payload);
            assert!(
                String::from_utf8(bytes).is_ok(),
                "{word} splits a character"
            );
        }
    }

    fn decode_q(payload: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let b = payload.as_bytes();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'=' => {
                    out.push(u8::from_str_radix(&payload[i + 1..i + 3], 16).unwrap());
                    i += 3;
                }
                b'_' => {
                    out.push(b' ');
                    i += 1;
                }
                c => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        out
    }
}
