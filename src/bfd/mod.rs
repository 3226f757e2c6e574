//! BFD (RFC 5880) in single-hop mode (RFC 5881) for the BGP sessions (RFC 5882): a dead or
//! hung peer is noticed in milliseconds rather than at hold-timer expiry.
//!
//! - [`session`]: one session as a sans-IO state machine (packets in, packets and state
//!   changes out, a deadline to sleep until).
//!
//! The codec of the Control packet is `anyguard_proto::bfd`.

pub mod session;
#[cfg(test)]
mod session_tests;
