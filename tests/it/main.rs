//! Daemon integration tests: one binary, one module per subject.

mod config_examples;
mod status_http;
