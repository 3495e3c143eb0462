//! The delivery worker: takes due ledger rows, sends them across the transport's pool,
//! and records each result with the retry policy.
//!
//! One step is [`DeliveryWorker::try_once`]: it is given the time, so tests drive retries
//! by moving a clock instead of sleeping. [`DeliveryWorker::run_until_stopped`] loops
//! over it until shutdown, and [`DeliveryWorker::deliver_due`] until nothing is due.
//!
//! Several workers (several daemons, a `send-now`) may drain one ledger together. Each
//! batch claims its rows in the store under a token of its own (`host:pid:n#batch`)
//! for `claim_ttl`, renewed every third of that while the batch runs, so no other
//! worker takes them. A worker that dies leaves its claims to run out, and then any
//! worker sends those rows; when it ran on this host and its process is gone, the next
//! worker here that runs out of other rows takes them over at once. Results are written
//! in one transaction after the batch, each only to a row the batch still holds: a
//! worker whose claim ran out (a suspended VM, a stalled relay) and was taken over
//! cannot write over the new holder's result; its late results are dropped and logged.
//! The duplicates such a take-over can cause are bounded by what that worker had in
//! flight.
//!
//! A single step ([`DeliveryWorker::try_once`]) returns once its results are on disk.
//! The loops ([`DeliveryWorker::deliver_due_until`], [`DeliveryWorker::run_until_stopped`])
//! do not wait for that write: the next batch is sent while it runs (the rows being
//! written are still claimed, so the next claim passes them over), and it must have
//! succeeded before the next batch's results are written, so the writes stay in order.
//! A crash loses at most two batches of results (one being written, one being sent),
//! and those rows are sent again once their claims are taken over: the duplicates after
//! a crash are bounded by twice the batch size, and the fsyncs per message stay low.
//!
//! A batch can end early, and then every row not yet handed to the transport stays
//! exactly as it was:
//! - asked to stop (SIGTERM, Ctrl-C): messages in flight get `stop_grace` to be answered
//!   and are recorded; those still unanswered then are recorded as unknown.
//! - a relay or local fault (nothing listening, TLS or AUTH refused, MAIL FROM or DATA
//!   refused, the outbox folder cannot be written): no recipient is charged; the relay as
//!   a whole is backed off (`relay_retry_initial`, doubling up to `relay_retry_max`),
//!   and the next step after that tries again at full speed.
//! - the claim was lost (a renewal found rows taken by another worker): the results for
//!   rows still held are written, the others dropped.
//!
//! Only explicit throttling replies lower the pace; each clean batch doubles it back.

use super::policy::RetryPolicy;
use super::{MessageFactory, OutgoingMessage, SendError, Transport};
use crate::domain::{Clock, IssueId};
use crate::store::{DeliveryUpdate, DueDelivery, FrozenIssue, Store, StoreError, SubscriberStatus};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Why the worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The ledger cannot be written: sending stops, since a message sent now could not
    /// be recorded and would go out again.
    #[error("the delivery ledger cannot be read or written, so sending stops: {0}")]
    Store(#[from] StoreError),
    #[error("the ledger refers to issue {0}, which is not in the store")]
    MissingIssue(IssueId),
    /// The task writing a batch's results ended without an answer (it panicked).
    #[error("writing a batch's results to the ledger failed: {0}")]
    Commit(String),
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A batch was attempted.
    Worked(BatchReport),
    /// Nothing is due now; `next_due` is when something will be (None: nothing left).
    NothingDue { next_due: Option<DateTime<Utc>> },
    /// The relay (or the outbox folder) failed: nothing more is tried before `retry_at`.
    /// `report` is what the batch did before that (nothing when still backing off).
    RelayDown {
        report: BatchReport,
        error: String,
        retry_at: DateTime<Utc>,
    },
    /// Asked to stop during the batch; what was answered is recorded in `report`.
    Stopped(BatchReport),
}

/// How a run of steps ([`DeliveryWorker::deliver_due_until`]) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// Nothing is due any more (rows other workers hold are theirs to finish).
    Done,
    /// Asked to stop.
    Stopped,
    /// The relay (or the outbox folder) failed; tried again at `retry_at`.
    RelayDown {
        error: String,
        retry_at: DateTime<Utc>,
    },
}

/// How long a batch's claim on its rows lasts without renewal (`delivery.claim_ttl`'s
/// default). A batch renews it every third of this while it runs, so a live worker keeps
/// its rows; the rows of a worker that died are sent by others after this long.
const CLAIM_TTL: Duration = Duration::from_secs(60);

