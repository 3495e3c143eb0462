//! `gazette doctor`: runs the checks and prints one line per check, with its fix below.

use super::Context;
use crate::doctor::{DoctorOptions, Report, examine};
use crate::store::Store;
use anyhow::Context as _;
use std::io::Write as _;
use std::process::ExitCode;

/// Runs every check against the real DNS (the system's resolver, or `resolver`), web,
/// relay and store; exits 1 when any is a problem.
pub async fn run(
    ctx: &Context,
    resolver: Option<std::net::SocketAddr>,
) -> anyhow::Result<ExitCode> {
    // Doctor only reads: an SQLite store that does not exist yet is not created.
    let exists = match crate::store::sqlite_file(&ctx.settings.store.url) {
        Ok(Some(path)) => path.exists(),
        _ => true,
    };
    let store = if exists {
        Some(ctx.open_store().await?)
    } else {
        None
    };
    let options = DoctorOptions {
        resolver,
        ..DoctorOptions::default()
    };
    let report = examine(&ctx.settings, store.as_ref(), &options).await;
    print(&report).context("writing the report")?;
    close(store).await;
    Ok(if report.has_problem() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn close(store: Option<Store>) {
    if let Some(store) = store {
        store.close().await;
    }
}

/// One line per check (`verdict  what: finding`), the fix indented below it.
fn print(report: &Report) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    for check in &report.checks {
        writeln!(
            out,
            "{:<16}{}: {}",
            check.verdict.label(),
            check.kind.label(),
            check.finding
        )?;
        if let Some(fix) = &check.fix {
            writeln!(out, "{:<16}fix: {fix}", "")?;
        }
    }
    Ok(())
}
