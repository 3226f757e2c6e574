//! The BGP speaker end to end over loopback: the daemon's peer task against a scripted
//! peer (`fakepeer`). Every wait is bounded; nothing asserts on wall-clock speed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyguard::announcer::{RibOut, RouteAttrs};
use anyguard::config::{BfdConfig, GracefulRestartConfig, MaxPrefixes, PeerConfig, PeerMode};
use anyguard::session::{
    spawn_listener, spawn_peer, LocalSpeaker, PeerEvent, PeerHandle, StopReason, Tuning,
};
use anyguard::status::model::PeerStatus;
use anyguard_proto::notification::cease_subcode;
use anyguard_proto::{Afi, ErrorCode, Message, RefreshSubtype, RouteRefreshMessage, Safi};
use ipnet::{IpNet, Ipv4Net};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::fakepeer::{self, FakeError, FakePeer, WAIT};

const LOCAL_ASN: u32 = 65001;
const PEER_ASN: u32 = 65002;
const PEER_ID: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn service() -> IpNet {
    "203.0.113.0/24".parse().unwrap()
}

fn peer_config(port: u16, mode: PeerMode, hold: u64) -> PeerConfig {
    PeerConfig {
        name: "upstream".into(),
        address: LOOPBACK,
        port,
        local_address: None,
        remote_asn: PEER_ASN,
        mode,
        hold_time: Duration::from_secs(hold),
        connect_retry: Duration::from_secs(5),
        md5_key: None,
        ttl_security: false,
        max_prefixes: None,
        graceful_restart: None,
        bfd: None,
        ipv4: true,
        ipv6: false,
        next_hop_v4: None,
        next_hop_v6: None,
        reconnect: None,
    }
}

fn local() -> LocalSpeaker {
    LocalSpeaker {
        router_id: Ipv4Addr::new(198, 18, 0, 1),
        asn: LOCAL_ASN,
        restarted: false,
        service_prefixes: vec![service()],
        tuning: Tuning {
            idle_hold: Duration::from_millis(100),
            idle_hold_max: Duration::from_millis(400),
            ..Tuning::default()
        },
        initial_routes: None,
        bfd: None,
    }
}

fn rib(prefixes: &[&str]) -> Arc<RibOut> {
    let attrs = RouteAttrs::plain();
    Arc::new(
        prefixes
            .iter()
            .map(|p| (p.parse().unwrap(), attrs.clone()))
            .collect(),
    )
}

struct Harness {
    handle: PeerHandle,
    status: watch::Receiver<PeerStatus>,
    events: mpsc::UnboundedReceiver<PeerEvent>,
    routes: watch::Sender<Arc<RibOut>>,
}

fn start(cfg: PeerConfig, local: LocalSpeaker, routes: Arc<RibOut>) -> Harness {
    let (routes_tx, routes_rx) = watch::channel(routes);
    let (status_tx, status) = watch::channel(PeerStatus::default());
    let (events_tx, events) = mpsc::unbounded_channel();
    let handle = spawn_peer(cfg, local, routes_rx, status_tx, events_tx);
    Harness {
        handle,
        status,
        events,
        routes: routes_tx,
    }
}

impl Harness {
    /// Waits for a peer event matching `f`, skipping others.
    async fn event(&mut self, f: impl Fn(&PeerEvent) -> bool) -> PeerEvent {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(e)) if f(&e) => return e,
                Ok(Some(_)) => continue,
                other => panic!("expected event, got {other:?}"),
            }
        }
    }

    /// Waits until the status satisfies `f`.
    async fn status_until(&mut self, f: impl Fn(&PeerStatus) -> bool) -> PeerStatus {
        let r = tokio::time::timeout(WAIT, self.status.wait_for(|s| f(s)))
            .await
            .map(|r| r.map(|s| s.clone()));
        match r {
            Ok(Ok(s)) => s,
            _ => panic!("status never matched: {:?}", *self.status.borrow()),
        }
    }
}

