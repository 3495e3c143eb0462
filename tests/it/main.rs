//! Integration tests: one binary, one module per capability (zero-to-production style).

mod support;

/// These tests' store: a SQLite file per test (tests/it_pg runs them on PostgreSQL).
pub const BACKEND: support::Backend = support::Backend::Sqlite;

mod backup;
mod claim_ahead;
mod claims;
mod compose;
mod crash;
mod daemon;
mod delivery_support;
mod dkim;
mod doctor;
mod editor_fields;
mod editors;
mod every_message;
mod faults;
mod fixtures;
mod identity;
mod import_batches;
mod import_shortcuts;
mod imports;
mod inbox;
mod inbox_claim;
mod inbox_trust;
mod judges;
mod mailstack_delivery;
mod notice_limits;
mod outages;
mod pipelining;
mod postgres_schema;
mod races;
mod readers;
mod relay_pool;
mod scale_out;
mod send_now;
mod signed_stop;
mod slots;
mod store_copy;
mod subscribers;
mod takeover;
mod tls_imap;
mod unsubscribe;
mod web;
mod web_consent;
mod web_replicas;
