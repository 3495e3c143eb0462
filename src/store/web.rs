//! What the web side reads and writes: sign-up requests and their confirmation, the
//! subscriber a link names, the archive, and the figures for `/metrics` (unsubscribing
//! is [`Store::unsubscribe`], shared with every other channel).
//!
//! A sign-up request is the only way into `active` from the web. Its confirmation link
//! names the request; the link works once, within the confirmation window, and only
//! while the request is open (migration 0040 closes open requests when the subscriber
//! leaves).

use super::subscribers::{current_id, email_from_db, name_from_db, status_from_db};
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
        /// The request; the confirmation link names it.
        request_id: i64,
        subscriber_id: i64,
        email: SubscriberEmail,
        /// The name given on the form, if any.
        name: Option<HeaderText>,
    },
    /// Already active: nothing to do (and nothing the visitor is told).
    AlreadyActive,
    /// The address has had its day's confirmation messages: nothing recorded, nothing
    /// sent (and nothing the visitor is told, so the limit cannot reveal an address).
    Limited,
}

/// What a confirmation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmOutcome {
    /// The subscriber is now active; `was` is the status before.
    Confirmed {
        subscriber_id: i64,
        was: SubscriberStatus,
    },
    /// The request is closed, but the subscriber is active (the link was used before).
    AlreadyActive,
    /// The request is closed or older than the window: the link is spent or expired.
    NotOpen,
    /// No such request.
    Unknown,
}

/// A subscriber as the unsubscribe and resubscribe pages need them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSubscriber {
    pub id: i64,
    pub email: SubscriberEmail,
    pub status: SubscriberStatus,
}

/// A sign-up request as its confirmation page needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSignupRequest {
    pub subscriber_id: i64,
    pub email: SubscriberEmail,
    pub status: SubscriberStatus,
    /// Whether the request is still open and younger than the window asked for.
    pub open: bool,
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

const DELIVERY_STATUSES: [&str; 6] = ["queued", "sent", "retrying", "failed", "skipped", "unknown"];
const SUBSCRIBER_STATUSES: [SubscriberStatus; 4] = [
    SubscriberStatus::Pending,
    SubscriberStatus::Active,
    SubscriberStatus::Unsubscribed,
    SubscriberStatus::Bounced,
];

/// The condition for an issue to be public: it has gone out to at least one subscriber.
macro_rules! sent {
    () => {
        "EXISTS (SELECT 1 FROM deliveries d WHERE d.issue_id = issues.id AND d.status = 'sent')"
    };
}

impl Store {
    /// Records a sign-up for `email` from `ip`, with no daily limit.
    pub async fn web_signup(
        &self,
        email: &SubscriberEmail,
        name: Option<&HeaderText>,
        ip: &str,
        now: DateTime<Utc>,
    ) -> Result<SignupOutcome, StoreError> {
        self.web_signup_at_most(email, name, ip, now, u32::MAX)
            .await
    }

