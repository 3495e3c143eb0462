//! `gazette send-now` and `gazette status`, and the steps the daemon shares with them:
//! freeze an issue with its audience, build the worker, deliver what is due.

use super::Context;
use crate::compose::{Issue, archive_sources};
use crate::domain::{Clock, IssueId, SystemClock};
use crate::schedule::Timing;
use crate::send::{
    BatchReport, ConfiguredTransport, DeliveryWorker, MessageFactory, RetryPolicy, RunEnd,
};
use crate::settings::TransportKind;
use crate::store::{DeliveryCounts, FreezeOutcome, FrozenIssue, Store, SubscriberStatus};
use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use std::io::IsTerminal;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

/// `send-now`'s exit code when the relay (or the outbox folder) failed and rows are
/// still queued: EX_TEMPFAIL, "try again later".
const EXIT_RELAY_DOWN: u8 = 75;

/// Renders `issue`, freezes it (rendered parts and source files) and snapshots every
/// active subscriber into the ledger, in one transaction. An issue frozen before is
/// returned as it was stored, and nobody new is queued: a slot is sent once.
pub async fn freeze_and_snapshot(
    ctx: &Context,
    store: &Store,
    issue: &Issue,
    now: DateTime<Utc>,
) -> anyhow::Result<(FrozenIssue, FreezeOutcome)> {
    if let Some(frozen) = store.issue(issue.id).await? {
        let outcome = FreezeOutcome {
            newly_frozen: false,
            queued: 0,
        };
        return Ok((frozen, outcome));
    }
    let rendered = ctx
        .renderer
        .render_issue(&ctx.settings.newsletter, issue)
        .context("rendering the issue")?;
    let frozen = FrozenIssue::new(issue.id, &rendered, issue.source_pairs(), now);
    let outcome = store.freeze_and_snapshot(&frozen, now).await?;
    if !outcome.newly_frozen {
        // Another process froze it between our look and our write: use theirs.
        let theirs = store
            .issue(issue.id)
            .await?
            .context("the issue vanished from the store")?;
        return Ok((theirs, outcome));
    }
    Ok((frozen, outcome))
}

/// The delivery worker for `ctx`'s settings: transport, DKIM, retry policy, rate.
pub fn delivery_worker(
    ctx: &Context,
    store: Store,
) -> anyhow::Result<DeliveryWorker<ConfiguredTransport>> {
    let settings = &ctx.settings;
    let dkim = ctx.dkim_signer()?;
    let messages = MessageFactory::new(settings.newsletter.clone(), ctx.tokens.clone(), dkim);
    let transport = ConfiguredTransport::from_settings(settings);
    let rate = match settings.transport.kind {
        crate::settings::TransportKind::Smtp => settings.smtp.rate_per_second,
        crate::settings::TransportKind::File => 0,
    };
    let d = &settings.delivery;
    Ok(
        DeliveryWorker::new(store, transport, messages, RetryPolicy::from(d), rate)
            .with_relay_backoff(d.relay_retry_initial, d.relay_retry_max)
            .with_stop_grace(d.stop_grace)
            .with_claim_ttl(d.claim_ttl),
    )
}

/// Delivers every row due now, with a progress bar on a terminal and log lines
/// otherwise. Returns the totals.
pub async fn deliver_due_now(
    worker: &mut DeliveryWorker<ConfiguredTransport>,
    pending: u64,
    clock: &dyn Clock,
) -> anyhow::Result<BatchReport> {
    let (totals, _) =
        deliver_due_now_until(worker, pending, clock, &CancellationToken::new()).await?;
    Ok(totals)
}

/// [`deliver_due_now`] until `stop` is cancelled or the relay fails; says which ended it.
pub async fn deliver_due_now_until(
    worker: &mut DeliveryWorker<ConfiguredTransport>,
    pending: u64,
    clock: &dyn Clock,
    stop: &CancellationToken,
) -> anyhow::Result<(BatchReport, RunEnd)> {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(pending);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} {msg} [{elapsed_precise}, {per_sec}]",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let mut so_far = BatchReport::default();
    let started = std::time::Instant::now();
    let result = worker
        .deliver_due_until(clock, stop, |batch| {
            so_far.add(batch);
            let done = so_far.total();
            let message = format!(
                "sent {} retrying {} failed {} skipped {} remaining {}",
                so_far.sent,
                so_far.retrying,
                so_far.failed,
                so_far.skipped,
                pending.saturating_sub(done)
            );
            match &bar {
                Some(bar) => {
                    bar.set_position(done);
                    bar.set_message(message);
                }
                None => {
                    let rate = done as f64 / started.elapsed().as_secs_f64().max(0.001);
                    tracing::info!(
                        sent = so_far.sent,
                        retrying = so_far.retrying,
                        failed = so_far.failed,
                        skipped = so_far.skipped,
                        remaining = pending.saturating_sub(done),
                        per_second = format!("{rate:.0}"),
                        "delivery progress"
                    );
                }
            }
        })
        .await;
    if let Some(bar) = bar {
        bar.finish();
    }
    worker.transport().close().await;
    Ok(result?)
}

