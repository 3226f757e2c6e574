//! The FSM's vocabulary: states, events, actions, configuration and the outcome of OPEN
//! negotiation.

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use anyguard_proto::{
    DecodeContext, EncodeContext, ErrorCode, Message, NotificationMessage, OpenMessage,
};

/// AS_TRANS (RFC 6793 §9): the 2-octet stand-in for a 4-octet ASN.
pub const AS_TRANS: u16 = 23456;
/// The BGP version we speak.
pub const BGP_VERSION: u8 = 4;
/// Hold timer while waiting for the peer's OPEN (RFC 4271 §8.2.2 suggests 4 minutes).
pub const DEFAULT_OPEN_HOLD_TIME: Duration = Duration::from_secs(240);
/// Shortest time between two KEEPALIVEs (RFC 4271 §4.4: "MUST NOT be sent more
/// frequently than one per second"), with a margin: the floor is measured from when the
/// previous KEEPALIVE was queued, and the writer may put that one on the wire a little late
/// and the next one on time. 100 ms keeps the gap *on the wire* at a second or more.
pub const MIN_KEEPALIVE_INTERVAL: Duration = Duration::from_millis(1100);
/// Lower bound of the RFC 9687 send hold time.
pub const MIN_SEND_HOLD_TIME: Duration = Duration::from_secs(480);

/// The six RFC 4271 §8.2.2 states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Refuses connections; waits for a start event or the IdleHoldTimer.
    Idle,
    /// Waiting for our outgoing TCP connection.
    Connect,
    /// Listening for the peer's connection.
    Active,
    /// OPEN sent, waiting for the peer's OPEN.
    OpenSent,
    /// OPENs exchanged, waiting for KEEPALIVE.
    OpenConfirm,
    /// Session up.
    Established,
}

impl State {
    /// Lower-case name used in the status document and logs.
    pub fn name(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Connect => "connect",
            State::Active => "active",
            State::OpenSent => "opensent",
            State::OpenConfirm => "openconfirm",
            State::Established => "established",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Identifies one TCP connection of a peer. Allocated by the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Who opened a TCP connection (needed by RFC 4271 §6.8 collision resolution).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// We connected to the peer.
    Outbound,
    /// The peer connected to us.
    Inbound,
}

/// Graceful restart as a restarting speaker (RFC 4724).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GracefulRestart {
    /// Restart Time advertised (capped at the 12-bit maximum, 4095 s).
    pub restart_time: Duration,
    /// Set the Restart State (R) bit in the OPENs of the first session after the process
    /// started (RFC 4724 §3): the daemon has (re)started and the peer must not wait for our
    /// End-of-RIB before sending its own routes.
    pub restarted: bool,
}

/// Per-peer FSM configuration (RFC 4271 §8.1 "optional session attributes").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Our ASN.
    pub local_asn: u32,
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// The peer's expected ASN.
    pub remote_asn: u32,
    /// Hold time we propose: zero or at least 3 s.
    pub hold_time: Duration,
    /// ConnectRetryTime.
    pub connect_retry: Duration,
    /// PassiveTcpEstablishment: never initiate the TCP connection (mode `passive`).
    pub passive: bool,
    /// DampPeerOscillations: first IdleHoldTime after a failure.
    pub idle_hold: Duration,
    /// Cap of the doubling IdleHoldTime.
    pub idle_hold_max: Duration,
    /// An Established period at least this long resets the IdleHoldTime to `idle_hold`.
    pub idle_hold_stable: Duration,
    /// RFC 9687 SendHoldTime; `None` = max(8 min, 2 × negotiated hold time).
    pub send_hold: Option<Duration>,
    /// Hold timer while in OpenSent.
    pub open_hold: Duration,
    /// Negotiate IPv4 unicast.
    pub ipv4: bool,
    /// Negotiate IPv6 unicast.
    pub ipv6: bool,
    /// Graceful restart, off when `None`.
    pub graceful_restart: Option<GracefulRestart>,
    /// Seed of the deterministic jitter generator (RFC 4271 §10: 0.75–1.0 of a timer).
    pub jitter_seed: u64,
}

