//! Tokens in links and mailto addresses: an HMAC over the subscriber and the list.
//!
//! A token is `<subscriber id>-<32 hex digits>`. The digits are the first 128 bits of
//! HMAC-SHA256 keyed with `[web] secret` over the purpose, the list id and the subscriber
//! id, so a token for one purpose, list or subscriber is worthless for another.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use subtle::ConstantTimeEq;

/// What a token allows; part of what is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    /// Unsubscribe links, the one-click POST and the mailto token. Message-IDs of
    /// issues sent before [`Self::Message`] existed carry it too.
    Unsubscribe,
    /// Our issues' Message-IDs: they name the recipient for replies and bounces, but
    /// are not a capability (a forwarded message's Message-ID unsubscribes nobody).
    Message,
    /// The link in a sign-up confirmation message. It names the sign-up request, not
    /// the subscriber, so each link is good for its own request only.
    Confirm,
    /// The resubscribe link in an unsubscribe notice.
    Resubscribe,
}

impl TokenPurpose {
    fn label(self) -> &'static str {
        match self {
            Self::Unsubscribe => "unsubscribe",
            // Not "confirm": links of that label named subscribers, and must not be
            // taken for a request of the same number.
            Self::Confirm => "confirm-request",
            Self::Resubscribe => "resubscribe",
            Self::Message => "message-id",
        }
    }
}

/// A signed token naming one subscriber (or, for [`TokenPurpose::Confirm`], one
/// sign-up request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// The token as it appears in URLs.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Signs and checks tokens for one list with one secret.
#[derive(Clone)]
pub struct TokenKey {
    secret: Vec<u8>,
    list_id: String,
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TokenKey {{ list_id: {:?}, secret: [redacted] }}",
            self.list_id
        )
    }
}

const MAC_HEX: usize = 32;

impl TokenKey {
    /// A key for `list_id` signed with `secret`.
    pub fn new(secret: &[u8], list_id: &str) -> Self {
        Self {
            secret: secret.to_vec(),
            list_id: list_id.to_owned(),
        }
    }

    fn mac(&self, purpose: TokenPurpose, subscriber: i64) -> [u8; 16] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key");
        mac.update(purpose.label().as_bytes());
        mac.update(b"\0");
        mac.update(self.list_id.as_bytes());
        mac.update(b"\0");
        mac.update(subscriber.to_string().as_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    /// The token for `subscriber`.
    pub fn sign(&self, purpose: TokenPurpose, subscriber: i64) -> Token {
        Token(format!(
            "{subscriber}-{}",
            hex::encode(self.mac(purpose, subscriber))
        ))
    }

    /// The subscriber a token names, if it is genuine. The comparison takes the same
    /// time however many digits match.
    pub fn verify(&self, purpose: TokenPurpose, token: &str) -> Option<i64> {
        let (id, digits) = token.trim().split_once('-')?;
        if digits.len() != MAC_HEX || id.is_empty() || id.len() > 19 {
            return None;
        }
        let subscriber: i64 = id.parse().ok()?;
        let given = hex::decode(digits).ok()?;
        let expected = self.mac(purpose, subscriber);
        bool::from(expected.ct_eq(given.as_slice())).then_some(subscriber)
    }

    /// Finds and checks a token inside free text (a subject line, a Message-ID).
    pub fn find_in(&self, purpose: TokenPurpose, text: &str) -> Option<i64> {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .filter(|w| w.len() > MAC_HEX)
            .find_map(|w| {
                // A word may carry a prefix before the id (e.g. an issue date).
                let cut = w.len() - MAC_HEX - 1;
                let head = &w[..cut];
                let id_start = head
                    .rfind(|c: char| !c.is_ascii_digit())
                    .map_or(0, |i| i + 1);
                self.verify(purpose, &w[id_start..])
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TokenKey {
        TokenKey::new(b"0123456789abcdef0123", "news.example.org")
    }

    #[test]
    fn genuine_tokens_verify_and_name_their_subscriber() {
        let t = key().sign(TokenPurpose::Unsubscribe, 42);
        assert_eq!(
            key().verify(TokenPurpose::Unsubscribe, t.as_str()),
            Some(42)
        );
    }

    #[test]
    fn altered_or_foreign_tokens_do_not() {
        let k = key();
        let t = k.sign(TokenPurpose::Unsubscribe, 42).to_string();
        let other_id = t.replacen("42-", "43-", 1);
        assert_eq!(k.verify(TokenPurpose::Unsubscribe, &other_id), None);
        let mut flipped = t.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        assert_eq!(
            k.verify(
                TokenPurpose::Unsubscribe,
                std::str::from_utf8(&flipped).unwrap()
            ),
            None
        );
        assert_eq!(k.verify(TokenPurpose::Confirm, &t), None);
        let other_list = TokenKey::new(b"0123456789abcdef0123", "other.example.org");
        assert_eq!(other_list.verify(TokenPurpose::Unsubscribe, &t), None);
        assert_eq!(k.verify(TokenPurpose::Unsubscribe, "42-zz"), None);
        assert_eq!(k.verify(TokenPurpose::Unsubscribe, ""), None);
    }

    #[test]
    fn finds_tokens_in_subjects_and_message_ids() {
        let k = key();
        let t = k.sign(TokenPurpose::Unsubscribe, 7);
        assert_eq!(
            k.find_in(TokenPurpose::Unsubscribe, &format!("Re: UNSUBSCRIBE {t}")),
            Some(7)
        );
        assert_eq!(
            k.find_in(
                TokenPurpose::Unsubscribe,
                &format!("<2021-09-01.{t}@example.org>")
            ),
            Some(7)
        );
        assert_eq!(
            k.find_in(TokenPurpose::Unsubscribe, "UNSUBSCRIBE please"),
            None
        );
    }
}
