//! The transport boundary: one message in, accepted or an error that says what kind.

use lettre::address::Envelope;
use std::future::Future;

/// One message ready to go: who it is for, and its bytes (RFC 5322, CRLF line ends) —
/// lettre's shape, whatever kind of message it is.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    pub envelope: Envelope,
    pub bytes: Vec<u8>,
    /// A stable name for mail that may be sent again after a crash (an issue's
    /// `<issue>/<subscriber id>`): the file transport writes it under that name, so a
    /// resend replaces the earlier copy. SMTP ignores it. Mail without one gets a fresh,
    /// unique name that sorts by the time it was written.
    pub name: Option<String>,
}

impl OutgoingMessage {
    /// A message with no stable name.
    pub fn new(envelope: Envelope, bytes: Vec<u8>) -> Self {
        Self {
            envelope,
            bytes,
            name: None,
        }
    }

    /// A message the file transport writes under `name` (a relative path, no extension).
    pub fn named(envelope: Envelope, bytes: Vec<u8>, name: String) -> Self {
        Self {
            envelope,
            bytes,
            name: Some(name),
        }
    }
}

/// Why a message was not accepted. The delivery policy keys on the kind, never on text.
///
/// Only [`SendError::Permanent`] and [`SendError::Transient`] are about one recipient
/// (the reply to that recipient's RCPT TO). [`SendError::Relay`] and [`SendError::Local`]
/// are faults of the system that would hit every message alike: sending stops, and
/// nothing is counted against the recipients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// A 4xx reply to RCPT TO: try this recipient again later.
    #[error("temporary failure: {0}")]
    Transient(String),
    /// An explicit "slow down" (421/450/451/452 with throttling words or the enhanced
    /// codes 4.7.x, 4.3.2, 4.4.5): slow down and try again; not the recipient's fault.
    #[error("throttled by the server: {0}")]
    Throttled(String),
    /// A 5xx reply to this recipient's RCPT TO: they will not get the message.
    #[error("permanent failure: {0}")]
    Permanent(String),
    /// The message went out (the final dot was sent) but no answer came: it may have
    /// arrived. Recorded as unknown and tried again later (a duplicate at worst).
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// The relay is down or refuses the session or our sender: connection refused or
    /// timed out, TLS, greeting, EHLO or AUTH failed, a refusal of MAIL FROM or DATA, a
    /// size refusal (552, 5.3.4), or the connection lost before the message was sent.
    #[error("{0}")]
    Relay(String),
    /// Something on our side (the outbox folder cannot be written).
    #[error("{0}")]
    Local(String),
}

