//! Connection collision detection (RFC 4271 §6.8, RFC 6286 §2.3) as a two-slot wrapper
//! around two [`Session`]s, in the manner of rustybgp.
//!
//! The primary slot holds the peer's session. When the peer connects while the primary is
//! in OpenSent or OpenConfirm, the new connection gets a secondary session (never restarts
//! on its own). Once *both* have received the peer's OPEN (both in OpenConfirm: §6.8
//! resolves on receipt of an OPEN, against connections in OpenConfirm), the tie-break
//! runs: the connection opened by the speaker with the higher BGP Identifier (compared as
//! u32; on a tie the higher ASN, RFC 6286 §2.3) is the session, the other is to be closed
//! with Cease/Connection Collision Resolution (Event 23 OpenCollisionDump) — after the
//! peer's verdict (below). If one reaches Established while the other has still no OPEN,
//! it is the session, and the other is dumped when its OPEN arrives (or held, below). A
//! surviving secondary takes over the primary's peer-wide state (damping, counters).
//!
//! # Waiting for the peer's verdict
//! Both sides apply §6.8, each from its own state, and the states can differ: one side
//! can be Established (or at least have sent its KEEPALIVE) on a connection where the
//! other is still in OpenConfirm, because the two connections' messages cross. Then each
//! side closes a different connection and the session is gone on both (BIRD
//! `bgp_rx_open` and FRR `bgp_collision_detect` close the new connection when the other
//! is Established, else decide by identifiers). Two races:
//! - *the late OPEN*: we are Established on one connection (the peer's KEEPALIVE arrived)
//!   while the peer is still in OpenConfirm on it (ours has not), when the peer's OPEN
//!   arrives on the other. §6.8 from our state closes the late one ("a connection
//!   collision with an existing BGP connection that is in the Established state causes
//!   closing of the newly created connection"); from the peer's (both in OpenConfirm) it
//!   keeps the one the higher identifier opened, which may be the late one.
//! - *the tie-break*: both of ours are in OpenConfirm, the peer already Established on
//!   the one the identifiers make us close (it had our KEEPALIVE there): it closes the
//!   other one as the new connection.
//!
//! So a connection §6.8 would make us close, when the peer may still decide otherwise —
//! a late one, or the tie-break's loser — is not closed at once but held ([`Session::hold_keepalive`]: not Established by us; a late one gets no
//! KEEPALIVE, so the peer cannot complete it either) for [`verdict_wait`]:
//! - the peer closes the other connection (6/7, or a TCP close without NOTIFICATION): the
//!   held one is the session ([`Session::release`]). Was the other Established, the
//!   session *moves* and is reported as [`Action::SessionMoved`] once Established on the
//!   held one, not as a SessionDown and a second SessionUp: for the peer it is its one
//!   session, which never had our routes on the other connection (it was not Established
//!   there, or dropped them as it closed it); our routes are sent again on the new one.
//!   Between the close and the peer's KEEPALIVE there (usually already arrived: BIRD and
//!   FRR send it as they send the 6/7) the state is OpenConfirm; should the held
//!   connection fail, or not come up within [`verdict_wait`], the SessionDown comes then.
//! - the peer closes the held connection (it agrees), or shows it is Established on the
//!   other (an UPDATE or ROUTE-REFRESH there): the held one goes. An UPDATE on the held
//!   one shows the opposite: it becomes the session, the other goes.
//! - nothing within [`verdict_wait`]: the held one is closed with 6/7 as §6.8 says.
//!
//! A late connection the identifiers do not favour is held too: the peer, deciding as we
//! do, closes it itself, and our 6/7 racing that close can cost the session (FRR moves a
//! session Established on its incoming connection onto its own peer entry and closing its
//! outgoing one; a 6/7 arriving on that one meanwhile took the session down in the lab).
//!
//! A connection arriving while the session is Established is closed (§6.8), as is a
//! third connection, except that a new connection from the peer replaces its previous one
//! while that one has brought no OPEN (the peer's next attempt; it keeps one of its own).

use std::time::{Duration, Instant};

