//! `gazette serve`, `gazette proof` and the scheduler: the month's cycle without anyone
//! at the keyboard.
//!
//! The scheduler is one step ([`Scheduler::try_once`]) around the pure decision in
//! [`crate::schedule::plan`], and a loop ([`Scheduler::run_until_stopped`]) that sleeps
//! until the plan's next event. `serve` runs it beside the delivery worker (and the inbox
//! worker and web server) until SIGTERM or SIGINT.

use super::Context;
use super::delivery::{delivery_worker, freeze_and_snapshot};
use crate::compose::{self, Diagnostic, Issue, Readiness};
use crate::domain::{Clock, IssueId, SlotState, SystemClock};
use crate::render::{self, RecipientLinks};
use crate::schedule::{Action, Timing, plan};
use crate::send::{ConfiguredTransport, OutgoingMessage, Transport};
use crate::store::Store;
use crate::store::UnfinishedClaim;
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use lettre::Message;
use lettre::message::Mailbox;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The longest the scheduler sleeps between looks, so a changed clock or a slot record
/// written by another daemon is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// How much longer than `delivery.stop_grace` `serve` waits, once asked to stop, for
/// its parts to end. `packaging/gazette.service`'s `TimeoutStopSec` leaves room for both.
const SHUTDOWN_MARGIN: Duration = Duration::from_secs(5);

/// How long a claim by another live daemon may stay unfinished before this one settles
/// it. A claim whose process is gone from this host is settled at once.
const CLAIM_GRACE: chrono::Duration = chrono::Duration::seconds(60);

/// How soon to look again while another daemon is still freezing an earlier slot.
const CLAIM_RECHECK: chrono::Duration = chrono::Duration::seconds(2);

