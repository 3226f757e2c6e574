//! Table tests of the FSM with synthetic time (`t0 + Duration`).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyguard_proto::notification::{cease_subcode, open_subcode};
use anyguard_proto::{Afi, Capability, ErrorCode, Message, NotificationMessage, OpenMessage, Safi};

use super::*;

pub(super) const LOCAL_ID: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub(super) const PEER_ID: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub(super) const C1: ConnId = ConnId(1);
pub(super) const C2: ConnId = ConnId(2);

pub(super) fn cfg() -> Config {
    let mut c = Config::new(65001, LOCAL_ID, 65002);
    c.idle_hold = Duration::from_secs(1);
    c.idle_hold_max = Duration::from_secs(16);
    c.idle_hold_stable = Duration::from_secs(60);
    c
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub(super) fn peer_open(asn: u32, id: Ipv4Addr, hold: u16) -> OpenMessage {
    OpenMessage {
        version: 4,
        my_as: u16::try_from(asn).unwrap_or(AS_TRANS),
        hold_time: hold,
        bgp_identifier: id,
        capabilities: vec![
            Capability::Multiprotocol {
                afi: Afi::Ipv4,
                safi: Safi::Unicast,
            },
            Capability::RouteRefresh,
            Capability::FourOctetAs { asn },
        ],
    }
}

pub(super) fn sent(actions: &[Action]) -> Vec<&Message> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { message, .. } => Some(message),
            _ => None,
        })
        .collect()
}

pub(super) fn notification(actions: &[Action]) -> Option<&NotificationMessage> {
    sent(actions).into_iter().find_map(|m| match m {
        Message::Notification(n) => Some(n),
        _ => None,
    })
}

pub(super) fn code(actions: &[Action]) -> Option<(u8, u8)> {
    notification(actions).map(|n| (u8::from(n.code), n.subcode))
}

pub(super) fn closes(actions: &[Action], conn: ConnId) -> bool {
    actions.contains(&Action::Close { conn })
}

/// Drives a session to OpenSent on an outgoing connection C1.
fn opensent(cfg: Config, t0: Instant) -> Session {
    let mut s = Session::new(cfg);
    s.handle(t0, Event::ManualStart);
    s.handle(t0, Event::TcpCrAcked(C1));
    assert_eq!(s.state(), State::OpenSent);
    s
}

fn openconfirm(cfg: Config, t0: Instant) -> Session {
    let mut s = opensent(cfg, t0);
    s.handle(t0, Event::Open(C1, peer_open(65002, PEER_ID, 90)));
    assert_eq!(s.state(), State::OpenConfirm);
    s
}

fn established(cfg: Config, t0: Instant) -> Session {
    let mut s = openconfirm(cfg, t0);
    s.handle(t0, Event::Keepalive(C1));
    assert_eq!(s.state(), State::Established);
    s
}

fn open_error(open: OpenMessage) -> Option<(u8, u8)> {
    let t0 = Instant::now();
    let mut s = opensent(cfg(), t0);
    let a = s.handle(t0, Event::Open(C1, open));
    assert_eq!(s.state(), State::Idle);
    assert!(closes(&a, C1));
    code(&a)
}

// ----- start / Idle / Connect / Active ---------------------------------------------------

#[test]
fn manual_start_connects_and_enters_connect() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg());
    let a = s.handle(t0, Event::ManualStart);
    assert_eq!(a[0], Action::Connect);
    assert_eq!(s.state(), State::Connect);
    let retry = s.timer(Timer::ConnectRetry).unwrap();
    assert!(retry >= t0 + secs(22) && retry <= t0 + secs(30));
}

#[test]
fn passive_session_starts_in_active_and_never_connects() {
    let t0 = Instant::now();
    let mut c = cfg();
    c.passive = true;
    let mut s = Session::new(c);
    let a = s.handle(t0, Event::ManualStart);
    assert!(!a.contains(&Action::Connect));
    assert_eq!(s.state(), State::Active);
    let a = s.handle_timeout(t0 + secs(31));
    assert!(!a.contains(&Action::Connect));
    assert_eq!(s.state(), State::Active);
    assert!(s.next_deadline().unwrap() > t0 + secs(31));
}

