//! BFD drivers end to end over loopback: two instances of the daemon's BFD task reach Up
//! over 127.0.0.1 and ::1, and one detects the other's silence. Every wait is bounded;
//! nothing asserts on wall-clock speed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyguard::bfd::driver::NEVER_UP_NOTE;
use anyguard::bfd::session::Config;
use anyguard::bfd::{DriverConfig, Handle};
use anyguard::status::model::BfdStatus;
use anyguard_proto::bfd::{ControlPacket, Diag, State};
use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::fakepeer::WAIT;

/// Fast enough that a test takes well under a second, slow enough (300 ms detection) that
/// a loaded test machine does not starve a session into a spurious failure.
pub(crate) const FAST: Config = Config {
    desired_min_tx: Duration::from_millis(100),
    required_min_rx: Duration::from_millis(100),
    detect_mult: 3,
};

/// A BFD task listening on loopback, port chosen by the kernel.
pub(crate) fn driver(peer_port: u16) -> Handle {
    Handle::spawn(DriverConfig {
        listen_v4: Some(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0)),
        listen_v6: Some(SocketAddr::new(Ipv6Addr::LOCALHOST.into(), 0)),
        peer_port,
    })
    .unwrap()
}

pub(crate) fn port(h: &Handle, ip: IpAddr) -> u16 {
    let (v4, v6) = h.local_ports();
    if ip.is_ipv4() { v4 } else { v6 }.unwrap()
}

/// Two BFD tasks on loopback, each with a session towards the other at [`FAST`], and the
/// sessions' status.
async fn pair(
    ip: IpAddr,
) -> (
    Handle,
    Handle,
    watch::Receiver<BfdStatus>,
    watch::Receiver<BfdStatus>,
) {
    let a = driver(3784);
    let b = driver(3784);
    let sa = a
        .add(SocketAddr::new(ip, port(&b, ip)), None, FAST)
        .await
        .unwrap()
        .status;
    let sb = b
        .add(SocketAddr::new(ip, port(&a, ip)), None, FAST)
        .await
        .unwrap()
        .status;
    (a, b, sa, sb)
}

/// Waits until the status satisfies `f`.
pub(crate) async fn until(
    rx: &mut watch::Receiver<BfdStatus>,
    what: &str,
    f: impl Fn(&BfdStatus) -> bool,
) -> BfdStatus {
    let r = tokio::time::timeout(WAIT, rx.wait_for(|s| f(s)))
        .await
        .map(|r| r.map(|s| s.clone()));
    match r {
        Ok(Ok(s)) => s,
        _ => panic!("BFD status never became {what}: {:?}", *rx.borrow()),
    }
}

async fn up_and_silence(ip: IpAddr) {
    let (_a, b, mut sa, mut sb) = pair(ip).await;
    assert_eq!(sa.borrow().note.as_deref(), Some(NEVER_UP_NOTE));

    let up_a = until(&mut sa, "up", |s| s.state == "up").await;
    let up_b = until(&mut sb, "up", |s| s.state == "up").await;
    assert_eq!(up_a.remote_discriminator, up_b.local_discriminator);
    assert_eq!(up_b.remote_discriminator, up_a.local_discriminator);
    assert_eq!(up_a.note, None);
    // The Poll Sequences after Up bring both to the configured 100 ms: detection time
    // 3 × 100 ms (it was 3 × 1 s while the peer still advertised the slow interval).
    let fast = |s: &BfdStatus| s.tx_interval_ms == 100 && s.detection_time_ms == Some(300);
    until(&mut sa, "at 100 ms", fast).await;
    until(&mut sb, "at 100 ms", fast).await;
    let counted = until(&mut sa, "counting packets", |s| s.packets_in > 3).await;
    assert!(counted.packets_out > 3);
    assert_eq!(counted.bad_packets, 0);

    // b's packets now go to a port nobody listens on: a hears nothing.
    b.add(SocketAddr::new(ip, 9), None, FAST).await.unwrap();
    let down = until(&mut sa, "down", |s| s.state == "down").await;
    assert_eq!(down.diag, 1, "{down:?}");
    assert_eq!(down.diag_name, Diag::ControlDetectionTimeExpired.name());
    assert_eq!(down.failures, 1);
    assert_eq!(down.up_count, 1);
    assert_eq!(down.remote_discriminator, 0);
    assert_eq!(down.tx_interval_ms, 1000);
    // a's Down reaches b (a still sends to b's port): b's Up session fails too (then b
    // may already be in Init again, hearing a's Down packets: check the count).
    let b_down = until(&mut sb, "failed", |s| s.failures == 1).await;
    assert_eq!(b_down.up_count, 1, "{b_down:?}");
}

