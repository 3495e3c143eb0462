//! A subscriber's email address.

use std::fmt;

/// Why an address was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EmailError {
    #[error("address is empty")]
    Empty,
    #[error("address is longer than 254 characters")]
    TooLong,
    #[error("address must contain exactly one '@' with text on both sides")]
    Shape,
    #[error("address contains a space, a control character or one of ()<>,;:\\\"[]")]
    ForbiddenCharacter,
    #[error("the part before '@' is longer than 64 characters")]
    LocalTooLong,
    #[error("the domain '{0}' is not a valid host name")]
    Domain(String),
}

/// An address a newsletter can be sent to.
///
/// One mailbox, one subscriber: two addresses are the same when they are equal with
/// letters A–Z compared without case, over the whole address ([`SubscriberEmail::key`]).
/// RFC 5321 would let a server tell `Ada@` from `ada@`, but no large mailbox provider
/// does, and Mailman and listmonk compare the same way. The spelling first given is kept
/// for sending: the local part keeps its case, the domain is lower-cased.
///
/// Equality, hashing and ordering go by the key, so no caller can compare spellings by
/// mistake. The store's unique index is `lower(email)`, which is this key (SQLite's
/// `lower` folds A–Z only, as [`str::to_ascii_lowercase`] does).
#[derive(Debug, Clone)]
pub struct SubscriberEmail(String);

impl SubscriberEmail {
    /// Parses and normalises an address typed by a person or read from a file.
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(EmailError::Empty);
        }
        if raw.len() > 254 {
            return Err(EmailError::TooLong);
        }
        if raw.chars().any(|c| {
            c.is_whitespace()
                || c.is_control()
                || matches!(
                    c,
                    '(' | ')' | '<' | '>' | ',' | ';' | ':' | '\\' | '"' | '[' | ']'
                )
        }) {
            return Err(EmailError::ForbiddenCharacter);
        }
        let (local, domain) = raw.rsplit_once('@').ok_or(EmailError::Shape)?;
        if local.is_empty() || domain.is_empty() || local.contains('@') {
            return Err(EmailError::Shape);
        }
        if local.len() > 64 {
            return Err(EmailError::LocalTooLong);
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(EmailError::Shape);
        }
        // The address as stored: the local part as given, the domain lower-cased.
        let mut address = String::with_capacity(raw.len());
        address.push_str(local);
        address.push('@');
        address.push_str(domain);
        address[local.len() + 1..].make_ascii_lowercase();
        let domain = &address[local.len() + 1..];
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii())
        };
        if !domain.contains('.') && domain != "localhost" || !domain.split('.').all(label_ok) {
            return Err(EmailError::Domain(domain.to_owned()));
        }
        Ok(Self(address))
    }

    /// The address as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What two spellings of one mailbox have in common: the whole address with A–Z
    /// lower-cased. The store looks subscribers up by it.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }

    /// The part after the '@', lower-cased.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or_default()
    }
}

impl PartialEq for SubscriberEmail {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

impl Eq for SubscriberEmail {}

impl std::hash::Hash for SubscriberEmail {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        for b in self.0.bytes() {
            state.write_u8(b.to_ascii_lowercase());
        }
    }
}

impl PartialOrd for SubscriberEmail {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SubscriberEmail {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let a = self.0.bytes().map(|b| b.to_ascii_lowercase());
        a.cmp(other.0.bytes().map(|b| b.to_ascii_lowercase()))
    }
}

impl fmt::Display for SubscriberEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for SubscriberEmail {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_is_lower_cased_local_part_kept() {
        let e = SubscriberEmail::parse("  Ada.Lovelace@Example.ORG ").unwrap();
        assert_eq!(e.as_str(), "Ada.Lovelace@example.org");
        assert_eq!(e.domain(), "example.org");
    }

    #[test]
    fn one_mailbox_whatever_the_case_first_spelling_kept() {
        let first = SubscriberEmail::parse("Ada.Lovelace@Example.ORG").unwrap();
        let second = SubscriberEmail::parse("ADA.LOVELACE@example.org").unwrap();
        assert_eq!(first, second);
        assert_eq!(first.key(), "ada.lovelace@example.org");
        assert_eq!(first.key(), second.key());
        assert_eq!(first.as_str(), "Ada.Lovelace@example.org");
        let set: std::collections::HashSet<_> = [first, second].into_iter().collect();
        assert_eq!(set.len(), 1);
        assert_ne!(
            SubscriberEmail::parse("ada@example.org").unwrap(),
            SubscriberEmail::parse("ada2@example.org").unwrap()
        );
    }

    #[test]
    fn rejects_malformed_addresses() {
        for (raw, want) in [
            ("", EmailError::Empty),
            ("no-at-sign", EmailError::Shape),
            ("@example.org", EmailError::Shape),
            ("a@", EmailError::Shape),
            ("a b@example.org", EmailError::ForbiddenCharacter),
            (
                "a@example.org\r\nBcc: x@y.z",
                EmailError::ForbiddenCharacter,
            ),
            ("<a@example.org>", EmailError::ForbiddenCharacter),
            ("a..b@example.org", EmailError::Shape),
            ("a@nodot", EmailError::Domain("nodot".into())),
            ("a@-bad.org", EmailError::Domain("-bad.org".into())),
        ] {
            assert_eq!(SubscriberEmail::parse(raw), Err(want), "input {raw:?}");
        }
        let long_local = format!("{}@example.org", "x".repeat(65));
        assert_eq!(
            SubscriberEmail::parse(&long_local),
            Err(EmailError::LocalTooLong)
        );
    }
}
