//! Integration tests: one binary, one module per capability (zero-to-production style).

mod support;

mod backup;
mod compose;
mod crash;
mod daemon;
mod delivery_support;
mod dkim;
mod doctor;
mod faults;
mod inbox;
mod inbox_trust;
mod mailstack_delivery;
mod send_now;
mod subscribers;
mod web;
