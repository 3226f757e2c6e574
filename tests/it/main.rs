//! Daemon integration tests: one binary, one module per subject.

mod config_examples;
mod guard_sim;
mod status_http;
