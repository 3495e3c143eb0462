//! Store: every row gazette keeps (subscribers, frozen issues, the delivery ledger), and
//! all the SQL that reads or writes them.
//!
//! [`Store`]'s methods are the boundary: callers speak in domain types and never see SQL,
//! so a PostgreSQL backend can later serve the same surface to several daemons. The
//! SQLite backend keeps one file (created if missing) in WAL mode with
//! `synchronous=FULL`, so a row written is a row that survives a power cut, and applies
//! the migrations in `migrations/` each time it opens.
//!
//! Times are whole seconds (UTC) in the database; [`ts`] and [`from_ts`] convert.

mod inbox;
mod issues;
mod leases;
mod ledger;
mod slots;
mod subscribers;
mod web;

pub use inbox::{
    InboxDisposition, InboxEffect, InboxEntry, InboxLimits, InboxRecorded, OwedNotice,
};
pub use issues::{FreezeOutcome, FrozenIssue};
pub use ledger::{DeliveryCounts, DeliveryStatus, DeliveryUpdate, DueDelivery};
pub use slots::SlotRow;
pub use subscribers::{
    Consent, ImportAction, ImportRow, NewSubscriber, Subscriber, SubscriberStatus,
};
pub use web::{ArchivedIssue, ConfirmOutcome, SignupOutcome, WebFigures, WebSubscriber};

use chrono::{DateTime, TimeZone, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store url '{url}' is not usable: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot create the folder {path} for the database: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot apply database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the database holds a value gazette cannot read ({what}): {value:?}")]
    Corrupt { what: &'static str, value: String },
    #[error("no subscriber with id {0}")]
    NoSuchSubscriber(i64),
    #[error("the store was made by an older gazette and needs updating")]
    Outdated,
}

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The store: a pool of connections to one database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating it and its folder if missing) the database at `url`, such as
    /// `sqlite://var/gazette.db`, and brings its schema up to date.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Url {
                url: url.to_owned(),
                reason: e.to_string(),
            })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let file = options.get_filename().to_owned();
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Folder {
                path: dir.to_owned(),
                source,
            })?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool })
    }

    /// Opens an existing database read-only, for commands that only look: nothing is
    /// created and nothing is written (no migration either, so an old store is read as
    /// it is).
    pub async fn open_read_only(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Url {
                url: url.to_owned(),
                reason: e.to_string(),
            })?
            .create_if_missing(false)
            .read_only(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        // Opening is lazy about the file's contents: read the schema now so a file that
        // is not a database says so here, once.
        sqlx::query("SELECT count(*) FROM sqlite_master")
            .execute(&pool)
            .await?;
        // A store from an older gazette lacks tables or columns this one reads.
        let newest = sqlx::migrate!("./migrations")
            .iter()
            .map(|m| m.version)
            .max()
            .unwrap_or(0);
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&pool)
                .await
                .unwrap_or(None);
        if applied.unwrap_or(0) < newest {
            pool.close().await;
            return Err(StoreError::Outdated);
        }
        Ok(Self { pool })
    }

    /// Whether the database file `url` names exists (without creating it): lets a dry run
    /// look without changing anything.
    pub fn exists(url: &str) -> Result<bool, StoreError> {
        let options = SqliteConnectOptions::from_str(url).map_err(|e| StoreError::Url {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(options.get_filename().exists())
    }

    /// Closes every connection, waiting for statements in progress.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Seconds since the epoch, as the database keeps times.
pub fn ts(t: DateTime<Utc>) -> i64 {
    t.timestamp()
}

/// A time read back from the database.
pub fn from_ts(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}
