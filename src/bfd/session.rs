//! One BFD session as a sans-IO state machine (RFC 5880 §6.2, §6.8.1–§6.8.7): the states
//! AdminDown/Down/Init/Up and the three-way handshake, discriminators, the detection time,
//! slow transmission (1 s) while not Up, the Poll Sequence when the intervals change, jitter
//! and diagnostic codes. Time comes in as `now`; timers are deadlines here and the driver
//! sleeps until [`Session::next_deadline`].
//!
//! Asynchronous mode only, active role. Not implemented: the Echo function, authentication
//! (packets with the A bit are discarded, RFC 5880 §6.8.6), and asking for Demand mode (a
//! peer that asks for it is honoured: periodic transmission stops, §6.8.7).

use std::time::{Duration, Instant};

use anyguard_proto::bfd::{ControlPacket, Diag, State};

/// RFC 5880 §6.8.3: while the session is not Up, bfd.DesiredMinTxInterval is at least 1 s.
pub const SLOW_TX: Duration = Duration::from_secs(1);
/// RFC 5880 §6.8.1: bfd.RemoteMinRxInterval before anything is received.
const INITIAL_REMOTE_MIN_RX: Duration = Duration::from_micros(1);

/// The intervals we ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// bfd.DesiredMinTxInterval once Up.
    pub desired_min_tx: Duration,
    /// bfd.RequiredMinRxInterval.
    pub required_min_rx: Duration,
    /// bfd.DetectMult, non-zero.
    pub detect_mult: u8,
}

/// What happens to a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A Control packet that passed the codec's checks and was demultiplexed to this
    /// session (RFC 5880 §6.8.6).
    Packet(ControlPacket),
    /// The operator (or the daemon stopping) takes the session down (§6.8.16).
    AdminDown,
    /// Leave AdminDown.
    AdminUp,
    /// New intervals (§6.8.3: a Poll Sequence while Up).
    SetConfig(Config),
}

/// Why a packet was discarded by the session (the codec's reasons are `BfdDecodeError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Discard {
    /// A bit set and no authentication in use (RFC 5880 §6.8.6).
    #[error("authentication present but not in use")]
    AuthenticationNotInUse,
    /// Your Discriminator names another session.
    #[error("your discriminator {0} is not ours")]
    WrongDiscriminator(u32),
    /// The session is AdminDown: received packets are discarded (RFC 5880 §6.8.6).
    #[error("session is admin down")]
    AdminDown,
}

/// A change of `bfd.SessionState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// Previous state.
    pub from: State,
    /// New state.
    pub to: State,
    /// bfd.LocalDiag after the change.
    pub diag: Diag,
    /// The peer signalled AdminDown: RFC 5882 §3.2 says not to treat it as a failure.
    pub remote_admin_down: bool,
}

impl Transition {
    /// An Up session failed: the detection time expired or the peer said Down. This is
    /// what takes the protected BGP session down (RFC 5882 §4.1); a peer's AdminDown and
    /// our own AdminDown are not failures.
    pub fn is_failure(&self) -> bool {
        self.from == State::Up && self.to == State::Down && !self.remote_admin_down
    }
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Transmit this packet to the peer.
    Send(ControlPacket),
    /// The session changed state.
    StateChanged(Transition),
    /// The received packet was discarded.
    Discarded(Discard),
}

/// A read-only view for status and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// bfd.SessionState.
    pub state: State,
    /// bfd.RemoteSessionState.
    pub remote_state: State,
    /// bfd.LocalDiscr.
    pub local_discriminator: u32,
    /// bfd.RemoteDiscr (0 until the peer is heard).
    pub remote_discriminator: u32,
    /// bfd.LocalDiag.
    pub local_diag: Diag,
    /// The Diag of the last packet received.
    pub remote_diag: Diag,
    /// The interval between our packets before jitter (§6.8.7).
    pub tx_interval: Duration,
    /// The detection time (§6.8.4); `None` until the peer is heard.
    pub detection_time: Option<Duration>,
    /// A Poll Sequence is in progress.
    pub polling: bool,
}

