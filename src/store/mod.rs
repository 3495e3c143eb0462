//! Store: every row gazette keeps (subscribers, frozen issues, the delivery ledger), and
//! all the SQL that reads or writes them.
//!
//! [`Store`]'s methods are the boundary: callers speak in domain types and never see SQL.
//! Two backends serve that surface, chosen by the url:
//!
//! - **SQLite** (`sqlite://…`, the default): one file (created if missing) in WAL mode with
//!   `synchronous=FULL`, so a row written is a row that survives a power cut.
//! - **PostgreSQL** (`postgres://…`): for several daemons on several machines sharing one
//!   store.
//!
//! Both run through one sqlx `Any` pool with the same SQL text wherever the two agree,
//! which is nearly everywhere: placeholders are `$N` (SQLite reads them too), conflicts
//! are `ON CONFLICT`, times are whole seconds in 64-bit integers ([`ts`], [`from_ts`]).
//! The few statements that differ (the import's batch statements, how a write
//! transaction takes its lock, reading the schema) ask [`Dialect`]. This keeps one copy
//! of every operation, so the backends cannot drift apart in behaviour, which a pair of
//! typed pools with a copy of each method could; the cost is that rows are read through
//! `Any`'s few types (integers, text, blobs), which is all the schema uses.
//!
//! Each backend has its own migrations (`migrations/sqlite`, `migrations/postgres`),
//! applied each time the store opens; a change to the schema adds a file with the same
//! number to both.
//!
//! Transactions behave alike on both: a write transaction takes the store's write lock
//! (SQLite's `BEGIN IMMEDIATE`; on PostgreSQL a transaction-scoped advisory lock), so a
//! read-then-write inside one sees no other writer in between. Claims that must not wait
//! on each other (ledger rows, slots, leases) are single conditional statements instead.

mod backup;
mod consent;
mod copy;
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
pub use copy::{CopyError, CopyReport, TableCopied};
pub use doctor::{LateDelivery, UnsubscribeAudit};
pub use inbox::{
    InboxDisposition, InboxEffect, InboxEntry, InboxFigures, InboxLimits, InboxRecorded,
    OwedNotice, UNVERIFIED_REPORT,
};
pub use issues::{FreezeOutcome, FrozenIssue};
pub use ledger::{ClaimHolder, DeliveryCounts, DeliveryStatus, DeliveryUpdate, DueDelivery};
pub use relay::RelayStatus;
pub use slots::{SlotRow, UnfinishedClaim};
pub use subscribers::{
    Consent, ImportAction, ImportBatch, ImportRow, ImportSession, NewSubscriber, ReactivateOutcome,
    Reactivated, Subscriber, SubscriberMerge, SubscriberStatus,
};
pub use web::{
    ArchivedIssue, ConfirmOutcome, SignupOutcome, WebFigures, WebSignupRequest, WebSubscriber,
};

use chrono::{DateTime, TimeZone, Utc};
use sqlx::AnyPool;
use sqlx::any::{Any, AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::SqliteConnectOptions;
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
        "the store {store} was written by a newer gazette (schema version {found}; this one \
         knows up to {known}): upgrade gazette, or restore a backup made by this version"
    )]
    NewerSchema {
        store: String,
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
    #[error("the store was made by an older gazette and needs updating")]
    Outdated,
}

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The PostgreSQL advisory lock a write transaction takes: the store's one write lock,
/// as `BEGIN IMMEDIATE` takes SQLite's. Any fixed number works; this one spells
/// "gazette" in its bytes.
const WRITE_LOCK: i64 = 0x0067_617a_6574_7465;

/// Which database a store is on, for the few statements that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The backend a store url names, or why it names none.
    pub fn of(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            Err(StoreError::Url {
                url: url.to_owned(),
                reason: "it must start with sqlite:// or postgres://".into(),
            })
        }
    }
}

/// The store: a pool of connections to one database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
    /// What the store is called in messages: the SQLite file, or the PostgreSQL url
    /// without its password.
    name: String,
    /// SQLite only: held (shared) for as long as any clone of the store lives, so that
    /// `restore` can tell that no process has the store open.
    _lock: Option<std::sync::Arc<StoreLock>>,
}

/// The migrations compiled into this binary, one set per backend.
static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

fn migrator(dialect: Dialect) -> &'static sqlx::migrate::Migrator {
    match dialect {
        Dialect::Sqlite => &SQLITE_MIGRATOR,
        Dialect::Postgres => &POSTGRES_MIGRATOR,
    }
}

/// The newest schema version this binary knows (the same on both backends).
pub(crate) fn newest_known_migration() -> i64 {
    SQLITE_MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
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
    options_path(url).map(Some)
}

/// A PostgreSQL url as messages show it: without its password.
pub(crate) fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((credentials, host)) if credentials.contains(':') => {
            let user = credentials.split_once(':').map_or(credentials, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_owned(),
    }
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

/// `url` with SQLite's open mode (`rwc` creates the file, `ro` only reads) set.
fn sqlite_url_with_mode(url: &str, mode: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut params: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("mode="))
        .collect();
    let mode = format!("mode={mode}");
    params.push(&mode);
    format!("{base}?{}", params.join("&"))
}

