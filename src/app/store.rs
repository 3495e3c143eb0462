//! `gazette store copy --to URL`: moves the store to another database.

use super::Context;
use crate::store::{Store, without_password};
use anyhow::Context as _;
use std::process::ExitCode;

/// Copies the configured store into the empty database at `to` and prints how many rows
/// each table took.
pub async fn copy(ctx: &Context, to: &str) -> anyhow::Result<ExitCode> {
    let from = &ctx.settings.store.url;
    // Refused before anything is opened: opening a SQLite target would create its file.
    let shown = without_password(to);
    if from.trim_end_matches('/') == to.trim_end_matches('/') {
        anyhow::bail!(
            "--to names the store being copied ({shown}): give the url of another, empty \
             database"
        );
    }
    let source = ctx.open_store().await?;
    let target = Store::open(to)
        .await
        .with_context(|| format!("opening the store to copy into, {shown}"))?;
    let copied = source.copy_to(&target).await;
    target.close().await;
    source.close().await;
    let report = copied.context("copying the store")?;
    println!("copied {} to {}:", report.from, report.to);
    let width = report
        .tables
        .iter()
        .map(|t| t.table.len())
        .max()
        .unwrap_or(0);
    for table in &report.tables {
        println!("  {:<width$}  {} rows", table.table, table.rows);
    }
    println!("  {:<width$}  {} rows", "total", report.total());
    Ok(ExitCode::SUCCESS)
}
