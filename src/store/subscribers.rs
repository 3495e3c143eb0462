//! Subscribers: add, look up, change status, import, list; and the suppression rule.

use super::{Dialect, Store, StoreError, Withdrawn, from_ts, ts};
use crate::domain::{HeaderText, SubscriberEmail};
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use sqlx::Row;
use sqlx::any::AnyRow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
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
            "COALESCE((SELECT kept_id FROM subscriber_merges WHERE merged_id = $",
            $n,
            "), $",
            $n,
            ")"
        )
    };
}
pub(super) use current_id;

/// The subscriber id `id` stands for now (itself, or the row it was merged into).
pub(super) async fn resolve_id(conn: &mut sqlx::AnyConnection, id: i64) -> Result<i64, StoreError> {
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

fn subscriber_from_row(row: &AnyRow) -> Result<Subscriber, StoreError> {
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
             VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $7) ON CONFLICT DO NOTHING",
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
            " FROM subscribers WHERE lower(email) = $1"
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
        self.subscriber_stream(status).try_collect().await
    }

    /// The subscribers with `status` (all of them if `None`) in id order, each as the
    /// store hands it over: a list of any length is written out in constant memory.
    pub fn subscriber_stream(
        &self,
        status: Option<SubscriberStatus>,
    ) -> impl futures::Stream<Item = Result<Subscriber, StoreError>> + Send + '_ {
        sqlx::query(concat!(
            "SELECT ",
            subscriber_columns!(),
            " FROM subscribers WHERE $1 IS NULL OR status = $1 ORDER BY id"
        ))
        .bind(status.map(SubscriberStatus::as_str))
        .fetch(&self.pool)
        .map(|row| subscriber_from_row(&row?))
    }

    /// How many subscribers have `status`.
    pub async fn count_subscribers(&self, status: SubscriberStatus) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM subscribers WHERE status = $1")
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
        let mut tx = self.begin().await?;
        let id = resolve_id(&mut tx, id).await?;
        bounce(&mut tx, id, threshold, now).await?;
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM subscribers WHERE id = $1")
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
        let done = session
            .apply(ImportBatch::new(rows.to_vec(), self.dialect))
            .await?;
        session.commit().await?;
        Ok(done
            .into_iter()
            .map(|(row, action)| (row.line, action))
            .collect())
    }

    /// Starts an import: one transaction that rows are applied to batch by batch, so a
    /// file of any length is imported in bounded memory and all at once or not at all.
    pub async fn begin_import(
        &self,
        consent: &Consent,
        now: DateTime<Utc>,
    ) -> Result<ImportSession, StoreError> {
        let mut tx = self.begin_write().await?;
        // A temporary table belongs to the connection, which the transaction holds: the
        // subscribers met so far in the file, as runs of ids met on consecutive lines
        // (ids `id ..= id + span - 1` first met on lines `line ..= line + span - 1`).
        // Rows the import adds get consecutive ids in file order, so a batch of new
        // addresses is one run, or a few, rather than a row each.
        // PostgreSQL drops it at commit, and a rollback takes its creation back; a SQLite
        // connection may still have one from an import that failed part-way.
        let statements: &[&str] = match self.dialect {
            Dialect::Sqlite => &[
                "DROP TABLE IF EXISTS import_seen",
                "CREATE TEMP TABLE import_seen (id INTEGER PRIMARY KEY, line INTEGER NOT NULL, \
                 span INTEGER NOT NULL)",
            ],
            Dialect::Postgres => &[
                "CREATE TEMP TABLE import_seen (id BIGINT PRIMARY KEY, line BIGINT NOT NULL, \
                 span BIGINT NOT NULL) ON COMMIT DROP",
            ],
        };
        for sql in statements {
            sqlx::query(*sql).execute(&mut *tx).await?;
        }
        // SQLite: the first id AUTOINCREMENT would give now (one past the highest ever
        // handed out). The import holds the write lock, so nobody else takes one.
        let next_id = match self.dialect {
            Dialect::Sqlite => {
                sqlx::query_scalar(
                    "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence \
                     WHERE name = 'subscribers'), 0), \
                     COALESCE((SELECT MAX(id) FROM subscribers), 0)) + 1",
                )
                .fetch_one(&mut *tx)
                .await?
            }
            Dialect::Postgres => 0,
        };
        Ok(ImportSession {
            tx,
            sql: ImportSql::of(self.dialect),
            dialect: self.dialect,
            consent_at: consent.at.map(ts).unwrap_or(ts(now)),
            consent_source: consent.source.clone(),
            now: ts(now),
            next_id,
            expect_new: true,
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
        sqlx::query("UPDATE subscriber_merges SET reported_at = $1 WHERE reported_at IS NULL")
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
        let mut tx = self.begin_write().await?;
        let row = sqlx::query("SELECT id, status FROM subscribers WHERE lower(email) = $1")
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
            "UPDATE subscribers SET status = 'active', bounce_count = 0, reactivated_at = $2, \
             reactivated_by = $3, updated_at = $2 WHERE id = $1 AND status = 'bounced'",
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
/// (in any spelling) is a duplicate. A batch costs a few statements whatever its size:
/// its rows travel as one JSON text each (SQLite's `json_each`, PostgreSQL's
/// `jsonb_array_elements`), so no statement is prepared per row. On SQLite a batch of
/// addresses new to the store (the usual case for a new list) is added by one insert,
/// without a lookup: the unique index finds the known ones anyway, and a batch it
/// refuses is taken back whole and looked up first instead. Dropped without
/// [`ImportSession::commit`], nothing is imported.
pub struct ImportSession {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    sql: ImportSql,
    dialect: Dialect,
    consent_at: i64,
    consent_source: Option<String>,
    now: i64,
    /// SQLite: the id the next new subscriber gets.
    next_id: i64,
    /// SQLite: whether to try adding the next batch without looking it up first (see
    /// [`ImportSession::add_if_all_new`]).
    expect_new: bool,
}

/// A batch of rows made ready for [`ImportSession::apply`]: its duplicates found and its
/// insert written out. None of that needs the store, so it can be done on another thread
/// while the store applies the batch before.
pub struct ImportBatch {
    rows: Vec<ImportRow>,
    /// Every row starts as added; duplicates inside the batch are decided here, the
    /// store's answers change the others.
    actions: Vec<ImportAction>,
    /// The rows that are not duplicates inside the batch, as indexes into `rows`.
    unique: Vec<usize>,
    /// Their mailboxes (`SubscriberEmail::key`), for the lookup.
    keys: Vec<String>,
    /// SQLite: the insert's JSON for every row of `unique`, used when none is known.
    all_new: Option<String>,
}

impl ImportBatch {
    /// Prepares `rows` for a store on `dialect`.
    pub fn new(rows: Vec<ImportRow>, dialect: Dialect) -> Self {
        let mut actions: Vec<ImportAction> = vec![ImportAction::Added; rows.len()];
        let mut keys: Vec<String> = rows.iter().map(|row| row.email.key()).collect();
        // Duplicates inside the batch: the first row counts, later ones are reported.
        let mut unique: Vec<usize> = Vec::with_capacity(rows.len());
        let mut first_line: HashMap<&str, u64> = HashMap::with_capacity(rows.len());
        for (at, key) in keys.iter().enumerate() {
            match first_line.entry(key) {
                Entry::Occupied(first) => actions[at] = ImportAction::Duplicate(*first.get()),
                Entry::Vacant(first) => {
                    first.insert(rows[at].line);
                    unique.push(at);
                }
            }
        }
        drop(first_line);
        if unique.len() < keys.len() {
            keys = unique
                .iter()
                .map(|at| std::mem::take(&mut keys[*at]))
                .collect();
        }
        let all_new = (dialect == Dialect::Sqlite && !unique.is_empty())
            .then(|| sqlite_insert_json(&rows, &unique));
        Self {
            rows,
            actions,
            unique,
            keys,
            all_new,
        }
    }
}

/// `{"email": name, …}` for SQLite's insert: json_each hands each pair over as two
/// columns, where an array per row would need a function call per field to take apart.
fn sqlite_insert_json(rows: &[ImportRow], unique: &[usize]) -> String {
    // Room for every address and name with their quotes and separators, so the text is
    // not copied as it grows.
    let size: usize = unique
        .iter()
        .map(|at| {
            let row = &rows[*at];
            row.email.as_str().len() + row.name.as_ref().map_or(4, |n| n.as_str().len()) + 6
        })
        .sum();
    let mut out = Vec::with_capacity(size + 2);
    serde_json::to_writer(&mut out, &JsonObject(&email_name_pairs(rows, unique)))
        .expect("strings serialise to JSON");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// (address, name) of the rows at `positions`.
fn email_name_pairs<'a>(
    rows: &'a [ImportRow],
    positions: &[usize],
) -> Vec<(&'a str, Option<&'a str>)> {
    positions
        .iter()
        .map(|at| {
            let row = &rows[*at];
            (
                row.email.as_str(),
                row.name.as_ref().map(HeaderText::as_str),
            )
        })
        .collect()
}

impl ImportSession {
    /// Applies one batch; returns its rows with what happened to each, in row order.
    pub async fn apply(
        &mut self,
        batch: ImportBatch,
    ) -> Result<Vec<(ImportRow, ImportAction)>, StoreError> {
        let ImportBatch {
            rows,
            mut actions,
            unique,
            keys,
            all_new,
        } = batch;
        // (id, line) of every subscriber this batch meets first.
        let mut seen: Vec<(i64, u64)> = Vec::with_capacity(unique.len());
        let added = match all_new {
            Some(json) if self.expect_new => {
                self.add_if_all_new(json, &rows, &unique, &mut seen).await?
            }
            _ => false,
        };
        if !added && !unique.is_empty() {
            let any_known = self
                .apply_looked_up(&rows, &unique, &keys, &mut actions, &mut seen)
                .await?;
            // A list that meets known addresses tends to go on meeting them: look them up
            // first until a batch meets none.
            self.expect_new = !any_known;
        }
        drop(keys);
        self.record_seen(seen).await?;
        Ok(rows.into_iter().zip(actions).collect())
    }

    /// SQLite: adds every row of the batch at once if none is known, which saves looking
    /// each up when a list is new to the store. The insert is one statement: if any row
    /// is a mailbox the store holds (from before the import or from an earlier batch),
    /// the unique index refuses it and SQLite takes the whole statement back, and the
    /// batch is looked up instead. Returns whether the rows were added.
    async fn add_if_all_new(
        &mut self,
        json: String,
        rows: &[ImportRow],
        unique: &[usize],
        seen: &mut Vec<(i64, u64)>,
    ) -> Result<bool, StoreError> {
        match self.insert_sqlite(json, unique.len()).await {
            Ok(()) => {}
            Err(StoreError::Database(sqlx::Error::Database(e)))
                if e.kind() == sqlx::error::ErrorKind::UniqueViolation =>
            {
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
        let first = self.next_id - unique.len() as i64;
        seen.extend((first..).zip(unique.iter().map(|at| rows[*at].line)));
        Ok(true)
    }

    /// Adds the `count` rows of `json` (see [`sqlite_insert_json`]) with the next ids, in
    /// file order: the ids AUTOINCREMENT would hand out (`next_id + position`), given
    /// rather than drawn so no statement is needed to learn them.
    async fn insert_sqlite(&mut self, json: String, count: usize) -> Result<(), StoreError> {
        let done = sqlx::query(self.sql.insert)
            .bind(json)
            .bind(self.consent_at)
            .bind(self.consent_source.as_deref())
            .bind(self.now)
            .bind(self.next_id)
            .execute(&mut *self.tx)
            .await?;
        if done.rows_affected() != count as u64 {
            return Err(corrupt(
                "import batch",
                format!("{} of {count} rows added", done.rows_affected()),
            ));
        }
        self.next_id += count as i64;
        Ok(())
    }

    /// Looks the batch's mailboxes up, renames the known ones whose name changed and adds
    /// the others. Returns whether any was known.
    async fn apply_looked_up(
        &mut self,
        rows: &[ImportRow],
        unique: &[usize],
        keys: &[String],
        actions: &mut [ImportAction],
        seen: &mut Vec<(i64, u64)>,
    ) -> Result<bool, StoreError> {
        // Known mailboxes, and whether an earlier batch met them: decided from what is
        // stored before anything changes. `lower(s.email) = j.value` finds each through
        // the mailbox index. The answer comes back as one JSON text rather than a row per
        // match, which would cost a hand-over between threads each.
        let known: String = sqlx::query_scalar(self.sql.known)
            .bind(json(&keys))
            .fetch_one(&mut *self.tx)
            .await?;
        type Known = (usize, i64, Option<String>, String, Option<u64>);
        let known: Vec<Known> = serde_json::from_str(&known)
            .map_err(|e| corrupt("import batch answer", e.to_string()))?;
        let any_known = !known.is_empty();
        let mut is_known = vec![false; unique.len()];
        // (id, name) to rename.
        let mut renames: Vec<(i64, &str)> = Vec::new();
        for (pos, id, name, status, first) in known {
            let at = *unique
                .get(pos)
                .ok_or_else(|| corrupt("import batch position", pos.to_string()))?;
            is_known[pos] = true;
            if let Some(first) = first {
                actions[at] = ImportAction::Duplicate(first);
                continue;
            }
            seen.push((id, rows[at].line));
            let status = status_from_db(&status)?;
            actions[at] = match &rows[at].name {
                _ if status.is_suppressed() => ImportAction::SkippedSuppressed(status),
                Some(new) if Some(new.as_str()) != name.as_deref() => {
                    renames.push((id, new.as_str()));
                    ImportAction::Updated {
                        old_name: name_from_db(name)?,
                        new_name: new.clone(),
                    }
                }
                _ => ImportAction::Unchanged,
            };
        }

        if !renames.is_empty() {
            sqlx::query(self.sql.rename)
                .bind(json(&renames))
                .bind(self.now)
                .execute(&mut *self.tx)
                .await?;
        }

        // New mailboxes, added in file order so ids follow it.
        let new: Vec<usize> = unique
            .iter()
            .zip(&is_known)
            .filter(|(_, known)| !**known)
            .map(|(at, _)| *at)
            .collect();
        if new.is_empty() {
            return Ok(any_known);
        }
        match self.dialect {
            Dialect::Sqlite => {
                self.insert_sqlite(sqlite_insert_json(rows, &new), new.len())
                    .await?;
                let first = self.next_id - new.len() as i64;
                seen.extend((first..).zip(new.iter().map(|at| rows[*at].line)));
            }
            Dialect::Postgres => {
                // An identity column promises unique ids, not consecutive ones: the
                // insert says which id each mailbox got.
                let ids: Vec<(i64, String)> = sqlx::query_as(self.sql.insert)
                    .bind(json(&email_name_pairs(rows, &new)))
                    .bind(self.consent_at)
                    .bind(self.consent_source.as_deref())
                    .bind(self.now)
                    .fetch_all(&mut *self.tx)
                    .await?;
                if ids.len() != new.len() {
                    return Err(corrupt(
                        "import batch",
                        format!("{} of {} rows added", ids.len(), new.len()),
                    ));
                }
                let by_key: HashMap<String, i64> =
                    ids.into_iter().map(|(id, key)| (key, id)).collect();
                for at in new {
                    let row = &rows[at];
                    let key = row.email.key();
                    let id = by_key
                        .get(&key)
                        .ok_or_else(|| corrupt("import batch id", key.clone()))?;
                    seen.push((*id, row.line));
                }
            }
        }
        Ok(any_known)
    }

    /// Notes which subscribers the batch met first, as runs of ids met on consecutive
    /// lines: a batch of new rows is one run, or a few.
    async fn record_seen(&mut self, mut seen: Vec<(i64, u64)>) -> Result<(), StoreError> {
        seen.sort_unstable();
        // (first id, its line, how many)
        let mut runs: Vec<(i64, u64, i64)> = Vec::new();
        for (id, line) in seen {
            match runs.last_mut() {
                Some((first, first_line, span))
                    if *first + *span == id && *first_line + *span as u64 == line =>
                {
                    *span += 1;
                }
                _ => runs.push((id, line, 1)),
            }
        }
        if !runs.is_empty() {
            sqlx::query(self.sql.seen)
                .bind(json(&runs))
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }

    /// Makes the whole import visible at once.
    pub async fn commit(mut self) -> Result<(), StoreError> {
        if self.dialect == Dialect::Sqlite {
            sqlx::query("DROP TABLE import_seen")
                .execute(&mut *self.tx)
                .await?;
        }
        self.tx.commit().await?;
        Ok(())
    }
}

/// The import's batch statements, which read JSON each backend's own way. `$1` is the
/// batch as JSON; `known` answers with one JSON text `[[position, id, name, status,
/// line seen], …]`, positions counted from 0, the line found in the runs of
/// `import_seen`. SQLite's insert reads `{"email": name, …}` and gives ids from `$5`.
struct ImportSql {
    known: &'static str,
    rename: &'static str,
    /// PostgreSQL's answers `(id, lower(email))` per row added.
    insert: &'static str,
    seen: &'static str,
}

impl ImportSql {
    fn of(dialect: Dialect) -> Self {
        match dialect {
            Dialect::Sqlite => Self {
                known: "SELECT json_group_array(json_array(j.key, s.id, s.name, s.status, \
                        (SELECT CASE WHEN s.id < seen.id + seen.span \
                                THEN seen.line + s.id - seen.id END \
                         FROM import_seen seen WHERE seen.id <= s.id \
                         ORDER BY seen.id DESC LIMIT 1))) \
                        FROM json_each($1) j \
                        JOIN subscribers s ON lower(s.email) = j.value",
                rename: "UPDATE subscribers SET name = j.value ->> 1, updated_at = $2 \
                         FROM json_each($1) j WHERE subscribers.id = j.value ->> 0",
                insert: "INSERT INTO subscribers (id, email, name, status, consent_at, \
                         consent_source, consent_ip, bounce_count, created_at, updated_at) \
                         SELECT $5 + j.rowid, j.key, j.value, 'active', $2, $3, \
                         NULL, 0, $4, $4 FROM json_each($1) j ORDER BY j.rowid",
                seen: "INSERT INTO import_seen (id, line, span) \
                       SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2 FROM json_each($1) j",
            },
            Dialect::Postgres => Self {
                known: "SELECT COALESCE(json_agg(json_build_array(j.key - 1, s.id, s.name, \
                        s.status, \
                        (SELECT CASE WHEN s.id < seen.id + seen.span \
                                THEN seen.line + s.id - seen.id END \
                         FROM import_seen seen WHERE seen.id <= s.id \
                         ORDER BY seen.id DESC LIMIT 1))), '[]')::text \
                        FROM jsonb_array_elements_text($1::jsonb) WITH ORDINALITY AS j(value, key) \
                        JOIN subscribers s ON lower(s.email) = j.value",
                rename: "UPDATE subscribers SET name = j.value ->> 1, updated_at = $2 \
                         FROM jsonb_array_elements($1::jsonb) AS j(value) \
                         WHERE subscribers.id = (j.value ->> 0)::bigint",
                insert: "INSERT INTO subscribers (email, name, status, consent_at, consent_source, \
                         consent_ip, bounce_count, created_at, updated_at) \
                         SELECT j.value ->> 0, j.value ->> 1, 'active', $2, $3, NULL, 0, $4, $4 \
                         FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS j(value, key) \
                         ORDER BY j.key RETURNING id, lower(email)",
                seen: "INSERT INTO import_seen (id, line, span) \
                       SELECT (j.value ->> 0)::bigint, (j.value ->> 1)::bigint, \
                       (j.value ->> 2)::bigint FROM jsonb_array_elements($1::jsonb) AS j(value)",
            },
        }
    }
}

/// Pairs as one JSON object, in their order: `{"first": second, …}`.
struct JsonObject<'a, K, V>(&'a [(K, V)]);

impl<K: serde::Serialize, V: serde::Serialize> serde::Serialize for JsonObject<'_, K, V> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// A batch as one bound JSON text (values are bound, never spliced into SQL).
fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("strings and numbers serialise to JSON")
}

/// One more permanent failure for `id`, inside a transaction.
pub(super) async fn bounce(
    tx: &mut sqlx::AnyConnection,
    id: i64,
    threshold: u32,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE subscribers SET bounce_count = bounce_count + 1, updated_at = $3, \
         status = CASE WHEN status = 'active' AND bounce_count + 1 >= $2 \
                       THEN 'bounced' ELSE status END \
         WHERE id = $1",
    )
    .bind(id)
    .bind(i64::from(threshold.max(1)))
    .bind(ts(now))
    .execute(&mut *tx)
    .await?;
    Ok(())
}
