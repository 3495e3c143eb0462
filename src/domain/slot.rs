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
    /// A daemon claimed the slot: the issue is frozen (or being frozen) and delivered.
    Claimed,
    /// Held until the hold window ended; nothing was sent.
    GivenUp,
    /// The daemon was not running in time, or a later slot superseded it.
    Missed,
}
