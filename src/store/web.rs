//! What the web side reads and writes: sign-up requests and their confirmation,
//! unsubscribe and resubscribe by token, the archive, and the figures for `/metrics`.

use super::subscribers::{current_id, email_from_db, name_from_db, resolve_id, status_from_db};
use super::{FrozenIssue, Store, StoreError, SubscriberStatus, from_ts, ts};
use crate::domain::{HeaderText, IssueId, SubscriberEmail};
use chrono::{DateTime, Utc};
use sqlx::Row;

/// Where a sign-up leaves the subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignupOutcome {
    /// A request is open: send `email` a confirmation link for `subscriber_id`. The
    /// subscriber is new (pending), still pending, or suppressed (unsubscribed or
    /// bounced) — in every case unchanged until the link is used.
    Confirm {
        subscriber_id: i64,
        email: SubscriberEmail,
        /// The name given on the form, if any.
        name: Option<HeaderText>,
    },
    /// Already active: nothing to do (and nothing the visitor is told).
    AlreadyActive,
}

/// What a confirmation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmOutcome {
    /// The subscriber is now active; `was` is the status before.
    Confirmed { was: SubscriberStatus },
    /// No open request, but the subscriber is active (the link was used before).
    AlreadyActive,
    /// No open request younger than the window: the link is spent or expired.
    NotOpen,
}

/// A subscriber as the confirm, unsubscribe and resubscribe pages need them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSubscriber {
    pub id: i64,
    pub email: SubscriberEmail,
    pub status: SubscriberStatus,
    /// Whether a sign-up request younger than the window asked for, is still open.
    pub signup_open: bool,
}

/// An issue in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedIssue {
    pub id: IssueId,
    pub subject: String,
    /// The Date of its messages.
    pub sent_at: DateTime<Utc>,
}

