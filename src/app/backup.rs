//! `gazette backup FILE` and `gazette restore FILE`.

use super::Context;
use crate::store::{self, BackupSummary};
use anyhow::Context as _;
use std::path::Path;
use std::process::ExitCode;

/// Copies the store to `file` (safe while `serve` runs) and reports what the copy holds.
pub async fn backup(ctx: &Context, file: &Path) -> anyhow::Result<ExitCode> {
    let url = &ctx.settings.store.url;
    if !url.starts_with("sqlite:") {
        anyhow::bail!(
            "the store {url} is not SQLite: back it up with the database's own tools \
             (for PostgreSQL, `pg_dump --format=custom`)"
        );
    }
    let store = ctx.open_store().await?;
    let summary = store
        .backup_to(file)
        .await
        .with_context(|| format!("backing up {url} to {}", file.display()))?;
    store.close().await;
    println!(
        "backed up {url} to {}: {}",
        file.display(),
        describe(&summary)
    );
    Ok(ExitCode::SUCCESS)
}

/// Puts the backup `file` in place of the store, when no gazette process uses it.
pub async fn restore(ctx: &Context, file: &Path) -> anyhow::Result<ExitCode> {
    let url = &ctx.settings.store.url;
    let report = store::restore(url, file)
        .await
        .with_context(|| format!("restoring {} into {url}", file.display()))?;
    println!(
        "restored {} into {}: {}",
        file.display(),
        report.store.display(),
        describe(&report.summary)
    );
    if let Some(kept) = report.kept {
        println!("the store it replaced is kept as {}", kept.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(s: &BackupSummary) -> String {
    format!(
        "integrity ok, schema {}, {} subscribers ({} active, {} suppressed), {} issues, \
         {} ledger rows ({} still to send)",
        s.schema_version,
        s.subscribers,
        s.active,
        s.suppressed,
        s.issues,
        s.deliveries,
        s.deliveries_pending
    )
}
