//! Schedule: when each issue goes out, when its proof goes to the editors, and what
//! to do about slots that were missed or had to be held.
//!
//! The timing rules are plain functions of a clock passed in ([`Timing`]), so tests
//! move time by hand and never sleep. The [`Scheduler`] carries the plan out: its step
//! and loop live here, its hands (the folder, the transport) are a [`Newsroom`] that
//! `app` wires.

mod plan;
mod timing;
mod worker;

pub use plan::{Action, Plan, SlotRecord, SlotState, plan};
pub use timing::Timing;
pub use worker::{Newsroom, NewsroomError, ScheduleError, Scheduler, StepReport};
