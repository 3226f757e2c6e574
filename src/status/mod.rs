//! The operator surface: status document, HTTP endpoint, metrics and control.
//!
//! - [`model`]: the `/status` document (the lead's; fields only added).
//! - [`server`]: the hyper HTTP server (`/status`, `/metrics`, `/healthz`, `/readyz`, control).
//! - [`control`]: the typed requests the server sends to the coordinator.
//! - [`metrics`]: the Prometheus registry and the handle the coordinator updates.
//! - [`record`]: probe results recorded into status and metrics by the check tasks.
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
pub mod record;
pub mod server;
pub mod systemd;

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::StatusConfig;
use crate::guard::auth::FleetKey;
use control::ControlRequest;
use metrics::Metrics;
use model::StatusDocument;
use server::{Role, StatusState, TokenError};

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
    /// The bound fleet listener (`[status] fleet_listen`), if configured.
    pub fleet_addr: Option<SocketAddr>,
    /// The key `/fleet/report` is signed with (`None` until set, and for a fleet without
    /// `[auth]`): `fleet_key.send_replace(Some(key))`.
    pub fleet_key: watch::Sender<Option<FleetKey>>,
}

/// Reads the token file named by `config` (if any), binds `config.listen` (and
/// `config.fleet_listen`) and spawns
/// [`server::serve_listeners`] until `shutdown` completes. What `run()` calls.
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
    let (listener, local_addr) = bind(config.listen).await?;
    let mut listeners = vec![(listener, Role::General)];
    let fleet_addr = match config.fleet_listen {
        Some(addr) => {
            let (listener, bound) = bind(addr).await?;
            listeners.push((listener, Role::Fleet));
            Some(bound)
        }
        None => None,
    };
    let (token_tx, token_rx) = watch::channel(token);
    let (key_tx, key_rx) = watch::channel(None);
    let state = StatusState::new(status, metrics, None, control, server::Limits::default())
        .with_token_updates(token_rx)
        .with_fleet_key(key_rx);
    let task = tokio::spawn(server::serve_listeners(listeners, state, shutdown));
    Ok(Started {
        local_addr,
        token: token_tx,
        task,
        fleet_addr,
        fleet_key: key_tx,
    })
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })?;
    Ok((listener, bound))
}