use anyguard_proto::notification::cease_subcode;
use anyguard_proto::ErrorCode;

use super::session::{Role, Session};
use super::types::{Action, Config, ConnId, Direction, DownReason, Event, State};

/// Longest wait for the peer's verdict on a held connection (a late one the identifiers
/// favour, or the tie-break's loser), and for the session to come up on it once the peer
/// closed the other one (module docs).
/// The verdict answers our OPEN, sent when the connection opened: a round trip, and
/// the time the peer takes to read. Capped by [`verdict_wait`] at a third of the hold time.
pub const COLLISION_VERDICT_WAIT: Duration = Duration::from_secs(2);

/// The wait for a connection whose negotiated hold time is `hold`: [`COLLISION_VERDICT_WAIT`],
/// at most a third of a non-zero hold time, so that the KEEPALIVE we send once the peer
/// chose the connection reaches it before the peer's OpenConfirm hold timer expires.
pub fn verdict_wait(hold: Duration) -> Duration {
    if hold.is_zero() {
        COLLISION_VERDICT_WAIT
    } else {
        COLLISION_VERDICT_WAIT.min(hold / 3)
    }
}

/// The session left an Established connection the peer closed and continues on the other
/// one (module docs): its SessionDown is held back.
#[derive(Debug, Clone)]
struct Moving {
    /// The connection the session was Established on.
    from: ConnId,
    /// Why the peer closed it: the SessionDown's reason if the move fails.
    reason: DownReason,
    /// The move fails unless Established by then.
    deadline: Instant,
}

/// A peer's FSM: one session plus, during a collision, a second one.
#[derive(Debug, Clone)]
pub struct Peer {
    primary: Session,
    secondary: Option<Session>,
    /// While the secondary is held for the peer's verdict (module docs): when the wait ends.
    verdict: Option<Instant>,
    moving: Option<Moving>,
}

impl Peer {
    /// A peer in Idle.
    pub fn new(cfg: Config) -> Self {
        Peer {
            primary: Session::new(cfg),
            secondary: None,
            verdict: None,
            moving: None,
        }
    }

    /// The state of the peer's session (the primary slot).
    pub fn state(&self) -> State {
        self.primary.state()
    }

    /// The primary session.
    pub fn session(&self) -> &Session {
        &self.primary
    }

    /// The colliding session, if any.
    pub fn secondary(&self) -> Option<&Session> {
        self.secondary.as_ref()
    }

