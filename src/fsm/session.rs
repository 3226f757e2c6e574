//! One BGP connection's RFC 4271 §8.2.2 state machine.

use std::time::{Duration, Instant};

use anyguard_proto::notification::{cease_subcode, fsm_subcode, open_subcode};
use anyguard_proto::{ErrorCode, Message, NotificationMessage};

use super::open::{build_open, check_open};
use super::types::{
    Action, Config, ConnId, Direction, DownReason, Event, Negotiated, State, Timer,
    MIN_KEEPALIVE_INTERVAL, MIN_SEND_HOLD_TIME,
};

/// Whether the session may restart by itself after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The peer's main session: restarts (damped) after failures.
    Primary,
    /// The second connection during a collision: never restarts on its own.
    Secondary,
}

/// How Idle is entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdleKind {
    /// ManualStop: no automatic restart.
    Stopped,
    /// A failure: damped automatic restart (ConnectRetryCounter + 1).
    Failure,
    /// NotifMsgVerErr: restart without counting a failure.
    VersionError,
    /// AutomaticStop: restart after this delay, or never.
    AutoStop(Option<Duration>),
}

#[derive(Debug, Clone, Default)]
struct Timers {
    connect_retry: Option<Instant>,
    hold: Option<Instant>,
    keepalive: Option<Instant>,
    idle_hold: Option<Instant>,
    send_hold: Option<Instant>,
}

impl Timers {
    fn slot(&mut self, t: Timer) -> &mut Option<Instant> {
        match t {
            Timer::ConnectRetry => &mut self.connect_retry,
            Timer::Hold => &mut self.hold,
            Timer::Keepalive => &mut self.keepalive,
            Timer::IdleHold => &mut self.idle_hold,
            Timer::SendHold => &mut self.send_hold,
        }
    }

    fn all(&self) -> [(Timer, Option<Instant>); 5] {
        [
            (Timer::SendHold, self.send_hold),
            (Timer::Hold, self.hold),
            (Timer::Keepalive, self.keepalive),
            (Timer::ConnectRetry, self.connect_retry),
            (Timer::IdleHold, self.idle_hold),
        ]
    }
}

/// The FSM of one connection to a peer (see the module docs of [`crate::fsm`]).
#[derive(Debug, Clone)]
pub struct Session {
    cfg: Config,
    pub(crate) role: Role,
    state: State,
    conn: Option<(ConnId, Direction)>,
    /// An outgoing connection attempt is in progress (only in Connect).
    connecting: bool,
    timers: Timers,
    /// Started and not stopped: failures lead to a damped automatic restart.
    admin_up: bool,
    /// Started with passive TCP establishment.
    passive: bool,
    connect_retry_counter: u32,
    /// DampPeerOscillations: the IdleHoldTime to use at the next failure.
    idle_hold_next: Duration,
    established_at: Option<Instant>,
    established_count: u64,
    negotiated: Option<Negotiated>,
    /// The peer's BGP identifier from an OPEN on this connection.
    remote_id: Option<std::net::Ipv4Addr>,
    /// Our KEEPALIVE in answer to the peer's OPEN waits for the collision wrapper's
    /// [`Session::release`] (see `collision.rs`: a late connection the identifiers favour,
    /// held while the peer decides about the Established one).
    keepalive_held: bool,
    /// The peer's KEEPALIVE arrived while ours was held: released, the session is
    /// Established at once.
    peer_keepalive_seen: bool,
    /// Held in OpenConfirm, after our KEEPALIVE went out: `release` sends none.
    keepalive_sent: bool,
    rng: u64,
}

impl Session {
    /// A session in Idle; nothing happens before a start event.
    pub fn new(cfg: Config) -> Self {
        let rng = cfg.jitter_seed | 1;
        let idle_hold_next = cfg.idle_hold;
        let passive = cfg.passive;
        Session {
            cfg,
            role: Role::Primary,
            state: State::Idle,
            conn: None,
            connecting: false,
            timers: Timers::default(),
            admin_up: false,
            passive,
            connect_retry_counter: 0,
            idle_hold_next,
            established_at: None,
            established_count: 0,
            negotiated: None,
            remote_id: None,
            keepalive_held: false,
            peer_keepalive_seen: false,
            keepalive_sent: false,
            rng,
        }
    }