#[test]
fn manual_start_with_passive_tcp_establishment_listens() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg());
    s.handle(t0, Event::ManualStartPassive);
    assert_eq!(s.state(), State::Active);
    let a = s.handle(t0, Event::TcpConnectionConfirmed(C1));
    assert!(matches!(sent(&a)[0], Message::Open(_)));
    assert_eq!(s.state(), State::OpenSent);
    assert_eq!(s.connection(), Some((C1, Direction::Inbound)));
}

#[test]
fn idle_refuses_connections() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg());
    let a = s.handle(t0, Event::TcpConnectionConfirmed(C1));
    assert!(closes(&a, C1));
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn outgoing_connection_sends_our_open_and_enters_opensent() {
    let t0 = Instant::now();
    let mut c = cfg();
    c.local_asn = 4_200_000_001;
    c.ipv6 = true;
    let mut s = Session::new(c);
    s.handle(t0, Event::ManualStart);
    let a = s.handle(t0, Event::TcpCrAcked(C1));
    let Message::Open(open) = sent(&a)[0] else {
        panic!("no OPEN")
    };
    assert_eq!(open.my_as, AS_TRANS);
    assert_eq!(open.asn(), 4_200_000_001);
    assert_eq!(open.hold_time, 90);
    assert_eq!(open.bgp_identifier, LOCAL_ID);
    for cap in [
        Capability::Multiprotocol {
            afi: Afi::Ipv4,
            safi: Safi::Unicast,
        },
        Capability::Multiprotocol {
            afi: Afi::Ipv6,
            safi: Safi::Unicast,
        },
        Capability::RouteRefresh,
        Capability::EnhancedRouteRefresh,
        Capability::ExtendedMessage,
    ] {
        assert!(open.capabilities.contains(&cap), "{cap:?}");
    }
    assert_eq!(s.state(), State::OpenSent);
    assert_eq!(s.timer(Timer::Hold), Some(t0 + DEFAULT_OPEN_HOLD_TIME));
    assert_eq!(s.timer(Timer::ConnectRetry), None);
}

#[test]
fn connect_retry_expiry_in_connect_starts_a_new_attempt() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg());
    s.handle(t0, Event::ManualStart);
    let a = s.handle_timeout(t0 + secs(30));
    assert!(a.contains(&Action::Connect));
    assert_eq!(s.state(), State::Connect);
    assert!(s.timer(Timer::ConnectRetry).unwrap() > t0 + secs(30));
}

#[test]
fn inbound_connection_in_connect_cancels_our_attempt() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg());
    s.handle(t0, Event::ManualStart);
    let a = s.handle(t0, Event::TcpConnectionConfirmed(C2));
    assert!(a.contains(&Action::CancelConnect));
    assert_eq!(s.state(), State::OpenSent);
}

#[test]
fn tcp_failure_in_connect_goes_idle_and_restarts_after_idle_hold() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg());
    s.handle(t0, Event::ManualStart);
    let a = s.handle(t0, Event::TcpConnectionFails(C1));
    assert_eq!(s.state(), State::Idle);
    assert!(a.iter().any(|x| matches!(
        x,
        Action::StateChanged {
            to: State::Idle,
            reason: Some(DownReason::TcpFailed),
            ..
        }
    )));
    assert_eq!(s.connect_retry_counter(), 1);
    let at = s.timer(Timer::IdleHold).unwrap();
    assert!(at >= t0 + Duration::from_millis(750) && at <= t0 + secs(1));
    let a = s.handle_timeout(at);
    assert!(a.contains(&Action::Connect));
    assert_eq!(s.state(), State::Connect);
}

