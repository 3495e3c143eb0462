//! The scheduler: one step ([`Scheduler::try_once`]) around the pure decision in
//! [`plan`], and a loop ([`Scheduler::run_until_stopped`]) that sleeps until the plan's
//! next event. It decides and records; what it does to the world (read the sections
//! folder, freeze and queue an issue, archive its files, mail the editors) it asks of a
//! [`Newsroom`], which `app` provides over the real folder, store and transport.

use super::{Action, SlotState, Timing, plan};
use crate::compose::{Diagnostic, Issue, Readiness};
use crate::domain::{Clock, IssueId};
use crate::render::EditorNote;
use crate::store::{FrozenIssue, Store, StoreError, UnfinishedClaim};
use chrono::{DateTime, Utc};
use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The longest the scheduler sleeps between looks, so a changed clock or a slot record
/// written by another daemon is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// How long a claim by another live daemon may stay unfinished before this one settles
/// it. A claim whose process is gone from this host is settled at once.
const CLAIM_GRACE: chrono::Duration = chrono::Duration::seconds(60);

/// How soon to look again while another daemon is still freezing an earlier slot.
const CLAIM_RECHECK: chrono::Duration = chrono::Duration::seconds(2);

/// An error from the [`Newsroom`], kept whole for the log.
pub type NewsroomError = Box<dyn std::error::Error + Send + Sync>;

/// Why a scheduler step or action failed.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Newsroom(NewsroomError),
    #[error("the sections folder now has errors; fix them to let the issue go out")]
    NoLongerSendable,
}

/// What the scheduler needs done outside the store.
pub trait Newsroom: Sync {
    /// The issue `id` composed from the sections folder as it is now, size checks
    /// included. A folder that cannot be read is an issue holding an error.
    fn compose(&self, id: IssueId) -> Issue;

