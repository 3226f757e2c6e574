//! The BGP speaker's I/O side: one tokio task per peer driving the sans-IO [`crate::fsm`],
//! the shared listener, and the transport socket options.
//!
//! ```text
//!  listener ──accepted(TcpStream)──▶ peer task ◀── commands (shutdown) ── coordinator
//!                                       │  ▲
//!  watch<Arc<RibOut>> (desired) ────────┘  │ reader/writer tasks per connection
//!  peer task ──watch<PeerStatus>──▶ status;  ──mpsc<PeerEvent>──▶ coordinator
//! ```

pub mod rib_in;
pub mod transport;