/// Mail to the editors: proofs and notices. Not newsletter mail, so not in the ledger;
/// with the file transport it goes to `<outbox_dir>/editors/<kind>/<issue>/<n>.eml`.
pub async fn send_to_editors(
    ctx: &Context,
    kind: &str,
    issue: IssueId,
    build: impl Fn(&Mailbox) -> Result<Message, render::MessageError>,
) -> anyhow::Result<usize> {
    let editors = &ctx.settings.newsletter.editors;
    if editors.is_empty() {
        tracing::warn!(kind, %issue, "no editors configured ([newsletter] editors); nobody is told");
        return Ok(0);
    }
    let transport = ConfiguredTransport::for_side_mail(&ctx.settings, &format!("editors/{kind}"));
    let result = async {
        for (i, editor) in editors.iter().enumerate() {
            let message = build(editor)?;
            let envelope = lettre::address::Envelope::new(
                Some(ctx.settings.newsletter.from.email.clone()),
                vec![editor.email.clone()],
            )?;
            let outgoing = OutgoingMessage {
                issue,
                subscriber_id: i as i64 + 1,
                envelope,
                bytes: message.formatted(),
            };
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

/// What one scheduler step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepReport {
    /// The actions taken, in order.
    pub actions: Vec<Action>,
    /// When the next step is due if nothing else happens.
    pub wake_at: Option<DateTime<Utc>>,
}

/// Sends each slot's issue once: proofs ahead of time, holds, catch-up, claims.
pub struct Scheduler<'a> {
    ctx: &'a Context,
    store: Store,
    timing: Timing,
    daemon_id: String,
    /// Since when this schedule has been kept on the store, read at the first step.
    since: tokio::sync::OnceCell<DateTime<Utc>>,
    /// Claims this scheduler failed to settle (a store or rendering error), and when to
    /// try each again: not at every step, so a lasting fault is not an error a second.
    claim_retries: std::sync::Mutex<std::collections::HashMap<DateTime<Utc>, DateTime<Utc>>>,
    /// Steps finished, shown in `/metrics`: proof that the scheduler is looking.
    steps: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<'a> Scheduler<'a> {
    /// A scheduler for `ctx`'s settings over `store`.
    pub fn new(ctx: &'a Context, store: Store) -> Self {
        Self {
            timing: Timing::from(&ctx.settings.schedule),
            daemon_id: crate::domain::process_name(),
            since: tokio::sync::OnceCell::new(),
            claim_retries: std::sync::Mutex::default(),
            steps: std::sync::Arc::default(),
            ctx,
            store,
        }
    }

    /// The count of steps finished, shared with whoever reports it.
    pub fn step_counter(&self) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
        self.steps.clone()
    }

    /// The schedule's timing rules.
    pub fn timing(&self) -> &Timing {
        &self.timing
    }

    fn local(&self, at: DateTime<Utc>) -> String {
        at.with_timezone(&self.timing.timezone)
            .format("%A %-d %B %Y at %H:%M %Z")
            .to_string()
    }

    /// One step at `now`: settles claims left unfinished, then does what the plan says
    /// is due. An action that fails is logged and tried again at the next step; only a
    /// store that cannot be read stops the scheduler.
    pub async fn try_once(&self, now: DateTime<Utc>) -> anyhow::Result<StepReport> {
        let since = *self
            .since
            .get_or_try_init(|| {
                self.store.schedule_since(
                    self.timing.send.as_str(),
                    self.timing.timezone.name(),
                    now,
                )
            })
            .await?;
        // An earlier slot claimed but not frozen is settled before anything later is
        // composed: a later slot must not send the files it was meant to send.
        let mut blocked_until: Option<DateTime<Utc>> = None;
        let mut block = |until: DateTime<Utc>| {
            blocked_until = Some(blocked_until.map_or(until, |b| b.min(until)));
        };
        for claim in self.store.unfinished_claims().await? {
            let ours = claim.claimed_by == self.daemon_id;
            if !ours
                && !crate::domain::process_is_gone(&claim.claimed_by)
                && now - claim.claimed_at < CLAIM_GRACE
            {
                // Another daemon is freezing it right now.
                block(now + CLAIM_RECHECK);
                continue;
            }
            if let Some(retry) = self.retry_claim_at(claim.at)
                && now < retry
            {
                block(retry);
                continue;
            }
            match self.settle_claim(&claim, now).await {
                Ok(()) => self.set_retry_claim_at(claim.at, None),
                Err(e) if now >= self.timing.hold_until(claim.at) => {
                    tracing::error!(issue = %claim.issue, error = format!("{e:#}"), "cannot settle the claimed slot; the hold window has ended");
                    let note =
                        format!("it could not be frozen before the hold window ended: {e:#}");
                    self.close_interrupted(claim.at, claim.issue, SlotState::GivenUp, &note, now)
                        .await?;
                }
                Err(e) => {
                    let retry = self.timing.recheck_after(now);
                    tracing::error!(issue = %claim.issue, error = format!("{e:#}"), retry_at = %retry, "cannot settle the claimed slot; later slots wait for it");
                    self.set_retry_claim_at(claim.at, Some(retry));
                    block(retry);
                }
            }
        }
        let records = self
            .store
            .slot_records(now - self.timing.lookback() - chrono::Duration::days(1))
            .await?;
        let mut plan = plan(&self.timing, now, &records, since);
        if let Some(until) = blocked_until {
            plan.actions.retain(|a| !matches!(a, Action::Compose(_)));
            plan.wake_at = Some(plan.wake_at.map_or(until, |at| at.min(until)));
        }
        for action in &plan.actions {
            if let Err(e) = self.act(*action, now).await {
                tracing::error!(
                    ?action,
                    error = format!("{e:#}"),
                    "scheduled action failed; it is tried again"
                );
            }
        }
        self.steps
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(StepReport {
            actions: plan.actions,
            wake_at: plan.wake_at,
        })
    }

    /// A slot claimed but never frozen (the daemon stopped in between, or another daemon
    /// did and its claim has expired): finished from the folder as it was meant to be, or
    /// closed for good, with one notice, when that can no longer be right.
    async fn settle_claim(
        &self,
        claim: &UnfinishedClaim,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let (slot, id) = (claim.at, claim.issue);
        if self.store.issue(id).await?.is_some() {
            // Frozen before the stop: only the archive and the record are left.
            tracing::info!(issue = %id, "finishing a slot frozen before the daemon stopped");
            return self.finish_claim(slot, None, now).await;
        }
        let issue = self.compose(id);
        let later_slot_sent = self.store.later_slot_taken(slot).await?;
        let close = if issue.is_sendable() {
            if let Some(earlier) = self.already_sent(&issue).await? {
                Some((
                    SlotState::Superseded,
                    format!("its section files went out as the issue {earlier}"),
                ))
            } else if later_slot_sent {
                Some((SlotState::Superseded, "a later slot was sent meanwhile; the files in the folder are left for the next issue".to_owned()))
            } else if !self.timing.may_catch_up(slot, now) {
                Some((SlotState::GivenUp, "gazette stopped while preparing it and was not back within the catch-up window; the files in the folder are left for the next issue".to_owned()))
            } else {
                None
            }
        } else if later_slot_sent || self.store.issue_frozen_since(claim.claimed_at).await? {
            Some((
                SlotState::Superseded,
                "its section files went out with a later issue".to_owned(),
            ))
        } else {
            let errors: Vec<String> = issue.errors().map(ToString::to_string).collect();
            Some((
                SlotState::GivenUp,
                format!(
                    "gazette stopped while preparing it, and its section files are now gone or have errors: {}",
                    errors.join("; ")
                ),
            ))
        };
        let Some((state, note)) = close else {
            tracing::warn!(issue = %id, "finishing a slot claimed before the daemon stopped");
            return self.finish_claim(slot, Some(issue), now).await;
        };
        self.close_interrupted(slot, id, state, &note, now).await
    }

    /// Closes a claimed slot that will not be frozen as `state` and tells the editors,
    /// once, why.
    async fn close_interrupted(
        &self,
        slot: DateTime<Utc>,
        id: IssueId,
        state: SlotState,
        note: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        if !self.store.close_claim(slot, state, note, now).await? {
            return Ok(());
        }
        self.set_retry_claim_at(slot, None);
        tracing::warn!(issue = %id, state = state.as_str(), "closed a slot interrupted before its issue was frozen: {note}");
        let (kind, subject) = match state {
            SlotState::Superseded => ("superseded", format!("Issue {id} was not sent on its own")),
            _ => ("given-up", format!("Issue {id} was not sent")),
        };
        let body = format!(
            "The issue {id}, due {}, was being prepared when gazette stopped, before it was frozen. Nothing was sent for it: {note}.\n\nIf it should still go out, put its files in the sections folder and run `gazette send-now --date {id}`.\n",
            self.local(slot)
        );
        self.notify_about(slot, kind, id, &subject, &body, now)
            .await
    }

    /// When this scheduler tries again to settle the claim on `slot` after a failure.
    fn retry_claim_at(&self, slot: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.claim_retries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&slot)
            .copied()
    }

    fn set_retry_claim_at(&self, slot: DateTime<Utc>, at: Option<DateTime<Utc>>) {
        let mut retries = self
            .claim_retries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match at {
            Some(at) => retries.insert(slot, at),
            None => retries.remove(&slot),
        };
    }

    /// The issue already frozen from exactly `issue`'s files, if any.
    async fn already_sent(&self, issue: &Issue) -> anyhow::Result<Option<IssueId>> {
        if issue.sources.is_empty() {
            return Ok(None);
        }
        Ok(self.store.issue_with_sources(&source_pairs(issue)).await?)
    }

    async fn act(&self, action: Action, now: DateTime<Utc>) -> anyhow::Result<()> {
        match action {
            Action::SendProof(slot) => self.send_proof(slot, now).await,
            Action::Compose(slot) => self.compose_and_send(slot, now).await,
            Action::GiveUp(slot) => {
                let issue = self.timing.issue_id(slot);
                let note = format!(
                    "held until the hold window ended ({}); nothing was sent",
                    self.local(self.timing.hold_until(slot))
                );
                if self
                    .store
                    .close_slot(slot, issue, SlotState::GivenUp, &note, now)
                    .await?
                {
                    tracing::error!(%issue, "gave up on a held issue: nothing was sent");
                    let body = format!(
                        "The issue {issue}, due {}, was held because of errors in the sections folder and the hold window has ended. It has not been sent and will not be sent automatically.\n\nFix the sections and send it with `gazette send-now --date {issue}`, or leave it for the next scheduled issue.\n",
                        self.local(slot)
                    );
                    self.notify_about(
                        slot,
                        "given-up",
                        issue,
                        &format!("Issue {issue} was not sent"),
                        &body,
                        now,
                    )
                    .await?;
                }
                Ok(())
            }
            Action::Supersede(slot) => {
                let issue = self.timing.issue_id(slot);
                let note = "a later slot came first, and composes the same folder";
                if self
                    .store
                    .close_slot(slot, issue, SlotState::Superseded, note, now)
                    .await?
                {
                    tracing::info!(%issue, slot = %slot, "slot superseded by a later one");
                }
                Ok(())
            }
            Action::ReportMissed(slot) => {
                let issue = self.timing.issue_id(slot);
                if self.store.issue(issue).await?.is_some() {
                    // Its date has its issue: nothing was missed.
                    let note = format!("the issue {issue} has been sent");
                    self.store
                        .close_slot(slot, issue, SlotState::Served, &note, now)
                        .await?;
                    return Ok(());
                }
                let note = "gazette was not running in time, or a later slot came first";
                if self
                    .store
                    .close_slot(slot, issue, SlotState::Missed, note, now)
                    .await?
                {
                    tracing::warn!(%issue, slot = %slot, "missed slot: not sent");
                    let body = format!(
                        "The issue {issue}, due {}, was not sent: gazette was not running at that time and the catch-up window has passed (or a later issue was due).\n\nTo send it anyway: `gazette send-now --date {issue}`.\n",
                        self.local(slot)
                    );
                    self.notify_about(
                        slot,
                        "missed",
                        issue,
                        &format!("Issue {issue} was missed"),
                        &body,
                        now,
                    )
                    .await?;
                }
                Ok(())
            }
        }
    }

    /// Sends a plain notice about `slot` to every editor and records that they were told.
    async fn notify_about(
        &self,
        slot: DateTime<Utc>,
        kind: &str,
        issue: IssueId,
        subject: &str,
        body: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        self.notify(kind, issue, subject, body, now).await?;
        self.store.editors_told(slot, now).await?;
        Ok(())
    }

    /// Sends a plain notice to every editor.
    async fn notify(
        &self,
        kind: &str,
        issue: IssueId,
        subject: &str,
        body: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        send_to_editors(self.ctx, kind, issue, |editor| {
            render::editor_notice(&self.ctx.settings.newsletter, editor, subject, body, now)
        })
        .await?;
        Ok(())
    }

    fn compose(&self, issue: IssueId) -> Issue {
        let dir = &self.ctx.settings.content.sections_dir;
        let composed = match compose::compose(
            dir,
            issue,
            &self.ctx.compose_options(),
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
                &self.ctx.compose_options(),
            ),
        };
        super::content::with_size_checks(self.ctx, composed)
    }

    /// Sends the proof of the issue for `slot` to every editor, once.
    ///
    /// Only an issue that can go out gets a proof: none while the slot's date already has
    /// its issue, the folder has no section files, or they are the files of an issue
    /// already sent. Those are looked at again at the next step, so a proof follows
    /// once an editor has put the next issue's files in place.
    pub async fn send_proof(&self, slot: DateTime<Utc>, now: DateTime<Utc>) -> anyhow::Result<()> {
        let id = self.timing.issue_id(slot);
        if self.store.issue(id).await?.is_some() {
            return Ok(());
        }
        let issue = self.compose(id);
        if issue.unsettled().is_some() {
            // A proof of a folder still being written would show sections as missing.
            tracing::info!(issue = %id, "section files are still being written; the proof waits for them");
            return Ok(());
        }
        if issue.sources.is_empty() || self.already_sent(&issue).await?.is_some() {
            tracing::debug!(issue = %id, "no proof: nothing new in the sections folder");
            return Ok(());
        }
        if !self.store.claim_proof(slot, id, now).await? {
            return Ok(());
        }
        self.mail_proof(&issue, &self.local(slot), now).await
    }

    /// Renders `issue` as a proof and sends it to the editors.
    pub async fn mail_proof(
        &self,
        issue: &Issue,
        send_at: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let newsletter = &self.ctx.settings.newsletter;
        let links = RecipientLinks::new(newsletter, &self.ctx.tokens, 0);
        let diagnostics: Vec<Diagnostic> = issue.diagnostics.clone();
        match self.ctx.renderer.render_issue(newsletter, issue) {
            Ok(rendered) => {
                send_to_editors(self.ctx, "proof", issue.id, |editor| {
                    render::proof_message(
                        newsletter,
                        editor,
                        issue.id,
                        send_at,
                        &rendered,
                        &diagnostics,
                        &links,
                        now,
                    )
                })
                .await?;
            }
            Err(e) => {
                let body = format!(
                    "The proof of the issue {} could not be rendered: {e}\n\n{}",
                    issue.id,
                    render::hold_text(issue.id, &diagnostics, send_at)
                );
                self.notify(
                    "proof",
                    issue.id,
                    &format!("Proof of {} failed", issue.id),
                    &body,
                    now,
                )
                .await?;
            }
        }
        tracing::info!(issue = %issue.id, warnings = issue.diagnostics.len(), "proof sent to the editors");
        Ok(())
    }

    /// At the slot: compose, then hold (errors) or claim, freeze, archive and queue.
    async fn compose_and_send(
        &self,
        slot: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let id = self.timing.issue_id(slot);
        let mut issue = self.compose(id);
        if let Readiness::Unsettled { files, .. } = issue.readiness() {
            // Not held, and nobody is told: the files are read once they settle, at
            // the next step.
            tracing::info!(issue = %id, files = files.len(), "section files are still being written; composing again shortly");
            return Ok(());
        }
        if self.store.issue(id).await?.is_some() {
            // Issue ids are dates: a second slot on one day cannot be a second issue.
            return self.pass_over(slot, id, &issue, now).await;
        }
        if issue.is_sendable()
            && let Some(earlier) = self.already_sent(&issue).await?
        {
            issue.diagnostics.push(Diagnostic::issue_error(format!(
                "the section files are the same as those of the issue {earlier}, which has been sent; put the next issue's files in the sections folder"
            )));
        }
        if !issue.is_sendable() {
            let next = self.timing.recheck_after(now);
            let errors: Vec<String> = issue.errors().map(ToString::to_string).collect();
            let first = self
                .store
                .hold_slot(slot, id, next, &errors.join("; "), now)
                .await?;
            tracing::warn!(issue = %id, errors = errors.len(), next_check = %next, "issue held");
            // Told once per issue and reason: the next slot of a frequent schedule, held
            // for the same errors, says nothing new.
            if first
                && !self
                    .store
                    .hold_already_told(id, &errors.join("; "), slot)
                    .await?
            {
                let until = self.local(self.timing.hold_until(slot));
                let body = render::hold_text(id, &issue.diagnostics, &until);
                self.notify_about(slot, "held", id, &format!("Issue {id} is held"), &body, now)
                    .await?;
            }
            return Ok(());
        }
        if !self
            .store
            .claim_slot(slot, id, &self.daemon_id, now)
            .await?
        {
            tracing::info!(issue = %id, "slot already claimed by another daemon");
            return Ok(());
        }
        self.finish_claim(slot, Some(issue), now).await
    }

    /// The slot's date already has its issue (sent by `send-now`, or by an earlier slot
    /// that day): the slot is `served`. The editors hear about it only if new section
    /// files are waiting in the folder, and then once per date.
    async fn pass_over(
        &self,
        slot: DateTime<Utc>,
        id: IssueId,
        folder: &Issue,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let note = format!(
            "the issue {id} has already been sent; gazette sends at most one issue per day"
        );
        if !self
            .store
            .close_slot(slot, id, SlotState::Served, &note, now)
            .await?
        {
            return Ok(());
        }
        let waiting = !folder.sources.is_empty() && self.already_sent(folder).await?.is_none();
        tracing::info!(issue = %id, files_waiting = waiting, "slot passed over: {note}");
        if !waiting || self.store.editors_told_about(id, SlotState::Served).await? {
            return Ok(());
        }
        let body = format!(
            "The slot {} was not used: {note}. The files in the sections folder are left where they are, for the next issue.\n",
            self.local(slot)
        );
        self.notify_about(
            slot,
            "missed",
            id,
            &format!("Slot {} not used", self.local(slot)),
            &body,
            now,
        )
        .await
    }

    /// Freezes the claimed slot's issue, queues its audience and archives its files.
    /// Safe to run again after a crash at any point: each part is idempotent.
    async fn finish_claim(
        &self,
        slot: DateTime<Utc>,
        issue: Option<Issue>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let id = self.timing.issue_id(slot);
        let frozen = match self.store.issue(id).await? {
            Some(frozen) => frozen,
            None => {
                let issue = match issue {
                    Some(issue) => issue,
                    None => self.compose(id),
                };
                anyhow::ensure!(
                    issue.is_sendable(),
                    "the sections folder now has errors; fix them to let the issue go out"
                );
                let (frozen, outcome) =
                    freeze_and_snapshot(self.ctx, &self.store, &issue, now).await?;
                tracing::info!(issue = %id, queued = outcome.queued, "issue frozen; delivery starts");
                frozen
            }
        };
        archive_sources(
            &self.ctx.settings.content.sections_dir,
            &self.ctx.settings.content.archive_dir,
            id,
            &frozen.sources,
        )?;
        self.store.slot_frozen(slot, now).await?;
        Ok(())
    }

    /// Steps until `shutdown`, sleeping until the next event in between.
    pub async fn run_until_stopped(
        &self,
        clock: &dyn Clock,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        loop {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            let now = clock.now();
            let report = self.try_once(now).await?;
            let wait = report
                .wake_at
                .and_then(|at| (at - clock.now()).to_std().ok())
                .unwrap_or(Duration::ZERO)
                .clamp(Duration::from_millis(200), MAX_SLEEP);
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// The (file name, content) pairs an issue was composed from.
pub fn source_pairs(issue: &Issue) -> Vec<(String, String)> {
    issue
        .sources
        .iter()
        .map(|s| (s.name(), s.text.clone()))
        .collect()
}

/// Moves the issue's section files from the sections folder to `archive/<issue>/`.
/// Only a file that still holds what the issue was made from is moved: one an editor has
/// since replaced with the next issue's text stays. Files already moved (a re-run after
/// a crash) are skipped; a file whose name is taken in the archive gets a numbered name
/// rather than overwriting it.
pub fn archive_sources(
    sections: &Path,
    archive: &Path,
    issue: IssueId,
    sources: &[(String, String)],
) -> anyhow::Result<()> {
    let dest_dir = archive.join(issue.to_string());
    for (name, content) in sources {
        let from = sections.join(name);
        match std::fs::read(&from) {
            Ok(bytes) if bytes == content.as_bytes() => {}
            _ => continue,
        }
        std::fs::create_dir_all(&dest_dir)
            .with_context(|| format!("creating {}", dest_dir.display()))?;
        let mut to = dest_dir.join(name);
        let mut n = 1;
        while to.exists() {
            to = dest_dir.join(format!("{name}.{n}"));
            n += 1;
        }
        if std::fs::rename(&from, &to).is_err() {
            // Another file system: copy, make it durable, then remove.
            std::fs::copy(&from, &to).with_context(|| format!("archiving {}", from.display()))?;
            std::fs::File::open(&to).and_then(|f| f.sync_all())?;
            std::fs::remove_file(&from).with_context(|| format!("removing {}", from.display()))?;
        }
    }
    Ok(())
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
    let scheduler = Scheduler::new(ctx, store.clone());
    let web_state = super::web::web_state_with(ctx, store.clone())?
        .with_scheduler_steps(scheduler.step_counter());
    let mut worker = delivery_worker(ctx, store.clone())?;
    let mut inbox = super::inbox::inbox_worker(ctx, store.clone())?;
    match scheduler.timing().next_slot(clock.now()) {
        Some(next) => tracing::info!(
            next_slot = %scheduler.local(next),
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
    let scheduler = Scheduler::new(ctx, store.clone());
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
        .mail_proof(&issue, &scheduler.local(slot), now)
        .await?;
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
    let local = |at: DateTime<Utc>| {
        at.with_timezone(&timing.timezone)
            .format("%A %-d %B %Y at %H:%M %Z")
            .to_string()
    };
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