    /// Renders and freezes `issue` and queues its audience; the frozen issue, or the one
    /// frozen before under its id.
    fn freeze(
        &self,
        store: &Store,
        issue: &Issue,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<FrozenIssue, NewsroomError>> + Send;

    /// Moves the frozen issue's files out of the sections folder.
    fn archive(&self, frozen: &FrozenIssue) -> Result<(), NewsroomError>;

    /// Sends `note` to every editor.
    fn tell_editors(
        &self,
        issue: IssueId,
        note: &EditorNote,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), NewsroomError>> + Send;

    /// Renders `issue` as a proof, due `send_at`, and sends it to every editor.
    fn mail_proof(
        &self,
        issue: &Issue,
        send_at: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), NewsroomError>> + Send;
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
pub struct Scheduler<N: Newsroom> {
    newsroom: N,
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

impl<N: Newsroom> Scheduler<N> {
    /// A scheduler keeping `timing` over `store`, acting through `newsroom`.
    pub fn new(newsroom: N, store: Store, timing: Timing) -> Self {
        Self {
            newsroom,
            store,
            timing,
            daemon_id: crate::domain::process_name(),
            since: tokio::sync::OnceCell::new(),
            claim_retries: std::sync::Mutex::default(),
            steps: std::sync::Arc::default(),
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

    /// What the scheduler acts through.
    pub fn newsroom(&self) -> &N {
        &self.newsroom
    }

    fn local(&self, at: DateTime<Utc>) -> String {
        self.timing.local(at)
    }

    /// One step at `now`: settles claims left unfinished, then does what the plan says
    /// is due. An action that fails is logged and tried again at the next step; only a
    /// store that cannot be read stops the scheduler.
    pub async fn try_once(&self, now: DateTime<Utc>) -> Result<StepReport, ScheduleError> {
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
                    let e = error_chain(&e);
                    tracing::error!(issue = %claim.issue, error = e, "cannot settle the claimed slot; the hold window has ended");
                    let note = format!("it could not be frozen before the hold window ended: {e}");
                    self.close_interrupted(claim.at, claim.issue, SlotState::GivenUp, &note, now)
                        .await?;
                }
                Err(e) => {
                    let retry = self.timing.recheck_after(now);
                    tracing::error!(issue = %claim.issue, error = error_chain(&e), retry_at = %retry, "cannot settle the claimed slot; later slots wait for it");
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
                    error = error_chain(&e),
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
    ) -> Result<(), ScheduleError> {
        let (slot, id) = (claim.at, claim.issue);
        if self.store.issue(id).await?.is_some() {
            // Frozen before the stop: only the archive and the record are left.
            tracing::info!(issue = %id, "finishing a slot frozen before the daemon stopped");
            return self.finish_claim(slot, None, now).await;
        }
        let issue = self.newsroom.compose(id);
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
    ) -> Result<(), ScheduleError> {
        if !self.store.close_claim(slot, state, note, now).await? {
            return Ok(());
        }
        self.set_retry_claim_at(slot, None);
        tracing::warn!(issue = %id, state = state.as_str(), "closed a slot interrupted before its issue was frozen: {note}");
        let superseded = state == SlotState::Superseded;
        let notice = EditorNote::interrupted(id, &self.local(slot), superseded, note);
        self.notify_about(slot, id, &notice, now).await
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
    async fn already_sent(&self, issue: &Issue) -> Result<Option<IssueId>, ScheduleError> {
        if issue.sources.is_empty() {
            return Ok(None);
        }
        Ok(self.store.issue_with_sources(&issue.source_pairs()).await?)
    }

    async fn act(&self, action: Action, now: DateTime<Utc>) -> Result<(), ScheduleError> {
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
                    let notice = EditorNote::given_up(issue, &self.local(slot));
                    self.notify_about(slot, issue, &notice, now).await?;
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
                    let notice = EditorNote::missed(issue, &self.local(slot));
                    self.notify_about(slot, issue, &notice, now).await?;
                }
                Ok(())
            }
        }
    }

    /// Sends `notice` about `slot` to every editor and records that they were told.
    async fn notify_about(
        &self,
        slot: DateTime<Utc>,
        issue: IssueId,
        notice: &EditorNote,
        now: DateTime<Utc>,
    ) -> Result<(), ScheduleError> {
        self.newsroom
            .tell_editors(issue, notice, now)
            .await
            .map_err(ScheduleError::Newsroom)?;
        self.store.editors_told(slot, now).await?;
        Ok(())
    }

    /// Sends the proof of the issue for `slot` to every editor, once.
    ///
    /// Only an issue that can go out gets a proof: none while the slot's date already has
    /// its issue, the folder has no section files, or they are the files of an issue
    /// already sent. Those are looked at again at the next step, so a proof follows
    /// once an editor has put the next issue's files in place.
    pub async fn send_proof(
        &self,
        slot: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), ScheduleError> {
        let id = self.timing.issue_id(slot);
        if self.store.issue(id).await?.is_some() {
            return Ok(());
        }
        let issue = self.newsroom.compose(id);
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
        self.newsroom
            .mail_proof(&issue, &self.local(slot), now)
            .await
            .map_err(ScheduleError::Newsroom)
    }

    /// At the slot: compose, then hold (errors) or claim, freeze, archive and queue.
    async fn compose_and_send(
        &self,
        slot: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), ScheduleError> {
        let id = self.timing.issue_id(slot);
        let mut issue = self.newsroom.compose(id);
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
                let notice = EditorNote::held(id, &issue.diagnostics, &until);
                self.notify_about(slot, id, &notice, now).await?;
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
    ) -> Result<(), ScheduleError> {
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
        let notice = EditorNote::slot_not_used(&self.local(slot), &note);
        self.notify_about(slot, id, &notice, now).await
    }

    /// Freezes the claimed slot's issue, queues its audience and archives its files.
    /// Safe to run again after a crash at any point: each part is idempotent.
    async fn finish_claim(
        &self,
        slot: DateTime<Utc>,
        issue: Option<Issue>,
        now: DateTime<Utc>,
    ) -> Result<(), ScheduleError> {
        let id = self.timing.issue_id(slot);
        let frozen = match self.store.issue(id).await? {
            Some(frozen) => frozen,
            None => {
                let issue = match issue {
                    Some(issue) => issue,
                    None => self.newsroom.compose(id),
                };
                if !issue.is_sendable() {
                    return Err(ScheduleError::NoLongerSendable);
                }
                self.newsroom
                    .freeze(&self.store, &issue, now)
                    .await
                    .map_err(ScheduleError::Newsroom)?
            }
        };
        self.newsroom
            .archive(&frozen)
            .map_err(ScheduleError::Newsroom)?;
        self.store.slot_frozen(slot, now).await?;
        Ok(())
    }

    /// Steps until `shutdown`, sleeping until the next event in between.
    pub async fn run_until_stopped(
        &self,
        clock: &dyn Clock,
        shutdown: &CancellationToken,
    ) -> Result<(), ScheduleError> {
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

/// An error and its causes on one line, as the log shows them.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
