//! `gazette inbox`: the inbox worker on its own, once or until stopped; and the worker
//! the daemon runs.

use super::Context;
use crate::domain::{Clock, SystemClock};
use crate::inbox::{Outcome, Worker, source_from_settings};
use crate::send::ConfiguredTransport;
use crate::store::Store;
use anyhow::Context as _;
use std::process::ExitCode;

/// The inbox worker for `ctx`'s settings.
pub fn inbox_worker(ctx: &Context, store: Store) -> anyhow::Result<Worker<ConfiguredTransport>> {
    let settings = &ctx.settings;
    let dkim = ctx.dkim_signer()?;
    let source = source_from_settings(settings)?;
    Ok(Worker::new(
        settings,
        source,
        store,
        ConfiguredTransport::for_side_mail(settings, "notices"),
        ctx.tokens.clone(),
        dkim,
    ))
}

/// `gazette inbox [--once]`.
pub async fn run(ctx: &Context, once: bool) -> anyhow::Result<ExitCode> {
    let store = ctx.open_store().await?;
    let mut worker = inbox_worker(ctx, store.clone())?;
    let clock = SystemClock;
    let result = if once {
        match worker
            .try_once(clock.now())
            .await
            .context("reading the inbox")?
        {
            Outcome::Empty => println!("inbox: nothing waiting"),
            Outcome::StandingBy { holder } => {
                println!("inbox: another gazette ({holder}) is reading the mailbox; nothing done")
            }
            Outcome::Worked(r) => println!(
                "inbox: read {}, unsubscribed {}, unmatched requests {}, bounces {} \
                 ({} marked bounced), unverified reports {}, ignored {}, for a person {}, \
                 already handled {}, notices sent {} (failed {})",
                r.read,
                r.unsubscribed,
                r.unmatched_requests,
                r.bounces,
                r.marked_bounced,
                r.unverified_reports,
                r.ignored,
                r.for_a_person,
                r.already_done,
                r.notices_sent,
                r.notices_failed
            ),
        }
        worker
            .release_lease()
            .await
            .context("giving the mailbox lease up")?;
        Ok(())
    } else {
        worker
            .run_until_stopped(&clock, super::shutdown::termination())
            .await
            .context("running the inbox worker")
    };
    worker.transport().close().await;
    store.close().await;
    result.map(|()| ExitCode::SUCCESS)
}
