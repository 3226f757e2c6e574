//! The session state machine, one test per rule, time stepped by hand.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use anyguard_proto::bfd::{Authentication, ControlPacket, Diag, State};

use super::session::{Action, Config, Discard, Event, Session, Transition, SLOW_TX};

const FAST: Duration = Duration::from_millis(300);

fn cfg() -> Config {
    Config {
        desired_min_tx: FAST,
        required_min_rx: FAST,
        detect_mult: 3,
    }
}

fn sent(actions: &[Action]) -> Vec<ControlPacket> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

fn transitions(actions: &[Action]) -> Vec<Transition> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::StateChanged(t) => Some(*t),
            _ => None,
        })
        .collect()
}

/// Delivers every packet in `actions` to `to`; returns `to`'s actions.
fn deliver(now: Instant, actions: &[Action], to: &mut Session) -> Vec<Action> {
    let mut out = Vec::new();
    for p in sent(actions) {
        out.extend(to.handle(now, Event::Packet(p)));
    }
    out
}

/// Passes packets back and forth until neither side has anything to say (bounded).
fn exchange(now: Instant, from_a: Vec<Action>, a: &mut Session, b: &mut Session) {
    let mut to_b = from_a;
    for _ in 0..10 {
        let to_a = deliver(now, &to_b, b);
        to_b = deliver(now, &to_a, a);
        if sent(&to_b).is_empty() {
            return;
        }
    }
    panic!("the exchange did not settle");
}

/// Two sessions brought Up by exchanging packets at `t0`, Poll Sequences finished.
fn up_pair(t0: Instant) -> (Session, Session) {
    let mut a = Session::new(cfg(), 0xa, 1, t0);
    let mut b = Session::new(cfg(), 0xb, 2, t0);
    let first = a.handle_timeout(t0);
    exchange(t0, first, &mut a, &mut b);
    assert_eq!((a.state(), b.state()), (State::Up, State::Up));
    assert!(!a.snapshot().polling && !b.snapshot().polling);
    (a, b)
}

#[test]
fn a_down_session_sends_at_once_then_slowly_with_one_second_advertised() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg(), 7, 42, t0);
    assert_eq!(s.next_deadline(), Some(t0));
    let mut now = t0;
    for _ in 0..20 {
        let out = s.handle_timeout(now);
        let p = &sent(&out)[0];
        assert_eq!(p.state, State::Down);
        assert_eq!(p.your_discriminator, 0);
        assert_eq!(p.my_discriminator, 7);
        // RFC 5880 §6.8.3: at least one second while not Up, whatever the configuration.
        assert_eq!(p.desired_min_tx_us, 1_000_000);
        assert_eq!(p.required_min_rx_us, 300_000);
        let next = s.next_deadline().unwrap();
        let gap = next - now;
        assert!(gap >= SLOW_TX * 3 / 4 && gap <= SLOW_TX, "{gap:?}");
        now = next;
    }
}