async fn listener() -> (TcpListener, u16) {
    let l = TcpListener::bind((LOOPBACK, 0)).await.unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

/// Active session: the speaker connects to our listener; handshake done.
async fn established(
    cfg_edit: impl FnOnce(&mut PeerConfig),
    routes: Arc<RibOut>,
) -> (Harness, FakePeer, TcpListener) {
    let (l, port) = listener().await;
    let mut cfg = peer_config(port, PeerMode::Active, 90);
    cfg_edit(&mut cfg);
    let ipv6 = cfg.ipv6;
    let hold = u16::try_from(cfg.hold_time.as_secs()).unwrap();
    let h = start(cfg, local(), routes);
    let mut p = FakePeer::accept(&l).await;
    p.establish(fakepeer::open(PEER_ASN, PEER_ID, hold, true, ipv6))
        .await;
    (h, p, l)
}

#[tokio::test]
async fn session_establishes_and_announces_the_desired_routes() {
    let (l, port) = listener().await;
    let mut h = start(
        peer_config(port, PeerMode::Active, 90),
        local(),
        rib(&["203.0.113.0/24"]),
    );
    let mut p = FakePeer::accept(&l).await;
    let theirs = p
        .establish(fakepeer::open(PEER_ASN, PEER_ID, 90, true, false))
        .await;
    assert_eq!(theirs.asn(), LOCAL_ASN);
    assert_eq!(theirs.bgp_identifier, Ipv4Addr::new(198, 18, 0, 1));
    assert_eq!(theirs.hold_time, 90);

    let u = p.expect_update().await;
    assert_eq!(u.nlri, vec!["203.0.113.0/24".parse::<Ipv4Net>().unwrap()]);
    assert!(u.attributes.iter().any(|a| matches!(
        a,
        anyguard_proto::PathAttribute::NextHop(nh) if *nh == Ipv4Addr::LOCALHOST
    )));

    h.event(|e| matches!(e, PeerEvent::Established { .. }))
        .await;
    let routes = h.routes.borrow().clone();
    let flushed = h.event(|e| matches!(e, PeerEvent::Flushed { .. })).await;
    let PeerEvent::Flushed {
        routes: f, session, ..
    } = flushed
    else {
        unreachable!()
    };
    assert!(Arc::ptr_eq(&f, &routes));

    let st = h.status_until(|s| s.state == "established").await;
    assert_ne!(st.session, 0, "an established session has a number");
    assert_eq!(session, st.session, "confirmed by the established session");
    assert_eq!(st.hold_time, Some(90));
    assert_eq!(st.prefixes_sent, 1);
    assert_eq!(st.established_count, 1);
    assert!(st.capabilities.contains(&"4-octet-as".to_string()));
    assert!(st.messages_sent.open == 1 && st.messages_sent.update >= 1);
    assert!(!st.since.is_empty());
}

#[tokio::test]
async fn keepalives_follow_a_third_of_the_negotiated_hold_time() {
    let (_h, mut p, _l) = established(|c| c.hold_time = Duration::from_secs(3), rib(&[])).await;
    // Negotiated 3 s: keepalive every 0.75–1 s. Over 3.5 s expect 3 or 4, and only
    // KEEPALIVEs (the route set is empty); we answer each to keep the session.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(3500);
    let mut keepalives = 0;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match p.recv_within(left).await {
            Ok(Message::Keepalive) => {
                keepalives += 1;
                p.send(&Message::Keepalive).await;
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(fakepeer::FakeError::Timeout) => break,
            Err(e) => panic!("{e:?}"),
        }
    }
    eprintln!("keepalives in 3.5 s with hold time 3 s: {keepalives}");
    assert!((3..=5).contains(&keepalives), "{keepalives}");
}

#[tokio::test]
async fn session_reconnects_after_the_peer_resets_the_connection() {
    let (mut h, p, l) = established(|_| {}, rib(&["203.0.113.0/24"])).await;
    h.status_until(|s| s.state == "established").await;
    // Reset: SO_LINGER 0 then close sends a RST.
    socket2::SockRef::from(&p.stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(p);
    h.event(|e| matches!(e, PeerEvent::Down { .. })).await;
    // The damped idle hold (100 ms here) brings the session back.
    let mut p = FakePeer::accept(&l).await;
    p.establish(fakepeer::open(PEER_ASN, PEER_ID, 90, true, false))
        .await;
    let u = p.expect_update().await;
    assert_eq!(u.nlri.len(), 1, "the Adj-RIB-Out is re-sent after a reset");
    let st = h
        .status_until(|s| s.state == "established" && s.established_count == 2)
        .await;
    assert!(st.last_error.is_some());
}

#[tokio::test]
async fn silent_peer_gets_hold_timer_expired() {
    let (mut h, mut p, _l) = established(|c| c.hold_time = Duration::from_secs(3), rib(&[])).await;
    // We never answer: after 3 s the speaker sends 4/0 and closes.
    let n = p.expect_notification_within(Duration::from_secs(8)).await;
    assert_eq!((n.code, n.subcode), (ErrorCode::HoldTimerExpired, 0));
    p.expect_closed(Duration::from_secs(5)).await;
    let st = h.status_until(|s| s.last_notification_sent.is_some()).await;
    assert_eq!(st.last_notification_sent.unwrap().code, 4);
}

#[tokio::test]
async fn max_prefix_limit_sends_cease_1_with_family_and_limit() {
    let (mut h, mut p, _l) = established(
        |c| {
            c.max_prefixes = Some(MaxPrefixes {
                limit: 100,
                restart: None,
            })
        },
        rib(&[]),
    )
    .await;
    let prefixes: Vec<Ipv4Net> = fakepeer::benchmark_v4_prefixes().take(101).collect();
    p.send(&Message::Update(fakepeer::announce_v4(PEER_ASN, prefixes)))
        .await;
    let n = p.expect_notification().await;
    assert_eq!((n.code, n.subcode), (ErrorCode::Cease, 1));
    assert_eq!(n.data, vec![0, 1, 1, 0, 0, 0, 100]);
    p.expect_closed(Duration::from_secs(5)).await;
    let st = h.status_until(|s| s.state == "idle").await;
    assert!(st.last_error.unwrap().contains("maximum prefixes"));
}

#[tokio::test]
async fn shutdown_sends_cease_with_the_shutdown_communication() {
    let (h, mut p, _l) = established(|_| {}, rib(&[])).await;
    let Harness { handle, status, .. } = h;
    let stop = tokio::spawn(handle.shutdown(StopReason::Operator("drain by operator".into())));
    let n = p.expect_notification().await;
    assert_eq!((n.code, n.subcode), (ErrorCode::Cease, 2));
    assert_eq!(
        n.shutdown_communication().map(|c| c.0),
        Some("drain by operator".to_string())
    );
    tokio::time::timeout(WAIT, stop).await.unwrap().unwrap();
    let st = status.borrow().clone();
    assert_eq!(st.state, "idle");
    let sent = st.last_notification_sent.unwrap();
    assert_eq!(sent.name, "Cease/Administrative Shutdown");
    assert_eq!(sent.communication.as_deref(), Some("drain by operator"));
}

#[tokio::test]
async fn peer_removed_by_reload_is_cease_3() {
    let (h, mut p, _l) = established(|_| {}, rib(&[])).await;
    let stop = tokio::spawn(h.handle.shutdown(StopReason::PeerRemoved));
    let n = p.expect_notification().await;
    assert_eq!((n.code, n.subcode), (ErrorCode::Cease, 3));
    tokio::time::timeout(WAIT, stop).await.unwrap().unwrap();
}

#[tokio::test]
async fn route_changes_send_only_the_difference_and_report_flushed() {
    let (mut h, mut p, _l) = established(|_| {}, rib(&["203.0.113.0/24", "198.51.100.0/24"])).await;
    let u = p.expect_update().await;
    assert_eq!(u.nlri.len(), 2);
    let desired = rib(&["198.51.100.0/24"]);
    h.routes.send(desired.clone()).unwrap();
    let u = p.expect_update().await;
    assert_eq!(
        u.withdrawn,
        vec!["203.0.113.0/24".parse::<Ipv4Net>().unwrap()]
    );
    assert!(u.nlri.is_empty());
    let e = h
        .event(|e| matches!(e, PeerEvent::Flushed { routes, .. } if Arc::ptr_eq(routes, &desired)))
        .await;
    assert!(matches!(e, PeerEvent::Flushed { .. }));
    h.status_until(|s| s.prefixes_sent == 1).await;
}

#[tokio::test]
async fn a_peer_that_never_connects_reports_the_desired_routes_as_flushed() {
    // Nobody listens on this port. The peer holds none of our routes, so the daemon's
    // shutdown must not wait for it to confirm anything.
    let port = TcpListener::bind((LOOPBACK, 0))
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let desired = rib(&["203.0.113.0/24"]);
    let mut h = start(
        peer_config(port, PeerMode::Active, 90),
        local(),
        desired.clone(),
    );
    let e = h
        .event(|e| matches!(e, PeerEvent::Flushed { routes, .. } if Arc::ptr_eq(routes, &desired)))
        .await;
    assert!(matches!(e, PeerEvent::Flushed { .. }));
    assert_ne!(h.status.borrow().state, "established");
    tokio::time::timeout(WAIT, h.handle.shutdown(StopReason::DaemonStopping))
        .await
        .unwrap();
}

#[tokio::test]
async fn route_refresh_resends_the_adj_rib_out() {
    let (_h, mut p, _l) = established(|_| {}, rib(&["203.0.113.0/24"])).await;
    p.expect_update().await;
    p.send(&Message::RouteRefresh(RouteRefreshMessage {
        afi: Afi::Ipv4,
        subtype: RefreshSubtype::Request,
        safi: Safi::Unicast,
    }))
    .await;
    let u = p.expect_update().await;
    assert_eq!(u.nlri, vec!["203.0.113.0/24".parse::<Ipv4Net>().unwrap()]);
}

#[tokio::test]
async fn route_refresh_for_a_family_we_did_not_advertise_is_ignored() {
    // Issue 12 finding 9. RFC 2918 §4 / RFC 7313 §4: a ROUTE-REFRESH for an <AFI, SAFI> we
    // did not advertise "shall" be ignored — with Enhanced Route Refresh it got a BoRR and
    // an EoRR for IPv6 on an IPv4-only session.
    let (l, port) = listener().await;
    let h = start(
        peer_config(port, PeerMode::Active, 90),
        local(),
        rib(&["203.0.113.0/24"]),
    );
    let mut p = FakePeer::accept(&l).await;
    let mut open = fakepeer::open(PEER_ASN, PEER_ID, 90, true, true);
    open.capabilities
        .push(anyguard_proto::Capability::EnhancedRouteRefresh);
    let ours = p.establish(open).await;
    assert!(!ours
        .capabilities
        .contains(&anyguard_proto::Capability::Multiprotocol {
            afi: Afi::Ipv6,
            safi: Safi::Unicast
        }));
    p.expect_update().await; // the route
    let request = |afi| {
        Message::RouteRefresh(RouteRefreshMessage {
            afi,
            subtype: RefreshSubtype::Request,
            safi: Safi::Unicast,
        })
    };
    p.send(&request(Afi::Ipv6)).await;
    p.send(&request(Afi::Ipv4)).await;
    // The IPv4 request is answered, BoRR, route, EoRR; nothing came for IPv6 before it.
    let framing = |subtype| {
        Message::RouteRefresh(RouteRefreshMessage {
            afi: Afi::Ipv4,
            subtype,
            safi: Safi::Unicast,
        })
    };
    let mut got = Vec::new();
    for _ in 0..20 {
        let m = p.recv_skip_keepalives().await.unwrap();
        let end = m == framing(RefreshSubtype::End);
        got.push(m);
        if end {
            break;
        }
    }
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0], framing(RefreshSubtype::Begin), "{got:?}");
    assert!(
        matches!(&got[1], Message::Update(u) if u.nlri.len() == 1),
        "{got:?}"
    );
    drop(h);
}

