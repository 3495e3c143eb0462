//! What the scheduler should do now, decided from the clock and what the store
//! remembers about each slot. A plain function: the daemon carries the actions out.

use super::Timing;
pub use crate::domain::{SlotRecord, SlotState};
use chrono::{DateTime, Utc};

/// One thing to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send the proof of the issue for this slot to the editors.
    SendProof(DateTime<Utc>),
    /// Compose the issue for this slot and send it, or hold it if it has errors.
    Compose(DateTime<Utc>),
    /// The hold window of this held slot is over: give up and tell the editors.
    GiveUp(DateTime<Utc>),
    /// This slot can no longer be sent: record it and tell the editors.
    ReportMissed(DateTime<Utc>),
    /// This slot was held, or not acted on, and a later one (held, or of the same day)
    /// composes the same folder and tells the editors what it finds: record it, quietly.
    Supersede(DateTime<Utc>),
}

/// The actions due at `now`, and when to look again if nothing happens meanwhile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub wake_at: Option<DateTime<Utc>>,
}

/// Decides what is due at `now`. `records` are the store's records for slots from
/// `now - timing.lookback()` onwards (others are ignored). `since` is when the daemon
/// began keeping this schedule on this store: a slot before it (by more than the minute
/// a slot is on time) that nobody acted on was never the daemon's to send, so it is
/// neither caught up nor reported missed.
pub fn plan(
    timing: &Timing,
    now: DateTime<Utc>,
    records: &[SlotRecord],
    since: DateTime<Utc>,
) -> Plan {
    let record = |at: DateTime<Utc>| records.iter().find(|r| r.at == at);
    let mut actions = Vec::new();
    let mut wake: Vec<DateTime<Utc>> = Vec::new();

    let horizon = since - Timing::ON_TIME;
    let past: Vec<DateTime<Utc>> = timing
        .slots_between(now - timing.lookback(), now)
        .into_iter()
        .filter(|at| *at >= horizon || record(*at).is_some_and(|r| r.state != SlotState::Open))
        .collect();
    let latest = past.last().copied();
    // Of the slots nobody ever acted on before the latest, only the most recent is
    // reported: after an outage under a frequent schedule, one notice says it, not one
    // per slot.
    // Slots older than one the store already knows were looked at (or deliberately
    // passed over) by an earlier step, so they are not reported again later.
    let newest_known = records.iter().map(|r| r.at).max();
    let last_unseen_superseded = past
        .iter()
        .rev()
        .skip(1)
        .find(|at| record(**at).is_none())
        .copied()
        .filter(|at| newest_known.is_none_or(|known| *at > known));
    for &slot in &past {
        let state = record(slot).map_or(SlotState::Open, |r| r.state);
        match state {
            // Claimed: being frozen, or left by a crash and settled before each plan.
            SlotState::Claimed
            | SlotState::Sent
            | SlotState::Served
            | SlotState::Superseded
            | SlotState::GivenUp
            | SlotState::Missed => {}
            _ if Some(slot) != latest
                && record(slot).is_none()
                && Some(slot) != last_unseen_superseded => {}
            // A later slot has come: this one's issue will never be composed. If it was
            // held, or the later slot is for the same day (the same issue), the later
            // slot composes the same folder and tells the editors what it finds.
            SlotState::Held { .. } if Some(slot) != latest => actions.push(Action::Supersede(slot)),
            _ if latest
                .is_some_and(|l| l != slot && timing.issue_id(l) == timing.issue_id(slot)) =>
            {
                actions.push(Action::Supersede(slot))
            }
            _ if Some(slot) != latest => actions.push(Action::ReportMissed(slot)),
            SlotState::Open if timing.may_catch_up(slot, now) => {
                actions.push(Action::Compose(slot))
            }
            SlotState::Open => actions.push(Action::ReportMissed(slot)),
            SlotState::Held { next_check } => {
                let until = timing.hold_until(slot);
                if now >= until {
                    actions.push(Action::GiveUp(slot));
                } else if now >= next_check {
                    actions.push(Action::Compose(slot));
                } else {
                    wake.push(next_check.min(until));
                }
            }
        }
    }

    if let Some(next) = timing.next_slot(now) {
        wake.push(next);
        let proof_at = timing.proof_at(next);
        let proof_sent = record(next).is_some_and(|r| r.proof_sent);
        if !proof_sent && !timing.proof_lead.is_zero() {
            if now >= proof_at {
                actions.push(Action::SendProof(next));
            } else {
                wake.push(proof_at);
            }
        }
    }
    Plan {
        actions,
        wake_at: wake.into_iter().min(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SendSchedule;
    use chrono::TimeZone;
    use std::time::Duration;

    fn timing() -> Timing {
        Timing {
            send: SendSchedule::parse("0 10 1 * *").unwrap(),
            timezone: chrono_tz::Europe::London,
            proof_lead: Duration::from_secs(24 * 3600),
            hold_window: Duration::from_secs(48 * 3600),
            hold_recheck: Duration::from_secs(600),
            catch_up: Duration::from_secs(24 * 3600),
        }
    }

    fn utc(m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, m, d, h, min, 0).unwrap()
    }

    /// A daemon that has kept this schedule for years.
    fn long_ago() -> DateTime<Utc> {
        utc(1, 1, 0, 0) - chrono::Duration::days(365)
    }

    // 1 December 2026, 10:00 London = 10:00 UTC.
    fn slot() -> DateTime<Utc> {
        utc(12, 1, 10, 0)
    }

    #[test]
    fn nothing_to_do_before_the_proof_and_wake_at_proof_time() {
        let p = plan(&timing(), utc(11, 29, 12, 0), &[], long_ago());
        assert_eq!(p.actions, vec![]);
        assert_eq!(p.wake_at, Some(utc(11, 30, 10, 0)));
    }

    #[test]
    fn proof_goes_out_proof_lead_before_the_slot_once() {
        let t = timing();
        assert_eq!(
            plan(&t, utc(11, 30, 9, 59), &[], long_ago()).actions,
            vec![]
        );
        assert_eq!(
            plan(&t, utc(11, 30, 10, 0), &[], long_ago()).actions,
            vec![Action::SendProof(slot())]
        );
        let sent = SlotRecord {
            at: slot(),
            proof_sent: true,
            state: SlotState::Open,
        };
        let p = plan(&t, utc(11, 30, 10, 1), &[sent], long_ago());
        assert_eq!(p.actions, vec![]);
        assert_eq!(p.wake_at, Some(slot()));
    }

    #[test]
    fn the_slot_is_composed_at_its_time_and_not_again_once_claimed() {
        let t = timing();
        assert_eq!(
            plan(&t, slot(), &[], long_ago()).actions,
            vec![Action::Compose(slot())]
        );
        let claimed = SlotRecord {
            at: slot(),
            proof_sent: true,
            state: SlotState::Claimed,
        };
        let p = plan(&t, utc(12, 1, 10, 5), &[claimed], long_ago());
        assert_eq!(p.actions, vec![]);
        assert_eq!(
            p.wake_at,
            Some(Utc.with_ymd_and_hms(2026, 12, 31, 10, 0, 0).unwrap())
        );
    }

    #[test]
    fn a_held_slot_is_rechecked_then_given_up() {
        let t = timing();
        let held = |next: DateTime<Utc>| SlotRecord {
            at: slot(),
            proof_sent: true,
            state: SlotState::Held { next_check: next },
        };
        let p = plan(
            &t,
            utc(12, 1, 10, 5),
            &[held(utc(12, 1, 10, 10))],
            long_ago(),
        );
        assert_eq!(p.actions, vec![]);
        assert_eq!(p.wake_at, Some(utc(12, 1, 10, 10)));
        let p = plan(
            &t,
            utc(12, 1, 10, 10),
            &[held(utc(12, 1, 10, 10))],
            long_ago(),
        );
        assert_eq!(p.actions, vec![Action::Compose(slot())]);
        let p = plan(
            &t,
            utc(12, 3, 10, 0),
            &[held(utc(12, 3, 10, 5))],
            long_ago(),
        );
        assert_eq!(p.actions, vec![Action::GiveUp(slot())]);
    }

    #[test]
    fn missed_slots_are_caught_up_inside_the_window_and_reported_outside() {
        let t = timing();
        assert_eq!(
            plan(&t, utc(12, 2, 9, 0), &[], long_ago()).actions,
            vec![Action::Compose(slot())]
        );
        assert_eq!(
            plan(&t, utc(12, 2, 11, 0), &[], long_ago()).actions,
            vec![Action::ReportMissed(slot())]
        );
        let missed = SlotRecord {
            at: slot(),
            proof_sent: false,
            state: SlotState::Missed,
        };
        assert_eq!(
            plan(&t, utc(12, 2, 11, 0), &[missed], long_ago()).actions,
            vec![]
        );
    }

    #[test]
    fn an_outage_under_a_frequent_schedule_gives_one_report_not_thousands() {
        let mut t = timing();
        t.send = SendSchedule::parse("* * * * *").unwrap();
        t.proof_lead = Duration::ZERO;
        let now = utc(12, 5, 12, 0) + chrono::Duration::seconds(30);
        let p = plan(&t, now, &[], long_ago());
        // The slot before is the same day's issue, which the latest slot composes: it is
        // superseded, not missed.
        assert_eq!(
            p.actions,
            vec![
                Action::Supersede(utc(12, 5, 11, 59)),
                Action::Compose(utc(12, 5, 12, 0))
            ]
        );
        // Just after midnight the slot before is the previous day's: missed.
        let p = plan(&t, utc(12, 6, 0, 0), &[], long_ago());
        assert_eq!(
            p.actions,
            vec![
                Action::ReportMissed(utc(12, 5, 23, 59)),
                Action::Compose(utc(12, 6, 0, 0))
            ]
        );
    }

    #[test]
    fn a_missed_slot_is_reported_once_not_again_at_every_later_step() {
        let mut t = timing();
        t.send = SendSchedule::parse("0 */6 * * *").unwrap();
        t.proof_lead = Duration::ZERO;
        // Started at midnight: 18:00 the day before is reported, midnight composed.
        let first = plan(&t, utc(12, 2, 0, 0), &[], long_ago());
        assert_eq!(
            first.actions,
            vec![
                Action::ReportMissed(utc(12, 1, 18, 0)),
                Action::Compose(utc(12, 2, 0, 0))
            ]
        );
        let records = [
            SlotRecord {
                at: utc(12, 1, 18, 0),
                proof_sent: false,
                state: SlotState::Missed,
            },
            SlotRecord {
                at: utc(12, 2, 0, 0),
                proof_sent: false,
                state: SlotState::Claimed,
            },
        ];
        // At 06:00 nothing older is dug up.
        assert_eq!(
            plan(&t, utc(12, 2, 6, 0), &records, long_ago()).actions,
            vec![Action::Compose(utc(12, 2, 6, 0))]
        );
    }

    #[test]
    fn an_earlier_unhandled_slot_is_superseded_by_a_later_one() {
        let mut t = timing();
        t.send = SendSchedule::parse("0 10 * * *").unwrap();
        t.proof_lead = Duration::ZERO;
        let p = plan(&t, utc(12, 2, 10, 30), &[], long_ago());
        assert_eq!(
            p.actions,
            vec![
                Action::ReportMissed(slot()),
                Action::Compose(utc(12, 2, 10, 0))
            ]
        );
    }
}

#[cfg(test)]
mod since_tests {
    use super::*;
    use crate::domain::SendSchedule;
    use chrono::TimeZone;
    use std::time::Duration;

    fn daily() -> Timing {
        Timing {
            send: SendSchedule::parse("0 10 * * *").unwrap(),
            timezone: chrono_tz::UTC,
            proof_lead: Duration::ZERO,
            hold_window: Duration::from_secs(48 * 3600),
            hold_recheck: Duration::from_secs(600),
            catch_up: Duration::from_secs(24 * 3600),
        }
    }

    fn utc(d: u32, h: u32, min: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, d, h, min, s).unwrap()
    }

    #[test]
    fn slots_before_the_schedule_was_first_kept_are_neither_caught_up_nor_missed() {
        // First started at 09:00 on the 2nd: the 1st's slot is inside the catch-up
        // window, but it was never this daemon's.
        let p = plan(&daily(), utc(2, 9, 0, 0), &[], utc(2, 9, 0, 0));
        assert_eq!(p.actions, vec![]);
        assert_eq!(p.wake_at, Some(utc(2, 10, 0, 0)));
        // Started 20 s after a slot: that slot is on time.
        let p = plan(&daily(), utc(2, 10, 0, 20), &[], utc(2, 10, 0, 20));
        assert_eq!(p.actions, vec![Action::Compose(utc(2, 10, 0, 0))]);
        // Kept since the day before: the 1st's slot is caught up as before.
        let p = plan(&daily(), utc(2, 9, 0, 0), &[], utc(1, 8, 0, 0));
        assert_eq!(p.actions, vec![Action::Compose(utc(1, 10, 0, 0))]);
    }
}
