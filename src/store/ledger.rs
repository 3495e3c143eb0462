//! The delivery ledger: one row per (issue, subscriber), from queued to a final state.

use super::subscribers::{bounce, email_from_db, name_from_db, status_from_db};
use super::{Store, StoreError, SubscriberStatus, from_ts, ts};
use crate::domain::{HeaderText, IssueId, SubscriberEmail};
use chrono::{DateTime, Utc};
use sqlx::Row;
use std::fmt;

/// Where one ledger row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
        }
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
}

/// An issue's ledger rows by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryCounts {
    pub queued: u64,
    pub sent: u64,
    pub retrying: u64,
    pub failed: u64,
    pub skipped: u64,
}

impl DeliveryCounts {
    /// Every row.
    pub fn total(&self) -> u64 {
        self.queued + self.sent + self.retrying + self.failed + self.skipped
    }

    /// Rows that still need an attempt.
    pub fn pending(&self) -> u64 {
        self.queued + self.retrying
    }
}

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
             WHERE d.status IN ('queued', 'retrying') AND d.next_attempt_at <= ?1 \
             ORDER BY d.next_attempt_at, d.issue_id, d.subscriber_id LIMIT ?2",
        )
        .bind(ts(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let issue: String = row.try_get("issue_id")?;
                Ok(DueDelivery {
                    issue: IssueId::parse(&issue).map_err(|_| StoreError::Corrupt {
                        what: "issue id",
                        value: issue.clone(),
                    })?,
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
            "SELECT MIN(next_attempt_at) FROM deliveries WHERE status IN ('queued', 'retrying')",
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
        if results.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for (issue, subscriber, update) in results {
            let issue = issue.to_string();
            match update {
                DeliveryUpdate::Sent { at } => {
                    sqlx::query(
                        "UPDATE deliveries SET status = 'sent', attempts = attempts + 1, \
                         first_attempt_at = COALESCE(first_attempt_at, ?3), sent_at = ?3, \
                         updated_at = ?3 WHERE issue_id = ?1 AND subscriber_id = ?2",
                    )
                    .bind(&issue)
                    .bind(subscriber)
                    .bind(ts(*at))
                    .execute(&mut *tx)
                    .await?;
                    // A delivery that went through clears earlier permanent failures.
                    sqlx::query(
                        "UPDATE subscribers SET bounce_count = 0 \
                         WHERE id = ?1 AND bounce_count > 0",
                    )
                    .bind(subscriber)
                    .execute(&mut *tx)
                    .await?;
                }
                DeliveryUpdate::Retrying {
                    at,
                    next,
                    error,
                    counts,
                } => {
                    sqlx::query(
                        "UPDATE deliveries SET status = 'retrying', \
                         attempts = attempts + ?6, \
                         first_attempt_at = COALESCE(first_attempt_at, ?3), \
                         next_attempt_at = ?4, last_error = ?5, updated_at = ?3 \
                         WHERE issue_id = ?1 AND subscriber_id = ?2",
                    )
                    .bind(&issue)
                    .bind(subscriber)
                    .bind(ts(*at))
                    .bind(ts(*next))
                    .bind(error)
                    .bind(i64::from(*counts))
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
                         first_attempt_at = COALESCE(first_attempt_at, ?3), \
                         last_error = ?4, updated_at = ?3 \
                         WHERE issue_id = ?1 AND subscriber_id = ?2",
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
                DeliveryUpdate::Skipped { at } => {
                    sqlx::query(
                        "UPDATE deliveries SET status = 'skipped', updated_at = ?3 \
                         WHERE issue_id = ?1 AND subscriber_id = ?2",
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
            "SELECT status, COUNT(*) AS n FROM deliveries WHERE issue_id = ?1 GROUP BY status",
        )
        .bind(issue.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut counts = DeliveryCounts::default();
        for row in rows {
            let status: String = row.try_get("status")?;
            let n = row.try_get::<i64, _>("n")?.max(0) as u64;
            match status.as_str() {
                "queued" => counts.queued = n,
                "sent" => counts.sent = n,
                "retrying" => counts.retrying = n,
                "failed" => counts.failed = n,
                "skipped" => counts.skipped = n,
                other => {
                    return Err(StoreError::Corrupt {
                        what: "delivery status",
                        value: other.to_owned(),
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
             WHERE issue_id = ?1 AND subscriber_id = ?2",
        )
        .bind(issue.to_string())
        .bind(subscriber)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let status: String = row.try_get("status")?;
        let status = match status.as_str() {
            "queued" => DeliveryStatus::Queued,
            "sent" => DeliveryStatus::Sent,
            "retrying" => DeliveryStatus::Retrying,
            "failed" => DeliveryStatus::Failed,
            "skipped" => DeliveryStatus::Skipped,
            _ => {
                return Err(StoreError::Corrupt {
                    what: "delivery status",
                    value: status,
                });
            }
        };
        Ok(Some((
            status,
            row.try_get::<i64, _>("attempts")?.max(0) as u32,
            row.try_get("last_error")?,
        )))
    }
}
