//! Collision-resolution tests of the two-slot wrapper (RFC 4271 §6.8, RFC 6286 §2.3).

use std::net::Ipv4Addr;
use std::time::Instant;

use anyguard_proto::{ErrorCode, Message, NotificationMessage};

use std::time::Duration;

use super::tests::{cfg, closes, code, notification, peer_open, sent, C1, C2, LOCAL_ID, PEER_ID};
use super::*;

fn collided(local_id: Ipv4Addr, t0: Instant) -> Peer {
    let mut c = cfg();
    c.router_id = local_id;
    let mut p = Peer::new(c);
    p.handle(t0, Event::ManualStart);
    p.handle(t0, Event::TcpCrAcked(C1)); // outbound, OpenSent
    let a = p.handle(t0, Event::TcpConnectionConfirmed(C2)); // inbound collides
    assert!(matches!(sent(&a)[0], Message::Open(_)));
    assert!(p.secondary().is_some());
    p
}

#[test]
fn collision_keeps_our_connection_when_our_identifier_is_higher() {
    let t0 = Instant::now();
    let mut p = collided(Ipv4Addr::new(198, 18, 0, 9), t0);
    let a = p.handle(t0, Event::Open(C2, peer_open(65002, PEER_ID, 90)));
    assert!(notification(&a).is_none(), "C1 has no OPEN yet: {a:?}");
    assert!(p.secondary().is_some());
    let a = p.handle(t0, Event::Open(C1, peer_open(65002, PEER_ID, 90)));
    // The tie-break: C1 is the session; C2 waits for the peer's verdict, then goes.
    assert!(notification(&a).is_none(), "{a:?}");
    assert_eq!(p.session().connection(), Some((C1, Direction::Outbound)));
    assert_eq!(p.state(), State::OpenConfirm);
    let a = p.handle_timeout(t0 + COLLISION_VERDICT_WAIT);
    let n = notification(&a).unwrap();
    assert_eq!((u8::from(n.code), n.subcode), (6, 7));
    assert!(a.contains(&Action::Send {
        conn: C2,
        message: Message::Notification(n.clone())
    }));
    assert!(closes(&a, C2));
    assert!(p.secondary().is_none());
    assert_eq!(p.session().connection(), Some((C1, Direction::Outbound)));
    assert_eq!(p.state(), State::OpenConfirm);
}

#[test]
fn collision_keeps_the_peers_connection_when_its_identifier_is_higher() {
    let t0 = Instant::now();
    let mut p = collided(Ipv4Addr::new(198, 18, 0, 1), t0);
    let a = p.handle(t0, Event::Open(C1, peer_open(65002, PEER_ID, 90)));
    assert!(notification(&a).is_none(), "C2 has no OPEN yet: {a:?}");
    p.handle(t0, Event::Open(C2, peer_open(65002, PEER_ID, 90)));
    assert_eq!(p.session().connection(), Some((C2, Direction::Inbound)));
    let a = p.handle_timeout(t0 + COLLISION_VERDICT_WAIT);
    assert!(a.contains(&Action::Send {
        conn: C1,
        message: Message::Notification(cease67())
    }));
    assert!(closes(&a, C1));
    assert_eq!(p.session().connection(), Some((C2, Direction::Inbound)));
    assert_eq!(p.state(), State::OpenConfirm);
    let a = p.handle(t0, Event::Keepalive(C2));
    assert!(a
        .iter()
        .any(|x| matches!(x, Action::SessionUp { conn, .. } if *conn == C2)));
    assert_eq!(p.state(), State::Established);
}

#[test]
fn collision_with_equal_identifiers_is_won_by_the_higher_asn() {
    let t0 = Instant::now();
    // Local ASN 65001 < remote 65002: the peer's connection (inbound) survives.
    let mut p = collided(PEER_ID, t0);
    p.handle(t0, Event::Open(C1, peer_open(65002, PEER_ID, 90)));
    p.handle(t0, Event::Open(C2, peer_open(65002, PEER_ID, 90)));
    let a = p.handle_timeout(t0 + COLLISION_VERDICT_WAIT);
    assert!(closes(&a, C1));
    assert_eq!(p.session().connection(), Some((C2, Direction::Inbound)));
}

