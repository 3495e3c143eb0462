//! Text that ends up in a mail header: names and subjects.

use std::fmt;

/// Why a header value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderTextError {
    #[error("contains a line break (CR or LF), which would let it forge mail headers")]
    LineBreak,
    #[error("contains a control character")]
    Control,
    #[error("is longer than {0} characters")]
    TooLong(usize),
}

/// A single-line value safe to place in a header (a display name, a subject).
///
/// CR and LF are refused rather than stripped: a name with a line break in it is
/// either a mistake or an attack, and silently changing it hides both.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HeaderText(String);

impl HeaderText {
    /// Longest value accepted; longer names are almost certainly not names.
    pub const MAX_CHARS: usize = 200;

    /// Checks `raw` (trimmed) for line breaks, control characters and length.
    pub fn parse(raw: &str) -> Result<Self, HeaderTextError> {
        let raw = raw.trim();
        if raw.contains(['\r', '\n']) {
            return Err(HeaderTextError::LineBreak);
        }
        if raw.chars().any(char::is_control) {
            return Err(HeaderTextError::Control);
        }
        if raw.chars().count() > Self::MAX_CHARS {
            return Err(HeaderTextError::TooLong(Self::MAX_CHARS));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The value as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HeaderText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_line_breaks_and_controls() {
        assert_eq!(
            HeaderText::parse("Ada\r\nBcc: x@y"),
            Err(HeaderTextError::LineBreak)
        );
        assert_eq!(
            HeaderText::parse("Ada\nLovelace"),
            Err(HeaderTextError::LineBreak)
        );
        assert_eq!(HeaderText::parse("Ada\u{7}"), Err(HeaderTextError::Control));
        assert_eq!(
            HeaderText::parse(" Ada Lovelace ").unwrap().as_str(),
            "Ada Lovelace"
        );
        assert!(HeaderText::parse(&"x".repeat(201)).is_err());
    }
}
