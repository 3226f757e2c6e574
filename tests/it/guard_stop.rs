//! Stops through the all-sites guard (issue #11 item 7), through the real binary: a
//! SIGTERM while this site is needed for `min_sites` closes the session without a
//! NOTIFICATION and without withdrawing (graceful restart keeps the routes, RFC 4724
//! §4.2); with enough other sites announcing (real status servers on 127.0.0.1:0) the stop
//! drains and withdraws as before.
//!
//! Every process is started and stopped by PID; every wait is bounded.

use std::time::Duration;

use anyguard::coordinator::{run, DaemonSignal, RunOptions};
use anyguard_proto::notification::cease_subcode;
use anyguard_proto::{
    Afi, Capability, Community, ErrorCode, GracefulRestartFamily, Message, PathAttribute, Safi,
    UpdateMessage,
};
use nix::sys::signal::Signal;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::fakepeer::{self, FakeError, FakePeer};
use crate::guard_cli::{closed_port, fleet_toml, service, Daemon, Files, OtherSite, WAIT, WEB};

/// Site `a`'s config: one active peer on loopback with graceful restart, `web` with a
/// check that always passes, and `extra` service lines.
fn site_a(port: u16, extra: &str) -> String {
    let check = "type = \"command\"\nargv = [\"true\"]\ninterval = \"200ms\"\ntimeout = \"100ms\"\nrise = 1\nfall = 1";
    format!(
        "router_id = \"198.18.0.2\"\nlocal_asn = 65010\n\n[status]\nlisten = \"127.0.0.1:0\"\n\n\
         [fleet]\npath = \"fleet.toml\"\nsite = \"a\"\n\n[[peer]]\nname = \"upstream\"\n\
         address = \"127.0.0.1\"\nport = {port}\nremote_asn = 65000\nmode = \"active\"\n\
         hold_time = \"9s\"\ngraceful_restart = {{ restart_time = \"30s\" }}\n\n{}",
        service(
            "web",
            &[WEB],
            &format!("drain_time = \"100ms\"\n{extra}"),
            check
        )
    )
}

/// The router's OPEN, with Graceful Restart for IPv4 unicast (RFC 4724 §3).
fn router_open() -> anyguard_proto::OpenMessage {
    let mut open = fakepeer::open(65000, "198.18.0.1".parse().expect("id"), 9, true, false);
    open.capabilities.push(Capability::GracefulRestart {
        restart_state: false,
        notification: false,
        restart_time: 120,
        families: vec![GracefulRestartFamily {
            afi: Afi::Ipv4,
            safi: Safi::Unicast,
            forwarding_preserved: false,
        }],
    });
    open
}

/// Starts site `a` with `fleet` written, establishes its session with a graceful-restart
/// router and waits until `web` is announced and reported so.
async fn start_a(files: &Files, fleet: &str, extra: &str) -> (Daemon, FakePeer, TcpListener) {
    files.write("fleet.toml", fleet);
    let upstream = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = upstream.local_addr().expect("addr").port();
    let path = files.write("a.toml", &site_a(port, extra));
    let (daemon, peer) = launch_a(&path, &upstream).await;
    (daemon, peer, upstream)
}