#[test]
fn a_connection_while_established_or_a_third_one_is_closed() {
    let t0 = Instant::now();
    let mut p = collided(LOCAL_ID, t0);
    // The peer's connection C2 brought its OPEN: a third one is refused.
    p.handle(t0, Event::Open(C2, peer_open(65002, PEER_ID, 90)));
    let a = p.handle(t0, Event::TcpConnectionConfirmed(ConnId(3)));
    assert_eq!(a, vec![Action::Close { conn: ConnId(3) }]);

    let mut p = Peer::new(cfg());
    p.handle(t0, Event::ManualStart);
    p.handle(t0, Event::TcpCrAcked(C1));
    p.handle(t0, Event::Open(C1, peer_open(65002, PEER_ID, 90)));
    p.handle(t0, Event::Keepalive(C1));
    assert_eq!(p.state(), State::Established);
    let a = p.handle(t0, Event::TcpConnectionConfirmed(C2));
    assert_eq!(a, vec![Action::Close { conn: C2 }]);
    assert_eq!(p.state(), State::Established);
}

#[test]
fn a_failing_primary_hands_over_to_the_colliding_connection() {
    let t0 = Instant::now();
    let mut p = collided(LOCAL_ID, t0);
    p.handle(t0, Event::TcpConnectionFails(C1));
    assert_eq!(p.state(), State::OpenSent);
    assert_eq!(p.session().connection(), Some((C2, Direction::Inbound)));
    assert!(p.secondary().is_none());
}

#[test]
fn manual_stop_notifies_both_colliding_connections() {
    let t0 = Instant::now();
    let mut p = collided(LOCAL_ID, t0);
    let n = NotificationMessage {
        code: ErrorCode::Cease,
        subcode: 2,
        data: Vec::new(),
    };
    let a = p.handle(t0, Event::ManualStop(n));
    assert!(closes(&a, C1) && closes(&a, C2));
    assert_eq!(p.state(), State::Idle);
    assert!(p.secondary().is_none());
}

#[test]
fn nothing_is_decided_before_the_new_connection_sends_its_open() {
    // Issue 12 finding 7: our connection in OpenConfirm, the router (higher identifier)
    // connects to us too. It used to be dumped at once with 6/7 on the identifier learned
    // on C1; BIRD then dropped the connection it was still opening, and both were gone.
    let t0 = Instant::now();
    let mut p = collided(Ipv4Addr::new(198, 18, 0, 1), t0);
    let a = p.handle(t0, Event::Open(C1, peer_open(65002, PEER_ID, 90)));
    assert!(notification(&a).is_none(), "{a:?}");
    assert!(!closes(&a, C1));
    assert_eq!(p.state(), State::OpenConfirm);
    // The router gives up its own attempt before sending an OPEN on it.
    let a = p.handle(t0, Event::TcpConnectionFails(C2));
    assert!(notification(&a).is_none(), "{a:?}");
    assert!(p.secondary().is_none());
    // Our connection goes on to Established: one stable session.
    let a = p.handle(t0, Event::Keepalive(C1));
    assert!(a
        .iter()
        .any(|x| matches!(x, Action::SessionUp { conn, .. } if *conn == C1)));
    assert_eq!(p.state(), State::Established);
}

