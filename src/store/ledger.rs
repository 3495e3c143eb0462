//! The delivery ledger: one row per (issue, subscriber), from queued to a final state.

use super::issues::issue_id_from_db;
use super::subscribers::{bounce, email_from_db, name_from_db, status_from_db};
use super::{Store, StoreError, SubscriberStatus, from_ts, ts};
use crate::domain::{HeaderText, IssueId, SubscriberEmail};
use chrono::{DateTime, Utc};
use sqlx::Row;
use std::fmt;

/// Where one ledger row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeliveryStatus {
    /// Not tried yet.
    Queued,
    /// The server accepted the message.
    Sent,
    /// Failed temporarily; tried again at `next_attempt_at`.
    Retrying,
    /// Failed for good (5xx, or temporary failures for longer than the retry period).
    Failed,
    /// Not sent: the subscriber left after the audience was snapshotted.
    Skipped,
    /// The message went out but no answer came (the connection broke after the final
    /// dot, or gazette stopped before the relay answered): it may have arrived. Tried
    /// again at `next_attempt_at`, so a duplicate is possible, a loss is not.
    Unknown,
}

impl DeliveryStatus {
    /// The name used in the database and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sent => "sent",
            Self::Retrying => "retrying",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Unknown => "unknown",
        }
    }

    /// The status a database value names.
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "queued" => Self::Queued,
            "sent" => Self::Sent,
            "retrying" => Self::Retrying,
            "failed" => Self::Failed,
            "skipped" => Self::Skipped,
            "unknown" => Self::Unknown,
            _ => return None,
        })
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A row that is due, with what is needed to build and send its message.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub issue: IssueId,
    pub subscriber_id: i64,
    pub email: SubscriberEmail,
    pub name: Option<HeaderText>,
    /// The subscriber's status now (not when the audience was snapshotted).
    pub subscriber_status: SubscriberStatus,
    /// Attempts made before this one.
    pub attempts: u32,
    pub first_attempt_at: Option<DateTime<Utc>>,
}

/// The result of one attempt, to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryUpdate {
    /// Accepted by the server at `at`.
    Sent { at: DateTime<Utc> },
    /// Failed temporarily at `at`; due again at `next`. `counts` is false for throttling
    /// replies, which are the server's pace rather than this recipient's problem.
    Retrying {
        at: DateTime<Utc>,
        next: DateTime<Utc>,
        error: String,
        counts: bool,
    },
    /// Failed for good at `at`. With `bounce_threshold`, the failure also counts toward
    /// marking the subscriber bounced (a 5xx reply).
    Failed {
        at: DateTime<Utc>,
        error: String,
        bounce_threshold: Option<u32>,
    },
    /// Not sent: the subscriber is no longer active.
    Skipped { at: DateTime<Utc> },
    /// Sent without an answer at `at` (see [`DeliveryStatus::Unknown`]); due again at
    /// `next`.
    Unknown {
        at: DateTime<Utc>,
        next: DateTime<Utc>,
        error: String,
    },
}

/// The lease a worker must still hold for its results to be written: checked (and
/// extended to `expires_at`) in the transaction that records them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseClaim<'a> {
    pub name: &'a str,
    pub holder: &'a str,
    pub expires_at: DateTime<Utc>,
}

/// An issue's ledger rows by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryCounts {
    pub queued: u64,
    pub sent: u64,
    pub retrying: u64,
    pub failed: u64,
    pub skipped: u64,
    /// Sent without an answer; tried again later.
    pub unknown: u64,
}

impl DeliveryCounts {
    /// Every row.
    pub fn total(&self) -> u64 {
        self.queued + self.sent + self.retrying + self.failed + self.skipped + self.unknown
    }

    /// Rows that still need an attempt.
    pub fn pending(&self) -> u64 {
        self.queued + self.retrying + self.unknown
    }
}

/// A row to be tried again at `$4`: status `$7` (retrying, or unknown after no answer),
/// `$6` attempts more, the error `$5`, at `$3`; the row is issue `$1`, subscriber `$2`.
const TRY_AGAIN: &str = "UPDATE deliveries SET status = $7, attempts = attempts + $6, \
     first_attempt_at = COALESCE(first_attempt_at, $3), \
     next_attempt_at = $4, last_error = $5, updated_at = $3 \
     WHERE issue_id = $1 AND subscriber_id = $2";