#[test]
fn an_accepted_connection_gets_our_open_at_once_there_is_no_delay_open() {
    // Issue 12 finding 10: DelayOpen had no config path, and a second connection while it
    // ran replaced the first without closing it. It is gone: every connection the FSM
    // takes gets our OPEN at once, and a second one meets collision detection in OpenSent.
    let t0 = Instant::now();
    let mut c = cfg();
    c.passive = true;
    let mut s = Session::new(c);
    s.handle(t0, Event::ManualStart);
    assert_eq!(s.state(), State::Active);
    let a = s.handle(t0, Event::TcpConnectionConfirmed(C1));
    assert!(matches!(sent(&a)[..], [Message::Open(_)]), "{a:?}");
    assert_eq!(s.state(), State::OpenSent);
}

// ----- OpenSent / OpenConfirm / Established ---------------------------------------------

#[test]
fn acceptable_open_sends_keepalive_and_negotiates_hold_time() {
    let t0 = Instant::now();
    let mut s = opensent(cfg(), t0);
    let a = s.handle(t0, Event::Open(C1, peer_open(65002, PEER_ID, 30)));
    assert_eq!(sent(&a), vec![&Message::Keepalive]);
    assert_eq!(s.state(), State::OpenConfirm);
    let n = s.negotiated().unwrap();
    assert_eq!(n.hold_time, secs(30));
    assert_eq!(n.keepalive, secs(10));
    assert!(n.four_octet_as && n.ipv4_unicast && n.route_refresh && !n.ipv6_unicast);
    assert_eq!(s.timer(Timer::Hold), Some(t0 + secs(30)));
}

#[test]
fn keepalive_in_openconfirm_establishes_the_session() {
    let t0 = Instant::now();
    let mut s = openconfirm(cfg(), t0);
    let a = s.handle(t0, Event::Keepalive(C1));
    assert_eq!(s.state(), State::Established);
    assert!(a
        .iter()
        .any(|x| matches!(x, Action::SessionUp { conn, .. } if *conn == C1)));
    assert_eq!(s.established_count(), 1);
}

