//! The operator surface: status document, HTTP endpoint, metrics and control.
//!
//! - [`model`]: the `/status` document (the lead's; fields only added).
//! - [`server`]: the hyper HTTP server (`/status`, `/metrics`, `/healthz`, `/readyz`, control).
//! - [`control`]: the typed requests the server sends to the coordinator.
//! - [`metrics`]: the Prometheus registry and the handle the coordinator updates.
//! - [`client`]: the `anyguard status` client and table renderer.
//! - [`logging`]: tracing subscriber set-up (human or JSON).
//! - [`systemd`]: `sd_notify` readiness, status and watchdog.

pub mod client;
pub mod control;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod server;
pub mod systemd;
