//! Daemon integration tests.
mod guard_sim;