#[tokio::test]
async fn graceful_restart_sends_end_of_rib_after_the_initial_updates() {
    let (_h, mut p, _l) = established(
        |c| {
            c.graceful_restart = Some(GracefulRestartConfig {
                restart_time: Duration::from_secs(10),
            })
        },
        rib(&["203.0.113.0/24"]),
    )
    .await;
    let u = p.expect_update().await;
    assert_eq!(u.nlri.len(), 1);
    let eor = p.expect_update().await;
    assert_eq!(eor.is_end_of_rib(), Some((Afi::Ipv4, Safi::Unicast)));
}

/// Found in the lab: a restarted daemon's sessions come up before its health checks have
/// risen; an End-of-RIB sent then (with nothing announced) made FRR flush the routes it had
/// kept for us, so graceful restart never kept a prefix. EoR must follow the initial update.
#[tokio::test]
async fn graceful_restart_end_of_rib_waits_until_the_services_are_decided() {
    let (l, port) = listener().await;
    let mut cfg = peer_config(port, PeerMode::Active, 90);
    cfg.graceful_restart = Some(GracefulRestartConfig {
        restart_time: Duration::from_secs(10),
    });
    let (initial_tx, initial_rx) = watch::channel(false);
    let mut speaker = local();
    speaker.restarted = true;
    speaker.initial_routes = Some(initial_rx);
    let h = start(cfg, speaker, rib(&[]));
    let mut p = FakePeer::accept(&l).await;
    p.establish(fakepeer::open(PEER_ASN, PEER_ID, 90, true, false))
        .await;

    // The service rises while the session is up but before everything is decided: its
    // route goes out, and no End-of-RIB came before it.
    h.routes.send_replace(rib(&["203.0.113.0/24"]));
    let u = p.expect_update().await;
    assert_eq!(
        u.is_end_of_rib(),
        None,
        "End-of-RIB before the initial update"
    );
    assert_eq!(u.nlri, vec!["203.0.113.0/24".parse::<Ipv4Net>().unwrap()]);

    // Every service decided: now the End-of-RIB.
    initial_tx.send_replace(true);
    let eor = p.expect_update().await;
    assert_eq!(eor.is_end_of_rib(), Some((Afi::Ipv4, Safi::Unicast)));
}

#[tokio::test]
async fn received_service_routes_are_reported() {
    let (mut h, mut p, _l) = established(|_| {}, rib(&[])).await;
    let routes = vec![
        "203.0.113.0/24".parse().unwrap(),
        "198.18.0.0/16".parse().unwrap(),
    ];
    p.send(&Message::Update(fakepeer::announce_v4(PEER_ASN, routes)))
        .await;
    let e = h
        .event(|e| matches!(e, PeerEvent::ServiceRoutes { .. }))
        .await;
    let PeerEvent::ServiceRoutes { routes, .. } = e else {
        unreachable!()
    };
    assert_eq!(routes, vec![service()]);
    let st = h.status_until(|s| s.prefixes_received_ipv4 == 2).await;
    assert_eq!(
        st.service_routes_received,
        vec!["203.0.113.0/24".to_string()]
    );
}