    /// The earliest deadline of both sessions and of the collision waits.
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.primary.next_deadline(),
            self.secondary.as_ref().and_then(Session::next_deadline),
            self.verdict,
            self.moving.as_ref().map(|m| m.deadline),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Feeds one event to the session it concerns, then resolves collisions.
    pub fn handle(&mut self, now: Instant, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        let conn = event.conn();
        let on_secondary = conn.is_some()
            && self
                .secondary
                .as_ref()
                .and_then(Session::connection)
                .map(|(c, _)| c)
                == conn;
        let on_primary = conn.is_some() && self.primary.connection().map(|(c, _)| c) == conn;
        match event {
            Event::TcpConnectionConfirmed(c) if self.second_connection(c) => {
                match self.primary.state() {
                    State::OpenSent | State::OpenConfirm if self.replaceable_secondary() => {
                        // A router keeps one connection of its own at a time (BIRD, FRR):
                        // a new one while its previous one has sent nothing is its next
                        // attempt, the previous one given up (FRR opens a new connection
                        // when its connect timer fires, and drops the established session
                        // when we refuse that one: the lab's collision row saw it). The
                        // new one takes the slot; the old one goes.
                        if let Some(mut old) = self.secondary.take() {
                            out.extend(dump(&mut old, now));
                        }
                        let mut s = Session::new_secondary(self.primary.config().clone());
                        out.extend(s.handle(now, Event::TcpConnectionConfirmed(c)));
                        self.secondary = Some(s);
                    }
                    _ => out.push(Action::Close { conn: c }),
                }
            }
            Event::ManualStop(_) | Event::ManualStopForRestart | Event::AutomaticStop { .. } => {
                self.verdict = None;
                if let Some(mut s) = self.secondary.take() {
                    out.extend(s.handle(now, event.clone()));
                }
                out.extend(self.primary.handle(now, event));
            }
            Event::Open(c, ref open) if on_secondary => {
                let late = self.primary.state() == State::Established;
                if let Some(s) = self.secondary.as_mut() {
                    if late {
                        // Held for the peer's verdict whatever the identifiers say: if they
                        // favour it, the peer (still in OpenConfirm on the other) may keep
                        // it; if not, the peer closes it itself, and a 6/7 from us racing
                        // that close can end the session it keeps (FRR, moving its incoming
                        // session onto its own connection, took our 6/7 on that one for
                        // the session's: the lab's collision row saw it). No KEEPALIVE on
                        // it either way.
                        s.hold_keepalive();
                    }
                    out.extend(s.handle(now, Event::Open(c, open.clone())));
                    if late && s.state() == State::OpenConfirm {
                        let hold = s.negotiated().map_or(Duration::ZERO, |n| n.hold_time);
                        self.verdict = Some(now + verdict_wait(hold));
                    }
                }
            }
            ev if on_primary && closed_for_the_other(&ev) && self.secondary.is_some() => {
                // The peer closed this connection while the other one is still open: it
                // chose the other one (module docs). Not a failure: the damping state from
                // before the close moves over.
                let before = self.primary.clone();
                out.extend(self.primary.handle(now, ev));
                if self.primary.state() == State::Idle {
                    if before.state() == State::Established {
                        self.move_to_secondary(now, &before, &mut out);
                    } else if let Some(mut winner) = self.secondary.take() {
                        self.verdict = None;
                        winner.adopt(&before);
                        self.primary = winner;
                        out.extend(self.primary.release(now));
                    }
                }
            }
            ev @ (Event::Update(_) | Event::RouteRefresh(_))
                if on_secondary && self.verdict.is_some() =>
            {
                // Only an Established peer sends these (RFC 4271 §8.2.2): the peer is
                // Established on the connection held for its verdict, so that one is the
                // session and the other goes.
                self.verdict = None;
                let before = self.primary.clone();
                out.extend(dump(&mut self.primary, now));
                if before.state() == State::Established {
                    self.move_to_secondary(now, &before, &mut out);
                } else if let Some(mut winner) = self.secondary.take() {
                    winner.adopt(&before);
                    self.primary = winner;
                    out.extend(self.primary.release(now));
                }
                self.finish_move(&mut out);
                out.extend(self.primary.handle(now, ev));
            }
            ev if on_secondary => {
                if let Some(s) = self.secondary.as_mut() {
                    out.extend(s.handle(now, ev));
                }
            }
            ev @ (Event::Update(_) | Event::RouteRefresh(_))
                if on_primary && self.verdict.is_some() =>
            {
                // Only an Established peer sends these (RFC 4271 §8.2.2): it is
                // Established on this connection too and closes the late one itself.
                out.extend(self.primary.handle(now, ev));
                self.verdict = None;
                if let Some(mut s) = self.secondary.take() {
                    out.extend(dump(&mut s, now));
                }
            }
            ev => out.extend(self.primary.handle(now, ev)),
        }
        self.settle(now, &mut out);
        out
    }

