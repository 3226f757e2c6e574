//! Daemon integration tests.
mod status_http;
