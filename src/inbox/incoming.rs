//! A message from the mailbox reduced to the facts the commands look at.
//!
//! Parsing never fails: a message mail-parser cannot make sense of becomes an
//! [`Incoming`] with empty fields, which no command claims, so it is left for a person.

use super::dsn::{self, RecipientStatus};
use super::reply;
use mail_parser::{MessageParser, MimeHeaders, PartType};
use sha2::{Digest, Sha256};

/// Most MIME parts looked at; a reply or a bounce has a handful.
const MAX_PARTS: usize = 64;
/// Most bytes of a threading header (In-Reply-To, References) kept.
const MAX_THREAD_HEADER: usize = 4096;

/// The envelope sender, as the final delivery recorded it in `Return-Path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReturnPath {
    /// No `Return-Path` header (a file dropped into a Maildir by hand, say).
    Missing,
    /// `Return-Path: <>`: a bounce or another automatic notification.
    Null,
    Address(String),
}

/// A `multipart/report`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// `report-type=delivery-status`: a bounce, a delay or a delivery notice.
    DeliveryStatus {
        recipients: Vec<RecipientStatus>,
        /// The Message-ID of the returned original (its headers, or the whole message),
        /// without angle brackets: ours names the issue and the subscriber.
        returned_message_id: Option<String>,
    },
    /// Any other report type (read receipts, abuse reports …).
    Other(String),
}

/// What the commands need to know about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// `Message-ID` with angle brackets, when it has a usable one.
    pub message_id: Option<String>,
    /// Under which the message is recorded as processed: its Message-ID together with a
    /// hash of its sender, subject and body (`mid:<id> content:<hex>`), or the hash alone.
    /// A Message-ID is anyone's to choose, so it alone cannot say "handled before": a
    /// genuine request must not be lost because another message used its Message-ID.
    /// The same message delivered twice has the same key (headers added on the way,
    /// such as `Received`, are not part of it).
    pub key: String,
    /// The key the message had before content hashes were part of it (`mid:<id>`, or
    /// `sha256:` of the raw bytes): what older records are found by.
    pub legacy_key: String,
    /// The first `From` address, as written.
    pub from: Option<String>,
    /// A header RFC 5322 allows once (`From`, `Subject`, `Message-ID`, `In-Reply-To`,
    /// `Sender`) appears twice: a forgery attempt or a broken message, and which copy a
    /// parser reads is anyone's guess.
    pub duplicate_headers: bool,
    pub return_path: ReturnPath,
    /// Decoded subject, or empty.
    pub subject: String,
    /// The raw `In-Reply-To` and `References` text (where our Message-IDs show up).
    pub thread: String,
    /// `Auto-Submitted`, lower-cased, without parameters.
    pub auto_submitted: Option<String>,
    /// `Precedence`, lower-cased.
    pub precedence: Option<String>,
    /// An `X-Autoreply`, `X-Autorespond` or `X-Autoresponder` header is present.
    pub autoreply_header: bool,
    pub report: Option<Report>,
    /// The first lines a person typed, above any quotation.
    pub reply_lines: Vec<String>,
    /// The source cut the message at its size limit.
    pub truncated: bool,
}

