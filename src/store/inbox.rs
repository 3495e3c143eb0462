//! The inbox worker's rows: handled messages and owed notices. A reply's unsubscribe is
//! [`Store::unsubscribe`]'s withdrawal, made inside the batch's transaction.
//!
//! A batch of handled messages is recorded in one transaction (one fsync instead of one
//! per message): each message's row, and its effect on subscribers and the ledger, are
//! on disk together or not at all.

use super::consent::withdraw;
use super::subscribers::{bounce, email_from_db, name_from_db, resolve_id, status_from_db};
use super::{Store, StoreError, SubscriberStatus, Withdrawal, from_ts, ts};
use crate::domain::{HeaderText, IssueId, SubscriberEmail};
use chrono::{DateTime, Duration, Utc};
use sqlx::Row;
use std::collections::HashMap;

/// What became of a message in the mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxDisposition {
    /// Moved to the processed folder, marked seen.
    Processed,
    /// Left unread for a person.
    ForAPerson,
}

impl InboxDisposition {
    fn as_str(self) -> &'static str {
        match self {
            Self::Processed => "processed",
            Self::ForAPerson => "for-a-person",
        }
    }

    fn from_db(raw: &str) -> Result<Self, StoreError> {
        match raw {
            "processed" => Ok(Self::Processed),
            "for-a-person" => Ok(Self::ForAPerson),
            other => Err(StoreError::Corrupt {
                what: "inbox disposition",
                value: other.to_owned(),
            }),
        }
    }
}

/// What a handled message does to a subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboxEffect {
    /// Unsubscribe now (queued deliveries skipped) and owe one notice, within the limit.
    Unsubscribe { subscriber_id: i64 },
    /// A delivery report proven to be about `issue` as sent to the subscriber: the first
    /// permanent one for that message counts toward `bounced`; others are noted.
    Bounce {
        subscriber_id: i64,
        issue: IssueId,
        permanent: bool,
    },
}

/// One handled message to record.
#[derive(Debug, Clone)]
pub struct InboxEntry {
    /// `mid:<Message-ID>` or `sha256:…`.
    pub key: String,
    pub command: &'static str,
    pub disposition: InboxDisposition,
    pub effects: Vec<InboxEffect>,
    /// A line for the record (the reason, the status code …).
    pub detail: Option<String>,
}

/// What recording one entry did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboxRecorded {
    /// The key was recorded before (a restart, or a duplicate in the mailbox): nothing
    /// was done again; the message should end as it did the first time.
    Already(InboxDisposition),
    /// Recorded now; `changed` lists subscribers whose status changed (before, after).
    Done {
        changed: Vec<(i64, SubscriberStatus, SubscriberStatus)>,
        notices: Vec<i64>,
    },
}

/// Limits the worker applies while recording.
#[derive(Debug, Clone, Copy)]
pub struct InboxLimits {
    /// Notices to one address in 24 hours, at most.
    pub notices_per_day: u32,
    /// Permanent failures after which an active subscriber is marked bounced.
    pub bounce_threshold: u32,
}

/// A notice owed to a subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwedNotice {
    pub id: i64,
    pub subscriber_id: i64,
    pub email: SubscriberEmail,
    pub name: Option<HeaderText>,
    pub attempts: u32,
}

/// What the inbox's figures are, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxFigures {
    /// Messages the worker has recorded.
    pub processed: u64,
    /// Delivery reports that could not be tied to a message we sent, left for a person.
    pub unverified_reports: u64,
    /// When the worker last finished a poll.
    pub last_poll: Option<DateTime<Utc>>,
}

/// The `command` recorded for a delivery report that proved nothing.
pub const UNVERIFIED_REPORT: &str = "unverified-report";

impl Store {
    /// The subscribers whose address is `email`, compared case-insensitively as a whole
    /// (oldest first; one, unless a store still holds two spellings of one mailbox).
    pub async fn subscribers_with_address(
        &self,
        email: &SubscriberEmail,
    ) -> Result<Vec<i64>, StoreError> {
        // `lower()` folds ASCII letters, which is what addresses are made of in practice;
        // the expression matches the unique index `subscribers_by_mailbox`.
        Ok(sqlx::query_scalar(
            "SELECT id FROM subscribers WHERE lower(email) = lower($1) ORDER BY id",
        )
        .bind(email.as_str())
        .fetch_all(&self.pool)
        .await?)
    }