#[test]
fn hold_timer_expiry_in_opensent_sends_4_0() {
    let t0 = Instant::now();
    let mut s = opensent(cfg(), t0);
    let a = s.handle_timeout(t0 + DEFAULT_OPEN_HOLD_TIME);
    assert_eq!(code(&a), Some((4, 0)));
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn hold_timer_expiry_in_openconfirm_sends_4_0() {
    let t0 = Instant::now();
    let mut s = openconfirm(cfg(), t0);
    // Keepalives go out but nothing comes in.
    let a = s.handle_timeout(t0 + secs(90));
    assert_eq!(code(&a), Some((4, 0)));
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn hold_timer_expiry_in_established_sends_4_0_and_reports_session_down() {
    let t0 = Instant::now();
    let mut s = established(cfg(), t0);
    let mut a = Vec::new();
    // Step time second by second; keepalives go out, nothing comes in.
    for i in 1..=90 {
        a = s.handle_timeout(t0 + secs(i));
        if s.state() == State::Idle {
            break;
        }
    }
    assert_eq!(code(&a), Some((4, 0)));
    assert!(a.iter().any(|x| matches!(x, Action::SessionDown(_))));
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn connect_retry_is_the_timer_of_connect_and_active() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg());
    s.handle(t0, Event::ManualStart);
    assert_eq!(s.timer(Timer::Hold), None);
    assert!(s.timer(Timer::ConnectRetry).is_some());
}

#[test]
fn keepalives_go_out_at_a_third_of_the_hold_time_with_jitter() {
    let t0 = Instant::now();
    let mut s = established(cfg(), t0);
    let mut times = Vec::new();
    let mut t = t0;
    for _ in 0..10 {
        t = s.next_deadline().unwrap().min(t + secs(30));
        let a = s.handle_timeout(t);
        if a.iter().any(|x| {
            matches!(
                x,
                Action::Send {
                    message: Message::Keepalive,
                    ..
                }
            )
        }) {
            times.push(t);
        }
        s.handle(t, Event::Keepalive(C1)); // the peer keeps us alive
    }
    assert_eq!(times.len(), 10);
    let mut prev = t0;
    for t in times {
        let gap = t - prev;
        assert!(
            gap >= Duration::from_millis(22_500) && gap <= secs(30),
            "{gap:?}"
        );
        prev = t;
    }
}

#[test]
fn keepalives_are_never_closer_than_one_second_with_a_three_second_hold_time() {
    // Issue 12 finding 2: hold 3 (a router's `timers 1 3`) made the jittered third
    // 750–1000 ms; RFC 4271 §4.4 says no more often than one per second.
    let t0 = Instant::now();
    let mut s = opensent(cfg(), t0);
    s.handle(t0, Event::Open(C1, peer_open(65002, PEER_ID, 3)));
    s.handle(t0, Event::Keepalive(C1));
    assert_eq!(s.state(), State::Established);
    let mut prev = t0;
    let mut sent_count = 0;
    let mut t = t0;
    for _ in 0..50 {
        t = s.next_deadline().unwrap().min(t + secs(3));
        let a = s.handle_timeout(t);
        if sent(&a).contains(&&Message::Keepalive) {
            let gap = t - prev;
            assert!(gap >= secs(1), "KEEPALIVE {gap:?} after the previous one");
            prev = t;
            sent_count += 1;
        }
        s.handle(t, Event::Keepalive(C1));
    }
    assert!(sent_count >= 40, "{sent_count}");
}

#[test]
fn messages_up_to_65535_octets_are_received_whether_or_not_the_peer_advertised_extended_message() {
    // Issue 12 finding 4 (RFC 8654 §4): we always advertise capability 6, so we must
    // receive up to 65535 octets; we send more than 4096 only to a peer that advertised it.
    let t0 = Instant::now();
    let s = established(cfg(), t0); // the peer's OPEN has no Extended Message
    let n = s.negotiated().unwrap();
    assert!(!n.extended_message);
    assert!(super::open::build_open(&cfg(), false)
        .capabilities
        .contains(&Capability::ExtendedMessage));
    let ctx = n.decode_context();
    // A 5000-octet NOTIFICATION (Cease/2 with a long reason) decodes.
    let mut frame = vec![0xff; 16];
    frame.extend_from_slice(&5000u16.to_be_bytes());
    frame.push(3);
    frame.extend_from_slice(&[6, 2]);
    frame.resize(5000, b'x');
    assert!(Message::decode(&frame, &ctx).is_ok());
    // What we send stays within 4096.
    assert_eq!(n.max_message_len(), 4096);
    assert!(!n.encode_context().extended_message);
}

#[test]
fn zero_hold_time_disables_hold_and_keepalive_timers() {
    let t0 = Instant::now();
    let mut s = opensent(cfg(), t0);
    s.handle(t0, Event::Open(C1, peer_open(65002, PEER_ID, 0)));
    s.handle(t0, Event::Keepalive(C1));
    assert_eq!(s.state(), State::Established);
    assert_eq!(s.timer(Timer::Hold), None);
    assert_eq!(s.timer(Timer::Keepalive), None);
}

#[test]
fn openconfirm_with_a_zero_hold_time_does_not_wait_forever_for_the_keepalive() {
    // Issue 12 (minor): hold time 0 started no timer in OpenConfirm, so a peer that never
    // sent its KEEPALIVE kept the session there for ever.
    let t0 = Instant::now();
    let mut s = opensent(cfg(), t0);
    s.handle(t0, Event::Open(C1, peer_open(65002, PEER_ID, 0)));
    assert_eq!(s.state(), State::OpenConfirm);
    let bound = s.timer(Timer::Hold).expect("a bound in OpenConfirm");
    assert_eq!(bound, t0 + cfg().open_hold);
    let a = s.handle_timeout(bound);
    assert_eq!(code(&a), Some((4, 0)));
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn updates_and_keepalives_restart_the_hold_timer() {
    let t0 = Instant::now();
    let mut s = established(cfg(), t0);
    s.handle(t0 + secs(50), Event::Update(C1));
    assert_eq!(s.timer(Timer::Hold), Some(t0 + secs(140)));
    s.handle(t0 + secs(60), Event::RouteRefresh(C1));
    assert_eq!(s.timer(Timer::Hold), Some(t0 + secs(150)));
}

#[test]
fn update_in_opensent_is_fsm_error_subcode_1() {
    let t0 = Instant::now();
    let mut s = opensent(cfg(), t0);
    assert_eq!(code(&s.handle(t0, Event::Update(C1))), Some((5, 1)));
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn update_in_openconfirm_is_fsm_error_subcode_2() {
    let t0 = Instant::now();
    let mut s = openconfirm(cfg(), t0);
    assert_eq!(code(&s.handle(t0, Event::Update(C1))), Some((5, 2)));
}

#[test]
fn open_in_established_is_fsm_error_subcode_3() {
    let t0 = Instant::now();
    let mut s = established(cfg(), t0);
    let a = s.handle(t0, Event::Open(C1, peer_open(65002, PEER_ID, 90)));
    assert_eq!(code(&a), Some((5, 3)));
    assert!(a.iter().any(|x| matches!(x, Action::SessionDown(_))));
}

#[test]
fn notification_in_established_ends_the_session_without_answering() {
    let t0 = Instant::now();
    let mut s = established(cfg(), t0);
    let n = NotificationMessage {
        code: ErrorCode::Cease,
        subcode: cease_subcode::ADMINISTRATIVE_SHUTDOWN,
        data: Vec::new(),
    };
    let a = s.handle(t0, Event::Notification(C1, n.clone()));
    assert!(notification(&a).is_none());
    assert!(a.contains(&Action::SessionDown(DownReason::NotificationReceived(n))));
    assert_eq!(s.state(), State::Idle);
    assert_eq!(s.connect_retry_counter(), 1);
}

#[test]
fn version_error_notification_is_not_counted_as_a_failure() {
    let t0 = Instant::now();
    let mut s = opensent(cfg(), t0);
    let n = NotificationMessage {
        code: ErrorCode::OpenMessage,
        subcode: open_subcode::UNSUPPORTED_VERSION_NUMBER,
        data: vec![0, 4],
    };
    s.handle(t0, Event::Notification(C1, n));
    assert_eq!(s.state(), State::Idle);
    assert_eq!(s.connect_retry_counter(), 0);
    assert_eq!(s.idle_hold_time(), secs(1));
}

#[test]
fn decoder_errors_are_sent_as_their_notification() {
    let t0 = Instant::now();
    let mut s = established(cfg(), t0);
    let n = NotificationMessage {
        code: ErrorCode::UpdateMessage,
        subcode: 1,
        data: Vec::new(),
    };
    let a = s.handle(t0, Event::MessageError(C1, n));
    assert_eq!(code(&a), Some((3, 1)));
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn manual_stop_sends_cease_and_stays_idle() {
    let t0 = Instant::now();
    let mut s = established(cfg(), t0);
    let n = NotificationMessage {
        code: ErrorCode::Cease,
        subcode: cease_subcode::ADMINISTRATIVE_SHUTDOWN,
        data: b"\x0fdaemon stopping".to_vec(),
    };
    let a = s.handle(t0, Event::ManualStop(n.clone()));
    assert_eq!(notification(&a), Some(&n));
    assert!(closes(&a, C1));
    assert_eq!(s.state(), State::Idle);
    assert_eq!(s.next_deadline(), None);
}

#[test]
fn automatic_stop_restarts_after_the_given_delay_or_never() {
    let t0 = Instant::now();
    let cease1 = NotificationMessage {
        code: ErrorCode::Cease,
        subcode: cease_subcode::MAXIMUM_PREFIXES_REACHED,
        data: vec![0, 1, 1, 0, 0, 0, 10],
    };
    let mut s = established(cfg(), t0);
    let a = s.handle(
        t0,
        Event::AutomaticStop {
            notification: cease1.clone(),
            restart_after: Some(secs(60)),
        },
    );
    assert_eq!(code(&a), Some((6, 1)));
    assert_eq!(s.timer(Timer::IdleHold), Some(t0 + secs(60)));
    assert!(s.handle_timeout(t0 + secs(60)).contains(&Action::Connect));

    let mut s = established(cfg(), t0);
    s.handle(
        t0,
        Event::AutomaticStop {
            notification: cease1,
            restart_after: None,
        },
    );
    assert_eq!(s.next_deadline(), None);
    assert!(s
        .handle(t0, Event::AutomaticStart)
        .contains(&Action::Connect));
}

#[test]
fn idle_hold_time_doubles_on_repeated_failures_up_to_the_cap() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg());
    s.handle(t0, Event::ManualStart);
    let mut t = t0;
    let mut holds = Vec::new();
    for _ in 0..7 {
        s.handle(t, Event::TcpConnectionFails(C1));
        let at = s.timer(Timer::IdleHold).unwrap();
        holds.push((at - t).as_millis());
        t = at;
        s.handle_timeout(t);
        assert_eq!(s.state(), State::Connect);
    }
    let expected = [1000, 2000, 4000, 8000, 16000, 16000, 16000];
    for (h, e) in holds.iter().zip(expected) {
        assert!(*h >= e * 3 / 4 && *h <= e, "{holds:?}");
    }
}

#[test]
fn automatic_start_is_ignored_while_damped() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg());
    s.handle(t0, Event::ManualStart);
    s.handle(t0, Event::TcpConnectionFails(C1));
    assert!(s.handle(t0, Event::AutomaticStart).is_empty());
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn a_stable_session_resets_the_damping() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg());
    s.handle(t0, Event::ManualStart);
    let mut t = t0;
    for _ in 0..3 {
        s.handle(t, Event::TcpConnectionFails(C1));
        t = s.timer(Timer::IdleHold).unwrap();
        s.handle_timeout(t);
    }
    assert_eq!(s.idle_hold_time(), secs(8));
    s.handle(t, Event::TcpCrAcked(C1));
    s.handle(t, Event::Open(C1, peer_open(65002, PEER_ID, 0)));
    s.handle(t, Event::Keepalive(C1));
    assert_eq!(s.state(), State::Established);
    let later = t + secs(61);
    s.handle(later, Event::TcpConnectionFails(C1));
    let at = s.timer(Timer::IdleHold).unwrap();
    assert!(at - later <= secs(1));
    assert_eq!(s.idle_hold_time(), secs(2));
}