/// What a pool is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PoolUse {
    /// The store's work: a few connections, writes durable.
    Work,
    /// Bringing the schema up to date when the store is opened, on one connection of its
    /// own. On a large store its statements take seconds, as expected: sqlx's warning
    /// for each slow one (with the whole migration's text) is left out, and gazette
    /// reports the upgrade and its time itself.
    Upgrade,
    /// Looking only, on one connection. A listing of a large store reads for seconds, as
    /// expected: sqlx's slow-statement warning (with the query's text) is left out here
    /// too.
    ReadOnly,
}

/// A pool on `url` through the `Any` driver; SQLite connections get the pragmas gazette
/// relies on (each connection's own: they are not kept in the file, except WAL).
async fn any_pool(url: &str, dialect: Dialect, use_: PoolUse) -> Result<AnyPool, StoreError> {
    sqlx::any::install_default_drivers();
    let mut options = AnyConnectOptions::from_str(url).map_err(|e| StoreError::Url {
        url: without_password(url),
        reason: e.to_string(),
    })?;
    if matches!(use_, PoolUse::Upgrade | PoolUse::ReadOnly) {
        options = sqlx::ConnectOptions::disable_statement_logging(options);
    }
    let max = match (use_, dialect) {
        (PoolUse::Work, Dialect::Sqlite) => 4,
        (PoolUse::Work, Dialect::Postgres) => 8,
        (PoolUse::Upgrade | PoolUse::ReadOnly, _) => 1,
    };
    let read_only = use_ == PoolUse::ReadOnly;
    let pool = AnyPoolOptions::new()
        .max_connections(max)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if dialect == Dialect::Sqlite {
                    let busy = format!("PRAGMA busy_timeout = {}", BUSY_TIMEOUT.as_millis());
                    sqlx::raw_sql(sqlx::AssertSqlSafe(busy))
                        .execute(&mut *conn)
                        .await?;
                    let pragmas = if read_only {
                        "PRAGMA foreign_keys = ON"
                    } else {
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                         PRAGMA foreign_keys = ON"
                    };
                    sqlx::raw_sql(pragmas).execute(&mut *conn).await?;
                }
                Ok(())
            })
        })
        .connect_with(options)
        .await?;
    Ok(pool)
}