#[test]
fn a_colliding_connection_established_first_is_kept_and_the_late_one_dumped() {
    // §6.8: once one connection is Established, the other goes when its OPEN arrives.
    let t0 = Instant::now();
    let mut p = collided(Ipv4Addr::new(198, 18, 0, 9), t0);
    p.handle(t0, Event::Open(C2, peer_open(65002, PEER_ID, 90)));
    let a = p.handle(t0, Event::Keepalive(C2));
    assert!(a
        .iter()
        .any(|x| matches!(x, Action::SessionUp { conn, .. } if *conn == C2)));
    assert_eq!(
        p.state(),
        State::Established,
        "the established one is the session"
    );
    assert_eq!(p.session().connection(), Some((C2, Direction::Inbound)));
    // Our identifier is the higher: the late C1 is the one the identifiers favour, so it
    // waits for the peer's verdict first (see the race tests below); none comes.
    let a = p.handle(t0, Event::Open(C1, peer_open(65002, PEER_ID, 90)));
    assert!(sent(&a).is_empty(), "{a:?}");
    let a = p.handle_timeout(t0 + COLLISION_VERDICT_WAIT);
    let n = notification(&a).unwrap();
    assert_eq!((u8::from(n.code), n.subcode), (6, 7));
    assert!(closes(&a, C1));
    assert!(p.secondary().is_none());
    assert_eq!(p.state(), State::Established);
}

// ----- the late OPEN the identifiers favour (module docs of collision.rs) ------------------

/// What the peer does in one step of a collision script.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Its OPEN on C2 (the connection it opened to us).
    OpenC2,
    /// Its KEEPALIVE on C2.
    KeepaliveC2,
    /// Cease/Connection Collision Resolution on C1 (ours), then the close.
    CeaseC1,
    /// C1 closed without NOTIFICATION.
    CloseC1,
    /// Cease/Connection Collision Resolution on C2.
    CeaseC2,
    /// An UPDATE on C1.
    UpdateC1,
    /// Time passes (milliseconds), timers fire.
    Wait(u64),
}

/// What a script ends with, counted over every action.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    state: State,
    conn: Option<ConnId>,
    ups: usize,
    downs: usize,
    moves: usize,
    /// Connections we sent 6/7 on.
    dumped: Vec<ConnId>,
}

/// Our connection C1 Established, the peer's C2 in OpenSent (its OPEN not here yet): the
/// race of issue 12 item 7's rest. `local_id` decides who the identifiers favour.
fn established_on_c1(local_id: Ipv4Addr, t0: Instant) -> (Peer, Vec<Action>) {
    let mut p = collided(local_id, t0);
    let mut all = p.handle(t0, Event::Open(C1, peer_open(65002, PEER_ID, 90)));
    all.extend(p.handle(t0, Event::Keepalive(C1)));
    assert_eq!(p.state(), State::Established);
    assert_eq!(p.secondary().map(Session::state), Some(State::OpenSent));
    (p, all)
}

fn run(local_id: Ipv4Addr, script: &[Step]) -> (Outcome, Vec<Action>) {
    let t0 = Instant::now();
    let (mut p, mut all) = established_on_c1(local_id, t0);
    let cease = cease67();
    let mut now = t0;
    for step in script {
        let a = match *step {
            Step::OpenC2 => p.handle(now, Event::Open(C2, peer_open(65002, PEER_ID, 90))),
            Step::KeepaliveC2 => p.handle(now, Event::Keepalive(C2)),
            Step::CeaseC1 => p.handle(now, Event::Notification(C1, cease.clone())),
            Step::CloseC1 => p.handle(now, Event::TcpConnectionFails(C1)),
            Step::CeaseC2 => p.handle(now, Event::Notification(C2, cease.clone())),
            Step::UpdateC1 => p.handle(now, Event::Update(C1)),
            Step::Wait(ms) => {
                now += Duration::from_millis(ms);
                p.handle_timeout(now)
            }
        };
        all.extend(a);
    }
    let dumped = all
        .iter()
        .filter_map(|a| match a {
            Action::Send {
                conn,
                message: Message::Notification(n),
            } if (u8::from(n.code), n.subcode) == (6, 7) => Some(*conn),
            _ => None,
        })
        .collect();
    let count = |f: fn(&Action) -> bool| all.iter().filter(|a| f(a)).count();
    let outcome = Outcome {
        state: p.state(),
        conn: p.session().connection().map(|(c, _)| c),
        ups: count(|a| matches!(a, Action::SessionUp { .. })),
        downs: count(|a| matches!(a, Action::SessionDown(_))),
        moves: count(|a| matches!(a, Action::SessionMoved { .. })),
        dumped,
    };
    (outcome, all)
}