fn print_counts(issue: IssueId, counts: &DeliveryCounts) {
    let unknown = match counts.unknown {
        0 => String::new(),
        n => format!(", {n} unknown"),
    };
    println!(
        "Issue {issue}: {} queued, {} sent, {} retrying, {} failed, {} skipped{unknown} ({} in all)",
        counts.queued,
        counts.sent,
        counts.retrying,
        counts.failed,
        counts.skipped,
        counts.total()
    );
    if counts.unknown > 0 {
        println!(
            "{} message(s) went out without an answer from the relay (outcome unknown); they are sent again later, so those recipients may get two copies.",
            counts.unknown
        );
    }
}

/// What `status` says about the relay: up, or down since when, why, and the next try.
/// Which daemon reads the mailbox (while its lease lasts) and which processes are
/// sending (the live claims on ledger rows, by process).
async fn print_leases(store: &Store, now: DateTime<Utc>) -> anyhow::Result<()> {
    for (name, holder, until) in store.leases().await? {
        let what = match name.as_str() {
            "inbox" => "reading the mailbox",
            // Written by versions that sent from one process at a time.
            "delivery" => continue,
            other => other,
        };
        if until <= now || crate::domain::process_is_gone(&holder) {
            println!("Daemons: nobody {what} now (last: {holder})");
        } else {
            println!("Daemons: {holder} is {what} (lease until {until})");
        }
    }
    for claim in store.claim_holders(now).await? {
        let gone = if crate::domain::process_is_gone(&claim.holder) {
            "; its process is gone: the next sender takes them over"
        } else {
            ""
        };
        println!(
            "Daemons: {} is sending ({} row(s) claimed until {}{gone})",
            claim.holder, claim.rows, claim.until
        );
    }
    Ok(())
}

async fn print_relay(store: &Store) -> anyhow::Result<()> {
    match store.relay_status().await? {
        None => {}
        Some(relay) if relay.up => println!("Relay: up since {}", relay.since),
        Some(relay) => {
            let next = relay
                .retry_at
                .map(|at| format!("; backing off until {at}"))
                .unwrap_or_default();
            println!(
                "Relay: down since {} ({} failed tr{}){next}: {}",
                relay.since,
                relay.failures,
                if relay.failures == 1 { "y" } else { "ies" },
                relay.error.as_deref().unwrap_or("no reason recorded")
            );
        }
    }
    Ok(())
}

/// Today's date in the schedule's time zone: the id `send-now` uses by default.
fn today(ctx: &Context, now: DateTime<Utc>) -> IssueId {
    IssueId::new(
        now.with_timezone(&ctx.settings.schedule.timezone)
            .date_naive(),
    )
}

async fn compose_now(ctx: &Context, id: IssueId) -> anyhow::Result<Issue> {
    let issue =
        super::content::compose_settled(ctx, &ctx.settings.content.sections_dir, id).await?;
    let mut issue = super::content::with_size_checks(ctx, issue);
    if let Ok(rendered) = ctx.renderer.render_issue(&ctx.settings.newsletter, &issue) {
        super::content::relay_size_check(ctx, &mut issue, &rendered).await;
    }
    for d in &issue.diagnostics {
        eprintln!("{d}");
    }
    if !issue.is_sendable() {
        bail!(
            "issue {id} has {} error(s) and is not sent (see above; `gazette check` shows more)",
            issue.errors().count()
        );
    }
    Ok(issue)
}