impl Incoming {
    /// Reads the facts out of raw RFC 5322 bytes.
    pub fn parse(raw: &[u8], truncated: bool) -> Self {
        let hash = format!("sha256:{}", hex::encode(Sha256::digest(raw)));
        let mut out = Incoming {
            message_id: None,
            key: hash.clone(),
            legacy_key: hash,
            from: None,
            duplicate_headers: false,
            return_path: ReturnPath::Missing,
            subject: String::new(),
            thread: String::new(),
            auto_submitted: None,
            precedence: None,
            autoreply_header: false,
            report: None,
            reply_lines: Vec::new(),
            truncated,
        };
        let Some(message) = MessageParser::default().parse(raw) else {
            return out;
        };

        out.message_id = message
            .message_id()
            .map(str::trim)
            .filter(|id| is_usable_id(id))
            .map(|id| format!("<{id}>"));
        out.from = message
            .from()
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .map(|a| a.trim().to_owned());
        out.subject = message.subject().unwrap_or_default().to_owned();
        let content = content_hash(out.from.as_deref(), &out.subject, raw);
        if let Some(id) = &out.message_id {
            out.legacy_key = format!("mid:{id}");
            out.key = format!("mid:{id} {content}");
        } else {
            out.key = content;
        }
        out.duplicate_headers = ["From", "Subject", "Message-ID", "In-Reply-To", "Sender"]
            .iter()
            .any(|name| {
                message
                    .headers()
                    .iter()
                    .filter(|h| h.name().eq_ignore_ascii_case(name))
                    .nth(1)
                    .is_some()
            });
        out.return_path = match message.header_raw("Return-Path") {
            None => ReturnPath::Missing,
            Some(raw) => {
                let addr = raw
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .trim();
                if addr.is_empty() {
                    ReturnPath::Null
                } else {
                    ReturnPath::Address(addr.to_owned())
                }
            }
        };
        for name in ["In-Reply-To", "References"] {
            if let Some(raw) = message.header_raw(name) {
                let room = MAX_THREAD_HEADER.saturating_sub(out.thread.len());
                out.thread.push_str(reply::cut(raw, room));
                out.thread.push(' ');
            }
        }
        let lower_value = |name: &str| {
            message.header_raw(name).map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase()
            })
        };
        out.auto_submitted = lower_value("Auto-Submitted");
        out.precedence = lower_value("Precedence");
        out.autoreply_header = ["X-Autoreply", "X-Autorespond", "X-Autoresponder"]
            .iter()
            .any(|h| message.header_raw(*h).is_some());

        let is_report = message.content_type().is_some_and(|ct| {
            ct.ctype().eq_ignore_ascii_case("multipart")
                && ct
                    .subtype()
                    .is_some_and(|s| s.eq_ignore_ascii_case("report"))
        });
        if is_report {
            let report_type = message
                .content_type()
                .and_then(|ct| ct.attribute("report-type"))
                .unwrap_or_default()
                .to_ascii_lowercase();
            out.report = Some(if report_type == "delivery-status" {
                delivery_report(&message)
            } else {
                Report::Other(report_type)
            });
        } else {
            out.reply_lines = reply_text(&message)
                .map(|text| {
                    reply::reply_lines(&text)
                        .into_iter()
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
        }
        out
    }
}

/// `content:<hex>`: SHA-256 over the sender's address (lower-cased), the subject and the
/// body (the bytes after the header block, line ends normalised).
fn content_hash(from: Option<&str>, subject: &str, raw: &[u8]) -> String {
    let body_start = [&b"\r\n\r\n"[..], b"\n\n"]
        .iter()
        .filter_map(|sep| {
            raw.windows(sep.len())
                .position(|w| w == *sep)
                .map(|at| at + sep.len())
        })
        .min()
        .unwrap_or(raw.len());
    let mut hash = Sha256::new();
    hash.update(from.unwrap_or_default().to_lowercase().as_bytes());
    hash.update(b"\0");
    hash.update(subject.as_bytes());
    hash.update(b"\0");
    for line in raw[body_start..].split(|&b| b == b'\n') {
        hash.update(line.strip_suffix(b"\r").unwrap_or(line));
        hash.update(b"\n");
    }
    format!("content:{}", hex::encode(hash.finalize()))
}

/// A Message-ID we can record and compare: printable, no spaces, not absurdly long.
fn is_usable_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 250
        && id
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '<' && c != '>')
}

/// The text of the first body part, with HTML reduced to its unquoted text.
fn reply_text(message: &mail_parser::Message<'_>) -> Option<String> {
    let id = *message.text_body.first()?;
    match &message.parts.get(id as usize)?.body {
        PartType::Text(text) => Some(text.to_string()),
        // Indentation in HTML is layout, not quotation (the quotation was cut off).
        PartType::Html(html) => Some(
            reply::html_reply_text(html)
                .lines()
                .map(str::trim)
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        _ => None,
    }
}

fn delivery_report(message: &mail_parser::Message<'_>) -> Report {
    let mut recipients = Vec::new();
    let mut returned: Option<Option<String>> = None;
    for part in message.parts.iter().skip(1).take(MAX_PARTS) {
        let Some(ct) = part.content_type() else {
            continue;
        };
        let ctype = ct.ctype().to_ascii_lowercase();
        let subtype = ct.subtype().unwrap_or_default().to_ascii_lowercase();
        match (ctype.as_str(), subtype.as_str()) {
            ("message", "delivery-status" | "global-delivery-status") if recipients.is_empty() => {
                recipients = dsn::parse_delivery_status(part.contents());
            }
            // Only the first returned part is read: one report is about one message.
            ("message", "rfc822" | "global")
            | ("text", "rfc822-headers")
            | ("message", "global-headers")
                if returned.is_none() =>
            {
                let id = match &part.body {
                    PartType::Message(inner) => inner.message_id().map(str::to_owned),
                    _ => MessageParser::default()
                        .parse_headers(part.contents())
                        .and_then(|headers| headers.message_id().map(str::to_owned)),
                };
                returned = Some(
                    id.map(|id| id.trim().to_owned())
                        .filter(|id| is_usable_id(id)),
                );
            }
            _ => {}
        }
    }
    Report::DeliveryStatus {
        recipients,
        returned_message_id: returned.flatten(),
    }
}
