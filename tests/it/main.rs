//! Integration tests: one binary, one module per capability (zero-to-production style).

mod support;

mod compose;
mod inbox;