#[test]
fn handshake_initiated_by_either_side_reaches_up() {
    for a_first in [true, false] {
        let t0 = Instant::now();
        let mut a = Session::new(cfg(), 0xa, 1, t0);
        let mut b = Session::new(cfg(), 0xb, 2, t0);
        let (first, second) = if a_first {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        let down = first.handle_timeout(t0);
        let r = deliver(t0, &down, second);
        assert_eq!(second.state(), State::Init);
        assert_eq!(
            transitions(&r),
            vec![Transition {
                from: State::Down,
                to: State::Init,
                diag: Diag::NoDiagnostic,
                remote_admin_down: false
            }]
        );
        let init = &sent(&r)[0];
        assert_eq!(init.state, State::Init);
        assert_eq!(init.your_discriminator, first.local_discriminator());
        let r2 = deliver(t0, &r, first);
        assert_eq!(first.state(), State::Up);
        deliver(t0, &r2, second);
        assert_eq!(second.state(), State::Up);
        assert_eq!(a.snapshot().remote_discriminator, 0xb);
        assert_eq!(b.snapshot().remote_discriminator, 0xa);
    }
}

#[test]
fn both_sides_sending_down_at_once_also_reach_up() {
    let t0 = Instant::now();
    let mut a = Session::new(cfg(), 0xa, 1, t0);
    let mut b = Session::new(cfg(), 0xb, 2, t0);
    let da = a.handle_timeout(t0);
    let db = b.handle_timeout(t0);
    let ra = deliver(t0, &db, &mut a);
    let rb = deliver(t0, &da, &mut b);
    assert_eq!((a.state(), b.state()), (State::Init, State::Init));
    deliver(t0, &rb, &mut a);
    deliver(t0, &ra, &mut b);
    assert_eq!((a.state(), b.state()), (State::Up, State::Up));
}

#[test]
fn going_up_starts_a_poll_sequence_to_the_fast_interval_and_final_ends_it() {
    let t0 = Instant::now();
    let mut a = Session::new(cfg(), 0xa, 1, t0);
    let mut b = Session::new(cfg(), 0xb, 2, t0);
    let r = deliver(t0, &a.handle_timeout(t0), &mut b);
    let r = deliver(t0, &r, &mut a); // a: Up
    let up = sent(&r);
    assert_eq!(up[0].state, State::Up);
    assert!(
        up[0].poll,
        "the Up packet carries the new interval with Poll"
    );
    assert_eq!(up[0].desired_min_tx_us, 300_000);
    assert!(a.snapshot().polling);
    // Periodic packets keep the P bit until the Final.
    let t1 = a.next_deadline().unwrap();
    let periodic = sent(&a.handle_timeout(t1));
    assert!(periodic.iter().all(|p| p.poll));
    // b answers the Poll with Final at once (and is Up itself, polling too).
    let rb = b.handle(t1, Event::Packet(up[0].clone()));
    let answers = sent(&rb);
    let fin = answers.iter().find(|p| p.final_).unwrap();
    assert!(!fin.poll);
    a.handle(t1, Event::Packet(fin.clone()));
    assert!(!a.snapshot().polling);
    assert_eq!(a.snapshot().tx_interval, FAST);
    let t2 = a.next_deadline().unwrap();
    let after = sent(&a.handle_timeout(t2));
    assert!(after.iter().all(|p| !p.poll));
}

#[test]
fn an_interval_increase_waits_for_the_final_and_a_decrease_does_not() {
    let t0 = Instant::now();
    let (mut a, mut b) = up_pair(t0);
    let slower = Config {
        desired_min_tx: Duration::from_millis(500),
        ..cfg()
    };
    let p = sent(&a.handle(t0, Event::SetConfig(slower)));
    // §6.8.3: an increase while Up does not change the interval used before the Final.
    assert_eq!(a.snapshot().tx_interval, FAST);
    assert!(a.snapshot().polling);
    let t1 = t0 + Duration::from_millis(10);
    assert!(p[0].poll);
    assert_eq!(p[0].desired_min_tx_us, 500_000);
    let answer = deliver(t1, &[Action::Send(p[0].clone())], &mut b);
    assert!(sent(&answer)[0].final_);
    deliver(t1, &answer, &mut a);
    assert_eq!(a.snapshot().tx_interval, Duration::from_millis(500));
    assert!(!a.snapshot().polling);
    // A decrease applies at once (and still polls).
    a.handle(t1, Event::SetConfig(cfg()));
    assert_eq!(a.snapshot().tx_interval, FAST);
    assert!(a.snapshot().polling);
}

#[test]
fn silence_for_the_detection_time_takes_an_up_session_down_with_diag_1() {
    let t0 = Instant::now();
    let (mut a, _b) = up_pair(t0);
    // Detection time = b's Detect Mult × max(a's RequiredMinRx, b's DesiredMinTx as last
    // received): 3 × 300 ms once both are Up.
    let detection = FAST * 3;
    assert_eq!(a.snapshot().detection_time, Some(detection));
    let mut down = None;
    for _ in 0..100 {
        let Some(now) = a.next_deadline() else { break };
        let out = a.handle_timeout(now);
        if let Some(t) = transitions(&out).first() {
            down = Some((*t, now, sent(&out)));
            break;
        }
    }
    let (t, at, packets) = down.unwrap();
    assert_eq!(at - t0, detection);
    assert_eq!(t.to, State::Down);
    assert_eq!(t.diag, Diag::ControlDetectionTimeExpired);
    assert!(t.is_failure());
    assert_eq!(packets[0].state, State::Down);
    assert_eq!(packets[0].diag, Diag::ControlDetectionTimeExpired);
    // §6.8.1: the remote discriminator is forgotten.
    assert_eq!(packets[0].your_discriminator, 0);
    assert_eq!(packets[0].desired_min_tx_us, 1_000_000);
}

#[test]
fn detection_time_uses_the_peers_multiplier_and_the_slower_of_the_two_intervals() {
    let t0 = Instant::now();
    let mut a = Session::new(cfg(), 0xa, 1, t0);
    let mut p = ControlPacket {
        diag: Diag::NoDiagnostic,
        state: State::Down,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_mult: 5,
        my_discriminator: 99,
        your_discriminator: 0,
        desired_min_tx_us: 100_000,
        required_min_rx_us: 100_000,
        required_min_echo_rx_us: 0,
        auth: None,
    };
    a.handle(t0, Event::Packet(p.clone()));
    assert_eq!(a.snapshot().detection_time, Some(FAST * 5));
    p.desired_min_tx_us = 400_000;
    p.state = State::Init;
    p.your_discriminator = 0xa;
    a.handle(t0, Event::Packet(p));
    assert_eq!(
        a.snapshot().detection_time,
        Some(Duration::from_millis(2000))
    );
}

#[test]
fn a_peer_saying_down_takes_an_up_session_down_with_diag_3() {
    let t0 = Instant::now();
    let (mut a, mut b) = up_pair(t0);
    let out = b.handle(t0, Event::AdminDown);
    assert_eq!(transitions(&out)[0].diag, Diag::AdministrativelyDown);
    // b goes down hard instead: a Down packet with b's discriminators.
    let mut down = sent(&out)[0].clone();
    down.state = State::Down;
    down.diag = Diag::ControlDetectionTimeExpired;
    let r = a.handle(t0, Event::Packet(down));
    let t = transitions(&r)[0];
    assert_eq!((t.from, t.to), (State::Up, State::Down));
    assert_eq!(t.diag, Diag::NeighborSignaledSessionDown);
    assert!(t.is_failure());
    assert_eq!(a.snapshot().remote_diag, Diag::ControlDetectionTimeExpired);
}

#[test]
fn a_peer_going_admin_down_is_down_with_diag_3_but_not_a_failure() {
    let t0 = Instant::now();
    let (mut a, mut b) = up_pair(t0);
    let out = b.handle(t0, Event::AdminDown);
    let admin = sent(&out);
    assert_eq!(admin[0].state, State::AdminDown);
    let r = deliver(t0, &out, &mut a);
    let t = transitions(&r)[0];
    assert_eq!((t.from, t.to), (State::Up, State::Down));
    assert_eq!(t.diag, Diag::NeighborSignaledSessionDown);
    assert!(t.remote_admin_down);
    assert!(
        !t.is_failure(),
        "RFC 5882 §3.2: AdminDown is not a path failure"
    );
}

#[test]
fn admin_down_sends_admin_down_discards_packets_and_admin_up_returns_to_down() {
    let t0 = Instant::now();
    let (mut a, mut b) = up_pair(t0);
    let out = a.handle(t0, Event::AdminDown);
    let t = transitions(&out)[0];
    assert_eq!((t.from, t.to), (State::Up, State::AdminDown));
    assert!(!t.is_failure());
    let p = &sent(&out)[0];
    assert_eq!(
        (p.state, p.diag),
        (State::AdminDown, Diag::AdministrativelyDown)
    );
    // Periodic packets keep saying AdminDown, at the slow rate.
    let t1 = a.next_deadline().unwrap();
    let periodic = sent(&a.handle_timeout(t1));
    assert!(periodic.iter().all(|p| p.state == State::AdminDown));
    assert_eq!(a.snapshot().tx_interval, SLOW_TX);
    // §6.8.6: packets received in AdminDown are discarded.
    let pb = b.handle_timeout(b.next_deadline().unwrap());
    let r = deliver(t1, &pb, &mut a);
    assert!(r.contains(&Action::Discarded(Discard::AdminDown)));
    assert_eq!(a.state(), State::AdminDown);
    let r = a.handle(t1, Event::AdminUp);
    assert_eq!(transitions(&r)[0].to, State::Down);
    assert_eq!(a.state(), State::Down);
}

#[test]
fn admin_down_is_sent_for_the_peers_detection_time_so_one_lost_packet_is_no_failure() {
    let t0 = Instant::now();
    let (mut a, mut b) = up_pair(t0);
    assert_eq!(a.snapshot().tx_interval, FAST);
    let out = a.handle(t0, Event::AdminDown);
    // RFC 5880 §6.8.16: b times a out after 3 × 300 ms; AdminDown goes on that long.
    let until = a.admin_down_until().unwrap();
    assert_eq!(until, t0 + FAST * 3);
    assert_eq!(sent(&out)[0].state, State::AdminDown);
    // That first AdminDown is lost. Step both sessions through their timers up to
    // `until`, delivering a's packets to b (b's to a are discarded in AdminDown anyway).
    let mut now = t0;
    let mut admin_packets = 0;
    let mut b_changes = Vec::new();
    for _ in 0..100 {
        let next = [a.next_deadline(), b.next_deadline()]
            .into_iter()
            .flatten()
            .min()
            .unwrap();
        if next >= until {
            break;
        }
        now = next;
        b_changes.extend(transitions(&b.handle_timeout(now)));
        let from_a = a.handle_timeout(now);
        for p in sent(&from_a) {
            assert_eq!(
                (p.state, p.diag),
                (State::AdminDown, Diag::AdministrativelyDown)
            );
            admin_packets += 1;
        }
        b_changes.extend(transitions(&deliver(now, &from_a, &mut b)));
    }
    assert!(now < until);
    assert!(admin_packets >= 1, "AdminDown repeated within the window");
    // b saw AdminDown, not a detection timeout: Down with diag 3, not a failure.
    let t = b_changes[0];
    assert_eq!(
        (t.from, t.to, t.diag),
        (State::Up, State::Down, Diag::NeighborSignaledSessionDown)
    );
    assert!(t.remote_admin_down && !t.is_failure(), "{t:?}");
    assert!(b_changes
        .iter()
        .all(|t| t.diag != Diag::ControlDetectionTimeExpired));
    // Coming back ends the lingering.
    a.handle(now, Event::AdminUp);
    assert_eq!(a.admin_down_until(), None);
}

#[test]
fn a_session_never_heard_lingers_for_three_slow_intervals() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg(), 7, 42, t0);
    s.handle_timeout(t0);
    assert_eq!(s.admin_down_until(), None);
    s.handle(t0, Event::AdminDown);
    assert_eq!(s.admin_down_until(), Some(t0 + SLOW_TX * 3));
    // A second AdminDown does not move the end.
    s.handle(t0 + SLOW_TX, Event::AdminDown);
    assert_eq!(s.admin_down_until(), Some(t0 + SLOW_TX * 3));
}

