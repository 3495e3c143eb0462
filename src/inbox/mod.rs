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
//!   a bounce, ignore (automatic or our own mail), or for a person.

pub mod command;
pub mod dsn;
pub mod incoming;
pub mod reply;
pub mod source;

pub use command::{Command, IgnoreReason, Recognizer};
pub use incoming::Incoming;
pub use source::{Disposition, MessageRef, Source, SourceError, Waiting};