    /// A second session for an inbound connection that collides with an existing one.
    pub(crate) fn new_secondary(cfg: Config) -> Self {
        let mut s = Session::new(cfg);
        s.role = Role::Secondary;
        s.admin_up = true;
        s.state = State::Active;
        s
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The current connection and who opened it.
    pub fn connection(&self) -> Option<(ConnId, Direction)> {
        self.conn
    }

    /// What the OPENs agreed on (OpenConfirm and Established).
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// The peer's BGP identifier, once its OPEN was accepted on this connection.
    pub fn remote_id(&self) -> Option<std::net::Ipv4Addr> {
        self.remote_id
    }

    /// Our KEEPALIVE is held (OpenSent: it will be once the OPEN arrives; OpenConfirm: the
    /// peer's OPEN was accepted and nothing answered it yet).
    pub fn keepalive_held(&self) -> bool {
        self.keepalive_held
    }

    /// Holds the session short of Established: in OpenSent, our KEEPALIVE is not sent
    /// when the peer's OPEN arrives (the session goes to OpenConfirm without answering);
    /// in OpenConfirm (ours already sent), the peer's KEEPALIVE no longer completes it.
    /// Either way a KEEPALIVE from the peer is remembered until [`Session::release`].
    ///
    /// Deviation (RFC 4271 §8.2.2 OpenSent, Event 19: "sends a KEEPALIVE message", and
    /// OpenConfirm, Event 26): only for a connection that §6.8 would close, held while the
    /// peer decides; see `collision.rs`.
    pub(crate) fn hold_keepalive(&mut self) {
        match self.state {
            State::OpenSent => self.keepalive_held = true,
            State::OpenConfirm => {
                self.keepalive_held = true;
                self.keepalive_sent = true;
            }
            _ => {}
        }
    }

    /// Ends a [`Session::hold_keepalive`]: sends the KEEPALIVE that answers the peer's
    /// OPEN and starts the keepalive timer; Established at once when the peer's KEEPALIVE
    /// already arrived.
    pub(crate) fn release(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if !std::mem::take(&mut self.keepalive_held) || self.state != State::OpenConfirm {
            return out;
        }
        if !std::mem::take(&mut self.keepalive_sent) {
            self.send(now, Message::Keepalive, &mut out);
            self.start_keepalive_timer(now);
        }
        if std::mem::take(&mut self.peer_keepalive_seen) {
            self.restart_hold_timer(now);
            self.transition(now, State::Established, None, &mut out);
        }
        out
    }

    /// RFC 4271 §8 ConnectRetryCounter.
    pub fn connect_retry_counter(&self) -> u32 {
        self.connect_retry_counter
    }

    /// Times the session reached Established.
    pub fn established_count(&self) -> u64 {
        self.established_count
    }

    /// Deadline of one timer, for tests and status.
    pub fn timer(&self, t: Timer) -> Option<Instant> {
        self.timers.clone().slot(t).as_ref().copied()
    }

    /// The earliest timer deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.all().iter().filter_map(|(_, d)| *d).min()
    }

    /// Takes over the peer-wide state (damping, counters) of a session this one replaces
    /// after a collision.
    pub(crate) fn adopt(&mut self, old: &Session) {
        self.role = Role::Primary;
        self.passive = old.passive;
        self.admin_up = old.admin_up;
        self.connect_retry_counter = old.connect_retry_counter;
        self.idle_hold_next = old.idle_hold_next;
        self.established_count = old.established_count;
        self.rng = old.rng;
    }