/// `gazette send-now`.
pub async fn send_now(
    ctx: &Context,
    date: Option<IssueId>,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    let clock = SystemClock;
    let now = clock.now();
    let id = date.unwrap_or_else(|| today(ctx, now));
    let transport = ConfiguredTransport::from_settings(&ctx.settings).describe(&ctx.settings);
    if dry_run {
        return dry_run_report(ctx, id, &transport).await;
    }
    let store = ctx.open_store().await?;
    let frozen = match store.issue(id).await? {
        Some(frozen) => {
            println!(
                "Issue {id} was frozen at {}; resuming its delivery.",
                frozen.frozen_at
            );
            frozen
        }
        None => {
            let issue = compose_now(ctx, id).await?;
            if let Some(earlier) = store.issue_with_sources(&issue.source_pairs()).await? {
                bail!(
                    "the files in {} are the same as those of the issue {earlier}, which has been sent; \
                     put the next issue's files there first",
                    ctx.settings.content.sections_dir.display()
                );
            }
            let (frozen, outcome) = freeze_and_snapshot(ctx, &store, &issue, now).await?;
            println!(
                "Froze issue {id} \"{}\" with {} section(s); {} subscriber(s) queued.",
                frozen.rendered.subject,
                issue.sections.len(),
                outcome.queued
            );
            frozen
        }
    };
    // The files it consumed go to the archive with it, and the day's slots still to come
    // know their issue is out, so neither a slot nor a later compose sends them again.
    // (A past slot of that day finds the issue when the scheduler looks at it.)
    archive_sources(
        &ctx.settings.content.sections_dir,
        &ctx.settings.content.archive_dir,
        id,
        &frozen.sources,
    )?;
    let timing = Timing::from(&ctx.settings.schedule);
    store
        .serve_slots(
            &timing
                .slots_on(id)
                .into_iter()
                .filter(|at| *at >= now - Timing::ON_TIME)
                .collect::<Vec<_>>(),
            id,
            &format!("the issue {id} was sent with `gazette send-now`"),
            now,
        )
        .await?;
    let pending = store.delivery_counts(frozen.id).await?.pending();
    println!("Sending through {transport}.");
    let mut worker = delivery_worker(ctx, store.clone())?;
    // SIGTERM or Ctrl-C: stop taking rows, let what is in flight be answered, record.
    let stop = CancellationToken::new();
    let signals = {
        let stop = stop.clone();
        tokio::spawn(async move {
            super::shutdown::termination().await;
            stop.cancel();
        })
    };
    let delivered = deliver_due_now_until(&mut worker, pending, &clock, &stop).await;
    signals.abort();
    let (totals, end) = delivered?;
    let counts = store.delivery_counts(id).await?;
    println!(
        "This run: {} sent, {} retrying, {} failed, {} skipped{}.",
        totals.sent,
        totals.retrying,
        totals.failed,
        totals.skipped,
        match totals.unknown {
            0 => String::new(),
            n => format!(", {n} unknown"),
        }
    );
    print_counts(id, &counts);
    let code = match end {
        RunEnd::Stopped => {
            println!("stopped; {} left, run again to resume.", counts.pending());
            ExitCode::FAILURE
        }
        RunEnd::RelayDown { error, retry_at } => {
            let what = match ctx.settings.transport.kind {
                TransportKind::Smtp => "relay unreachable",
                TransportKind::File => "outbox unwritable",
            };
            eprintln!("error: sending stopped: {error}");
            println!(
                "{what}: {} queued, retrying after {retry_at} (`gazette serve` retries on its own; or run send-now again then). No subscriber was charged with it.",
                counts.pending()
            );
            ExitCode::from(EXIT_RELAY_DOWN)
        }
        RunEnd::Done => {
            // Rows other processes claimed are theirs to finish (or, if one died, anyone's
            // once its claim runs out).
            for claim in store.claim_holders(Utc::now()).await? {
                println!(
                    "{} row(s) are being sent by {} (claimed until {}).",
                    claim.rows, claim.holder, claim.until
                );
            }
            if counts.retrying + counts.unknown > 0
                && let Some(next) = store.next_due_at().await?
            {
                println!("Next retry due at {next}; `gazette serve` (or send-now again) resumes.");
            }
            ExitCode::SUCCESS
        }
    };
    store.close().await;
    Ok(code)
}

async fn dry_run_report(ctx: &Context, id: IssueId, transport: &str) -> anyhow::Result<ExitCode> {
    let store = ctx.open_store_read_only().await?;
    let frozen = match &store {
        Some(store) => store.issue(id).await?,
        None => None,
    };
    match frozen {
        Some(frozen) => {
            let counts = store
                .as_ref()
                .expect("an issue came from the store")
                .delivery_counts(id)
                .await?;
            println!(
                "Dry run: issue {id} \"{}\" is frozen already; {} row(s) would be sent through {transport}.",
                frozen.rendered.subject,
                counts.pending()
            );
            print_counts(id, &counts);
        }
        None => {
            let issue = compose_now(ctx, id).await?;
            if let Some(store) = &store
                && let Some(earlier) = store.issue_with_sources(&issue.source_pairs()).await?
            {
                bail!(
                    "the files in {} are the same as those of the issue {earlier}, which has been sent; \
                     send-now would refuse them",
                    ctx.settings.content.sections_dir.display()
                );
            }
            let rendered = ctx
                .renderer
                .render_issue(&ctx.settings.newsletter, &issue)
                .context("rendering the issue")?;
            let audience = match &store {
                Some(store) => store.count_subscribers(SubscriberStatus::Active).await?,
                None => 0,
            };
            println!(
                "Dry run: would freeze issue {id} \"{}\" ({} section(s)) and send it to {audience} active subscriber(s) through {transport}.",
                rendered.subject,
                issue.sections.len()
            );
        }
    }
    println!("Nothing was changed.");
    if let Some(store) = store {
        store.close().await;
    }
    Ok(ExitCode::SUCCESS)
}

/// `gazette status`: the last issue's ledger, from a store opened read-only.
pub async fn status(ctx: &Context, store: Option<Store>) -> anyhow::Result<ExitCode> {
    let Some(store) = store else {
        println!(
            "Nothing has been sent yet: there is no store at {} (the first command that adds subscribers or sends an issue creates it).",
            ctx.settings.store.url
        );
        return Ok(ExitCode::SUCCESS);
    };
    match store.latest_issue().await? {
        None => println!("No issue has been sent yet."),
        Some(id) => {
            let counts = store.delivery_counts(id).await?;
            print_counts(id, &counts);
            print_relay(&store).await?;
            print_leases(&store, Utc::now()).await?;
            if counts.pending() > 0
                && let Some(next) = store.next_due_at().await?
            {
                println!("Next attempt due at {next}.");
            }
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
