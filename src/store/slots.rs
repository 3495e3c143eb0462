//! The daemon's slots: proofs sent, holds, claims. Each change is one conditional
//! statement, so two daemons sharing the store cannot both win a claim.

use super::{Store, StoreError, from_ts, ts};
use crate::domain::{IssueId, SlotRecord, SlotState};
use chrono::{DateTime, Utc};
use sqlx::Row;

/// A slot as `gazette status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRow {
    pub at: DateTime<Utc>,
    pub issue: String,
    pub state: String,
    pub proof_sent_at: Option<DateTime<Utc>>,
    pub frozen_at: Option<DateTime<Utc>>,
    pub note: Option<String>,
    /// When the editors were last told about this slot.
    pub editors_told_at: Option<DateTime<Utc>>,
}

/// A claim whose issue is not frozen yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnfinishedClaim {
    pub at: DateTime<Utc>,
    pub issue: IssueId,
    /// The claiming daemon, `host:pid:n`.
    pub claimed_by: String,
    pub claimed_at: DateTime<Utc>,
}

/// Holds a slot in state `$5` until `$3` for the errors `$4`, at `$2`.
const HOLD: &str = "UPDATE slots SET state = 'held', next_check_at = $3, note = $4, \
     hold_errors = $4, updated_at = $2 WHERE at = $1 AND state = $5";

impl Store {
    /// Runs one guarded change to the slot at `$1`, stamped `now` as `$2`, with `texts`
    /// bound as `$3`, `$4`, …; true if it changed the slot. The guard in `sql` is what
    /// lets only one of two daemons win.
    async fn change_slot(
        &self,
        sql: &'static str,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
        texts: &[&str],
    ) -> Result<bool, StoreError> {
        let mut query = sqlx::query(sql).bind(ts(at)).bind(ts(now));
        for text in texts {
            query = query.bind(*text);
        }
        Ok(query.execute(&self.pool).await?.rows_affected() == 1)
    }