#[test]
fn a_poll_is_answered_at_once_with_final() {
    let t0 = Instant::now();
    let (mut a, mut b) = up_pair(t0);
    let mut poll = sent(&b.handle_timeout(b.next_deadline().unwrap()))[0].clone();
    poll.poll = true;
    let r = a.handle(t0, Event::Packet(poll));
    let answers = sent(&r);
    assert_eq!(answers.len(), 1);
    assert!(answers[0].final_ && !answers[0].poll);
    assert_eq!(answers[0].your_discriminator, 0xb);
}

#[test]
fn packets_with_authentication_or_another_discriminator_are_discarded() {
    let t0 = Instant::now();
    let (mut a, mut b) = up_pair(t0);
    let mut p = sent(&b.handle_timeout(b.next_deadline().unwrap()))[0].clone();
    p.auth = Some(Authentication {
        auth_type: 1,
        data: vec![1, b'x'],
    });
    assert_eq!(
        a.handle(t0, Event::Packet(p.clone())),
        vec![Action::Discarded(Discard::AuthenticationNotInUse)]
    );
    p.auth = None;
    p.your_discriminator = 0x1234;
    assert_eq!(
        a.handle(t0, Event::Packet(p)),
        vec![Action::Discarded(Discard::WrongDiscriminator(0x1234))]
    );
    assert_eq!(a.state(), State::Up);
}

