//! Subscribers: add, look up, change status, import, list; and the suppression rule.

use super::{Store, StoreError, Withdrawn, from_ts, ts};
use crate::domain::{HeaderText, SubscriberEmail};
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use std::collections::HashMap;
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
    /// Set when an operator brought a bounced address back.
    pub reactivated: Option<Reactivated>,
    /// The consent record's other half: set when the subscriber left, by any channel.
    pub withdrawn: Option<Withdrawn>,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportAction {
    /// A new, active subscriber.
    Added,
    /// Known already; the name changed from `old_name` to `new_name`.
    Updated {
        old_name: Option<HeaderText>,
        new_name: HeaderText,
    },
    /// Known already, nothing to change.
    Unchanged,
    /// On the suppression list: left as it was.
    SkippedSuppressed(SubscriberStatus),
    /// The same mailbox (in any spelling) appeared earlier in the file, on this line;
    /// ignored.
    Duplicate(u64),
}

/// Who brought a bounced subscriber back by hand, and when (`subscribers reactivate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reactivated {
    pub at: DateTime<Utc>,
    pub by: String,
}

/// What `reactivate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReactivateOutcome {
    /// The bounced subscriber is active again.
    Reactivated(Box<Subscriber>),
    /// Not bounced: left as it was. An unsubscribed address comes back only through the
    /// subscriber's own double opt-in; a pending one only through its confirmation.
    NotBounced(SubscriberStatus),
    /// No subscriber has this address.
    Unknown,
}

/// Two rows for one mailbox, merged into one when the store was brought up to date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberMerge {
    /// The row folded in; its id still resolves to `kept_id`.
    pub merged_id: i64,
    pub merged_email: String,
    pub merged_status: SubscriberStatus,
    /// The row kept: the oldest, whose spelling is used for sending.
    pub kept_id: i64,
    pub kept_email: String,
    /// The kept row's status after the merge (the strongest of the two).
    pub kept_status: SubscriberStatus,
    pub merged_at: DateTime<Utc>,
}

/// The columns [`subscriber_from_row`] reads.
macro_rules! subscriber_columns {
    () => {
        "id, email, name, status, consent_at, consent_source, consent_ip, bounce_count, \
         created_at, updated_at, reactivated_at, reactivated_by, withdrawn_at, \
         withdrawn_source, withdrawn_evidence"
    };
}

/// The id a token names, after merges: a merged row's id resolves to the row kept.
macro_rules! current_id {
    ($n:literal) => {
        concat!(
            "COALESCE((SELECT kept_id FROM subscriber_merges WHERE merged_id = ?",
            $n,
            "), ?",
            $n,
            ")"
        )
    };
}
pub(super) use current_id;

/// The subscriber id `id` stands for now (itself, or the row it was merged into).
pub(super) async fn resolve_id(
    conn: &mut sqlx::SqliteConnection,
    id: i64,
) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(concat!("SELECT ", current_id!("1")))
        .bind(id)
        .fetch_one(&mut *conn)
        .await?)
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
        reactivated: match (
            row.try_get::<Option<i64>, _>("reactivated_at")?,
            row.try_get::<Option<String>, _>("reactivated_by")?,
        ) {
            (Some(at), Some(by)) => Some(Reactivated {
                at: from_ts(at),
                by,
            }),
            _ => None,
        },
        withdrawn: match (
            row.try_get::<Option<i64>, _>("withdrawn_at")?,
            row.try_get::<Option<String>, _>("withdrawn_source")?,
        ) {
            (Some(at), Some(source)) => Some(Withdrawn {
                at: from_ts(at),
                source,
                evidence: row.try_get("withdrawn_evidence")?,
            }),
            _ => None,
        },
    })
}

impl Store {
    /// Adds a subscriber, or returns the one already known under that address in any
    /// spelling (whatever its status: a suppressed address is not brought back by adding
    /// it again).
    pub async fn add_subscriber(
        &self,
        new: &NewSubscriber,
        now: DateTime<Utc>,
    ) -> Result<(Subscriber, bool), StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO subscribers (email, name, status, consent_at, consent_source, \
             consent_ip, bounce_count, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?7) ON CONFLICT DO NOTHING",
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