    async fn ensure_slot(
        &self,
        at: DateTime<Utc>,
        issue: IssueId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO slots (at, issue_id, state, updated_at) VALUES ($1, $2, 'open', $3) ON CONFLICT DO NOTHING")
            .bind(ts(at))
            .bind(issue.to_string())
            .bind(ts(now))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The scheduler's view of every slot at or after `since`.
    pub async fn slot_records(&self, since: DateTime<Utc>) -> Result<Vec<SlotRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, state, proof_sent_at, next_check_at FROM slots WHERE at >= $1 ORDER BY at",
        )
        .bind(ts(since))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let state: String = row.get("state");
                let state = match state.as_str() {
                    "open" => SlotState::Open,
                    "held" => SlotState::Held {
                        next_check: from_ts(
                            row.get::<Option<i64>, _>("next_check_at").unwrap_or(0),
                        ),
                    },
                    "claimed" => SlotState::Claimed,
                    "sent" => SlotState::Sent,
                    "served" => SlotState::Served,
                    "superseded" => SlotState::Superseded,
                    "given_up" => SlotState::GivenUp,
                    "missed" => SlotState::Missed,
                    _ => {
                        return Err(StoreError::Corrupt {
                            what: "slot state",
                            value: state,
                        });
                    }
                };
                Ok(SlotRecord {
                    at: from_ts(row.get("at")),
                    proof_sent: row.get::<Option<i64>, _>("proof_sent_at").is_some(),
                    state,
                })
            })
            .collect()
    }

    /// Claims the proof of the slot `at`: true for the one caller that should send it.
    pub async fn claim_proof(
        &self,
        at: DateTime<Utc>,
        issue: IssueId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.ensure_slot(at, issue, now).await?;
        self.change_slot(
            "UPDATE slots SET proof_sent_at = $2, updated_at = $2 \
             WHERE at = $1 AND proof_sent_at IS NULL",
            at,
            now,
            &[],
        )
        .await
    }

    /// Holds the slot `at` until `next_check`. True the first time (the editors are told
    /// once), false on later re-checks.
    pub async fn hold_slot(
        &self,
        at: DateTime<Utc>,
        issue: IssueId,
        next_check: DateTime<Utc>,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.ensure_slot(at, issue, now).await?;
        for from in ["open", "held"] {
            let changed = sqlx::query(HOLD)
                .bind(ts(at))
                .bind(ts(now))
                .bind(ts(next_check))
                .bind(note)
                .bind(from)
                .execute(&self.pool)
                .await?
                .rows_affected()
                == 1;
            if changed {
                return Ok(from == "open");
            }
        }
        Ok(false)
    }

    /// Claims the slot `at` for sending. True for exactly one caller, ever.
    pub async fn claim_slot(
        &self,
        at: DateTime<Utc>,
        issue: IssueId,
        daemon: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.ensure_slot(at, issue, now).await?;
        self.change_slot(
            "UPDATE slots SET state = 'claimed', claimed_by = $3, claimed_at = $2, \
             next_check_at = NULL, note = NULL, updated_at = $2 \
             WHERE at = $1 AND state IN ('open', 'held')",
            at,
            now,
            &[daemon],
        )
        .await
    }

    /// Records that the claimed slot `at` has its issue frozen and its files archived:
    /// the slot is `sent`.
    pub async fn slot_frozen(
        &self,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.change_slot(
            "UPDATE slots SET state = 'sent', frozen_at = $2, updated_at = $2 \
             WHERE at = $1 AND state = 'claimed'",
            at,
            now,
            &[],
        )
        .await?;
        Ok(())
    }

    /// Claimed slots whose issue is not frozen yet: a daemon is freezing it, or stopped
    /// part-way. Oldest first.
    pub async fn unfinished_claims(&self) -> Result<Vec<UnfinishedClaim>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, issue_id, claimed_by, claimed_at FROM slots \
             WHERE state = 'claimed' AND frozen_at IS NULL ORDER BY at",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let issue: String = r.get("issue_id");
                Ok(UnfinishedClaim {
                    at: from_ts(r.get("at")),
                    issue: IssueId::parse(&issue).map_err(|_| StoreError::Corrupt {
                        what: "slot issue id",
                        value: issue.clone(),
                    })?,
                    claimed_by: r.get::<Option<String>, _>("claimed_by").unwrap_or_default(),
                    claimed_at: from_ts(r.get::<Option<i64>, _>("claimed_at").unwrap_or(0)),
                })
            })
            .collect()
    }

    /// Closes a claim that was never frozen (the daemon stopped part-way) as `superseded`
    /// or `given_up`. True if this call closed it (so the editors are told once).
    pub async fn close_claim(
        &self,
        at: DateTime<Utc>,
        state: SlotState,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let state = match state {
            SlotState::Superseded | SlotState::GivenUp => state.as_str(),
            other => unreachable!("close_claim takes Superseded or GivenUp, not {other:?}"),
        };
        self.change_slot(
            "UPDATE slots SET state = $3, note = $4, updated_at = $2 \
             WHERE at = $1 AND state = 'claimed' AND frozen_at IS NULL",
            at,
            now,
            &[state, note],
        )
        .await
    }

    /// True if a slot after `at` has been claimed or sent: it took over from `at`.
    pub async fn later_slot_taken(&self, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM slots WHERE at > $1 AND state IN ('claimed', 'sent')",
        )
        .bind(ts(at))
        .fetch_one(&self.pool)
        .await?;
        Ok(n > 0)
    }

    /// Records that the editors were told about the slot `at`.
    pub async fn editors_told(
        &self,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.change_slot(
            "UPDATE slots SET editors_told_at = $2 WHERE at = $1",
            at,
            now,
            &[],
        )
        .await?;
        Ok(())
    }

    /// True if the editors were told about any slot of the issue `issue` that ended in
    /// `state`: one notice per issue date, not one per slot of a frequent schedule.
    pub async fn editors_told_about(
        &self,
        issue: IssueId,
        state: SlotState,
    ) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM slots WHERE issue_id = $1 AND state = $2 AND editors_told_at IS NOT NULL",
        )
        .bind(issue.to_string())
        .bind(state.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(n > 0)
    }

    /// True if the editors were told about another slot of the issue `issue` held for
    /// exactly `errors`: a frequent schedule's next slot, held for the same reason, needs
    /// no notice of its own.
    pub async fn hold_already_told(
        &self,
        issue: IssueId,
        errors: &str,
        except: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM slots WHERE issue_id = $1 AND at <> $2 AND hold_errors = $3 AND editors_told_at IS NOT NULL",
        )
        .bind(issue.to_string())
        .bind(ts(except))
        .bind(errors)
        .fetch_one(&self.pool)
        .await?;
        Ok(n > 0)
    }

    /// Marks the slots `ats` of the issue `issue` as `served` (an issue with their date
    /// has gone out another way), unless they have moved on already. One transaction:
    /// a frequent schedule has many slots a day.
    pub async fn serve_slots(
        &self,
        ats: &[DateTime<Utc>],
        issue: IssueId,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        for at in ats {
            sqlx::query(
                "INSERT INTO slots (at, issue_id, state, note, updated_at) VALUES ($1, $2, 'served', $3, $4) \
                 ON CONFLICT (at) DO UPDATE SET state = 'served', note = $3, next_check_at = NULL, updated_at = $4 \
                 WHERE slots.state IN ('open', 'held')",
            )
            .bind(ts(*at))
            .bind(issue.to_string())
            .bind(note)
            .bind(ts(now))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Since when the scheduler has kept the schedule `send` in `timezone` on this store.
    /// The first call records `now`; a different schedule starts again from `now`; a
    /// store from before this was recorded keeps the time of its first slot.
    pub async fn schedule_since(
        &self,
        send: &str,
        timezone: &str,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, StoreError> {
        sqlx::query(
            "INSERT INTO schedule_epoch (id, send, timezone, since) VALUES (1, $1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET send = $1, timezone = $2, \
             since = CASE WHEN schedule_epoch.send IS NULL THEN schedule_epoch.since ELSE $3 END \
             WHERE schedule_epoch.send IS DISTINCT FROM $1 OR schedule_epoch.timezone IS DISTINCT FROM $2",
        )
        .bind(send)
        .bind(timezone)
        .bind(ts(now))
        .execute(&self.pool)
        .await?;
        let since: i64 = sqlx::query_scalar("SELECT since FROM schedule_epoch WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(from_ts(since))
    }

    /// Ends an open or held slot without sending it: `given_up`, `missed`, `served` or
    /// `superseded`. True if this call changed it (so the editors are told once).
    pub async fn close_slot(
        &self,
        at: DateTime<Utc>,
        issue: IssueId,
        state: SlotState,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let state = match state {
            SlotState::GivenUp | SlotState::Missed | SlotState::Served | SlotState::Superseded => {
                state.as_str()
            }
            other => unreachable!("close_slot takes a final state, not {other:?}"),
        };
        self.ensure_slot(at, issue, now).await?;
        self.change_slot(
            "UPDATE slots SET state = $3, note = $4, updated_at = $2 \
             WHERE at = $1 AND state IN ('open', 'held')",
            at,
            now,
            &[state, note],
        )
        .await
    }

    /// The most recent slots up to `until`, newest first, for `gazette status`.
    pub async fn recent_slots(
        &self,
        limit: u32,
        until: DateTime<Utc>,
    ) -> Result<Vec<SlotRow>, StoreError> {
        let rows = sqlx::query("SELECT at, issue_id, state, proof_sent_at, frozen_at, note, editors_told_at FROM slots WHERE at <= $1 ORDER BY at DESC LIMIT $2")
            .bind(ts(until))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| SlotRow {
                at: from_ts(r.get("at")),
                issue: r.get("issue_id"),
                state: r.get("state"),
                proof_sent_at: r.get::<Option<i64>, _>("proof_sent_at").map(from_ts),
                frozen_at: r.get::<Option<i64>, _>("frozen_at").map(from_ts),
                note: r.get("note"),
                editors_told_at: r.get::<Option<i64>, _>("editors_told_at").map(from_ts),
            })
            .collect())
    }
}
