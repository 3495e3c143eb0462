//! What a message asks for, mini-redis style: [`Command::parse`] reads an [`Incoming`]
//! into one variant and `apply` carries it out against the store.
//!
//! The order of the checks is the policy:
//! 1. a delivery report is a [`Bounce`], whatever else it looks like (bounces come from
//!    MAILER-DAEMON with an empty return path, which step 2 would otherwise ignore); it
//!    counts only when `apply` proves it is about a message we sent, and is otherwise
//!    left for a person;
//! 2. anything automatic, or our own mail, is [`Ignore`]d: never answered, never a request;
//! 3. a subject that is UNSUBSCRIBE (optionally followed by `me` or our token), or a
//!    line above the quotation that says only that, is an [`Unsubscribe`];
//! 4. everything else is [`Command::ForAPerson`].

mod bounce;
mod ignore;
mod unsubscribe;

pub use bounce::{Bounce, BouncedRecipient, OurMessage, Verdict};
pub use ignore::IgnoreReason;
pub use unsubscribe::{Unsubscribe, Via};

use super::incoming::Incoming;
use crate::domain::{TokenKey, TokenPurpose};

/// What the worker needs to recognise our own mail and our tokens.
#[derive(Debug, Clone)]
pub struct Recognizer {
    pub tokens: TokenKey,
    /// Addresses we send from or receive at, lower-cased (`from`, `reply_to`).
    pub own_addresses: Vec<String>,
    /// The domain of our Message-IDs, lower-cased.
    pub message_id_domain: String,
}

impl Recognizer {
    /// The subscriber a Message-ID token names: one of ours, or (for issues sent before
    /// Message-IDs had their own tokens) an unsubscribe token.
    pub fn message_token(&self, token: &str) -> Option<i64> {
        self.tokens
            .verify(TokenPurpose::Message, token)
            .or_else(|| self.tokens.verify(TokenPurpose::Unsubscribe, token))
    }

    /// The subscriber named by the first Message-ID token of ours in `text` (see
    /// [`Self::message_token`]).
    pub fn find_message_token(&self, text: &str) -> Option<i64> {
        self.tokens
            .find_in(TokenPurpose::Message, text)
            .or_else(|| self.tokens.find_in(TokenPurpose::Unsubscribe, text))
    }

    /// Whether `address` is one of ours.
    pub fn is_own_address(&self, address: &str) -> bool {
        let lower = address.trim().to_ascii_lowercase();
        self.own_addresses.contains(&lower)
    }
}

/// One message's meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Someone asked to be removed from the list.
    Unsubscribe(Unsubscribe),
    /// A delivery report about one of our messages.
    Bounce(Bounce),
    /// Automatic mail, or our own: never answered, never acted on; left for a person.
    Ignore(IgnoreReason),
    /// Anything else: a person should read it.
    ForAPerson,
}

impl Command {
    /// Reads what `message` asks for. Pure: no I/O, never panics.
    pub fn parse(message: &Incoming, recognizer: &Recognizer) -> Command {
        if let Some(bounce) = Bounce::parse(message, recognizer) {
            return Command::Bounce(bounce);
        }
        if let Some(reason) = IgnoreReason::parse(message, recognizer) {
            return Command::Ignore(reason);
        }
        if let Some(request) = Unsubscribe::parse(message, recognizer) {
            return Command::Unsubscribe(request);
        }
        Command::ForAPerson
    }

    /// A short name for logs and the processed-message record.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Unsubscribe(_) => "unsubscribe",
            Command::Bounce(_) => "bounce",
            Command::Ignore(_) => "ignore",
            Command::ForAPerson => "for-a-person",
        }
    }
}

use crate::store::{
    InboxDisposition, InboxEffect, InboxEntry, Store, StoreError, UNVERIFIED_REPORT,
};

impl Command {
    /// Carries the command out as far as the store is concerned: finds the subscriber it
    /// is about and says what to record. The worker records a batch of these in one
    /// transaction (see [`Store::record_inbox`]) before it files the messages, so the
    /// effect and the record of the message are on disk together.
    pub async fn apply(&self, message: &Incoming, store: &Store) -> Result<InboxEntry, StoreError> {
        let mut entry = InboxEntry {
            key: message.key.clone(),
            command: self.name(),
            disposition: InboxDisposition::Processed,
            effects: Vec::new(),
            detail: None,
        };
        match self {
            Command::Unsubscribe(request) => {
                let subscribers = request.subscribers(store).await?;
                if subscribers.is_empty() {
                    // A request we cannot tie to anyone: a person may recognise the sender.
                    entry.disposition = InboxDisposition::ForAPerson;
                    entry.detail = Some("no subscriber matches the sender or a token".into());
                } else {
                    entry.effects.extend(
                        subscribers
                            .into_iter()
                            .map(|subscriber_id| InboxEffect::Unsubscribe { subscriber_id }),
                    );
                    entry.detail =
                        Some(format!("requested in the {:?}", request.via).to_lowercase());
                }
            }
            Command::Bounce(report) => {
                let statuses: Vec<String> = report
                    .recipients
                    .iter()
                    .map(|r| {
                        format!(
                            "{} {:?} {}",
                            r.addresses.first().map_or("?", String::as_str),
                            r.action,
                            r.status.map(|s| s.to_string()).unwrap_or_default()
                        )
                    })
                    .collect();
                let statuses = statuses.join("; ");
                match report.verify(store).await? {
                    Verdict::Proven { message, permanent } => {
                        entry.effects.push(InboxEffect::Bounce {
                            subscriber_id: message.subscriber_id,
                            issue: message.issue,
                            permanent,
                        });
                        entry.detail = Some(format!("issue {}: {statuses}", message.issue));
                    }
                    Verdict::Unverified(why) => {
                        // Anyone can write a report; one that proves nothing is a
                        // person's to judge, and counts against nobody.
                        entry.command = UNVERIFIED_REPORT;
                        entry.disposition = InboxDisposition::ForAPerson;
                        entry.detail = Some(format!("{why}: {statuses}"));
                    }
                }
            }
            Command::Ignore(reason) => {
                entry.disposition = InboxDisposition::ForAPerson;
                entry.detail = Some(format!("{reason:?}"));
            }
            Command::ForAPerson => entry.disposition = InboxDisposition::ForAPerson,
        }
        Ok(entry)
    }
}
