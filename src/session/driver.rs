//! One tokio task per peer: it owns the peer's [`fsm::Peer`], its connections, its
//! Adj-RIB-Out ("sent") and its received-route bookkeeping, and turns everything into
//! FSM events and FSM actions into I/O.
//!
//! Loop: `select!` over commands (accepted connection, shutdown), connection input
//! (frames, progress, closes), changes of the desired routes, and
//! `sleep_until(fsm.next_deadline())`. The FSM is the only timer owner: reconnect
//! back-off (damped IdleHoldTimer with jitter), hold, keepalive, send hold.
//!
//! Each peer is its own task (see [`super::supervisor`]), so a panic or a decode failure
//! never touches another peer.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyguard_proto::notification::cease_subcode;
use anyguard_proto::{
    Afi, EncodeContext, ErrorCode, Message, NotificationMessage, RefreshSubtype,
    RouteRefreshMessage, Safi, UpdateMessage,
};
use bytes::BytesMut;
use ipnet::IpNet;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::api::{Command, LocalSpeaker, PeerEvent, StopReason};
use super::bfd_link::{bfd_down_notification, BfdLink, BfdUpdate};
use super::conn::{spawn_connect, ConnInput, ConnIo, IoTx, WriteCmd};
use super::next_hop;
use super::rib_in::RibIn;
use super::transport::{self, TransportConfig};
use super::wire::{self, count, end_of_rib};
use crate::announcer::{diff, sendable, RibOut, SessionContext};
use crate::config::{PeerConfig, PeerMode};
use crate::fsm::{self, Action, ConnId, DownReason, Event, Negotiated};
use crate::status::model::{NotificationStatus, PeerStatus};

/// Most octets queued on a connection before it is declared stuck (Cease/Out of Resources).
pub const MAX_SEND_QUEUE: usize = 16 * 1024 * 1024;
/// How long a closing connection may take to write its last messages.
const CLOSE_GRACE: Duration = Duration::from_secs(3);
/// Command queue depth per peer.
pub(crate) const COMMAND_QUEUE: usize = 16;
/// Frames buffered between a reader and the peer task.
const IO_QUEUE: usize = 256;

/// Numbers every Established session of the process (`PeerStatus::session`). Process-wide
/// rather than per peer task: a peer replaced by a reload gets a new task, whose sessions
/// must not reuse the numbers of the old task's, still possibly queued in the old task's
/// `PeerEvent::Flushed`.
static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

pub(crate) fn rfc3339_now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// The Established session's route state.
struct Up {
    conn: ConnId,
    /// This session's number ([`NEXT_SESSION`]).
    session: u64,
    negotiated: Negotiated,
    ctx: SessionContext,
    /// The session's Adj-RIB-Out: usually the very map the coordinator published
    /// ([`sendable`]), shared with every other peer rather than copied.
    sent: Arc<RibOut>,
    encode: EncodeContext,
    /// Families whose End-of-RIB waits for the initial routes ([`LocalSpeaker::initial_routes`]).
    eor_pending: Vec<Afi>,
}

pub(crate) struct Actor {
    cfg: PeerConfig,
    local: LocalSpeaker,
    transport: TransportConfig,
    fsm: fsm::Peer,
    conns: HashMap<ConnId, ConnIo>,
    next_id: u64,
    connecting: Option<(ConnId, JoinHandle<()>)>,
    io_tx: IoTx,
    io_rx: mpsc::Receiver<(ConnId, ConnInput)>,
    up: Option<Up>,
    rib_in: RibIn,
    routes: watch::Receiver<Arc<RibOut>>,
    routes_open: bool,
    /// From [`LocalSpeaker::initial_routes`]; `None` once it said `true` or closed.
    initial: Option<watch::Receiver<bool>>,
    /// The mark written after the latest UPDATEs, the desired routes they bring the peer to,
    /// and what the session's Adj-RIB-Out holds then.
    pending_flush: Option<(u64, Arc<RibOut>, Arc<RibOut>)>,
    next_mark: u64,
    closing: Vec<JoinHandle<()>>,
    st: PeerStatus,
    status: Arc<watch::Sender<PeerStatus>>,
    events: mpsc::UnboundedSender<PeerEvent>,
    work: VecDeque<Action>,
    draining: bool,
    bfd: BfdLink,
}

