//! The BFD task: one per daemon, owning the sockets (see [`super::socket`]) and every
//! [`Session`]. It turns datagrams, commands and deadlines into session events and the
//! sessions' actions into datagrams and status.
//!
//! ```text
//!  peer task ──add(peer, local, config) / remove(peer, owner)──▶ BFD task ◀── UDP 3784
//!  peer task ◀──────────────── watch<BfdStatus> ────────────────┘     │  (IPv4, IPv6)
//!                      UDP from 49152–65535, TTL 255 (from `local` when given) ◀──┘
//! ```
//!
//! Demultiplexing (RFC 5880 §6.8.6, RFC 5881 §3): by Your Discriminator, or by the source
//! address when it is zero; the source address must be the session's peer either way.
//! Packets whose TTL / hop limit is not 255 are dropped (RFC 5881 §5). Nothing is
//! allocated for a sender without a session: every datagram dropped before it reaches a
//! session bumps one of a fixed set of counters, by reason
//! ([`crate::status::model::BfdDropCounts`], published on [`Handle::daemon_status`]).
//!
//! A removed session is not freed at once: it lingers in AdminDown, sending at its
//! interval, for the peer's Detection Time (RFC 5880 §6.8.16; see
//! [`Session::admin_down_until`]), so that the peer sees AdminDown rather than a detection
//! timeout. Registering the same peer again meanwhile takes the lingering session back.
//! [`Handle::stop`] removes every session and waits for the lingering, cut short at
//! [`STOP_LINGER_MAX`].

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyguard_proto::bfd::{BfdDecodeError, ControlPacket, State};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use super::session::{Action, Config, Event, Session};
use super::socket::{Datagram, RxSocket, TxSocket, CONTROL_PORT, RECV_BUF, TTL};
use crate::status::model::{BfdDaemonStatus, BfdStatus};

/// Commands queued to the BFD task.
const COMMAND_QUEUE: usize = 64;
/// Counters reach the status at most this often (state changes go out at once).
const COUNTER_PUBLISH: Duration = Duration::from_secs(1);
/// At daemon stop, sessions linger in AdminDown (RFC 5880 §6.8.16) at most this long, so
/// that stopping stays quick; a slow session then has sent one AdminDown packet, or two.
pub const STOP_LINGER_MAX: Duration = Duration::from_secs(1);
/// The status note while a session has never been Up.
pub const NEVER_UP_NOTE: &str =
    "BFD has not come up: the BGP session does not depend on it until it has (is BFD enabled on the router?)";

/// Where the BFD task listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverConfig {
    /// IPv4 receive address; `None`: no IPv4 sessions.
    pub listen_v4: Option<SocketAddr>,
    /// IPv6 receive address; `None`: no IPv6 sessions.
    pub listen_v6: Option<SocketAddr>,
    /// The port peers listen on, for [`Handle::peer_port`] (3784; tests use others).
    pub peer_port: u16,
}

impl DriverConfig {
    /// The daemon's: port 3784 on every address of both families (RFC 5881 §4).
    pub fn daemon() -> DriverConfig {
        DriverConfig {
            listen_v4: Some(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), CONTROL_PORT)),
            listen_v6: Some(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), CONTROL_PORT)),
            peer_port: CONTROL_PORT,
        }
    }
}

/// Why the BFD task could not start.
#[derive(Debug, thiserror::Error)]
pub enum BfdError {
    /// Neither family's sockets could be opened.
    #[error("cannot open BFD sockets: {0}")]
    Sockets(io::Error),
}

#[derive(Debug)]
enum Command {
    Add {
        peer: SocketAddr,
        local: Option<IpAddr>,
        config: Config,
        reply: oneshot::Sender<Registration>,
    },
    Remove {
        peer: IpAddr,
        owner: u64,
        done: oneshot::Sender<()>,
    },
    Stop {
        done: oneshot::Sender<()>,
    },
}

/// What [`Handle::add`] gives a peer task.
#[derive(Debug)]
pub struct Registration {
    /// The session's status, published by the BFD task.
    pub status: watch::Receiver<BfdStatus>,
    /// Who registered last; [`Handle::remove`] with an older owner changes nothing.
    pub owner: u64,
}