/// Starts the daemon; checks that its OPEN carries Graceful Restart with the Restart
/// State bit (a freshly started process, RFC 4724 §4.1) and that `web` is announced
/// before the End-of-RIB (§2: the router keeps our stale routes until then).
async fn launch_a(path: &std::path::Path, upstream: &TcpListener) -> (Daemon, FakePeer) {
    let daemon = Daemon::start(path).await;
    let mut peer = FakePeer::accept(upstream).await;
    let theirs = peer.establish(router_open()).await;
    let restart_state = theirs.capabilities.iter().find_map(|c| match c {
        Capability::GracefulRestart {
            restart_state,
            restart_time,
            ..
        } => Some((*restart_state, *restart_time)),
        _ => None,
    });
    assert_eq!(
        restart_state,
        Some((true, 30)),
        "anyguard must advertise graceful restart with R set: {theirs:?}"
    );
    let mut announced = false;
    for _ in 0..100 {
        let u = peer.expect_update().await;
        assert_eq!(
            u.is_end_of_rib(),
            None,
            "End-of-RIB before web was announced"
        );
        if u.nlri.iter().any(|p| p.to_string() == WEB) {
            announced = true;
            break;
        }
    }
    assert!(announced, "web was never announced");
    let eor = peer.expect_update().await;
    assert_eq!(eor.is_end_of_rib(), Some((Afi::Ipv4, Safi::Unicast)));
    daemon
        .doc_until("web up and announced", |d| {
            d.services.first().is_some_and(|s| s.state == "up")
                && d.guard
                    .as_ref()
                    .and_then(|g| g.services.first())
                    .is_some_and(|s| s.announcing)
        })
        .await;
    (daemon, peer)
}

fn withdraws_web(u: &UpdateMessage) -> bool {
    u.withdrawn.iter().any(|p| p.to_string() == WEB)
}

fn graceful_shutdown(u: &UpdateMessage) -> bool {
    u.attributes.iter().any(
        |a| matches!(a, PathAttribute::Communities(c) if c.contains(&Community::GRACEFUL_SHUTDOWN)),
    )
}

/// Everything the peer receives until the daemon closes the connection (bounded).
async fn until_closed(peer: &mut FakePeer) -> Vec<Message> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut got = Vec::new();
    for _ in 0..10_000 {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match peer.recv_within(left).await {
            Ok(m) => got.push(m),
            Err(FakeError::Closed) => return got,
            Err(e) => panic!("expected the daemon to close the session, got {e:?} after {got:?}"),
        }
    }
    panic!("endless stream from the daemon: {got:?}")
}

async fn exits(mut daemon: Daemon) -> Vec<String> {
    let status = tokio::time::timeout(WAIT, daemon.child.wait())
        .await
        .ok()
        .and_then(Result::ok);
    if status.is_none() {
        let _ = daemon.child.start_kill();
        let _ = daemon.child.wait().await;
    }
    let log = daemon.log_to_end().await;
    assert!(
        status.is_some_and(|s| s.success()),
        "daemon did not exit cleanly: {status:?}\n{log:#?}"
    );
    log
}

