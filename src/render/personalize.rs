//! Per-recipient slots in a rendered issue.
//!
//! Templates see the recipient's fields as markers (private-use characters around a
//! name) that no editor text can contain, because composing strips those characters.
//! After rendering, the output is split at the markers once; filling a message is then
//! a walk over literal text and slots.

use super::quoted_printable;
use crate::domain::{HeaderText, SubscriberEmail, TokenKey, TokenPurpose};
use crate::settings::Newsletter;

const OPEN: char = '\u{e000}';
const CLOSE: char = '\u{e001}';

/// A per-recipient value in a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Email,
    Name,
    UnsubscribeUrl,
    UnsubscribeMailto,
}

impl Slot {
    const ALL: [Slot; 4] = [
        Self::Email,
        Self::Name,
        Self::UnsubscribeUrl,
        Self::UnsubscribeMailto,
    ];

    fn key(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Name => "name",
            Self::UnsubscribeUrl => "unsubscribe_url",
            Self::UnsubscribeMailto => "unsubscribe_mailto",
        }
    }

    /// The marker a template sees in place of the value.
    pub(crate) fn marker(self) -> String {
        format!("{OPEN}{}{CLOSE}", self.key())
    }

    /// The template context's `recipient` object, all markers.
    pub(crate) fn context() -> serde_json::Value {
        let map: serde_json::Map<String, serde_json::Value> = Self::ALL
            .iter()
            .map(|s| (s.key().to_owned(), serde_json::Value::String(s.marker())))
            .collect();
        serde_json::Value::Object(map)
    }
}

/// Who a message is for.
#[derive(Debug, Clone)]
pub struct Recipient {
    /// The subscriber's id in the store; tokens name it.
    pub id: i64,
    pub email: SubscriberEmail,
    pub name: Option<HeaderText>,
}

/// A recipient's own links, derived from their id with the token key.
#[derive(Debug, Clone)]
pub struct RecipientLinks {
    pub token: String,
    /// The token in this recipient's Message-ID (not the unsubscribe token).
    pub message_token: String,
    pub unsubscribe_url: String,
    pub unsubscribe_mailto: String,
}

impl RecipientLinks {
    /// The links for `recipient` of `newsletter`.
    pub fn new(newsletter: &Newsletter, key: &TokenKey, recipient_id: i64) -> Self {
        let token = key
            .sign(TokenPurpose::Unsubscribe, recipient_id)
            .to_string();
        Self {
            unsubscribe_url: format!("{}/unsubscribe/{token}", newsletter.public_url),
            unsubscribe_mailto: format!(
                "mailto:{}?subject=UNSUBSCRIBE%20{token}",
                newsletter.reply_to.email
            ),
            token,
            message_token: key.sign(TokenPurpose::Message, recipient_id).to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Slot(Slot),
}

/// Rendered output with per-recipient slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Personalized {
    segments: Vec<Segment>,
    html: bool,
    literal_len: usize,
    /// Each segment's literal text as quoted-printable (empty for slots): encoded once
    /// here, copied per message by [`fill_quoted_printable`](Self::fill_quoted_printable).
    encoded: Vec<Vec<u8>>,
    encoded_len: usize,
}

impl Personalized {
    /// Splits rendered output at its markers. `html` says whether values are escaped.
    pub fn parse(rendered: &str, html: bool) -> Self {
        let mut segments = Vec::new();
        let mut rest = rendered;
        while let Some(open) = rest.find(OPEN) {
            let after = &rest[open + OPEN.len_utf8()..];
            let Some(close) = after.find(CLOSE) else {
                break;
            };
            let key = &after[..close];
            match Slot::ALL.iter().find(|s| s.key() == key) {
                Some(slot) => {
                    if open > 0 {
                        segments.push(Segment::Literal(rest[..open].to_owned()));
                    }
                    segments.push(Segment::Slot(*slot));
                }
                None => segments.push(Segment::Literal(
                    rest[..open + OPEN.len_utf8() + close + CLOSE.len_utf8()].to_owned(),
                )),
            }
            rest = &after[close + CLOSE.len_utf8()..];
        }
        if !rest.is_empty() {
            segments.push(Segment::Literal(rest.to_owned()));
        }
        let literal_len = segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => l.len(),
                Segment::Slot(_) => 0,
            })
            .sum();
        let encoded: Vec<Vec<u8>> = segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => {
                    let mut out = Vec::with_capacity(l.len() + l.len() / 8);
                    quoted_printable::encode_piece(l, &mut out);
                    out
                }
                Segment::Slot(_) => Vec::new(),
            })
            .collect();
        let encoded_len = encoded.iter().map(Vec::len).sum();
        Self {
            segments,
            html,
            literal_len,
            encoded,
            encoded_len,
        }
    }

    /// The output for one recipient.
    pub fn fill(&self, recipient: &Recipient, links: &RecipientLinks) -> String {
        let mut out = String::with_capacity(self.literal_len + 256);
        for segment in &self.segments {
            match segment {
                Segment::Literal(l) => out.push_str(l),
                Segment::Slot(slot) => self.push_value(&mut out, *slot, recipient, links),
            }
        }
        out
    }

    /// The output for one recipient as a quoted-printable body with CRLF line ends: what
    /// [`fill`](Self::fill) gives, encoded, but only the slot values are encoded here.
    pub fn fill_quoted_printable(&self, recipient: &Recipient, links: &RecipientLinks) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len + 512);
        let mut value = String::new();
        for (segment, encoded) in self.segments.iter().zip(&self.encoded) {
            match segment {
                Segment::Literal(_) => out.extend_from_slice(encoded),
                Segment::Slot(slot) => {
                    value.clear();
                    self.push_value(&mut value, *slot, recipient, links);
                    quoted_printable::encode_piece(&value, &mut out);
                }
            }
        }
        out
    }

    fn push_value(
        &self,
        out: &mut String,
        slot: Slot,
        recipient: &Recipient,
        links: &RecipientLinks,
    ) {
        let value = match slot {
            Slot::Email => recipient.email.as_str(),
            Slot::Name => recipient.name.as_ref().map_or("", HeaderText::as_str),
            Slot::UnsubscribeUrl => &links.unsubscribe_url,
            Slot::UnsubscribeMailto => &links.unsubscribe_mailto,
        };
        if self.html {
            push_escaped_html(out, value);
        } else {
            out.push_str(value);
        }
    }

    /// The rendered text with its slot markers, as [`parse`](Self::parse) read it: what a
    /// store keeps so that `Personalized::parse(&p.marked(), p.is_html())` gives `p` back.
    pub fn marked(&self) -> String {
        let mut out = String::with_capacity(self.literal_len + 32 * self.segments.len());
        for segment in &self.segments {
            match segment {
                Segment::Literal(l) => out.push_str(l),
                Segment::Slot(slot) => out.push_str(&slot.marker()),
            }
        }
        out
    }

    /// Whether slot values are HTML-escaped when filled.
    pub fn is_html(&self) -> bool {
        self.html
    }

    /// The output with every slot left empty: the archive's copy of an issue.
    pub fn without_recipient(&self) -> String {
        self.segments
            .iter()
            .filter_map(|s| match s {
                Segment::Literal(l) => Some(l.as_str()),
                Segment::Slot(_) => None,
            })
            .collect()
    }

    /// Which slots appear.
    pub fn slots(&self) -> impl Iterator<Item = Slot> + '_ {
        self.segments.iter().filter_map(|s| match s {
            Segment::Slot(slot) => Some(*slot),
            Segment::Literal(_) => None,
        })
    }

    /// Size of the issue-wide text as quoted-printable with CRLF line ends, without slot
    /// values: what the text takes in a message.
    pub fn encoded_len(&self) -> usize {
        self.encoded_len
    }

    /// Size of the issue-wide text, without slot values.
    pub fn literal_len(&self) -> usize {
        self.literal_len
    }
}

