//! The public face of a peer task: what the coordinator and the listener hold.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use anyguard_proto::notification::cease_subcode;
use anyguard_proto::NotificationMessage;
use ipnet::IpNet;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::announcer::RibOut;
use crate::config::BfdConfig;

/// Facts about us that every session needs.
#[derive(Debug, Clone)]
pub struct LocalSpeaker {
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// Our ASN.
    pub asn: u32,
    /// The daemon process has just started: set the Graceful Restart R bit in the first
    /// OPEN of each peer (RFC 4724 §3; only when graceful restart is configured).
    pub restarted: bool,
    /// Service prefixes: received routes equal to or inside one of these are reported
    /// ([`PeerEvent::ServiceRoutes`], `PeerStatus::service_routes_received`).
    pub service_prefixes: Vec<IpNet>,
    /// Timer tuning not in the peer configuration.
    pub tuning: Tuning,
    /// `true` once the desired routes are the initial ones: every service has been decided
    /// (passed `rise` or failed `fall`) since the process started. With graceful restart,
    /// End-of-RIB waits for it (RFC 4724 §4.1: after the initial update), because an EoR
    /// sent while nothing is decided yet makes the peer flush the routes it kept for us.
    /// `None`: the routes are final at once.
    pub initial_routes: Option<watch::Receiver<bool>>,
    /// The daemon's BFD task, for peers with `bfd` configured (`None`: not running).
    pub bfd: Option<crate::bfd::Handle>,
}

/// Session timers that operators rarely touch (defaults in [`Tuning::default`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// First reconnect delay after a failure; doubles per failure (1 s).
    pub idle_hold: Duration,
    /// Cap of the reconnect delay (60 s).
    pub idle_hold_max: Duration,
    /// Established this long resets the reconnect delay (5 min).
    pub idle_hold_stable: Duration,
    /// RFC 9687 SendHoldTime; `None` = max(8 min, 2 × hold time).
    pub send_hold: Option<Duration>,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            idle_hold: crate::config::DEFAULT_RECONNECT.min,
            idle_hold_max: crate::config::DEFAULT_RECONNECT.max,
            idle_hold_stable: Duration::from_secs(300),
            send_hold: None,
        }
    }
}

/// Why a peer is being stopped; becomes the Cease NOTIFICATION with an RFC 9003 Shutdown
/// Communication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// Cease/Administrative Shutdown, "daemon stopping".
    DaemonStopping,
    /// Cease/Peer De-configured, "peer removed by config reload".
    PeerRemoved,
    /// Cease/Other Configuration Change, "peer configuration changed".
    ConfigChanged,
    /// Cease/Administrative Shutdown with the operator's text (e.g. "drain by operator").
    Operator(String),
}

impl StopReason {
    /// The NOTIFICATION to send.
    pub fn notification(&self) -> NotificationMessage {
        let (subcode, text) = match self {
            StopReason::DaemonStopping => {
                (cease_subcode::ADMINISTRATIVE_SHUTDOWN, "daemon stopping")
            }
            StopReason::PeerRemoved => (
                cease_subcode::PEER_DECONFIGURED,
                "peer removed by config reload",
            ),
            StopReason::ConfigChanged => (
                cease_subcode::OTHER_CONFIGURATION_CHANGE,
                "peer configuration changed",
            ),
            StopReason::Operator(t) => (cease_subcode::ADMINISTRATIVE_SHUTDOWN, t.as_str()),
        };
        // RFC 9003 defines the communication for subcodes 2 and 4; on 3 and 6 it is
        // undefined data that peers ignore, and it still helps whoever reads a capture.
        NotificationMessage::cease_shutdown(subcode, text)
    }
}

