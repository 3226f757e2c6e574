//! Health checking: probes → rise/fall hysteresis → combined service health.
//!
//! - [`probe`]: the probes themselves (HTTP, TCP, command, DNS, file), each an async
//!   function returning a [`ProbeOutcome`]; they do I/O and nothing else.
//! - [`hysteresis`]: the pure per-check rise/fall state machine ([`Hysteresis`]).
//! - [`combine`](mod@combine): the pure combination of check states into a [`ServiceHealth`].
//! - [`runner`]: thin tokio tasks, one per check, that schedule probes (start-up splay,
//!   jitter, fast interval while a check is changing state, no drift), enforce timeouts,
//!   feed the hysteresis and send every result as a [`CheckEvent`] to the coordinator.
//! - `schedule`: when probes start — the pure arithmetic of probe wake coalescing (due
//!   times on a slot grid whose width follows the probe rate) and of how many probe
//!   threads the load needs.
//! - [`probe_threads`]: in the daemon, the check tasks run on threads of their own
//!   (`current_thread` runtimes), not on the multi-thread runtime's workers.
//!
//! Data flows one way: the runner never reads the coordinator's state; the coordinator
//! combines check states with [`combine::combine`] itself. Left out: DNS over TCP (a
//! truncated answer is a failure), BFD, TLS client certificates for HTTPS probes.

pub mod combine;
pub mod hysteresis;
pub mod probe;
pub mod probe_threads;
pub mod runner;
mod schedule;

pub use combine::{combine, ServiceHealth};
pub use hysteresis::{CheckState, CheckStatus, Hysteresis, Transition};
pub use probe::{AnyProbe, Probe, ProbeError, ProbeOutcome};
pub use runner::{
    build_probes, next_seq, same_check, CheckEvent, CheckSink, HealthRunner, RunnerOptions,
};