    /// Feeds one event.
    pub fn handle(&mut self, now: Instant, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        // Events for a connection this session does not own are stale (a closed
        // connection's last reads): ignore them, except the ones that bring a connection.
        if let Some(c) = event.conn() {
            // A failed connect attempt has no connection yet.
            let brings = matches!(
                event,
                Event::TcpCrAcked(_) | Event::TcpConnectionConfirmed(_)
            ) || (matches!(event, Event::TcpConnectionFails(_))
                && self.conn.is_none()
                && self.connecting);
            if !brings && self.conn.map(|(id, _)| id) != Some(c) {
                return out;
            }
        }
        match event {
            Event::ManualStart => self.on_start(now, true, self.cfg.passive, &mut out),
            Event::ManualStartPassive => self.on_start(now, true, true, &mut out),
            Event::AutomaticStart => self.on_start(now, false, self.passive, &mut out),
            Event::ManualStop(n) => self.on_stop(now, Some(n), IdleKind::Stopped, &mut out),
            Event::ManualStopForRestart => self.on_stop(now, None, IdleKind::Stopped, &mut out),
            Event::AutomaticStop {
                notification,
                restart_after,
            } => self.on_stop(
                now,
                Some(notification),
                IdleKind::AutoStop(restart_after),
                &mut out,
            ),
            Event::TcpCrAcked(c) => self.on_tcp_up(now, c, Direction::Outbound, &mut out),
            Event::TcpConnectionConfirmed(c) => {
                self.on_tcp_up(now, c, Direction::Inbound, &mut out)
            }
            Event::TcpConnectionFails(_) => self.on_tcp_fails(now, &mut out),
            Event::Open(_, open) => self.on_open(now, open, &mut out),
            Event::Keepalive(_) => self.on_keepalive(now, &mut out),
            Event::Update(_) => self.on_update(now, "UpdateMsg", &mut out),
            Event::RouteRefresh(_) => self.on_update(now, "RouteRefresh", &mut out),
            Event::Notification(_, n) => self.on_notification(now, n, &mut out),
            Event::MessageError(_, n) => self.on_message_error(now, n, &mut out),
            Event::OpenCollisionDump(_) => self.on_collision_dump(now, &mut out),
            Event::SendQueued(_) => self.arm_send_hold(now),
            Event::SendProgress { drained, .. } => self.on_send_progress(now, drained),
        }
        out
    }