/// How a batch (or several) ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchReport {
    pub sent: u64,
    pub retrying: u64,
    pub failed: u64,
    pub skipped: u64,
    /// Of `retrying`: rows the server throttled.
    pub throttled: u64,
    /// Rows sent without an answer (recorded as unknown, tried again later).
    pub unknown: u64,
    /// Results not recorded: the batch's claim on those rows ran out and another worker
    /// took them, so theirs stands.
    pub dropped: u64,
}

impl BatchReport {
    /// Rows handled.
    pub fn total(&self) -> u64 {
        self.sent + self.retrying + self.failed + self.skipped + self.unknown
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &BatchReport) {
        self.sent += other.sent;
        self.retrying += other.retrying;
        self.failed += other.failed;
        self.skipped += other.skipped;
        self.throttled += other.throttled;
        self.unknown += other.unknown;
        self.dropped += other.dropped;
    }
}
/// Rows per connection per batch. Each batch ends with a wait for its last answers and
/// one commit of its results, so a batch of 16 per connection cost about a seventh of
/// the send rate against 64; a crash sends at most two batches again, which at 64 per
/// connection is still well under a second of sending.
pub const ROWS_PER_CONNECTION: usize = 64;

/// The send rate: `[smtp] rate_per_second` at most, halved when the server throttles,
/// and doubled back after each batch without trouble.
struct Pace {
    configured: Option<NonZeroU32>,
    current: Option<NonZeroU32>,
    limiter: Option<DefaultDirectRateLimiter>,
}

impl Pace {
    fn new(rate_per_second: u32) -> Self {
        let configured = NonZeroU32::new(rate_per_second);
        let mut pace = Self {
            configured,
            current: None,
            limiter: None,
        };
        pace.set(configured);
        pace
    }

    fn set(&mut self, rate: Option<NonZeroU32>) {
        self.current = rate;
        self.limiter = rate.map(|r| RateLimiter::direct(Quota::per_second(r)));
    }

    async fn wait(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
    }

    /// Halves the rate: of the current limit, or of what the batch achieved.
    fn slow_down(&mut self, observed_per_second: f64) {
        let base = self.current.map_or(observed_per_second, |c| {
            f64::from(c.get()).min(observed_per_second.max(1.0))
        });
        let halved = ((base / 2.0).floor() as u32).max(1);
        tracing::warn!(
            rate_per_second = halved,
            "server is throttling; slowing down"
        );
        self.set(NonZeroU32::new(halved));
    }

    /// Doubles the rate after a clean batch, up to the configured limit: a few clean
    /// batches undo any slowdown.
    fn recover(&mut self) {
        let Some(current) = self.current else {
            return;
        };
        if self.configured == Some(current) {
            return;
        }
        let raised = current.get().saturating_mul(2);
        match self.configured {
            Some(max) => self.set(NonZeroU32::new(raised.min(max.get()))),
            // No configured limit: after recovering past a generous rate, drop the limiter.
            None if raised > 2000 => self.set(None),
            None => self.set(NonZeroU32::new(raised)),
        }
    }

    fn current(&self) -> Option<u32> {
        self.current.map(NonZeroU32::get)
    }
}

/// One row's attempt.
enum Attempt {
    /// The transport answered.
    Answered(Result<(), SendError>),
    /// The message could not be built.
    Unbuildable(String),
    /// Not handed to the transport: the batch ended first. The row stays as it was.
    NotTried,
}

/// A batch's results being written while the next batch is sent.
/// Its rows stay claimed by its token until the write is done, so the next batch's
/// claim passes them over. The task answers how many results were dropped.
struct PendingCommit {
    task: tokio::task::JoinHandle<Result<u64, StoreError>>,
}

/// The next batch's claim, taken while the batch before is sent: the connections do not
/// wait for a write to the store between batches.
struct Ahead {
    token: String,
    task: tokio::task::JoinHandle<Result<Vec<DueDelivery>, StoreError>>,
}

impl Ahead {
    async fn rows(self) -> Result<(String, Vec<DueDelivery>), WorkerError> {
        match self.task.await {
            Ok(rows) => Ok((self.token, rows?)),
            Err(e) => Err(WorkerError::Commit(e.to_string())),
        }
    }
}

/// What the worker knows about the relay: failures in a row, and until when it waits.
#[derive(Debug, Default)]
struct RelayHealth {
    failures: u32,
    retry_at: Option<DateTime<Utc>>,
    error: Option<String>,
    /// Whether "up" has been written to the store since the last failure.
    recorded_up: bool,
}

