//! The delivery worker: takes due ledger rows, sends them across the transport's pool,
//! and records each result with the retry policy.
//!
//! One step is [`DeliveryWorker::try_once`]: it is given the time, so tests drive retries
//! by moving a clock instead of sleeping. [`DeliveryWorker::run_until_stopped`] loops
//! over it until shutdown, and [`DeliveryWorker::deliver_due`] until nothing is due.
//!
//! Results of a batch are written in one transaction after the batch: a crash loses at
//! most one batch of results, and those rows are simply sent again. That bounds the
//! duplicates after a crash by the batch size, and keeps the fsyncs per message low.

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
use std::time::{Duration, Instant};

/// Why the worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The ledger cannot be written: sending stops, since a message sent now could not
    /// be recorded and would go out again.
    #[error("the delivery ledger cannot be read or written, so sending stops: {0}")]
    Store(#[from] StoreError),
    #[error("the ledger refers to issue {0}, which is not in the store")]
    MissingIssue(IssueId),
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A batch was attempted.
    Worked(BatchReport),
    /// Nothing is due now; `next_due` is when something will be (None: nothing left).
    NothingDue { next_due: Option<DateTime<Utc>> },
}

/// How a batch (or several) ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchReport {
    pub sent: u64,
    pub retrying: u64,
    pub failed: u64,
    pub skipped: u64,
    /// Of `retrying`: rows the server throttled.
    pub throttled: u64,
}

impl BatchReport {
    /// Rows handled.
    pub fn total(&self) -> u64 {
        self.sent + self.retrying + self.failed + self.skipped
    }

    fn add(&mut self, other: &BatchReport) {
        self.sent += other.sent;
        self.retrying += other.retrying;
        self.failed += other.failed;
        self.skipped += other.skipped;
        self.throttled += other.throttled;
    }
}

/// This many temporary failures in a row are read as the server pushing back, like an
/// explicit throttling reply.
const CONSECUTIVE_TRANSIENT_AS_THROTTLE: usize = 10;
/// Rows per connection per batch: enough to keep every connection busy.
const ROWS_PER_CONNECTION: usize = 16;

/// The send rate: `[smtp] rate_per_second` at most, halved when the server throttles,
/// and creeping back up after batches without trouble.
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

    /// Raises the rate a quarter after a clean batch, up to the configured limit.
    fn recover(&mut self) {
        let Some(current) = self.current else {
            return;
        };
        if self.configured == Some(current) {
            return;
        }
        let raised = current.get().saturating_add(current.get() / 4 + 1);
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

/// Drains the delivery ledger through a transport.
pub struct DeliveryWorker<T: Transport> {
    store: Store,
    transport: T,
    messages: MessageFactory,
    policy: RetryPolicy,
    pace: Pace,
    batch_size: u32,
    issues: HashMap<IssueId, Arc<FrozenIssue>>,
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
            messages,
            policy,
            pace: Pace::new(rate_per_second),
            batch_size,
            issues: HashMap::new(),
        }
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
        let rows = self.store.due_deliveries(now, self.batch_size).await?;
        if rows.is_empty() {
            return Ok(Outcome::NothingDue {
                next_due: self.store.next_due_at().await?,
            });
        }
        let mut report = BatchReport::default();
        let mut updates = Vec::with_capacity(rows.len());
        let mut outgoing: Vec<(DueDelivery, OutgoingMessage)> = Vec::with_capacity(rows.len());
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
            match self.messages.build(&issue, &row) {
                Ok(message) => outgoing.push((row, message)),
                Err(e) => {
                    tracing::error!(subscriber = row.subscriber_id, error = %e, "cannot build message");
                    report.failed += 1;
                    updates.push((
                        row.issue,
                        row.subscriber_id,
                        DeliveryUpdate::Failed {
                            at: now,
                            error: e.to_string(),
                            bounce_threshold: None,
                        },
                    ));
                }
            }
        }

        let started = Instant::now();
        let attempted = outgoing.len();
        let pace = &self.pace;
        let transport = &self.transport;
        let results: Vec<(DueDelivery, Result<(), SendError>)> =
            futures::stream::iter(outgoing.into_iter().map(|(row, message)| async move {
                pace.wait().await;
                let result = transport.send(&message).await;
                (row, result)
            }))
            .buffer_unordered(self.transport.concurrency().max(1))
            .collect()
            .await;

        let mut throttled = false;
        let mut transient_run = 0usize;
        for (row, result) in &results {
            match result {
                Err(e) if e.is_throttle() => throttled = true,
                Err(e) if !e.is_permanent() => {
                    transient_run += 1;
                    if transient_run >= CONSECUTIVE_TRANSIENT_AS_THROTTLE {
                        throttled = true;
                    }
                }
                _ => transient_run = 0,
            }
            if let Err(e) = result {
                tracing::info!(
                    issue = %row.issue,
                    subscriber = row.subscriber_id,
                    error = %e,
                    "delivery attempt failed"
                );
            }
            let update = self.policy.decide(row, result, now);
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
            }
            updates.push((row.issue, row.subscriber_id, update));
        }
        if throttled {
            let secs = started.elapsed().as_secs_f64().max(0.001);
            self.pace.slow_down(attempted as f64 / secs);
        } else if attempted > 0 {
            self.pace.recover();
        }
        self.store.record_deliveries(&updates).await?;
        Ok(Outcome::Worked(report))
    }

    /// Steps until nothing is due at the clock's time, calling `progress` after each
    /// batch. Returns the totals. Rows waiting for a later retry are left for later.
    pub async fn deliver_due(
        &mut self,
        clock: &dyn Clock,
        mut progress: impl FnMut(&BatchReport),
    ) -> Result<BatchReport, WorkerError> {
        let mut totals = BatchReport::default();
        loop {
            match self.try_once(clock.now()).await? {
                Outcome::Worked(report) => {
                    totals.add(&report);
                    progress(&report);
                }
                Outcome::NothingDue { .. } => return Ok(totals),
            }
        }
    }

    /// Steps until `shutdown` completes: works while rows are due, otherwise sleeps until
    /// the next one is due (at most `idle_poll`, so rows queued meanwhile are seen).
    /// Shutdown is honoured between steps, never inside one, so a batch's results are
    /// always recorded. Returns an error, and stops, if the ledger cannot be written.
    pub async fn run_until_stopped(
        &mut self,
        clock: &dyn Clock,
        idle_poll: Duration,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), WorkerError> {
        use futures::FutureExt as _;
        tokio::pin!(shutdown);
        loop {
            if (&mut shutdown).now_or_never().is_some() {
                return Ok(());
            }
            if let Outcome::NothingDue { next_due } = self.try_once(clock.now()).await? {
                let wait = next_due
                    .and_then(|at| (at - clock.now()).to_std().ok())
                    .unwrap_or(idle_poll)
                    .min(idle_poll)
                    .max(Duration::from_millis(50));
                tokio::select! {
                    biased;
                    () = &mut shutdown => return Ok(()),
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}