    /// The address `issue` went to, if the ledger shows it sent to `subscriber`: what a
    /// delivery report about that message must name.
    pub async fn address_sent_to(
        &self,
        issue: IssueId,
        subscriber: i64,
    ) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT s.email FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id \
             WHERE d.issue_id = $1 AND d.subscriber_id = $2 AND d.status = 'sent'",
        )
        .bind(issue.to_string())
        .bind(subscriber)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Which of `keys` were recorded already, with how they ended.
    pub async fn inbox_dispositions(
        &self,
        keys: &[&str],
    ) -> Result<HashMap<String, InboxDisposition>, StoreError> {
        let mut out = HashMap::new();
        // SQLite allows 32 766 parameters; stay far below.
        for chunk in keys.chunks(500) {
            let marks = super::placeholders(chunk.len(), 1);
            let sql = format!("SELECT key, disposition FROM inbox_messages WHERE key IN ({marks})");
            // Only numbered marks are spliced in; the keys are bound.
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for key in chunk {
                query = query.bind(*key);
            }
            for row in query.fetch_all(&self.pool).await? {
                let key: String = row.try_get("key")?;
                let disposition: String = row.try_get("disposition")?;
                out.insert(key, InboxDisposition::from_db(&disposition)?);
            }
        }
        Ok(out)
    }

    /// Records handled messages and their effects in one transaction.
    pub async fn record_inbox(
        &self,
        entries: &[InboxEntry],
        limits: InboxLimits,
        now: DateTime<Utc>,
    ) -> Result<Vec<InboxRecorded>, StoreError> {
        let mut tx = self.begin().await?;
        let mut results = Vec::with_capacity(entries.len());
        for entry in entries {
            let subscriber_id = entry.effects.first().map(|e| match e {
                InboxEffect::Unsubscribe { subscriber_id }
                | InboxEffect::Bounce { subscriber_id, .. } => *subscriber_id,
            });
            // A token may name a twin merged into another row since it was mailed.
            let subscriber_id = match subscriber_id {
                Some(id) => Some(resolve_id(&mut tx, id).await?),
                None => None,
            };
            let inserted = sqlx::query(
                "INSERT INTO inbox_messages (key, command, disposition, subscriber_id, detail, \
                 processed_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (key) DO NOTHING",
            )
            .bind(&entry.key)
            .bind(entry.command)
            .bind(entry.disposition.as_str())
            .bind(subscriber_id)
            .bind(&entry.detail)
            .bind(ts(now))
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if !inserted {
                let before: String =
                    sqlx::query_scalar("SELECT disposition FROM inbox_messages WHERE key = $1")
                        .bind(&entry.key)
                        .fetch_one(&mut *tx)
                        .await?;
                results.push(InboxRecorded::Already(InboxDisposition::from_db(&before)?));
                continue;
            }
            let mut changed = Vec::new();
            let mut notices = Vec::new();
            for effect in &entry.effects {
                match effect {
                    InboxEffect::Unsubscribe { subscriber_id } => {
                        let how = Withdrawal::Reply {
                            message: entry.key.clone(),
                        };
                        let Some((id, before)) =
                            withdraw(&mut tx, *subscriber_id, &how, now).await?
                        else {
                            continue;
                        };
                        if before == SubscriberStatus::Unsubscribed {
                            continue;
                        }
                        let Some((_, email)) = status_and_email(&mut tx, id).await? else {
                            continue;
                        };
                        changed.push((id, before, SubscriberStatus::Unsubscribed));
                        let recent: i64 = sqlx::query_scalar(
                            "SELECT COUNT(*) FROM inbox_notices \
                             WHERE lower(email) = lower($1) AND created_at > $2",
                        )
                        .bind(&email)
                        .bind(ts(now - Duration::days(1)))
                        .fetch_one(&mut *tx)
                        .await?;
                        if recent < i64::from(limits.notices_per_day) {
                            let notice: i64 = sqlx::query_scalar(
                                "INSERT INTO inbox_notices (subscriber_id, email, message_key, \
                                 created_at) VALUES ($1, $2, $3, $4) RETURNING id",
                            )
                            .bind(id)
                            .bind(&email)
                            .bind(&entry.key)
                            .bind(ts(now))
                            .fetch_one(&mut *tx)
                            .await?;
                            notices.push(notice);
                        }
                    }
                    InboxEffect::Bounce {
                        subscriber_id,
                        issue,
                        permanent,
                    } => {
                        let id = resolve_id(&mut tx, *subscriber_id).await?;
                        let Some((before, _)) = status_and_email(&mut tx, id).await? else {
                            continue;
                        };
                        if !*permanent {
                            continue;
                        }
                        // One count per message sent: a second report quoting the same
                        // message (resent, or forged from a forwarded copy) changes nothing.
                        let first = sqlx::query(
                            "UPDATE deliveries SET bounce_reported_at = $3 \
                             WHERE issue_id = $1 AND subscriber_id = $2 AND status = 'sent' \
                             AND bounce_reported_at IS NULL",
                        )
                        .bind(issue.to_string())
                        .bind(id)
                        .bind(ts(now))
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                            == 1;
                        if first {
                            bounce(&mut tx, id, limits.bounce_threshold, now).await?;
                            if let Some((after, _)) = status_and_email(&mut tx, id).await?
                                && after != before
                            {
                                changed.push((id, before, after));
                            }
                        }
                    }
                }
            }
            results.push(InboxRecorded::Done { changed, notices });
        }
        tx.commit().await?;
        Ok(results)
    }

    /// Notices not yet sent nor given up, oldest first.
    pub async fn owed_notices(&self, limit: u32) -> Result<Vec<OwedNotice>, StoreError> {
        let rows = sqlx::query(
            "SELECT n.id, n.subscriber_id, s.email, s.name, n.attempts \
             FROM inbox_notices n JOIN subscribers s ON s.id = n.subscriber_id \
             WHERE n.done = 0 ORDER BY n.id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(OwedNotice {
                    id: row.try_get("id")?,
                    subscriber_id: row.try_get("subscriber_id")?,
                    email: email_from_db(row.try_get("email")?)?,
                    name: name_from_db(row.try_get("name")?)?,
                    attempts: row.try_get::<i64, _>("attempts")?.max(0) as u32,
                })
            })
            .collect()
    }

    /// Records one attempt at sending notice `id`: sent (`Ok`), or failed; a failed
    /// notice is given up after `max_attempts`.
    pub async fn record_notice_attempt(
        &self,
        id: i64,
        result: Result<(), String>,
        max_attempts: u32,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        match result {
            Ok(()) => {
                sqlx::query(
                    "UPDATE inbox_notices SET sent_at = $2, attempts = attempts + 1, done = 1 \
                     WHERE id = $1",
                )
                .bind(id)
                .bind(ts(now))
                .execute(&self.pool)
                .await?;
            }
            Err(error) => {
                sqlx::query(
                    "UPDATE inbox_notices SET attempts = attempts + 1, last_error = $2, \
                     done = CASE WHEN attempts + 1 >= $3 THEN 1 ELSE 0 END WHERE id = $1",
                )
                .bind(id)
                .bind(error)
                .bind(i64::from(max_attempts))
                .execute(&self.pool)
                .await?;
            }
        }
        Ok(())
    }

    /// Notices sent to `email` (for tests and reports).
    pub async fn notices_sent_to(&self, email: &SubscriberEmail) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM inbox_notices WHERE lower(email) = $1 AND sent_at IS NOT NULL",
        )
        .bind(email.key())
        .fetch_one(&self.pool)
        .await?;
        Ok(n.max(0) as u64)
    }

    /// How many handled messages are recorded (for tests and reports).
    pub async fn inbox_message_count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM inbox_messages")
            .fetch_one(&self.pool)
            .await?;
        Ok(n.max(0) as u64)
    }
}