impl SendError {
    /// True when the recipient will never get this message (5xx to their RCPT TO).
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Permanent(_))
    }

    /// True when the server asked us to slow down.
    pub fn is_throttle(&self) -> bool {
        matches!(self, Self::Throttled(_))
    }

    /// True for a fault of the relay or of this machine rather than of one recipient:
    /// sending stops until it is over, and no recipient is charged with it.
    pub fn is_system(&self) -> bool {
        matches!(self, Self::Relay(_) | Self::Local(_))
    }

    /// True when a reply asks us to slow down: 421/450/451/452 with the enhanced code
    /// 4.7.x, 4.3.2 or 4.4.5, or with "too many", "rate" or "throttl" in the text.
    pub fn is_throttling_reply(code: u16, text: &str) -> bool {
        if !matches!(code, 421 | 450 | 451 | 452) {
            return false;
        }
        let text = text.trim();
        let enhanced = text.split_whitespace().next().unwrap_or("");
        if enhanced.starts_with("4.7.") || matches!(enhanced, "4.3.2" | "4.4.5") {
            return true;
        }
        let lower = text.to_ascii_lowercase();
        ["too many", "rate", "throttl"]
            .iter()
            .any(|w| lower.contains(w))
    }

    /// True for a size refusal (552, or the enhanced code 5.3.4): our message is too big
    /// for the relay, which is ours to fix, never the recipient's bounce.
    pub fn is_size_refusal(code: u16, text: &str) -> bool {
        code == 552 || text.trim().starts_with("5.3.4")
    }

    /// Sorts a negative reply to a recipient's RCPT TO: throttling; a size refusal or a
    /// 421 (the relay closing the session) are relay faults; 5xx permanent; else
    /// transient.
    pub fn from_reply(code: u16, text: &str) -> Self {
        let message = format!("{code} {}", text.trim());
        if Self::is_throttling_reply(code, text) {
            Self::Throttled(message)
        } else if Self::is_size_refusal(code, text) {
            Self::Relay(format!(
                "the relay refuses messages of this size: {message}"
            ))
        } else if code == 421 {
            Self::Relay(format!(
                "the relay closed the session at RCPT TO: {message}"
            ))
        } else if code >= 500 {
            Self::Permanent(message)
        } else {
            Self::Transient(message)
        }
    }

    /// Sorts a negative reply to anything but RCPT TO (the greeting, EHLO, AUTH, MAIL
    /// FROM, DATA, the final dot), which would be the same for every message: throttling,
    /// or a relay fault. `stage` says which command, for the operator.
    pub fn from_session_reply(stage: &str, code: u16, text: &str) -> Self {
        let message = format!("{code} {}", text.trim());
        if Self::is_throttling_reply(code, text) {
            Self::Throttled(format!("{stage}: {message}"))
        } else if Self::is_size_refusal(code, text) {
            Self::Relay(format!(
                "the relay refuses messages of this size ({stage}: {message})"
            ))
        } else {
            Self::Relay(format!("the relay refuses {stage}: {message}"))
        }
    }
}

/// Carries messages to recipients. Implementations: [`super::FileTransport`],
/// [`super::SmtpTransport`] and the test double [`super::StubTransport`].
pub trait Transport: Send + Sync {
    /// Hands `message` over. `Ok` means the receiving side accepted it (for SMTP: the
    /// reply to the final dot was 250); only then is the ledger row marked sent.
    fn send(&self, message: &OutgoingMessage)
    -> impl Future<Output = Result<(), SendError>> + Send;

    /// How many sends may usefully run at once (an SMTP pool's size).
    fn concurrency(&self) -> usize {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_sort_into_kinds() {
        assert!(SendError::from_reply(550, "no such user").is_permanent());
        assert!(SendError::from_reply(421, "4.7.0 Too many connections").is_throttle());
        assert!(SendError::from_reply(451, "Rate limit exceeded").is_throttle());
        assert!(SendError::from_reply(452, "throttled, slow down").is_throttle());
        assert!(SendError::from_reply(451, "4.4.5 try later").is_throttle());
        assert!(SendError::from_reply(452, "4.3.2 busy").is_throttle());
        assert!(SendError::from_reply(450, "4.7.1 greylisted").is_throttle());
        assert_eq!(
            SendError::from_reply(450, "mailbox busy"),
            SendError::Transient("450 mailbox busy".into())
        );
        assert!(!SendError::from_reply(450, "4.3.0 Error: command failed").is_throttle());
        // A rate word on a code that does not mean "slow down" is just a failure.
        assert!(!SendError::from_reply(454, "rate").is_throttle());
        // The relay going away is not the recipient's problem either.
        assert!(SendError::from_reply(421, "4.3.0 shutting down").is_system());
        // Too big is ours, never the recipient's.
        assert!(SendError::from_reply(552, "5.3.4 Message too big").is_system());
        assert!(SendError::from_reply(554, "5.3.4 Message too big").is_system());
    }

    #[test]
    fn session_replies_are_relay_faults() {
        let e = SendError::from_session_reply("MAIL FROM", 550, "5.7.1 Sender rejected");
        assert!(e.is_system() && !e.is_permanent(), "{e:?}");
        assert!(e.to_string().contains("MAIL FROM"));
        assert!(SendError::from_session_reply("DATA", 421, "4.3.0 closing").is_system());
        assert!(
            SendError::from_session_reply("the greeting", 421, "4.7.0 Too many connections")
                .is_throttle()
        );
    }
}