const LOWER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1); // the peer's 198.18.0.2 is higher
const HIGHER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 9);

#[test]
fn every_ordering_of_the_late_open_race_ends_with_one_session() {
    use Step::*;
    let one = |state, conn, moves, dumped: &[ConnId]| Outcome {
        state,
        conn: Some(conn),
        ups: 1,
        downs: 0,
        moves,
        dumped: dumped.to_vec(),
    };
    let cases: &[(&str, Ipv4Addr, &[Step], Outcome)] = &[
        (
            // The lab's race: the peer (higher identifier) in OpenConfirm on C1 keeps the
            // connection it opened and closes ours; its KEEPALIVE on C2 comes first.
            "peer keeps C2, its KEEPALIVE before its 6/7",
            LOWER,
            &[OpenC2, KeepaliveC2, CeaseC1],
            one(State::Established, C2, 1, &[]),
        ),
        (
            "peer keeps C2, its 6/7 before its KEEPALIVE",
            LOWER,
            &[OpenC2, CeaseC1, KeepaliveC2],
            one(State::Established, C2, 1, &[]),
        ),
        (
            "peer keeps C2, closes C1 without NOTIFICATION",
            LOWER,
            &[OpenC2, KeepaliveC2, CloseC1],
            one(State::Established, C2, 1, &[]),
        ),
        (
            // Its 6/7 on C1 overtakes its OPEN on C2 (two connections, no order between).
            "peer keeps C2, its 6/7 before its OPEN",
            LOWER,
            &[CeaseC1, OpenC2, KeepaliveC2],
            one(State::Established, C2, 1, &[]),
        ),
        (
            // The peer was Established on C1 too: it closes the late one itself.
            "peer Established on C1 closes C2",
            LOWER,
            &[OpenC2, CeaseC2],
            one(State::Established, C1, 0, &[]),
        ),
        (
            "peer shows it is Established on C1 (UPDATE)",
            LOWER,
            &[OpenC2, UpdateC1],
            one(State::Established, C1, 0, &[C2]),
        ),
        (
            // No verdict within the wait: §6.8 as written.
            "peer silent",
            LOWER,
            &[OpenC2, KeepaliveC2, Wait(2_000)],
            one(State::Established, C1, 0, &[C2]),
        ),
        (
            // The identifiers favour the Established connection: the peer, deciding as
            // we do, closes the late one itself.
            "identifiers favour C1, the peer closes C2",
            HIGHER,
            &[OpenC2, CeaseC2],
            one(State::Established, C1, 0, &[]),
        ),
        (
            "identifiers favour C1, the peer silent",
            HIGHER,
            &[OpenC2, Wait(2_000)],
            one(State::Established, C1, 0, &[C2]),
        ),
    ];
    for (name, local_id, script, want) in cases {
        let (got, all) = run(*local_id, script);
        assert_eq!(&got, want, "{name}: {all:?}");
    }
}

#[test]
fn a_held_late_connection_sends_no_keepalive_until_the_peer_closes_the_other() {
    let t0 = Instant::now();
    let (mut p, _) = established_on_c1(LOWER, t0);
    let a = p.handle(t0, Event::Open(C2, peer_open(65002, PEER_ID, 90)));
    assert!(
        sent(&a).is_empty(),
        "nothing answers the late OPEN yet: {a:?}"
    );
    let sec = p.secondary().unwrap();
    assert_eq!(sec.state(), State::OpenConfirm);
    assert!(sec.keepalive_held());
    // The peer's KEEPALIVE does not complete it, and our keepalive timer does not run on it.
    let a = p.handle(t0, Event::Keepalive(C2));
    assert!(a.is_empty(), "{a:?}");
    assert_eq!(sec_state(&p), Some(State::OpenConfirm));
    assert_eq!(p.next_deadline(), Some(t0 + COLLISION_VERDICT_WAIT));
    let a = p.handle_timeout(t0 + COLLISION_VERDICT_WAIT - Duration::from_millis(1));
    assert!(a.is_empty(), "{a:?}");
    // The verdict: our KEEPALIVE goes out on C2 before anything else is sent there.
    let a = p.handle(
        t0 + Duration::from_millis(5),
        Event::Notification(C1, cease67()),
    );
    assert!(closes(&a, C1));
    assert_eq!(sent(&a), vec![&Message::Keepalive]);
    assert!(matches!(
        a.last(),
        Some(Action::SessionMoved { from, conn, .. }) if (*from, *conn) == (C1, C2)
    ));
    assert_eq!(p.session().connection(), Some((C2, Direction::Inbound)));
    assert!(p.secondary().is_none());
    assert_eq!(p.next_deadline(), p.session().next_deadline());
}

