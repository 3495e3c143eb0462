//! The integration tests again, with the store on PostgreSQL: each test gets a fresh
//! database on a private cluster that this process starts (tests/it/support/postgres.rs).
//! The test files are tests/it's own, so both backends are held to the same behaviour.
//! Left out: `backup` (SQLite's files and `VACUUM INTO`; a PostgreSQL store is backed up
//! with PostgreSQL's own tools).

#[path = "../it/support/mod.rs"]
mod support;

/// These tests' store: a PostgreSQL database per test.
pub const BACKEND: support::Backend = support::Backend::Postgres;

#[path = "../it/claim_ahead.rs"]
mod claim_ahead;
#[path = "../it/claims.rs"]
mod claims;
#[path = "../it/compose.rs"]
mod compose;
#[path = "../it/crash.rs"]
mod crash;
#[path = "../it/daemon.rs"]
mod daemon;
#[path = "../it/delivery_support.rs"]
mod delivery_support;
#[path = "../it/dkim.rs"]
mod dkim;
#[path = "../it/doctor.rs"]
mod doctor;
#[path = "../it/editor_fields.rs"]
mod editor_fields;
#[path = "../it/editors.rs"]
mod editors;
#[path = "../it/every_message.rs"]
mod every_message;
#[path = "../it/faults.rs"]
mod faults;
#[path = "../it/fixtures.rs"]
mod fixtures;
#[path = "../it/identity.rs"]
mod identity;
#[path = "../it/import_batches.rs"]
mod import_batches;
#[path = "../it/import_shortcuts.rs"]
mod import_shortcuts;
#[path = "../it/imports.rs"]
mod imports;
#[path = "../it/inbox.rs"]
mod inbox;
#[path = "../it/inbox_claim.rs"]
mod inbox_claim;
#[path = "../it/inbox_trust.rs"]
mod inbox_trust;
#[path = "../it/judges.rs"]
mod judges;
#[path = "../it/mailstack_delivery.rs"]
mod mailstack_delivery;
#[path = "../it/notice_limits.rs"]
mod notice_limits;
#[path = "../it/outages.rs"]
mod outages;
#[path = "../it/pipelining.rs"]
mod pipelining;
#[path = "../it/races.rs"]
mod races;
#[path = "../it/readers.rs"]
mod readers;
#[path = "../it/relay_pool.rs"]
mod relay_pool;
#[path = "../it/send_now.rs"]
mod send_now;
#[path = "../it/signed_stop.rs"]
mod signed_stop;
#[path = "../it/slots.rs"]
mod slots;
#[path = "../it/subscribers.rs"]
mod subscribers;
#[path = "../it/takeover.rs"]
mod takeover;
#[path = "../it/tls_imap.rs"]
mod tls_imap;
#[path = "../it/unsubscribe.rs"]
mod unsubscribe;
#[path = "../it/web.rs"]
mod web;
#[path = "../it/web_consent.rs"]
mod web_consent;
#[path = "../it/web_replicas.rs"]
mod web_replicas;