async fn status_and_email(
    tx: &mut sqlx::AnyConnection,
    id: i64,
) -> Result<Option<(SubscriberStatus, String)>, StoreError> {
    let row = sqlx::query("SELECT status, email FROM subscribers WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    row.map(|row| {
        let status: String = row.try_get("status")?;
        Ok((status_from_db(&status)?, row.try_get("email")?))
    })
    .transpose()
}

impl Store {
    /// Records that the inbox worker finished a poll at `now`.
    pub async fn record_inbox_poll(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO inbox_polls (id, at) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET at = $1")
            .bind(ts(now))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Messages the inbox worker has processed, how many of them were delivery reports
    /// it could not verify, and when it last finished a poll.
    pub async fn inbox_figures(&self) -> Result<InboxFigures, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS processed, \
             COUNT(CASE WHEN command = $1 THEN 1 END) AS unverified FROM inbox_messages",
        )
        .bind(UNVERIFIED_REPORT)
        .fetch_one(&self.pool)
        .await?;
        let last: Option<i64> = sqlx::query_scalar("SELECT at FROM inbox_polls WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(InboxFigures {
            processed: row.try_get::<i64, _>("processed")?.max(0) as u64,
            unverified_reports: row.try_get::<i64, _>("unverified")?.max(0) as u64,
            last_poll: last.map(from_ts),
        })
    }
}
