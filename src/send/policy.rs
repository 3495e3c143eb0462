//! The failure policy, as plain functions of an attempt's result and the time.
//!
//! - Accepted: sent.
//! - 5xx to the recipient's RCPT TO: failed, and one more bounce toward suppression.
//! - Throttling replies: tried again shortly, without counting as an attempt; the worker
//!   slows down (see [`super::worker`]).
//! - 4xx to RCPT TO: retrying, after `retry_initial` doubling per attempt up to
//!   `retry_max_interval`, until `retry_for` has passed since the first attempt; then
//!   failed (not a bounce).
//! - No answer after the message was sent: unknown, tried again on the same schedule.
//! - Relay and local faults: nothing is recorded on the row (see [`RetryPolicy::decide`]);
//!   the worker backs off the relay as a whole.

use super::SendError;
use crate::settings::Delivery;
use crate::store::{DeliveryUpdate, DueDelivery};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// The retry policy from `[delivery]`.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub retry_initial: Duration,
    pub retry_max_interval: Duration,
    pub retry_for: Duration,
    pub bounce_threshold: u32,
}

impl From<&Delivery> for RetryPolicy {
    fn from(d: &Delivery) -> Self {
        Self {
            retry_initial: d.retry_initial,
            retry_max_interval: d.retry_max_interval,
            retry_for: d.retry_for,
            bounce_threshold: d.bounce_threshold,
        }
    }
}

fn chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl RetryPolicy {
    /// The wait after the `attempt`-th failed attempt (1 for the first): `retry_initial`,
    /// doubling, never more than `retry_max_interval`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30);
        self.retry_initial
            .saturating_mul(1u32 << doublings)
            .min(self.retry_max_interval)
    }

    /// How long a throttled row waits: the server wants us slower, not gone.
    pub fn throttle_delay(&self) -> Duration {
        self.retry_initial.min(Duration::from_secs(60))
    }

    /// What to record for `row` after an attempt at `now` ended with `result`; `None`
    /// for a relay or local fault, which is not this recipient's: the row stays as it was.
    pub fn decide(
        &self,
        row: &DueDelivery,
        result: &Result<(), SendError>,
        now: DateTime<Utc>,
    ) -> Option<DeliveryUpdate> {
        let error = match result {
            Ok(()) => return Some(DeliveryUpdate::Sent { at: now }),
            Err(e) if e.is_system() => return None,
            Err(e) => e,
        };
        Some(self.decide_failure(row, error, now))
    }

    fn decide_failure(
        &self,
        row: &DueDelivery,
        error: &SendError,
        now: DateTime<Utc>,
    ) -> DeliveryUpdate {
        if error.is_permanent() {
            return DeliveryUpdate::Failed {
                at: now,
                error: error.to_string(),
                bounce_threshold: Some(self.bounce_threshold),
            };
        }
        let first = row.first_attempt_at.unwrap_or(now);
        if now - first >= chrono(self.retry_for) {
            return DeliveryUpdate::Failed {
                at: now,
                error: format!(
                    "gave up after {} attempts over {}: {error}",
                    row.attempts + 1,
                    humanize(self.retry_for)
                ),
                bounce_threshold: None,
            };
        }
        if let SendError::Unknown(_) = error {
            return DeliveryUpdate::Unknown {
                at: now,
                next: now + chrono(self.backoff(row.attempts + 1)),
                error: error.to_string(),
            };
        }
        let (wait, counts) = if error.is_throttle() {
            (self.throttle_delay(), false)
        } else {
            (self.backoff(row.attempts + 1), true)
        };
        DeliveryUpdate::Retrying {
            at: now,
            next: now + chrono(wait),
            error: error.to_string(),
            counts,
        }
    }
}

fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s >= 86_400 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{IssueId, SubscriberEmail};
    use crate::store::SubscriberStatus;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            retry_initial: Duration::from_secs(300),
            retry_max_interval: Duration::from_secs(3600),
            retry_for: Duration::from_secs(3 * 86_400),
            bounce_threshold: 3,
        }
    }

    fn row(attempts: u32, first: Option<DateTime<Utc>>) -> DueDelivery {
        DueDelivery {
            issue: IssueId::parse("2021-09-01").unwrap(),
            subscriber_id: 1,
            email: SubscriberEmail::parse("a@example.org").unwrap(),
            name: None,
            subscriber_status: SubscriberStatus::Active,
            attempts,
            first_attempt_at: first,
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = policy();
        let mins: Vec<u64> = (1..=6).map(|a| p.backoff(a).as_secs() / 60).collect();
        assert_eq!(mins, [5, 10, 20, 40, 60, 60]);
        assert_eq!(p.backoff(1000), Duration::from_secs(3600));
    }

    #[test]
    fn transient_errors_retry_until_the_period_ends() {
        let p = policy();
        let t0 = Utc::now();
        let e = Err(SendError::Transient("450 busy".into()));
        match p.decide(&row(0, None), &e, t0).unwrap() {
            DeliveryUpdate::Retrying { next, counts, .. } => {
                assert_eq!(next - t0, chrono::Duration::minutes(5));
                assert!(counts);
            }
            other => panic!("{other:?}"),
        }
        let later = t0 + chrono::Duration::days(3);
        assert!(matches!(
            p.decide(&row(40, Some(t0)), &e, later).unwrap(),
            DeliveryUpdate::Failed {
                bounce_threshold: None,
                ..
            }
        ));
    }

    #[test]
    fn permanent_fails_and_bounces_throttle_does_not_count() {
        let p = policy();
        let t0 = Utc::now();
        assert!(matches!(
            p.decide(&row(0, None), &Err(SendError::Permanent("550".into())), t0)
                .unwrap(),
            DeliveryUpdate::Failed {
                bounce_threshold: Some(3),
                ..
            }
        ));
        assert!(matches!(
            p.decide(
                &row(0, None),
                &Err(SendError::Throttled("421 rate".into())),
                t0
            )
            .unwrap(),
            DeliveryUpdate::Retrying { counts: false, .. }
        ));
        assert_eq!(
            p.decide(&row(0, None), &Ok(()), t0),
            Some(DeliveryUpdate::Sent { at: t0 })
        );
    }

    #[test]
    fn relay_faults_leave_the_row_alone_and_no_answer_is_unknown() {
        let p = policy();
        let t0 = Utc::now();
        let relay = Err(SendError::Relay("the relay refuses MAIL FROM: 550".into()));
        assert_eq!(p.decide(&row(0, None), &relay, t0), None);
        let local = Err(SendError::Local("cannot write to the outbox folder".into()));
        assert_eq!(p.decide(&row(0, None), &local, t0), None);
        let unknown = Err(SendError::Unknown("no answer to the final dot".into()));
        assert!(matches!(
            p.decide(&row(0, None), &unknown, t0),
            Some(DeliveryUpdate::Unknown { next, .. }) if next - t0 == chrono::Duration::minutes(5)
        ));
    }
}