    /// The subscriber with this id (a merged twin's id gives the row it was merged into).
    pub async fn subscriber(&self, id: i64) -> Result<Option<Subscriber>, StoreError> {
        let sql = concat!(
            "SELECT ",
            subscriber_columns!(),
            " FROM subscribers WHERE id = ",
            current_id!("1")
        );
        sqlx::query(sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(subscriber_from_row)
            .transpose()
    }

    /// The subscriber with this address in any spelling ([`SubscriberEmail::key`]).
    pub async fn subscriber_by_email(
        &self,
        email: &SubscriberEmail,
    ) -> Result<Option<Subscriber>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            subscriber_columns!(),
            " FROM subscribers WHERE lower(email) = ?1"
        ))
        .bind(email.key())
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
        let rows = sqlx::query(concat!(
            "SELECT ",
            subscriber_columns!(),
            " FROM subscribers WHERE ?1 IS NULL OR status = ?1 ORDER BY id"
        ))
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
        let id = resolve_id(&mut tx, id).await?;
        bounce(&mut tx, id, threshold, now).await?;
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM subscribers WHERE id = ?1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        tx.commit().await?;
        status_from_db(&status.ok_or(StoreError::NoSuchSubscriber(id))?)
    }

    /// Imports rows in one transaction (see [`ImportSession`]). Returns what happened to
    /// each row, in row order.
    pub async fn import_subscribers(
        &self,
        rows: &[ImportRow],
        consent: &Consent,
        now: DateTime<Utc>,
    ) -> Result<Vec<(u64, ImportAction)>, StoreError> {
        let mut session = self.begin_import(consent, now).await?;
        let actions = session.apply(rows).await?;
        session.commit().await?;
        Ok(actions)
    }

    /// Starts an import: one transaction that rows are applied to batch by batch, so a
    /// file of any length is imported in bounded memory and all at once or not at all.
    pub async fn begin_import(
        &self,
        consent: &Consent,
        now: DateTime<Utc>,
    ) -> Result<ImportSession, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        // Temporary tables belong to the connection, which the transaction holds: the
        // mailboxes seen so far in the file, and the batch being applied. `email_key` has
        // no type on purpose: a TEXT column's affinity would keep SQLite from using the
        // `lower(email)` index when comparing with it.
        for sql in [
            "DROP TABLE IF EXISTS temp.import_seen",
            "DROP TABLE IF EXISTS temp.import_rows",
            "CREATE TEMP TABLE import_seen \
             (email_key PRIMARY KEY, line INTEGER NOT NULL) WITHOUT ROWID",
            "CREATE TEMP TABLE import_rows \
             (email_key PRIMARY KEY, email TEXT NOT NULL, line INTEGER NOT NULL, name TEXT)",
        ] {
            sqlx::query(sql).execute(&mut *tx).await?;
        }
        Ok(ImportSession {
            tx,
            consent_at: consent.at.map(ts).unwrap_or(ts(now)),
            consent_source: consent.source.clone(),
            now: ts(now),
        })
    }

    /// Merges found when the store was brought up to date, oldest first.
    pub async fn subscriber_merges(&self) -> Result<Vec<SubscriberMerge>, StoreError> {
        let rows = sqlx::query(
            "SELECT merged_id, merged_email, merged_status, kept_id, kept_email, kept_status, \
             merged_at FROM subscriber_merges ORDER BY merged_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(SubscriberMerge {
                    merged_id: row.try_get("merged_id")?,
                    merged_email: row.try_get("merged_email")?,
                    merged_status: status_from_db(row.try_get("merged_status")?)?,
                    kept_id: row.try_get("kept_id")?,
                    kept_email: row.try_get("kept_email")?,
                    kept_status: status_from_db(row.try_get("kept_status")?)?,
                    merged_at: from_ts(row.try_get("merged_at")?),
                })
            })
            .collect()
    }

    /// Logs each merge not reported yet, once: the operator learns at the first start
    /// after the upgrade which addresses were folded together.
    pub(super) async fn report_merges(&self) -> Result<(), StoreError> {
        let unreported: Vec<i64> =
            sqlx::query_scalar("SELECT merged_id FROM subscriber_merges WHERE reported_at IS NULL")
                .fetch_all(&self.pool)
                .await?;
        if unreported.is_empty() {
            return Ok(());
        }
        for merge in self.subscriber_merges().await? {
            if unreported.contains(&merge.merged_id) {
                tracing::warn!(
                    merged = %merge.merged_email,
                    merged_id = merge.merged_id,
                    merged_status = %merge.merged_status,
                    kept = %merge.kept_email,
                    kept_id = merge.kept_id,
                    status = %merge.kept_status,
                    "one mailbox, one subscriber: merged {} into {} (now {})",
                    merge.merged_email,
                    merge.kept_email,
                    merge.kept_status
                );
            }
        }
        sqlx::query("UPDATE subscriber_merges SET reported_at = ?1 WHERE reported_at IS NULL")
            .bind(ts(Utc::now()))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Brings a bounced address back to active (`subscribers reactivate`), recording `by`
    /// and `now`; its bounce count starts again from zero. Any other status is left
    /// alone: an unsubscribed address needs the subscriber's own double opt-in.
    pub async fn reactivate(
        &self,
        email: &SubscriberEmail,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<ReactivateOutcome, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let row = sqlx::query("SELECT id, status FROM subscribers WHERE lower(email) = ?1")
            .bind(email.key())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Ok(ReactivateOutcome::Unknown);
        };
        let id: i64 = row.try_get("id")?;
        let status = status_from_db(row.try_get("status")?)?;
        if status != SubscriberStatus::Bounced {
            return Ok(ReactivateOutcome::NotBounced(status));
        }
        sqlx::query(
            "UPDATE subscribers SET status = 'active', bounce_count = 0, reactivated_at = ?2, \
             reactivated_by = ?3, updated_at = ?2 WHERE id = ?1 AND status = 'bounced'",
        )
        .bind(id)
        .bind(ts(now))
        .bind(by)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let subscriber = self
            .subscriber(id)
            .await?
            .ok_or(StoreError::NoSuchSubscriber(id))?;
        Ok(ReactivateOutcome::Reactivated(Box::new(subscriber)))
    }
}

