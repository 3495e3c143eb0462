//! gazette: a newsletter composition and mailing daemon.
//!
//! # Layout
//!
//! Data flows one way: sections folder → compose → render → delivery ledger → SMTP, and
//! mailbox → inbox worker → commands → store.
//!
//! - [`domain`]: parsed values (addresses, header text, issue ids, tokens, schedules), and
//!   the one rule for naming a worker process and telling whether it still lives.
//! - [`settings`]: `config/gazette.toml` plus `GAZETTE__…` overrides, checked.
//! - [`compose`]: reads the sections folder into an [`compose::Issue`], and archives its
//!   files once the issue is frozen.
//! - [`schedule`]: when each issue, proof and notice is due, and the scheduler that carries
//!   the plan out through a [`schedule::Newsroom`] (`app` provides the real one).
//! - [`render`]: tera templates to HTML and text, then one message per recipient; every
//!   outgoing message of any kind is built by `render::compose` and signed by
//!   `render::finish`.
//! - [`store`]: subscribers, frozen issues and the delivery ledger (all SQL lives here);
//!   one unsubscribe operation that every channel uses.
//! - [`send`]: the delivery engine: transports taking an envelope and bytes (file, SMTP,
//!   a pool of relays, a test double) and the worker that drains the ledger with the
//!   retry policy (several at once, each batch claiming its rows).
//! - [`inbox`]: reads the newsletter's mailbox (one daemon at a time, by a lease);
//!   unsubscribes, counts bounces, answers.
//! - [`web`]: the sign-up form, confirm and unsubscribe links, archive, preview,
//!   health and metrics over HTTP; its pages are tera templates in `templates/web/`.
//! - [`doctor`]: `gazette doctor`'s checks of DNS, the web, the relay and the store: what a
//!   receiving server will think of our mail.
//! - [`app`]: wiring; the only module that knows the whole pipeline, with `main.rs`
//!   as a thin shell around it. `app/shutdown.rs` holds the stop signal every command
//!   waits on, so commands do not import one another for it; `serve` shares one store
//!   and one renderer between its workers and its web side.

pub mod app;
pub mod compose;
pub mod doctor;
pub mod domain;
pub mod inbox;
pub mod render;
pub mod schedule;
pub mod send;
pub mod settings;
pub mod store;
pub mod web;