#[tokio::test]
async fn passive_peer_is_reached_through_the_listener_and_strangers_are_refused() {
    let listener = spawn_listener("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr();
    let mut h = start(
        peer_config(addr.port(), PeerMode::Passive, 90),
        local(),
        rib(&["203.0.113.0/24"]),
    );
    listener
        .add_peer(LOOPBACK, h.handle.acceptor(), None)
        .await
        .unwrap();

    // A stranger (127.0.0.2) is closed without a word.
    let mut stranger = FakePeer::connect_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), addr)
        .await
        .unwrap();
    stranger.expect_closed(Duration::from_secs(5)).await;
    assert_eq!(listener.stats().rejected_unknown, 1);

    // The configured peer speaks first: the passive speaker answers.
    let mut p = FakePeer::connect(addr).await.unwrap();
    p.send(&Message::Open(fakepeer::open(
        PEER_ASN, PEER_ID, 90, true, false,
    )))
    .await;
    p.expect_open().await;
    p.expect_keepalive().await;
    p.send(&Message::Keepalive).await;
    p.decode.four_octet_as = true;
    p.encode.four_octet_as = true;
    p.expect_update().await;
    h.status_until(|s| s.state == "established").await;
    assert_eq!(listener.stats().accepted, 1);
    listener.shutdown();
}

#[tokio::test]
async fn open_from_the_wrong_as_is_refused_on_the_wire() {
    let (l, port) = listener().await;
    let mut h = start(peer_config(port, PeerMode::Active, 90), local(), rib(&[]));
    let mut p = FakePeer::accept(&l).await;
    p.expect_open().await;
    p.send(&Message::Open(fakepeer::open(
        65099, PEER_ID, 90, true, false,
    )))
    .await;
    let n = p.expect_notification().await;
    assert_eq!((n.code, n.subcode), (ErrorCode::OpenMessage, 2));
    let st = h.status_until(|s| s.last_notification_sent.is_some()).await;
    assert_eq!(
        st.last_notification_sent.unwrap().name,
        "OPEN Message Error/Bad Peer AS"
    );
}

fn vm_rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// 1M prefixes (262,142 IPv4 inside 198.18.0.0/15 and 737,858 IPv6 /52 inside
/// 2001:db8::/32) from one peer. Runs in debug builds; the UPDATEs are generated and
/// written one at a time so the generator's own memory stays small.
///
/// RSS is per process and the other tests of this binary run in parallel, so the test
/// re-runs itself alone in a child process and measures there.
#[tokio::test]
async fn a_million_received_prefixes_keep_memory_flat() {
    const CHILD: &str = "ANYGUARD_RSS_CHILD";
    if std::env::var_os(CHILD).is_none() {
        let child = tokio::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "session::a_million_received_prefixes_keep_memory_flat",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(900), child)
            .await
            .expect("child test timed out")
            .expect("child test did not run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!("{stderr}");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(stderr.contains("1M prefixes"));
        return;
    }
    million_prefixes_in_this_process().await;
}

async fn million_prefixes_in_this_process() {
    const V6: u32 = 737_858;
    let (mut h, mut p, _l) = established(|c| c.ipv6 = true, rib(&[])).await;
    h.status_until(|s| s.state == "established").await;
    let before = vm_rss_kib();
    let started = std::time::Instant::now();

    let mut v4 = fakepeer::benchmark_v4_prefixes().peekable();
    let mut sent_v4 = 0u64;
    while v4.peek().is_some() {
        let chunk: Vec<Ipv4Net> = v4.by_ref().take(700).collect();
        sent_v4 += u64::try_from(chunk.len()).unwrap();
        p.send(&Message::Update(fakepeer::announce_v4(PEER_ASN, chunk)))
            .await;
    }
    let mut i = 0;
    while i < V6 {
        let n = (V6 - i).min(450);
        let chunk = (i..i + n).map(fakepeer::benchmark_v6_prefix).collect();
        p.send(&Message::Update(fakepeer::announce_v6(PEER_ASN, chunk)))
            .await;
        i += n;
    }
    // A service route last: its event proves every earlier UPDATE was processed.
    p.send(&Message::Update(fakepeer::announce_v4(
        PEER_ASN,
        vec!["203.0.113.0/24".parse().unwrap()],
    )))
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    loop {
        match tokio::time::timeout_at(deadline, h.events.recv()).await {
            Ok(Some(PeerEvent::ServiceRoutes { .. })) => break,
            Ok(Some(_)) => continue,
            other => panic!("never processed: {other:?}"),
        }
    }
    let elapsed = started.elapsed();
    let after = vm_rss_kib();
    let st = h.status.borrow().clone();
    eprintln!(
        "1M prefixes: sent v4 {} v6 {V6}; counted v4 {} v6 {} (v6 error {:+.3} %); \
         VmRSS before {:?} KiB, after {:?} KiB; {:.1} s in a debug build",
        sent_v4 + 1,
        st.prefixes_received_ipv4,
        st.prefixes_received_ipv6,
        (f64::from(u32::try_from(st.prefixes_received_ipv6).unwrap()) - f64::from(V6))
            / f64::from(V6)
            * 100.0,
        before,
        after,
        elapsed.as_secs_f64(),
    );
    // IPv4 up to /24 is exact; the /25–/32 part is a linear-counting estimate.
    assert!(st.prefixes_received_ipv4.abs_diff(sent_v4 + 1) < (sent_v4 + 1) / 100);
    assert!(st.prefixes_received_ipv6.abs_diff(u64::from(V6)) < u64::from(V6) / 100);
    assert_eq!(st.state, "established");
    if let (Some(b), Some(a)) = (before, after) {
        // Bitmaps: 4 MiB (IPv4 ≤ /24, sparsely touched) + 2 × 2 MiB hashed.
        assert!(a.saturating_sub(b) < 24 * 1024, "RSS grew by {} KiB", a - b);
    } else {
        eprintln!("SKIPPED: RSS check because /proc/self/status has no VmRSS");
    }
}

