//! Subscribers: add, look up, change status, import, list; and the suppression rule.

use super::{Store, StoreError, from_ts, ts};
use crate::domain::{HeaderText, SubscriberEmail};
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use std::fmt;
use std::str::FromStr;

/// Where a subscriber stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubscriberStatus {
    /// Signed up, not yet confirmed: gets no issues.
    Pending,
    /// Gets every issue.
    Active,
    /// Asked to leave. Suppressed: an import never brings them back.
    Unsubscribed,
    /// Too many permanent failures. Suppressed like an unsubscribe.
    Bounced,
}

impl SubscriberStatus {
    /// The name used in the database, in CSV files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Unsubscribed => "unsubscribed",
            Self::Bounced => "bounced",
        }
    }

    /// Unsubscribed and bounced addresses form the suppression list.
    pub fn is_suppressed(self) -> bool {
        matches!(self, Self::Unsubscribed | Self::Bounced)
    }
}

impl FromStr for SubscriberStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "pending" => Ok(Self::Pending),
            "active" => Ok(Self::Active),
            "unsubscribed" => Ok(Self::Unsubscribed),
            "bounced" => Ok(Self::Bounced),
            other => Err(format!(
                "'{other}' is not a status (pending, active, unsubscribed, bounced)"
            )),
        }
    }
}

impl fmt::Display for SubscriberStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When, how and from where a subscriber agreed to get the newsletter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Consent {
    pub at: Option<DateTime<Utc>>,
    /// How: `cli`, `import:FILE`, `web`, ….
    pub source: Option<String>,
    /// From where: the sign-up request's address, for the web.
    pub ip: Option<String>,
}

/// A subscriber as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    /// Tokens sign this id; it is never reused.
    pub id: i64,
    pub email: SubscriberEmail,
    pub name: Option<HeaderText>,
    pub status: SubscriberStatus,
    pub consent: Consent,
    /// Permanent failures since the last successful delivery.
    pub bounce_count: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A subscriber to add.
#[derive(Debug, Clone)]
pub struct NewSubscriber {
    pub email: SubscriberEmail,
    pub name: Option<HeaderText>,
    /// `Active` for the command line and imports, `Pending` for a web sign-up.
    pub status: SubscriberStatus,
    pub consent: Consent,
}

/// One row of an import, already parsed. `line` is where it came from, for the report.
#[derive(Debug, Clone)]
pub struct ImportRow {
    pub line: u64,
    pub email: SubscriberEmail,
    pub name: Option<HeaderText>,
}

/// What an import did with one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportAction {
    /// A new, active subscriber.
    Added,
    /// Known already; the name changed.
    Updated,
    /// Known already, nothing to change.
    Unchanged,
    /// On the suppression list: left as it was.
    SkippedSuppressed(SubscriberStatus),
}

fn corrupt(what: &'static str, value: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        what,
        value: value.into(),
    }
}

pub(super) fn status_from_db(raw: &str) -> Result<SubscriberStatus, StoreError> {
    raw.parse().map_err(|_| corrupt("subscriber status", raw))
}

pub(super) fn email_from_db(raw: &str) -> Result<SubscriberEmail, StoreError> {
    SubscriberEmail::parse(raw).map_err(|_| corrupt("subscriber email", raw))
}

pub(super) fn name_from_db(raw: Option<String>) -> Result<Option<HeaderText>, StoreError> {
    raw.map(|n| HeaderText::parse(&n).map_err(|_| corrupt("subscriber name", n)))
        .transpose()
}

fn subscriber_from_row(row: &SqliteRow) -> Result<Subscriber, StoreError> {
    Ok(Subscriber {
        id: row.try_get("id")?,
        email: email_from_db(row.try_get("email")?)?,
        name: name_from_db(row.try_get("name")?)?,
        status: status_from_db(row.try_get("status")?)?,
        consent: Consent {
            at: row.try_get::<Option<i64>, _>("consent_at")?.map(from_ts),
            source: row.try_get("consent_source")?,
            ip: row.try_get("consent_ip")?,
        },
        bounce_count: row.try_get::<i64, _>("bounce_count")?.max(0) as u32,
        created_at: from_ts(row.try_get("created_at")?),
        updated_at: from_ts(row.try_get("updated_at")?),
    })
}

