//! Collision-resolution tests of the two-slot wrapper (RFC 4271 §6.8, RFC 6286 §2.3).

use std::net::Ipv4Addr;
use std::time::Instant;

use anyguard_proto::{ErrorCode, Message, NotificationMessage};

use super::tests::{cfg, closes, notification, peer_open, sent, C1, C2, LOCAL_ID, PEER_ID};
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
    let a = p.handle(t0, Event::Open(C2, peer_open(65002, PEER_ID, 90)));
    assert!(a.contains(&Action::Send {
        conn: C1,
        message: Message::Notification(NotificationMessage {
            code: ErrorCode::Cease,
            subcode: 7,
            data: Vec::new()
        })
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
    let a = p.handle(t0, Event::Open(C2, peer_open(65002, PEER_ID, 90)));
    assert!(closes(&a, C1));
    assert_eq!(p.session().connection(), Some((C2, Direction::Inbound)));
}

#[test]
fn a_connection_while_established_or_a_third_one_is_closed() {
    let t0 = Instant::now();
    let mut p = collided(LOCAL_ID, t0);
    let a = p.handle(t0, Event::TcpConnectionConfirmed(ConnId(3)));
    assert!(closes(&a, ConnId(3)));

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
    let a = p.handle(t0, Event::Open(C1, peer_open(65002, PEER_ID, 90)));
    let n = notification(&a).unwrap();
    assert_eq!((u8::from(n.code), n.subcode), (6, 7));
    assert!(closes(&a, C1));
    assert!(p.secondary().is_none());
    assert_eq!(p.state(), State::Established);
}
