//! The coordinator: one task that owns all daemon state and turns inputs into routes.
//!
//! ```text
//!  health runner ──CheckEvent(*)───┐
//!  status server ──ControlRequest──┤                 ┌─watch<Arc<RibOut>>────▶ peer tasks
//!  signals (HUP/TERM/INT) ─────────┼──▶ coordinator ─┼─watch<StatusDocument>─▶ status server
//!  peer tasks ──PeerEvent, status──┤     (Core)      ├─HookJob (queued)──────▶ hook workers
//!  drain files (polled) ───────────┤                 └─AddressAction (queued)─▶ address task
//!  address task ──AddressDone──────┘                        (`ip addr replace/del`, in turn)
//!
//!  peer tasks ◀──watch<BfdStatus>── BFD task (started with the first peer that has
//!  `bfd`; UDP 3784) ◀── add/remove ── peer tasks: a failed BFD session closes the peer's
//!  BGP session inside the peer task, the coordinator sees only its PeerEvent::Down
//!
//!  (*) state changes only: each check task records every result itself, in place, where
//!  /status and /metrics read it (status::record), so results that change nothing never
//!  wake the coordinator (issue 13)
//! ```
//!
//! Every decision is made by the pure [`core::Core`]; this module only moves messages,
//! reads the clock and starts or stops the I/O tasks. The desired Adj-RIB-Out is the same
//! for every peer: each peer task diffs it against what it has sent (`announcer::diff`),
//! so the coordinator never waits on a socket. Host-side actions (state-change hooks,
//! service addresses added before announcing and removed after the withdrawal is written)
//! are in `local_actions`; the `ip` calls run in the address task and their outcomes come
//! back as messages, so the coordinator never waits on `ip` either. Routes a reload
//! takes away stay announced as pending removals (`removals`) until the all-sites guard
//! lets them go.

mod config_read;
pub mod core;
mod fleet_guard;
mod local_actions;
pub mod removals;
mod run;
mod saved;
mod stop;

pub use run::{run, DaemonSignal, RunError, RunOptions};
