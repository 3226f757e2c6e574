//! Daemon integration tests.
mod config_examples;
