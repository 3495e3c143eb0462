//! The one builder every outgoing message goes through (issues, proofs, editor notices,
//! unsubscribe notices, sign-up confirmations), so each carries Message-ID, Date,
//! MIME-Version, a utf-8 charset, Auto-Submitted where it applies, and a DKIM signature
//! when a key is configured.

use super::mailbox::mailbox_header;
use crate::domain::DkimSigner;
use lettre::Message;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use std::sync::atomic::{AtomicU64, Ordering};

/// What a message is; it decides Auto-Submitted and the Message-ID's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Issue,
    Proof,
    EditorNotice,
    UnsubscribeNotice,
    Confirmation,
}

impl Kind {
    /// RFC 3834: answers to a request are auto-replied, other machine mail
    /// auto-generated; an issue is written by people and carries none.
    fn auto_submitted(self) -> Option<&'static str> {
        match self {
            Kind::Issue => None,
            Kind::UnsubscribeNotice => Some("auto-replied"),
            Kind::Proof | Kind::EditorNotice | Kind::Confirmation => Some("auto-generated"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Issue => "issue",
            Kind::Proof => "proof",
            Kind::EditorNotice => "editors",
            Kind::UnsubscribeNotice => "notice",
            Kind::Confirmation => "confirm",
        }
    }
}

/// The body: plain text, or text with an HTML alternative.
#[derive(Debug)]
pub enum Content {
    Text(String),
    Alternative(MultiPart),
}

/// Everything that differs between messages.
#[derive(Debug)]
pub struct Outgoing<'a> {
    pub kind: Kind,
    pub from: &'a Mailbox,
    pub reply_to: Option<&'a Mailbox>,
    pub to: &'a Mailbox,
    pub subject: &'a str,
    pub date: chrono::DateTime<chrono::Utc>,
    /// The id when the caller needs a stable one (issues: the inbox matches replies and
    /// bounces by it); otherwise a fresh one is made under `id_domain`.
    pub message_id: Option<String>,
    /// The domain of made-up Message-IDs: ours, so a message that comes back is
    /// recognised.
    pub id_domain: &'a str,
    /// Further headers (list headers and the like), written as given.
    pub headers: Vec<HeaderValue>,
    pub content: Content,
}

/// A Message-ID unique to this message: the kind, the time, the process and a counter.
fn fresh_id(kind: Kind, date: chrono::DateTime<chrono::Utc>, domain: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let now = chrono::Utc::now().timestamp_micros();
    format!(
        "<{}.{}.{now}.{}.{n}@{domain}>",
        kind.name(),
        date.timestamp(),
        std::process::id()
    )
}

/// A raw header with `name` and `value`.
pub fn raw_header(name: &'static str, value: String) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value)
}

/// Builds the message. lettre writes MIME-Version with the part it is given, and
/// `charset=utf-8` with both kinds of text part.
pub fn compose(o: Outgoing<'_>) -> Result<Message, lettre::error::Error> {
    let id = o
        .message_id
        .unwrap_or_else(|| fresh_id(o.kind, o.date, o.id_domain));
    let mut b = Message::builder()
        .from(o.from.clone())
        .raw_header(mailbox_header("From", o.from));
    if let Some(reply_to) = o.reply_to {
        b = b
            .reply_to(reply_to.clone())
            .raw_header(mailbox_header("Reply-To", reply_to));
    }
    b = b
        .to(o.to.clone())
        .raw_header(mailbox_header("To", o.to))
        .subject(o.subject)
        .date(o.date.into())
        .message_id(Some(id));
    if let Some(value) = o.kind.auto_submitted() {
        b = b.raw_header(raw_header("Auto-Submitted", value.to_owned()));
    }
    for h in o.headers {
        b = b.raw_header(h);
    }
    match o.content {
        Content::Text(text) => b.singlepart(SinglePart::plain(text)),
        Content::Alternative(parts) => b.multipart(parts),
    }
}

/// The bytes of `message` as sent: DKIM-signed when `dkim` is given, at `date`.
pub fn finish(
    message: &Message,
    date: chrono::DateTime<chrono::Utc>,
    dkim: Option<&DkimSigner>,
) -> Vec<u8> {
    let bytes = message.formatted();
    match dkim {
        Some(dkim) => dkim.sign(&bytes, date.timestamp()),
        None => bytes,
    }
}
