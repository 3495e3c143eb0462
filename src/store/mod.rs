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

mod backup;
mod consent;
mod doctor;
mod inbox;
mod issues;
mod leases;
mod ledger;
mod mailbox_merge;
mod relay;
mod slots;
mod subscribers;
mod web;

pub use backup::{BackupError, BackupSummary, RestoreReport, restore, verify_backup};
pub use consent::{Withdrawal, Withdrawn};
pub use doctor::{LateDelivery, UnsubscribeAudit};
pub use inbox::{
    InboxDisposition, InboxEffect, InboxEntry, InboxFigures, InboxLimits, InboxRecorded,
    OwedNotice, UNVERIFIED_REPORT,
};
pub use issues::{FreezeOutcome, FrozenIssue};
pub use ledger::{DeliveryCounts, DeliveryStatus, DeliveryUpdate, DueDelivery, LeaseClaim};
pub use relay::RelayStatus;
pub use slots::{SlotRow, UnfinishedClaim};
pub use subscribers::{
    Consent, ImportAction, ImportRow, ImportSession, NewSubscriber, ReactivateOutcome, Reactivated,
    Subscriber, SubscriberMerge, SubscriberStatus,
};
pub use web::{
    ArchivedIssue, ConfirmOutcome, SignupOutcome, WebFigures, WebSignupRequest, WebSubscriber,
};

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
    #[error(
        "the store {path} was written by a newer gazette (schema version {found}; this one \
         knows up to {known}): upgrade gazette, or restore a backup made by this version"
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("the store {path} is in use by another gazette process")]
    InUse { path: PathBuf },
    #[error("cannot use the lock file {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the lease '{name}' is held by {holder} now, so these results are not recorded")]
    LeaseLost { name: String, holder: String },
    #[error("the store was made by an older gazette and needs updating")]
    Outdated,
}

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The store: a pool of connections to one database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    /// Held (shared) for as long as any clone of the store lives, so that `restore`
    /// can tell that no process has the store open.
    _lock: Option<std::sync::Arc<StoreLock>>,
}

/// The migrations compiled into this binary.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The newest schema version this binary knows.
pub(crate) fn newest_known_migration() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

fn options_path(url: &str) -> Result<PathBuf, StoreError> {
    let options = SqliteConnectOptions::from_str(url).map_err(|e| StoreError::Url {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(options.get_filename().to_owned())
}

/// The database file a `sqlite:` url names; None for any other kind of url.
pub(crate) fn sqlite_file(url: &str) -> Result<Option<PathBuf>, StoreError> {
    if !url.starts_with("sqlite:") {
        return Ok(None);
    }
    let options = SqliteConnectOptions::from_str(url).map_err(|e| StoreError::Url {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(Some(options.get_filename().to_owned()))
}

/// An advisory lock on `<database>.lock`: every open store holds it shared, a restore
/// holds it exclusively.
#[derive(Debug)]
pub(crate) struct StoreLock {
    _file: std::fs::File,
}

impl StoreLock {
    fn path(db: &std::path::Path) -> PathBuf {
        PathBuf::from(format!("{}.lock", db.display()))
    }

    fn open(db: &std::path::Path) -> Result<(std::fs::File, PathBuf), StoreError> {
        let path = Self::path(db);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| StoreError::Lock {
                path: path.clone(),
                source,
            })?;
        Ok((file, path))
    }

    /// Shared: any number of processes may hold it together. Waits only for a restore.
    fn shared(db: &std::path::Path) -> Result<Self, StoreError> {
        let (file, path) = Self::open(db)?;
        file.lock_shared()
            .map_err(|source| StoreError::Lock { path, source })?;
        Ok(Self { _file: file })
    }

    /// Exclusive, without waiting: fails with [`StoreError::InUse`] while anyone holds it.
    pub(crate) fn exclusive(db: &std::path::Path) -> Result<Self, StoreError> {
        let (file, path) = Self::open(db)?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::InUse { path: db.into() }),
            Err(std::fs::TryLockError::Error(source)) => Err(StoreError::Lock { path, source }),
        }
    }
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
        let lock = StoreLock::shared(&file)?;
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        refuse_newer_schema(&pool, &file).await?;
        MIGRATOR.run(&pool).await?;
        let store = Self {
            pool,
            _lock: Some(std::sync::Arc::new(lock)),
        };
        store.merge_mailbox_twins().await?;
        store.report_merges().await?;
        store.fill_sources_hashes().await?;
        Ok(store)
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
        // A store from an older gazette lacks tables or columns this one reads; one from a
        // newer gazette may hold what this one would misread.
        let newest = newest_known_migration();
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&pool)
                .await
                .unwrap_or(None);
        if applied.unwrap_or(0) < newest {
            pool.close().await;
            return Err(StoreError::Outdated);
        }
        if let Some(found) = applied.filter(|v| *v > newest) {
            pool.close().await;
            return Err(StoreError::NewerSchema {
                path: options_path(url)?,
                found,
                known: newest,
            });
        }
        // The lock tells a restore that this process reads the store; a store in a
        // folder this user cannot write to is read without it.
        let lock = StoreLock::shared(&options_path(url)?)
            .ok()
            .map(std::sync::Arc::new);
        Ok(Self { pool, _lock: lock })
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

/// A store whose schema is newer than this binary's is refused before anything is
/// migrated: running old code on it could misread or damage what the newer one wrote.
async fn refuse_newer_schema(pool: &SqlitePool, file: &std::path::Path) -> Result<(), StoreError> {
    let has_table: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' \
         AND name = '_sqlx_migrations')",
    )
    .fetch_one(pool)
    .await?;
    if !has_table {
        return Ok(());
    }
    let found: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations")
        .fetch_one(pool)
        .await?;
    let known = newest_known_migration();
    if found > known {
        return Err(StoreError::NewerSchema {
            path: file.to_owned(),
            found,
            known,
        });
    }
    Ok(())
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
