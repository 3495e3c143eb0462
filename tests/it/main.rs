//! Integration tests: one binary, one module per capability (zero-to-production style).

mod support;

mod backup;
mod compose;
mod crash;
mod daemon;
mod delivery_support;
mod dkim;
mod doctor;
mod editor_fields;
mod editors;
mod faults;
mod fixtures;
mod identity;
mod imports;
mod inbox;
mod inbox_trust;
mod judges;
mod mailstack_delivery;
mod outages;
mod readers;
mod send_now;
mod slots;
mod subscribers;
mod unsubscribe;
mod web;
mod web_consent;
