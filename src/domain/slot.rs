//! What is remembered about one scheduled slot.

use chrono::{DateTime, Utc};

/// What the store remembers about one slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRecord {
    pub at: DateTime<Utc>,
    pub proof_sent: bool,
    pub state: SlotState,
}

/// Where a slot stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    /// Nothing has happened at or after the slot time yet (a proof may have gone out).
    Open,
    /// The issue could not go out; re-check at `next_check`.
    Held { next_check: DateTime<Utc> },
    /// A daemon claimed the slot and is freezing its issue. A claim left like this by a
    /// crash is finished or closed before any later slot is composed.
    Claimed,
    /// Final: the issue was frozen, its files archived, and it is being delivered.
    Sent,
    /// Final: the slot's date already had an issue (sent by `send-now`, or by an earlier
    /// slot that day); nothing more was sent.
    Served,
    /// Final: the slot's files went out with another issue, or a later slot took over.
    Superseded,
    /// Final: held until the hold window ended, or a claim interrupted by a crash that
    /// could not be finished; nothing was sent.
    GivenUp,
    /// Final: the daemon was not running in time.
    Missed,
}

impl SlotState {
    /// The state's name in the store and in `gazette status`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Held { .. } => "held",
            Self::Claimed => "claimed",
            Self::Sent => "sent",
            Self::Served => "served",
            Self::Superseded => "superseded",
            Self::GivenUp => "given_up",
            Self::Missed => "missed",
        }
    }

    /// True when nothing more will happen to the slot.
    pub fn is_final(&self) -> bool {
        !matches!(self, Self::Open | Self::Held { .. } | Self::Claimed)
    }
}