    /// Fires every timer whose deadline is at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        // Each firing clears or moves its own deadline; six timers bound the loop.
        for _ in 0..6 {
            let due = self
                .timers
                .all()
                .into_iter()
                .find(|(_, d)| d.is_some_and(|d| d <= now));
            let Some((timer, _)) = due else { break };
            *self.timers.slot(timer) = None;
            match timer {
                Timer::ConnectRetry => self.on_connect_retry_expires(now, &mut out),
                Timer::Hold => self.on_hold_expires(now, &mut out),
                Timer::Keepalive => self.on_keepalive_expires(now, &mut out),
                Timer::IdleHold => self.on_idle_hold_expires(now, &mut out),
                Timer::SendHold => self.on_send_hold_expires(now, &mut out),
            }
        }
        out
    }

    // ----- helpers --------------------------------------------------------------------

    /// RFC 4271 §10 jitter: a factor in [0.75, 1.0], from a deterministic xorshift.
    fn jitter(&mut self, d: Duration) -> Duration {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        let permille = 750 + u32::try_from(x % 251).unwrap_or(0);
        d * permille / 1000
    }

    fn set(&mut self, t: Timer, at: Option<Instant>) {
        *self.timers.slot(t) = at;
    }

    fn send(&mut self, now: Instant, message: Message, out: &mut Vec<Action>) {
        if let Some((conn, _)) = self.conn {
            out.push(Action::Send { conn, message });
            self.arm_send_hold(now);
        }
    }

    fn send_open(&mut self, now: Instant, out: &mut Vec<Action>) {
        let r_bit = self
            .cfg
            .graceful_restart
            .is_some_and(|gr| gr.restarted && self.established_count == 0);
        let open = build_open(&self.cfg, r_bit);
        self.send(now, Message::Open(open), out);
    }

    fn send_hold_time(&self) -> Duration {
        if let Some(d) = self.cfg.send_hold {
            return d;
        }
        let hold = self
            .negotiated
            .as_ref()
            .map_or(self.cfg.hold_time, |n| n.hold_time);
        MIN_SEND_HOLD_TIME.max(hold * 2)
    }

    fn arm_send_hold(&mut self, now: Instant) {
        if self.conn.is_some() && self.timers.send_hold.is_none() {
            self.timers.send_hold = Some(now + self.send_hold_time());
        }
    }

    fn on_send_progress(&mut self, now: Instant, drained: bool) {
        self.timers.send_hold = if drained {
            None
        } else {
            Some(now + self.send_hold_time())
        };
    }

    fn start_keepalive_timer(&mut self, now: Instant) {
        let ka = self.negotiated.as_ref().map(|n| n.keepalive);
        match ka {
            Some(ka) if !ka.is_zero() => {
                // RFC 4271 §4.4: KEEPALIVEs MUST NOT be sent more often than one per
                // second. A hold time of 3 s (ours, or a router's `timers 1 3`) makes the
                // jittered third 750–1000 ms, so the floor applies after the jitter.
                let d = self.jitter(ka).max(MIN_KEEPALIVE_INTERVAL);
                self.set(Timer::Keepalive, Some(now + d));
            }
            _ => self.set(Timer::Keepalive, None),
        }
    }

    fn restart_hold_timer(&mut self, now: Instant) {
        let hold = self.negotiated.as_ref().map(|n| n.hold_time);
        match hold {
            Some(h) if !h.is_zero() => self.set(Timer::Hold, Some(now + h)),
            _ => self.set(Timer::Hold, None),
        }
    }

    fn start_connect_retry(&mut self, now: Instant) {
        let d = self.jitter(self.cfg.connect_retry);
        self.set(Timer::ConnectRetry, Some(now + d));
    }

    /// Closes the connection after sending `notification` (if any) and enters Idle.
    fn close_to_idle(
        &mut self,
        now: Instant,
        notification: Option<NotificationMessage>,
        reason: DownReason,
        kind: IdleKind,
        out: &mut Vec<Action>,
    ) {
        if let Some(n) = notification {
            self.send(now, Message::Notification(n), out);
        }
        if let Some((conn, _)) = self.conn {
            out.push(Action::Close { conn });
        }
        self.enter_idle(now, reason, kind, out);
    }

    fn enter_idle(
        &mut self,
        now: Instant,
        reason: DownReason,
        kind: IdleKind,
        out: &mut Vec<Action>,
    ) {
        match kind {
            IdleKind::Stopped => {
                self.admin_up = false;
                self.connect_retry_counter = 0;
            }
            IdleKind::Failure => {
                self.connect_retry_counter = self.connect_retry_counter.saturating_add(1);
            }
            IdleKind::VersionError => {}
            IdleKind::AutoStop(restart) => {
                self.connect_retry_counter = self.connect_retry_counter.saturating_add(1);
                if restart.is_none() {
                    self.admin_up = false;
                }
            }
        }
        self.transition(now, State::Idle, Some(reason), out);
        if self.role == Role::Primary && self.admin_up {
            let delay = match kind {
                IdleKind::AutoStop(Some(d)) => d,
                _ => self.damped_idle_hold(now, kind == IdleKind::Failure),
            };
            self.set(Timer::IdleHold, Some(now + delay));
        }
        self.established_at = None;
    }

    /// DampPeerOscillations (RFC 4271 §8.1.1): the IdleHoldTime doubles on each failure up
    /// to `idle_hold_max`, and returns to `idle_hold` after a stable Established period.
    fn damped_idle_hold(&mut self, now: Instant, count: bool) -> Duration {
        if let Some(at) = self.established_at {
            if now.saturating_duration_since(at) >= self.cfg.idle_hold_stable {
                self.idle_hold_next = self.cfg.idle_hold;
            }
        }
        let base = self.idle_hold_next;
        if count {
            self.idle_hold_next = (base * 2).min(self.cfg.idle_hold_max);
        }
        self.jitter(base)
    }

    /// Every state change: exit work of the old state, entry work of the new one.
    fn transition(
        &mut self,
        now: Instant,
        to: State,
        reason: Option<DownReason>,
        out: &mut Vec<Action>,
    ) {
        let from = self.state;
        if from == to {
            return;
        }
        // Exit work.
        if from == State::Connect && self.connecting {
            self.connecting = false;
            out.push(Action::CancelConnect);
        }
        if from == State::Established {
            out.push(Action::SessionDown(
                reason.clone().unwrap_or(DownReason::Stopped),
            ));
        }
        self.state = to;
        out.push(Action::StateChanged {
            from,
            to,
            reason,
            conn: self.conn.map(|(c, _)| c),
        });
        // Entry work.
        match to {
            State::Idle => {
                self.timers = Timers::default();
                self.conn = None;
                self.negotiated = None;
                self.remote_id = None;
                self.keepalive_held = false;
                self.peer_keepalive_seen = false;
                self.keepalive_sent = false;
            }
            State::Connect | State::Active | State::OpenSent => {}
            State::OpenConfirm => {}
            State::Established => {
                self.established_at = Some(now);
                self.established_count = self.established_count.saturating_add(1);
                if let (Some((conn, _)), Some(n)) = (self.conn, self.negotiated.clone()) {
                    out.push(Action::SessionUp {
                        conn,
                        negotiated: Box::new(n),
                    });
                }
            }
        }
    }

    /// An event the current state does not expect (RFC 4271 §8.2.2 "any other event"):
    /// NOTIFICATION Finite State Machine Error with the RFC 6608 subcode once an OPEN was
    /// sent, a silent close before.
    fn fsm_error(&mut self, now: Instant, event: &'static str, out: &mut Vec<Action>) {
        let subcode = match self.state {
            State::OpenSent => fsm_subcode::UNEXPECTED_IN_OPENSENT,
            State::OpenConfirm => fsm_subcode::UNEXPECTED_IN_OPENCONFIRM,
            State::Established => fsm_subcode::UNEXPECTED_IN_ESTABLISHED,
            State::Idle | State::Connect | State::Active => fsm_subcode::UNSPECIFIED,
        };
        match self.state {
            State::Idle => {}
            State::Connect | State::Active => self.close_to_idle(
                now,
                None,
                DownReason::UnexpectedEvent(event),
                IdleKind::Failure,
                out,
            ),
            State::OpenSent | State::OpenConfirm | State::Established => {
                let n = NotificationMessage {
                    code: ErrorCode::FiniteStateMachine,
                    subcode,
                    data: Vec::new(),
                };
                self.close_to_idle(
                    now,
                    Some(n.clone()),
                    DownReason::NotificationSent(n),
                    IdleKind::Failure,
                    out,
                );
            }
        }
    }

    // ----- events ---------------------------------------------------------------------

    fn on_start(&mut self, now: Instant, manual: bool, passive: bool, out: &mut Vec<Action>) {
        if self.state != State::Idle {
            return;
        }
        if manual {
            self.connect_retry_counter = 0;
            self.idle_hold_next = self.cfg.idle_hold;
            self.set(Timer::IdleHold, None);
        } else if self.timers.idle_hold.is_some() {
            // Events 6/7: damped, the IdleHoldTimer decides when to start.
            return;
        }
        self.admin_up = true;
        self.passive = passive;
        self.begin(now, out);
    }

    /// The common part of every start: ConnectRetryTimer, then Connect or Active.
    fn begin(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.start_connect_retry(now);
        if self.passive {
            self.transition(now, State::Active, None, out);
        } else {
            self.connecting = true;
            out.push(Action::Connect);
            self.transition(now, State::Connect, None, out);
        }
    }

    fn on_idle_hold_expires(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.state == State::Idle && self.admin_up {
            self.begin(now, out);
        }
    }

    fn on_stop(
        &mut self,
        now: Instant,
        n: Option<NotificationMessage>,
        kind: IdleKind,
        out: &mut Vec<Action>,
    ) {
        match self.state {
            State::Idle => {
                if kind == IdleKind::Stopped {
                    self.admin_up = false;
                    self.set(Timer::IdleHold, None);
                }
            }
            State::Connect | State::Active => {
                self.close_to_idle(now, None, DownReason::Stopped, kind, out);
            }
            State::OpenSent | State::OpenConfirm | State::Established => {
                let reason = n
                    .clone()
                    .map_or(DownReason::Stopped, DownReason::NotificationSent);
                self.close_to_idle(now, n, reason, kind, out);
            }
        }
    }

    fn on_tcp_up(&mut self, now: Instant, conn: ConnId, dir: Direction, out: &mut Vec<Action>) {
        let accept = match self.state {
            State::Connect => true,
            // Passive listening; our own connect only succeeds from Connect.
            State::Active => dir == Direction::Inbound,
            _ => false,
        };
        if !accept {
            // Idle refuses connections; later states already have one (the collision
            // wrapper routes a second one elsewhere).
            out.push(Action::Close { conn });
            return;
        }
        if self.state == State::Connect && dir == Direction::Inbound && self.connecting {
            self.connecting = false;
            out.push(Action::CancelConnect);
        }
        self.connecting = false;
        self.conn = Some((conn, dir));
        self.set(Timer::ConnectRetry, None);
        self.send_open(now, out);
        self.set(Timer::Hold, Some(now + self.cfg.open_hold));
        self.transition(now, State::OpenSent, None, out);
    }

    fn on_connect_retry_expires(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.state {
            State::Connect => {
                // Give up on the attempt and start another one.
                if let Some((conn, _)) = self.conn.take() {
                    out.push(Action::Close { conn });
                }
                self.connecting = true;
                out.push(Action::Connect);
                self.start_connect_retry(now);
            }
            State::Active => {
                if self.passive || self.cfg.passive {
                    // Deviation (RFC 4271 §8.2.2 Active, Event 9): a passive session never
                    // connects; it keeps listening.
                    self.start_connect_retry(now);
                } else {
                    self.start_connect_retry(now);
                    self.connecting = true;
                    out.push(Action::Connect);
                    self.transition(now, State::Connect, None, out);
                }
            }
            _ => self.fsm_error(now, "ConnectRetryTimer_Expires", out),
        }
    }

    fn on_tcp_fails(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.state {
            State::Idle => {}
            _ => {
                self.connecting = false;
                self.enter_idle(now, DownReason::TcpFailed, IdleKind::Failure, out);
            }
        }
    }

    fn on_open(&mut self, now: Instant, open: anyguard_proto::OpenMessage, out: &mut Vec<Action>) {
        if self.state != State::OpenSent {
            return self.fsm_error(now, "BGPOpen", out);
        }
        match check_open(&self.cfg, &open) {
            Err(n) => {
                // Event 22 BGPOpenMsgErr.
                self.close_to_idle(
                    now,
                    Some(n.clone()),
                    DownReason::NotificationSent(n),
                    IdleKind::Failure,
                    out,
                );
            }
            Ok(neg) => {
                self.remote_id = Some(neg.remote_id);
                self.negotiated = Some(neg);
                self.set(Timer::ConnectRetry, None);
                if !self.keepalive_held {
                    self.send(now, Message::Keepalive, out);
                    self.start_keepalive_timer(now);
                }
                self.restart_hold_timer(now);
                if self.timers.hold.is_none() {
                    // Deviation: with a negotiated hold time of 0 (RFC 4271 §4.2) no hold
                    // timer runs, and OpenConfirm would wait for the KEEPALIVE forever. The
                    // OpenSent bound stays until it arrives; Established stops it again.
                    self.set(Timer::Hold, Some(now + self.cfg.open_hold));
                }
                self.transition(now, State::OpenConfirm, None, out);
            }
        }
    }

    fn on_keepalive(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.state {
            // Held (`hold_keepalive`): the peer answered our OPEN, we have not answered
            // its one yet; Established waits for `release`.
            State::OpenConfirm if self.keepalive_held => {
                self.peer_keepalive_seen = true;
                self.restart_hold_timer(now);
            }
            State::OpenConfirm => {
                self.restart_hold_timer(now);
                self.transition(now, State::Established, None, out);
            }
            State::Established => self.restart_hold_timer(now),
            _ => self.fsm_error(now, "KeepAliveMsg", out),
        }
    }

    fn on_update(&mut self, now: Instant, name: &'static str, out: &mut Vec<Action>) {
        match self.state {
            State::Established => self.restart_hold_timer(now),
            _ => self.fsm_error(now, name, out),
        }
    }

    fn on_notification(&mut self, now: Instant, n: NotificationMessage, out: &mut Vec<Action>) {
        // Event 24 NotifMsgVerErr: the peer does not speak our version; not a failure
        // to damp (RFC 4271 §8.2.2 OpenSent/OpenConfirm).
        let version_error = n.code == ErrorCode::OpenMessage
            && n.subcode == open_subcode::UNSUPPORTED_VERSION_NUMBER
            && matches!(self.state, State::OpenSent | State::OpenConfirm);
        let kind = if version_error {
            IdleKind::VersionError
        } else {
            IdleKind::Failure
        };
        match self.state {
            State::Idle => {}
            // Deviation (RFC 4271 §8.2.2 OpenSent, Event 25): no FSM-error NOTIFICATION in
            // answer to a NOTIFICATION; the peer is already closing.
            _ => self.close_to_idle(now, None, DownReason::NotificationReceived(n), kind, out),
        }
    }

    fn on_message_error(&mut self, now: Instant, n: NotificationMessage, out: &mut Vec<Action>) {
        match self.state {
            State::Idle => {}
            _ => self.close_to_idle(
                now,
                Some(n.clone()),
                DownReason::NotificationSent(n),
                IdleKind::Failure,
                out,
            ),
        }
    }

    fn on_collision_dump(&mut self, now: Instant, out: &mut Vec<Action>) {
        let n = NotificationMessage {
            code: ErrorCode::Cease,
            subcode: cease_subcode::CONNECTION_COLLISION_RESOLUTION,
            data: Vec::new(),
        };
        match self.state {
            State::Idle => {}
            State::Connect | State::Active => {
                self.close_to_idle(now, None, DownReason::Stopped, IdleKind::Failure, out)
            }
            _ => self.close_to_idle(
                now,
                Some(n.clone()),
                DownReason::NotificationSent(n),
                IdleKind::Failure,
                out,
            ),
        }
    }

    fn on_hold_expires(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.state {
            State::OpenSent | State::OpenConfirm | State::Established => {
                let n = NotificationMessage {
                    code: ErrorCode::HoldTimerExpired,
                    subcode: 0,
                    data: Vec::new(),
                };
                self.close_to_idle(
                    now,
                    Some(n.clone()),
                    DownReason::NotificationSent(n),
                    IdleKind::Failure,
                    out,
                );
            }
            _ => self.fsm_error(now, "HoldTimer_Expires", out),
        }
    }

    fn on_keepalive_expires(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.state {
            State::OpenConfirm | State::Established => {
                self.send(now, Message::Keepalive, out);
                self.start_keepalive_timer(now);
            }
            _ => self.fsm_error(now, "KeepaliveTimer_Expires", out),
        }
    }

    fn on_send_hold_expires(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.conn.is_none() {
            return;
        }
        // RFC 9687 §4: the peer has not read anything for SendHoldTime. The NOTIFICATION
        // will probably not get through; it is sent for the record.
        let n = NotificationMessage {
            code: ErrorCode::SendHoldTimerExpired,
            subcode: 0,
            data: Vec::new(),
        };
        self.close_to_idle(
            now,
            Some(n.clone()),
            DownReason::NotificationSent(n),
            IdleKind::Failure,
            out,
        );
    }
}

#[cfg(test)]
impl Session {
    /// The IdleHoldTime the next failure will use (damping): the FSM's table tests read it.
    pub(crate) fn idle_hold_time(&self) -> Duration {
        self.idle_hold_next
    }
}