impl Actor {
    pub(crate) fn new(
        cfg: PeerConfig,
        local: LocalSpeaker,
        routes: watch::Receiver<Arc<RibOut>>,
        status: Arc<watch::Sender<PeerStatus>>,
        events: mpsc::UnboundedSender<PeerEvent>,
    ) -> Actor {
        let (io_tx, io_rx) = mpsc::channel(IO_QUEUE);
        let transport = TransportConfig {
            remote: SocketAddr::new(cfg.address, cfg.port),
            local_address: cfg.local_address,
            md5_key: cfg.md5_key.clone(),
            ttl_security: cfg.ttl_security,
        };
        let prev = status.borrow().clone();
        let st = PeerStatus {
            name: cfg.name.clone(),
            address: cfg.address.to_string(),
            remote_asn: cfg.remote_asn,
            state: "idle".into(),
            since: rfc3339_now(),
            // Counters survive a task restart after a panic.
            messages_sent: prev.messages_sent,
            messages_received: prev.messages_received,
            established_count: prev.established_count,
            last_error: prev.last_error,
            last_notification_sent: prev.last_notification_sent,
            last_notification_received: prev.last_notification_received,
            ..PeerStatus::default()
        };
        let initial = local.initial_routes.clone().filter(|rx| !*rx.borrow());
        Actor {
            initial,
            fsm: fsm::Peer::new(super::supervisor::fsm_config(&cfg, &local)),
            rib_in: RibIn::new(local.service_prefixes.clone()),
            cfg,
            local,
            transport,
            conns: HashMap::new(),
            next_id: 1,
            connecting: None,
            io_tx,
            io_rx,
            up: None,
            routes,
            routes_open: true,
            pending_flush: None,
            next_mark: 1,
            closing: Vec::new(),
            st,
            status,
            events,
            work: VecDeque::new(),
            draining: false,
            bfd: BfdLink::default(),
        }
    }

