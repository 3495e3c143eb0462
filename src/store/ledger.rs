//! The delivery ledger: one row per (issue, subscriber), from queued to a final state.

use super::issues::issue_id_from_db;
use super::subscribers::{bounce, email_from_db, name_from_db, status_from_db};
use super::{Dialect, Store, StoreError, SubscriberStatus, from_ts, ts};
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

/// Sent rows recorded per statement: well under SQLite's limit on bound values.
const SENT_PER_STATEMENT: usize = 500;

/// The rows a claim may take: due, and under no live claim. `$1` is the time.
const CLAIMABLE: &str = "status IN ('queued', 'retrying', 'unknown') AND next_attempt_at <= $1 \
     AND (claim_expires_at IS NULL OR claim_expires_at <= $1)";

/// Who holds live claims on ledger rows: the process part of a token, with its rows and
/// when its claims run out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimHolder {
    /// The worker's name (`host:pid:n`), the token without its batch number.
    pub holder: String,
    /// Rows it holds now.
    pub rows: u64,
    /// When its last claim runs out unless renewed.
    pub until: DateTime<Utc>,
}

impl Store {
    /// Claims up to `limit` rows due at `now` (queued, retrying or unknown, with
    /// `next_attempt_at <= now`, and unclaimed or with a claim past its time) for `token`
    /// until `expires_at`, oldest due first across all issues, and returns them.
    ///
    /// The claim is one statement, so two workers never claim the same row: on
    /// PostgreSQL the rows it picks are locked and rows another worker is claiming at
    /// that moment are skipped (`FOR UPDATE SKIP LOCKED`), so workers do not queue
    /// behind each other; on SQLite the one writer makes the statement atomic.
    pub async fn claim_due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        token: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let lock = match self.dialect {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        };
        // The rows are picked once, in a CTE: PostgreSQL may run a subquery in `IN (…)`
        // again for each row it updates, and with SKIP LOCKED and LIMIT each run picks
        // other rows. Its `FOR UPDATE` checks the condition again on a row's newest
        // version, so a row another worker claimed meanwhile is not taken.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "WITH picked AS (\
                 SELECT issue_id, subscriber_id FROM deliveries WHERE {CLAIMABLE} \
                 ORDER BY next_attempt_at, issue_id, subscriber_id LIMIT $4{lock}) \
             UPDATE deliveries SET claimed_by = $2, claim_expires_at = $3 FROM picked \
             WHERE deliveries.issue_id = picked.issue_id \
             AND deliveries.subscriber_id = picked.subscriber_id"
        )))
        .bind(ts(now))
        .bind(token)
        .bind(ts(expires_at))
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await?;
        let rows = sqlx::query(
            "SELECT d.issue_id, d.subscriber_id, d.attempts, d.first_attempt_at, \
                    s.email, s.name, s.status \
             FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id \
             WHERE d.claimed_by = $1 \
             ORDER BY d.next_attempt_at, d.issue_id, d.subscriber_id",
        )
        .bind(token)
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

    /// Extends the claim `token` to `expires_at`. Returns how many rows it still holds:
    /// fewer than were claimed when some ran out and another worker took them.
    pub async fn renew_claim(
        &self,
        token: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query("UPDATE deliveries SET claim_expires_at = $2 WHERE claimed_by = $1")
            .bind(token)
            .bind(ts(expires_at))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Frees the rows of the claim `token` that were not sent: they are due again at once.
    pub async fn release_claim(&self, token: &str) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE deliveries SET claimed_by = NULL, claim_expires_at = NULL WHERE claimed_by = $1",
        )
        .bind(token)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Frees every claim of the worker `holder` (tokens `holder#…`), known to be gone:
    /// its rows are due again at once instead of when the claims run out. The rows freed.
    pub async fn release_claims_of(&self, holder: &str) -> Result<u64, StoreError> {
        // A range on the token rather than LIKE, which would read `_` and `%` in a name
        // as wildcards: `$` follows `#` in byte order.
        let done = sqlx::query(
            "UPDATE deliveries SET claimed_by = NULL, claim_expires_at = NULL \
             WHERE claimed_by >= $1 AND claimed_by < $2",
        )
        .bind(format!("{holder}#"))
        .bind(format!("{holder}$"))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Who sent `issue`'s messages: each worker (`host:pid:n`) with the messages it
    /// sent, most first; rows sent outside a claim are not counted.
    pub async fn senders(&self, issue: IssueId) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT sent_by, COUNT(*) AS n FROM deliveries \
             WHERE issue_id = $1 AND status = 'sent' AND sent_by IS NOT NULL GROUP BY sent_by",
        )
        .bind(issue.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut senders: Vec<(String, u64)> = Vec::new();
        for row in rows {
            let token: String = row.try_get("sent_by")?;
            let worker = token.rsplit_once('#').map_or(token.as_str(), |(w, _)| w);
            let n = row.try_get::<i64, _>("n")?.max(0) as u64;
            match senders.iter_mut().find(|(w, _)| w == worker) {
                Some((_, total)) => *total += n,
                None => senders.push((worker.to_owned(), n)),
            }
        }
        senders.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(senders)
    }

    /// Who holds live claims at `now`, by worker (the token up to its `#`), with their
    /// rows and when each one's claims run out: what `status` shows as sending.
    pub async fn claim_holders(&self, now: DateTime<Utc>) -> Result<Vec<ClaimHolder>, StoreError> {
        let rows = sqlx::query(
            "SELECT claimed_by, COUNT(*) AS n, MAX(claim_expires_at) AS until FROM deliveries \
             WHERE claimed_by IS NOT NULL AND claim_expires_at > $1 GROUP BY claimed_by",
        )
        .bind(ts(now))
        .fetch_all(&self.pool)
        .await?;
        let mut holders: Vec<ClaimHolder> = Vec::new();
        for row in rows {
            let token: String = row.try_get("claimed_by")?;
            let holder = token.rsplit_once('#').map_or(token.as_str(), |(h, _)| h);
            let rows = row.try_get::<i64, _>("n")?.max(0) as u64;
            let until = from_ts(row.try_get("until")?);
            match holders.iter_mut().find(|h| h.holder == holder) {
                Some(h) => {
                    h.rows += rows;
                    h.until = h.until.max(until);
                }
                None => holders.push(ClaimHolder {
                    holder: holder.to_owned(),
                    rows,
                    until,
                }),
            }
        }
        holders.sort_by(|a, b| a.holder.cmp(&b.holder));
        Ok(holders)
    }

    /// When the next row falls due, if any row still needs sending. A row under a live
    /// claim is due, for anyone else, when that claim runs out: a worker does not spin
    /// on rows another is sending. (Its own claims are cleared when it records them.)
    pub async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(CASE WHEN claim_expires_at > next_attempt_at THEN claim_expires_at \
                        ELSE next_attempt_at END) FROM deliveries \
             WHERE status IN ('queued', 'retrying', 'unknown')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(at.map(from_ts))
    }

    /// Records the results of a batch of attempts in one transaction: either all of them
    /// are on disk afterwards or (after a crash) none, and those are sent again. Written
    /// whether or not a worker holds the rows (for corrections and tests); workers use
    /// [`Store::record_claimed_deliveries`].
    pub async fn record_deliveries(
        &self,
        results: &[(IssueId, i64, DeliveryUpdate)],
    ) -> Result<(), StoreError> {
        self.record(None, results).await.map(|_| ())
    }

    /// [`Store::record_deliveries`] for a worker holding the claim `token`: a result is
    /// written only to a row the claim still holds, and clears the claim; a result for a
    /// row whose claim ran out and was taken by another worker is dropped, with its side
    /// effects (a bounce counted, a bounce count reset), so a late worker can never write
    /// over the new holder's result. Rows of the claim without a result (not tried: the
    /// batch ended early) are released as they were. Returns how many results were
    /// dropped.
    pub async fn record_claimed_deliveries(
        &self,
        token: &str,
        results: &[(IssueId, i64, DeliveryUpdate)],
    ) -> Result<u64, StoreError> {
        self.record(Some(token), results).await
    }

    /// Writes `results`, only to rows `token` holds when there is one; the number of
    /// results not written.
    async fn record(
        &self,
        token: Option<&str>,
        results: &[(IssueId, i64, DeliveryUpdate)],
    ) -> Result<u64, StoreError> {
        if results.is_empty() && token.is_none() {
            return Ok(0);
        }
        // Each statement binds the token last, as `$held`; `held` is then its condition.
        let held = |n: usize| match token {
            Some(_) => format!(" AND claimed_by = ${n}"),
            None => String::new(),
        };
        let bind_token =
            |query: sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments>| match token {
                Some(token) => query.bind(token.to_owned()),
                None => query,
            };
        let mut written: u64 = 0;
        let mut tx = self.begin().await?;
        // Sent rows, the bulk of every batch, take a few set-based statements per batch
        // instead of two per row: each statement is a round trip to the database.
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
                let held = held(3 + chunk.len());
                let mut query = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE deliveries SET status = 'sent', attempts = attempts + 1, \
                     first_attempt_at = COALESCE(first_attempt_at, $2), sent_at = $2, \
                     updated_at = $2, sent_by = claimed_by, claimed_by = NULL, \
                     claim_expires_at = NULL \
                     WHERE issue_id = $1 AND subscriber_id IN ({ids}){held} \
                     RETURNING subscriber_id"
                )))
                .bind(issue.to_string())
                .bind(ts(at));
                for (_, _, subscriber) in chunk {
                    query = query.bind(*subscriber);
                }
                let done: Vec<i64> = bind_token(query)
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(|row| row.try_get("subscriber_id"))
                    .collect::<Result<_, _>>()?;
                written += done.len() as u64;
                if done.is_empty() {
                    continue;
                }
                // A delivery that went through clears earlier permanent failures.
                let ids = super::placeholders(done.len(), 1);
                let mut query = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE subscribers SET bounce_count = 0 \
                     WHERE bounce_count > 0 AND id IN ({ids})"
                )));
                for subscriber in done {
                    query = query.bind(subscriber);
                }
                query.execute(&mut *tx).await?;
            }
        }
        for (issue, subscriber, update) in results {
            let issue = issue.to_string();
            let done = match update {
                DeliveryUpdate::Sent { .. } => continue,
                DeliveryUpdate::Retrying {
                    at,
                    next,
                    error,
                    counts,
                } => {
                    let query = try_again(&held(8))
                        .bind(issue)
                        .bind(*subscriber)
                        .bind(ts(*at))
                        .bind(ts(*next))
                        .bind(error.clone())
                        .bind(i64::from(*counts))
                        .bind(DeliveryStatus::Retrying.as_str());
                    bind_token(query).execute(&mut *tx).await?
                }
                DeliveryUpdate::Failed {
                    at,
                    error,
                    bounce_threshold,
                } => {
                    let query = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "UPDATE deliveries SET status = 'failed', attempts = attempts + 1, \
                         first_attempt_at = COALESCE(first_attempt_at, $3), \
                         last_error = $4, updated_at = $3, \
                         claimed_by = NULL, claim_expires_at = NULL \
                         WHERE issue_id = $1 AND subscriber_id = $2{}",
                        held(5)
                    )))
                    .bind(issue)
                    .bind(*subscriber)
                    .bind(ts(*at))
                    .bind(error.clone());
                    let done = bind_token(query).execute(&mut *tx).await?;
                    if let Some(threshold) = bounce_threshold
                        && done.rows_affected() > 0
                    {
                        bounce(&mut tx, *subscriber, *threshold, *at).await?;
                    }
                    done
                }
                DeliveryUpdate::Unknown { at, next, error } => {
                    let query = try_again(&held(8))
                        .bind(issue)
                        .bind(*subscriber)
                        .bind(ts(*at))
                        .bind(ts(*next))
                        .bind(error.clone())
                        .bind(1_i64)
                        .bind(DeliveryStatus::Unknown.as_str());
                    bind_token(query).execute(&mut *tx).await?
                }
                DeliveryUpdate::Skipped { at } => {
                    let query = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "UPDATE deliveries SET status = 'skipped', updated_at = $3, \
                         claimed_by = NULL, claim_expires_at = NULL \
                         WHERE issue_id = $1 AND subscriber_id = $2{}",
                        held(4)
                    )))
                    .bind(issue)
                    .bind(*subscriber)
                    .bind(ts(*at));
                    bind_token(query).execute(&mut *tx).await?
                }
            };
            written += done.rows_affected();
        }
        if let Some(token) = token {
            // Rows claimed but not tried go back as they were, for anyone to take now.
            sqlx::query(
                "UPDATE deliveries SET claimed_by = NULL, claim_expires_at = NULL \
                 WHERE claimed_by = $1",
            )
            .bind(token)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok((results.len() as u64).saturating_sub(written))
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

/// A row to be tried again at `$4`: status `$7` (retrying, or unknown after no answer),
/// `$6` attempts more, the error `$5`, at `$3`; the row is issue `$1`, subscriber `$2`,
/// and `held` its claim condition. The claim is cleared.
fn try_again(held: &str) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE deliveries SET status = $7, attempts = attempts + $6, \
         first_attempt_at = COALESCE(first_attempt_at, $3), \
         next_attempt_at = $4, last_error = $5, updated_at = $3, \
         claimed_by = NULL, claim_expires_at = NULL \
         WHERE issue_id = $1 AND subscriber_id = $2{held}"
    )))
}
