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
}

impl Store {
    async fn ensure_slot(
        &self,
        at: DateTime<Utc>,
        issue: IssueId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT OR IGNORE INTO slots (at, issue_id, state, updated_at) VALUES (?, ?, 'open', ?)")
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
            "SELECT at, state, proof_sent_at, next_check_at FROM slots WHERE at >= ? ORDER BY at",
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
        let done = sqlx::query("UPDATE slots SET proof_sent_at = ?, updated_at = ? WHERE at = ? AND proof_sent_at IS NULL")
            .bind(ts(now))
            .bind(ts(now))
            .bind(ts(at))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
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
        let first = sqlx::query(
            "UPDATE slots SET state = 'held', next_check_at = ?, note = ?, updated_at = ? WHERE at = ? AND state = 'open'",
        )
        .bind(ts(next_check))
        .bind(note)
        .bind(ts(now))
        .bind(ts(at))
        .execute(&self.pool)
        .await?;
        if first.rows_affected() == 1 {
            return Ok(true);
        }
        sqlx::query("UPDATE slots SET next_check_at = ?, note = ?, updated_at = ? WHERE at = ? AND state = 'held'")
            .bind(ts(next_check))
            .bind(note)
            .bind(ts(now))
            .bind(ts(at))
            .execute(&self.pool)
            .await?;
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
        let done = sqlx::query(
            "UPDATE slots SET state = 'claimed', claimed_by = ?, claimed_at = ?, next_check_at = NULL, note = NULL, updated_at = ? \
             WHERE at = ? AND state IN ('open', 'held')",
        )
        .bind(daemon)
        .bind(ts(now))
        .bind(ts(now))
        .bind(ts(at))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records that the claimed slot `at` has its issue frozen and its files archived.
    pub async fn slot_frozen(
        &self,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE slots SET frozen_at = ?, updated_at = ? WHERE at = ? AND state = 'claimed'",
        )
        .bind(ts(now))
        .bind(ts(now))
        .bind(ts(at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Claimed slots whose issue is not frozen yet (a daemon stopped in between), claimed
    /// before `claimed_before`: (slot, issue).
    pub async fn unfinished_claims(
        &self,
        claimed_before: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, issue_id FROM slots WHERE state = 'claimed' AND frozen_at IS NULL AND claimed_at <= ? ORDER BY at",
        )
        .bind(ts(claimed_before))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (from_ts(r.get("at")), r.get("issue_id")))
            .collect())
    }

    /// Ends an open or held slot without sending: `given_up` or `missed`. True if this
    /// call changed it (so the editors are told once).
    pub async fn close_slot(
        &self,
        at: DateTime<Utc>,
        issue: IssueId,
        state: SlotState,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let state = match state {
            SlotState::GivenUp => "given_up",
            SlotState::Missed => "missed",
            other => unreachable!("close_slot takes GivenUp or Missed, not {other:?}"),
        };
        self.ensure_slot(at, issue, now).await?;
        let done = sqlx::query("UPDATE slots SET state = ?, note = ?, updated_at = ? WHERE at = ? AND state IN ('open', 'held')")
            .bind(state)
            .bind(note)
            .bind(ts(now))
            .bind(ts(at))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The most recent slots, newest first, for `gazette status`.
    pub async fn recent_slots(&self, limit: u32) -> Result<Vec<SlotRow>, StoreError> {
        let rows = sqlx::query("SELECT at, issue_id, state, proof_sent_at, frozen_at, note FROM slots ORDER BY at DESC LIMIT ?")
            .bind(limit)
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
            })
            .collect())
    }
}