fn sec_state(p: &Peer) -> Option<State> {
    p.secondary().map(Session::state)
}

#[test]
fn a_move_that_fails_reports_the_session_down_once() {
    use Step::*;
    // The peer closed C1 for C2, then C2 fails before it is Established.
    let (got, all) = run(LOWER, &[OpenC2, CeaseC1, Wait(10)]);
    assert_eq!(got.state, State::OpenConfirm, "{all:?}");
    assert_eq!(got.downs, 0, "held back while the move is under way");
    let t0 = Instant::now();
    let (mut p, _) = established_on_c1(LOWER, t0);
    p.handle(t0, Event::Open(C2, peer_open(65002, PEER_ID, 90)));
    let cease = cease67();
    let a = p.handle(t0, Event::Notification(C1, cease.clone()));
    assert!(
        !a.iter().any(|x| matches!(x, Action::SessionDown(_))),
        "{a:?}"
    );
    assert!(a.contains(&Action::StateChanged {
        from: State::Established,
        to: State::OpenConfirm,
        reason: Some(DownReason::NotificationReceived(cease.clone())),
        conn: Some(C2),
    }));
    let a = p.handle(t0, Event::TcpConnectionFails(C2));
    let downs: Vec<_> = a
        .iter()
        .filter(|x| matches!(x, Action::SessionDown(_)))
        .collect();
    assert_eq!(downs.len(), 1, "{a:?}");
    assert_eq!(p.state(), State::Idle);
    assert!(p.session().timer(Timer::IdleHold).is_some(), "it restarts");
}

#[test]
fn a_move_not_established_within_the_wait_is_a_session_down_and_a_later_up_a_new_session() {
    let t0 = Instant::now();
    let (mut p, _) = established_on_c1(LOWER, t0);
    p.handle(t0, Event::Open(C2, peer_open(65002, PEER_ID, 90)));
    p.handle(t0, Event::Notification(C1, cease67()));
    let a = p.handle_timeout(t0 + COLLISION_VERDICT_WAIT);
    assert!(
        a.iter().any(|x| matches!(x, Action::SessionDown(_))),
        "{a:?}"
    );
    assert_eq!(p.state(), State::OpenConfirm);
    let a = p.handle(t0 + COLLISION_VERDICT_WAIT, Event::Keepalive(C2));
    assert!(
        a.iter().any(|x| matches!(x, Action::SessionUp { .. })),
        "{a:?}"
    );
    assert!(!a.iter().any(|x| matches!(x, Action::SessionMoved { .. })));
}

#[test]
fn the_established_connection_being_the_peers_and_the_late_one_ours_moves_too() {
    // Our identifier higher: the peer's connection C2 came up first, our own C1 is late
    // and favoured; the peer (in OpenConfirm on C2) keeps C1 and closes C2.
    let t0 = Instant::now();
    let mut p = collided(HIGHER, t0);
    p.handle(t0, Event::Open(C2, peer_open(65002, PEER_ID, 90)));
    p.handle(t0, Event::Keepalive(C2));
    assert_eq!(p.session().connection(), Some((C2, Direction::Inbound)));
    let a = p.handle(t0, Event::Open(C1, peer_open(65002, PEER_ID, 90)));
    assert!(sent(&a).is_empty(), "held: {a:?}");
    p.handle(t0, Event::Keepalive(C1));
    let a = p.handle(t0, Event::Notification(C2, cease67()));
    assert!(matches!(
        a.last(),
        Some(Action::SessionMoved { from, conn, .. }) if (*from, *conn) == (C2, C1)
    ));
    assert_eq!(p.session().connection(), Some((C1, Direction::Outbound)));
    assert_eq!(p.state(), State::Established);
}