impl Store {
    /// Adds a subscriber, or returns the one already known under that address (whatever
    /// its status: a suppressed address is not brought back by adding it again).
    pub async fn add_subscriber(
        &self,
        new: &NewSubscriber,
        now: DateTime<Utc>,
    ) -> Result<(Subscriber, bool), StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO subscribers (email, name, status, consent_at, consent_source, \
             consent_ip, bounce_count, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?7) ON CONFLICT (email) DO NOTHING",
        )
        .bind(new.email.as_str().to_owned())
        .bind(new.name.as_ref().map(|n| n.as_str().to_owned()))
        .bind(new.status.as_str())
        .bind(new.consent.at.map(ts))
        .bind(new.consent.source.clone())
        .bind(new.consent.ip.clone())
        .bind(ts(now))
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1;
        let subscriber = self
            .subscriber_by_email(&new.email)
            .await?
            .ok_or_else(|| corrupt("subscriber just written", new.email.as_str()))?;
        Ok((subscriber, inserted))
    }

    /// The subscriber with this id.
    pub async fn subscriber(&self, id: i64) -> Result<Option<Subscriber>, StoreError> {
        let sql = "SELECT id, email, name, status, consent_at, consent_source, consent_ip, \
                   bounce_count, created_at, updated_at FROM subscribers WHERE id = ?1";
        sqlx::query(sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(subscriber_from_row)
            .transpose()
    }

    /// The subscriber with this address (the domain compares case-insensitively, because
    /// [`SubscriberEmail`] lower-cases it).
    pub async fn subscriber_by_email(
        &self,
        email: &SubscriberEmail,
    ) -> Result<Option<Subscriber>, StoreError> {
        sqlx::query(
            "SELECT id, email, name, status, consent_at, consent_source, consent_ip, \
             bounce_count, created_at, updated_at FROM subscribers WHERE email = ?1",
        )
        .bind(email.as_str().to_owned())
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(subscriber_from_row)
        .transpose()
    }

    /// Every subscriber, or those with `status`, in the order they were added.
    pub async fn subscribers(
        &self,
        status: Option<SubscriberStatus>,
    ) -> Result<Vec<Subscriber>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, email, name, status, consent_at, consent_source, consent_ip, \
             bounce_count, created_at, updated_at FROM subscribers \
             WHERE ?1 IS NULL OR status = ?1 ORDER BY id",
        )
        .bind(status.map(SubscriberStatus::as_str))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(subscriber_from_row).collect()
    }

    /// How many subscribers have `status`.
    pub async fn count_subscribers(&self, status: SubscriberStatus) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM subscribers WHERE status = ?1")
            .bind(status.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(n.max(0) as u64)
    }

    /// Sets a subscriber's status; returns the status it had. Unknown ids are an error.
    pub async fn set_status(
        &self,
        id: i64,
        status: SubscriberStatus,
        now: DateTime<Utc>,
    ) -> Result<SubscriberStatus, StoreError> {
        let mut tx = self.pool.begin().await?;
        let before: Option<String> =
            sqlx::query_scalar("SELECT status FROM subscribers WHERE id = ?1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let before = status_from_db(&before.ok_or(StoreError::NoSuchSubscriber(id))?)?;
        if before != status {
            sqlx::query("UPDATE subscribers SET status = ?2, updated_at = ?3 WHERE id = ?1")
                .bind(id)
                .bind(status.as_str())
                .bind(ts(now))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(before)
    }

    /// Unsubscribes `id` (the inbox worker and the web's one-click POST call this).
    /// Returns the status it had.
    pub async fn unsubscribe(
        &self,
        id: i64,
        now: DateTime<Utc>,
    ) -> Result<SubscriberStatus, StoreError> {
        self.set_status(id, SubscriberStatus::Unsubscribed, now)
            .await
    }

    /// Makes a pending subscriber active and records the confirmation as their consent
    /// (the web's confirm link). Returns the status it had; only `pending` changes.
    pub async fn confirm(
        &self,
        id: i64,
        consent: &Consent,
        now: DateTime<Utc>,
    ) -> Result<SubscriberStatus, StoreError> {
        let before = self
            .subscriber(id)
            .await?
            .ok_or(StoreError::NoSuchSubscriber(id))?
            .status;
        if before == SubscriberStatus::Pending {
            sqlx::query(
                "UPDATE subscribers SET status = 'active', consent_at = ?2, \
                 consent_source = ?3, consent_ip = ?4, updated_at = ?5 \
                 WHERE id = ?1 AND status = 'pending'",
            )
            .bind(id)
            .bind(consent.at.map(ts).unwrap_or(ts(now)))
            .bind(consent.source.clone())
            .bind(consent.ip.clone())
            .bind(ts(now))
            .execute(&self.pool)
            .await?;
        }
        Ok(before)
    }

    /// Counts one permanent failure (a 5xx at send time, or a DSN read by the inbox
    /// worker). An active subscriber with `threshold` of them becomes `bounced`.
    /// Returns the status after.
    pub async fn record_bounce(
        &self,
        id: i64,
        threshold: u32,
        now: DateTime<Utc>,
    ) -> Result<SubscriberStatus, StoreError> {
        let mut tx = self.pool.begin().await?;
        bounce(&mut tx, id, threshold, now).await?;
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM subscribers WHERE id = ?1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        tx.commit().await?;
        status_from_db(&status.ok_or(StoreError::NoSuchSubscriber(id))?)
    }

    /// Imports rows in one transaction: new addresses are added as active with
    /// `consent`; known ones get the row's name if it has one; suppressed addresses
    /// (unsubscribed, bounced) are left alone. Returns what happened to each row.
    pub async fn import_subscribers(
        &self,
        rows: &[ImportRow],
        consent: &Consent,
        now: DateTime<Utc>,
    ) -> Result<Vec<(u64, ImportAction)>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut out = Vec::with_capacity(rows.len());
        let now = ts(now);
        for row in rows {
            let existing = sqlx::query("SELECT id, name, status FROM subscribers WHERE email = ?1")
                .bind(row.email.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            let action = match existing {
                None => {
                    sqlx::query(
                        "INSERT INTO subscribers (email, name, status, consent_at, \
                         consent_source, consent_ip, bounce_count, created_at, updated_at) \
                         VALUES (?1, ?2, 'active', ?3, ?4, NULL, 0, ?5, ?5)",
                    )
                    .bind(row.email.as_str())
                    .bind(row.name.as_ref().map(HeaderText::as_str))
                    .bind(consent.at.map(ts).unwrap_or(now))
                    .bind(consent.source.as_deref())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    ImportAction::Added
                }
                Some(found) => {
                    let status = status_from_db(found.try_get("status")?)?;
                    let name: Option<&str> = found.try_get("name")?;
                    let new_name = row.name.as_ref().map(HeaderText::as_str);
                    if status.is_suppressed() {
                        ImportAction::SkippedSuppressed(status)
                    } else if new_name.is_some() && new_name != name {
                        sqlx::query(
                            "UPDATE subscribers SET name = ?2, updated_at = ?3 WHERE id = ?1",
                        )
                        .bind(found.try_get::<i64, _>("id")?)
                        .bind(new_name)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                        ImportAction::Updated
                    } else {
                        ImportAction::Unchanged
                    }
                }
            };
            out.push((row.line, action));
        }
        tx.commit().await?;
        Ok(out)
    }
}

/// One more permanent failure for `id`, inside a transaction.
pub(super) async fn bounce(
    tx: &mut sqlx::SqliteConnection,
    id: i64,
    threshold: u32,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE subscribers SET bounce_count = bounce_count + 1, updated_at = ?3, \
         status = CASE WHEN status = 'active' AND bounce_count + 1 >= ?2 \
                       THEN 'bounced' ELSE status END \
         WHERE id = ?1",
    )
    .bind(id)
    .bind(i64::from(threshold.max(1)))
    .bind(ts(now))
    .execute(&mut *tx)
    .await?;
    Ok(())
}
