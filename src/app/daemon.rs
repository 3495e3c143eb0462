//! `gazette serve` and `gazette proof`: the month's cycle without anyone at the keyboard.
//!
//! The scheduler itself lives in [`crate::schedule`]; here it gets its hands (the
//! [`Desk`]: the sections folder, freezing, the archive, the editors' mail) and `serve`
//! runs it beside the delivery worker, the inbox worker and the web server until SIGTERM
//! or SIGINT.

use super::Context;
use super::delivery::{delivery_worker, freeze_and_snapshot};
use crate::compose::{self, Diagnostic, Issue};
use crate::domain::{Clock, IssueId, SystemClock};
use crate::render::EditorNote;
use crate::render::{self, RecipientLinks};
use crate::schedule::{Newsroom, NewsroomError, Scheduler, Timing};
use crate::send::{ConfiguredTransport, OutgoingMessage, Transport};
use crate::store::{FrozenIssue, Store};
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use lettre::Message;
use lettre::message::Mailbox;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How much longer than `delivery.stop_grace` `serve` waits, once asked to stop, for
/// its parts to end. `packaging/gazette.service`'s `TimeoutStopSec` leaves room for both.
const SHUTDOWN_MARGIN: Duration = Duration::from_secs(5);

/// Mail to the editors: proofs and notices. Not newsletter mail, so not in the ledger;
/// with the file transport each message is a new file in `<outbox_dir>/editors/<kind>/<issue>/`.
pub async fn send_to_editors(
    ctx: &Context,
    kind: &str,
    issue: IssueId,
    now: DateTime<Utc>,
    build: impl Fn(&Mailbox) -> Result<Message, render::MessageError>,
) -> anyhow::Result<usize> {
    let editors = &ctx.settings.newsletter.editors;
    if editors.is_empty() {
        tracing::warn!(kind, %issue, "no editors configured ([newsletter] editors); nobody is told");
        return Ok(0);
    }
    let transport =
        ConfiguredTransport::for_side_mail(&ctx.settings, &format!("editors/{kind}/{issue}"));
    let dkim = ctx.dkim_signer()?;
    let result = async {
        for editor in editors {
            let message = build(editor)?;
            let envelope = lettre::address::Envelope::new(
                Some(ctx.settings.newsletter.from.email.clone()),
                vec![editor.email.clone()],
            )?;
            let outgoing =
                OutgoingMessage::new(envelope, render::finish(&message, now, dkim.as_deref()));
            transport
                .send(&outgoing)
                .await
                .with_context(|| format!("sending the {kind} message to {}", editor.email))?;
        }
        anyhow::Ok(())
    }
    .await;
    transport.close().await;
    result?;
    tracing::info!(kind, %issue, editors = editors.len(), "editors told");
    Ok(editors.len())
}

/// The scheduler's hands in this process: the sections folder, the store's freeze, the
/// archive and the editors' mail, as `ctx`'s settings describe them.
pub struct Desk<'a> {
    ctx: &'a Context,
}

/// The scheduler for `ctx`'s settings over `store`.
pub fn scheduler(ctx: &Context, store: Store) -> Scheduler<Desk<'_>> {
    Scheduler::new(Desk { ctx }, store, Timing::from(&ctx.settings.schedule))
}