    /// Fires due timers of both sessions and the collision waits.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        let mut out = self.primary.handle_timeout(now);
        if let Some(s) = self.secondary.as_mut() {
            out.extend(s.handle_timeout(now));
        }
        if self.verdict.is_some_and(|v| v <= now) {
            // No verdict: §6.8 as written, the held connection goes.
            self.verdict = None;
            if let Some(mut s) = self.secondary.take() {
                out.extend(dump(&mut s, now));
            }
        }
        if self.moving.as_ref().is_some_and(|m| m.deadline <= now)
            && self.primary.state() != State::Established
        {
            if let Some(m) = self.moving.take() {
                out.push(Action::SessionDown(m.reason));
            }
        }
        self.settle(now, &mut out);
        out
    }

    /// The secondary becomes the session and the primary the secondary; peer-wide state
    /// (damping, counters) moves over with the session.
    fn swap(&mut self) {
        if let Some(mut winner) = self.secondary.take() {
            winner.adopt(&self.primary);
            let mut loser = std::mem::replace(&mut self.primary, winner);
            loser.role = Role::Secondary;
            self.secondary = Some(loser);
        }
    }

    /// The secondary slot can take a new connection from the peer: it is free, or holds
    /// the peer's previous connection, which has not brought an OPEN yet.
    fn replaceable_secondary(&self) -> bool {
        match self.secondary.as_ref() {
            None => true,
            Some(s) => {
                s.state() == State::OpenSent
                    && s.connection().map(|(_, d)| d) == Some(Direction::Inbound)
            }
        }
    }

    /// A connection the primary cannot take: it already has one.
    fn second_connection(&self, c: ConnId) -> bool {
        !matches!(
            self.primary.state(),
            State::Idle | State::Connect | State::Active
        ) && self.primary.connection().map(|(p, _)| p) != Some(c)
    }

    /// The peer closed the Established primary (now Idle, `before` as it was) while the
    /// secondary is open: the secondary becomes the session. The old primary's
    /// SessionDown and state change leave `out`; the SessionDown is held in `moving`.
    fn move_to_secondary(&mut self, now: Instant, before: &Session, out: &mut Vec<Action>) {
        let Some(mut winner) = self.secondary.take() else {
            return;
        };
        self.verdict = None;
        let mut reason = DownReason::TcpFailed;
        out.retain(|a| match a {
            Action::SessionDown(r) => {
                reason = r.clone();
                false
            }
            Action::StateChanged { to, .. } => *to != State::Idle,
            _ => true,
        });
        // Not a failure of the peer: the damping state from before the close moves over.
        winner.adopt(before);
        self.primary = winner;
        let released: Vec<Action> = self
            .primary
            .release(now)
            .into_iter()
            .filter(|a| !matches!(a, Action::StateChanged { .. }))
            .collect();
        if self.primary.state() != State::Established {
            out.push(Action::StateChanged {
                from: State::Established,
                to: self.primary.state(),
                reason: Some(reason.clone()),
                conn: self.primary.connection().map(|(c, _)| c),
            });
        }
        out.extend(released);
        let hold = self
            .primary
            .negotiated()
            .map_or(Duration::ZERO, |n| n.hold_time);
        self.moving = before.connection().map(|(from, _)| Moving {
            from,
            reason,
            deadline: now + verdict_wait(hold),
        });
    }

    /// Collision resolution, then clean-up of a dead slot.
    ///
    /// RFC 4271 §6.8 resolves a collision "upon receipt of an OPEN message", against the
    /// connections that are in OpenConfirm, i.e. that have received the peer's OPEN too.
    /// So nothing is decided while one of the two connections has not seen an OPEN: if
    /// the peer gives up the connection it was still opening (BIRD drops its outgoing
    /// attempt once an OPEN arrives on its incoming one), the other simply goes on.
    fn settle(&mut self, now: Instant, out: &mut Vec<Action>) {
        // The colliding connection came up first: it is the session now. The old primary,
        // still opening, goes once its OPEN shows it collides with an Established
        // connection (below), or when it fails.
        if self.primary.state() != State::Established
            && self
                .secondary
                .as_ref()
                .is_some_and(|s| s.state() == State::Established)
        {
            self.swap();
        }
        if let Some(sec) = self.secondary.as_ref() {
            match (self.primary.state(), sec.state()) {
                // §6.8: "a connection collision with an existing BGP connection that is in
                // the Established state causes closing of the newly created connection",
                // except while the peer's verdict on a late connection the identifiers
                // favour is awaited (module docs).
                (State::Established, State::OpenConfirm)
                    if !(sec.keepalive_held() && self.verdict.is_some()) =>
                {
                    self.verdict = None;
                    if let Some(mut s) = self.secondary.take() {
                        out.extend(dump(&mut s, now));
                    }
                }
                // Both have the peer's OPEN: the tie-break. The loser is not closed at once
                // but held for the peer's verdict (module docs): the peer may already be
                // Established on it (it had our KEEPALIVE there), and then closes the
                // winner instead.
                (State::OpenConfirm, State::OpenConfirm) if self.verdict.is_none() => {
                    if let Some(remote_id) = self.primary.remote_id() {
                        if !keep_primary(&self.primary, remote_id, sec) {
                            self.swap();
                        }
                        if let Some(loser) = self.secondary.as_mut() {
                            loser.hold_keepalive();
                            let hold = loser.negotiated().map_or(Duration::ZERO, |n| n.hold_time);
                            self.verdict = Some(now + verdict_wait(hold));
                        }
                    }
                }
                // One of them has not received an OPEN yet: wait for it.
                _ => {}
            }
        }
        // A secondary that failed disappears; a primary that failed while the secondary
        // is still opening hands over to it.
        if self
            .secondary
            .as_ref()
            .is_some_and(|s| s.state() == State::Idle)
        {
            self.secondary = None;
        }
        if self.secondary.is_none() {
            self.verdict = None;
        }
        if self.primary.state() == State::Idle {
            self.verdict = None;
            if let Some(mut winner) = self.secondary.take() {
                winner.adopt(&self.primary);
                self.primary = winner;
                // Our own failure on the primary (not the peer's choice): the held
                // KEEPALIVE goes out, the secondary is a session of its own.
                out.extend(self.primary.release(now));
            }
        }
        self.finish_move(out);
        debug_assert!(self.primary.role == Role::Primary);
    }

    /// A move in progress ends: Established on the new connection (its SessionUp becomes
    /// SessionMoved) or failed (the held-back SessionDown).
    fn finish_move(&mut self, out: &mut Vec<Action>) {
        let Some(m) = self.moving.as_ref() else {
            return;
        };
        let from = m.from;
        let mut done = false;
        for a in out.iter_mut() {
            if let Action::SessionUp { conn, negotiated } = a {
                *a = Action::SessionMoved {
                    from,
                    conn: *conn,
                    negotiated: negotiated.clone(),
                };
                done = true;
            }
        }
        if done {
            self.moving = None;
        } else if self.primary.state() == State::Idle {
            let failed = out.iter().rev().find_map(|a| match a {
                Action::StateChanged {
                    to: State::Idle,
                    reason: Some(r),
                    ..
                } => Some(r.clone()),
                _ => None,
            });
            if let Some(m) = self.moving.take() {
                out.push(Action::SessionDown(failed.unwrap_or(m.reason)));
            }
        }
    }
}