#[tokio::test]
async fn sigterm_while_this_site_is_needed_closes_the_session_without_withdrawing() {
    // b and c are unreachable: withdrawing web at a would leave 0 of 3 (min_sites 2).
    let files = Files::new();
    let closed = closed_port().await;
    let sites: Vec<(&str, String)> = ["a", "b", "c"]
        .into_iter()
        .map(|s| (s, format!("http://127.0.0.1:{closed}/status")))
        .collect();
    let fleet = fleet_toml(&sites, &["name = \"web\"\nmin_sites = 2"]);
    // A hook that takes a while keeps the stopping daemon (and its status endpoint) up
    // for a moment after the session is closed: /status is read then.
    let (daemon, mut peer, upstream) = start_a(&files, &fleet, "hook = [\"sleep\", \"2\"]").await;

    daemon.signal(Signal::SIGTERM);
    let got = until_closed(&mut peer).await;
    for m in &got {
        match m {
            Message::Update(u) => {
                assert!(!withdraws_web(u), "web was withdrawn: {u:?}");
                assert!(
                    !graceful_shutdown(u),
                    "GRACEFUL_SHUTDOWN sent although web is held: {u:?}"
                );
                assert!(
                    !u.attributes
                        .iter()
                        .any(|a| matches!(a, PathAttribute::MpUnreach(_))),
                    "MP_UNREACH sent: {u:?}"
                );
            }
            // RFC 4724 §4.2: a NOTIFICATION would make the router drop the routes.
            Message::Notification(n) => panic!("NOTIFICATION sent: {n:?}"),
            _ => {}
        }
    }
    let doc = daemon
        .doc_until("the stop reason", |d| d.daemon.stop_reason.is_some())
        .await;
    assert!(doc.daemon.stopping);
    let reason = doc.daemon.stop_reason.unwrap_or_default();
    assert!(
        reason.starts_with("not withdrawn, this site is needed for min_sites: sessions closed for graceful restart (RFC 4724)"),
        "{reason}"
    );
    assert!(
        reason.contains("web: daemon stopping; withdrawing web would leave 0 of 3 sites announcing (min_sites 2)"),
        "{reason}"
    );
    assert_eq!(doc.services[0].state, "held");
    // No other site may count on a stopping site: its report says not announcing.
    let report = doc
        .guard
        .as_ref()
        .and_then(|g| g.services.first())
        .expect("the site report");
    assert!(!report.announcing, "{report:?}");
    // `anyguard status` says it under its summary line.
    let text = anyguard::status::client::run(&format!("http://{}", daemon.status), false, false)
        .await
        .expect("anyguard status");
    assert!(
        text.lines().any(|l| l.starts_with(
            "STOPPING WITHOUT WITHDRAWING: not withdrawn, this site is needed for min_sites"
        )),
        "{text}"
    );
    let log = exits(daemon).await;
    assert!(
        log.iter()
            .any(|l| l.contains("STOPPING WITHOUT WITHDRAWING")
                && l.contains("\"services\":\"web\"")
                && l.contains("WARN")),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("closing the session without NOTIFICATION")),
        "{log:#?}"
    );

    // The package upgrade's start: the new process resumes (R bit, web, End-of-RIB).
    let (daemon, _peer) = launch_a(&files.dir().join("a.toml"), &upstream).await;
    daemon.signal(Signal::SIGTERM);
    exits(daemon).await;
}

#[tokio::test]
async fn sigterm_without_graceful_restart_sends_the_cease_that_says_why() {
    // The same needed site, but the router did not negotiate graceful restart: it drops
    // the routes when the session closes whatever we do, so the Cease says why.
    let files = Files::new();
    let closed = closed_port().await;
    let sites: Vec<(&str, String)> = ["a", "b", "c"]
        .into_iter()
        .map(|s| (s, format!("http://127.0.0.1:{closed}/status")))
        .collect();
    files.write(
        "fleet.toml",
        &fleet_toml(&sites, &["name = \"web\"\nmin_sites = 2"]),
    );
    let upstream = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = upstream.local_addr().expect("addr").port();
    let path = files.write("a.toml", &site_a(port, ""));
    let daemon = Daemon::start(&path).await;
    let mut peer = FakePeer::accept(&upstream).await;
    peer.establish(fakepeer::open(
        65000,
        "198.18.0.1".parse().expect("id"),
        9,
        true,
        false,
    ))
    .await;
    daemon
        .doc_until("web up and reported announcing", |d| {
            d.guard
                .as_ref()
                .and_then(|g| g.services.first())
                .is_some_and(|s| s.announcing)
        })
        .await;
    daemon.signal(Signal::SIGTERM);
    let got = until_closed(&mut peer).await;
    assert!(
        !got.iter()
            .any(|m| matches!(m, Message::Update(u) if withdraws_web(u) || graceful_shutdown(u))),
        "{got:?}"
    );
    let cease = got
        .iter()
        .find_map(|m| match m {
            Message::Notification(n) => Some(n.clone()),
            _ => None,
        })
        .expect("a Cease");
    assert_eq!(cease.code, ErrorCode::Cease);
    assert_eq!(cease.subcode, cease_subcode::ADMINISTRATIVE_SHUTDOWN);
    assert_eq!(
        cease.shutdown_communication().map(|c| c.0),
        Some(
            "anyguard stopping; site needed for min_sites of web; graceful restart keeps the routes"
                .to_string()
        )
    );
    let log = exits(daemon).await;
    assert!(
        log.iter().any(|l| l.contains(
            "graceful restart is not negotiated with this peer: it drops our routes as the session closes"
        )),
        "{log:#?}"
    );
}