impl Config {
    /// A configuration with the usual defaults for everything but identities.
    pub fn new(local_asn: u32, router_id: Ipv4Addr, remote_asn: u32) -> Self {
        Config {
            local_asn,
            router_id,
            remote_asn,
            hold_time: Duration::from_secs(90),
            connect_retry: Duration::from_secs(30),
            passive: false,
            idle_hold: Duration::from_secs(1),
            idle_hold_max: Duration::from_secs(120),
            idle_hold_stable: Duration::from_secs(300),
            send_hold: None,
            open_hold: DEFAULT_OPEN_HOLD_TIME,
            ipv4: true,
            ipv6: false,
            graceful_restart: None,
            jitter_seed: 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// iBGP session (RFC 4271 §3: same AS).
    pub fn is_ibgp(&self) -> bool {
        self.local_asn == self.remote_asn
    }
}

/// Why a session went down or a connection attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    /// We sent this NOTIFICATION (stop, protocol error, timer expiry, collision).
    NotificationSent(NotificationMessage),
    /// The peer sent this NOTIFICATION.
    NotificationReceived(NotificationMessage),
    /// The TCP connection failed or was closed by the peer without NOTIFICATION.
    TcpFailed,
    /// Stopped without a connection to notify.
    Stopped,
    /// An unexpected event in Connect/Active (no OPEN sent, so no NOTIFICATION).
    UnexpectedEvent(&'static str),
}

impl fmt::Display for DownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DownReason::NotificationSent(n) => write!(f, "sent {}", notification_name(n)),
            DownReason::NotificationReceived(n) => {
                write!(f, "received {}", notification_name(n))
            }
            DownReason::TcpFailed => f.write_str("tcp connection failed or closed"),
            DownReason::Stopped => f.write_str("stopped"),
            DownReason::UnexpectedEvent(e) => write!(f, "unexpected event {e}"),
        }
    }
}

/// Human name of a NOTIFICATION code/subcode, e.g. `Cease/Administrative Shutdown`.
pub fn notification_name(n: &NotificationMessage) -> String {
    let (code, sub): (&str, &[&str]) = match n.code {
        ErrorCode::MessageHeader => (
            "Message Header Error",
            &[
                "Unspecific",
                "Connection Not Synchronized",
                "Bad Message Length",
                "Bad Message Type",
            ],
        ),
        ErrorCode::OpenMessage => (
            "OPEN Message Error",
            &[
                "Unspecific",
                "Unsupported Version Number",
                "Bad Peer AS",
                "Bad BGP Identifier",
                "Unsupported Optional Parameter",
                "Authentication Failure",
                "Unacceptable Hold Time",
                "Unsupported Capability",
            ],
        ),
        ErrorCode::UpdateMessage => ("UPDATE Message Error", &[]),
        ErrorCode::HoldTimerExpired => ("Hold Timer Expired", &[]),
        ErrorCode::FiniteStateMachine => (
            "Finite State Machine Error",
            &[
                "Unspecified Error",
                "Unexpected Message in OpenSent",
                "Unexpected Message in OpenConfirm",
                "Unexpected Message in Established",
            ],
        ),
        ErrorCode::Cease => (
            "Cease",
            &[
                "Unspecific",
                "Maximum Number of Prefixes Reached",
                "Administrative Shutdown",
                "Peer De-configured",
                "Administrative Reset",
                "Connection Rejected",
                "Other Configuration Change",
                "Connection Collision Resolution",
                "Out of Resources",
                "Hard Reset",
                "BFD Down",
            ],
        ),
        ErrorCode::RouteRefresh => ("ROUTE-REFRESH Message Error", &[]),
        ErrorCode::SendHoldTimerExpired => ("Send Hold Timer Expired", &[]),
        ErrorCode::Unknown(c) => return format!("code {c}/{}", n.subcode),
    };
    match sub.get(usize::from(n.subcode)) {
        Some(s) if !(n.subcode == 0 && sub.len() <= 1) => format!("{code}/{s}"),
        _ if n.subcode == 0 => code.to_string(),
        _ => format!("{code}/{}", n.subcode),
    }
}

