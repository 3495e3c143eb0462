//! The transport boundary: one message in, accepted or an error that says what kind.

use crate::domain::IssueId;
use lettre::address::Envelope;
use std::future::Future;

/// One message ready to go: who it is for, and its bytes (RFC 5322, CRLF line ends).
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    pub issue: IssueId,
    pub subscriber_id: i64,
    pub envelope: Envelope,
    pub bytes: Vec<u8>,
}

/// Why a message was not accepted. The delivery policy keys on the kind, never on text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// A 4xx reply: try again later.
    #[error("temporary failure: {0}")]
    Transient(String),
    /// A reply saying we send too fast (421/451/452 with "too many", "rate", "throttl"):
    /// slow down and try again; not the recipient's fault.
    #[error("throttled by the server: {0}")]
    Throttled(String),
    /// A 5xx reply: this recipient will not get the message.
    #[error("permanent failure: {0}")]
    Permanent(String),
    /// The connection broke or the server hung up mid-transaction. If it happened after
    /// the final dot the message may have arrived; it is sent again (a duplicate at worst).
    #[error("connection lost: {0}")]
    ConnectionDropped(String),
    /// No answer within `[smtp] timeout`.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The server could not be reached or refused the session (TLS, AUTH, greeting).
    #[error("cannot connect: {0}")]
    Connect(String),
    /// Something on our side (a file that cannot be written).
    #[error("local failure: {0}")]
    Local(String),
}

impl SendError {
    /// True when the recipient will never get this message (5xx).
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Permanent(_))
    }

    /// True when the server asked us to slow down.
    pub fn is_throttle(&self) -> bool {
        matches!(self, Self::Throttled(_))
    }

    /// Sorts a negative SMTP reply: 5xx permanent; 4xx throttling when the text says so
    /// (421/451/452 with "too many", "rate" or "throttl"), else transient.
    pub fn from_reply(code: u16, text: &str) -> Self {
        let message = format!("{code} {}", text.trim());
        if code >= 500 {
            return Self::Permanent(message);
        }
        let lower = text.to_ascii_lowercase();
        let slow_down = ["too many", "rate", "throttl"]
            .iter()
            .any(|w| lower.contains(w));
        if matches!(code, 421 | 451 | 452) && slow_down {
            Self::Throttled(message)
        } else {
            Self::Transient(message)
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
        assert_eq!(
            SendError::from_reply(450, "mailbox busy"),
            SendError::Transient("450 mailbox busy".into())
        );
        // A rate word on a code that does not mean "slow down" is just transient.
        assert!(!SendError::from_reply(450, "rate").is_throttle());
    }
}
