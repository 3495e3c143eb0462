//! Delivery status notifications (RFC 3464): what a bounce says about each recipient.
//!
//! mail-parser hands over the `message/delivery-status` part as bytes; its fields are
//! header-like blocks (one per message, then one per recipient) that we read ourselves.

use std::fmt;

/// Most recipients read from one report; a real bounce names one or a few.
const MAX_RECIPIENTS: usize = 50;
/// Most bytes of a status part read.
const MAX_STATUS_BYTES: usize = 64 * 1024;

/// What the reporting server did with the message for one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Failed,
    Delayed,
    Delivered,
    Relayed,
    Expanded,
    Unknown,
}

impl Action {
    fn parse(value: &str) -> Self {
        match value.trim().to_ascii_lowercase().as_str() {
            "failed" => Self::Failed,
            "delayed" => Self::Delayed,
            "delivered" => Self::Delivered,
            "relayed" => Self::Relayed,
            "expanded" => Self::Expanded,
            _ => Self::Unknown,
        }
    }
}

/// An RFC 3463 status code: `class.subject.detail`, e.g. `5.1.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub class: u8,
    pub subject: u16,
    pub detail: u16,
}

impl Status {
    /// Parses `5.1.1` (anything after the code, such as a comment, is ignored).
    pub fn parse(value: &str) -> Option<Self> {
        let code = value.split_whitespace().next()?;
        let mut parts = code.split('.');
        let class: u8 = parts.next()?.parse().ok()?;
        let subject: u16 = parts.next()?.parse().ok()?;
        let detail: u16 = parts.next()?.parse().ok()?;
        if parts.next().is_some() || !matches!(class, 2 | 4 | 5) || subject > 999 || detail > 999 {
            return None;
        }
        Some(Self {
            class,
            subject,
            detail,
        })
    }

    /// A permanent failure (5.x.x).
    pub fn is_permanent(self) -> bool {
        self.class == 5
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// One recipient block of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientStatus {
    /// The address from `Final-Recipient`.
    pub final_recipient: Option<String>,
    /// The address from `Original-Recipient`: the one the sender gave, before any
    /// forwarding the reporting server did.
    pub original_recipient: Option<String>,
    pub action: Action,
    pub status: Option<Status>,
}

impl RecipientStatus {
    /// The address the block is about: `Final-Recipient`, else `Original-Recipient`.
    pub fn recipient(&self) -> Option<&str> {
        self.final_recipient
            .as_deref()
            .or(self.original_recipient.as_deref())
    }

    /// A 5.x.x failure: counts toward marking the subscriber bounced.
    pub fn is_permanent_failure(&self) -> bool {
        self.action == Action::Failed && self.status.is_none_or(Status::is_permanent)
            || self.status.is_some_and(Status::is_permanent) && self.action != Action::Delivered
    }
}

/// Reads the recipient blocks of a `message/delivery-status` body.
pub fn parse_delivery_status(bytes: &[u8]) -> Vec<RecipientStatus> {
    let bytes = &bytes[..bytes.len().min(MAX_STATUS_BYTES)];
    let text = String::from_utf8_lossy(bytes);
    let mut out = Vec::new();
    // Blocks are separated by blank lines; the first is about the message, the rest are
    // per recipient, but some servers mix them up, so any block naming a recipient counts.
    for block in blocks(&text) {
        let mut final_recipient = None;
        let mut original_recipient = None;
        let mut action = None;
        let mut status = None;
        for (name, value) in block {
            match name.to_ascii_lowercase().as_str() {
                "final-recipient" => final_recipient = address_field(&value),
                "original-recipient" => original_recipient = address_field(&value),
                "action" => action = Some(Action::parse(&value)),
                "status" => status = Status::parse(&value),
                _ => {}
            }
        }
        if final_recipient.is_some() || original_recipient.is_some() || action.is_some() {
            out.push(RecipientStatus {
                final_recipient,
                original_recipient,
                action: action.unwrap_or(Action::Unknown),
                status,
            });
            if out.len() == MAX_RECIPIENTS {
                break;
            }
        }
    }
    out
}

/// `rfc822; user@example.org` → `user@example.org`.
fn address_field(value: &str) -> Option<String> {
    let (kind, addr) = value.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("rfc822") {
        return None;
    }
    let addr = addr
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    (!addr.is_empty() && addr.len() <= 254).then(|| addr.to_owned())
}

/// Header-like blocks: unfolded `(name, value)` pairs, split at blank lines.
fn blocks(text: &str) -> Vec<Vec<(String, String)>> {
    let mut blocks = Vec::new();
    let mut current: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                blocks.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = current.last_mut()
                && value.len() < 1024
            {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            current.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    if !current.is_empty() {
        blocks.push(current);
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    const POSTFIX: &str = "Reporting-MTA: dns; mailstack.gazette.test\n\
        X-Postfix-Queue-ID: 4F1\n\
        Arrival-Date: Mon,  1 Sep 2025 10:00:00 +0000 (UTC)\n\
        \n\
        Final-Recipient: rfc822; nobody@gazette.test\n\
        Original-Recipient: rfc822;nobody@gazette.test\n\
        Action: failed\n\
        Status: 5.1.1\n\
        Diagnostic-Code: x-unix; 550 5.1.1 <nobody@gazette.test>: User doesn't\n    exist: nobody@gazette.test\n";

    #[test]
    fn reads_a_postfix_report() {
        let r = parse_delivery_status(POSTFIX.as_bytes());
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].recipient(), Some("nobody@gazette.test"));
        assert_eq!(r[0].action, Action::Failed);
        assert_eq!(r[0].status.unwrap().to_string(), "5.1.1");
        assert!(r[0].is_permanent_failure());
    }

    #[test]
    fn delays_are_not_permanent() {
        let r = parse_delivery_status(
            b"Final-Recipient: rfc822; a@b.org\r\nAction: delayed\r\nStatus: 4.4.1\r\n",
        );
        assert_eq!(r[0].action, Action::Delayed);
        assert!(!r[0].is_permanent_failure());
    }

    #[test]
    fn garbage_gives_nothing_or_unknowns() {
        assert!(parse_delivery_status(b"\xff\xfe\x00garbage").is_empty());
        assert_eq!(Status::parse("9.9.9"), None);
        assert_eq!(Status::parse("5.1"), None);
        assert_eq!(Status::parse("5.1.1.1"), None);
        assert_eq!(Status::parse("5.1.1 (comment)").unwrap().detail, 1);
        let r = parse_delivery_status(b"Final-Recipient: x400; whatever\nAction: failed\n");
        assert_eq!(r[0].recipient(), None);
    }
}
