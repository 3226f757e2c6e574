//! The coordinator: one task that owns all daemon state and turns inputs into routes.
//!
//! ```text
//!  health runner ──CheckEvent──┐
//!  status server ──Control─────┤                 ┌─watch<Arc<RibOut>>──▶ peer sessions
//!  guard poller ───FleetView───┼──▶ coordinator ─┤
//!  signals (HUP/TERM/INT) ─────┤     (Core)      └─watch<StatusDocument>──▶ status server
//!  peer sessions ──PeerStatus──┘
//! ```
//!
//! All decisions are made by the pure [`core::Core`]; this module only moves messages.

pub mod core;