/// A handle on the BFD task; the task ends when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct Handle {
    tx: mpsc::Sender<Command>,
    daemon_status: watch::Receiver<BfdDaemonStatus>,
    ports: (Option<u16>, Option<u16>),
    peer_port: u16,
}

impl Handle {
    /// Opens the sockets and starts the task (inside a tokio runtime). A family whose
    /// sockets fail is left out with a warning; both failing is an error.
    pub fn spawn(cfg: DriverConfig) -> Result<Handle, BfdError> {
        let seed = rand::random::<u64>();
        let open = |listen: Option<SocketAddr>, v6: bool| -> Option<Family> {
            let listen = listen?;
            match Family::open(listen, v6, seed.rotate_left(u32::from(v6) * 17)) {
                Ok(f) => Some(f),
                Err(e) => {
                    warn!(%listen, error = %e, "cannot open BFD sockets for this family");
                    None
                }
            }
        };
        let v4 = open(cfg.listen_v4, false);
        let v6 = open(cfg.listen_v6, true);
        if v4.is_none() && v6.is_none() {
            return Err(BfdError::Sockets(io::Error::other(
                "no address family could be opened",
            )));
        }
        let port = |f: &Option<Family>| {
            f.as_ref()
                .and_then(|f| f.rx.local_addr().ok())
                .map(|a| a.port())
        };
        let ports = (port(&v4), port(&v6));
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let (rx4, tx4) = v4.map(|f| (f.rx, f.tx)).unzip();
        let (rx6, tx6) = v6.map(|f| (f.rx, f.tx)).unzip();
        let (daemon_tx, daemon_status) = watch::channel(BfdDaemonStatus::default());
        let driver = Driver {
            sessions: HashMap::new(),
            by_peer: HashMap::new(),
            rng: seed | 1,
            next_owner: 1,
            daemon: BfdDaemonStatus::default(),
            daemon_tx,
            daemon_published: now(),
            stopping: false,
            stop_waiters: Vec::new(),
            tx4,
            tx6,
            bound: HashMap::new(),
            buf: Vec::with_capacity(64),
        };
        tokio::spawn(driver.run(rx, rx4, rx6));
        Ok(Handle {
            tx,
            daemon_status,
            ports,
            peer_port: cfg.peer_port,
        })
    }

    /// The receive ports actually bound (IPv4, IPv6); tests bind port 0.
    pub fn local_ports(&self) -> (Option<u16>, Option<u16>) {
        self.ports
    }

    /// The port peers' sessions are sent to (3784).
    pub fn peer_port(&self) -> u16 {
        self.peer_port
    }

    /// The task's own status (counters of dropped datagrams), refreshed at most once a
    /// second; it closes when the task ends.
    pub fn daemon_status(&self) -> watch::Receiver<BfdDaemonStatus> {
        self.daemon_status.clone()
    }

    /// Removes every session and waits until each has sent AdminDown long enough (RFC
    /// 5880 §6.8.16), at most [`STOP_LINGER_MAX`] (and a margin); the task then ends and
    /// [`Handle::add`] answers `None`.
    pub async fn stop(&self) {
        let (done, rx) = oneshot::channel();
        if self.tx.send(Command::Stop { done }).await.is_ok() {
            let _ = tokio::time::timeout(STOP_LINGER_MAX * 2, rx).await;
        }
    }
    /// Starts the session with `peer` (its address and BFD port, 3784), or takes over and
    /// re-configures the one it has: a peer task restarted after a panic keeps its
    /// session, and a peer replaced by a reload may register before the old task leaves.
    /// `local`: the source address to send from (the peer's `local_address`), else the
    /// kernel's choice. `None` if the task is gone.
    pub async fn add(
        &self,
        peer: SocketAddr,
        local: Option<IpAddr>,
        config: Config,
    ) -> Option<Registration> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Add {
                peer,
                local,
                config,
                reply,
            })
            .await
            .ok()?;
        rx.await.ok()
    }
    /// Removes the session with `peer` if `owner` registered it last: it goes AdminDown
    /// (RFC 5880 §6.8.16, so the peer does not see a failure) and is freed once it has
    /// said so for the peer's Detection Time. Returns without waiting for that.
    pub async fn remove(&self, peer: IpAddr, owner: u64) {
        let (done, rx) = oneshot::channel();
        if self
            .tx
            .send(Command::Remove { peer, owner, done })
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
    }
}