#[tokio::test]
async fn sigterm_with_enough_other_sites_announcing_drains_and_withdraws() {
    let b = OtherSite::start("b", true).await;
    let c = OtherSite::start("c", true).await;
    let files = Files::new();
    let sites = [
        (
            "a",
            format!("http://127.0.0.1:{}/status", closed_port().await),
        ),
        ("b", b.url()),
        ("c", c.url()),
    ];
    let fleet = fleet_toml(&sites, &["name = \"web\"\nmin_sites = 2"]);
    let (daemon, mut peer, _upstream) = start_a(&files, &fleet, "").await;
    daemon
        .doc_until("b and c counted", |d| {
            d.services
                .first()
                .is_some_and(|s| s.guard.sites_announcing == ["b", "c"])
        })
        .await;

    daemon.signal(Signal::SIGTERM);
    let got = until_closed(&mut peer).await;
    let updates: Vec<&UpdateMessage> = got
        .iter()
        .filter_map(|m| match m {
            Message::Update(u) => Some(u),
            _ => None,
        })
        .collect();
    let gs = updates.iter().position(|u| graceful_shutdown(u));
    let withdrawn = updates.iter().position(|u| withdraws_web(u));
    assert!(
        matches!((gs, withdrawn), (Some(g), Some(w)) if g < w),
        "expected GRACEFUL_SHUTDOWN then the withdrawal: {got:?}"
    );
    let cease = got
        .iter()
        .find_map(|m| match m {
            Message::Notification(n) => Some(n.clone()),
            _ => None,
        })
        .expect("a Cease after the withdrawal");
    assert_eq!(cease.subcode, cease_subcode::ADMINISTRATIVE_SHUTDOWN);
    assert_eq!(
        cease.shutdown_communication().map(|c| c.0),
        Some("daemon stopping".to_string())
    );
    let log = exits(daemon).await;
    assert!(
        !log.iter()
            .any(|l| l.contains("STOPPING WITHOUT WITHDRAWING")),
        "{log:#?}"
    );
}

#[test]
fn unit_file_gives_a_guarded_stop_its_time_and_signals_the_daemon_only() {
    let unit = include_str!("../../contrib/anyguard.service");
    let value = |key: &str| -> Vec<&str> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .collect()
    };
    // Defaults: intent_wait 3 s (2 × (1 s + 500 ms)), drain_time 5 s, then at most 3 s for
    // the withdrawals to be confirmed, 5 s for the Ceases and 5 s for queued hooks.
    let needed = Duration::from_secs(3 + 5 + 3 + 5 + 5);
    let timeout = value("TimeoutStopSec");
    assert_eq!(timeout.len(), 1, "{timeout:?}");
    let timeout = humantime::parse_duration(timeout[0]).expect("TimeoutStopSec");
    assert!(timeout >= needed, "TimeoutStopSec {timeout:?} < {needed:?}");
    // SIGTERM to the daemon only: its check commands are not killed under it.
    assert_eq!(value("KillMode"), ["mixed"]);
}