    pub(crate) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let start = match self.cfg.mode {
            PeerMode::Passive => Event::ManualStartPassive,
            PeerMode::Active | PeerMode::Both => Event::ManualStart,
        };
        self.st.bfd = self.bfd.register(&self.cfg, self.local.bfd.as_ref()).await;
        self.feed(start);
        if self.up.is_none() {
            // Without a session the peer holds none of our routes, so the desired set is
            // trivially "on the wire". Saying so at once matters at shutdown: the
            // coordinator waits for every peer to confirm the last routes, and a peer that
            // never connected (and saw no route change since) would otherwise hold up the
            // stop for the whole flush wait.
            let routes = self.routes.borrow_and_update().clone();
            self.flushed(routes, Arc::default());
        }
        self.publish();
        loop {
            let deadline = self.fsm.next_deadline();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(Command::Accepted(stream)) => self.on_accepted(stream),
                    Some(Command::SetBfd(bfd, done)) => {
                        self.on_set_bfd(bfd).await;
                        let _ = done.send(());
                    }
                    Some(Command::Shutdown(reason, done)) => {
                        self.stop(reason).await;
                        let _ = done.send(());
                        return;
                    }
                    None => {
                        self.stop(StopReason::DaemonStopping).await;
                        return;
                    }
                },
                Some((id, input)) = self.io_rx.recv() => self.on_io(id, input),
                u = self.bfd.changed() => self.on_bfd(u),
                r = self.routes.changed(), if self.routes_open => match r {
                    Ok(()) => self.on_routes_changed(),
                    Err(_) => self.routes_open = false,
                },
                r = initial_changed(&mut self.initial) => {
                    if r.is_err() || self.initial.as_ref().is_some_and(|rx| *rx.borrow()) {
                        self.on_initial_routes();
                    }
                },
                () = sleep => {
                    let actions = self.fsm.handle_timeout(now());
                    self.execute(actions);
                }
            }
            self.publish();
        }
    }

    // ----- FSM plumbing -----------------------------------------------------------------

    fn feed(&mut self, event: Event) {
        let actions = self.fsm.handle(now(), event);
        self.execute(actions);
    }

    /// Runs FSM actions in order. Actions may feed the FSM again (e.g. SendQueued after
    /// UPDATEs); their actions join the same queue instead of nesting.
    fn execute(&mut self, actions: Vec<Action>) {
        self.work.extend(actions);
        if self.draining {
            return;
        }
        self.draining = true;
        while let Some(action) = self.work.pop_front() {
            self.do_action(action);
        }
        self.draining = false;
    }

    fn do_action(&mut self, action: Action) {
        match action {
            Action::Connect => {
                if let Some((_, task)) = self.connecting.take() {
                    task.abort();
                }
                let id = self.alloc_id();
                let task = spawn_connect(id, self.transport.clone(), self.io_tx.clone());
                self.connecting = Some((id, task));
            }
            Action::CancelConnect => {
                if let Some((_, task)) = self.connecting.take() {
                    task.abort();
                }
            }
            Action::Send { conn, message } => self.send(conn, &message),
            Action::Close { conn } => {
                if let Some(io) = self.conns.remove(&conn) {
                    self.closing.push(io.close(CLOSE_GRACE));
                }
            }
            Action::StateChanged {
                from,
                to,
                reason,
                conn,
            } => {
                info!(%from, %to, reason = reason.as_ref().map(ToString::to_string), conn = conn.map(|c| c.0), "state");
                if let Some(r) = reason {
                    self.st.last_error = Some(r.to_string());
                }
            }
            Action::SessionUp { conn, negotiated } => self.on_established(conn, *negotiated, None),
            Action::SessionMoved {
                from,
                conn,
                negotiated,
            } => self.on_established(conn, *negotiated, Some(from)),
            Action::SessionDown(reason) => self.on_session_down(&reason),
        }
    }

    fn alloc_id(&mut self) -> ConnId {
        let id = ConnId(self.next_id);
        self.next_id += 1;
        id
    }

    fn encode_context(&self, conn: ConnId) -> EncodeContext {
        self.negotiated(conn)
            .map(Negotiated::encode_context)
            .unwrap_or_default()
    }

    fn negotiated(&self, conn: ConnId) -> Option<&Negotiated> {
        [Some(self.fsm.session()), self.fsm.secondary()]
            .into_iter()
            .flatten()
            .find(|s| s.connection().map(|(c, _)| c) == Some(conn))
            .and_then(fsm::Session::negotiated)
    }

    fn send(&mut self, conn: ConnId, message: &Message) {
        let ctx = self.encode_context(conn);
        let mut buf = BytesMut::new();
        if let Err(e) = message.encode(&ctx, &mut buf) {
            warn!(error = %e, "cannot encode message; not sent");
            self.st.last_error = Some(format!("encode: {e}"));
            return;
        }
        count(&mut self.st.messages_sent, message);
        if let Message::Notification(n) = message {
            warn!(notification = %fsm::notification_name(n), conn = conn.0, "sending NOTIFICATION");
            self.st.last_notification_sent = Some(notification_status(n));
        }
        let Some(io) = self.conns.get_mut(&conn) else {
            return;
        };
        if io.write(buf.freeze()) {
            // On the socket already, with nothing queued before it: the send hold timer
            // the FSM armed for it stops (RFC 9687), as the writer's report would.
            self.feed(Event::SendProgress {
                conn,
                drained: true,
            });
            return;
        }
        if io.queued > MAX_SEND_QUEUE {
            let n = NotificationMessage {
                code: ErrorCode::Cease,
                subcode: cease_subcode::OUT_OF_RESOURCES,
                data: Vec::new(),
            };
            self.st.last_error = Some("send queue full: peer not reading".into());
            self.feed(Event::MessageError(conn, n));
        }
    }

    // ----- inputs -----------------------------------------------------------------------

    fn on_accepted(&mut self, stream: tokio::net::TcpStream) {
        if let Err(e) = transport::accepted(&stream, &self.transport) {
            warn!(error = %e, "cannot set up accepted connection");
            return;
        }
        let id = self.alloc_id();
        debug!(conn = id.0, "accepted connection");
        self.conns
            .insert(id, ConnIo::start(id, stream, &self.io_tx));
        self.feed(Event::TcpConnectionConfirmed(id));
    }

    fn on_io(&mut self, id: ConnId, input: ConnInput) {
        match input {
            ConnInput::Connected(stream) => {
                if self.connecting.as_ref().map(|(c, _)| *c) != Some(id) {
                    return;
                }
                self.connecting = None;
                debug!(conn = id.0, "connected");
                self.conns
                    .insert(id, ConnIo::start(id, stream, &self.io_tx));
                self.feed(Event::TcpCrAcked(id));
            }
            ConnInput::ConnectFailed(err) => {
                if self.connecting.as_ref().map(|(c, _)| *c) != Some(id) {
                    return;
                }
                debug!(%err, "connect failed");
                self.st.last_error = Some(err);
                self.feed(Event::TcpConnectionFails(id));
                self.connecting = None;
            }
            ConnInput::Frames(frames, _credit) => {
                let mut rest = &frames[..];
                // The reader sent whole messages only; a message may close the
                // connection, and what follows it is then dropped.
                while let Ok(Some(n)) = wire::frame_len(rest) {
                    if !self.conns.contains_key(&id) || n > rest.len() {
                        break;
                    }
                    let (frame, tail) = rest.split_at(n);
                    self.on_frame(id, frame);
                    rest = tail;
                }
            }
            ConnInput::FrameError(e) => {
                if self.conns.contains_key(&id) {
                    warn!(error = %e, "bad frame");
                    self.feed(Event::MessageError(id, NotificationMessage::from(&e)));
                }
            }
            ConnInput::Closed(reason) => {
                if self.conns.remove(&id).is_some() {
                    debug!(%reason, conn = id.0, "connection closed");
                    self.st.last_error = Some(reason);
                    self.feed(Event::TcpConnectionFails(id));
                }
            }
            ConnInput::Written { bytes, drained } => {
                let Some(io) = self.conns.get_mut(&id) else {
                    return;
                };
                io.queued = io.queued.saturating_sub(bytes);
                let drained = drained && io.queued == 0;
                self.feed(Event::SendProgress { conn: id, drained });
            }
            ConnInput::Flushed(mark) => {
                if self.pending_flush.as_ref().map(|(m, _, _)| *m) == Some(mark) {
                    if let Some((_, routes, sent)) = self.pending_flush.take() {
                        self.flushed(routes, sent);
                    }
                }
            }
        }
    }

    fn on_frame(&mut self, id: ConnId, frame: &[u8]) {
        // Asked after the FSM saw the message: an UPDATE can make its connection the
        // session (a collision's held connection the peer is Established on, `fsm::Peer`).
        let established_here = |a: &Self| a.up.as_ref().map(|u| u.conn) == Some(id);
        if wire::is_update(frame) {
            self.st.messages_received.update += 1;
            self.feed(Event::Update(id));
            if established_here(self) {
                self.on_update(id, frame);
            }
            return;
        }
        let ctx = self
            .negotiated(id)
            .map(Negotiated::decode_context)
            .unwrap_or_default();
        match Message::decode(frame, &ctx) {
            Ok(message) => {
                count(&mut self.st.messages_received, &message);
                match message {
                    Message::Open(o) => self.feed(Event::Open(id, o)),
                    Message::Keepalive => self.feed(Event::Keepalive(id)),
                    Message::Notification(n) => {
                        warn!(notification = %fsm::notification_name(&n), conn = id.0, "received NOTIFICATION");
                        self.st.last_notification_received = Some(notification_status(&n));
                        self.feed(Event::Notification(id, n));
                    }
                    Message::RouteRefresh(rr) => {
                        self.feed(Event::RouteRefresh(id));
                        if established_here(self) {
                            self.on_route_refresh(rr);
                        }
                    }
                    Message::Update(_) => self.feed(Event::Update(id)),
                }
            }
            Err(e) => {
                warn!(error = %e, "undecodable message");
                self.feed(Event::MessageError(id, NotificationMessage::from(&e)));
            }
        }
    }

    fn on_update(&mut self, id: ConnId, frame: &[u8]) {
        let Some(up) = self.up.as_ref() else { return };
        let ctx = up.negotiated.decode_context();
        if let Err(n) = wire::apply_update(frame, &ctx, &mut self.rib_in) {
            warn!(notification = %fsm::notification_name(&n), "UPDATE error: session reset");
            self.feed(Event::MessageError(id, n));
            return;
        }
        self.st.prefixes_received_ipv4 = self.rib_in.ipv4();
        self.st.prefixes_received_ipv6 = self.rib_in.ipv6();
        if self.rib_in.take_service_routes_changed() {
            self.service_routes_changed();
        }
        if let Some(mp) = self.cfg.max_prefixes {
            if self.rib_in.total() > mp.limit {
                self.max_prefix_reached(mp.limit, mp.restart);
            }
        }
    }

    /// RFC 4486: Cease/Maximum Number of Prefixes Reached with AFI, SAFI and the limit
    /// (§4); the limit counts both families, the AFI named is the larger one.
    fn max_prefix_reached(&mut self, limit: u64, restart: Option<Duration>) {
        let afi = if self.rib_in.ipv6() > self.rib_in.ipv4() {
            Afi::Ipv6
        } else {
            Afi::Ipv4
        };
        let mut data = Vec::with_capacity(7);
        data.extend_from_slice(&u16::from(afi).to_be_bytes());
        data.push(u8::from(Safi::Unicast));
        data.extend_from_slice(&u32::try_from(limit).unwrap_or(u32::MAX).to_be_bytes());
        let notification = NotificationMessage {
            code: ErrorCode::Cease,
            subcode: cease_subcode::MAXIMUM_PREFIXES_REACHED,
            data,
        };
        warn!(
            limit,
            received = self.rib_in.total(),
            "maximum prefixes reached"
        );
        let detail = format!(
            "maximum prefixes reached: {} > {limit}{}",
            self.rib_in.total(),
            restart.map_or_else(
                || "; stays down until restarted".to_string(),
                |d| format!("; restarting in {d:?}")
            )
        );
        self.feed(Event::AutomaticStop {
            notification,
            restart_after: restart,
        });
        // After the FSM's own "sent Cease/…" reason: this one says more.
        self.st.last_error = Some(detail);
    }

    /// RFC 5882 §4.1: an Up BFD session failed, so the path is gone: close the BGP
    /// session now (Cease/BFD Down, RFC 9384) instead of waiting for the hold timer; the
    /// FSM reconnects as after any error.
    fn on_bfd(&mut self, u: BfdUpdate) {
        if u.failed {
            if let Some((conn, _)) = self.fsm.session().connection() {
                warn!(diag = %u.status.diag_name, "BFD session down: closing the BGP session");
                self.feed(Event::MessageError(conn, bfd_down_notification()));
                self.st.last_error = Some(format!(
                    "BFD down ({}): BGP session closed with Cease/BFD Down",
                    u.status.diag_name
                ));
            }
        }
        self.st.bfd = Some(u.status);
    }

    /// A reload changed only `bfd`: the BFD session follows (`BfdLink::register` on a
    /// session the task already has re-configures it in place), BGP does not notice.
    async fn on_set_bfd(&mut self, bfd: Option<crate::config::BfdConfig>) {
        info!(?bfd, "BFD settings changed");
        self.cfg.bfd = bfd;
        if bfd.is_none() {
            self.bfd.deregister(&self.cfg).await;
        }
        self.st.bfd = self.bfd.register(&self.cfg, self.local.bfd.as_ref()).await;
    }

    // ----- routes -----------------------------------------------------------------------

    fn session_context(&self, conn: ConnId, n: &Negotiated) -> SessionContext {
        let local = self.conns.get(&conn).and_then(|c| c.local).map(|a| a.ip());
        let local = local.map(|ip| match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        });
        // "self" next hops: the session's local address for its own family; for the
        // other family (only when negotiated and not configured) an address of the
        // session's interface (next_hop.rs).
        let derive = |v6: bool, negotiated: bool| {
            local
                .filter(|l| negotiated && l.is_ipv6() != v6)
                .and_then(next_hop::for_session)
        };
        SessionContext {
            local_asn: self.local.asn,
            ibgp: self.local.asn == self.cfg.remote_asn,
            next_hop_v4: self.cfg.next_hop_v4.or(match local {
                Some(IpAddr::V4(a)) => Some(a),
                _ => match derive(false, n.ipv4_unicast && self.cfg.next_hop_v4.is_none()) {
                    Some(IpAddr::V4(a)) => Some(a),
                    _ => None,
                },
            }),
            next_hop_v6: self.cfg.next_hop_v6.or(match local {
                Some(IpAddr::V6(a)) => Some(a),
                _ => match derive(true, n.ipv6_unicast && self.cfg.next_hop_v6.is_none()) {
                    Some(IpAddr::V6(a)) => Some(a),
                    _ => None,
                },
            }),
            max_message_len: n.max_message_len(),
            ipv4_unicast: n.ipv4_unicast,
            ipv6_unicast: n.ipv6_unicast,
            // RFC 2545 §3: only over an IPv6 session to a directly connected peer.
            link_local_v6: match (local, self.cfg.address) {
                // Not with a configured `next_hop_v6`: that may be another host's address.
                (Some(IpAddr::V6(l)), IpAddr::V6(peer))
                    if n.ipv6_unicast && self.cfg.next_hop_v6.is_none() =>
                {
                    next_hop::link_local(&next_hop::interface_addresses(), l, peer)
                }
                _ => None,
            },
        }
    }

    /// The session is Established on `conn`: a new one, or (`moved_from`) the same one
    /// moved there from the connection the peer closed in a collision (RFC 4271 §6.8,
    /// `fsm::Peer`). A moved session is not counted again (`established_count`) and the
    /// coordinator gets no PeerEvent: for the peer it is its one session, which never
    /// had our routes on the old connection (the peer was still in OpenConfirm there, or
    /// it dropped them as it closed it). It gets a new session number all the same, so
    /// that what the old connection confirmed as written counts for nothing: the routes
    /// count again once written on `conn` (`PeerEvent::Flushed`).
    fn on_established(&mut self, conn: ConnId, negotiated: Negotiated, moved_from: Option<ConnId>) {
        let ctx = self.session_context(conn, &negotiated);
        self.st.hold_time = u16::try_from(negotiated.hold_time.as_secs()).ok();
        self.st.capabilities = negotiated.capability_names();
        if let Some(from) = moved_from {
            info!(
                from = from.0,
                conn = conn.0,
                hold = ?negotiated.hold_time,
                "session moved to the connection the peer kept (RFC 4271 §6.8 collision): not a new session; routes sent again"
            );
            // What the peer sent on the old connection went with it.
            self.forget_received_routes();
        } else {
            info!(
                hold = ?negotiated.hold_time,
                capabilities = ?negotiated.capability_names(),
                "session established"
            );
            self.st.established_count += 1;
        }
        let session = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
        self.st.session = session;
        if !negotiated.missing_families.is_empty() {
            self.st.last_error = Some(format!(
                "peer did not negotiate {}: those routes are not sent",
                negotiated.missing_families.join(", ")
            ));
        }
        self.rib_in.clear();
        let gr = self.cfg.graceful_restart.is_some() || negotiated.graceful_restart;
        let families = [
            (negotiated.ipv4_unicast, Afi::Ipv4),
            (negotiated.ipv6_unicast, Afi::Ipv6),
        ];
        self.up = Some(Up {
            conn,
            session,
            encode: negotiated.encode_context(),
            negotiated,
            ctx,
            sent: Arc::default(),
            eor_pending: Vec::new(),
        });
        if moved_from.is_none() {
            let _ = self.events.send(PeerEvent::Established {
                peer: self.cfg.name.clone(),
                capabilities: self.st.capabilities.clone(),
            });
        }
        self.announce();
        if gr {
            // RFC 4724 §2: End-of-RIB after the initial announcements; while the services
            // are still undecided those are not known yet (see `on_initial_routes`).
            let afis = families
                .into_iter()
                .filter(|(on, _)| *on)
                .map(|(_, afi)| afi);
            if self.initial.is_some() {
                info!("End-of-RIB deferred until every service is decided (RFC 4724 §4.1)");
                if let Some(up) = self.up.as_mut() {
                    up.eor_pending = afis.collect();
                }
            } else {
                for afi in afis {
                    self.send_update(conn, &end_of_rib(afi));
                }
            }
        }
    }

    /// Every service is decided: the desired routes are the initial update. Sends them
    /// (the coordinator published them before this signal) and the End-of-RIB they
    /// waited for.
    fn on_initial_routes(&mut self) {
        self.initial = None;
        if self.up.is_none() {
            return;
        }
        self.announce();
        let Some(up) = self.up.as_mut() else { return };
        let (conn, afis) = (up.conn, std::mem::take(&mut up.eor_pending));
        for afi in afis {
            self.send_update(conn, &end_of_rib(afi));
        }
    }

    fn on_session_down(&mut self, reason: &DownReason) {
        info!(%reason, "session down");
        self.up = None;
        self.st.session = 0;
        self.st.prefixes_sent = 0;
        self.st.hold_time = None;
        self.st.capabilities.clear();
        self.forget_received_routes();
        let _ = self.events.send(PeerEvent::Down {
            peer: self.cfg.name.clone(),
            reason: reason.to_string(),
        });
        // The peer dropped all our routes with the session.
        if let Some((_, routes, _)) = self.pending_flush.take() {
            self.flushed(routes, Arc::default());
        }
    }

    /// The routes the peer sent us are gone with their connection.
    fn forget_received_routes(&mut self) {
        self.rib_in.clear();
        self.st.prefixes_received_ipv4 = 0;
        self.st.prefixes_received_ipv6 = 0;
        if self.rib_in.take_service_routes_changed() {
            self.service_routes_changed();
        }
    }

    fn on_routes_changed(&mut self) {
        if self.up.is_some() {
            self.announce();
        } else {
            let routes = self.routes.borrow_and_update().clone();
            self.flushed(routes, Arc::default());
        }
    }

    /// Sends the difference between what the peer has and what it should have.
    fn announce(&mut self) {
        let desired = self.routes.borrow_and_update().clone();
        let Some(up) = self.up.as_mut() else { return };
        let updates = if Arc::ptr_eq(&up.sent, &desired) {
            Vec::new()
        } else {
            diff(&up.sent, &desired, &up.ctx)
        };
        up.sent = sendable(&desired, &up.ctx);
        let sent = Arc::clone(&up.sent);
        let conn = up.conn;
        self.st.prefixes_sent = u64::try_from(up.sent.len()).unwrap_or(u64::MAX);
        if !updates.is_empty() {
            debug!(updates = updates.len(), "sending route changes");
        }
        for u in &updates {
            self.send_update(conn, u);
        }
        let mark = self.next_mark;
        self.next_mark += 1;
        if let Some(io) = self.conns.get(&conn) {
            let _ = io.writer.send(WriteCmd::Mark(mark));
            self.pending_flush = Some((mark, desired, sent));
        } else {
            // No connection to write on: the session is going down and the peer keeps
            // none of our routes.
            self.flushed(desired, Arc::default());
        }
    }

    fn send_update(&mut self, conn: ConnId, update: &UpdateMessage) {
        let ctx = self.up.as_ref().map(|u| u.encode).unwrap_or_default();
        let mut buf = BytesMut::new();
        let msg = Message::Update(update.clone());
        if let Err(e) = msg.encode(&ctx, &mut buf) {
            warn!(error = %e, "cannot encode UPDATE; not sent");
            self.st.last_error = Some(format!("encode: {e}"));
            return;
        }
        self.st.messages_sent.update += 1;
        let written = self
            .conns
            .get_mut(&conn)
            .is_some_and(|io| io.write(buf.freeze()));
        self.feed(Event::SendQueued(conn));
        if written {
            // As in `send`.
            self.feed(Event::SendProgress {
                conn,
                drained: true,
            });
        }
    }

    /// RFC 2918 / RFC 7313: re-send the Adj-RIB-Out of the requested family, framed by
    /// BoRR/EoRR when Enhanced Route Refresh was negotiated.
    fn on_route_refresh(&mut self, rr: RouteRefreshMessage) {
        if rr.subtype != RefreshSubtype::Request {
            return; // BoRR/EoRR from the peer: we keep no Adj-RIB-In.
        }
        let Some(up) = self.up.as_ref() else { return };
        // RFC 2918 §4, RFC 7313 §4: a request for an <AFI, SAFI> that was not advertised
        // at session establishment is ignored (no BoRR/EoRR either).
        let v6 = match (rr.afi, rr.safi) {
            (Afi::Ipv4, Safi::Unicast) if up.ctx.ipv4_unicast => false,
            (Afi::Ipv6, Safi::Unicast) if up.ctx.ipv6_unicast => true,
            _ => {
                debug!(afi = ?rr.afi, safi = ?rr.safi, "route refresh for a family not negotiated: ignored");
                return;
            }
        };
        let part: RibOut = up
            .sent
            .iter()
            .filter(|(p, _)| matches!(p, IpNet::V6(_)) == v6)
            .map(|(p, a)| (*p, a.clone()))
            .collect();
        let updates = diff(&RibOut::new(), &part, &up.ctx);
        let (conn, enhanced) = (up.conn, up.negotiated.enhanced_route_refresh);
        info!(afi = ?rr.afi, routes = part.len(), "route refresh requested");
        let framing = |subtype| {
            Message::RouteRefresh(RouteRefreshMessage {
                afi: rr.afi,
                subtype,
                safi: rr.safi,
            })
        };
        if enhanced {
            self.send(conn, &framing(RefreshSubtype::Begin));
        }
        for u in &updates {
            self.send_update(conn, u);
        }
        if enhanced {
            self.send(conn, &framing(RefreshSubtype::End));
        }
    }

    fn flushed(&mut self, routes: Arc<RibOut>, sent: Arc<RibOut>) {
        // A pending confirmation is taken when its session goes down (`on_session_down`),
        // so the session up now is the one that wrote it.
        let _ = self.events.send(PeerEvent::Flushed {
            peer: self.cfg.name.clone(),
            session: self.up.as_ref().map_or(0, |u| u.session),
            routes,
            sent,
        });
    }

    fn service_routes_changed(&mut self) {
        let routes: Vec<IpNet> = self.rib_in.service_routes().iter().copied().collect();
        self.st.service_routes_received = routes.iter().map(ToString::to_string).collect();
        let _ = self.events.send(PeerEvent::ServiceRoutes {
            peer: self.cfg.name.clone(),
            routes,
        });
    }

    // ----- stop and status --------------------------------------------------------------

    async fn stop(&mut self, reason: StopReason) {
        info!(?reason, "stopping peer");
        let graceful = self
            .up
            .as_ref()
            .is_some_and(|u| u.negotiated.graceful_restart);
        let event = match &reason {
            StopReason::KeepRoutes(why) if graceful => {
                warn!(
                    %why,
                    "closing the session without NOTIFICATION: the peer keeps our routes as stale for our restart time (RFC 4724 §4.2)"
                );
                Event::ManualStopForRestart
            }
            StopReason::KeepRoutes(why) => {
                warn!(
                    %why,
                    "graceful restart is not negotiated with this peer: it drops our routes as the session closes"
                );
                Event::ManualStop(reason.notification())
            }
            _ => Event::ManualStop(reason.notification()),
        };
        self.feed(event);
        if let Some((_, task)) = self.connecting.take() {
            task.abort();
        }
        for (_, io) in self.conns.drain() {
            self.closing.push(io.close(CLOSE_GRACE));
        }
        for task in self.closing.drain(..) {
            let _ = task.await;
        }
        self.bfd.deregister(&self.cfg).await;
        self.publish();
    }

    fn publish(&mut self) {
        let state = self.fsm.state().name();
        if self.st.state != state {
            self.st.state = state.to_string();
            self.st.since = rfc3339_now();
        }
        self.closing.retain(|t| !t.is_finished());
        let st = &self.st;
        self.status.send_if_modified(|s| {
            if s == st {
                false
            } else {
                s.clone_from(st);
                true
            }
        });
    }
}

fn notification_status(n: &NotificationMessage) -> NotificationStatus {
    NotificationStatus {
        at: rfc3339_now(),
        code: u8::from(n.code),
        subcode: n.subcode,
        name: fsm::notification_name(n),
        communication: n.shutdown_communication().map(|c| c.0),
    }
}

/// Resolves when the initial-routes signal changes (or closes); never while there is none.
async fn initial_changed(
    rx: &mut Option<watch::Receiver<bool>>,
) -> Result<(), watch::error::RecvError> {
    match rx {
        Some(rx) => rx.changed().await,
        None => std::future::pending().await,
    }
}
