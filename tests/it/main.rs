//! Integration tests: one binary, one module per capability (zero-to-production style).

mod support;

mod compose;
mod crash;
mod daemon;
mod delivery_support;
mod editors;
mod faults;
mod inbox;
mod mailstack_delivery;
mod send_now;
mod subscribers;
mod web;