/// What the two OPENs agreed on (RFC 4271 §4.2, RFC 5492).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The peer's OPEN as received.
    pub remote_open: OpenMessage,
    /// The peer's ASN (4-octet capability, else `my_as`).
    pub remote_asn: u32,
    /// The peer's BGP identifier.
    pub remote_id: Ipv4Addr,
    /// Negotiated hold time (the smaller of both; zero disables keepalives).
    pub hold_time: Duration,
    /// Keepalive interval: a third of the hold time.
    pub keepalive: Duration,
    /// Both advertised 4-octet AS (RFC 6793).
    pub four_octet_as: bool,
    /// IPv4 unicast usable (both advertised it, or the peer sent no Multiprotocol
    /// capability at all: RFC 4760 §8 implicit IPv4 unicast).
    pub ipv4_unicast: bool,
    /// IPv6 unicast negotiated (RFC 4760).
    pub ipv6_unicast: bool,
    /// Both advertised Route Refresh (RFC 2918).
    pub route_refresh: bool,
    /// Both advertised Enhanced Route Refresh (RFC 7313).
    pub enhanced_route_refresh: bool,
    /// Both advertised Extended Message (RFC 8654).
    pub extended_message: bool,
    /// We advertised Graceful Restart and so did the peer (RFC 4724).
    pub graceful_restart: bool,
    /// Families we are configured for that the peer did not negotiate.
    pub missing_families: Vec<&'static str>,
}

impl Negotiated {
    /// Decoding context for everything after the OPENs.
    pub fn decode_context(&self) -> DecodeContext {
        DecodeContext {
            four_octet_as: self.four_octet_as,
            // RFC 8654 §4: "An implementation that advertises the BGP Extended Message
            // Capability MUST be capable of receiving a message with a Length up to and
            // including 65535 octets." Our OPEN always advertises it (`build_open`), so
            // what we accept does not depend on the peer's OPEN; only what we *send* does
            // (§4: "MAY send Extended Messages to its peer only if it has received" it:
            // `encode_context`, `max_message_len`). A 5000-octet NOTIFICATION from a peer
            // without the capability keeps its reason instead of becoming our 1/2.
            extended_message: true,
            add_path_ipv4: false,
            add_path_ipv6: false,
        }
    }

    /// Encoding context for everything after the OPENs.
    pub fn encode_context(&self) -> EncodeContext {
        EncodeContext {
            four_octet_as: self.four_octet_as,
            extended_message: self.extended_message,
        }
    }

    /// Largest message either side may send.
    pub fn max_message_len(&self) -> usize {
        if self.extended_message {
            anyguard_proto::message::MAX_EXTENDED_MESSAGE_LEN
        } else {
            anyguard_proto::message::MAX_MESSAGE_LEN
        }
    }

    /// Names of the negotiated capabilities, for the status document.
    pub fn capability_names(&self) -> Vec<String> {
        let mut v = Vec::new();
        let flags = [
            (self.four_octet_as, "4-octet-as"),
            (self.ipv4_unicast, "mp-ipv4-unicast"),
            (self.ipv6_unicast, "mp-ipv6-unicast"),
            (self.route_refresh, "route-refresh"),
            (self.enhanced_route_refresh, "enhanced-route-refresh"),
            (self.extended_message, "extended-message"),
            (self.graceful_restart, "graceful-restart"),
        ];
        for (on, name) in flags {
            if on {
                v.push(name.to_string());
            }
        }
        v
    }
}