#[tokio::test]
async fn two_drivers_reach_up_over_ipv4_loopback_and_detect_silence() {
    up_and_silence(IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
}

#[tokio::test]
async fn two_drivers_reach_up_over_ipv6_loopback_and_detect_silence() {
    up_and_silence(IpAddr::V6(Ipv6Addr::LOCALHOST)).await;
}

#[tokio::test]
async fn removing_a_session_sends_admin_down_which_is_not_a_failure() {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (a, b, mut sa, mut sb) = pair(ip).await;
    until(&mut sa, "up", |s| s.state == "up").await;
    until(&mut sb, "up", |s| s.state == "up").await;
    // A reload registered the peer again before the old peer task left: the old task's
    // remove changes nothing (a later registration still finds the same, Up session).
    let disc = sb.borrow().local_discriminator;
    let again = b
        .add(SocketAddr::new(ip, port(&a, ip)), None, FAST)
        .await
        .unwrap();
    b.remove(ip, again.owner - 1).await;
    let check = b
        .add(SocketAddr::new(ip, port(&a, ip)), None, FAST)
        .await
        .unwrap();
    assert_eq!(check.status.borrow().local_discriminator, disc);
    assert_eq!(check.status.borrow().state, "up");
    b.remove(ip, check.owner).await;
    let down = until(&mut sa, "down", |s| s.state == "down").await;
    assert_eq!(down.diag, 3);
    assert_eq!(
        down.failures, 0,
        "AdminDown is not a failure (RFC 5882 §3.2)"
    );
}

/// Two drivers with a session to each other over IPv4 loopback, both Up.
async fn up_pair(cfg: Config) -> (Handle, Handle, watch::Receiver<BfdStatus>, u64) {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let a = driver(3784);
    let b = driver(3784);
    let mut sa = a
        .add(SocketAddr::new(ip, port(&b, ip)), None, cfg)
        .await
        .unwrap()
        .status;
    let rb = b
        .add(SocketAddr::new(ip, port(&a, ip)), None, cfg)
        .await
        .unwrap();
    let mut sb = rb.status;
    until(&mut sa, "up", |s| s.state == "up").await;
    until(&mut sb, "up", |s| s.state == "up").await;
    (a, b, sa, rb.owner)
}

/// The peer of a session that went AdminDown: Down because the peer said AdminDown (our
/// diag 3, its diag 7), not a detection timeout (diag 1), and not a failure.
fn saw_admin_down(s: &BfdStatus) {
    assert_eq!(s.state, "down", "{s:?}");
    assert_eq!(s.diag, 3, "{s:?}");
    assert_eq!(s.remote_diag, 7, "{s:?}");
    assert_eq!(
        s.failures, 0,
        "AdminDown is not a failure (RFC 5882 §3.2): {s:?}"
    );
}

#[tokio::test]
async fn a_removed_session_keeps_sending_admin_down_then_is_freed() {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (a, b, mut sa, owner) = up_pair(FAST).await;
    let b_disc = sa.borrow().remote_discriminator;
    b.remove(ip, owner).await;
    let down = until(&mut sa, "down", |s| s.state == "down").await;
    saw_admin_down(&down);
    assert_eq!(down.remote_state, "admin_down");
    // RFC 5880 §6.8.16: more AdminDown packets follow the first one (a counts each as
    // accepted; a removed session sending just one would leave the count where it is).
    let more = until(&mut sa, "a second AdminDown", |s| {
        s.packets_in > down.packets_in
    })
    .await;
    assert_eq!(more.remote_diag, 7);
    assert_eq!(more.remote_discriminator, b_disc);
    // Then b's session is freed: a stops hearing it (its detection time expires, which
    // in Down is no failure) and b answers a's packets with nothing.
    let gone = until(&mut sa, "b silent", |s| s.remote_discriminator == 0).await;
    saw_admin_down(&gone);
    drop(a);
}

#[tokio::test]
async fn a_peer_registered_again_while_lingering_gets_the_same_session_back() {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    // 1 s intervals: b lingers 3 s, far longer than the next command takes to arrive.
    let slow = Config {
        desired_min_tx: Duration::from_secs(1),
        required_min_rx: Duration::from_secs(1),
        detect_mult: 3,
    };
    let (a, b, mut sa, owner) = up_pair(slow).await;
    let b_disc = sa.borrow().remote_discriminator;
    b.remove(ip, owner).await;
    // The same session back, not a second one beside it: a hears one discriminator.
    let again = b
        .add(SocketAddr::new(ip, port(&a, ip)), None, slow)
        .await
        .unwrap();
    assert_eq!(again.status.borrow().local_discriminator, b_disc);
    let mut sb = again.status;
    until(&mut sb, "up again", |s| s.state == "up").await;
    // a heard the AdminDown sent at the removal, then b's Down: Up a second time.
    let up = until(&mut sa, "up again", |s| s.up_count == 2 && s.state == "up").await;
    assert_eq!(up.remote_discriminator, b_disc);
    assert_eq!(up.up_count, 2);
    assert_eq!(up.bad_packets, 0);
}

#[tokio::test]
async fn stopping_the_task_sends_admin_down_and_ends_it() {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (a, b, mut sa, _) = up_pair(FAST).await;
    b.stop().await;
    let down = until(&mut sa, "down", |s| s.state == "down").await;
    saw_admin_down(&down);
    // The task is gone: nothing more is registered.
    let late = b.add(SocketAddr::new(ip, port(&a, ip)), None, FAST).await;
    assert!(late.is_none());
    let mut counters = b.daemon_status();
    let closed =
        tokio::time::timeout(WAIT, async { while counters.changed().await.is_ok() {} }).await;
    assert!(closed.is_ok(), "the task ended");
}

#[tokio::test]
async fn datagrams_for_no_session_are_counted_by_reason() {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let a = driver(3784);
    // A session with 127.0.0.2: its discriminator, used from 127.0.0.1, is misdirected.
    let other = a
        .add(
            SocketAddr::new(Ipv4Addr::new(127, 0, 0, 2).into(), 9),
            None,
            FAST,
        )
        .await
        .unwrap()
        .status;
    let other_disc = other.borrow().local_discriminator;
    let packet = |your_discriminator| {
        let mut buf = Vec::new();
        ControlPacket {
            diag: Diag::NoDiagnostic,
            state: State::Down,
            poll: false,
            final_: false,
            control_plane_independent: false,
            demand: false,
            detect_mult: 3,
            my_discriminator: 77,
            your_discriminator,
            desired_min_tx_us: 1_000_000,
            required_min_rx_us: 1_000_000,
            required_min_echo_rx_us: 0,
            auth: None,
        }
        .encode(&mut buf)
        .unwrap();
        buf
    };
    let sock = UdpSocket::bind((ip, 0)).await.unwrap();
    let to = SocketAddr::new(ip, port(&a, ip));
    sock.set_ttl(255).unwrap();
    sock.send_to(&packet(0), to).await.unwrap();
    sock.send_to(&packet(0), to).await.unwrap();
    let unknown = other_disc.wrapping_add(1).max(1);
    sock.send_to(&packet(unknown), to).await.unwrap();
    sock.send_to(&packet(other_disc), to).await.unwrap();
    sock.send_to(&[0x20, 0x40], to).await.unwrap();
    sock.set_ttl(64).unwrap();
    sock.send_to(&packet(0), to).await.unwrap();
    let mut rx = a.daemon_status();
    let st = tokio::time::timeout(
        WAIT,
        rx.wait_for(|s| {
            let d = &s.dropped;
            d.no_session + d.unknown_discriminator + d.wrong_source + d.malformed + d.ttl >= 6
        }),
    )
    .await
    .expect("six drops counted")
    .unwrap()
    .clone();
    let d = st.dropped;
    assert_eq!(
        (
            d.no_session,
            d.unknown_discriminator,
            d.wrong_source,
            d.malformed,
            d.ttl
        ),
        (2, 1, 1, 1, 1),
        "{d:?}"
    );
    // None of it reached the session with 127.0.0.2.
    assert_eq!(other.borrow().packets_in, 0);
}

#[tokio::test]
async fn packets_with_a_ttl_below_255_are_dropped_and_counted() {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let a = driver(3784);
    let mut sa = a
        .add(SocketAddr::new(ip, 9), None, FAST)
        .await
        .unwrap()
        .status;
    // A valid Down packet that would move a to Init, sent with the default TTL (64).
    let p = ControlPacket {
        diag: Diag::NoDiagnostic,
        state: State::Down,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_mult: 3,
        my_discriminator: 77,
        your_discriminator: 0,
        desired_min_tx_us: 1_000_000,
        required_min_rx_us: 20_000,
        required_min_echo_rx_us: 0,
        auth: None,
    };
    let mut buf = Vec::new();
    p.encode(&mut buf).unwrap();
    let sock = UdpSocket::bind((ip, 0)).await.unwrap();
    sock.set_ttl(64).unwrap();
    let to = SocketAddr::new(ip, port(&a, ip));
    sock.send_to(&buf, to).await.unwrap();
    sock.send_to(&[0x20, 0x40], to).await.unwrap();
    let st = until(&mut sa, "two bad packets", |s| s.bad_packets >= 2).await;
    assert_eq!(st.state, "down");
    assert_eq!(st.packets_in, 0);
    // The same packet with TTL 255 is accepted: a goes to Init.
    sock.set_ttl(255).unwrap();
    sock.send_to(&buf, to).await.unwrap();
    let init = until(&mut sa, "init", |s| s.state == "init").await;
    assert_eq!(init.remote_discriminator, 77);
}

#[tokio::test]
async fn a_configured_source_address_is_the_one_the_peer_sees() {
    // a's peer knows it as 127.0.0.2 (its BGP `local_address`); the kernel would pick
    // 127.0.0.1 towards 127.0.0.1. b demultiplexes a's first packets (Your Discriminator
    // 0) by that source address, so the session comes up only if a sends from 127.0.0.2.
    let any = |port| {
        Handle::spawn(DriverConfig {
            listen_v4: Some(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0)),
            listen_v6: None,
            peer_port: port,
        })
        .unwrap()
    };
    let (a, b) = (any(3784), any(3784));
    let a_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let b_ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut sa = a
        .add(SocketAddr::new(b_ip, port(&b, b_ip)), Some(a_ip), FAST)
        .await
        .unwrap()
        .status;
    let mut sb = b
        .add(SocketAddr::new(a_ip, port(&a, a_ip)), None, FAST)
        .await
        .unwrap()
        .status;
    until(&mut sa, "up", |s| s.state == "up").await;
    let up = until(&mut sb, "up", |s| s.state == "up").await;
    assert_eq!(up.bad_packets, 0);
}

#[tokio::test]
async fn an_unusable_source_address_is_reported_in_the_status() {
    let a = driver(3784);
    // 198.18.255.254 (the lab's link range, never assigned by it) is on no interface of
    // the host's namespace: binding to it fails, nothing is sent.
    let st = a
        .add(
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9),
            Some(IpAddr::V4(Ipv4Addr::new(198, 18, 255, 254))),
            FAST,
        )
        .await
        .unwrap()
        .status;
    let note = st.borrow().note.clone().unwrap_or_default();
    assert!(
        note.starts_with("cannot send BFD packets from 198.18.255.254"),
        "{note}"
    );
    // A reload drops the source address: the error goes with it.
    let st = a
        .add(
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9),
            None,
            FAST,
        )
        .await
        .unwrap()
        .status;
    let note = st.borrow().note.clone();
    assert_eq!(note.as_deref(), Some(NEVER_UP_NOTE));
}

#[test]
fn a_driver_that_can_open_no_socket_is_an_error() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let taken = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let r = Handle::spawn(DriverConfig {
            listen_v4: Some(taken.local_addr().unwrap()),
            listen_v6: None,
            peer_port: 3784,
        });
        assert!(r.is_err(), "port in use and no other family: no BFD");
    });
}