/// What a peer task tells the coordinator.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerEvent {
    /// The session reached Established; the initial UPDATEs are queued.
    Established {
        /// Peer name.
        peer: String,
        /// Negotiated capabilities by name.
        capabilities: Vec<String>,
    },
    /// The session left Established (or a start attempt failed after being up).
    Down {
        /// Peer name.
        peer: String,
        /// Human reason.
        reason: String,
    },
    /// The set of received routes matching our service prefixes changed.
    ServiceRoutes {
        /// Peer name.
        peer: String,
        /// Current routes.
        routes: Vec<IpNet>,
    },
    /// Everything needed to bring the peer to this desired Adj-RIB-Out has been written
    /// to the socket — or the session is down, so the peer has none of our routes.
    /// Compare with `Arc::ptr_eq` against what was published on the routes channel.
    Flushed {
        /// Peer name.
        peer: String,
        /// The session that wrote it (`PeerStatus::session`), 0 when none is up. A
        /// confirmation counts only for that session: the channel may still carry one
        /// from a session that has since been replaced.
        session: u64,
        /// The desired routes this confirms.
        routes: Arc<RibOut>,
        /// What the session's Adj-RIB-Out holds once this is written: the part of
        /// `routes` the session can carry (its families, a next hop), empty when no
        /// session is up. The guard's site report counts a prefix as announced only from
        /// here (issue 11 item 2: a route the peer was never sent announces nothing).
        sent: Arc<RibOut>,
    },
    /// The peer task panicked; it is restarted after a delay.
    Crashed {
        /// Peer name.
        peer: String,
        /// Panic message.
        message: String,
    },
}

/// Commands to a peer task.
#[derive(Debug)]
pub(crate) enum Command {
    /// A connection from the peer's address.
    Accepted(TcpStream),
    /// Stop with a Cease and end the task; `done` fires once the NOTIFICATION is written.
    Shutdown(StopReason, oneshot::Sender<()>),
    /// New `bfd` settings, applied to the BFD session without touching BGP (a config
    /// reload that changed only them); `done` fires once applied.
    SetBfd(Option<BfdConfig>, oneshot::Sender<()>),
}

/// Hands connections accepted by the listener to a peer task. Never blocks.
#[derive(Debug, Clone)]
pub struct Acceptor {
    pub(crate) tx: mpsc::Sender<Command>,
}

impl Acceptor {
    /// Gives `stream` to the peer; false (and the stream is closed) if the peer task
    /// cannot take it now.
    pub fn offer(&self, stream: TcpStream) -> bool {
        self.tx.try_send(Command::Accepted(stream)).is_ok()
    }
}

/// The coordinator's handle on a peer task.
#[derive(Debug)]
pub struct PeerHandle {
    pub(crate) name: String,
    pub(crate) tx: mpsc::Sender<Command>,
    pub(crate) task: JoinHandle<()>,
}

impl PeerHandle {
    /// Peer name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A handle for the listener.
    pub fn acceptor(&self) -> Acceptor {
        Acceptor {
            tx: self.tx.clone(),
        }
    }

    /// Hands over a connection accepted from the peer's address.
    pub async fn accepted(&self, stream: TcpStream) {
        // A closed task drops the stream, which closes it: nothing else to do.
        let _ = self.tx.send(Command::Accepted(stream)).await;
    }

    /// Applies new `bfd` settings to the running peer: the BFD session is re-configured
    /// (a Poll Sequence while Up, RFC 5880 §6.8.3), started or taken AdminDown; the BGP
    /// session is left alone. Needs the daemon's BFD task in the peer's [`LocalSpeaker`]
    /// when `bfd` is `Some` (else the status says BFD is not running).
    pub async fn set_bfd(&self, bfd: Option<BfdConfig>) {
        let (done_tx, done_rx) = oneshot::channel();
        if self.tx.send(Command::SetBfd(bfd, done_tx)).await.is_ok() {
            let _ = done_rx.await;
        }
    }

    /// Stops the peer: Cease with the reason's Shutdown Communication, written to the
    /// socket (bounded wait), then the task ends.
    pub async fn shutdown(self, reason: StopReason) {
        let (done_tx, done_rx) = oneshot::channel();
        if self
            .tx
            .send(Command::Shutdown(reason, done_tx))
            .await
            .is_ok()
        {
            let _ = done_rx.await;
        }
        let _ = self.task.await;
    }
}