/// An input to the FSM. Timer events (RFC 4271 §8.1.3: 9 ConnectRetryTimer_Expires,
/// 10 HoldTimer_Expires, 11 KeepaliveTimer_Expires, 12 DelayOpenTimer_Expires,
/// 13 IdleHoldTimer_Expires, and the RFC 9687 SendHoldTimer) are not events: they are
/// deadlines inside the FSM, fired by `handle_timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// RFC 4271 §8.1.2 Event 1 ManualStart (Event 4 ManualStart_with_PassiveTcpEstablishment
    /// when the session is configured passive). Resets the damping state.
    ManualStart,
    /// Event 4 ManualStart_with_PassiveTcpEstablishment: start listening even if the session
    /// is not configured passive.
    ManualStartPassive,
    /// Events 3 AutomaticStart, 5 AutomaticStart_with_PassiveTcpEstablishment,
    /// 6 AutomaticStart_with_DampPeerOscillations and 7 AutomaticStart_with_DampPeerOscillations_and_PassiveTcpEstablishment:
    /// ignored while the IdleHoldTimer runs (damping).
    AutomaticStart,
    /// Event 2 ManualStop, with the Cease NOTIFICATION to send (RFC 8203/9003 communication).
    ManualStop(NotificationMessage),
    /// Event 2 ManualStop that closes the TCP connection *without* a NOTIFICATION: a
    /// peer that negotiated Graceful Restart keeps our routes as stale for our Restart
    /// Time (RFC 4724 §4.2), which a NOTIFICATION would cancel unless both sides had
    /// negotiated RFC 8538's N bit (we do not advertise it).
    ManualStopForRestart,
    /// Event 8 AutomaticStop (e.g. max-prefix, RFC 4486): NOTIFICATION to send, and when to
    /// restart automatically (`None`: stay Idle until a ManualStart).
    AutomaticStop {
        /// NOTIFICATION to send.
        notification: NotificationMessage,
        /// Automatic restart delay.
        restart_after: Option<Duration>,
    },
    /// Event 16 Tcp_CR_Acked: our outgoing connection is up.
    TcpCrAcked(ConnId),
    /// Events 14 TcpConnection_Valid and 17 TcpConnectionConfirmed: the peer's connection was
    /// accepted (the listener already refused unknown sources: Event 15 Tcp_CR_Invalid).
    TcpConnectionConfirmed(ConnId),
    /// Event 18 TcpConnectionFails (includes a clean close by the peer).
    TcpConnectionFails(ConnId),
    /// Events 19 BGPOpen and 20 BGPOpen with DelayOpenTimer running; the FSM runs the
    /// RFC 4271 §6.2 checks and turns a bad OPEN into Event 22 BGPOpenMsgErr.
    Open(ConnId, OpenMessage),
    /// Event 26 KeepAliveMsg.
    Keepalive(ConnId),
    /// Event 27 UpdateMsg (the driver walks the UPDATE itself; the FSM only needs to know).
    Update(ConnId),
    /// ROUTE-REFRESH received (RFC 2918); treated like Event 27 for the timers.
    RouteRefresh(ConnId),
    /// Events 24 NotifMsgVerErr and 25 NotifMsg.
    Notification(ConnId, NotificationMessage),
    /// Events 21 BGPHeaderErr, 22 BGPOpenMsgErr (from the decoder) and 28 UpdateMsgErr
    /// (RFC 7606 "session reset" class): the NOTIFICATION the decoder error maps to.
    MessageError(ConnId, NotificationMessage),
    /// Event 23 OpenCollisionDump (issued by the collision wrapper).
    OpenCollisionDump(ConnId),
    /// Bytes were queued for writing on the connection (arms the RFC 9687 SendHoldTimer).
    SendQueued(ConnId),
    /// The socket accepted bytes; `drained` when nothing is left to write (RFC 9687).
    SendProgress {
        /// Connection.
        conn: ConnId,
        /// Nothing left to write.
        drained: bool,
    },
}