#[tokio::test]
async fn a_held_stop_leaves_the_service_address_in_place() {
    // coordinator::run in this process, its `ip` calls logged by a script instead of run:
    // the routers keep sending the traffic of a held service here until the restart, so
    // its address must stay.
    let files = Files::new();
    let closed = closed_port().await;
    let sites: Vec<(&str, String)> = ["a", "b", "c"]
        .into_iter()
        .map(|s| (s, format!("http://127.0.0.1:{closed}/status")))
        .collect();
    files.write(
        "fleet.toml",
        &fleet_toml(&sites, &["name = \"web\"\nmin_sites = 2"]),
    );
    let log = files.dir().join("ip.log");
    let script = files.write("ip.sh", &format!("echo \"$*\" >> '{}'\n", log.display()));
    let upstream = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = upstream.local_addr().expect("addr").port();
    let path = files.write(
        "a.toml",
        &site_a(port, "local_addresses = [\"203.0.113.10\"]"),
    );
    let config = anyguard::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let options = RunOptions {
        config_path: Some(path.clone()),
        ip_command: Some(vec!["sh".into(), script.display().to_string()]),
        ..RunOptions::default()
    };
    let (signals, rx) = mpsc::channel(4);
    let task = tokio::spawn(run(config, options, rx));
    let mut peer = FakePeer::accept(&upstream).await;
    peer.establish(router_open()).await;
    let mut announced = false;
    for _ in 0..100 {
        if peer
            .expect_update()
            .await
            .nlri
            .iter()
            .any(|p| p.to_string() == WEB)
        {
            announced = true;
            break;
        }
    }
    assert!(announced, "web was never announced");
    let ip_log = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        ip_log().contains("address replace 203.0.113.10/32 dev lo"),
        "{}",
        ip_log()
    );

    signals.send(DaemonSignal::Stop).await.expect("signal");
    let got = until_closed(&mut peer).await;
    assert!(
        !got.iter().any(|m| matches!(m, Message::Notification(_))
            || matches!(m, Message::Update(u) if withdraws_web(u))),
        "{got:?}"
    );
    let ended = tokio::time::timeout(WAIT, task).await;
    assert!(
        matches!(ended, Ok(Ok(Ok(())))),
        "the daemon did not end cleanly: {ended:?}"
    );
    assert!(
        !ip_log().contains("address del"),
        "the held service's address was removed:\n{}",
        ip_log()
    );
}

#[tokio::test]
async fn a_stop_while_a_removal_by_reload_is_held_closes_for_graceful_restart_without_withdrawing()
{
    // b and c announce web but are held themselves (ranked after a): a reload without
    // web is accepted, and its removal is held. A stop then must not take web away either.
    let b = OtherSite::start("b", true).await;
    let c = OtherSite::start("c", true).await;
    b.doc.send_replace(crate::guard_cli::report_doc(
        "b",
        true,
        anyguard::guard::report::Intent::Held,
    ));
    c.doc.send_replace(crate::guard_cli::report_doc(
        "c",
        true,
        anyguard::guard::report::Intent::Held,
    ));
    let closed = closed_port().await;
    let sites = [
        ("a", format!("http://127.0.0.1:{closed}/status")),
        ("b", b.url()),
        ("c", c.url()),
    ];
    let files = Files::new();
    let fleet = fleet_toml(&sites, &["name = \"web\"\nmin_sites = 2"]);
    let (daemon, mut peer, upstream) = start_a(&files, &fleet, "").await;
    let port = upstream.local_addr().expect("addr").port();
    let without_web = site_a(port, "").replace(
        &format!("name = \"web\"\nprefixes = [\"{WEB}\"]"),
        "name = \"api\"\nprefixes = [\"198.51.100.0/24\"]",
    );
    assert!(!without_web.contains("\"web\""), "{without_web}");
    files.write("a.toml", &without_web);
    daemon.signal(Signal::SIGHUP);
    daemon.removal_held("the removal of web held").await;

    daemon.signal(Signal::SIGTERM);
    let got = until_closed(&mut peer).await;
    for m in &got {
        match m {
            Message::Update(u) => assert!(!withdraws_web(u), "web was withdrawn: {u:?}"),
            // RFC 4724 §4.2: a NOTIFICATION would make the router drop the routes.
            Message::Notification(n) => panic!("NOTIFICATION sent: {n:?}"),
            _ => {}
        }
    }
    let log = exits(daemon).await;
    assert!(
        log.iter()
            .any(|l| l.contains("STOPPING WITHOUT WITHDRAWING") && l.contains("web 203.0.113.0/24")),
        "{log:#?}"
    );
}