/// RFC 4271 §6.8: keep the connection opened by the speaker with the higher BGP
/// Identifier; RFC 6286 §2.3: on equal identifiers, the one with the higher ASN.
fn keep_primary(primary: &Session, remote_id: std::net::Ipv4Addr, sec: &Session) -> bool {
    let cfg = primary.config();
    let local = u32::from(cfg.router_id);
    let remote = u32::from(remote_id);
    let local_wins = if local == remote {
        cfg.local_asn > cfg.remote_asn
    } else {
        local > remote
    };
    let keep_dir = if local_wins {
        Direction::Outbound
    } else {
        Direction::Inbound
    };
    let primary_dir = primary.connection().map(|(_, d)| d);
    let secondary_dir = sec.connection().map(|(_, d)| d);
    // Two connections in the same direction (the peer reconnected): keep the older.
    primary_dir == Some(keep_dir) || secondary_dir != Some(keep_dir)
}

/// The peer closing a connection as the loser of a collision: Cease/Connection Collision
/// Resolution (RFC 4271 §6.8), or a TCP close without NOTIFICATION.
fn closed_for_the_other(ev: &Event) -> bool {
    match ev {
        Event::Notification(_, n) => {
            n.code == ErrorCode::Cease
                && n.subcode == cease_subcode::CONNECTION_COLLISION_RESOLUTION
        }
        Event::TcpConnectionFails(_) => true,
        _ => false,
    }
}

fn dump(s: &mut Session, now: Instant) -> Vec<Action> {
    match s.connection() {
        Some((c, _)) => s.handle(now, Event::OpenCollisionDump(c)),
        None => Vec::new(),
    }
}
