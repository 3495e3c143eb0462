//! Backups: a consistent copy of the SQLite store taken while daemons use it, checked
//! before it is called good, and put back only when nothing uses the store.
//!
//! The copy is made with `VACUUM INTO`, which reads the database inside one read
//! transaction: writers (a `serve` in the middle of a send) carry on, and the copy is the
//! store as it was at one instant, never half a batch. The copy is then opened on its own
//! and judged by `PRAGMA integrity_check` and by counting its rows, so "backed up" means a
//! file that opens, not merely a file that exists.

use super::{Store, StoreError, sqlite_file};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Row};
use std::path::{Path, PathBuf};

/// What a backup file holds, read back from the file itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    /// Subscribers, whatever their status.
    pub subscribers: i64,
    /// Of those, active ones.
    pub active: i64,
    /// Of those, unsubscribed or bounced: the suppression list.
    pub suppressed: i64,
    /// Frozen issues.
    pub issues: i64,
    /// Delivery ledger rows.
    pub deliveries: i64,
    /// Of those, still to be sent (queued or retrying).
    pub deliveries_pending: i64,
    /// The newest schema migration the file has.
    pub schema_version: i64,
}

/// Why a backup or restore could not be done.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{path} already exists; a backup never overwrites a file")]
    Exists { path: PathBuf },
    #[error("{path} is not a usable gazette backup: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error(
        "the store {path} is in use by a running gazette (serve, web, inbox, send-now or another \
         command); stop it first (e.g. `systemctl stop gazette`), then restore"
    )]
    InUse { path: PathBuf },
    #[error("backups and restores of this store are made with the database's own tools: {0}")]
    NotSqlite(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Store {
    /// Writes a consistent copy of the store to `to` (which must not exist yet), then
    /// checks it and says what it holds.
    pub async fn backup_to(&self, to: &Path) -> Result<BackupSummary, BackupError> {
        if self.dialect != super::Dialect::Sqlite {
            return Err(BackupError::NotSqlite(self.name.clone()));
        }
        if to.exists() {
            return Err(BackupError::Exists { path: to.into() });
        }
        let target = to.to_str().ok_or_else(|| BackupError::Invalid {
            path: to.into(),
            reason: "the path is not valid UTF-8".into(),
        })?;
        sqlx::query("VACUUM INTO ?1")
            .bind(target)
            .execute(&self.pool)
            .await
            .map_err(StoreError::from)?;
        verify_backup(to).await
    }
}

/// Opens the backup file `path` read-only, runs SQLite's integrity check on it, and
/// counts what it holds.
pub async fn verify_backup(path: &Path) -> Result<BackupSummary, BackupError> {
    let invalid = |reason: String| BackupError::Invalid {
        path: path.into(),
        reason,
    };
    if !path.is_file() {
        return Err(invalid("no such file".into()));
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .immutable(true);
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .map_err(|e| invalid(e.to_string()))?;
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| invalid(e.to_string()))?;
    if check != "ok" {
        return Err(invalid(format!("integrity check: {check}")));
    }
    let summary = summarize(&mut conn)
        .await
        .map_err(|e| invalid(format!("it does not hold a gazette store ({e})")))?;
    let _ = conn.close().await;
    Ok(summary)
}

async fn summarize(conn: &mut SqliteConnection) -> Result<BackupSummary, sqlx::Error> {
    let row = sqlx::query(
        "SELECT \
           (SELECT COUNT(*) FROM subscribers) AS subscribers, \
           (SELECT COUNT(*) FROM subscribers WHERE status = 'active') AS active, \
           (SELECT COUNT(*) FROM subscribers WHERE status IN ('unsubscribed', 'bounced')) \
              AS suppressed, \
           (SELECT COUNT(*) FROM issues) AS issues, \
           (SELECT COUNT(*) FROM deliveries) AS deliveries, \
           (SELECT COUNT(*) FROM deliveries WHERE status IN ('queued', 'retrying')) \
              AS pending, \
           (SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success) AS version",
    )
    .fetch_one(conn)
    .await?;
    Ok(BackupSummary {
        subscribers: row.get("subscribers"),
        active: row.get("active"),
        suppressed: row.get("suppressed"),
        issues: row.get("issues"),
        deliveries: row.get("deliveries"),
        deliveries_pending: row.get("pending"),
        schema_version: row.get("version"),
    })
}

/// Puts the backup `from` in place of the store at `url`, after checking it. Refused
/// while any gazette process has the store open. The store it replaces is kept beside
/// it as `<file>.before-restore-<time>`, so a restore loses nothing either.
pub async fn restore(url: &str, from: &Path) -> Result<RestoreReport, BackupError> {
    let db = sqlite_file(url)?.ok_or_else(|| BackupError::NotSqlite(url.to_owned()))?;
    let summary = verify_backup(from).await?;
    let newest = super::newest_known_migration();
    if summary.schema_version > newest {
        return Err(BackupError::Invalid {
            path: from.into(),
            reason: format!(
                "it was written by a newer gazette (schema {}, this one knows up to {newest})",
                summary.schema_version
            ),
        });
    }
    // Holding the store's lock exclusively proves no gazette process has it open: each
    // one holds it shared for as long as its store is open.
    let lock = super::StoreLock::exclusive(&db).map_err(|e| match e {
        StoreError::InUse { .. } => BackupError::InUse { path: db.clone() },
        other => BackupError::Store(other),
    })?;
    let io = |what: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| BackupError::Io { what, path, source }
    };
    let kept = if db.exists() {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let kept = PathBuf::from(format!("{}.before-restore-{stamp}", db.display()));
        // The live store may still have a write-ahead log: fold it in first so the kept
        // file is whole on its own.
        checkpoint(&db).await?;
        std::fs::rename(&db, &kept).map_err(io("cannot move aside", &db))?;
        Some(kept)
    } else {
        None
    };
    for suffix in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{suffix}", db.display()));
        match std::fs::remove_file(&side) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("cannot remove", &side)(e)),
        }
    }
    let partial = PathBuf::from(format!("{}.restoring", db.display()));
    std::fs::copy(from, &partial).map_err(io("cannot copy the backup to", &partial))?;
    std::fs::File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(io("cannot flush", &partial))?;
    std::fs::rename(&partial, &db).map_err(io("cannot put in place", &db))?;
    drop(lock);
    Ok(RestoreReport {
        store: db,
        kept,
        summary,
    })
}

async fn checkpoint(db: &Path) -> Result<(), BackupError> {
    let options = SqliteConnectOptions::new().filename(db);
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .map_err(StoreError::from)?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await
        .map_err(StoreError::from)?;
    let _ = conn.close().await;
    Ok(())
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    /// The store file now holding the backup's contents.
    pub store: PathBuf,
    /// Where the store it replaced was kept, if there was one.
    pub kept: Option<PathBuf>,
    /// What the restored store holds.
    pub summary: BackupSummary,
}