impl Event {
    /// The connection the event concerns, if any.
    pub fn conn(&self) -> Option<ConnId> {
        match self {
            Event::ManualStart
            | Event::ManualStartPassive
            | Event::AutomaticStart
            | Event::ManualStop(_)
            | Event::ManualStopForRestart
            | Event::AutomaticStop { .. } => None,
            Event::TcpCrAcked(c)
            | Event::TcpConnectionConfirmed(c)
            | Event::TcpConnectionFails(c)
            | Event::Open(c, _)
            | Event::Keepalive(c)
            | Event::Update(c)
            | Event::RouteRefresh(c)
            | Event::Notification(c, _)
            | Event::MessageError(c, _)
            | Event::OpenCollisionDump(c)
            | Event::SendQueued(c)
            | Event::SendProgress { conn: c, .. } => Some(*c),
        }
    }

    /// Short name for logs and [`DownReason::UnexpectedEvent`].
    pub fn name(&self) -> &'static str {
        match self {
            Event::ManualStart => "ManualStart",
            Event::ManualStartPassive => "ManualStart_with_PassiveTcpEstablishment",
            Event::AutomaticStart => "AutomaticStart",
            Event::ManualStop(_) | Event::ManualStopForRestart => "ManualStop",
            Event::AutomaticStop { .. } => "AutomaticStop",
            Event::TcpCrAcked(_) => "Tcp_CR_Acked",
            Event::TcpConnectionConfirmed(_) => "TcpConnectionConfirmed",
            Event::TcpConnectionFails(_) => "TcpConnectionFails",
            Event::Open(..) => "BGPOpen",
            Event::Keepalive(_) => "KeepAliveMsg",
            Event::Update(_) => "UpdateMsg",
            Event::RouteRefresh(_) => "RouteRefresh",
            Event::Notification(..) => "NotifMsg",
            Event::MessageError(..) => "MessageError",
            Event::OpenCollisionDump(_) => "OpenCollisionDump",
            Event::SendQueued(_) => "SendQueued",
            Event::SendProgress { .. } => "SendProgress",
        }
    }
}

/// The FSM's internal timers (RFC 4271 §8.1.3, RFC 9687).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// Event 9.
    ConnectRetry,
    /// Event 10.
    Hold,
    /// Event 11.
    Keepalive,
    /// Event 13.
    IdleHold,
    /// RFC 9687.
    SendHold,
}

/// What the FSM asks the driver to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open an outgoing TCP connection (abandoning any attempt in progress); report
    /// `TcpCrAcked` or `TcpConnectionFails` with a fresh [`ConnId`].
    Connect,
    /// Abandon the outgoing connection attempt in progress.
    CancelConnect,
    /// Write a message on a connection.
    Send {
        /// Connection.
        conn: ConnId,
        /// Message.
        message: Message,
    },
    /// Close a connection (after writing what was queued before).
    Close {
        /// Connection.
        conn: ConnId,
    },
    /// State change, for status and logs; `reason` is set when a failure caused it.
    StateChanged {
        /// Old state.
        from: State,
        /// New state.
        to: State,
        /// Cause, when the change is a failure.
        reason: Option<DownReason>,
        /// The connection whose state changed (none in Idle, Connect and Active before a
        /// connection exists): during a collision (RFC 4271 §6.8) two connections change
        /// state side by side, and the log must say which is which.
        conn: Option<ConnId>,
    },
    /// The session reached Established on `conn`.
    SessionUp {
        /// Connection now carrying the session.
        conn: ConnId,
        /// What was negotiated.
        negotiated: Box<Negotiated>,
    },
    /// The session left Established.
    SessionDown(DownReason),
    /// The session, Established on `from`, is Established on `conn` now: the peer closed
    /// `from` to keep `conn` in a collision (RFC 4271 §6.8; `collision.rs`). Neither a
    /// SessionDown nor a new session: the routes go out again on `conn`.
    SessionMoved {
        /// The connection the peer closed.
        from: ConnId,
        /// Connection now carrying the session.
        conn: ConnId,
        /// What was negotiated on it.
        negotiated: Box<Negotiated>,
    },
}
