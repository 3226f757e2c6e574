//! A peer task's side of BFD (RFC 5882): registering the peer's session with the BFD task,
//! following its status, and telling the peer task when an Up session failed so that it
//! closes the BGP session (Cease/BFD Down, RFC 9384).
//!
//! A BFD session that never came up does not hold the BGP session back (the router may not
//! run BFD); the status says so instead (RFC 5882 §4.2 leaves the choice to the operator).

use std::net::SocketAddr;

use anyguard_proto::notification::cease_subcode;
use anyguard_proto::{ErrorCode, NotificationMessage};
use tokio::sync::watch;
use tracing::warn;

use crate::bfd::{self, Handle};
use crate::config::PeerConfig;
use crate::status::model::BfdStatus;

/// The status shown when `bfd` is configured but the daemon's BFD task is not running.
pub(crate) const NOT_RUNNING_NOTE: &str = "BFD is not running in this daemon (see the log)";

/// The peer's BFD session, if it has one.
#[derive(Debug, Default)]
pub(crate) struct BfdLink {
    handle: Option<Handle>,
    owner: u64,
    rx: Option<watch::Receiver<BfdStatus>>,
    /// `failures` of the status already acted on.
    failures_seen: u64,
}

/// What a status change means for the BGP session.
#[derive(Debug)]
pub(crate) struct BfdUpdate {
    /// The new status.
    pub(crate) status: BfdStatus,
    /// An Up session failed since the last update: close the BGP session.
    pub(crate) failed: bool,
}

impl BfdLink {
    /// Registers the peer's session; the status to show at once (`None`: no BFD).
    pub(crate) async fn register(
        &mut self,
        cfg: &PeerConfig,
        handle: Option<&Handle>,
    ) -> Option<BfdStatus> {
        let bfd_cfg = cfg.bfd?;
        let Some(handle) = handle else {
            return Some(not_running());
        };
        let peer = SocketAddr::new(cfg.address, handle.peer_port());
        let Some(reg) = handle
            .add(peer, cfg.local_address, bfd::session_config(&bfd_cfg))
            .await
        else {
            warn!("the BFD task is gone");
            return Some(not_running());
        };
        let rx = reg.status;
        self.owner = reg.owner;
        let status = rx.borrow().clone();
        // A session shared with the previous run of this task (restarted after a panic)
        // may already count failures that were handled then.
        self.failures_seen = status.failures;
        self.rx = Some(rx);
        self.handle = Some(handle.clone());
        Some(status)
    }

    /// Resolves on the next status change; never without a session.
    pub(crate) async fn changed(&mut self) -> BfdUpdate {
        let Some(rx) = self.rx.as_mut() else {
            return std::future::pending().await;
        };
        if rx.changed().await.is_err() {
            self.rx = None;
            return BfdUpdate {
                status: not_running(),
                failed: false,
            };
        }
        let status = rx.borrow_and_update().clone();
        let failed = status.failures > self.failures_seen;
        self.failures_seen = status.failures;
        BfdUpdate { status, failed }
    }

    /// Releases the session (AdminDown to the router when it was the last user).
    pub(crate) async fn deregister(&mut self, cfg: &PeerConfig) {
        self.rx = None;
        if let Some(handle) = self.handle.take() {
            handle.remove(cfg.address, self.owner).await;
        }
    }
}

fn not_running() -> BfdStatus {
    BfdStatus {
        state: "down".into(),
        remote_state: "down".into(),
        diag_name: "No Diagnostic".into(),
        note: Some(NOT_RUNNING_NOTE.into()),
        ..BfdStatus::default()
    }
}

/// RFC 9384: Cease with subcode 10, BFD Down.
pub(crate) fn bfd_down_notification() -> NotificationMessage {
    NotificationMessage {
        code: ErrorCode::Cease,
        subcode: cease_subcode::BFD_DOWN,
        data: Vec::new(),
    }
}