/// Sent rows recorded per statement: well under SQLite's limit on bound values.
const SENT_PER_STATEMENT: usize = 500;

impl Store {
    /// Up to `limit` rows due at `now` (queued or retrying, `next_attempt_at <= now`),
    /// oldest due first, across all issues.
    pub async fn due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.issue_id, d.subscriber_id, d.attempts, d.first_attempt_at, \
                    s.email, s.name, s.status \
             FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id \
             WHERE d.status IN ('queued', 'retrying', 'unknown') AND d.next_attempt_at <= $1 \
             ORDER BY d.next_attempt_at, d.issue_id, d.subscriber_id LIMIT $2",
        )
        .bind(ts(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DueDelivery {
                    issue: issue_id_from_db(row.try_get("issue_id")?)?,
                    subscriber_id: row.try_get("subscriber_id")?,
                    email: email_from_db(row.try_get("email")?)?,
                    name: name_from_db(row.try_get("name")?)?,
                    subscriber_status: status_from_db(row.try_get("status")?)?,
                    attempts: row.try_get::<i64, _>("attempts")?.max(0) as u32,
                    first_attempt_at: row
                        .try_get::<Option<i64>, _>("first_attempt_at")?
                        .map(from_ts),
                })
            })
            .collect()
    }

    /// When the next row falls due (queued or retrying), if any row still needs sending.
    pub async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(next_attempt_at) FROM deliveries \
             WHERE status IN ('queued', 'retrying', 'unknown')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(at.map(from_ts))
    }

    /// Records the results of a batch of attempts in one transaction: either all of them
    /// are on disk afterwards or (after a crash) none, and those are sent again.
    pub async fn record_deliveries(
        &self,
        results: &[(IssueId, i64, DeliveryUpdate)],
    ) -> Result<(), StoreError> {
        self.record_deliveries_holding(None, results).await
    }

    /// [`Store::record_deliveries`] for a worker holding the lease `claim`: in the same
    /// transaction, the lease must still be `claim.holder`'s (it is extended), else
    /// nothing is written and [`StoreError::LeaseLost`] says who has it. A worker whose
    /// claim lapsed and was taken over can never write over the new holder's results.
    pub async fn record_deliveries_holding(
        &self,
        claim: Option<&LeaseClaim<'_>>,
        results: &[(IssueId, i64, DeliveryUpdate)],
    ) -> Result<(), StoreError> {
        if results.is_empty() && claim.is_none() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        if let Some(claim) = claim {
            let held =
                sqlx::query("UPDATE leases SET expires_at = $3 WHERE name = $1 AND holder = $2")
                    .bind(claim.name)
                    .bind(claim.holder)
                    .bind(ts(claim.expires_at))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    == 1;
            if !held {
                let holder: Option<String> =
                    sqlx::query_scalar("SELECT holder FROM leases WHERE name = $1")
                        .bind(claim.name)
                        .fetch_optional(&mut *tx)
                        .await?;
                tx.rollback().await?;
                return Err(StoreError::LeaseLost {
                    name: claim.name.to_owned(),
                    holder: holder.unwrap_or_else(|| "nobody".into()),
                });
            }
        }
        // Sent rows, the bulk of every batch, take a few set-based statements per batch
        // instead of two per row: each statement is a round trip to SQLite's thread.
        let mut sent: Vec<(&IssueId, DateTime<Utc>, i64)> = results
            .iter()
            .filter_map(|(issue, subscriber, update)| match update {
                DeliveryUpdate::Sent { at } => Some((issue, *at, *subscriber)),
                _ => None,
            })
            .collect();
        sent.sort_unstable();
        for group in sent.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)) {
            for chunk in group.chunks(SENT_PER_STATEMENT) {
                let (issue, at, _) = chunk[0];
                let ids = super::placeholders(chunk.len(), 3);
                let mut query = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE deliveries SET status = 'sent', attempts = attempts + 1, \
                     first_attempt_at = COALESCE(first_attempt_at, $2), sent_at = $2, \
                     updated_at = $2 WHERE issue_id = $1 AND subscriber_id IN ({ids})"
                )))
                .bind(issue.to_string())
                .bind(ts(at));
                for (_, _, subscriber) in chunk {
                    query = query.bind(subscriber);
                }
                query.execute(&mut *tx).await?;
                // A delivery that went through clears earlier permanent failures.
                let ids = super::placeholders(chunk.len(), 1);
                let mut query = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE subscribers SET bounce_count = 0 \
                     WHERE bounce_count > 0 AND id IN ({ids})"
                )));
                for (_, _, subscriber) in chunk {
                    query = query.bind(subscriber);
                }
                query.execute(&mut *tx).await?;
            }
        }
        for (issue, subscriber, update) in results {
            let issue = issue.to_string();
            match update {
                DeliveryUpdate::Sent { .. } => {}
                DeliveryUpdate::Retrying {
                    at,
                    next,
                    error,
                    counts,
                } => {
                    sqlx::query(TRY_AGAIN)
                        .bind(&issue)
                        .bind(subscriber)
                        .bind(ts(*at))
                        .bind(ts(*next))
                        .bind(error)
                        .bind(i64::from(*counts))
                        .bind(DeliveryStatus::Retrying.as_str())
                        .execute(&mut *tx)
                        .await?;
                }
                DeliveryUpdate::Failed {
                    at,
                    error,
                    bounce_threshold,
                } => {
                    sqlx::query(
                        "UPDATE deliveries SET status = 'failed', attempts = attempts + 1, \
                         first_attempt_at = COALESCE(first_attempt_at, $3), \
                         last_error = $4, updated_at = $3 \
                         WHERE issue_id = $1 AND subscriber_id = $2",
                    )
                    .bind(&issue)
                    .bind(subscriber)
                    .bind(ts(*at))
                    .bind(error)
                    .execute(&mut *tx)
                    .await?;
                    if let Some(threshold) = bounce_threshold {
                        bounce(&mut tx, *subscriber, *threshold, *at).await?;
                    }
                }
                DeliveryUpdate::Unknown { at, next, error } => {
                    sqlx::query(TRY_AGAIN)
                        .bind(&issue)
                        .bind(subscriber)
                        .bind(ts(*at))
                        .bind(ts(*next))
                        .bind(error)
                        .bind(1_i64)
                        .bind(DeliveryStatus::Unknown.as_str())
                        .execute(&mut *tx)
                        .await?;
                }
                DeliveryUpdate::Skipped { at } => {
                    sqlx::query(
                        "UPDATE deliveries SET status = 'skipped', updated_at = $3 \
                         WHERE issue_id = $1 AND subscriber_id = $2",
                    )
                    .bind(&issue)
                    .bind(subscriber)
                    .bind(ts(*at))
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// The ledger of `issue` by status.
    pub async fn delivery_counts(&self, issue: IssueId) -> Result<DeliveryCounts, StoreError> {
        let rows = sqlx::query(
            "SELECT status, COUNT(*) AS n FROM deliveries WHERE issue_id = $1 GROUP BY status",
        )
        .bind(issue.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut counts = DeliveryCounts::default();
        for row in rows {
            let status: String = row.try_get("status")?;
            let n = row.try_get::<i64, _>("n")?.max(0) as u64;
            match DeliveryStatus::parse(&status) {
                Some(DeliveryStatus::Queued) => counts.queued = n,
                Some(DeliveryStatus::Sent) => counts.sent = n,
                Some(DeliveryStatus::Retrying) => counts.retrying = n,
                Some(DeliveryStatus::Failed) => counts.failed = n,
                Some(DeliveryStatus::Skipped) => counts.skipped = n,
                Some(DeliveryStatus::Unknown) => counts.unknown = n,
                None => {
                    return Err(StoreError::Corrupt {
                        what: "delivery status",
                        value: status,
                    });
                }
            }
        }
        Ok(counts)
    }

    /// One ledger row's status, attempts and last error (for reports and tests).
    pub async fn delivery(
        &self,
        issue: IssueId,
        subscriber: i64,
    ) -> Result<Option<(DeliveryStatus, u32, Option<String>)>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT status, attempts, last_error FROM deliveries \
             WHERE issue_id = $1 AND subscriber_id = $2",
        )
        .bind(issue.to_string())
        .bind(subscriber)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let status: String = row.try_get("status")?;
        let Some(status) = DeliveryStatus::parse(&status) else {
            return Err(StoreError::Corrupt {
                what: "delivery status",
                value: status,
            });
        };
        Ok(Some((
            status,
            row.try_get::<i64, _>("attempts")?.max(0) as u32,
            row.try_get("last_error")?,
        )))
    }
}