#[tokio::test]
async fn md5_protected_session_establishes() {
    let peer_addr = LOOPBACK;
    let sock = match anyguard::session::transport::listen(
        SocketAddr::new(LOOPBACK, 0),
        &[(peer_addr, b"k3y".to_vec())],
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("SKIPPED: md5 session because TCP_MD5SIG is unavailable: {e}");
            return;
        }
    };
    let port = sock.local_addr().unwrap().port();
    let mut cfg = peer_config(port, PeerMode::Active, 90);
    cfg.md5_key = Some(b"k3y".to_vec());
    cfg.ttl_security = true;
    let mut h = start(cfg, local(), rib(&[]));
    let mut p = FakePeer::accept(&sock).await;
    p.establish(fakepeer::open(PEER_ASN, PEER_ID, 90, true, false))
        .await;
    h.status_until(|s| s.state == "established").await;
}

#[tokio::test]
async fn garbage_from_one_peer_resets_only_that_peer() {
    let (mut good_h, mut good, _l1) =
        established(|c| c.hold_time = Duration::from_secs(3), rib(&[])).await;
    let (mut bad_h, mut bad, _l2) = established(|_| {}, rib(&[])).await;
    good_h.status_until(|s| s.state == "established").await;
    bad_h.status_until(|s| s.state == "established").await;

    // A header with a broken marker: Message Header Error / Connection Not Synchronized.
    let mut frame = vec![0u8; 19];
    frame[16] = 0;
    frame[17] = 19;
    frame[18] = 4;
    bad.send_raw(&frame).await;
    let n = bad.expect_notification().await;
    assert_eq!((n.code, n.subcode), (ErrorCode::MessageHeader, 1));
    bad.expect_closed(Duration::from_secs(5)).await;

    // The other session keeps exchanging keepalives.
    for _ in 0..2 {
        match good.recv_within(Duration::from_secs(3)).await {
            Ok(Message::Keepalive) => good.send(&Message::Keepalive).await,
            other => panic!("good peer disturbed: {other:?}"),
        }
    }
    assert_eq!(good_h.status.borrow().state, "established");
}

/// An UPDATE frame from hex attributes and NLRI (no withdrawals).
fn raw_update(attrs: &str, nlri: &str) -> Vec<u8> {
    let hex = |s: &str| {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect::<Vec<u8>>()
    };
    let (a, n) = (hex(attrs), hex(nlri));
    let len = 19 + 4 + a.len() + n.len();
    let mut f = vec![0xff; 16];
    f.extend_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
    f.push(2);
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&u16::try_from(a.len()).unwrap().to_be_bytes());
    f.extend_from_slice(&a);
    f.extend_from_slice(&n);
    f
}