// ----- OPEN checks ----------------------------------------------------------------------

#[test]
fn open_with_version_3_is_rejected_with_subcode_1_and_our_version() {
    let t0 = Instant::now();
    let mut s = opensent(cfg(), t0);
    let mut o = peer_open(65002, PEER_ID, 90);
    o.version = 3;
    let a = s.handle(t0, Event::Open(C1, o));
    let n = notification(&a).unwrap();
    assert_eq!((u8::from(n.code), n.subcode), (2, 1));
    assert_eq!(n.data, vec![0, 4]);
}

#[test]
fn open_from_the_wrong_as_is_rejected_with_subcode_2() {
    assert_eq!(open_error(peer_open(65003, PEER_ID, 90)), Some((2, 2)));
}

#[test]
fn open_with_as_trans_and_no_four_octet_capability_is_rejected_for_a_4_octet_peer() {
    let t0 = Instant::now();
    let mut c = cfg();
    c.remote_asn = 4_200_000_002;
    let mut s = opensent(c.clone(), t0);
    let mut o = peer_open(4_200_000_002, PEER_ID, 90);
    o.capabilities
        .retain(|c| !matches!(c, Capability::FourOctetAs { .. }));
    assert_eq!(code(&s.handle(t0, Event::Open(C1, o))), Some((2, 2)));
    // With the capability, AS_TRANS in my_as is fine (RFC 6793).
    let mut s = opensent(c, t0);
    s.handle(t0, Event::Open(C1, peer_open(4_200_000_002, PEER_ID, 90)));
    assert_eq!(s.state(), State::OpenConfirm);
}

