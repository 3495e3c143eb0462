//! A value that must never reach a log line.

use std::fmt;

/// A password or key. `Debug` and `Display` print `[redacted]`; `expose` is the one way in.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Secrets shorter than this are refused wherever links leave the machine.
pub const MIN_SECRET_BYTES: usize = 32;

/// Words that mark a value as a placeholder from a sample file, not a key.
const PLACEHOLDER_MARKS: [&str; 8] = [
    "change-me",
    "changeme",
    "change_me",
    "not-a-secret",
    "notasecret",
    "placeholder",
    "replace-me",
    "your-secret",
];

/// Why a key is too weak to sign links that leave the machine, or `None` for a good
/// one. A good key is at least [`MIN_SECRET_BYTES`] long, is no known placeholder, and
/// varies enough: its characters carry, by their frequencies, at least 128 bits (what
/// `openssl rand -hex 32` gives, about 256, comfortably passes).
pub fn weakness(secret: &Secret) -> Option<String> {
    let value = secret.expose();
    if let Some(mark) = placeholder_mark(value) {
        return Some(format!("is a placeholder (it contains \"{mark}\")"));
    }
    if value.len() < MIN_SECRET_BYTES {
        return Some(format!(
            "is {} bytes long; it must be at least {MIN_SECRET_BYTES}",
            value.len()
        ));
    }
    let bits = entropy_bits(value.as_bytes());
    if bits < 128.0 {
        return Some(format!(
            "is too regular to be guessed only with difficulty (about {bits:.0} bits; at least 128 wanted)"
        ));
    }
    None
}

/// The placeholder word in `value`, if it has one.
pub(super) fn placeholder_mark(value: &str) -> Option<&'static str> {
    let lower = value.to_ascii_lowercase();
    PLACEHOLDER_MARKS
        .iter()
        .find(|m| lower.contains(*m))
        .copied()
}

/// The length times the Shannon entropy of the byte frequencies: a rough upper bound
/// on the bits a value carries, low for repeated or patterned text.
fn entropy_bits(bytes: &[u8]) -> f64 {
    let mut counts = [0usize; 256];
    for &b in bytes {
        counts[usize::from(b)] += 1;
    }
    let n = bytes.len() as f64;
    let per_byte: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum();
    per_byte * n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_secrets_are_named_and_random_ones_pass() {
        let weak = |s: &str| weakness(&Secret::new(s));
        assert!(weak("change-me-this-is-not-a-secret").is_some());
        assert!(weak("CHANGEME-0123456789abcdef0123456789abcdef").is_some());
        assert!(weak("0f3c9a71be24d58e").is_some());
        assert!(weak(&"a".repeat(64)).is_some());
        assert!(weak(&"ab".repeat(40)).is_some());
        assert!(weak("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08").is_none());
        assert!(weak("q0G8bWm3Yc5yKz2n1Lh7vXo4TtR9sDfEaPjNuIiBkQw=").is_none());
    }
}