/// Defaults for the relay back-off and the stop grace (the settings' defaults).
const RELAY_RETRY_INITIAL: Duration = Duration::from_secs(10);
const RELAY_RETRY_MAX: Duration = Duration::from_secs(300);
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Drains the delivery ledger through a transport.
pub struct DeliveryWorker<T: Transport> {
    store: Store,
    transport: T,
    /// Shared with the blocking threads that sign messages.
    messages: Arc<MessageFactory>,
    policy: RetryPolicy,
    pace: Pace,
    batch_size: u32,
    issues: HashMap<IssueId, Arc<FrozenIssue>>,
    /// This worker's name; each batch's claim token is this, `#`, and its number.
    holder: String,
    /// Batches claimed so far, for the next token.
    batches: u64,
    claim_ttl: chrono::Duration,
    /// Results dropped by writes that ran while the loop went on (see `dropped`).
    dropped_meanwhile: u64,
    relay: RelayHealth,
    relay_retry_initial: Duration,
    relay_retry_max: Duration,
    stop_grace: Duration,
    /// In the loops: a Worked step returns while its results are still being written.
    overlap: bool,
    pending: Option<PendingCommit>,
    /// In the loops: the next batch, claimed while this one is sent.
    ahead: Option<Ahead>,
}

impl<T: Transport> DeliveryWorker<T> {
    /// A worker sending through `transport` at most `rate_per_second` messages a second
    /// (0: no limit), in batches sized to the transport's concurrency.
    pub fn new(
        store: Store,
        transport: T,
        messages: MessageFactory,
        policy: RetryPolicy,
        rate_per_second: u32,
    ) -> Self {
        let batch_size = (transport.concurrency().max(1) * ROWS_PER_CONNECTION) as u32;
        Self {
            store,
            transport,
            messages: Arc::new(messages),
            policy,
            pace: Pace::new(rate_per_second),
            batch_size,
            issues: HashMap::new(),
            holder: crate::domain::process_name(),
            batches: 0,
            claim_ttl: chrono::Duration::from_std(CLAIM_TTL).unwrap_or(chrono::Duration::MAX),
            dropped_meanwhile: 0,
            relay: RelayHealth::default(),
            relay_retry_initial: RELAY_RETRY_INITIAL,
            relay_retry_max: RELAY_RETRY_MAX,
            stop_grace: STOP_GRACE,
            overlap: false,
            pending: None,
            ahead: None,
        }
    }

