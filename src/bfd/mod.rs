//! BFD (RFC 5880) in single-hop mode (RFC 5881) for the BGP sessions (RFC 5882): a dead or
//! hung peer is noticed in milliseconds rather than at hold-timer expiry.
//!
//! - [`session`]: one session as a sans-IO state machine (packets in, packets and state
//!   changes out, a deadline to sleep until).
//! - [`driver`]: the one tokio task that owns the sockets and the sessions; peer tasks
//!   hold a [`Handle`] and watch their session's [`crate::status::model::BfdStatus`].
//! - [`socket`]: UDP with TTL 255 out and the received TTL checked (RFC 5881 §5).
//!
//! The codec of the Control packet is `anyguard_proto::bfd`. Not implemented: the Echo
//! function, authentication, Demand mode on our side, multi-hop (RFC 5883).

pub mod driver;
pub mod session;
#[cfg(test)]
mod session_tests;
pub mod socket;

pub use driver::{BfdError, DriverConfig, Handle};

use crate::config::BfdConfig;

/// The session parameters of a peer's `bfd` configuration.
pub fn session_config(cfg: &BfdConfig) -> session::Config {
    session::Config {
        desired_min_tx: cfg.min_tx,
        required_min_rx: cfg.min_rx,
        detect_mult: cfg.multiplier,
    }
}