#[test]
fn the_verdict_wait_is_at_most_a_third_of_the_hold_time() {
    assert_eq!(
        verdict_wait(Duration::from_secs(90)),
        COLLISION_VERDICT_WAIT
    );
    assert_eq!(verdict_wait(Duration::from_secs(3)), Duration::from_secs(1));
    assert_eq!(verdict_wait(Duration::ZERO), COLLISION_VERDICT_WAIT);
    // Negotiated 3 s: the late connection is dumped after 1 s without a verdict.
    let t0 = Instant::now();
    let (mut p, _) = established_on_c1(LOWER, t0);
    p.handle(t0, Event::Open(C2, peer_open(65002, PEER_ID, 3)));
    let a = p.handle_timeout(t0 + Duration::from_secs(1));
    assert!(closes(&a, C2), "{a:?}");
    assert_eq!(code(&a), Some((6, 7)));
}

#[test]
fn another_notification_on_the_established_connection_is_a_session_down_not_a_move() {
    // Not the peer's collision verdict (Cease/Administrative Shutdown): the session went
    // down; the other connection, held, is released as a session of its own.
    let t0 = Instant::now();
    let (mut p, _) = established_on_c1(LOWER, t0);
    p.handle(t0, Event::Open(C2, peer_open(65002, PEER_ID, 90)));
    let a = p.handle(
        t0,
        Event::Notification(
            C1,
            NotificationMessage {
                code: ErrorCode::Cease,
                subcode: 2,
                data: Vec::new(),
            },
        ),
    );
    assert!(
        a.iter().any(|x| matches!(x, Action::SessionDown(_))),
        "{a:?}"
    );
    assert!(!a.iter().any(|x| matches!(x, Action::SessionMoved { .. })));
    assert_eq!(sent(&a), vec![&Message::Keepalive]);
    assert_eq!(p.session().connection(), Some((C2, Direction::Inbound)));
}

// ----- both in OpenConfirm: the loser waits for the peer's verdict too ----------------------

/// Both connections in OpenConfirm (our KEEPALIVE sent on both), our identifier the higher
/// (`HIGHER`): the tie-break keeps C1 (ours) and holds C2 for the peer's verdict.
fn tie_broken(t0: Instant) -> (Peer, Vec<Action>) {
    let mut p = collided(HIGHER, t0);
    let mut all = p.handle(t0, Event::Open(C2, peer_open(65002, PEER_ID, 90)));
    all.extend(p.handle(t0, Event::Open(C1, peer_open(65002, PEER_ID, 90))));
    assert_eq!(p.session().connection(), Some((C1, Direction::Outbound)));
    assert!(p.secondary().is_some_and(Session::keepalive_held));
    (p, all)
}

