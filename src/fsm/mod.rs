//! The BGP finite state machine (RFC 4271 §8), sans I/O.
//!
//! [`Session`] is the §8.2.2 machine for one connection; [`Peer`] wraps two of them for
//! connection collision detection (§6.8). Neither touches sockets, channels or clocks:
//! the driver feeds [`Event`]s and the current time, executes the returned [`Action`]s in
//! order, and sleeps until [`Peer::next_deadline`] to call [`Peer::handle_timeout`].
//!
//! # States and events
//! All six states. Events (RFC 4271 §8.1 numbering): 1 ManualStart, 2 ManualStop,
//! 3/5/6/7 AutomaticStart (passive and damped variants), 4 ManualStart_with_Passive
//! TcpEstablishment, 8 AutomaticStop, 9 ConnectRetryTimer_Expires, 10 HoldTimer_Expires,
//! 11 KeepaliveTimer_Expires, 13 IdleHoldTimer_Expires,
//! 14/17 TcpConnection_Valid/TcpConnectionConfirmed, 16 Tcp_CR_Acked,
//! 18 TcpConnectionFails, 19 BGPOpen, 21 BGPHeaderErr,
//! 22 BGPOpenMsgErr, 23 OpenCollisionDump, 24 NotifMsgVerErr, 25 NotifMsg,
//! 26 KeepAliveMsg, 27 UpdateMsg, 28 UpdateMsgErr. Event 15 Tcp_CR_Invalid is the
//! listener's business (unknown sources never reach a peer).
//!
//! Transitions (tested one by one in `tests.rs`):
//! - Idle → Connect on a start (Action::Connect), → Active on a passive start;
//!   Idle → Connect/Active when the IdleHoldTimer expires after a failure.
//! - Connect → OpenSent on Tcp_CR_Acked (OPEN sent; hold timer = 4 min);
//!   Connect → Connect on ConnectRetry expiry
//!   (new attempt); Connect → Idle on TcpConnectionFails.
//! - Active → OpenSent on TcpConnectionConfirmed; Active → Connect on ConnectRetry expiry
//!   unless passive (then it keeps listening: a deviation, passive peers never connect).
//! - OpenSent → OpenConfirm on an acceptable OPEN (KEEPALIVE sent, negotiated hold and
//!   keepalive timers); → Idle with OPEN Message Error on a bad one; → Idle on
//!   TcpConnectionFails (deviation: §8.2.2 goes to Active; the damped IdleHoldTimer then
//!   restarts the session, which is what operators expect from a flapping link).
//! - OpenConfirm → Established on KEEPALIVE (Action::SessionUp).
//! - OpenSent/OpenConfirm/Established → Idle on hold timer expiry (4/0), send hold timer
//!   expiry (8/0, RFC 9687), ManualStop/AutomaticStop (Cease), NOTIFICATION received,
//!   message errors (the decoder's NOTIFICATION), unexpected messages (5/1, 5/2, 5/3,
//!   RFC 6608) and OpenCollisionDump (6/7).
//!
//! # Timers
//! ConnectRetry (jittered 0.75–1.0, RFC 4271 §10), Hold, Keepalive (hold/3, jittered),
//! IdleHold and the RFC 9687 SendHold, all deadlines. IdleHold implements
//! DampPeerOscillations: every failure doubles the next IdleHoldTime from
//! [`Config::idle_hold`] up to [`Config::idle_hold_max`]; an Established period of
//! [`Config::idle_hold_stable`] resets it; NotifMsgVerErr does not count as a failure.
//! This is also the reconnect back-off with jitter: the driver has no timer of its own.
//!
//! The SendHoldTimer runs only while data is waiting to be written: the driver reports
//! [`Event::SendQueued`] and [`Event::SendProgress`]; without progress for SendHoldTime
//! (max(8 min, 2 × hold time), or [`Config::send_hold`]) the session ends with 8/0.
//!
//! # OPEN checks and negotiation
//! See [`open`](self::open): version (2/1, data = 4), peer AS incl. 4-octet AS and
//! AS_TRANS (2/2), BGP Identifier (2/3, RFC 6286), hold time (2/6), required families
//! (2/7). Unsupported optional parameters (2/4) are found by the decoder and arrive as
//! [`Event::MessageError`].
//!
//! Left out: the RFC 4271 §8 "AllowAutomaticStop"/"CollisionDetectEstablishedState"
//! options (fixed: automatic stop allowed, Established wins), BFD, and Graceful Restart
//! helper mode (we are only a restarting speaker).

mod collision;
mod open;
mod session;
mod types;

#[cfg(test)]
mod collision_tests;
#[cfg(test)]
mod tests;

pub use collision::{verdict_wait, Peer, COLLISION_VERDICT_WAIT};
pub use session::Session;
pub use types::{
    notification_name, Action, Config, ConnId, Direction, DownReason, Event, GracefulRestart,
    Negotiated, State, Timer, AS_TRANS, BGP_VERSION, DEFAULT_OPEN_HOLD_TIME,
    MIN_KEEPALIVE_INTERVAL, MIN_SEND_HOLD_TIME,
};
