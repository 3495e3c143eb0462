//! Schedule: when each issue goes out, when its proof goes to the editors, and what
//! to do about slots that were missed or had to be held.
//!
//! The timing rules are plain functions of a clock passed in ([`Timing`]), so tests
//! move time by hand and never sleep.

mod plan;
mod timing;

pub use plan::{Action, Plan, SlotRecord, SlotState, plan};
pub use timing::Timing;
