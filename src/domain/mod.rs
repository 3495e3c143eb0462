//! Domain types: raw input becomes one of these at the edge, and nowhere else.
//!
//! Each type has a private field and a `parse` constructor, so a value that exists
//! has already been checked.

mod clock;
mod dkim;
mod email;
mod header_text;
mod issue_id;
mod process;
mod send_schedule;
mod slot;
mod token;

pub use clock::{Clock, SystemClock};
pub use dkim::{
    DkimError, DkimSigner, OVERSIGNED_HEADERS, SIGNED_HEADERS, SharedBody, body_hash, body_start,
};
pub use email::{EmailError, SubscriberEmail};
pub use header_text::{HeaderText, HeaderTextError};
pub use issue_id::{IssueId, IssueIdError};
pub use process::{process_is_gone, process_name};
pub use send_schedule::SendSchedule;
pub use slot::{SlotRecord, SlotState};
pub use token::{Token, TokenKey, TokenPurpose};

/// True for link targets that are safe in an email: http(s) and mailto only.
/// Anything else (`javascript:`, `data:`, relative paths) is shown as text instead.
pub fn is_safe_link(dest: &str) -> bool {
    let lower = dest.trim().to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://") || lower.starts_with("mailto:"))
        && !dest.contains(|c: char| c.is_control() || c.is_whitespace())
}