impl Store {
    /// Opens the database at `url`, such as `sqlite://var/gazette.db` (created with its
    /// folder if missing) or `postgres://gazette@db.example.org/gazette` (the database
    /// must exist), and brings its schema up to date.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let dialect = Dialect::of(url)?;
        let (url, name, lock) = match dialect {
            Dialect::Sqlite => {
                let file = options_path(url)?;
                if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|source| StoreError::Folder {
                        path: dir.to_owned(),
                        source,
                    })?;
                }
                let lock = StoreLock::shared(&file)?;
                (
                    sqlite_url_with_mode(url, "rwc"),
                    file.display().to_string(),
                    Some(std::sync::Arc::new(lock)),
                )
            }
            Dialect::Postgres => (url.to_owned(), without_password(url), None),
        };
        let upgrade = Self {
            pool: any_pool(&url, dialect, PoolUse::Upgrade).await?,
            dialect,
            name: name.clone(),
            _lock: lock.clone(),
        };
        let up_to_date = upgrade.bring_up_to_date().await;
        upgrade.pool.close().await;
        up_to_date?;
        Ok(Self {
            pool: any_pool(&url, dialect, PoolUse::Work).await?,
            dialect,
            name,
            _lock: lock,
        })
    }

    /// Refuses a store of a newer gazette, applies the migrations this one lacks and
    /// the steps that follow them; says so when an existing store is upgraded.
    async fn bring_up_to_date(&self) -> Result<(), StoreError> {
        let found = self.refuse_newer_schema().await?;
        let known = newest_known_migration();
        // A new store (nothing applied yet) is made in a moment: nothing to say.
        let upgrading = found > 0 && found < known;
        let started = std::time::Instant::now();
        if upgrading {
            tracing::info!(
                from = found,
                to = known,
                store = %self.name,
                "upgrading the store to this version's schema; a large store takes a while"
            );
        }
        self.migrate().await?;
        if self.dialect == Dialect::Sqlite {
            // A PostgreSQL store starts with the one-mailbox index: it has no twins.
            self.merge_mailbox_twins().await?;
        }
        self.report_merges().await?;
        self.fill_sources_hashes().await?;
        if upgrading {
            tracing::info!(
                from = found,
                to = known,
                seconds = %format!("{:.1}", started.elapsed().as_secs_f64()),
                "store upgraded"
            );
        }
        Ok(())
    }

    /// Applies the migrations this store lacks. On PostgreSQL several daemons may start
    /// at once: the migrator takes PostgreSQL's advisory lock, so one applies them.
    async fn migrate(&self) -> Result<(), StoreError> {
        migrator(self.dialect).run(&self.pool).await?;
        Ok(())
    }

    /// Opens an existing database read-only, for commands that only look: nothing is
    /// created and nothing is written (no migration either, so an old store is read as
    /// it is).
    pub async fn open_read_only(url: &str) -> Result<Self, StoreError> {
        let dialect = Dialect::of(url)?;
        let pool = match dialect {
            Dialect::Sqlite => {
                any_pool(&sqlite_url_with_mode(url, "ro"), dialect, PoolUse::ReadOnly).await?
            }
            Dialect::Postgres => any_pool(url, dialect, PoolUse::ReadOnly).await?,
        };
        let name = match dialect {
            Dialect::Sqlite => options_path(url)?.display().to_string(),
            Dialect::Postgres => without_password(url),
        };
        let mut store = Self {
            pool,
            dialect,
            name,
            _lock: None,
        };
        // Opening is lazy about the file's contents: read the schema now so a file that
        // is not a database says so here, once.
        store.has_table("_sqlx_migrations").await?;
        // A store from an older gazette lacks tables or columns this one reads; one from a
        // newer gazette may hold what this one would misread.
        let newest = newest_known_migration();
        let applied = store.schema_version().await.unwrap_or(0);
        if applied < newest {
            store.pool.close().await;
            return Err(StoreError::Outdated);
        }
        store.refuse_newer_schema().await?;
        if dialect == Dialect::Sqlite {
            // The lock tells a restore that this process reads the store; a store in a
            // folder this user cannot write to is read without it.
            store._lock = StoreLock::shared(&options_path(url)?)
                .ok()
                .map(std::sync::Arc::new);
        }
        Ok(store)
    }

    /// Whether the database `url` names exists (without creating it): lets a dry run
    /// look without changing anything. A PostgreSQL database is created by its
    /// administrator, so it is taken to exist; opening it says otherwise.
    pub fn exists(url: &str) -> Result<bool, StoreError> {
        match Dialect::of(url)? {
            Dialect::Sqlite => Ok(options_path(url)?.exists()),
            Dialect::Postgres => Ok(true),
        }
    }

    /// The backend this store is on.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Closes every connection, waiting for statements in progress.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Starts a write transaction: it holds the store's write lock from its first
    /// statement (see the module's doc), so what it reads stays true until it commits.
    pub(super) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Any>, StoreError> {
        match self.dialect {
            Dialect::Sqlite => Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?),
            Dialect::Postgres => {
                let mut tx = self.pool.begin().await?;
                // The lock function returns `void`, which `Any` cannot read: count it.
                sqlx::query("SELECT COUNT(*) FROM (SELECT pg_advisory_xact_lock($1)) AS l")
                    .bind(WRITE_LOCK)
                    .execute(&mut *tx)
                    .await?;
                Ok(tx)
            }
        }
    }

    /// Starts a transaction that may write: SQLite takes its write lock at the first
    /// write (and refuses the commit of a transaction that read a snapshot another
    /// writer changed); PostgreSQL takes the store's write lock at once, to give the
    /// same guarantee.
    pub(super) async fn begin(&self) -> Result<sqlx::Transaction<'static, Any>, StoreError> {
        match self.dialect {
            Dialect::Sqlite => Ok(self.pool.begin().await?),
            Dialect::Postgres => self.begin_write().await,
        }
    }

    /// Whether the table `name` exists.
    async fn has_table(&self, name: &str) -> Result<bool, StoreError> {
        let sql = match self.dialect {
            Dialect::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1"
            }
            Dialect::Postgres => {
                "SELECT COUNT(*) FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = $1"
            }
        };
        let n: i64 = sqlx::query_scalar(sql)
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(n > 0)
    }

    /// The newest migration applied to this store (0 for an empty database).
    pub(crate) async fn schema_version(&self) -> Result<i64, StoreError> {
        if !self.has_table("_sqlx_migrations").await? {
            return Ok(0);
        }
        let found: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(found)
    }

    /// A store whose schema is newer than this binary's is refused before anything is
    /// migrated: running old code on it could misread or damage what the newer one wrote.
    /// Returns the store's schema version (0 for an empty database).
    async fn refuse_newer_schema(&self) -> Result<i64, StoreError> {
        let found = self.schema_version().await?;
        let known = newest_known_migration();
        if found > known {
            return Err(StoreError::NewerSchema {
                store: self.name.clone(),
                found,
                known,
            });
        }
        Ok(found)
    }
}

/// `$N, $N+1, …`: `count` numbered placeholders from `first` (only these are ever spliced
/// into SQL; every value is bound). Both backends read `$N`.
pub(super) fn placeholders(count: usize, first: usize) -> String {
    let mut out = String::with_capacity(count * 6);
    for i in first..first + count {
        if i > first {
            out.push_str(", ");
        }
        out.push('$');
        out.push_str(&i.to_string());
    }
    out
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