#[test]
fn open_from_as_zero_is_rejected_with_subcode_2() {
    let mut o = peer_open(65002, PEER_ID, 90);
    o.my_as = 0;
    assert_eq!(open_error(o), Some((2, 2)));
}

#[test]
fn open_with_identifier_zero_is_rejected_with_subcode_3() {
    assert_eq!(
        open_error(peer_open(65002, Ipv4Addr::UNSPECIFIED, 90)),
        Some((2, 3))
    );
}

#[test]
fn ibgp_open_with_our_identifier_is_rejected_but_ebgp_accepted() {
    let t0 = Instant::now();
    let mut c = cfg();
    c.remote_asn = 65001;
    let mut s = opensent(c, t0);
    let a = s.handle(t0, Event::Open(C1, peer_open(65001, LOCAL_ID, 90)));
    assert_eq!(code(&a), Some((2, 3)));
    let mut s = opensent(cfg(), t0);
    s.handle(t0, Event::Open(C1, peer_open(65002, LOCAL_ID, 90)));
    assert_eq!(s.state(), State::OpenConfirm);
}

#[test]
fn open_with_hold_time_two_is_rejected_with_subcode_6() {
    assert_eq!(open_error(peer_open(65002, PEER_ID, 2)), Some((2, 6)));
    assert_eq!(open_error(peer_open(65002, PEER_ID, 1)), Some((2, 6)));
}

