//! The worker: one poll is [`Worker::try_once`]; [`Worker::run_until_stopped`] repeats it
//! every `poll_interval` (sooner when IMAP IDLE says mail arrived) until shutdown.
//!
//! Order within a poll, and why:
//! 1. notices owed from an earlier poll (a crash after recording) are sent;
//! 2. a batch is read (without marking it seen) and each message parsed into a command;
//! 3. messages recorded before are not acted on again, only filed as they were then;
//! 4. the batch's records and effects are written in one transaction;
//! 5. only then are the messages flagged or moved, and the new notices sent.
//!
//! A crash anywhere leaves either unrecorded messages still waiting (done again from
//! scratch) or recorded ones (filed without acting again): nothing is done twice.
//!
//! Several daemons may run on one store: a poll starts by taking the `inbox` lease, and
//! a worker that does not get it stands by ([`Outcome::StandingBy`]), so one daemon at
//! a time reads the mailbox and sends the notices. The lease lasts two poll intervals
//! and 30 s; a daemon that dies hands it over when it runs out, or at once when its
//! process is gone from this host.

use super::command::{Command, Recognizer};
use super::incoming::Incoming;
use super::notice::build_notice;
use super::source::{
    Disposition, ImapConfig, ImapSource, MaildirSource, MessageRef, Source, SourceError,
};
use crate::domain::DkimSigner;
use crate::domain::{Clock, TokenKey};
use crate::send::Transport;
use crate::settings::{InboxKind, Settings};
use crate::store::{
    InboxDisposition, InboxLimits, InboxRecorded, Store, StoreError, UNVERIFIED_REPORT,
};
use chrono::{DateTime, Utc};
use std::collections::HashSet;
use std::time::Duration;

/// Attempts at one notice before it is given up.
const MAX_NOTICE_ATTEMPTS: u32 = 5;

/// The lease that lets one daemon at a time read the mailbox and send the notices.
const LEASE: &str = "inbox";

/// How long the lease lasts past a poll beyond two poll intervals: a daemon that stops
/// without giving it up (killed, its host lost) hands the mailbox over after at most two
/// intervals and this, or at once when its process is known to be gone.
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// Why a poll failed.
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("inbox: {0}")]
    Store(#[from] StoreError),
    #[error("settings key `{key}`: {reason}")]
    Config { key: &'static str, reason: String },
}

/// What one poll did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PollReport {
    /// Messages read from the source.
    pub read: u64,
    pub unsubscribed: u64,
    /// Requests no subscriber matched (left for a person).
    pub unmatched_requests: u64,
    /// Delivery reports proven to be about a message we sent.
    pub bounces: u64,
    /// Delivery reports that proved nothing (left for a person, counting against nobody).
    pub unverified_reports: u64,
    /// Subscribers marked bounced by this poll.
    pub marked_bounced: u64,
    pub ignored: u64,
    pub for_a_person: u64,
    /// Messages recorded by an earlier poll, filed again without acting.
    pub already_done: u64,
    pub notices_sent: u64,
    pub notices_failed: u64,
}

/// The result of [`Worker::try_once`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing waited and no notice was owed.
    Empty,
    Worked(PollReport),
    /// Another daemon (`holder`) reads the mailbox now: nothing was read or sent.
    StandingBy {
        holder: String,
    },
}

/// The inbox worker.
#[derive(Debug)]
pub struct Worker<T: Transport> {
    source: Source,
    store: Store,
    transport: T,
    recognizer: Recognizer,
    newsletter: crate::settings::Newsletter,
    tokens: TokenKey,
    dkim: Option<std::sync::Arc<DkimSigner>>,
    limits: InboxLimits,
    poll_interval: Duration,
    /// This worker's name on the lease.
    holder: String,
}

/// Takes or renews the mailbox lease for `holder` at `now`, for `ttl`; the holder to
/// stand by for when another daemon has it. A holder whose process is gone from this
/// host is taken over at once.
async fn hold_lease(
    store: &Store,
    holder: &str,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<Option<String>, InboxError> {
    let until = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::minutes(5));
    if store.acquire_lease(LEASE, holder, now, until).await? {
        return Ok(None);
    }
    let Some(other) = store.lease_holder(LEASE).await? else {
        return Ok(None);
    };
    if crate::domain::process_is_gone(&other)
        && store.take_over_lease(LEASE, &other, holder, until).await?
    {
        tracing::warn!(previous = %other, "inbox: took the mailbox over from a daemon that is gone");
        return Ok(None);
    }
    Ok(Some(other))
}