/// One BFD session.
#[derive(Debug, Clone)]
pub struct Session {
    cfg: Config,
    state: State,
    remote_state: State,
    local_disc: u32,
    remote_disc: u32,
    local_diag: Diag,
    remote_diag: Diag,
    /// bfd.DesiredMinTxInterval as advertised.
    desired_min_tx: Duration,
    /// The desired TX interval our transmissions follow: lags `desired_min_tx` while an
    /// increase waits for its Poll Sequence (§6.8.3).
    tx_in_use: Duration,
    /// bfd.RequiredMinRxInterval as advertised.
    required_min_rx: Duration,
    /// The RX interval the detection time uses: lags a decrease until the Final (§6.8.3).
    rx_in_use: Duration,
    remote_min_rx: Duration,
    remote_desired_min_tx: Duration,
    remote_detect_mult: u8,
    remote_demand: bool,
    polling: bool,
    next_tx: Option<Instant>,
    detect_at: Option<Instant>,
    /// While AdminDown: until when AdminDown must still be sent (RFC 5880 §6.8.16).
    admin_down_until: Option<Instant>,
    rng: u64,
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

impl Session {
    /// A session in Down with discriminator `local_disc` (non-zero, unique in the driver);
    /// the first packet goes out at `now`. `seed` drives the jitter.
    pub fn new(cfg: Config, local_disc: u32, seed: u64, now: Instant) -> Session {
        let desired = cfg.desired_min_tx.max(SLOW_TX);
        Session {
            cfg,
            state: State::Down,
            remote_state: State::Down,
            local_disc,
            remote_disc: 0,
            local_diag: Diag::NoDiagnostic,
            remote_diag: Diag::NoDiagnostic,
            desired_min_tx: desired,
            tx_in_use: desired,
            required_min_rx: cfg.required_min_rx,
            rx_in_use: cfg.required_min_rx,
            remote_min_rx: INITIAL_REMOTE_MIN_RX,
            remote_desired_min_tx: Duration::ZERO,
            remote_detect_mult: 0,
            remote_demand: false,
            polling: false,
            next_tx: Some(now),
            detect_at: None,
            admin_down_until: None,
            // xorshift needs a non-zero state.
            rng: seed | 1,
        }
    }

    /// bfd.SessionState.
    pub fn state(&self) -> State {
        self.state
    }

    /// bfd.LocalDiscr.
    pub fn local_discriminator(&self) -> u32 {
        self.local_disc
    }