#[test]
fn open_without_any_family_we_need_is_rejected_with_unsupported_capability() {
    let t0 = Instant::now();
    let mut c = cfg();
    c.ipv4 = false;
    c.ipv6 = true;
    let mut s = opensent(c, t0);
    let a = s.handle(t0, Event::Open(C1, peer_open(65002, PEER_ID, 90)));
    let n = notification(&a).unwrap();
    assert_eq!((u8::from(n.code), n.subcode), (2, 7));
    // The Multiprotocol capability for IPv6 unicast.
    assert_eq!(n.data, vec![1, 4, 0, 2, 0, 1]);
}

#[test]
fn open_missing_one_of_two_families_comes_up_and_reports_it() {
    let t0 = Instant::now();
    let mut c = cfg();
    c.ipv6 = true;
    let mut s = opensent(c, t0);
    s.handle(t0, Event::Open(C1, peer_open(65002, PEER_ID, 90)));
    let n = s.negotiated().unwrap();
    assert!(n.ipv4_unicast && !n.ipv6_unicast);
    assert_eq!(n.missing_families, vec!["ipv6-unicast"]);
}

#[test]
fn open_without_multiprotocol_capabilities_implies_ipv4_unicast() {
    let t0 = Instant::now();
    let mut s = opensent(cfg(), t0);
    let mut o = peer_open(65002, PEER_ID, 90);
    o.capabilities.clear();
    s.handle(t0, Event::Open(C1, o));
    let n = s.negotiated().unwrap();
    assert!(n.ipv4_unicast && !n.four_octet_as);
}

