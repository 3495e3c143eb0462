//! The identity of one issue: the date of the slot it was composed for.

use chrono::NaiveDate;
use std::fmt;
use std::str::FromStr;

/// Why an issue id was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("'{0}' is not a date of the form YYYY-MM-DD")]
pub struct IssueIdError(pub String);

/// An issue's id, `YYYY-MM-DD`. One scheduled slot gives one id, so a slot is sent once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IssueId(NaiveDate);

impl IssueId {
    /// The id of the issue for `date`.
    pub fn new(date: NaiveDate) -> Self {
        Self(date)
    }

    /// Parses `YYYY-MM-DD`.
    pub fn parse(raw: &str) -> Result<Self, IssueIdError> {
        NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d")
            .map(Self)
            .map_err(|_| IssueIdError(raw.to_owned()))
    }

    /// The slot's date.
    pub fn date(&self) -> NaiveDate {
        self.0
    }
}

impl FromStr for IssueId {
    type Err = IssueIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for IssueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let id = IssueId::parse("2021-09-01").unwrap();
        assert_eq!(id.to_string(), "2021-09-01");
        assert!(IssueId::parse("2021-13-01").is_err());
        assert!(IssueId::parse("September").is_err());
    }
}