#[test]
fn jitter_stays_within_75_to_90_percent_with_detect_mult_one() {
    let t0 = Instant::now();
    let one = Config {
        detect_mult: 1,
        ..cfg()
    };
    let mut s = Session::new(one, 1, 12345, t0);
    let mut now = t0;
    let (mut lo, mut hi) = (Duration::MAX, Duration::ZERO);
    for _ in 0..500 {
        s.handle_timeout(now);
        let next = s.next_deadline().unwrap();
        lo = lo.min(next - now);
        hi = hi.max(next - now);
        now = next;
    }
    assert!(lo >= SLOW_TX * 3 / 4, "{lo:?}");
    assert!(hi <= SLOW_TX * 9 / 10, "{hi:?}");
    assert!(hi > lo, "jitter varies");
}

#[test]
fn a_peer_requiring_no_packets_gets_none() {
    let t0 = Instant::now();
    let mut a = Session::new(cfg(), 0xa, 1, t0);
    let p = ControlPacket {
        diag: Diag::NoDiagnostic,
        state: State::Down,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_mult: 3,
        my_discriminator: 5,
        your_discriminator: 0,
        desired_min_tx_us: 1_000_000,
        required_min_rx_us: 0,
        required_min_echo_rx_us: 0,
        auth: None,
    };
    let r = a.handle(t0, Event::Packet(p));
    assert_eq!(transitions(&r)[0].to, State::Init);
    for _ in 0..5 {
        let now = a.next_deadline().unwrap();
        let out = a.handle_timeout(now);
        if a.state() == State::Init {
            assert!(sent(&out).is_empty());
        }
    }
}