    /// Sets the relay back-off: `initial` after the first failed try, doubling up to
    /// `max`.
    pub fn with_relay_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.relay_retry_initial = initial.max(Duration::from_millis(1));
        self.relay_retry_max = max.max(self.relay_retry_initial);
        self
    }

    /// Sets how long messages in flight may take to be answered once asked to stop.
    pub fn with_stop_grace(mut self, grace: Duration) -> Self {
        self.stop_grace = grace;
        self
    }

    /// Sets how long a batch's claim on its rows lasts without renewal (the default is
    /// a minute); a batch renews it every third of that while it runs.
    pub fn with_claim_ttl(mut self, ttl: Duration) -> Self {
        let ttl = ttl.max(Duration::from_secs(1));
        self.claim_ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        self
    }

    /// The relay's back-off: when the next try is due, if the relay is down.
    pub fn relay_retry_at(&self) -> Option<DateTime<Utc>> {
        self.relay.retry_at
    }

    fn relay_backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        self.relay_retry_initial
            .saturating_mul(1u32 << doublings)
            .min(self.relay_retry_max)
    }

    /// Sets how many rows one step takes (the most a crash can duplicate).
    pub fn with_batch_size(mut self, rows: u32) -> Self {
        self.batch_size = rows.max(1);
        self
    }

    /// Rows per step.
    pub fn batch_size(&self) -> u32 {
        self.batch_size
    }

    /// The current send-rate limit, if any (lowered while the server throttles).
    pub fn rate_limit(&self) -> Option<u32> {
        self.pace.current()
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    async fn issue(&mut self, id: IssueId) -> Result<Arc<FrozenIssue>, WorkerError> {
        if let Some(issue) = self.issues.get(&id) {
            return Ok(issue.clone());
        }
        let issue = Arc::new(
            self.store
                .issue(id)
                .await?
                .ok_or(WorkerError::MissingIssue(id))?,
        );
        self.issues.insert(id, issue.clone());
        Ok(issue)
    }

    /// One step at `now`: takes a batch of due rows, skips those whose subscriber is no
    /// longer active, sends the rest concurrently, and records every result.
    pub async fn try_once(&mut self, now: DateTime<Utc>) -> Result<Outcome, WorkerError> {
        self.try_once_until(now, &CancellationToken::new()).await
    }

    /// [`DeliveryWorker::try_once`], ending the batch early when `stop` is cancelled:
    /// rows not yet handed over stay as they were, rows in flight get the stop grace to
    /// be answered and are then recorded (as unknown if no answer came).
    pub async fn try_once_until(
        &mut self,
        now: DateTime<Utc>,
        stop: &CancellationToken,
    ) -> Result<Outcome, WorkerError> {
        let outcome = self.step(now, stop).await;
        // Only a batch that went well may still be writing its results when the step
        // returns, and only in the loops; anything else is on disk before it is reported.
        if self.overlap && matches!(outcome, Ok(Outcome::Worked(_))) {
            return outcome;
        }
        let finished = self.finish_pending().await;
        let released = self.release_ahead().await;
        let outcome = outcome?;
        finished?;
        released?;
        Ok(outcome)
    }

    /// Gives back the rows claimed ahead for a next batch that will not be sent now (a
    /// stop, the relay down, the loop's end), so they are due at once for any worker.
    async fn release_ahead(&mut self) -> Result<(), WorkerError> {
        let Some(ahead) = self.ahead.take() else {
            return Ok(());
        };
        let (token, rows) = ahead.rows().await?;
        if !rows.is_empty() {
            self.store.release_claim(&token).await?;
        }
        Ok(())
    }

    /// The claim token of the next batch.
    fn next_token(&mut self) -> String {
        self.batches += 1;
        format!("{}#{}", self.holder, self.batches)
    }

    /// Waits for the previous batch's results to be written.
    async fn finish_pending(&mut self) -> Result<(), WorkerError> {
        let Some(pending) = self.pending.take() else {
            return Ok(());
        };
        match pending.task.await {
            Ok(Ok(dropped)) => {
                if dropped > 0 {
                    log_dropped(dropped);
                    self.dropped_meanwhile += dropped;
                }
                Ok(())
            }
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(WorkerError::Commit(e.to_string())),
        }
    }

    async fn step(
        &mut self,
        now: DateTime<Utc>,
        stop: &CancellationToken,
    ) -> Result<Outcome, WorkerError> {
        if let Some(retry_at) = self.relay.retry_at
            && now < retry_at
        {
            return Ok(Outcome::RelayDown {
                report: BatchReport::default(),
                error: self.relay.error.clone().unwrap_or_default(),
                retry_at,
            });
        }
        let (token, mut rows) = match self.ahead.take() {
            Some(ahead) => ahead.rows().await?,
            None => {
                let token = self.next_token();
                let rows = self
                    .store
                    .claim_due_deliveries(now, self.batch_size, &token, now + self.claim_ttl)
                    .await?;
                (token, rows)
            }
        };
        if rows.is_empty() && self.free_claims_of_the_gone(now).await? {
            rows = self
                .store
                .claim_due_deliveries(now, self.batch_size, &token, now + self.claim_ttl)
                .await?;
        }
        if rows.is_empty() {
            // The last batch's rows are pending until they are written: wait for that
            // first, so the next due time is not theirs.
            self.finish_pending().await?;
            return Ok(Outcome::NothingDue {
                next_due: self.store.next_due_at().await?,
            });
        }
        let claimed = rows.len() as u64;
        // A full batch: more rows are likely due. The next batch is claimed while this
        // one is sent, and its claim renewed with this one's.
        if self.overlap && claimed == u64::from(self.batch_size) && !stop.is_cancelled() {
            let token = self.next_token();
            let store = self.store.clone();
            let (size, until) = (self.batch_size, now + self.claim_ttl);
            let claim = token.clone();
            self.ahead = Some(Ahead {
                token,
                task: tokio::spawn(async move {
                    store.claim_due_deliveries(now, size, &claim, until).await
                }),
            });
        }
        let mut report = BatchReport::default();
        let mut updates = Vec::with_capacity(rows.len());
        let mut outgoing: Vec<(DueDelivery, Arc<FrozenIssue>)> = Vec::with_capacity(rows.len());
        for row in rows {
            if row.subscriber_status != SubscriberStatus::Active {
                report.skipped += 1;
                updates.push((
                    row.issue,
                    row.subscriber_id,
                    DeliveryUpdate::Skipped { at: now },
                ));
                continue;
            }
            let issue = self.issue(row.issue).await?;
            outgoing.push((row, issue));
        }

        let started = Instant::now();
        let (attempts, in_flight, claim_lost) = self
            .send_batch(outgoing, now, stop, &token, claimed)
            .await?;
        // The last batch's results were being written meanwhile: they go first.
        self.finish_pending().await?;

        let mut throttled = false;
        let mut relay_fault: Option<String> = None;
        let mut answered = 0usize;
        for (row, attempt) in attempts {
            let result = match attempt {
                Attempt::NotTried => continue,
                Attempt::Unbuildable(error) => {
                    tracing::error!(subscriber = row.subscriber_id, %error, "cannot build message");
                    report.failed += 1;
                    updates.push((
                        row.issue,
                        row.subscriber_id,
                        DeliveryUpdate::Failed {
                            at: now,
                            error,
                            bounce_threshold: None,
                        },
                    ));
                    continue;
                }
                Attempt::Answered(result) => result,
            };
            match &result {
                Err(e) if e.is_system() => {
                    relay_fault.get_or_insert_with(|| e.to_string());
                    continue;
                }
                Err(e) => {
                    throttled |= e.is_throttle();
                    tracing::info!(
                        issue = %row.issue,
                        subscriber = row.subscriber_id,
                        error = %e,
                        "delivery attempt failed"
                    );
                }
                Ok(()) => {}
            }
            answered += 1;
            let Some(update) = self.policy.decide(&row, &result, now) else {
                continue;
            };
            match &update {
                DeliveryUpdate::Sent { .. } => report.sent += 1,
                DeliveryUpdate::Retrying { counts, .. } => {
                    report.retrying += 1;
                    if !counts {
                        report.throttled += 1;
                    }
                }
                DeliveryUpdate::Failed { .. } => report.failed += 1,
                DeliveryUpdate::Skipped { .. } => report.skipped += 1,
                DeliveryUpdate::Unknown { .. } => report.unknown += 1,
            }
            updates.push((row.issue, row.subscriber_id, update));
        }
        // Handed over but unanswered when the stop grace ran out: they may have arrived.
        for row in in_flight {
            report.unknown += 1;
            let next = now
                + chrono::Duration::from_std(self.policy.backoff(row.attempts + 1))
                    .unwrap_or(chrono::Duration::MAX);
            updates.push((
                row.issue,
                row.subscriber_id,
                DeliveryUpdate::Unknown {
                    at: now,
                    next,
                    error: "gazette stopped before the relay answered".into(),
                },
            ));
        }

        if throttled {
            let secs = started.elapsed().as_secs_f64().max(0.001);
            self.pace.slow_down(answered as f64 / secs);
        } else if answered > 0 && relay_fault.is_none() {
            self.pace.recover();
        }

        if !claim_lost && self.overlap && relay_fault.is_none() && !stop.is_cancelled() {
            // Written while the next batch is sent; see `finish_pending`.
            let store = self.store.clone();
            let task =
                tokio::spawn(
                    async move { store.record_claimed_deliveries(&token, &updates).await },
                );
            self.pending = Some(PendingCommit { task });
        } else {
            report.dropped = self
                .store
                .record_claimed_deliveries(&token, &updates)
                .await?;
            if report.dropped > 0 {
                log_dropped(report.dropped);
            }
        }

        if let Some(error) = relay_fault {
            self.relay.failures += 1;
            let retry_at = now
                + chrono::Duration::from_std(self.relay_backoff(self.relay.failures))
                    .unwrap_or(chrono::Duration::MAX);
            self.relay.retry_at = Some(retry_at);
            self.relay.error = Some(error.clone());
            self.relay.recorded_up = false;
            self.store
                .relay_down(now, retry_at, self.relay.failures, &error)
                .await?;
            tracing::error!(
                %error,
                failures = self.relay.failures,
                retry_at = %retry_at,
                "sending stopped: the relay (or the outbox) failed; no recipient is charged with it"
            );
            if !stop.is_cancelled() {
                return Ok(Outcome::RelayDown {
                    report,
                    error,
                    retry_at,
                });
            }
        } else if answered > 0 {
            if self.relay.failures > 0 {
                tracing::info!("the relay is back; sending at full speed");
            }
            self.relay.failures = 0;
            self.relay.retry_at = None;
            self.relay.error = None;
            if !self.relay.recorded_up {
                self.store.relay_up(now).await?;
                self.relay.recorded_up = true;
            }
        }
        if stop.is_cancelled() {
            return Ok(Outcome::Stopped(report));
        }
        Ok(Outcome::Worked(report))
    }

    /// Frees the claims of workers of this host whose process is gone (killed, crashed):
    /// their rows need not wait for the claims to run out. True if any were freed.
    /// Workers on other hosts cannot be seen from here; their claims run out.
    async fn free_claims_of_the_gone(&self, now: DateTime<Utc>) -> Result<bool, WorkerError> {
        let mut freed = false;
        for claim in self.store.claim_holders(now).await? {
            if claim.holder != self.holder && crate::domain::process_is_gone(&claim.holder) {
                let rows = self.store.release_claims_of(&claim.holder).await?;
                tracing::warn!(
                    previous = %claim.holder,
                    rows,
                    "took over the rows claimed by a process that is gone"
                );
                freed |= rows > 0;
            }
        }
        Ok(freed)
    }

    /// Sends `outgoing` across the transport's pool, renewing the claim `token` on its
    /// `claimed` rows meanwhile. Returns each row's attempt, the rows still unanswered
    /// when the stop grace ran out, and whether the claim was lost (in part).
    ///
    /// Messages are built ahead of the connections (see [`built_messages`]), so building
    /// the next ones overlaps with waiting for the server on the others. A relay fault, a stop or a
    /// lost claim ends the batch: rows not yet handed over come back as `NotTried`.
    async fn send_batch(
        &self,
        outgoing: Vec<(DueDelivery, Arc<FrozenIssue>)>,
        now: DateTime<Utc>,
        stop: &CancellationToken,
        token: &str,
        claimed: u64,
    ) -> Result<(Vec<(DueDelivery, Attempt)>, Vec<DueDelivery>, bool), WorkerError> {
        let end = stop.child_token();
        let rows: Vec<DueDelivery> = outgoing.iter().map(|(row, _)| row.clone()).collect();
        let handed_over: Vec<AtomicBool> = rows.iter().map(|_| AtomicBool::new(false)).collect();
        let mut answered = vec![false; rows.len()];
        let pace = &self.pace;
        let transport = &self.transport;
        let (end_ref, handed_ref) = (&end, &handed_over);
        let mut stream = built_messages(&self.messages, outgoing, end.clone())
            .map(|(i, row, built)| async move {
                if end_ref.is_cancelled() {
                    return (i, row, Attempt::NotTried);
                }
                let message = match built {
                    Ok(message) => message,
                    Err(e) => return (i, row, Attempt::Unbuildable(e)),
                };
                tokio::select! {
                    biased;
                    () = end_ref.cancelled() => return (i, row, Attempt::NotTried),
                    () = pace.wait() => {}
                }
                handed_ref[i].store(true, Ordering::SeqCst);
                let result = transport.send(&message).await;
                if matches!(&result, Err(e) if e.is_system()) {
                    // The next message would meet the same fault: stop handing them over.
                    end_ref.cancel();
                }
                (i, row, Attempt::Answered(result))
            })
            .buffer_unordered(self.transport.concurrency().max(1));

        let started = Instant::now();
        let grace = self.stop_grace;
        let deadline = async {
            stop.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        tokio::pin!(deadline);
        // Every third of the claim's time: two renewals can fail (a busy store) before
        // the claim runs out. Each is one write, not one per message.
        let renewal = (self.claim_ttl / 3)
            .to_std()
            .unwrap_or(Duration::from_secs(20))
            .max(Duration::from_millis(100));
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + renewal, renewal);
        let mut attempts = Vec::with_capacity(rows.len());
        let mut claim_lost = false;
        let mut grace_over = false;
        loop {
            tokio::select! {
                biased;
                item = stream.next() => match item {
                    Some((i, row, attempt)) => {
                        answered[i] = true;
                        attempts.push((row, attempt));
                    }
                    None => break,
                },
                () = &mut deadline => {
                    grace_over = true;
                    break;
                }
                _ = renew.tick(), if !claim_lost => {
                    // A long batch keeps its claim: renewed while it runs. Rows it no
                    // longer holds ran out and were taken: sending more of them would
                    // only make duplicates, so the batch ends.
                    let wall = now + chrono::Duration::from_std(started.elapsed()).unwrap_or_default();
                    let held = self.store.renew_claim(token, wall + self.claim_ttl).await?;
                    if let Some(ahead) = &self.ahead {
                        self.store.renew_claim(&ahead.token, wall + self.claim_ttl).await?;
                    }
                    if held < claimed {
                        tracing::warn!(
                            claimed,
                            held,
                            "rows of this batch were claimed by another worker after this \
                             batch's claim ran out; the batch ends"
                        );
                        claim_lost = true;
                        end.cancel();
                    }
                }
            }
        }
        drop(stream);
        let mut in_flight = Vec::new();
        if grace_over {
            for (i, row) in rows.into_iter().enumerate() {
                if !answered[i] && handed_over[i].load(Ordering::SeqCst) {
                    in_flight.push(row);
                }
            }
            tracing::warn!(
                unanswered = in_flight.len(),
                grace = ?grace,
                "stopping: messages still unanswered after the grace are recorded as unknown"
            );
        }
        Ok((attempts, in_flight, claim_lost))
    }

    /// Steps until nothing is due at the clock's time, calling `progress` after each
    /// batch. Returns the totals. Rows waiting for a later retry are left for later.
    pub async fn deliver_due(
        &mut self,
        clock: &dyn Clock,
        progress: impl FnMut(&BatchReport),
    ) -> Result<BatchReport, WorkerError> {
        let (totals, _) = self
            .deliver_due_until(clock, &CancellationToken::new(), progress)
            .await?;
        Ok(totals)
    }

    /// Steps until nothing is due (rows other workers hold are left to them), `stop` is
    /// cancelled, or the relay fails; returns the totals and which of these it was.
    pub async fn deliver_due_until(
        &mut self,
        clock: &dyn Clock,
        stop: &CancellationToken,
        progress: impl FnMut(&BatchReport),
    ) -> Result<(BatchReport, RunEnd), WorkerError> {
        self.overlap = true;
        self.dropped_meanwhile = 0;
        let result = self.deliver_due_loop(clock, stop, progress).await;
        self.overlap = false;
        let finished = self.finish_pending().await;
        let released = self.release_ahead().await;
        let (mut totals, end) = result?;
        finished?;
        released?;
        totals.dropped += self.dropped_meanwhile;
        Ok((totals, end))
    }

    async fn deliver_due_loop(
        &mut self,
        clock: &dyn Clock,
        stop: &CancellationToken,
        mut progress: impl FnMut(&BatchReport),
    ) -> Result<(BatchReport, RunEnd), WorkerError> {
        let mut totals = BatchReport::default();
        loop {
            if stop.is_cancelled() {
                return Ok((totals, RunEnd::Stopped));
            }
            match self.try_once_until(clock.now(), stop).await? {
                Outcome::Worked(report) => {
                    totals.add(&report);
                    progress(&report);
                }
                Outcome::NothingDue { .. } => return Ok((totals, RunEnd::Done)),
                Outcome::RelayDown {
                    report,
                    error,
                    retry_at,
                } => {
                    totals.add(&report);
                    progress(&report);
                    return Ok((totals, RunEnd::RelayDown { error, retry_at }));
                }
                Outcome::Stopped(report) => {
                    totals.add(&report);
                    progress(&report);
                    return Ok((totals, RunEnd::Stopped));
                }
            }
        }
    }

    /// Steps until `shutdown` completes: works while rows are due, otherwise sleeps until
    /// the next one is due (at most `idle_poll`, so rows queued meanwhile are seen), or
    /// until the relay's back-off ends. On shutdown a batch in progress stops taking
    /// rows and its messages in flight get the stop grace (see
    /// [`DeliveryWorker::with_stop_grace`]); their results are recorded. Returns an
    /// error, and stops, if the ledger cannot be written.
    pub async fn run_until_stopped(
        &mut self,
        clock: &dyn Clock,
        idle_poll: Duration,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), WorkerError> {
        let stop = CancellationToken::new();
        let watch = async {
            shutdown.await;
            stop.cancel();
            std::future::pending::<()>().await;
        };
        tokio::select! {
            result = self.run_until_cancelled(clock, idle_poll, &stop) => result,
            () = watch => unreachable!("the watch never ends"),
        }
    }

    /// [`DeliveryWorker::run_until_stopped`] with a cancellation token.
    pub async fn run_until_cancelled(
        &mut self,
        clock: &dyn Clock,
        idle_poll: Duration,
        stop: &CancellationToken,
    ) -> Result<(), WorkerError> {
        self.overlap = true;
        let result = self.run_loop(clock, idle_poll, stop).await;
        self.overlap = false;
        let finished = self.finish_pending().await;
        let released = self.release_ahead().await;
        result?;
        finished?;
        released?;
        Ok(())
    }

    async fn run_loop(
        &mut self,
        clock: &dyn Clock,
        idle_poll: Duration,
        stop: &CancellationToken,
    ) -> Result<(), WorkerError> {
        loop {
            if stop.is_cancelled() {
                return Ok(());
            }
            let wait_until = match self.try_once_until(clock.now(), stop).await? {
                Outcome::Worked(_) => continue,
                Outcome::Stopped(_) => continue,
                Outcome::NothingDue { next_due } => next_due.map(|at| (at, true)),
                // The back-off is not capped by the idle poll, or a relay that is down
                // would be asked every poll. Other workers go on meanwhile.
                Outcome::RelayDown { retry_at, .. } => Some((retry_at, false)),
            };
            let wait = match wait_until {
                Some((at, capped)) => {
                    let wait = (at - clock.now()).to_std().unwrap_or(Duration::ZERO);
                    if capped { wait.min(idle_poll) } else { wait }
                }
                None => idle_poll,
            }
            .max(Duration::from_millis(50));
            tokio::select! {
                biased;
                () = stop.cancelled() => return Ok(()),
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// A row to build a message for, with its position in the batch.
type Job = (usize, (DueDelivery, Arc<FrozenIssue>));

/// Messages a signing thread takes at a time: enough that handing them over is a small
/// part of the work, few enough that the first ones are ready soon.
const SIGNED_PER_TASK: usize = 8;

/// A batch's messages, each with its position and row. Unsigned ones are built, in
/// order, as they are asked for (a few µs each). Signed ones cost an RSA signature each:
/// as many threads as the machine has cores take them a few at a time and hand them
/// over through a channel that holds a few per thread, so every core keeps signing while
/// the connections send what is ready, and no more threads sign at once than there are
/// cores to run them. They come out in the order they are finished.
///
/// Once `end` is cancelled, or the stream is dropped, nothing more is signed: those
/// rows are not tried.
fn built_messages(
    factory: &Arc<MessageFactory>,
    outgoing: Vec<(DueDelivery, Arc<FrozenIssue>)>,
    end: CancellationToken,
) -> futures::stream::BoxStream<'static, (usize, DueDelivery, Result<OutgoingMessage, String>)> {
    let factory = Arc::clone(factory);
    let jobs = outgoing.into_iter().enumerate();
    if !factory.signs() {
        return futures::stream::iter(jobs.map(move |(i, (row, issue))| {
            let built = factory.build(&issue, &row).map_err(|e| e.to_string());
            (i, row, built)
        }))
        .boxed();
    }
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    let mut chunks: std::collections::VecDeque<Vec<Job>> = Default::default();
    for job in jobs {
        match chunks.back_mut() {
            Some(chunk) if chunk.len() < SIGNED_PER_TASK => chunk.push(job),
            _ => chunks.push_back(vec![job]),
        }
    }
    let threads = cores.min(chunks.len());
    let chunks = Arc::new(std::sync::Mutex::new(chunks));
    let (signed, ready) = tokio::sync::mpsc::channel(threads.max(1));
    for _ in 0..threads {
        let (chunks, signed, factory, end) = (
            Arc::clone(&chunks),
            signed.clone(),
            Arc::clone(&factory),
            end.clone(),
        );
        tokio::task::spawn_blocking(move || {
            loop {
                let chunk = chunks.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                let Some(chunk) = chunk else { break };
                if end.is_cancelled() {
                    break;
                }
                let built: Vec<_> = chunk
                    .into_iter()
                    .map(|(i, (row, issue))| {
                        let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            factory.build(&issue, &row).map_err(|e| e.to_string())
                        }))
                        .unwrap_or_else(|_| Err("building the message failed".to_owned()));
                        (i, row, built)
                    })
                    .collect();
                if signed.blocking_send(built).is_err() {
                    break;
                }
            }
        });
    }
    futures::stream::unfold(ready, |mut ready| async move {
        ready.recv().await.map(|chunk| (chunk, ready))
    })
    .flat_map(futures::stream::iter)
    .boxed()
}

/// Results dropped because the rows' claim ran out and another worker took them.
fn log_dropped(dropped: u64) {
    tracing::warn!(
        dropped,
        "results not recorded: this batch's claim on those rows ran out and another worker \
         took them (its results stand; the recipients may have two copies)"
    );
}
