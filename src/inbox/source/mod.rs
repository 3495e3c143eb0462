//! Mailbox sources behind one boundary: a local Maildir folder or an IMAP mailbox.
//!
//! A poll is: [`Source::start_poll`] (find what waits), [`Source::next_batch`] until it
//! returns nothing (read the raw bytes, a bounded amount at a time), and
//! [`Source::dispose`] for each message once it has been recorded in the store.
//! Messages are read without marking them seen (`BODY.PEEK`; a Maildir file stays in
//! `new/`), so a crash before `dispose` leaves them exactly as they arrived.

mod imap;
mod maildir;

pub use imap::{ImapConfig, ImapSource, ImapTls};
pub use maildir::MaildirSource;

use std::time::Duration;

/// Largest part of a message read from a source. Replies and bounces say what they have
/// to say near the top; the rest of a 20 MB attachment is not read into memory.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Most bytes read from a source in one batch (a batch holds at least one message).
pub const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Most messages in one batch.
pub const MAX_BATCH_MESSAGES: usize = 200;

/// Why a mailbox could not be read or updated.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("maildir {path}: {source}")]
    Maildir {
        path: String,
        source: std::io::Error,
    },
    #[error("IMAP {host}:{port}: cannot connect: {source}")]
    Connect {
        host: String,
        port: u16,
        source: std::io::Error,
    },
    #[error("IMAP: TLS: {0}")]
    Tls(String),
    #[error("IMAP: login as {user} failed: {reason}")]
    Login { user: String, reason: String },
    #[error("IMAP: {command}: {reason}")]
    Imap { command: String, reason: String },
    #[error("IMAP: {0} timed out")]
    Timeout(String),
}

/// Where a message is in its source.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MessageRef {
    /// The file name in the Maildir's `new/`.
    Maildir(String),
    /// The UID in the selected IMAP mailbox.
    Imap(u32),
}

impl std::fmt::Display for MessageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MessageRef::Maildir(name) => write!(f, "maildir file {name}"),
            MessageRef::Imap(uid) => write!(f, "IMAP UID {uid}"),
        }
    }
}

/// A message read from a source.
#[derive(Debug, Clone)]
pub struct Waiting {
    pub at: MessageRef,
    /// The first [`MAX_MESSAGE_BYTES`] of the message.
    pub raw: Vec<u8>,
    /// The message was longer than what was read.
    pub truncated: bool,
}

/// What becomes of a message once it has been handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// A command was carried out: marked seen and moved to the processed folder.
    Processed,
    /// Left unread where it is, for a person, and marked so it is not read again.
    ForAPerson,
}

/// A mailbox the inbox worker reads.
#[derive(Debug)]
pub enum Source {
    Maildir(MaildirSource),
    Imap(ImapSource),
}

impl Source {
    /// Looks for waiting messages; returns how many there are.
    pub async fn start_poll(&mut self) -> Result<usize, SourceError> {
        match self {
            Source::Maildir(s) => s.start_poll(),
            Source::Imap(s) => s.start_poll().await,
        }
    }

    /// The next waiting messages of this poll; empty when the poll is through.
    pub async fn next_batch(&mut self) -> Result<Vec<Waiting>, SourceError> {
        match self {
            Source::Maildir(s) => s.next_batch(),
            Source::Imap(s) => s.next_batch().await,
        }
    }

    /// Files or marks handled messages.
    pub async fn dispose(&mut self, done: &[(MessageRef, Disposition)]) -> Result<(), SourceError> {
        match self {
            Source::Maildir(s) => s.dispose(done),
            Source::Imap(s) => s.dispose(done).await,
        }
    }

    /// Waits up to `max` for new mail: IMAP IDLE where the server offers it, else the
    /// whole of `max`. Returns early (without error) when mail may have arrived.
    pub async fn wait_for_mail(&mut self, max: Duration) -> Result<(), SourceError> {
        match self {
            Source::Maildir(_) => {
                tokio::time::sleep(max).await;
                Ok(())
            }
            Source::Imap(s) => s.wait_for_mail(max).await,
        }
    }

    /// Closes any connection politely.
    pub async fn close(&mut self) {
        if let Source::Imap(s) = self {
            s.close().await;
        }
    }
}

/// Splits `sizes` (in order) into runs whose capped sizes add up to at most
/// [`MAX_BATCH_BYTES`] and [`MAX_BATCH_MESSAGES`]; returns the length of the first run.
pub(crate) fn first_batch_len(sizes: impl IntoIterator<Item = usize>) -> usize {
    let mut total = 0usize;
    let mut n = 0usize;
    for size in sizes {
        let size = size.min(MAX_MESSAGE_BYTES);
        if n > 0 && (total + size > MAX_BATCH_BYTES || n == MAX_BATCH_MESSAGES) {
            break;
        }
        total += size;
        n += 1;
    }
    n
}
