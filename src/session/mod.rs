//! The BGP speaker's I/O side: one tokio task per peer driving the sans-IO [`crate::fsm`],
//! the shared listener, and the transport socket options.
//!
//! ```text
//!  listener ──accepted(TcpStream)──▶ peer task ◀── commands (shutdown) ── coordinator
//!                                       │  ▲
//!  watch<Arc<RibOut>> (desired) ────────┘  │ reader/writer tasks per connection
//!  peer task ──watch<PeerStatus>──▶ status;  ──mpsc<PeerEvent>──▶ coordinator
//! ```

mod api;
mod bfd_link;
mod conn;
mod driver;
pub mod listener;
mod next_hop;
pub mod rib_in;
mod supervisor;
pub mod transport;
mod wire;

pub use api::{Acceptor, LocalSpeaker, PeerEvent, PeerHandle, StopReason, Tuning};
pub use driver::MAX_SEND_QUEUE;
pub use listener::{spawn_listener, Listener, ListenerStats};
pub use supervisor::{fsm_config, spawn_peer};
