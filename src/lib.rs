//! gazette: a newsletter composition and mailing daemon.
//!
//! # Layout
//!
//! Data flows one way: sections folder → compose → render → delivery ledger → SMTP, and
//! mailbox → inbox worker → commands → store.
//!
//! - [`domain`]: parsed values (addresses, header text, issue ids, tokens, schedules).
//! - [`settings`]: `config/gazette.toml` plus `GAZETTE__…` overrides, checked.
//! - [`compose`]: reads the sections folder into an [`compose::Issue`].
//! - [`render`]: tera templates to HTML and text, then one message per recipient.
//! - [`inbox`]: reads the newsletter's mailbox; unsubscribes, counts bounces, answers.
//! - [`app`]: wiring; the only module that knows the whole pipeline, with `main.rs`
//!   as a thin shell around it.

pub mod app;
pub mod compose;
pub mod domain;
pub mod inbox;
pub mod render;
pub mod settings;
