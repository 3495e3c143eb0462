//! Integration tests: one binary, one module per capability (zero-to-production style).

mod support;

mod backup;
mod compose;
mod crash;
mod daemon;
mod delivery_support;
mod dkim;
mod doctor;
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
mod pipelining;
mod readers;
mod send_now;
mod slots;
mod subscribers;
mod web;
mod web_consent;