/// Counts for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebFigures {
    /// Ledger rows across all issues, for each status (every status listed, zeros too).
    pub deliveries: Vec<(&'static str, u64)>,
    /// Subscribers for each status (every status listed, zeros too).
    pub subscribers: Vec<(&'static str, u64)>,
}

const DELIVERY_STATUSES: [&str; 5] = ["queued", "sent", "retrying", "failed", "skipped"];
const SUBSCRIBER_STATUSES: [SubscriberStatus; 4] = [
    SubscriberStatus::Pending,
    SubscriberStatus::Active,
    SubscriberStatus::Unsubscribed,
    SubscriberStatus::Bounced,
];

/// Each of these transactions reads, then writes: taking the write lock up front means
/// a concurrent writer makes it wait (busy timeout) instead of failing the upgrade.
const IMMEDIATE: &str = "BEGIN IMMEDIATE";

/// The condition for an issue to be public: it has gone out to at least one subscriber.
macro_rules! sent {
    () => {
        "EXISTS (SELECT 1 FROM deliveries d WHERE d.issue_id = issues.id AND d.status = 'sent')"
    };
}

impl Store {
    /// Records a sign-up for `email` from `ip`. An unknown address becomes a pending
    /// subscriber; a known one keeps its status (a suppressed address stays suppressed
    /// until the confirmation link is used). One transaction.
    pub async fn web_signup(
        &self,
        email: &SubscriberEmail,
        name: Option<&HeaderText>,
        ip: &str,
        now: DateTime<Utc>,
    ) -> Result<SignupOutcome, StoreError> {
        let mut tx = self.pool.begin_with(IMMEDIATE).await?;
        sqlx::query(
            "INSERT INTO subscribers (email, name, status, bounce_count, created_at, updated_at) \
             VALUES (?1, NULL, 'pending', 0, ?2, ?2) ON CONFLICT DO NOTHING",
        )
        .bind(email.as_str())
        .bind(ts(now))
        .execute(&mut *tx)
        .await?;
        // One mailbox, one subscriber: any spelling finds the row first written.
        let row = sqlx::query("SELECT id, email, status FROM subscribers WHERE lower(email) = ?1")
            .bind(email.key())
            .fetch_one(&mut *tx)
            .await?;
        let id: i64 = row.try_get("id")?;
        if status_from_db(row.try_get("status")?)? == SubscriberStatus::Active {
            tx.commit().await?;
            return Ok(SignupOutcome::AlreadyActive);
        }
        sqlx::query(
            "INSERT INTO web_signups (subscriber_id, name, requested_at, requested_ip) \
             VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(id)
        .bind(name.map(HeaderText::as_str))
        .bind(ts(now))
        .bind(ip)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(SignupOutcome::Confirm {
            subscriber_id: id,
            email: email_from_db(row.try_get("email")?)?,
            name: name.cloned(),
        })
    }

    /// The subscriber a token names, with whether a sign-up requested since `since` is
    /// still open.
    pub async fn web_subscriber(
        &self,
        id: i64,
        since: DateTime<Utc>,
    ) -> Result<Option<WebSubscriber>, StoreError> {
        let Some(row) = sqlx::query(concat!(
            "SELECT id, email, status, EXISTS (SELECT 1 FROM web_signups w \
             WHERE w.subscriber_id = s.id AND w.confirmed_at IS NULL \
             AND w.requested_at >= ?2) AS open FROM subscribers s WHERE s.id = ",
            current_id!("1")
        ))
        .bind(id)
        .bind(ts(since))
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        Ok(Some(WebSubscriber {
            id: row.try_get("id")?,
            email: email_from_db(row.try_get("email")?)?,
            status: status_from_db(row.try_get("status")?)?,
            signup_open: row.try_get::<i64, _>("open")? != 0,
        }))
    }

    /// Confirms subscriber `id`'s open sign-up (requested since `since`): the subscriber
    /// becomes active whatever they were (pending, unsubscribed, bounced), with the name
    /// from the latest request if it gave one, and the consent record says now, `web`
    /// and `ip`. Every open request of theirs is closed. One transaction.
    pub async fn web_confirm(
        &self,
        id: i64,
        ip: &str,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<ConfirmOutcome, StoreError> {
        let mut tx = self.pool.begin_with(IMMEDIATE).await?;
        let id = resolve_id(&mut tx, id).await?;
        let Some(status) =
            sqlx::query_scalar::<_, String>("SELECT status FROM subscribers WHERE id = ?1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
        else {
            return Ok(ConfirmOutcome::NotOpen);
        };
        let was = status_from_db(&status)?;
        let request = sqlx::query(
            "SELECT id, name FROM web_signups WHERE subscriber_id = ?1 \
             AND confirmed_at IS NULL AND requested_at >= ?2 ORDER BY id DESC LIMIT 1",
        )
        .bind(id)
        .bind(ts(since))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(request) = request else {
            return Ok(if was == SubscriberStatus::Active {
                ConfirmOutcome::AlreadyActive
            } else {
                ConfirmOutcome::NotOpen
            });
        };
        let name = name_from_db(request.try_get("name")?)?;
        sqlx::query(
            "UPDATE subscribers SET status = 'active', name = COALESCE(?2, name), \
             consent_at = ?3, consent_source = 'web', consent_ip = ?4, bounce_count = 0, \
             withdrawn_at = NULL, withdrawn_source = NULL, updated_at = ?3 WHERE id = ?1",
        )
        .bind(id)
        .bind(name.as_ref().map(HeaderText::as_str))
        .bind(ts(now))
        .bind(ip)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE web_signups SET confirmed_at = ?2, confirmed_ip = ?3 \
             WHERE subscriber_id = ?1 AND confirmed_at IS NULL",
        )
        .bind(id)
        .bind(ts(now))
        .bind(ip)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ConfirmOutcome::Confirmed { was })
    }

    /// Unsubscribes `id` if active or pending; returns the status before (`None` for an
    /// unknown id). Bounced and unsubscribed subscribers stay as they are.
    pub async fn web_unsubscribe(
        &self,
        id: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<SubscriberStatus>, StoreError> {
        self.web_move(id, &["active", "pending"], "unsubscribed", None, now)
            .await
    }

    /// Brings back `id` if unsubscribed (the link in the inbox worker's unsubscribe
    /// notice); the consent record says now, `web:resubscribe` and `ip`. Returns the
    /// status before (`None` for an unknown id). A bounced address comes back only
    /// through a confirmed sign-up.
    pub async fn web_resubscribe(
        &self,
        id: i64,
        ip: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SubscriberStatus>, StoreError> {
        self.web_move(id, &["unsubscribed"], "active", Some(ip), now)
            .await
    }

    /// Moves `id` from one of `from` to `to` in one statement; with `consent_ip` the
    /// consent record is rewritten too.
    async fn web_move(
        &self,
        id: i64,
        from: &[&str],
        to: &'static str,
        consent_ip: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<SubscriberStatus>, StoreError> {
        let mut tx = self.pool.begin_with(IMMEDIATE).await?;
        let id = resolve_id(&mut tx, id).await?;
        let Some(before) =
            sqlx::query_scalar::<_, String>("SELECT status FROM subscribers WHERE id = ?1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
        else {
            return Ok(None);
        };
        if from.contains(&before.as_str()) {
            match consent_ip {
                None => {
                    sqlx::query(
                        "UPDATE subscribers SET status = ?2, updated_at = ?3, \
                         withdrawn_at = CASE WHEN ?2 = 'unsubscribed' THEN ?3 ELSE withdrawn_at END, \
                         withdrawn_source = CASE WHEN ?2 = 'unsubscribed' THEN 'web' ELSE withdrawn_source END \
                         WHERE id = ?1",
                    )
                    .bind(id)
                    .bind(to)
                    .bind(ts(now))
                    .execute(&mut *tx)
                    .await?;
                }
                Some(ip) => {
                    sqlx::query(
                        "UPDATE subscribers SET status = ?2, consent_at = ?3, \
                         consent_source = 'web:resubscribe', consent_ip = ?4, \
                         withdrawn_at = NULL, withdrawn_source = NULL, updated_at = ?3 WHERE id = ?1",
                    )
                    .bind(id)
                    .bind(to)
                    .bind(ts(now))
                    .bind(ip)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(Some(status_from_db(&before)?))
    }

    /// Issues that have gone out (at least one message sent), newest first.
    pub async fn archived_issues(&self) -> Result<Vec<ArchivedIssue>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT id, subject, message_date FROM issues WHERE ",
            sent!(),
            " ORDER BY id DESC"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let raw: String = row.try_get("id")?;
                Ok(ArchivedIssue {
                    id: IssueId::parse(&raw).map_err(|_| StoreError::Corrupt {
                        what: "issue id",
                        value: raw.clone(),
                    })?,
                    subject: row.try_get("subject")?,
                    sent_at: from_ts(row.try_get("message_date")?),
                })
            })
            .collect()
    }

    /// Issue `id` if it has gone out; an issue frozen but not yet sent stays private.
    pub async fn archived_issue(&self, id: IssueId) -> Result<Option<FrozenIssue>, StoreError> {
        let sent: bool = sqlx::query_scalar(concat!(
            "SELECT EXISTS (SELECT 1 FROM issues WHERE id = ?1 AND ",
            sent!(),
            ")"
        ))
        .bind(id.to_string())
        .fetch_one(&self.pool)
        .await?;
        if sent { self.issue(id).await } else { Ok(None) }
    }

    /// The ledger and the subscribers by status.
    pub async fn web_figures(&self) -> Result<WebFigures, StoreError> {
        let deliveries =
            sqlx::query("SELECT status, COUNT(*) AS n FROM deliveries GROUP BY status")
                .fetch_all(&self.pool)
                .await?;
        let subscribers =
            sqlx::query("SELECT status, COUNT(*) AS n FROM subscribers GROUP BY status")
                .fetch_all(&self.pool)
                .await?;
        let count = |rows: &[sqlx::sqlite::SqliteRow], status: &str| -> Result<u64, StoreError> {
            for row in rows {
                if row.try_get::<String, _>("status")? == status {
                    return Ok(row.try_get::<i64, _>("n")?.max(0) as u64);
                }
            }
            Ok(0)
        };
        Ok(WebFigures {
            deliveries: DELIVERY_STATUSES
                .iter()
                .map(|s| Ok((*s, count(&deliveries, s)?)))
                .collect::<Result<_, StoreError>>()?,
            subscribers: SUBSCRIBER_STATUSES
                .iter()
                .map(|s| Ok((s.as_str(), count(&subscribers, s.as_str())?)))
                .collect::<Result<_, StoreError>>()?,
        })
    }
}

impl Store {
    /// Answers when the database does (for `/healthz`).
    pub async fn web_ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