/// Appends `value` escaped for HTML text and quoted attribute values.
pub fn push_escaped_html(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// `value` escaped for HTML text and quoted attribute values.
pub fn escape_html(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 16);
    push_escaped_html(&mut out, value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marked_text_parses_back_to_the_same_value() {
        let text = format!(
            "Hi {}, bye <{}>",
            Slot::Name.marker(),
            Slot::UnsubscribeUrl.marker()
        );
        let p = Personalized::parse(&text, true);
        assert_eq!(p.marked(), text);
        assert_eq!(Personalized::parse(&p.marked(), p.is_html()), p);
    }

    #[test]
    fn fills_slots_escaping_in_html_only() {
        let text = format!("To {} at {}.", Slot::Name.marker(), Slot::Email.marker());
        let recipient = Recipient {
            id: 1,
            email: SubscriberEmail::parse("a@example.org").unwrap(),
            name: Some(HeaderText::parse("Ada <&> O'Neil").unwrap()),
        };
        let links = RecipientLinks {
            token: "t".into(),
            message_token: "m".into(),
            unsubscribe_url: "u".into(),
            unsubscribe_mailto: "m".into(),
        };
        assert_eq!(
            Personalized::parse(&text, true).fill(&recipient, &links),
            "To Ada &lt;&amp;&gt; O&#39;Neil at a@example.org."
        );
        assert_eq!(
            Personalized::parse(&text, false).fill(&recipient, &links),
            "To Ada <&> O'Neil at a@example.org."
        );
        assert_eq!(
            Personalized::parse(&text, false).without_recipient(),
            "To  at ."
        );
    }

    #[test]
    fn quoted_printable_fill_decodes_to_the_plain_fill() {
        let text = format!(
            "Dear {},\n{}\nLeave: <a href=\"{}\">unsubscribe</a> \n{}",
            Slot::Name.marker(),
            "A long line – with a dash = and more words ".repeat(5),
            Slot::UnsubscribeUrl.marker(),
            Slot::Email.marker(),
        );
        let recipient = Recipient {
            id: 1,
            email: SubscriberEmail::parse("zoe@example.org").unwrap(),
            name: Some(HeaderText::parse("Zoë <O'Brien>").unwrap()),
        };
        let links = RecipientLinks {
            token: "t".into(),
            message_token: "m".into(),
            unsubscribe_url: "https://example.org/unsubscribe/abc?x=1&y=2".into(),
            unsubscribe_mailto: "m".into(),
        };
        for html in [true, false] {
            let p = Personalized::parse(&text, html);
            assert_eq!(
                super::quoted_printable::decode(&p.fill_quoted_printable(&recipient, &links)),
                p.fill(&recipient, &links),
            );
        }
    }
}