#[tokio::test]
async fn an_update_without_nlri_and_a_malformed_origin_resets_the_session() {
    // Issue 12 finding 5 (RFC 7606 §5.2): it was accepted silently. The NOTIFICATION is
    // the ORIGIN's own (3/6, the attribute as data).
    let (mut h, mut p, _l) = established(|_| {}, rib(&[])).await;
    h.status_until(|s| s.state == "established").await;
    p.send_raw(&raw_update("40 01 01 07  40 02 06 02 01 0000fde9", ""))
        .await;
    let n = p.expect_notification().await;
    assert_eq!(
        (n.code, n.subcode, n.data),
        (ErrorCode::UpdateMessage, 6, vec![0x40, 1, 1, 7])
    );
    p.expect_closed(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn an_mp_reach_overrunning_the_attribute_list_resets_the_session() {
    // Issue 12 finding 5 (RFC 7606 §3 last paragraph, RFC 4760 §7): the classic NLRI alone
    // was treated as withdrawn and the IPv6 prefixes left as they were. Now 3/9.
    let (mut h, mut p, _l) = established(|_| {}, rib(&[])).await;
    h.status_until(|s| s.state == "established").await;
    let mp = "80 0e 30 0002 01 10 20010db8000000000000000000000001 00 30 20010db80100";
    p.send_raw(&raw_update(
        &format!("40 01 01 00  40 02 06 02 01 0000fde9  40 03 04 c6120001 {mp}"),
        "18cb0071",
    ))
    .await;
    let n = p.expect_notification().await;
    assert_eq!((n.code, n.subcode), (ErrorCode::UpdateMessage, 9));
    p.expect_closed(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn collision_in_both_mode_keeps_the_connection_of_the_higher_identifier() {
    let listener = spawn_listener("127.0.0.1:0".parse().unwrap()).unwrap();
    let (l, port) = self::listener().await;
    let mut cfg = peer_config(port, PeerMode::Both, 90);
    cfg.name = "both".into();
    let mut h = start(cfg, local(), rib(&[]));
    listener
        .add_peer(LOOPBACK, h.handle.acceptor(), None)
        .await
        .unwrap();

    // Connection A: the speaker's, to us. It sends its OPEN and waits (OpenSent).
    let mut a = FakePeer::accept(&l).await;
    a.expect_open().await;
    // Connection B: ours, to the speaker's listener. Our identifier 198.18.0.2 is higher
    // than the speaker's 198.18.0.1, so B (opened by us) must survive.
    let mut b = FakePeer::connect(listener.local_addr()).await.unwrap();
    b.expect_open().await;
    b.send(&Message::Open(fakepeer::open(
        PEER_ASN, PEER_ID, 90, true, false,
    )))
    .await;
    // RFC 4271 §6.8 resolves on receipt of an OPEN against connections in OpenConfirm:
    // nothing is decided while A has not received one (issue 12 finding 7).
    match a.recv_within(Duration::from_millis(500)).await {
        Err(FakeError::Timeout) => {}
        other => panic!("A was resolved before its OPEN: {other:?}"),
    }
    // Like a real router, we answer on A too; now both have an OPEN and the tie-break runs.
    a.send(&Message::Open(fakepeer::open(
        PEER_ASN, PEER_ID, 90, true, false,
    )))
    .await;
    let n = a.expect_notification().await;
    assert_eq!((n.code, n.subcode), (ErrorCode::Cease, 7));
    a.expect_closed(Duration::from_secs(5)).await;
    b.expect_keepalive().await;
    b.send(&Message::Keepalive).await;
    h.status_until(|s| s.state == "established").await;
    listener.shutdown();
}

/// `mode = "both"` against a scripted router (identifier 198.18.0.2, higher than
/// anyguard's 198.18.0.1): anyguard's connection C1 to the router and the router's C2 to
/// anyguard, each with anyguard's OPEN read. Returns the harness, C1, C2, anyguard's
/// listener and the router's OPEN.
async fn two_connections(
    name: &str,
) -> (
    Harness,
    FakePeer,
    FakePeer,
    anyguard::session::Listener,
    Message,
) {
    let listener = spawn_listener("127.0.0.1:0".parse().unwrap()).unwrap();
    let (l, port) = self::listener().await;
    let mut cfg = peer_config(port, PeerMode::Both, 90);
    cfg.name = name.into();
    let h = start(cfg, local(), rib(&["203.0.113.0/24"]));
    listener
        .add_peer(LOOPBACK, h.handle.acceptor(), None)
        .await
        .unwrap();
    // C1, anyguard's: its OPEN.
    let mut c1 = FakePeer::accept(&l).await;
    c1.expect_open().await;
    // C2, the router's: anyguard answers with its OPEN (a second connection in OpenSent).
    let mut c2 = FakePeer::connect(listener.local_addr()).await.unwrap();
    c2.expect_open().await;
    for c in [&mut c1, &mut c2] {
        c.decode.four_octet_as = true;
        c.encode.four_octet_as = true;
    }
    let open = Message::Open(fakepeer::open(PEER_ASN, PEER_ID, 90, true, false));
    (h, c1, c2, listener, open)
}

/// The collision race of issue 12 item 7, scripted (`two_connections`): anyguard is
/// Established on C1 while the router is still in OpenConfirm there, when the router's
/// OPEN arrives on C2. Returns the harness, C1, C2 and anyguard's listener, with anyguard
/// holding C2 (its KEEPALIVE not sent).
async fn late_open_race() -> (Harness, FakePeer, FakePeer, anyguard::session::Listener) {
    let (mut h, mut c1, mut c2, listener, open) = two_connections("race").await;
    let open = || open.clone();
    // The router answers on C1 (OPEN, KEEPALIVE): anyguard is Established there. The
    // router has not read anyguard's KEEPALIVE yet: still OpenConfirm on C1 for it.
    c1.send(&open()).await;
    c1.send(&Message::Keepalive).await;
    c1.expect_keepalive().await;
    h.status_until(|s| s.state == "established").await;
    // The router's late OPEN on C2. RFC 4271 §6.8 from anyguard's state closes it (an
    // Established connection wins), from the router's state (both in OpenConfirm) keeps
    // it (the connection the higher identifier opened). anyguard holds it instead: no
    // KEEPALIVE, no NOTIFICATION while the router decides.
    c2.send(&open()).await;
    match c2.recv_within(Duration::from_millis(500)).await {
        Err(FakeError::Timeout) => {}
        other => panic!("the late connection was answered before the router's verdict: {other:?}"),
    }
    (h, c1, c2, listener)
}

/// Cease/Connection Collision Resolution (RFC 4271 §6.8), as the router closes a connection.
fn cease_collision() -> Message {
    Message::Notification(anyguard_proto::NotificationMessage {
        code: ErrorCode::Cease,
        subcode: cease_subcode::CONNECTION_COLLISION_RESOLUTION,
        data: Vec::new(),
    })
}

/// After the move: one session, on C2, with the routes, never reported down.
async fn one_session_on_c2(mut h: Harness, mut c2: FakePeer) {
    let u = c2.expect_update().await;
    assert_eq!(u.nlri, vec!["203.0.113.0/24".parse::<Ipv4Net>().unwrap()]);
    let st = h.status_until(|s| s.state == "established").await;
    assert_eq!(st.established_count, 1, "a second establishment: {st:?}");
    let n = st
        .last_notification_received
        .clone()
        .expect("the router's 6/7");
    assert_eq!((n.code, n.subcode), (6, 7));
    assert!(st.last_notification_sent.is_none(), "{st:?}");
    // Every event so far: one Established, no Down.
    let mut ups = 0;
    while let Ok(e) = h.events.try_recv() {
        match e {
            PeerEvent::Established { .. } => ups += 1,
            PeerEvent::Down { reason, .. } => panic!("session reported down: {reason}"),
            _ => {}
        }
    }
    assert_eq!(ups, 1);
    // Still the one session a while later, carried by C2 (its KEEPALIVEs answered).
    c2.send(&Message::Keepalive).await;
    match c2.recv_within(Duration::from_millis(300)).await {
        Err(FakeError::Timeout) | Ok(Message::Keepalive) => {}
        other => panic!("C2 after the move: {other:?}"),
    }
    assert_eq!(h.status.borrow().established_count, 1);
    assert_eq!(h.status.borrow().state, "established");
}

#[tokio::test]
async fn collision_race_moves_the_session_to_the_connection_the_router_keeps() {
    let (h, mut c1, mut c2, listener) = late_open_race().await;
    // The router's verdict as BIRD and FRR give it: KEEPALIVE on C2 (here first), then
    // 6/7 on C1 and the close.
    c2.send(&Message::Keepalive).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    c1.send(&cease_collision()).await;
    drop(c1);
    // anyguard's held KEEPALIVE, then its routes, on C2.
    c2.expect_keepalive().await;
    one_session_on_c2(h, c2).await;
    listener.shutdown();
}

#[tokio::test]
async fn collision_race_with_the_verdict_before_the_routers_keepalive_still_has_one_session() {
    let (h, mut c1, mut c2, listener) = late_open_race().await;
    c1.send(&cease_collision()).await;
    drop(c1);
    // The verdict releases anyguard's KEEPALIVE on C2; the router's comes after it.
    c2.expect_keepalive().await;
    c2.send(&Message::Keepalive).await;
    one_session_on_c2(h, c2).await;
    listener.shutdown();
}

#[tokio::test]
async fn collision_race_without_a_verdict_closes_the_late_connection_and_keeps_the_session() {
    let (mut h, mut c1, mut c2, listener) = late_open_race().await;
    // The router was Established on C1 too and says nothing on C2: after the wait,
    // §6.8 as written (6/7 on the late connection); C1 stays the session.
    let n = c2
        .expect_notification_within(anyguard::fsm::COLLISION_VERDICT_WAIT * 3)
        .await;
    assert_eq!((n.code, n.subcode), (ErrorCode::Cease, 7));
    c2.expect_closed(Duration::from_secs(5)).await;
    c1.send(&Message::Keepalive).await;
    let st = h.status_until(|s| s.state == "established").await;
    assert_eq!(st.established_count, 1);
    while let Ok(e) = h.events.try_recv() {
        assert!(!matches!(e, PeerEvent::Down { .. }), "{e:?}");
    }
    listener.shutdown();
}

#[tokio::test]
async fn collision_tie_break_keeps_the_loser_the_router_is_established_on() {
    // Both connections in OpenConfirm for anyguard: the tie-break keeps C2 (opened by the
    // router, the higher identifier) and would close C1. But the router already had
    // anyguard's KEEPALIVE on C1 and is Established there: it closes C2 as the new
    // connection (RFC 4271 §6.8 from its state). anyguard waits for that verdict instead
    // of closing C1, and the session is C1: one establishment, nothing closed twice.
    let (mut h, mut c1, mut c2, listener, open) = two_connections("tie").await;
    let open = || open.clone();
    // The router's OPEN on C1; anyguard's KEEPALIVE there makes the router Established
    // on C1 (its own KEEPALIVE on C1 is still on the way).
    c1.send(&open()).await;
    c1.expect_keepalive().await;
    // Its OPEN on C2: anyguard has both in OpenConfirm and breaks the tie for C2.
    c2.send(&open()).await;
    c2.expect_keepalive().await;
    match c1.recv_within(Duration::from_millis(500)).await {
        Err(FakeError::Timeout) => {}
        other => panic!("C1 closed before the router's verdict: {other:?}"),
    }
    // The router's verdict from Established on C1: C2 goes.
    c2.send(&cease_collision()).await;
    drop(c2);
    c1.send(&Message::Keepalive).await;
    let u = c1.expect_update().await;
    assert_eq!(u.nlri, vec!["203.0.113.0/24".parse::<Ipv4Net>().unwrap()]);
    let st = h.status_until(|s| s.state == "established").await;
    assert_eq!(st.established_count, 1, "{st:?}");
    assert!(st.last_notification_sent.is_none(), "{st:?}");
    while let Ok(e) = h.events.try_recv() {
        assert!(!matches!(e, PeerEvent::Down { .. }), "{e:?}");
    }
    listener.shutdown();
}

#[tokio::test]
async fn a_routers_new_connection_replaces_its_previous_one_and_the_session_comes_up_once() {
    // FRR, its connect timer firing, gives up its connection (C2) and opens another (C3)
    // before anyguard has seen C2 close. C3 must not be refused as a third connection:
    // FRR then dropped the session it had just established on C1 (lab collision row).
    let (mut h, mut c1, mut c2, listener, open) = two_connections("again").await;
    let mut c3 = FakePeer::connect(listener.local_addr()).await.unwrap();
    c3.expect_open().await;
    c3.decode.four_octet_as = true;
    c3.encode.four_octet_as = true;
    c2.expect_closed(Duration::from_secs(5)).await;
    // The collision resolves between C1 and C3 as usual: the router's C3 (the higher
    // identifier's) is the session.
    c1.send(&open).await;
    c3.send(&open).await;
    c3.expect_keepalive().await;
    c3.send(&Message::Keepalive).await;
    let u = c3.expect_update().await;
    assert_eq!(u.nlri, vec!["203.0.113.0/24".parse::<Ipv4Net>().unwrap()]);
    let st = h.status_until(|s| s.state == "established").await;
    assert_eq!(st.established_count, 1, "{st:?}");
    while let Ok(e) = h.events.try_recv() {
        assert!(!matches!(e, PeerEvent::Down { .. }), "{e:?}");
    }
    listener.shutdown();
}

#[tokio::test]
async fn a_late_connection_the_identifiers_do_not_favour_is_left_for_the_router_to_close() {
    // The router's identifier 198.18.0.0 is lower than anyguard's: anyguard's C1 is the
    // one to keep, and it is Established when the router's OPEN arrives on C2. The router
    // closes C2 itself (as BIRD and FRR do); anyguard sends nothing on C2 meanwhile, so no
    // 6/7 of ours can race the router's own clean-up of C2.
    let (mut h, mut c1, mut c2, listener, _) = two_connections("lower").await;
    let open = Message::Open(fakepeer::open(
        PEER_ASN,
        Ipv4Addr::new(198, 18, 0, 0),
        90,
        true,
        false,
    ));
    c1.send(&open).await;
    c1.send(&Message::Keepalive).await;
    c1.expect_keepalive().await;
    h.status_until(|s| s.state == "established").await;
    c2.send(&open).await;
    match c2.recv_within(Duration::from_millis(500)).await {
        Err(FakeError::Timeout) => {}
        other => panic!("anyguard answered the late connection: {other:?}"),
    }
    c2.send(&cease_collision()).await;
    drop(c2);
    let u = c1.expect_update().await;
    assert_eq!(u.nlri, vec!["203.0.113.0/24".parse::<Ipv4Net>().unwrap()]);
    let st = h.status_until(|s| s.state == "established").await;
    assert_eq!(st.established_count, 1, "{st:?}");
    assert!(st.last_notification_sent.is_none(), "{st:?}");
    listener.shutdown();
}

/// A BGP session protected by BFD with a second BFD task playing the router.
async fn established_with_bfd(
    router_port: u16,
) -> (Harness, FakePeer, TcpListener, anyguard::bfd::Handle) {
    let ours = crate::bfd::driver(router_port);
    let (l, port) = listener().await;
    let mut cfg = peer_config(port, PeerMode::Active, 90);
    cfg.bfd = Some(BfdConfig {
        min_tx: crate::bfd::FAST.desired_min_tx,
        min_rx: crate::bfd::FAST.required_min_rx,
        multiplier: crate::bfd::FAST.detect_mult,
    });
    let mut speaker = local();
    speaker.bfd = Some(ours.clone());
    let h = start(cfg, speaker, rib(&["203.0.113.0/24"]));
    let mut p = FakePeer::accept(&l).await;
    p.establish(fakepeer::open(PEER_ASN, PEER_ID, 90, true, false))
        .await;
    (h, p, l, ours)
}

#[tokio::test]
async fn a_failed_bfd_session_closes_the_bgp_session_with_cease_bfd_down_and_reconnects() {
    let router = crate::bfd::driver(3784);
    let (mut h, mut p, l, ours) = established_with_bfd(crate::bfd::port(&router, LOOPBACK)).await;
    let ours_addr = SocketAddr::new(LOOPBACK, crate::bfd::port(&ours, LOOPBACK));
    let mut rs = router
        .add(ours_addr, None, crate::bfd::FAST)
        .await
        .unwrap()
        .status;
    crate::bfd::until(&mut rs, "up", |s| s.state == "up").await;
    let st = h
        .status_until(|s| {
            s.state == "established" && s.bfd.as_ref().is_some_and(|b| b.state == "up")
        })
        .await;
    assert_eq!(st.bfd.unwrap().note, None);

    // The router's BFD goes silent (its packets go to a port nobody listens on) while
    // its TCP connection stays open: only BFD can notice.
    router
        .add(SocketAddr::new(LOOPBACK, 9), None, crate::bfd::FAST)
        .await
        .unwrap();
    let mut cease = None;
    for _ in 0..100 {
        match p.recv_skip_keepalives().await {
            Ok(Message::Update(_)) => continue,
            Ok(Message::Notification(n)) => {
                cease = Some(n);
                break;
            }
            other => panic!("expected a NOTIFICATION, got {other:?}"),
        }
    }
    let n = cease.expect("no NOTIFICATION");
    assert_eq!(n.code, ErrorCode::Cease);
    assert_eq!(n.subcode, cease_subcode::BFD_DOWN, "RFC 9384 BFD Down");
    let st = h
        .status_until(|s| s.bfd.as_ref().is_some_and(|b| b.failures == 1))
        .await;
    assert_ne!(st.state, "established");
    assert_eq!(st.last_notification_sent.unwrap().subcode, 10);
    assert_eq!(st.bfd.unwrap().diag, 1, "detection time expired");
    // Reconnects as after any error.
    let _again = FakePeer::accept(&l).await;
}

#[tokio::test]
async fn bgp_does_not_wait_for_a_bfd_session_that_never_comes_up() {
    // Nobody answers BFD at port 9: the router "does not run BFD".
    let (mut h, _p, _l, _ours) = established_with_bfd(9).await;
    let st = h
        .status_until(|s| {
            s.state == "established" && s.bfd.as_ref().is_some_and(|b| b.packets_out >= 1)
        })
        .await;
    let bfd = st.bfd.unwrap();
    assert_eq!(bfd.state, "down");
    assert_eq!(bfd.up_count, 0);
    assert_eq!(
        bfd.note.as_deref(),
        Some(anyguard::bfd::driver::NEVER_UP_NOTE)
    );
}

#[tokio::test]
async fn bfd_configured_without_a_running_bfd_task_says_so_and_bgp_comes_up() {
    let (l, port) = listener().await;
    let mut cfg = peer_config(port, PeerMode::Active, 90);
    cfg.bfd = Some(BfdConfig::default());
    // local().bfd is None: the daemon could not start BFD (e.g. port 3784 in use).
    let mut h = start(cfg, local(), rib(&[]));
    let mut p = FakePeer::accept(&l).await;
    p.establish(fakepeer::open(PEER_ASN, PEER_ID, 90, true, false))
        .await;
    let st = h
        .status_until(|s| s.state == "established" && s.bfd.is_some())
        .await;
    let bfd = st.bfd.unwrap();
    assert_eq!(bfd.state, "down");
    assert_eq!(
        bfd.note.as_deref(),
        Some("BFD is not running in this daemon (see the log)")
    );
}

#[tokio::test]
async fn bfd_settings_change_in_place_without_touching_the_bgp_session() {
    let router = crate::bfd::driver(3784);
    let (mut h, mut p, _l, ours) = established_with_bfd(crate::bfd::port(&router, LOOPBACK)).await;
    let ours_addr = SocketAddr::new(LOOPBACK, crate::bfd::port(&ours, LOOPBACK));
    let mut rs = router
        .add(ours_addr, None, crate::bfd::FAST)
        .await
        .unwrap()
        .status;
    h.status_until(|s| {
        s.bfd
            .as_ref()
            .is_some_and(|b| b.state == "up" && b.tx_interval_ms == 100)
    })
    .await;
    let disc = h.status.borrow().bfd.as_ref().unwrap().local_discriminator;

    // Slower: a Poll Sequence (RFC 5880 §6.8.3) on the same session; detection time at
    // the router's multiplier × max(our new min_rx, its 100 ms).
    h.handle
        .set_bfd(Some(BfdConfig {
            min_tx: Duration::from_millis(200),
            min_rx: Duration::from_millis(200),
            multiplier: 3,
        }))
        .await;
    let st = h
        .status_until(|s| {
            s.bfd.as_ref().is_some_and(|b| {
                b.tx_interval_ms == 200 && b.detection_time_ms == Some(600) && b.state == "up"
            })
        })
        .await;
    let b = st.bfd.unwrap();
    assert_eq!(b.local_discriminator, disc, "the same BFD session");
    assert_eq!(b.failures, 0);
    // The router follows: its detection time of us is now 3 × 200 ms.
    crate::bfd::until(&mut rs, "600 ms", |s| s.detection_time_ms == Some(600)).await;

    // Off: AdminDown to the router (not a failure), BGP untouched.
    h.handle.set_bfd(None).await;
    let st = h.status_until(|s| s.bfd.is_none()).await;
    assert_eq!(st.state, "established");
    let r = crate::bfd::until(&mut rs, "down", |s| s.state == "down").await;
    assert_eq!(r.failures, 0, "AdminDown is not a failure");
    assert_eq!(h.status.borrow().established_count, 1);
    // Nothing but UPDATEs and KEEPALIVEs on the BGP session all along.
    for _ in 0..100 {
        match p.recv_within(Duration::from_millis(300)).await {
            Ok(Message::Keepalive | Message::Update(_)) => continue,
            Err(fakepeer::FakeError::Timeout) => break,
            other => panic!("the BGP session saw {other:?}"),
        }
    }
}