impl Newsroom for Desk<'_> {
    fn compose(&self, issue: IssueId) -> Issue {
        let ctx = self.ctx;
        let composed = match compose::compose(
            &ctx.settings.content.sections_dir,
            issue,
            &ctx.compose_options(),
            std::time::SystemTime::now(),
        ) {
            Ok(issue) => issue,
            // A missing or unreadable folder holds the issue like any other error.
            Err(e) => compose::assemble(
                issue,
                Vec::new(),
                vec![Diagnostic::issue_error(format!(
                    "{e}: {}",
                    std::error::Error::source(&e)
                        .map(|s| s.to_string())
                        .unwrap_or_default()
                ))],
                Vec::new(),
                &ctx.compose_options(),
            ),
        };
        super::content::with_size_checks(ctx, composed)
    }

    async fn freeze(
        &self,
        store: &Store,
        issue: &Issue,
        now: DateTime<Utc>,
    ) -> Result<FrozenIssue, NewsroomError> {
        let (frozen, outcome) = freeze_and_snapshot(self.ctx, store, issue, now).await?;
        tracing::info!(issue = %issue.id, queued = outcome.queued, "issue frozen; delivery starts");
        Ok(frozen)
    }

    fn archive(&self, frozen: &FrozenIssue) -> Result<(), NewsroomError> {
        let content = &self.ctx.settings.content;
        compose::archive_sources(
            &content.sections_dir,
            &content.archive_dir,
            frozen.id,
            &frozen.sources,
        )?;
        Ok(())
    }

    async fn tell_editors(
        &self,
        issue: IssueId,
        note: &EditorNote,
        now: DateTime<Utc>,
    ) -> Result<(), NewsroomError> {
        let newsletter = &self.ctx.settings.newsletter;
        send_to_editors(self.ctx, note.kind, issue, now, |editor| {
            render::editor_notice(newsletter, editor, &note.subject, &note.body, now)
        })
        .await?;
        Ok(())
    }

    async fn mail_proof(
        &self,
        issue: &Issue,
        send_at: &str,
        now: DateTime<Utc>,
    ) -> Result<(), NewsroomError> {
        let ctx = self.ctx;
        let newsletter = &ctx.settings.newsletter;
        let links = RecipientLinks::new(newsletter, &ctx.tokens, 0);
        let diagnostics = &issue.diagnostics;
        match ctx.renderer.render_issue(newsletter, issue) {
            Ok(rendered) => {
                send_to_editors(ctx, "proof", issue.id, now, |editor| {
                    render::proof_message(
                        newsletter,
                        editor,
                        issue.id,
                        send_at,
                        &rendered,
                        diagnostics,
                        &links,
                        now,
                    )
                })
                .await?;
            }
            Err(e) => {
                let note = EditorNote::proof_failed(issue.id, &e, diagnostics, send_at);
                self.tell_editors(issue.id, &note, now).await?;
            }
        }
        tracing::info!(issue = %issue.id, warnings = issue.diagnostics.len(), "proof sent to the editors");
        Ok(())
    }
}