#[test]
fn a_peer_in_demand_mode_gets_no_periodic_packets_but_a_poll_sequence_repeats() {
    let t0 = Instant::now();
    let (mut a, mut b) = up_pair(t0);
    // b asks for Demand mode (RFC 5880 §6.6) in an otherwise ordinary packet.
    let mut p = sent(&b.handle_timeout(b.next_deadline().unwrap()))[0].clone();
    p.demand = true;
    a.handle(t0, Event::Packet(p.clone()));
    let mut now = t0;
    for _ in 0..3 {
        now = a.next_deadline().unwrap();
        // b keeps sending (its own transmission is not suppressed): a stays Up.
        a.handle(now, Event::Packet(p.clone()));
        assert_eq!(a.state(), State::Up);
        assert!(
            sent(&a.handle_timeout(now)).is_empty(),
            "§6.8.7: no periodic packets"
        );
    }
    // A new interval starts a Poll Sequence: the first Poll goes out at once and, with
    // no Final yet, is repeated periodically (§6.8.7: "and a Poll Sequence is not being
    // transmitted").
    let first = a.handle(
        now,
        Event::SetConfig(Config {
            desired_min_tx: FAST * 2,
            ..cfg()
        }),
    );
    assert!(sent(&first)[0].poll);
    let mut polls = 0;
    for _ in 0..3 {
        now = a.next_deadline().unwrap();
        a.handle(now, Event::Packet(p.clone()));
        polls += sent(&a.handle_timeout(now))
            .iter()
            .filter(|p| p.poll)
            .count();
    }
    assert_eq!(polls, 3, "the Poll is repeated until the Final");
}
