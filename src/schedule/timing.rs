//! When things happen: slots, proofs, holds and catch-up, as plain functions of the
//! clock. Nothing here sleeps or reads the time; the caller passes `now` in.

use crate::domain::{IssueId, SendSchedule};
use crate::settings::Schedule;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use std::time::Duration;

/// The schedule's timing rules, from `[schedule]`.
#[derive(Debug, Clone)]
pub struct Timing {
    pub send: SendSchedule,
    pub timezone: Tz,
    pub proof_lead: Duration,
    pub hold_window: Duration,
    pub hold_recheck: Duration,
    pub catch_up: Duration,
}

impl From<&Schedule> for Timing {
    fn from(s: &Schedule) -> Self {
        Self {
            send: s.send.clone(),
            timezone: s.timezone,
            proof_lead: s.proof_lead,
            hold_window: s.hold_window,
            hold_recheck: s.hold_recheck,
            catch_up: s.catch_up,
        }
    }
}

fn chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Looking back further than this many slots is never useful (a schedule firing every
/// second with a day-long window would otherwise be walked slot by slot).
const MAX_SLOTS_WALKED: usize = 100_000;

impl Timing {
    /// How late a step may look at a slot and still count as on time: the scheduler wakes
    /// at the slot, and a step takes a moment.
    pub const ON_TIME: chrono::Duration = chrono::Duration::minutes(1);

    /// The first slot strictly after `after`.
    pub fn next_slot(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.timezone);
        self.send
            .after(&local)
            .next()
            .map(|t| t.with_timezone(&Utc))
    }

    /// `at` as people read it in the schedule's time zone ("Wednesday 1 September 2021
    /// at 10:00 BST").
    pub fn local(&self, at: DateTime<Utc>) -> String {
        at.with_timezone(&self.timezone)
            .format("%A %-d %B %Y at %H:%M %Z")
            .to_string()
    }

    /// The issue id of a slot: its date in the schedule's time zone.
    pub fn issue_id(&self, slot: DateTime<Utc>) -> IssueId {
        IssueId::new(slot.with_timezone(&self.timezone).date_naive())
    }

    /// Slots in `(from, to]`, oldest first.
    pub fn slots_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let local = from.with_timezone(&self.timezone);
        self.send
            .after(&local)
            .map(|t| t.with_timezone(&Utc))
            .take_while(|t| *t <= to)
            .take(MAX_SLOTS_WALKED)
            .collect()
    }

    /// The slots whose issue is `issue` (the slots on that date in the schedule's time
    /// zone), oldest first.
    pub fn slots_on(&self, issue: IssueId) -> Vec<DateTime<Utc>> {
        // A day in any zone lies within the UTC days either side of it.
        let date = issue.date();
        let from = (date - chrono::Days::new(2))
            .and_time(chrono::NaiveTime::MIN)
            .and_utc();
        let to = (date + chrono::Days::new(2))
            .and_time(chrono::NaiveTime::MIN)
            .and_utc();
        self.slots_between(from, to)
            .into_iter()
            .filter(|at| self.issue_id(*at) == issue)
            .collect()
    }

    /// When the proof for `slot` is due.
    pub fn proof_at(&self, slot: DateTime<Utc>) -> DateTime<Utc> {
        slot - chrono(self.proof_lead)
    }

    /// The end of the hold window for `slot`: after this a held issue is given up.
    pub fn hold_until(&self, slot: DateTime<Utc>) -> DateTime<Utc> {
        slot + chrono(self.hold_window)
    }

    /// How far back the scheduler looks at slots: the catch-up window, or the hold window
    /// if that is longer (a held slot keeps being re-checked through it), plus one
    /// re-check interval so a hold whose window has just ended is still seen and given up.
    pub fn lookback(&self) -> chrono::Duration {
        chrono(self.catch_up.max(self.hold_window) + self.hold_recheck)
    }

    /// The next re-check of a held slot after `now`.
    pub fn recheck_after(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + chrono(self.hold_recheck)
    }

    /// True if a slot never looked at until `now` may still be sent (catch-up). A slot
    /// less than a minute old is always on time, whatever `catch_up` says: the scheduler
    /// wakes at the slot, and a step takes a moment.
    pub fn may_catch_up(&self, slot: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        now - slot <= chrono(self.catch_up).max(Self::ON_TIME)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn timing(expr: &str) -> Timing {
        Timing {
            send: SendSchedule::parse(expr).unwrap(),
            timezone: chrono_tz::Europe::London,
            proof_lead: Duration::from_secs(24 * 3600),
            hold_window: Duration::from_secs(48 * 3600),
            hold_recheck: Duration::from_secs(600),
            catch_up: Duration::from_secs(24 * 3600),
        }
    }

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    #[test]
    fn slots_follow_local_time_across_daylight_saving_changes() {
        // 10:00 in London is 09:00 UTC in summer time and 10:00 UTC after 25 October 2026.
        let t = timing("0 10 * * *");
        let slots = t.slots_between(utc(2026, 10, 23, 12, 0), utc(2026, 10, 27, 12, 0));
        assert_eq!(
            slots,
            vec![
                utc(2026, 10, 24, 9, 0),
                utc(2026, 10, 25, 10, 0),
                utc(2026, 10, 26, 10, 0),
                utc(2026, 10, 27, 10, 0)
            ]
        );
        // And back into summer time in March.
        let slots = t.slots_between(utc(2027, 3, 27, 12, 0), utc(2027, 3, 29, 12, 0));
        assert_eq!(slots, vec![utc(2027, 3, 28, 9, 0), utc(2027, 3, 29, 9, 0)]);
    }

    #[test]
    fn issue_id_is_the_local_date() {
        // 00:30 on 1 July in London is still 30 June in UTC.
        let t = timing("30 0 1 * *");
        let slot = t.next_slot(utc(2026, 6, 15, 0, 0)).unwrap();
        assert_eq!(slot, utc(2026, 6, 30, 23, 30));
        assert_eq!(t.issue_id(slot).to_string(), "2026-07-01");
    }

    #[test]
    fn the_slots_of_an_issue_are_those_on_its_local_date() {
        let t = timing("0 */8 * * *");
        let day = IssueId::parse("2026-07-01").unwrap();
        // London is UTC+1 in July: 00:00, 08:00 and 16:00 local.
        assert_eq!(
            t.slots_on(day),
            vec![
                utc(2026, 6, 30, 23, 0),
                utc(2026, 7, 1, 7, 0),
                utc(2026, 7, 1, 15, 0)
            ]
        );
    }

    #[test]
    fn proof_hold_and_catch_up_windows() {
        let t = timing("0 10 1 * *");
        let slot = utc(2026, 12, 1, 10, 0);
        assert_eq!(t.proof_at(slot), utc(2026, 11, 30, 10, 0));
        assert_eq!(t.hold_until(slot), utc(2026, 12, 3, 10, 0));
        assert!(t.may_catch_up(slot, utc(2026, 12, 2, 9, 0)));
        assert!(!t.may_catch_up(slot, utc(2026, 12, 2, 11, 0)));
        assert_eq!(t.lookback(), chrono::Duration::minutes(48 * 60 + 10));
    }
}
