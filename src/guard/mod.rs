//! The all-sites guard (issue #6): anyguard refuses to be the tool that withdraws a
//! service from every site at once.
//!
//! - [`auth`]: HMAC-SHA256 signatures of fleet reports over a fresh poller nonce.
//! - [`fleet`]: the fleet description (`fleet.toml`): sites, status URLs, `min_sites`.
//! - [`static_check`]: config guard, a pure check of candidate configs against the fleet.
//! - [`runtime`]: runtime guard, a pure decision per service from local health and the
//!   fleet view, with the intent protocol that keeps simultaneous failures safe.
//! - [`report`]: what a site publishes about itself under `"guard"` in `/status`.
//! - [`view`]: what this site knows about the others.
//! - [`hand_over`]: make-before-break: another site counts only once it has been seen
//!   announcing for the hand-over time (one rule for both backends).
//! - [`digest`]: the fleet digest every report carries (sites running other fleet files).
//! - [`fleet_change`]: what a reload of the fleet file changes, and the view it keeps.
//! - [`poller`]: the thin tokio task that polls the other sites into a [`view::FleetView`].
//! - [`backend`]: the fleet view behind one interface: the poll mesh or etcd.
//! - [`store`]: the etcd backend's key layout, transactions and decision (sans-IO).
//! - [`etcd`]: the thin tokio driver of the etcd backend (lease, watch, transactions).
//!
//! The model, the protocol and the race argument are in `docs/guard.md`.

pub mod auth;
pub mod backend;
pub mod digest;
pub mod etcd;
pub mod fleet;
pub mod fleet_change;
pub mod hand_over;
pub mod poller;
pub mod report;
pub mod runtime;
pub mod static_check;
pub mod store;
pub mod view;