#[test]
fn unsupported_optional_parameter_from_the_decoder_is_sent_as_subcode_4() {
    let t0 = Instant::now();
    let mut s = opensent(cfg(), t0);
    let n = NotificationMessage {
        code: ErrorCode::OpenMessage,
        subcode: open_subcode::UNSUPPORTED_OPTIONAL_PARAMETER,
        data: Vec::new(),
    };
    let a = s.handle(t0, Event::MessageError(C1, n));
    assert_eq!(code(&a), Some((2, 4)));
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn graceful_restart_r_bit_is_set_only_before_the_first_establishment() {
    let t0 = Instant::now();
    let mut c = cfg();
    c.graceful_restart = Some(GracefulRestart {
        restart_time: secs(10),
        restarted: true,
    });
    let r_bit = |a: &[Action]| {
        sent(a).iter().find_map(|m| match m {
            Message::Open(o) => o.capabilities.iter().find_map(|c| match c {
                Capability::GracefulRestart {
                    restart_state,
                    restart_time,
                    ..
                } => Some((*restart_state, *restart_time)),
                _ => None,
            }),
            _ => None,
        })
    };
    let mut s = Session::new(c);
    s.handle(t0, Event::ManualStart);
    assert_eq!(
        r_bit(&s.handle(t0, Event::TcpCrAcked(C1))),
        Some((true, 10))
    );
    s.handle(t0, Event::Open(C1, peer_open(65002, PEER_ID, 90)));
    s.handle(t0, Event::Keepalive(C1));
    s.handle(t0, Event::TcpConnectionFails(C1));
    let at = s.timer(Timer::IdleHold).unwrap();
    s.handle_timeout(at);
    assert_eq!(
        r_bit(&s.handle(at, Event::TcpCrAcked(C2))),
        Some((false, 10))
    );
}

#[test]
fn events_of_a_stale_connection_are_ignored() {
    let t0 = Instant::now();
    let mut s = established(cfg(), t0);
    assert!(s.handle(t0, Event::TcpConnectionFails(C2)).is_empty());
    assert_eq!(s.state(), State::Established);
}

// ----- RFC 9687 send hold timer ---------------------------------------------------------

#[test]
fn send_hold_timer_expires_when_nothing_is_written() {
    let t0 = Instant::now();
    let mut s = established(cfg(), t0);
    // OPEN and KEEPALIVE were queued and never written: max(8 min, 2 × 90 s) = 8 min.
    assert_eq!(s.timer(Timer::SendHold), Some(t0 + secs(480)));
    let mut last = Vec::new();
    for i in 1..=480 {
        s.handle(t0 + secs(i), Event::Keepalive(C1));
        last = s.handle_timeout(t0 + secs(i));
        if s.state() == State::Idle {
            break;
        }
    }
    assert_eq!(code(&last), Some((8, 0)));
}

#[test]
fn send_progress_rearms_and_a_drained_queue_disarms_the_send_hold_timer() {
    let t0 = Instant::now();
    let mut c = cfg();
    c.send_hold = Some(secs(20));
    let mut s = established(c, t0);
    s.handle(
        t0 + secs(5),
        Event::SendProgress {
            conn: C1,
            drained: false,
        },
    );
    assert_eq!(s.timer(Timer::SendHold), Some(t0 + secs(25)));
    s.handle(
        t0 + secs(6),
        Event::SendProgress {
            conn: C1,
            drained: true,
        },
    );
    assert_eq!(s.timer(Timer::SendHold), None);
    s.handle(t0 + secs(7), Event::SendQueued(C1));
    assert_eq!(s.timer(Timer::SendHold), Some(t0 + secs(27)));
}

#[test]
fn tcp_failure_in_opensent_goes_idle_and_is_damped() {
    let t0 = Instant::now();
    let mut s = opensent(cfg(), t0);
    let a = s.handle(t0, Event::TcpConnectionFails(C1));
    assert_eq!(s.state(), State::Idle);
    assert!(notification(&a).is_none());
    assert!(s.timer(Timer::IdleHold).is_some());
    assert_eq!(s.connect_retry_counter(), 1);
}

#[test]
fn keepalive_timer_in_openconfirm_sends_keepalive() {
    let t0 = Instant::now();
    let mut s = openconfirm(cfg(), t0);
    let at = s.timer(Timer::Keepalive).unwrap();
    assert!(at >= t0 + Duration::from_millis(22_500) && at <= t0 + secs(30));
    let a = s.handle_timeout(at);
    assert_eq!(sent(&a), vec![&Message::Keepalive]);
    assert_eq!(s.state(), State::OpenConfirm);
}

#[test]
fn manual_stop_in_connect_cancels_the_attempt_silently() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg());
    s.handle(t0, Event::ManualStart);
    let n = NotificationMessage {
        code: ErrorCode::Cease,
        subcode: 2,
        data: Vec::new(),
    };
    let a = s.handle(t0, Event::ManualStop(n));
    assert!(a.contains(&Action::CancelConnect));
    assert!(notification(&a).is_none());
    assert_eq!(s.state(), State::Idle);
    assert_eq!(s.next_deadline(), None);
}
