//! The inbox worker: reads the newsletter's mailbox and acts on what it finds.
//!
//! # Layout
//!
//! - [`source`]: the mailbox boundary, a Maildir folder or an IMAP mailbox; reads
//!   without marking seen, then files or marks each handled message.
//! - [`incoming`]: raw bytes to the facts that matter ([`Incoming`]); never fails.
//! - [`reply`]: the subject without `Re:` prefixes, and the lines above any quotation.
//! - [`dsn`]: delivery status reports (RFC 3464).
//! - [`command`]: [`Command::parse`] says what a message asks for: unsubscribe,
//!   a bounce, ignore (automatic or our own mail), or for a person; `apply` ties it
//!   to a subscriber (a bounce only when it proves it is about a message we sent to
//!   them) and says what to record.
//! - [`notice`]: the unsubscribe notice, with its resubscribe link.
//! - [`worker`]: [`Worker::try_once`] (one poll) and [`Worker::run_until_stopped`].

pub mod command;
pub mod dsn;
pub mod incoming;
pub mod notice;
pub mod reply;
pub mod source;
pub mod worker;

pub use command::{Command, IgnoreReason, Recognizer};
pub use incoming::Incoming;
pub use source::{Disposition, MessageRef, Source, SourceError, Waiting};
pub use worker::{InboxError, Outcome, PollReport, Worker, source_from_settings};