/// The source `[inbox]` describes.
pub fn source_from_settings(settings: &Settings) -> Result<Source, InboxError> {
    let inbox = &settings.inbox;
    Ok(match inbox.kind {
        InboxKind::Maildir => Source::Maildir(MaildirSource::new(&inbox.maildir, &inbox.processed)),
        InboxKind::Imap => {
            let username = inbox.username.clone().ok_or(InboxError::Config {
                key: "inbox.username",
                reason: "is required when inbox.kind = \"imap\"".into(),
            })?;
            let password = inbox.password.clone().ok_or(InboxError::Config {
                key: "inbox.password",
                reason: "is required when inbox.kind = \"imap\" (or set inbox.password_file)"
                    .into(),
            })?;
            Source::Imap(ImapSource::new(ImapConfig {
                host: inbox.host.clone(),
                port: inbox.port,
                tls: inbox.tls,
                username,
                password,
                mailbox: inbox.mailbox.clone(),
                processed: inbox.processed.clone(),
            })?)
        }
    })
}

impl<T: Transport> Worker<T> {
    /// A worker reading `source`, recording in `store`, sending notices with `transport`.
    pub fn new(
        settings: &Settings,
        source: Source,
        store: Store,
        transport: T,
        tokens: TokenKey,
        dkim: Option<std::sync::Arc<DkimSigner>>,
    ) -> Self {
        let n = &settings.newsletter;
        let recognizer = Recognizer {
            tokens: tokens.clone(),
            own_addresses: [n.from.email.to_string(), n.reply_to.email.to_string()]
                .iter()
                .map(|a| a.to_ascii_lowercase())
                .collect(),
            message_id_domain: n.message_id_domain.to_ascii_lowercase(),
        };
        Self {
            source,
            store,
            transport,
            recognizer,
            newsletter: n.clone(),
            tokens,
            dkim,
            limits: InboxLimits {
                notices_per_day: settings.inbox.notices_per_day,
                bounce_threshold: settings.delivery.bounce_threshold,
            },
            poll_interval: settings.inbox.poll_interval,
            holder: crate::domain::process_name(),
        }
    }

    /// Gives the mailbox lease up, so another daemon may read at once.
    pub async fn release_lease(&mut self) -> Result<(), InboxError> {
        Ok(self.store.release_lease(LEASE, &self.holder).await?)
    }

    /// The transport notices go through.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// One poll: everything waiting now is handled, then owed notices are sent.
    pub async fn try_once(&mut self, now: DateTime<Utc>) -> Result<Outcome, InboxError> {
        let ttl = self.poll_interval * 2 + LEASE_MARGIN;
        if let Some(holder) = hold_lease(&self.store, &self.holder, ttl, now).await? {
            tracing::debug!(%holder, "inbox: another daemon reads the mailbox");
            return Ok(Outcome::StandingBy { holder });
        }
        let mut report = PollReport::default();
        let mut attempted = HashSet::new();
        self.send_owed_notices(now, &mut attempted, &mut report)
            .await?;
        let waiting = self.source.start_poll().await?;
        if waiting > 0 {
            tracing::debug!(waiting, "inbox poll");
        }
        loop {
            let batch = self.source.next_batch().await?;
            if batch.is_empty() {
                break;
            }
            self.handle_batch(batch, now, &mut report).await?;
            self.send_owed_notices(now, &mut attempted, &mut report)
                .await?;
        }
        self.store.record_inbox_poll(now).await?;
        if report == PollReport::default() {
            return Ok(Outcome::Empty);
        }
        tracing::info!(
            read = report.read,
            unsubscribed = report.unsubscribed,
            bounces = report.bounces,
            unverified_reports = report.unverified_reports,
            ignored = report.ignored,
            for_a_person = report.for_a_person,
            already_done = report.already_done,
            notices_sent = report.notices_sent,
            "inbox poll done"
        );
        Ok(Outcome::Worked(report))
    }