    /// For status and metrics.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            state: self.state,
            remote_state: self.remote_state,
            local_discriminator: self.local_disc,
            remote_discriminator: self.remote_disc,
            local_diag: self.local_diag,
            remote_diag: self.remote_diag,
            tx_interval: self.tx_interval(),
            detection_time: (self.remote_detect_mult > 0).then(|| self.detection_time()),
            polling: self.polling,
        }
    }

    /// While AdminDown: the instant after which the peer has been told for long enough.
    /// RFC 5880 §6.8.16: Control packets SHOULD go on for at least a Detection Time after
    /// the transition to AdminDown, so that a lost packet does not leave the peer to find
    /// a detection timeout (a failure) instead of AdminDown (not one, RFC 5882 §3.2). The
    /// Detection Time that matters is the peer's: our Detect Mult times the interval we
    /// were sending at (§6.8.4). A removed session is freed after it; `None` when not
    /// AdminDown.
    pub fn admin_down_until(&self) -> Option<Instant> {
        self.admin_down_until
    }

    /// The earliest timer: the next periodic packet or the detection time.
    pub fn next_deadline(&self) -> Option<Instant> {
        match (self.next_tx, self.detect_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Handles one event.
    pub fn handle(&mut self, now: Instant, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Packet(p) => self.on_packet(now, &p, &mut out),
            Event::AdminDown => self.on_admin_down(now, &mut out),
            Event::AdminUp => self.on_admin_up(now, &mut out),
            Event::SetConfig(cfg) => self.on_set_config(now, cfg, &mut out),
        }
        out
    }

    /// Fires the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if self.detect_at.is_some_and(|d| d <= now) {
            self.on_detection_timeout(now, &mut out);
        }
        if self.next_tx.is_some_and(|d| d <= now) {
            self.next_tx = None;
            if self.periodic_allowed() {
                out.push(Action::Send(self.packet(self.polling, false)));
            }
            self.schedule_tx(now);
        }
        out
    }

    // ----- events -----------------------------------------------------------------------

    /// RFC 5880 §6.8.6, after the checks the codec made.
    fn on_packet(&mut self, now: Instant, p: &ControlPacket, out: &mut Vec<Action>) {
        if p.your_discriminator != 0 && p.your_discriminator != self.local_disc {
            out.push(Action::Discarded(Discard::WrongDiscriminator(
                p.your_discriminator,
            )));
            return;
        }
        if p.auth.is_some() {
            out.push(Action::Discarded(Discard::AuthenticationNotInUse));
            return;
        }
        self.remote_disc = p.my_discriminator;
        self.remote_state = p.state;
        self.remote_demand = p.demand;
        self.remote_diag = p.diag;
        self.remote_detect_mult = p.detect_mult;
        self.remote_desired_min_tx = Duration::from_micros(u64::from(p.desired_min_tx_us));
        let old_tx_interval = self.tx_interval();
        self.remote_min_rx = Duration::from_micros(u64::from(p.required_min_rx_us));
        if p.final_ && self.polling {
            // §6.8.3: the Poll Sequence is over; the new intervals apply in full.
            self.polling = false;
            self.tx_in_use = self.desired_min_tx;
            self.rx_in_use = self.required_min_rx;
        }
        if self.state == State::AdminDown {
            out.push(Action::Discarded(Discard::AdminDown));
            return;
        }
        // §6.8.4: every accepted packet restarts the detection timer.
        self.detect_at = Some(now + self.detection_time());
        if p.state == State::AdminDown {
            if self.state != State::Down {
                self.transition(
                    now,
                    State::Down,
                    Diag::NeighborSignaledSessionDown,
                    true,
                    out,
                );
            }
        } else {
            match (self.state, p.state) {
                (State::Down, State::Down) => {
                    self.transition(now, State::Init, Diag::NoDiagnostic, false, out)
                }
                (State::Down, State::Init) | (State::Init, State::Init | State::Up) => {
                    self.transition(now, State::Up, Diag::NoDiagnostic, false, out)
                }
                (State::Up, State::Down) => self.transition(
                    now,
                    State::Down,
                    Diag::NeighborSignaledSessionDown,
                    false,
                    out,
                ),
                _ => {}
            }
        }
        // §6.8.7: a faster peer may let us send sooner than the packet scheduled.
        if self.tx_interval() < old_tx_interval {
            self.reschedule_sooner(now);
        }
        if p.poll {
            // §6.8.7: answer a Poll at once with Final, outside the periodic schedule.
            out.push(Action::Send(self.packet(false, true)));
        }
    }

    /// §6.8.4: no packet within the detection time.
    fn on_detection_timeout(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.detect_at = None;
        // §6.8.1: bfd.RemoteDiscr returns to zero when the detection time expires (before
        // the Down packet below goes out).
        self.remote_disc = 0;
        self.remote_state = State::Down;
        self.remote_detect_mult = 0;
        if matches!(self.state, State::Init | State::Up) {
            let diag = Diag::ControlDetectionTimeExpired;
            self.transition(now, State::Down, diag, false, out);
        }
    }

    /// §6.8.16.
    fn on_admin_down(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.state != State::AdminDown {
            // Measured before the transition slows us to 1 s (§6.8.3): the peer's timer
            // still runs on the interval it last heard.
            let peer_detection = self.tx_interval() * u32::from(self.cfg.detect_mult);
            self.admin_down_until = Some(now + peer_detection);
            self.transition(
                now,
                State::AdminDown,
                Diag::AdministrativelyDown,
                false,
                out,
            );
        }
    }

    fn on_admin_up(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.state == State::AdminDown {
            self.admin_down_until = None;
            self.transition(now, State::Down, Diag::NoDiagnostic, false, out);
        }
    }

    /// §6.8.3: a change of either interval starts a Poll Sequence while Up. A TX increase
    /// and an RX decrease take effect only when it ends. The first Poll goes out at once.
    fn on_set_config(&mut self, now: Instant, cfg: Config, out: &mut Vec<Action>) {
        self.cfg = cfg;
        let tx = if self.state == State::Up {
            cfg.desired_min_tx
        } else {
            cfg.desired_min_tx.max(SLOW_TX)
        };
        let was_polling = self.polling;
        self.change_intervals(now, tx, cfg.required_min_rx);
        if self.polling && !was_polling {
            out.push(Action::Send(self.packet(true, false)));
        }
    }

    // ----- helpers ----------------------------------------------------------------------

    fn change_intervals(&mut self, now: Instant, tx: Duration, rx: Duration) {
        if tx == self.desired_min_tx && rx == self.required_min_rx {
            return;
        }
        let faster = tx < self.desired_min_tx;
        let old_interval = self.tx_interval();
        if self.state == State::Up {
            if faster {
                self.tx_in_use = tx;
            }
            if rx > self.required_min_rx {
                self.rx_in_use = rx;
            }
            self.polling = true;
        } else {
            self.tx_in_use = tx;
            self.rx_in_use = rx;
            self.polling = false;
        }
        self.desired_min_tx = tx;
        self.required_min_rx = rx;
        if self.tx_interval() < old_interval {
            self.reschedule_sooner(now);
        }
    }

    /// The one place where bfd.SessionState changes.
    fn transition(
        &mut self,
        now: Instant,
        to: State,
        diag: Diag,
        remote_admin_down: bool,
        out: &mut Vec<Action>,
    ) {
        let from = self.state;
        self.state = to;
        self.local_diag = diag;
        if to == State::Up {
            // §6.8.3: Up ends the 1 s floor: switch to the configured interval (a Poll
            // Sequence tells the peer).
            self.change_intervals(now, self.cfg.desired_min_tx, self.cfg.required_min_rx);
        } else {
            // §6.8.3: not Up: at least 1 s; no Poll Sequence to a peer that is not there.
            let slow = self.cfg.desired_min_tx.max(SLOW_TX);
            self.polling = false;
            self.desired_min_tx = slow;
            self.tx_in_use = slow;
            self.required_min_rx = self.cfg.required_min_rx;
            self.rx_in_use = self.cfg.required_min_rx;
        }
        if to == State::AdminDown {
            self.detect_at = None;
        }
        out.push(Action::StateChanged(Transition {
            from,
            to,
            diag,
            remote_admin_down,
        }));
        // Tell the peer at once rather than at the next periodic packet: it halves the
        // handshake and makes a Down visible one interval earlier.
        out.push(Action::Send(self.packet(self.polling, false)));
    }

    fn packet(&self, poll: bool, final_: bool) -> ControlPacket {
        ControlPacket {
            diag: self.local_diag,
            state: self.state,
            poll,
            final_,
            control_plane_independent: false,
            demand: false,
            detect_mult: self.cfg.detect_mult,
            my_discriminator: self.local_disc,
            your_discriminator: self.remote_disc,
            desired_min_tx_us: micros(self.desired_min_tx),
            required_min_rx_us: micros(self.required_min_rx),
            required_min_echo_rx_us: 0,
            auth: None,
        }
    }

    /// §6.8.7: the greater of our desired TX and the peer's required RX.
    fn tx_interval(&self) -> Duration {
        self.tx_in_use.max(self.remote_min_rx)
    }

    /// §6.8.4, asynchronous mode: the peer's Detect Mult times the agreed interval of the
    /// peer's transmissions (the greater of our required RX and its desired TX).
    fn detection_time(&self) -> Duration {
        self.rx_in_use.max(self.remote_desired_min_tx) * u32::from(self.remote_detect_mult)
    }

    /// §6.8.7: no periodic packets while the peer asks for none (Required Min RX 0) or
    /// while it is in Demand mode with both sides Up and no Poll Sequence of ours is being
    /// transmitted (the Poll is repeated until the Final, §6.5).
    fn periodic_allowed(&self) -> bool {
        let demand =
            self.remote_demand && self.state == State::Up && self.remote_state == State::Up;
        !self.remote_min_rx.is_zero() && (!demand || self.polling)
    }

    fn schedule_tx(&mut self, now: Instant) {
        let d = self.jittered(self.tx_interval());
        self.next_tx = Some(now + d);
    }

    fn reschedule_sooner(&mut self, now: Instant) {
        let d = self.jittered(self.tx_interval());
        if self.next_tx.is_none_or(|t| now + d < t) {
            self.next_tx = Some(now + d);
        }
    }

    /// §6.8.7: each interval is reduced by 0–25 % at random; with Detect Mult 1, to
    /// 75–90 % so that one late packet cannot take the session down.
    fn jittered(&mut self, d: Duration) -> Duration {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        let span = if self.cfg.detect_mult == 1 { 151 } else { 251 };
        let permille = 750 + u32::try_from(x % span).unwrap_or(0);
        d * permille / 1000
    }
}
