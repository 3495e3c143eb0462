//! `Bounce`: a delivery status notification (RFC 3464), and whether it is about one of
//! our messages.
//!
//! Anyone can write a `multipart/report`, so a report counts only when it proves what it
//! is about: it returns (in its `text/rfc822-headers` or `message/rfc822` part) one of
//! our Message-IDs, which names the issue and the subscriber under a token only we can
//! make; the ledger shows that issue sent to that subscriber; and one of its recipient
//! blocks names that subscriber's address. Only those blocks count. Anything else is
//! left for a person.

use super::Recognizer;
use crate::domain::IssueId;
use crate::inbox::dsn::{Action, Status};
use crate::inbox::incoming::{Incoming, Report};
use crate::store::{Store, StoreError};

/// What a report says about one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BouncedRecipient {
    /// `Final-Recipient` then `Original-Recipient`, as written, where present.
    pub addresses: Vec<String>,
    pub action: Action,
    pub status: Option<Status>,
    /// A 5.x.x failure, which counts toward marking the subscriber bounced.
    pub permanent: bool,
}

impl BouncedRecipient {
    /// Whether the block is about `address`, compared case-insensitively as a whole.
    pub fn names(&self, address: &str) -> bool {
        let address = address.to_lowercase();
        self.addresses.iter().any(|a| a.to_lowercase() == address)
    }
}

/// The message of ours a report returns, as its Message-ID names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OurMessage {
    pub issue: IssueId,
    pub subscriber_id: i64,
}

/// A delivery report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounce {
    pub recipients: Vec<BouncedRecipient>,
    /// The returned message, when its Message-ID is ours: our domain, an issue date and
    /// a genuine token.
    pub about: Option<OurMessage>,
}

/// What a report proved, once checked against the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// About `message`, sent to the subscriber; `permanent` if a block naming their
    /// address is a 5.x.x failure.
    Proven {
        message: OurMessage,
        permanent: bool,
    },
    /// Not tied to a message we sent: left for a person.
    Unverified(&'static str),
}

impl Bounce {
    pub(super) fn parse(m: &Incoming, r: &Recognizer) -> Option<Self> {
        let Some(Report::DeliveryStatus {
            recipients,
            returned_message_id,
        }) = &m.report
        else {
            return None;
        };
        Some(Self {
            recipients: recipients
                .iter()
                .map(|s| BouncedRecipient {
                    addresses: [&s.final_recipient, &s.original_recipient]
                        .into_iter()
                        .flatten()
                        .cloned()
                        .collect(),
                    action: s.action,
                    status: s.status,
                    permanent: s.is_permanent_failure(),
                })
                .collect(),
            about: returned_message_id
                .as_deref()
                .and_then(|id| our_message(id, r)),
        })
    }

    /// Whether any recipient failed permanently.
    pub fn is_permanent(&self) -> bool {
        self.recipients.iter().any(|r| r.permanent)
    }

    /// Checks the report against the ledger (see the module comment).
    pub async fn verify(&self, store: &Store) -> Result<Verdict, StoreError> {
        let Some(message) = self.about else {
            return Ok(Verdict::Unverified(
                "the returned message has no Message-ID of ours",
            ));
        };
        let Some(address) = store
            .address_sent_to(message.issue, message.subscriber_id)
            .await?
        else {
            return Ok(Verdict::Unverified(
                "the ledger has no such message sent to that subscriber",
            ));
        };
        let mut blocks = self.recipients.iter().filter(|r| r.names(&address));
        let Some(first) = blocks.next() else {
            return Ok(Verdict::Unverified(
                "no recipient block names the subscriber the message went to",
            ));
        };
        let permanent = first.permanent || blocks.any(|r| r.permanent);
        Ok(Verdict::Proven { message, permanent })
    }
}

/// Reads one of our Message-IDs, `<issue>.<token>@<message_id_domain>` (as
/// `render::message_id` makes them), into the issue and the subscriber it names.
fn our_message(id: &str, r: &Recognizer) -> Option<OurMessage> {
    let id = id.trim().trim_start_matches('<').trim_end_matches('>');
    let (local, domain) = id.rsplit_once('@')?;
    if !domain.eq_ignore_ascii_case(&r.message_id_domain) {
        return None;
    }
    let (issue, token) = local.split_once('.')?;
    Some(OurMessage {
        issue: IssueId::parse(issue).ok()?,
        subscriber_id: r.message_token(token)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{TokenKey, TokenPurpose};

    fn recognizer() -> Recognizer {
        Recognizer {
            tokens: TokenKey::new(b"0123456789abcdef0123", "news.example.org"),
            own_addresses: vec![],
            message_id_domain: "example.org".into(),
        }
    }

    #[test]
    fn only_our_message_ids_name_a_message() {
        let r = recognizer();
        let token = r.tokens.sign(TokenPurpose::Unsubscribe, 7);
        let ours = format!("<2025-09-01.{token}@example.org>");
        assert_eq!(
            our_message(&ours, &r),
            Some(OurMessage {
                issue: IssueId::parse("2025-09-01").unwrap(),
                subscriber_id: 7
            })
        );
        assert_eq!(
            our_message(&format!("2025-09-01.{token}@EXAMPLE.org"), &r).map(|m| m.subscriber_id),
            Some(7)
        );
        for forged in [
            format!("<2025-09-01.{token}@elsewhere.org>"),
            format!("<2025-13-01.{token}@example.org>"),
            format!("<{token}@example.org>"),
            "<2025-09-01.7-0123456789abcdef0123456789abcdef@example.org>".to_owned(),
            "<2025-09-01@example.org>".to_owned(),
            String::new(),
        ] {
            assert_eq!(our_message(&forged, &r), None, "{forged}");
        }
    }
}
