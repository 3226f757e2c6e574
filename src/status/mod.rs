//! The operator surface: status document, HTTP endpoint, metrics and control.
//!
//! - [`model`]: the `/status` document (the lead's; fields only added).
//! - [`server`]: the hyper HTTP server (`/status`, `/metrics`, `/healthz`, `/readyz`, control).
//! - [`control`]: the typed requests the server sends to the coordinator.
//! - [`metrics`]: the Prometheus registry and the handle the coordinator updates.
//! - [`client`]: the `anyguard status` client and table renderer.
//! - [`logging`]: tracing subscriber set-up (human or JSON).
//! - [`systemd`]: `sd_notify` readiness, status and watchdog.
//!
//! [`start`] wires the endpoint from `[status]` in the config: what `run()` calls.

pub mod client;
pub mod control;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod server;
pub mod systemd;

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::StatusConfig;
use control::ControlRequest;
use metrics::Metrics;
use model::StatusDocument;
use server::{StatusState, TokenError};

/// Starting the endpoint failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The token file could not be read.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The listen address could not be bound.
    #[error("status endpoint: cannot listen on {addr}: {source}")]
    Bind {
        /// `[status] listen`.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
}

/// A running endpoint.
#[derive(Debug)]
pub struct Started {
    /// The bound address (the real port when the config says port 0).
    pub local_addr: SocketAddr,
    /// Change or remove the control token at reload:
    /// `token.send_replace(Some(server::read_token_file(path)?))`.
    pub token: watch::Sender<Option<Vec<u8>>>,
    /// The server task; it ends after `shutdown` completes and in-flight requests finish.
    pub task: JoinHandle<io::Result<()>>,
}

/// Reads the token file named by `config` (if any), binds `config.listen` and spawns
/// [`server::serve`] until `shutdown` completes. What `run()` calls.
pub async fn start(
    config: &StatusConfig,
    status: watch::Receiver<StatusDocument>,
    metrics: Metrics,
    control: mpsc::Sender<ControlRequest>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Started, StartError> {
    let token = config
        .token_file
        .as_deref()
        .map(server::read_token_file)
        .transpose()?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    let (token_tx, token_rx) = watch::channel(token);
    let state = StatusState::new(status, metrics, None, control).with_token_updates(token_rx);
    let task = tokio::spawn(server::serve(listener, state, shutdown));
    Ok(Started {
        local_addr,
        token: token_tx,
        task,
    })
}
