//! Connection collision detection (RFC 4271 §6.8, RFC 6286 §2.3) as a two-slot wrapper
//! around two [`Session`]s, in the manner of rustybgp.
//!
//! The primary slot holds the peer's session. When the peer connects while the primary is
//! in OpenSent or OpenConfirm, the new connection gets a secondary session (never restarts
//! on its own). Once *both* have received the peer's OPEN (both in OpenConfirm: §6.8
//! resolves on receipt of an OPEN, against connections in OpenConfirm), the tie-break
//! runs: the connection opened by the speaker with the higher BGP Identifier (compared as
//! u32; on a tie the higher ASN, RFC 6286 §2.3) survives, the other gets Cease/Connection
//! Collision Resolution (Event 23 OpenCollisionDump). If one reaches Established while
//! the other has still no OPEN, it is the session, and the other is dumped when its OPEN
//! arrives. A surviving secondary takes over the primary's peer-wide state (damping,
//! counters).
//!
//! A connection arriving while the session is Established is closed (§6.8), as is a
//! third connection.

use std::time::Instant;

use super::session::{Role, Session};
use super::types::{Action, Config, ConnId, Direction, Event, State};

/// A peer's FSM: one session plus, during a collision, a second one.
#[derive(Debug, Clone)]
pub struct Peer {
    primary: Session,
    secondary: Option<Session>,
}

impl Peer {
    /// A peer in Idle.
    pub fn new(cfg: Config) -> Self {
        Peer {
            primary: Session::new(cfg),
            secondary: None,
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

    /// The earliest deadline of both sessions.
    pub fn next_deadline(&self) -> Option<Instant> {
        let a = self.primary.next_deadline();
        let b = self.secondary.as_ref().and_then(Session::next_deadline);
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
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
        match event {
            Event::TcpConnectionConfirmed(c) if self.second_connection(c) => {
                match self.primary.state() {
                    State::OpenSent | State::OpenConfirm if self.secondary.is_none() => {
                        let mut s = Session::new_secondary(self.primary.config().clone());
                        out.extend(s.handle(now, Event::TcpConnectionConfirmed(c)));
                        self.secondary = Some(s);
                    }
                    _ => out.push(Action::Close { conn: c }),
                }
            }
            Event::ManualStop(_) | Event::AutomaticStop { .. } => {
                if let Some(mut s) = self.secondary.take() {
                    out.extend(s.handle(now, event.clone()));
                }
                out.extend(self.primary.handle(now, event));
            }
            ev if on_secondary => {
                if let Some(s) = self.secondary.as_mut() {
                    out.extend(s.handle(now, ev));
                }
            }
            ev => out.extend(self.primary.handle(now, ev)),
        }
        self.settle(now, &mut out);
        out
    }

    /// Fires due timers of both sessions.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        let mut out = self.primary.handle_timeout(now);
        if let Some(s) = self.secondary.as_mut() {
            out.extend(s.handle_timeout(now));
        }
        self.settle(now, &mut out);
        out
    }

    /// A connection the primary cannot take: it already has one.
    fn second_connection(&self, c: ConnId) -> bool {
        !matches!(
            self.primary.state(),
            State::Idle | State::Connect | State::Active
        ) && self.primary.connection().map(|(p, _)| p) != Some(c)
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
            if let Some(mut winner) = self.secondary.take() {
                winner.adopt(&self.primary);
                let mut loser = std::mem::replace(&mut self.primary, winner);
                loser.role = Role::Secondary;
                self.secondary = Some(loser);
            }
        }
        if let Some(sec) = self.secondary.as_ref() {
            match (self.primary.state(), sec.state()) {
                // §6.8: "a connection collision with an existing BGP connection that is in
                // the Established state causes closing of the newly created connection".
                (State::Established, State::OpenConfirm) => {
                    if let Some(mut s) = self.secondary.take() {
                        out.extend(dump(&mut s, now));
                    }
                }
                // Both have the peer's OPEN: the tie-break.
                (State::OpenConfirm, State::OpenConfirm) => {
                    if let Some(remote_id) = self.primary.remote_id() {
                        if self.keep_primary(remote_id, sec) {
                            if let Some(mut s) = self.secondary.take() {
                                out.extend(dump(&mut s, now));
                            }
                        } else if let Some(mut winner) = self.secondary.take() {
                            // Peer-wide state moves over before the dump would count a
                            // failure.
                            winner.adopt(&self.primary);
                            let mut loser = std::mem::replace(&mut self.primary, winner);
                            loser.role = Role::Secondary;
                            out.extend(dump(&mut loser, now));
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
        if self.primary.state() == State::Idle {
            if let Some(mut winner) = self.secondary.take() {
                winner.adopt(&self.primary);
                self.primary = winner;
            }
        }
        debug_assert!(self.primary.role == Role::Primary);
    }

    /// RFC 4271 §6.8: keep the connection opened by the speaker with the higher BGP
    /// Identifier; RFC 6286 §2.3: on equal identifiers, the one with the higher ASN.
    fn keep_primary(&self, remote_id: std::net::Ipv4Addr, sec: &Session) -> bool {
        let cfg = self.primary.config();
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
        let primary_dir = self.primary.connection().map(|(_, d)| d);
        let secondary_dir = sec.connection().map(|(_, d)| d);
        // Two connections in the same direction (the peer reconnected): keep the older.
        primary_dir == Some(keep_dir) || secondary_dir != Some(keep_dir)
    }
}

fn dump(s: &mut Session, now: Instant) -> Vec<Action> {
    match s.connection() {
        Some((c, _)) => s.handle(now, Event::OpenCollisionDump(c)),
        None => Vec::new(),
    }
}