/// `gazette serve`: the scheduler, the delivery worker, the inbox worker and the web
/// server until SIGTERM or SIGINT. In-flight messages finish and are recorded before it exits.
pub async fn serve(ctx: &Context) -> anyhow::Result<ExitCode> {
    let store = ctx.open_store().await?;
    let bind = ctx.settings.web.bind;
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("settings key `web.bind`: cannot listen on {bind}"))?;
    tracing::info!(address = %listener.local_addr()?, "web server listening");
    let clock = SystemClock;
    let shutdown = CancellationToken::new();
    let scheduler = scheduler(ctx, store.clone());
    let web_state = super::web::web_state_with(ctx, store.clone())?
        .with_scheduler_steps(scheduler.step_counter());
    let mut worker = delivery_worker(ctx, store.clone())?;
    let mut inbox = super::inbox::inbox_worker(ctx, store.clone())?;
    match scheduler.timing().next_slot(clock.now()) {
        Some(next) => tracing::info!(
            next_slot = %scheduler.timing().local(next),
            issue = %scheduler.timing().issue_id(next),
            schedule = ctx.settings.schedule.send.as_str(),
            "gazette is running"
        ),
        None => tracing::warn!(
            schedule = ctx.settings.schedule.send.as_str(),
            "the schedule has no future slot"
        ),
    }
    let signals = {
        let shutdown = shutdown.clone();
        async move {
            tokio::select! {
                () = super::shutdown::termination() => shutdown.cancel(),
                () = shutdown.cancelled() => {}
            }
        }
    };
    let scheduling = async {
        let result = scheduler.run_until_stopped(&clock, &shutdown).await;
        shutdown.cancel();
        result
    };
    let delivering = async {
        let result = worker
            .run_until_stopped(&clock, Duration::from_secs(2), shutdown.cancelled())
            .await
            .map_err(anyhow::Error::from);
        shutdown.cancel();
        result
    };
    let web = async {
        let result = crate::web::serve(web_state, listener, shutdown.clone().cancelled_owned())
            .await
            .context("serving the web");
        shutdown.cancel();
        result
    };
    let reading = async {
        let result = inbox
            .run_until_stopped(&clock, shutdown.cancelled())
            .await
            .map_err(anyhow::Error::from);
        shutdown.cancel();
        result
    };
    // Once asked to stop, everything gets the delivery grace plus a margin (a proof or
    // notice stuck on a stalled relay must not hold the process until the service
    // manager's SIGKILL); the delivery worker has recorded its batch by then.
    let grace = ctx.settings.delivery.stop_grace + SHUTDOWN_MARGIN;
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    let (scheduled, delivered, served, read) = tokio::select! {
        ((), scheduled, delivered, served, read) =
            async { tokio::join!(signals, scheduling, delivering, web, reading) } =>
                (scheduled, delivered, served, read),
        () = deadline => {
            tracing::error!(
                ?grace,
                "still busy after the stop grace; exiting anyway (unfinished work is redone at the next start)"
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    inbox.transport().close().await;
    worker.transport().close().await;
    store.close().await;
    scheduled.context("the scheduler stopped")?;
    delivered.context("the delivery worker stopped")?;
    served?;
    read.context("the inbox worker stopped")?;
    tracing::info!("stopped cleanly");
    Ok(ExitCode::SUCCESS)
}

/// `gazette proof`: the proof of the next issue to the editors, now.
pub async fn proof(ctx: &Context) -> anyhow::Result<ExitCode> {
    let store = ctx.open_store().await?;
    let scheduler = scheduler(ctx, store.clone());
    let now = Utc::now();
    let slot = scheduler
        .timing()
        .next_slot(now)
        .context("the schedule has no future slot")?;
    let id = scheduler.timing().issue_id(slot);
    let issue =
        super::content::compose_settled(ctx, &ctx.settings.content.sections_dir, id).await?;
    let issue = super::content::with_size_checks(ctx, issue);
    for d in &issue.diagnostics {
        eprintln!("{d}");
    }
    scheduler
        .newsroom()
        .mail_proof(&issue, &scheduler.timing().local(slot), now)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    store.close().await;
    println!(
        "Proof of the issue {} sent to {} editor(s).",
        issue.id,
        ctx.settings.newsletter.editors.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// The schedule part of `gazette status`: the next slot and the recent ones.
pub async fn print_schedule(ctx: &Context, store: Option<&Store>) -> anyhow::Result<()> {
    let timing = Timing::from(&ctx.settings.schedule);
    let local = |at: DateTime<Utc>| timing.local(at);
    let now = Utc::now();
    match timing.next_slot(now) {
        Some(next) => {
            let issue = timing.issue_id(next);
            // One issue per day: a slot whose date has its issue will send nothing.
            let served = match store {
                Some(store) if store.issue(issue).await?.is_some() => {
                    "; that issue has been sent, so this slot will send nothing"
                }
                _ => "",
            };
            println!(
                "Next slot: {} (issue {issue}, {}){served}",
                local(next),
                ctx.settings.schedule.send.as_str()
            )
        }
        None => println!("Next slot: none (the schedule has no future slot)"),
    }
    let Some(store) = store else {
        return Ok(());
    };
    for slot in store.recent_slots(3, now).await? {
        let state = slot.state.replace('_', " ");
        // Notes often begin with the state itself ("missed: …"): say it once.
        let note = slot
            .note
            .as_deref()
            .map(|n| n.strip_prefix(&format!("{state}:")).unwrap_or(n).trim())
            .filter(|n| !n.is_empty())
            .map(|n| format!(": {n}"))
            .unwrap_or_default();
        println!(
            "Slot {} (issue {}): {state}{note}",
            local(slot.at),
            slot.issue,
        );
    }
    Ok(())
}