    async fn handle_batch(
        &mut self,
        batch: Vec<super::Waiting>,
        now: DateTime<Utc>,
        report: &mut PollReport,
    ) -> Result<(), InboxError> {
        report.read += batch.len() as u64;
        let parsed: Vec<(MessageRef, Incoming)> = batch
            .into_iter()
            .map(|w| {
                let message = Incoming::parse(&w.raw, w.truncated);
                (w.at, message)
            })
            .collect();
        // Records made before keys carried a content hash are found by their old key,
        // so an upgrade does not act on them again.
        let keys: Vec<&str> = parsed
            .iter()
            .flat_map(|(_, m)| [m.key.as_str(), m.legacy_key.as_str()])
            .collect();
        let known = self.store.inbox_dispositions(&keys).await?;

        let mut filed: Vec<(MessageRef, Disposition)> = Vec::with_capacity(parsed.len());
        let mut pending = Vec::new();
        for (at, message) in &parsed {
            if let Some(d) = known
                .get(&message.key)
                .or_else(|| known.get(&message.legacy_key))
            {
                report.already_done += 1;
                filed.push((at.clone(), source_disposition(*d)));
                continue;
            }
            let command = Command::parse(message, &self.recognizer);
            let entry = command.apply(message, &self.store).await?;
            tracing::info!(
                message = %message.key,
                at = %at,
                command = command.name(),
                detail = entry.detail.as_deref().unwrap_or(""),
                "inbox message"
            );
            pending.push((at.clone(), command, entry));
        }
        let entries: Vec<_> = pending.iter().map(|(_, _, e)| e.clone()).collect();
        let recorded = self.store.record_inbox(&entries, self.limits, now).await?;
        for ((at, command, entry), result) in pending.into_iter().zip(recorded) {
            let disposition = match result {
                InboxRecorded::Already(d) => {
                    report.already_done += 1;
                    d
                }
                InboxRecorded::Done { changed, .. } => {
                    match &command {
                        Command::Unsubscribe(_) if entry.effects.is_empty() => {
                            report.unmatched_requests += 1
                        }
                        Command::Unsubscribe(_) => report.unsubscribed += changed.len() as u64,
                        Command::Bounce(_) if entry.command == UNVERIFIED_REPORT => {
                            report.unverified_reports += 1
                        }
                        Command::Bounce(_) => {
                            report.bounces += 1;
                            report.marked_bounced += changed.len() as u64;
                        }
                        Command::Ignore(_) => report.ignored += 1,
                        Command::ForAPerson => report.for_a_person += 1,
                    }
                    entry.disposition
                }
            };
            filed.push((at, source_disposition(disposition)));
        }
        self.source.dispose(&filed).await?;
        Ok(())
    }

    async fn send_owed_notices(
        &mut self,
        now: DateTime<Utc>,
        attempted: &mut HashSet<i64>,
        report: &mut PollReport,
    ) -> Result<(), InboxError> {
        loop {
            let owed: Vec<_> = self
                .store
                .owed_notices(100)
                .await?
                .into_iter()
                .filter(|n| !attempted.contains(&n.id))
                .collect();
            if owed.is_empty() {
                return Ok(());
            }
            for notice in owed {
                attempted.insert(notice.id);
                let result = match build_notice(
                    &self.newsletter,
                    &self.tokens,
                    self.dkim.as_deref(),
                    &notice,
                    now,
                ) {
                    Ok(message) => self
                        .transport
                        .send(&message)
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match &result {
                    Ok(()) => report.notices_sent += 1,
                    Err(error) => {
                        report.notices_failed += 1;
                        tracing::warn!(notice = notice.id, %error, "unsubscribe notice not sent");
                    }
                }
                self.store
                    .record_notice_attempt(notice.id, result, MAX_NOTICE_ATTEMPTS, now)
                    .await?;
            }
        }
    }

    /// Polls until `shutdown` resolves: after each poll it waits for new mail (IMAP
    /// IDLE) or `poll_interval`, whichever comes first. A failed poll is logged and
    /// tried again after the interval; the worker only stops at shutdown. Stopping in
    /// the middle of a poll is safe (see the module comment).
    pub async fn run_until_stopped(
        &mut self,
        clock: &dyn Clock,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), InboxError> {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                result = self.try_once(clock.now()) => if let Err(error) = result {
                    tracing::warn!(%error, "inbox poll failed; trying again after the poll interval");
                },
            }
            let interval = self.poll_interval;
            tokio::select! {
                _ = &mut shutdown => break,
                result = self.source.wait_for_mail(interval) => if let Err(error) = result {
                    tracing::debug!(%error, "waiting for mail failed; polling again");
                },
            }
        }
        self.source.close().await;
        // The next daemon need not wait for the lease to run out.
        if let Err(error) = self.release_lease().await {
            tracing::warn!(%error, "inbox: cannot give the mailbox lease up; it runs out by itself");
        }
        Ok(())
    }
}

fn source_disposition(d: InboxDisposition) -> Disposition {
    match d {
        InboxDisposition::Processed => Disposition::Processed,
        InboxDisposition::ForAPerson => Disposition::ForAPerson,
    }
}