/// An import in progress: one transaction, applied batch by batch.
///
/// New addresses are added as active with the import's consent; known ones get the
/// row's name if it has one and it differs (reported with the old name); suppressed
/// addresses (unsubscribed, bounced) are left alone; a mailbox seen earlier in the file
/// (in any spelling) is a duplicate. Each batch's decisions are a few set-based
/// statements over a temporary table, so 100 000 rows take about a second. Dropped
/// without [`ImportSession::commit`], nothing is imported.
pub struct ImportSession {
    tx: sqlx::Transaction<'static, sqlx::Sqlite>,
    consent_at: i64,
    consent_source: Option<String>,
    now: i64,
}

impl ImportSession {
    /// Applies one batch of rows; returns what happened to each, in row order.
    pub async fn apply(
        &mut self,
        rows: &[ImportRow],
    ) -> Result<Vec<(u64, ImportAction)>, StoreError> {
        let tx = &mut self.tx;
        let mut actions: HashMap<u64, ImportAction> = HashMap::new();
        // Duplicates inside the batch: the first row counts, later ones are reported.
        let mut first_line: HashMap<String, u64> = HashMap::with_capacity(rows.len());
        let mut unique: Vec<(String, &ImportRow)> = Vec::with_capacity(rows.len());
        for row in rows {
            let key = row.email.key();
            match first_line.get(&key) {
                Some(first) => {
                    actions.insert(row.line, ImportAction::Duplicate(*first));
                }
                None => {
                    first_line.insert(key.clone(), row.line);
                    unique.push((key, row));
                }
            }
        }
        drop(first_line);

        const CHUNK: usize = 500;
        for chunk in unique.chunks(CHUNK) {
            // Only placeholders are spliced in; every value is bound.
            let mut sql =
                String::from("INSERT INTO temp.import_rows (email_key, email, line, name) VALUES ");
            for i in 0..chunk.len() {
                sql.push_str(if i == 0 {
                    "(?, ?, ?, ?)"
                } else {
                    ", (?, ?, ?, ?)"
                });
            }
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (key, row) in chunk {
                query = query
                    .bind(key.as_str())
                    .bind(row.email.as_str())
                    .bind(row.line as i64)
                    .bind(row.name.as_ref().map(HeaderText::as_str));
            }
            query.execute(&mut **tx).await?;
        }

        // Mailboxes seen in an earlier batch.
        let earlier = sqlx::query(
            "SELECT i.line, s.line AS first FROM temp.import_rows i \
             JOIN temp.import_seen s ON s.email_key = i.email_key",
        )
        .fetch_all(&mut **tx)
        .await?;
        for row in &earlier {
            let line = row.try_get::<i64, _>("line")? as u64;
            let first = row.try_get::<i64, _>("first")? as u64;
            actions.insert(line, ImportAction::Duplicate(first));
        }
        for sql in [
            "DELETE FROM temp.import_rows WHERE email_key IN (SELECT email_key FROM temp.import_seen)",
            "INSERT INTO temp.import_seen (email_key, line) SELECT email_key, line FROM temp.import_rows",
        ] {
            sqlx::query(sql).execute(&mut **tx).await?;
        }

        // Known mailboxes: decide from what is stored before anything changes.
        let known = sqlx::query(
            "SELECT i.line, i.name AS new_name, s.name, s.status \
             FROM temp.import_rows i JOIN subscribers s ON lower(s.email) = i.email_key",
        )
        .fetch_all(&mut **tx)
        .await?;
        for row in &known {
            let line = row.try_get::<i64, _>("line")? as u64;
            let status = status_from_db(row.try_get("status")?)?;
            let new_name: Option<String> = row.try_get("new_name")?;
            let name: Option<String> = row.try_get("name")?;
            let action = match new_name {
                _ if status.is_suppressed() => ImportAction::SkippedSuppressed(status),
                Some(new) if Some(&new) != name.as_ref() => ImportAction::Updated {
                    old_name: name_from_db(name)?,
                    new_name: HeaderText::parse(&new)
                        .map_err(|_| corrupt("imported name", new.clone()))?,
                },
                _ => ImportAction::Unchanged,
            };
            actions.insert(line, action);
        }

        // Driven by the batch, each row finding its subscriber through the mailbox index
        // (`+status` keeps the planner off the status index, which would scan everyone).
        sqlx::query(
            "UPDATE subscribers SET updated_at = ?1, name = \
               (SELECT i.name FROM temp.import_rows i WHERE i.email_key = lower(subscribers.email)) \
             WHERE lower(email) IN (SELECT email_key FROM temp.import_rows WHERE name IS NOT NULL) \
             AND +status IN ('active', 'pending') AND name IS NOT \
               (SELECT i.name FROM temp.import_rows i WHERE i.email_key = lower(subscribers.email))",
        )
        .bind(self.now)
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "INSERT INTO subscribers (email, name, status, consent_at, consent_source, \
             consent_ip, bounce_count, created_at, updated_at) \
             SELECT i.email, i.name, 'active', ?1, ?2, NULL, 0, ?3, ?3 \
             FROM temp.import_rows i \
             WHERE NOT EXISTS (SELECT 1 FROM subscribers s WHERE lower(s.email) = i.email_key) \
             ORDER BY i.line",
        )
        .bind(self.consent_at)
        .bind(self.consent_source.as_deref())
        .bind(self.now)
        .execute(&mut **tx)
        .await?;
        sqlx::query("DELETE FROM temp.import_rows")
            .execute(&mut **tx)
            .await?;

        Ok(rows
            .iter()
            .map(|row| {
                let action = actions.remove(&row.line).unwrap_or(ImportAction::Added);
                (row.line, action)
            })
            .collect())
    }

    /// Makes the whole import visible at once.
    pub async fn commit(mut self) -> Result<(), StoreError> {
        for sql in ["DROP TABLE temp.import_rows", "DROP TABLE temp.import_seen"] {
            sqlx::query(sql).execute(&mut *self.tx).await?;
        }
        self.tx.commit().await?;
        Ok(())
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
