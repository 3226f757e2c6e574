//! Daemon integration tests: one binary, one module per subject.

mod config_examples;
mod daemon;
mod fakepeer;
mod guard_sim;
mod health;
mod httpd;
mod interop;
mod session;
mod status_http;