#[test]
fn every_ordering_of_the_tie_break_race_ends_with_one_session() {
    let cease = cease67;
    // (name, the peer's events, the connection that is the session, we sent 6/7 on). One
    // SessionUp each and no SessionDown (a session Established on C1 first moves to C2).
    type Script = Vec<Event>;
    let cases: Vec<(&str, Script, ConnId, Vec<ConnId>)> = vec![
        (
            // The peer in OpenConfirm on both too: it decides as we do.
            "peer agrees: closes C2, completes C1",
            vec![Event::Notification(C2, cease()), Event::Keepalive(C1)],
            C1,
            vec![],
        ),
        (
            "peer agrees: completes C1 first, then closes C2",
            vec![Event::Keepalive(C1), Event::Notification(C2, cease())],
            C1,
            vec![],
        ),
        (
            // The mirror race: the peer had our KEEPALIVE on C2 and is Established there
            // before our OPEN on C1 reached it; §6.8 from its state closes C1.
            "peer Established on C2 closes C1",
            vec![Event::Keepalive(C2), Event::Notification(C1, cease())],
            C2,
            vec![],
        ),
        (
            "peer Established on C2 closes C1, its KEEPALIVE on C1 first",
            vec![
                Event::Keepalive(C1),
                Event::Keepalive(C2),
                Event::Notification(C1, cease()),
            ],
            C2,
            vec![],
        ),
        (
            "peer Established on C2 sends an UPDATE there",
            vec![Event::Keepalive(C2), Event::Update(C2)],
            C2,
            vec![C1],
        ),
    ];
    for (name, script, want, dumped) in cases {
        let t0 = Instant::now();
        let (mut p, mut all) = tie_broken(t0);
        for e in script {
            all.extend(p.handle(t0, e));
        }
        let ups = all
            .iter()
            .filter(|a| matches!(a, Action::SessionUp { .. }))
            .count();
        let downs = all
            .iter()
            .filter(|a| matches!(a, Action::SessionDown(_)))
            .count();
        let sent67: Vec<ConnId> = all
            .iter()
            .filter_map(|a| match a {
                Action::Send {
                    conn,
                    message: Message::Notification(_),
                } => Some(*conn),
                _ => None,
            })
            .collect();
        assert_eq!(p.state(), State::Established, "{name}: {all:?}");
        assert_eq!(
            p.session().connection().map(|(c, _)| c),
            Some(want),
            "{name}"
        );
        assert_eq!((ups, downs), (1, 0), "{name}: {all:?}");
        assert_eq!(sent67, dumped, "{name}: {all:?}");
    }
}

/// Cease/Connection Collision Resolution (RFC 4271 §6.8).
fn cease67() -> NotificationMessage {
    NotificationMessage {
        code: ErrorCode::Cease,
        subcode: 7,
        data: Vec::new(),
    }
}

#[test]
fn a_late_connection_the_identifiers_do_not_favour_is_closed_without_a_keepalive() {
    let t0 = Instant::now();
    let (mut p, _) = established_on_c1(HIGHER, t0);
    let a = p.handle(t0, Event::Open(C2, peer_open(65002, PEER_ID, 90)));
    assert!(sent(&a).is_empty(), "held for the peer's own close: {a:?}");
    let mut a = p.handle_timeout(t0 + COLLISION_VERDICT_WAIT);
    a.retain(|x| !matches!(x, Action::Send { conn, message: Message::Keepalive } if *conn == C1));
    let on_c2: Vec<_> = a
        .iter()
        .filter_map(|x| match x {
            Action::Send { conn, message } if *conn == C2 => Some(message),
            _ => None,
        })
        .collect();
    assert_eq!(on_c2, vec![&Message::Notification(cease67())], "{a:?}");
    assert!(closes(&a, C2));
    assert_eq!(p.state(), State::Established);
}

#[test]
fn a_new_connection_from_the_peer_replaces_its_previous_one_that_sent_nothing() {
    // FRR's connect timer fires: it gives up C2 (opened by it, no OPEN from it yet) and
    // connects again (C3), the close of C2 still on its way. C3 takes C2's slot.
    let t0 = Instant::now();
    let mut p = collided(LOCAL_ID, t0);
    let a = p.handle(t0, Event::TcpConnectionConfirmed(ConnId(3)));
    assert!(closes(&a, C2), "{a:?}");
    assert!(a.contains(&Action::Send {
        conn: ConnId(3),
        message: Message::Open(super::open::build_open(&cfg(), false)),
    }));
    assert_eq!(
        p.secondary().and_then(Session::connection),
        Some((ConnId(3), Direction::Inbound))
    );
    assert_eq!(p.session().connection(), Some((C1, Direction::Outbound)));
    // The late close of C2 changes nothing.
    let a = p.handle(t0, Event::TcpConnectionFails(C2));
    assert!(a.is_empty(), "{a:?}");
    assert!(p.secondary().is_some());
}