/// One address family's sockets.
struct Family {
    rx: RxSocket,
    tx: TxSocket,
}

impl Family {
    fn open(listen: SocketAddr, v6: bool, seed: u64) -> io::Result<Family> {
        Ok(Family {
            rx: RxSocket::bind(listen)?,
            tx: TxSocket::bind(v6, seed)?,
        })
    }
}

struct Entry {
    peer: SocketAddr,
    local: Option<IpAddr>,
    session: Session,
    owner: u64,
    st: BfdStatus,
    status: watch::Sender<BfdStatus>,
    counters_published: Instant,
    /// Removed: lingering in AdminDown until then, then freed.
    free_at: Option<Instant>,
}

struct Driver {
    sessions: HashMap<u32, Entry>,
    by_peer: HashMap<IpAddr, u32>,
    rng: u64,
    next_owner: u64,
    /// The task's own counters, and when they were last published (`daemon_tx` holds
    /// what was).
    daemon: BfdDaemonStatus,
    daemon_tx: watch::Sender<BfdDaemonStatus>,
    daemon_published: Instant,
    /// [`Handle::stop`] was called, or every handle is gone: the task ends once the
    /// lingering sessions are freed.
    stopping: bool,
    stop_waiters: Vec<oneshot::Sender<()>>,
    tx4: Option<TxSocket>,
    tx6: Option<TxSocket>,
    /// Sending sockets bound to a configured source address, one per address in use.
    bound: HashMap<IpAddr, TxSocket>,
    buf: Vec<u8>,
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

fn rfc3339_now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

type Received = io::Result<(Datagram, Result<ControlPacket, BfdDecodeError>)>;

/// Receives and decodes one datagram; never resolves without a socket.
async fn receive(rx: &mut Option<RxSocket>, buf: &mut [u8; RECV_BUF]) -> Received {
    let Some(rx) = rx.as_mut() else {
        return std::future::pending().await;
    };
    let dg = rx.recv(buf).await?;
    let packet = ControlPacket::decode(buf.get(..dg.len).unwrap_or_default());
    Ok((dg, packet))
}

impl Driver {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut rx4: Option<RxSocket>,
        mut rx6: Option<RxSocket>,
    ) {
        let mut buf4 = [0u8; RECV_BUF];
        let mut buf6 = [0u8; RECV_BUF];
        let mut commands_open = true;
        // Ends: once stopping, no session is added and each is freed by STOP_LINGER_MAX.
        loop {
            if self.stopping && self.sessions.is_empty() {
                break;
            }
            let deadline = self.next_deadline();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                cmd = commands.recv(), if commands_open => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    // Every handle is gone (the daemon stops): say AdminDown to whoever
                    // is left, for as long as a stop allows.
                    None => {
                        commands_open = false;
                        self.stop();
                    }
                },
                r = receive(&mut rx4, &mut buf4) => self.on_received(r),
                r = receive(&mut rx6, &mut buf6) => self.on_received(r),
                () = sleep => self.on_timeout(),
            }
        }
        self.publish_daemon(true);
        for done in self.stop_waiters.drain(..) {
            let _ = done.send(());
        }
    }

    /// Removes every session, lingering at most [`STOP_LINGER_MAX`].
    fn stop(&mut self) {
        self.stopping = true;
        let cap = now() + STOP_LINGER_MAX;
        let peers: Vec<IpAddr> = self.by_peer.keys().copied().collect();
        for peer in peers {
            self.remove(peer, None, Some(cap));
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.sessions
            .values()
            .flat_map(|e| {
                [
                    e.session.next_deadline(),
                    Some(e.counters_published + COUNTER_PUBLISH),
                    e.free_at,
                ]
            })
            .flatten()
            .chain(self.daemon_publish_due())
            .min()
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Add {
                peer,
                local,
                config,
                reply,
            } => {
                // Stopping: no new session (the reply dropped: `add` answers `None`).
                if !self.stopping {
                    let rx = self.add(peer, local, config);
                    let _ = reply.send(rx);
                }
            }
            Command::Remove { peer, owner, done } => {
                self.remove(peer, Some(owner), None);
                let _ = done.send(());
            }
            Command::Stop { done } => {
                self.stop_waiters.push(done);
                self.stop();
            }
        }
    }

    fn add(&mut self, peer: SocketAddr, local: Option<IpAddr>, config: Config) -> Registration {
        let now = now();
        let owner = self.next_owner;
        self.next_owner += 1;
        let bind_error = local.and_then(|l| self.bind_source(l));
        if let Some(disc) = self.by_peer.get(&peer.ip()).copied() {
            if let Some(e) = self.sessions.get_mut(&disc) {
                // A session lingering in AdminDown after a removal is taken back (one
                // session per peer on the wire): AdminUp below brings it to Down.
                e.free_at = None;
                e.owner = owner;
                e.peer = peer;
                e.local = local;
                // The new registration's source decides the note: an error from an earlier
                // source that is no longer asked for must not stay.
                e.st.note = match &bind_error {
                    Some(err) => Some(err.clone()),
                    None if e.st.up_count == 0 => Some(NEVER_UP_NOTE.to_string()),
                    None => None,
                };
                let mut actions = e.session.handle(now, Event::AdminUp);
                actions.extend(e.session.handle(now, Event::SetConfig(config)));
                self.execute(disc, actions);
                if let Some(e) = self.sessions.get(&disc) {
                    return Registration {
                        status: e.status.subscribe(),
                        owner,
                    };
                }
            }
        }
        let disc = self.new_discriminator();
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let session = Session::new(config, disc, self.rng, now);
        let st = BfdStatus {
            state: State::Down.name().to_string(),
            since: rfc3339_now(),
            remote_state: State::Down.name().to_string(),
            local_discriminator: disc,
            note: Some(bind_error.unwrap_or_else(|| NEVER_UP_NOTE.to_string())),
            ..BfdStatus::default()
        };
        let (status, rx) = watch::channel(st.clone());
        info!(%peer, discriminator = disc, "BFD session added");
        self.sessions.insert(
            disc,
            Entry {
                peer,
                local,
                session,
                owner,
                st,
                status,
                counters_published: now,
                free_at: None,
            },
        );
        self.by_peer.insert(peer.ip(), disc);
        self.publish(disc, true);
        Registration { status: rx, owner }
    }

    /// Opens the sending socket for source address `local` if none is open; the error,
    /// for the status, when it cannot be.
    fn bind_source(&mut self, local: IpAddr) -> Option<String> {
        if self.bound.contains_key(&local) {
            return None;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        match TxSocket::bind_to(local, self.rng) {
            Ok(s) => {
                self.bound.insert(local, s);
                None
            }
            Err(e) => {
                warn!(%local, error = %e, "cannot send BFD packets from this address");
                Some(format!("cannot send BFD packets from {local}: {e}"))
            }
        }
    }

    /// RFC 5880 §6.8.1: unique non-zero discriminators, random so that a restarted daemon
    /// does not reuse the last one.
    fn new_discriminator(&mut self) -> u32 {
        // Sessions are a handful; the loop ends at the first free value in practice and
        // is bounded all the same.
        for _ in 0..1000 {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            let d = u32::try_from(self.rng >> 32).unwrap_or(1);
            if d != 0 && !self.sessions.contains_key(&d) {
                return d;
            }
        }
        (1..=u32::MAX)
            .find(|d| !self.sessions.contains_key(d))
            .unwrap_or(1)
    }

    /// Removes the session with `peer`, if `owner` (when given) registered it last: it
    /// goes AdminDown and lingers until [`Session::admin_down_until`], or `cap` if sooner.
    fn remove(&mut self, peer: IpAddr, owner: Option<u64>, cap: Option<Instant>) {
        let Some(disc) = self.by_peer.get(&peer).copied() else {
            return;
        };
        let Some(e) = self.sessions.get_mut(&disc) else {
            return;
        };
        if owner.is_some_and(|o| o != e.owner) {
            return;
        }
        let now = now();
        let actions = e.session.handle(now, Event::AdminDown);
        let until = e.session.admin_down_until().unwrap_or(now);
        let free_at = e.free_at.unwrap_or(until);
        let free_at = cap.map_or(free_at, |c| free_at.min(c));
        e.free_at = Some(free_at);
        debug!(%peer, linger = ?free_at.saturating_duration_since(now), "BFD session going AdminDown");
        self.execute(disc, actions);
    }

    /// Frees the removed sessions whose lingering is over.
    fn free_lingering(&mut self, now: Instant) {
        let done: Vec<u32> = self
            .sessions
            .iter()
            .filter(|(_, e)| e.free_at.is_some_and(|t| t <= now))
            .map(|(d, _)| *d)
            .collect();
        if done.is_empty() {
            return;
        }
        for disc in done {
            if let Some(e) = self.sessions.remove(&disc) {
                if self.by_peer.get(&e.peer.ip()) == Some(&disc) {
                    self.by_peer.remove(&e.peer.ip());
                }
                info!(peer = %e.peer, "BFD session removed");
            }
        }
        let in_use: Vec<IpAddr> = self.sessions.values().filter_map(|e| e.local).collect();
        self.bound.retain(|ip, _| in_use.contains(ip));
    }

    fn on_received(&mut self, r: Received) {
        let (dg, packet) = match r {
            Ok(x) => x,
            Err(e) => {
                debug!(error = %e, "BFD receive error");
                return;
            }
        };
        let by_source = self.by_peer.get(&dg.from.ip()).copied();
        // RFC 5881 §5: single hop means TTL 255, which nobody more than a hop away can
        // forge.
        if dg.ttl != Some(TTL) {
            debug!(from = %dg.from, ttl = ?dg.ttl, "BFD packet dropped: TTL not 255");
            self.daemon.dropped.ttl += 1;
            self.bad(by_source);
            return;
        }
        let packet = match packet {
            Ok(p) if !dg.truncated => p,
            Ok(_) => {
                debug!(from = %dg.from, "BFD packet dropped: too long");
                self.daemon.dropped.malformed += 1;
                self.bad(by_source);
                return;
            }
            Err(e) => {
                debug!(from = %dg.from, error = %e, "BFD packet dropped");
                self.daemon.dropped.malformed += 1;
                self.bad(by_source);
                return;
            }
        };
        let disc = if packet.your_discriminator != 0 {
            Some(packet.your_discriminator)
        } else {
            by_source
        };
        let Some(disc) = disc.filter(|d| {
            self.sessions
                .get(d)
                .is_some_and(|e| e.peer.ip() == dg.from.ip())
        }) else {
            let dropped = &mut self.daemon.dropped;
            let (count, why) = match disc {
                None => (&mut dropped.no_session, "no session with this address"),
                Some(d) if self.sessions.contains_key(&d) => {
                    (&mut dropped.wrong_source, "discriminator of another peer")
                }
                Some(_) => (&mut dropped.unknown_discriminator, "unknown discriminator"),
            };
            *count += 1;
            debug!(from = %dg.from, your_discriminator = packet.your_discriminator, "BFD packet dropped: {why}");
            self.bad(by_source);
            return;
        };
        let now = now();
        let Some(e) = self.sessions.get_mut(&disc) else {
            return;
        };
        let actions = e.session.handle(now, Event::Packet(packet));
        let discarded = actions.iter().any(|a| matches!(a, Action::Discarded(_)));
        if !discarded {
            e.st.packets_in += 1;
        }
        self.execute(disc, actions);
    }

    /// A datagram dropped before any session: counted (above) for the daemon and, when
    /// the source has a session, for it.
    fn bad(&mut self, disc: Option<u32>) {
        self.publish_daemon(false);
        if let Some(e) = disc.and_then(|d| self.sessions.get_mut(&d)) {
            e.st.bad_packets += 1;
        }
    }

    fn on_timeout(&mut self) {
        let now = now();
        let due: Vec<u32> = self
            .sessions
            .iter()
            .filter(|(_, e)| e.session.next_deadline().is_some_and(|d| d <= now))
            .map(|(d, _)| *d)
            .collect();
        for disc in due {
            if let Some(e) = self.sessions.get_mut(&disc) {
                let actions = e.session.handle_timeout(now);
                self.execute(disc, actions);
            }
        }
        let stale: Vec<u32> = self
            .sessions
            .iter()
            .filter(|(_, e)| e.counters_published + COUNTER_PUBLISH <= now)
            .map(|(d, _)| *d)
            .collect();
        for disc in stale {
            self.publish(disc, true);
        }
        self.free_lingering(now);
        self.publish_daemon(false);
    }

    /// When the daemon counters, changed since last published, are due.
    fn daemon_publish_due(&self) -> Option<Instant> {
        (*self.daemon_tx.borrow() != self.daemon).then_some(self.daemon_published + COUNTER_PUBLISH)
    }

    /// Publishes the daemon counters if they changed, at most every [`COUNTER_PUBLISH`]
    /// unless `force`.
    fn publish_daemon(&mut self, force: bool) {
        let now = now();
        if self.daemon_publish_due().is_some_and(|t| force || t <= now) {
            self.daemon_tx.send_replace(self.daemon.clone());
            self.daemon_published = now;
        }
    }

    fn execute(&mut self, disc: u32, actions: Vec<Action>) {
        let mut changed = false;
        for action in actions {
            match action {
                Action::Send(p) => self.send(disc, &p),
                Action::StateChanged(t) => {
                    changed = true;
                    let Some(e) = self.sessions.get_mut(&disc) else {
                        continue;
                    };
                    if t.is_failure() {
                        warn!(peer = %e.peer, diag = %t.diag, "BFD session down");
                        e.st.failures += 1;
                    } else {
                        info!(peer = %e.peer, from = %t.from, to = %t.to, diag = %t.diag, "BFD state");
                    }
                    if t.to == State::Up {
                        e.st.up_count += 1;
                        e.st.note = None;
                    }
                    e.st.since = rfc3339_now();
                }
                Action::Discarded(why) => {
                    if let Some(e) = self.sessions.get_mut(&disc) {
                        debug!(peer = %e.peer, %why, "BFD packet discarded");
                        e.st.bad_packets += 1;
                    }
                }
            }
        }
        self.publish(disc, changed);
    }

    fn send(&mut self, disc: u32, p: &ControlPacket) {
        let Some(e) = self.sessions.get_mut(&disc) else {
            return;
        };
        self.buf.clear();
        if let Err(err) = p.encode(&mut self.buf) {
            warn!(error = %err, "cannot encode BFD packet");
            return;
        }
        let family = if e.peer.is_ipv6() {
            &self.tx6
        } else {
            &self.tx4
        };
        // A configured source address has its own socket; without it (it could not be
        // bound: the status says so) the kernel's choice is the best left.
        let tx = e.local.and_then(|l| self.bound.get(&l)).or(family.as_ref());
        let result = match tx {
            Some(tx) => tx.try_send_to(&self.buf, e.peer),
            None => Err(io::Error::other("no socket for this address family")),
        };
        match result {
            Ok(()) => e.st.packets_out += 1,
            Err(err) => {
                debug!(peer = %e.peer, error = %err, "BFD send failed");
                let note = format!("cannot send BFD packets: {err}");
                if e.st.note.as_deref() != Some(&note) && e.st.up_count == 0 {
                    e.st.note = Some(note);
                }
            }
        }
    }

    /// Refreshes the status from the session; publishes at once when more than the
    /// counters changed (or `force`), otherwise at most every [`COUNTER_PUBLISH`].
    fn publish(&mut self, disc: u32, force: bool) {
        let Some(e) = self.sessions.get_mut(&disc) else {
            return;
        };
        let s = e.session.snapshot();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let st = &mut e.st;
        st.state = s.state.name().to_string();
        st.remote_state = s.remote_state.name().to_string();
        st.local_discriminator = s.local_discriminator;
        st.remote_discriminator = s.remote_discriminator;
        st.tx_interval_ms = ms(s.tx_interval);
        st.detection_time_ms = s.detection_time.map(ms);
        st.diag = s.local_diag.code();
        st.diag_name = s.local_diag.name().to_string();
        st.remote_diag = s.remote_diag.code();
        let now = now();
        let significant = {
            let p = e.status.borrow();
            let mut a = p.clone();
            let mut b = e.st.clone();
            for x in [&mut a, &mut b] {
                x.packets_in = 0;
                x.packets_out = 0;
                x.bad_packets = 0;
            }
            a != b
        };
        if force || significant || e.counters_published + COUNTER_PUBLISH <= now {
            let st = &e.st;
            e.status.send_if_modified(|s| {
                if s == st {
                    false
                } else {
                    s.clone_from(st);
                    true
                }
            });
            e.counters_published = now;
        }
    }
}
