//! Daemon integration tests.

mod fakepeer;
mod session;