    /// Records a sign-up for `email` from `ip`, unless the address has had `per_day`
    /// requests (so confirmation messages) in the last 24 hours. An unknown address
    /// becomes a pending subscriber; a known one keeps its status (a suppressed address
    /// stays suppressed until the confirmation link is used). One transaction that holds
    /// the write lock from the start, so the limit holds however many web servers share
    /// the store.
    pub async fn web_signup_at_most(
        &self,
        email: &SubscriberEmail,
        name: Option<&HeaderText>,
        ip: &str,
        now: DateTime<Utc>,
        per_day: u32,
    ) -> Result<SignupOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO subscribers (email, name, status, bounce_count, created_at, updated_at) \
             VALUES ($1, NULL, 'pending', 0, $2, $2) ON CONFLICT DO NOTHING",
        )
        .bind(email.as_str())
        .bind(ts(now))
        .execute(&mut *tx)
        .await?;
        // One mailbox, one subscriber: any spelling finds the row first written.
        let row = sqlx::query("SELECT id, email, status FROM subscribers WHERE lower(email) = $1")
            .bind(email.key())
            .fetch_one(&mut *tx)
            .await?;
        let stored = email_from_db(row.try_get("email")?)?;
        let id: i64 = row.try_get("id")?;
        if status_from_db(row.try_get("status")?)? == SubscriberStatus::Active {
            tx.commit().await?;
            return Ok(SignupOutcome::AlreadyActive);
        }
        let today: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM web_signups WHERE subscriber_id = $1 AND requested_at > $2",
        )
        .bind(id)
        .bind(ts(now - chrono::Duration::days(1)))
        .fetch_one(&mut *tx)
        .await?;
        if today >= i64::from(per_day) {
            // The pending row a first sign-up may have just added stays: it is the
            // address's record, and harmless without a request.
            tx.commit().await?;
            return Ok(SignupOutcome::Limited);
        }
        let request_id: i64 = sqlx::query_scalar(
            "INSERT INTO web_signups (subscriber_id, name, requested_at, requested_ip) \
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(id)
        .bind(name.map(HeaderText::as_str))
        .bind(ts(now))
        .bind(ip)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(SignupOutcome::Confirm {
            request_id,
            subscriber_id: id,
            email: stored,
            name: name.cloned(),
        })
    }

    /// How many sign-up requests subscriber `id` has had (each one mailed a link).
    pub async fn web_signup_requests(&self, id: i64) -> Result<u64, StoreError> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM web_signups WHERE subscriber_id = $1")
                .bind(id)
                .fetch_one(&self.pool)
                .await?;
        Ok(n.max(0) as u64)
    }

    /// The subscriber a token names (the one kept, if that id was merged into another).
    pub async fn web_subscriber(&self, id: i64) -> Result<Option<WebSubscriber>, StoreError> {
        let Some(row) = sqlx::query(concat!(
            "SELECT id, email, status FROM subscribers WHERE id = ",
            current_id!("1")
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        Ok(Some(WebSubscriber {
            id: row.try_get("id")?,
            email: email_from_db(row.try_get("email")?)?,
            status: status_from_db(row.try_get("status")?)?,
        }))
    }

    /// Sign-up request `request_id` (a confirmation link names it), with whether it is
    /// open and was made since `since`.
    pub async fn web_signup_request(
        &self,
        request_id: i64,
        since: DateTime<Utc>,
    ) -> Result<Option<WebSignupRequest>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT s.id, s.email, s.status, \
             CASE WHEN w.closed_at IS NULL AND w.requested_at >= $2 THEN 1 ELSE 0 END AS open \
             FROM web_signups w JOIN subscribers s ON s.id = w.subscriber_id WHERE w.id = $1",
        )
        .bind(request_id)
        .bind(ts(since))
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        Ok(Some(WebSignupRequest {
            subscriber_id: row.try_get("id")?,
            email: email_from_db(row.try_get("email")?)?,
            status: status_from_db(row.try_get("status")?)?,
            open: row.try_get::<i64, _>("open")? != 0,
        }))
    }

    /// Confirms sign-up request `request_id` if it is open and was made since `since`:
    /// its subscriber becomes active whatever they were (pending, unsubscribed,
    /// bounced), with the name that request gave if any, and the consent record says
    /// now, `web` and `ip`. The request is spent, and every other open request of the
    /// subscriber closed with it. One transaction.
    pub async fn web_confirm(
        &self,
        request_id: i64,
        ip: &str,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<ConfirmOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
        let Some(request) = sqlx::query(
            "SELECT w.subscriber_id, w.name, s.status, \
             CASE WHEN w.closed_at IS NULL AND w.requested_at >= $2 THEN 1 ELSE 0 END AS open \
             FROM web_signups w JOIN subscribers s ON s.id = w.subscriber_id WHERE w.id = $1",
        )
        .bind(request_id)
        .bind(ts(since))
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(ConfirmOutcome::Unknown);
        };
        let id: i64 = request.try_get("subscriber_id")?;
        let was = status_from_db(request.try_get("status")?)?;
        if request.try_get::<i64, _>("open")? == 0 {
            return Ok(if was == SubscriberStatus::Active {
                ConfirmOutcome::AlreadyActive
            } else {
                ConfirmOutcome::NotOpen
            });
        }
        let name = name_from_db(request.try_get("name")?)?;
        sqlx::query(
            "UPDATE subscribers SET status = 'active', name = COALESCE($2, name), \
             consent_at = $3, consent_source = 'web', consent_ip = $4, bounce_count = 0, \
             withdrawn_at = NULL, withdrawn_source = NULL, withdrawn_evidence = NULL, updated_at = $3 \
             WHERE id = $1",
        )
        .bind(id)
        .bind(name.as_ref().map(HeaderText::as_str))
        .bind(ts(now))
        .bind(ip)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE web_signups SET confirmed_at = $2, confirmed_ip = $3, closed_at = $2 \
             WHERE id = $1",
        )
        .bind(request_id)
        .bind(ts(now))
        .bind(ip)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE web_signups SET closed_at = $2 WHERE subscriber_id = $1 AND closed_at IS NULL",
        )
        .bind(id)
        .bind(ts(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ConfirmOutcome::Confirmed {
            subscriber_id: id,
            was,
        })
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
        let sent: i64 = sqlx::query_scalar(concat!(
            "SELECT COUNT(*) FROM issues WHERE id = $1 AND ",
            sent!()
        ))
        .bind(id.to_string())
        .fetch_one(&self.pool)
        .await?;
        if sent > 0 {
            self.issue(id).await
        } else {
            Ok(None)
        }
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
        let count = |rows: &[sqlx::any::AnyRow], status: &str| -> Result<u64, StoreError> {
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
