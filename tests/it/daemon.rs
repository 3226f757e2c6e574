//! The whole daemon end to end over loopback (issue 4): `coordinator::run` in this process
//! with a config built from TOML text, a scripted BGP peer (`fakepeer`) it connects to, and
//! a local HTTP health target whose answer the test switches. Every assertion is on the
//! BGP bytes the peer receives (or on their absence), in order; every wait is bounded and
//! nothing asserts on wall-clock speed.
//!
//! Timers are short (interval 100 ms, rise = fall = 2, drain_time 300 ms, hold_down
//! 200 ms) so that a whole scenario takes about a second.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyguard::config::load_str;
use anyguard::coordinator::{run, DaemonSignal, RunError, RunOptions};
use anyguard_proto::{
    AsPathSegmentType, Community, ErrorCode, Message, MpReach, PathAttribute, UpdateMessage,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use ipnet::{IpNet, Ipv4Net};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::fakepeer::{self, FakeError, FakePeer, WAIT};

const LOCAL_ASN: u32 = 65010;
const PEER_ASN: u32 = 65000;
const PEER_ID: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SERVICE_V4: &str = "203.0.113.0/24";
const SERVICE_V6: &str = "2001:db8:100::/48";
/// Check interval of every scenario; "several intervals" are multiples of it.
const INTERVAL: Duration = Duration::from_millis(100);

// ----- the health target ------------------------------------------------------------------

/// What the health target answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// 200 "ok".
    Pass,
    /// 503.
    Fail,
    /// Accepts the connection and never answers (a hung service: the probe times out).
    Hang,
}

#[derive(Debug)]
struct TargetState {
    /// Answer for the next `budget` requests ...
    now: Answer,
    budget: u32,
    /// ... and after them.
    then: Answer,
    passes: u32,
    failures: u32,
}

/// A local HTTP health target on 127.0.0.1:0 whose answers the test scripts.
struct Target {
    addr: SocketAddr,
    state: Arc<Mutex<TargetState>>,
    task: JoinHandle<()>,
}

impl Target {
    async fn start(initial: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(TargetState {
            now: initial,
            budget: u32::MAX,
            then: initial,
            passes: 0,
            failures: 0,
        }));
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let answer = {
                        let mut s = shared.lock().unwrap();
                        let a = if s.budget > 0 { s.now } else { s.then };
                        if s.budget > 0 && s.budget != u32::MAX {
                            s.budget -= 1;
                        }
                        match a {
                            Answer::Pass => s.passes += 1,
                            Answer::Fail | Answer::Hang => s.failures += 1,
                        }
                        a
                    };
                    let reply: &[u8] = match answer {
                        Answer::Pass => {
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                        }
                        Answer::Fail => b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\nsick",
                        Answer::Hang => {
                            // Longer than any probe timeout here; the probe gives up first.
                            tokio::time::sleep(Duration::from_secs(5)).await;
                            return;
                        }
                    };
                    let _ = sock.write_all(reply).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Target { addr, state, task }
    }

    /// Answers `a` from now on.
    fn set(&self, a: Answer) {
        let mut s = self.state.lock().unwrap();
        s.now = a;
        s.then = a;
        s.budget = u32::MAX;
    }

    /// Answers `first` for the next `n` requests, then `then` for ever.
    fn script(&self, first: Answer, n: u32, then: Answer) {
        let mut s = self.state.lock().unwrap();
        s.now = first;
        s.budget = n;
        s.then = then;
    }

    /// (passes, failures) answered so far.
    fn served(&self) -> (u32, u32) {
        let s = self.state.lock().unwrap();
        (s.passes, s.failures)
    }

    /// Waits (bounded) until the counters satisfy `f`.
    async fn wait_served(&self, what: &str, f: impl Fn(u32, u32) -> bool) {
        for _ in 0..500 {
            let (p, fl) = self.served();
            if f(p, fl) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("target never served {what}: {:?}", self.served());
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ----- the daemon -------------------------------------------------------------------------

/// Knobs of one scenario's config.
struct Setup<'a> {
    /// Service prefixes, as TOML strings.
    prefixes: &'a [&'a str],
    /// Extra `[[peer]]` lines.
    peer_extra: &'a str,
    /// Extra `[[service]]` lines.
    service_extra: &'a str,
    /// `hold_down` of the service.
    hold_down: &'a str,
    /// `drain_time` of the service.
    drain_time: &'a str,
    /// The peer session runs over [::1] instead of 127.0.0.1.
    ipv6_session: bool,
}

impl Default for Setup<'_> {
    fn default() -> Self {
        Setup {
            prefixes: &[SERVICE_V4],
            peer_extra: "",
            service_extra: "",
            hold_down: "200ms",
            drain_time: "300ms",
            ipv6_session: false,
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config_text(
    setup: &Setup<'_>,
    peer: SocketAddr,
    status_port: u16,
    target: SocketAddr,
) -> String {
    let prefixes = setup
        .prefixes
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"router_id = "198.18.0.2"
local_asn = {LOCAL_ASN}

[status]
listen = "127.0.0.1:{status_port}"

[[peer]]
name = "edge"
address = "{ip}"
port = {port}
remote_asn = {PEER_ASN}
hold_time = "9s"
connect_retry = "1s"
{peer_extra}

[[service]]
name = "web"
prefixes = [{prefixes}]
drain_time = "{drain_time}"
hold_down = "{hold_down}"
{service_extra}

[[service.check]]
type = "http"
url = "http://{target}/healthz"
interval = "100ms"
timeout = "50ms"
rise = 2
fall = 2
"#,
        ip = peer.ip(),
        port = peer.port(),
        peer_extra = setup.peer_extra,
        service_extra = setup.service_extra,
        hold_down = setup.hold_down,
        drain_time = setup.drain_time,
    )
}

/// A running daemon and the session it opened to the scripted peer.
struct Daemon {
    signals: mpsc::Sender<DaemonSignal>,
    task: JoinHandle<Result<(), RunError>>,
    status_port: u16,
    peer: FakePeer,
}

impl Daemon {
    /// Starts `run()` with the scenario's config and accepts its session (hold time 0 on
    /// our side, so neither end sends KEEPALIVEs: every message seen is a decision).
    async fn start(setup: &Setup<'_>, target: &Target) -> Self {
        let bind: IpAddr = if setup.ipv6_session {
            Ipv6Addr::LOCALHOST.into()
        } else {
            Ipv4Addr::LOCALHOST.into()
        };
        let listener = TcpListener::bind((bind, 0)).await.unwrap();
        let peer_addr = listener.local_addr().unwrap();
        let status_port = free_port();
        let text = config_text(setup, peer_addr, status_port, target.addr);
        let config = load_str(&text, "daemon-it.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
        let (signals, rx) = mpsc::channel(4);
        let task = tokio::spawn(run(config, RunOptions::default(), rx));
        let mut peer = FakePeer::accept(&listener).await;
        let ipv6 = setup.prefixes.iter().any(|p| p.contains(':'));
        peer.establish(fakepeer::open(PEER_ASN, PEER_ID, 0, true, ipv6))
            .await;
        Daemon {
            signals,
            task,
            status_port,
            peer,
        }
    }

    /// The next UPDATE (KEEPALIVEs skipped), within [`WAIT`].
    async fn update(&mut self) -> UpdateMessage {
        self.peer.expect_update().await
    }

    /// Asserts that nothing at all arrives within `d` (and the session is still open).
    async fn quiet_for(&mut self, d: Duration, why: &str) {
        match self.peer.recv_within(d).await {
            Err(FakeError::Timeout) => {}
            other => panic!("{why}: expected silence, got {other:?}"),
        }
    }

    /// Polls `/status` (bounded) until the service is in `state`.
    async fn wait_state(&self, state: &str) {
        wait_state(self.status_port, state).await;
    }

    /// `DaemonSignal::Stop` (what SIGTERM sends).
    async fn stop(&self) {
        self.signals.send(DaemonSignal::Stop).await.unwrap();
    }

    /// Waits for `run()` to return and checks it returned `Ok`.
    async fn finished(self) {
        let Daemon { task, .. } = self;
        match tokio::time::timeout(WAIT, task).await {
            Ok(Ok(Ok(()))) => {}
            other => panic!("run() did not end cleanly: {other:?}"),
        }
    }

    /// Stops the daemon, skipping whatever it sends, and waits for `run()` to return.
    async fn shutdown(mut self) {
        self.stop().await;
        self.peer.expect_closed(WAIT).await;
        self.finished().await;
    }
}

// ----- status and logs --------------------------------------------------------------------

/// The service's state as `/status` on `port` reports it; `None` while the endpoint is
/// not listening yet.
async fn service_state(port: u16) -> Option<String> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let uri = format!("http://127.0.0.1:{port}/status");
    let resp = tokio::time::timeout(WAIT, client.get(uri.parse().unwrap()))
        .await
        .expect("status request timed out")
        .ok()?;
    let body = tokio::time::timeout(WAIT, resp.into_body().collect())
        .await
        .expect("status body timed out")
        .unwrap()
        .to_bytes();
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    Some(doc["services"][0]["state"].as_str().unwrap().to_string())
}

/// Polls `/status` on `port` (bounded) until the service is in `state`.
async fn wait_state(port: u16, state: &str) {
    let mut last = None;
    for _ in 0..250 {
        last = service_state(port).await;
        if last.as_deref() == Some(state) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("service never reached {state:?}; last {last:?}");
}

/// `POST path` on the status endpoint with a bearer token; the status code and body.
async fn post(port: u16, path: &str, token: &str, body: &str) -> (u16, String) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<Bytes>>();
    let req = hyper::Request::post(format!("http://127.0.0.1:{port}{path}"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let resp = tokio::time::timeout(WAIT, client.request(req))
        .await
        .expect("control request timed out")
        .expect("control request failed");
    let status = resp.status().as_u16();
    let body = tokio::time::timeout(WAIT, resp.into_body().collect())
        .await
        .expect("control body timed out")
        .unwrap()
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The daemon's log lines, captured for the current thread.
///
/// One global subscriber for the whole test binary routes each line to the buffer of the
/// thread that logged it (a thread-local `set_default` per test is not enough: callsite
/// interest is cached process-wide, and tests running in parallel would race on it).
/// `#[tokio::test]` runs every task of the daemon on the test's own thread.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

thread_local! {
    static SINK: std::cell::RefCell<Option<Logs>> = const { std::cell::RefCell::new(None) };
}

/// Writes to the current thread's [`Logs`], or nowhere.
struct ThreadSink;

impl std::io::Write for ThreadSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        SINK.with(|s| {
            if let Some(logs) = s.borrow().as_ref() {
                logs.0.lock().unwrap().extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Stops capturing on drop.
struct Capture;

impl Drop for Capture {
    fn drop(&mut self) {
        SINK.with(|s| s.borrow_mut().take());
    }
}

impl Logs {
    fn capture(&self) -> Capture {
        static INSTALL: std::sync::Once = std::sync::Once::new();
        INSTALL.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .with_writer(|| ThreadSink)
                .with_ansi(false)
                .with_max_level(tracing::Level::INFO)
                .finish();
            tracing::subscriber::set_global_default(subscriber).unwrap();
        });
        SINK.with(|s| *s.borrow_mut() = Some(self.clone()));
        Capture
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

// ----- what is on the wire ----------------------------------------------------------------

fn v4(p: &str) -> Ipv4Net {
    p.parse().unwrap()
}

fn as_path(u: &UpdateMessage) -> Vec<u32> {
    u.attributes
        .iter()
        .find_map(|a| match a {
            PathAttribute::AsPath(p) => Some(
                p.segments
                    .iter()
                    .inspect(|s| assert_eq!(s.kind, AsPathSegmentType::Sequence))
                    .flat_map(|s| s.asns.clone())
                    .collect(),
            ),
            _ => None,
        })
        .expect("announcement without AS_PATH")
}

fn communities(u: &UpdateMessage) -> Vec<Community> {
    u.attributes
        .iter()
        .find_map(|a| match a {
            PathAttribute::Communities(c) => Some(c.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

fn next_hop(u: &UpdateMessage) -> Option<Ipv4Addr> {
    u.attributes.iter().find_map(|a| match a {
        PathAttribute::NextHop(n) => Some(*n),
        _ => None,
    })
}

fn mp_reach(u: &UpdateMessage) -> Option<&MpReach> {
    u.attributes.iter().find_map(|a| match a {
        PathAttribute::MpReach(m) => Some(m),
        _ => None,
    })
}

fn mp_unreach(u: &UpdateMessage) -> Vec<IpNet> {
    u.attributes
        .iter()
        .find_map(|a| match a {
            PathAttribute::MpUnreach(m) => Some(m.withdrawn.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// Asserts `u` announces exactly the IPv4 service prefix from us, next hop 127.0.0.1
/// (the session's local address, `next_hop = "self"`), with `prepends` extra copies of
/// our ASN.
fn assert_v4_announcement(u: &UpdateMessage, prepends: usize) {
    assert!(u.withdrawn.is_empty(), "{u:?}");
    assert_eq!(u.nlri, vec![v4(SERVICE_V4)], "{u:?}");
    assert_eq!(next_hop(u), Some(Ipv4Addr::LOCALHOST), "{u:?}");
    assert_eq!(as_path(u), vec![LOCAL_ASN; 1 + prepends], "{u:?}");
    assert!(
        u.attributes
            .iter()
            .any(|a| matches!(a, PathAttribute::Origin(anyguard_proto::Origin::Igp))),
        "{u:?}"
    );
}

fn assert_v4_withdrawal(u: &UpdateMessage) {
    assert_eq!(u.withdrawn, vec![v4(SERVICE_V4)], "{u:?}");
    assert!(u.nlri.is_empty() && u.attributes.is_empty(), "{u:?}");
}

/// Brings a fresh daemon to "announced": target passing, first UPDATE received.
async fn announced(setup: &Setup<'_>) -> (Target, Daemon) {
    let target = Target::start(Answer::Pass).await;
    let mut d = Daemon::start(setup, &target).await;
    let u = d.update().await;
    if setup.prefixes == [SERVICE_V4] {
        assert_v4_announcement(&u, 0);
    }
    (target, d)
}

// ----- scenarios --------------------------------------------------------------------------

#[tokio::test]
async fn nothing_is_announced_until_the_target_has_passed_rise_times() {
    // One pass, then failures: rise = 2 is never reached, so nothing may be announced
    // however long we watch.
    let target = Target::start(Answer::Fail).await;
    target.script(Answer::Pass, 1, Answer::Fail);
    let mut d = Daemon::start(&Setup::default(), &target).await;
    target
        .wait_served("one pass and six failures", |p, f| p == 1 && f >= 6)
        .await;
    d.quiet_for(2 * INTERVAL, "one pass is below rise = 2")
        .await;

    // Healthy from now on: the UPDATE comes, and only after two more passes.
    let (passes_before, _) = target.served();
    target.set(Answer::Pass);
    let u = d.update().await;
    let (passes, _) = target.served();
    assert!(
        passes >= passes_before + 2,
        "announced after {} consecutive passes",
        passes - passes_before
    );
    assert_v4_announcement(&u, 0);
    d.shutdown().await;
}

#[tokio::test]
async fn failing_fall_times_withdraws_and_one_failure_does_not() {
    let (target, mut d) = announced(&Setup::default()).await;

    // fall - 1 = 1 failure between passes: no flap on the boundary.
    target.script(Answer::Fail, 1, Answer::Pass);
    target
        .wait_served("the single failure and passes after it", |_, f| f >= 1)
        .await;
    let (p0, _) = target.served();
    target.wait_served("three passes", |p, _| p >= p0 + 3).await;
    d.quiet_for(2 * INTERVAL, "one failure is below fall = 2")
        .await;

    // Failing for good: withdrawn after the second failure.
    let (_, f0) = target.served();
    target.set(Answer::Fail);
    let u = d.update().await;
    let (_, f) = target.served();
    assert!(f >= f0 + 2, "withdrawn after {} failures", f - f0);
    assert_v4_withdrawal(&u);
    d.quiet_for(3 * INTERVAL, "a withdrawn service stays quiet")
        .await;
    d.shutdown().await;
}

#[tokio::test]
async fn a_hung_target_is_withdrawn_like_a_failing_one() {
    let (target, mut d) = announced(&Setup::default()).await;
    target.set(Answer::Hang);
    let u = d.update().await;
    assert_v4_withdrawal(&u);
    d.shutdown().await;
}

#[tokio::test]
async fn recovery_reannounces_the_prefix() {
    let (target, mut d) = announced(&Setup::default()).await;
    target.set(Answer::Fail);
    assert_v4_withdrawal(&d.update().await);
    target.set(Answer::Pass);
    assert_v4_announcement(&d.update().await, 0);
    d.quiet_for(3 * INTERVAL, "re-announced once").await;
    d.shutdown().await;
}

#[tokio::test]
async fn recovery_inside_the_hold_down_is_held_until_it_ends() {
    // A hold-down far longer than rise × fast interval (2 × 50 ms) makes it observable:
    // health is back well before the re-announcement may go out.
    let setup = Setup {
        hold_down: "1s",
        ..Setup::default()
    };
    let (target, mut d) = announced(&setup).await;
    target.set(Answer::Fail);
    assert_v4_withdrawal(&d.update().await);

    target.set(Answer::Pass);
    // Healthy but held down: the status and the routes are published in the same loop
    // turn, so while the status says so, nothing may have been sent.
    d.wait_state("hold-down").await;
    d.quiet_for(Duration::ZERO, "held down").await;
    assert_v4_announcement(&d.update().await, 0);
    d.wait_state("up").await;
    d.shutdown().await;
}

#[tokio::test]
async fn stop_drains_with_graceful_shutdown_then_withdraws_then_sends_cease() {
    let (_target, mut d) = announced(&Setup::default()).await;
    d.stop().await;

    // RFC 8326 §4: the same route again, tagged GRACEFUL_SHUTDOWN.
    let u = d.update().await;
    assert_v4_announcement(&u, 0);
    assert_eq!(communities(&u), vec![Community::GRACEFUL_SHUTDOWN], "{u:?}");

    // After drain_time: the withdrawal, on the still open session.
    let u = d.update().await;
    assert_v4_withdrawal(&u);

    // Then Cease / Administrative Shutdown (RFC 4486 §4) with an RFC 9003 communication.
    let n = match d.peer.recv_skip_keepalives().await {
        Ok(Message::Notification(n)) => n,
        other => panic!("expected the Cease NOTIFICATION next, got {other:?}"),
    };
    assert_eq!((n.code, n.subcode), (ErrorCode::Cease, 2), "{n:?}");
    assert_eq!(
        n.shutdown_communication().map(|c| c.0).as_deref(),
        Some("daemon stopping")
    );
    d.peer.expect_closed(WAIT).await;
    d.finished().await;
}

#[tokio::test]
async fn deprefer_reannounces_with_prepends_and_community_instead_of_withdrawing() {
    let setup = Setup {
        service_extra: "on_down = \"deprefer\"",
        ..Setup::default()
    };
    let (target, mut d) = announced(&setup).await;

    target.set(Answer::Fail);
    let u = d.update().await;
    // Defaults: deprefer_prepend = 3, deprefer_communities = ["65535:0"].
    assert_v4_announcement(&u, 3);
    assert_eq!(communities(&u), vec![Community::GRACEFUL_SHUTDOWN], "{u:?}");
    d.quiet_for(3 * INTERVAL, "de-preferred, not withdrawn")
        .await;

    target.set(Answer::Pass);
    let u = d.update().await;
    assert_v4_announcement(&u, 0);
    assert!(communities(&u).is_empty(), "{u:?}");
    d.shutdown().await;
}

#[tokio::test]
async fn a_drain_file_drains_with_graceful_shutdown_and_keeps_the_session_up() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("web.drain");
    let extra = format!("drain_file = \"{}\"", file.display());
    let setup = Setup {
        service_extra: &extra,
        ..Setup::default()
    };
    let (_target, mut d) = announced(&setup).await;

    touch(&file);
    let u = d.update().await;
    assert_v4_announcement(&u, 0);
    assert_eq!(communities(&u), vec![Community::GRACEFUL_SHUTDOWN], "{u:?}");
    assert_v4_withdrawal(&d.update().await);
    // The session stays up: no NOTIFICATION, no close, and it still answers.
    d.quiet_for(3 * INTERVAL, "drained, session kept").await;
    d.wait_state("drained").await;

    std::fs::remove_file(&file).unwrap();
    let u = d.update().await;
    assert_v4_announcement(&u, 0);
    assert!(communities(&u).is_empty(), "{u:?}");
    d.shutdown().await;
}

fn touch(p: &Path) {
    std::fs::write(p, b"maintenance\n").unwrap();
}

#[tokio::test]
async fn ipv6_prefix_goes_in_mp_reach_with_the_configured_global_next_hop_over_ipv4() {
    let setup = Setup {
        prefixes: &[SERVICE_V4, SERVICE_V6],
        peer_extra: "next_hop_v6 = \"2001:db8::2\"",
        ..Setup::default()
    };
    let target = Target::start(Answer::Pass).await;
    let mut d = Daemon::start(&setup, &target).await;
    let (v4u, v6u) = two_family_updates(&mut d).await;
    assert_v4_announcement(&v4u, 0);
    let mp = mp_reach(&v6u).unwrap();
    assert_eq!(mp.afi, anyguard_proto::Afi::Ipv6);
    assert_eq!(mp.safi, anyguard_proto::Safi::Unicast);
    assert_eq!(mp.nlri, vec![SERVICE_V6.parse::<IpNet>().unwrap()]);
    assert_eq!(mp.next_hop, "2001:db8::2".parse::<IpAddr>().unwrap());
    assert_eq!(mp.link_local_next_hop, None);
    // RFC 4760 §3: MP_REACH carries the next hop; no classic NEXT_HOP, no classic NLRI.
    assert!(v6u.nlri.is_empty() && next_hop(&v6u).is_none(), "{v6u:?}");
    assert_eq!(as_path(&v6u), vec![LOCAL_ASN]);

    // Both withdrawn on failure: IPv6 in MP_UNREACH_NLRI.
    target.set(Answer::Fail);
    let (w4, w6) = two_family_updates(&mut d).await;
    assert_v4_withdrawal(&w4);
    assert_eq!(mp_unreach(&w6), vec![SERVICE_V6.parse::<IpNet>().unwrap()]);
    d.shutdown().await;
}

/// The next two UPDATEs, sorted into (IPv4, IPv6).
async fn two_family_updates(d: &mut Daemon) -> (UpdateMessage, UpdateMessage) {
    let a = d.update().await;
    let b = d.update().await;
    let is_v6 = |u: &UpdateMessage| mp_reach(u).is_some() || !mp_unreach(u).is_empty();
    match (is_v6(&a), is_v6(&b)) {
        (false, true) => (a, b),
        (true, false) => (b, a),
        _ => panic!("expected one IPv4 and one IPv6 UPDATE, got {a:?} and {b:?}"),
    }
}

#[tokio::test]
async fn ipv6_prefix_over_an_ipv6_loopback_session() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("SKIPPED ipv6_prefix_over_an_ipv6_loopback_session: no IPv6 loopback here");
        return;
    }
    let setup = Setup {
        prefixes: &[SERVICE_V6],
        peer_extra: "next_hop_v6 = \"2001:db8::2\"",
        ipv6_session: true,
        ..Setup::default()
    };
    let target = Target::start(Answer::Pass).await;
    let mut d = Daemon::start(&setup, &target).await;
    let u = d.update().await;
    let mp = mp_reach(&u).unwrap();
    assert_eq!(mp.nlri, vec![SERVICE_V6.parse::<IpNet>().unwrap()]);
    assert_eq!(mp.next_hop, "2001:db8::2".parse::<IpAddr>().unwrap());
    d.shutdown().await;
}

#[tokio::test]
async fn steady_health_sends_no_further_update() {
    let (target, mut d) = announced(&Setup::default()).await;
    let (p0, _) = target.served();
    // Ten intervals of passing probes: the Adj-RIB-Out does not change, so nothing is sent.
    d.quiet_for(10 * INTERVAL, "steady health").await;
    let (p, f) = target.served();
    assert!(p >= p0 + 5, "only {} probes while watching", p - p0);
    assert_eq!(f, 0);
    d.shutdown().await;
}

#[tokio::test]
async fn stop_while_withdrawn_sends_only_the_cease() {
    let (target, mut d) = announced(&Setup::default()).await;
    target.set(Answer::Fail);
    assert_v4_withdrawal(&d.update().await);
    d.stop().await;
    // Nothing is announced, so there is nothing to drain: no UPDATE before the Cease.
    match d.peer.recv_skip_keepalives().await {
        Ok(Message::Notification(n)) => assert_eq!((n.code, n.subcode), (ErrorCode::Cease, 2)),
        other => panic!("expected the Cease NOTIFICATION, got {other:?}"),
    }
    d.peer.expect_closed(WAIT).await;
    d.finished().await;
}

#[tokio::test]
async fn stop_before_the_service_ever_came_up_sends_only_the_cease() {
    let logs = Logs::default();
    let _guard = logs.capture();
    let target = Target::start(Answer::Fail).await;
    let mut d = Daemon::start(&Setup::default(), &target).await;
    target.wait_served("two failures", |_, f| f >= 2).await;
    d.stop().await;
    match d.peer.recv_skip_keepalives().await {
        Ok(Message::Notification(n)) => assert_eq!((n.code, n.subcode), (ErrorCode::Cease, 2)),
        other => panic!("expected the Cease NOTIFICATION, got {other:?}"),
    }
    d.peer.expect_closed(WAIT).await;
    d.finished().await;
    let logs = logs.text();
    assert!(!logs.contains("not every peer confirmed"), "{logs}");
}

#[tokio::test]
async fn stop_with_a_peer_that_never_connected_does_not_wait_for_it() {
    let logs = Logs::default();
    let _guard = logs.capture();
    // Failing from the start: the desired routes never change, so the peer task never
    // reports them as "flushed" through a route change.
    let target = Target::start(Answer::Fail).await;
    // Nobody listens on this port: the session never comes up.
    let closed = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let status_port = free_port();
    let text = config_text(&Setup::default(), closed, status_port, target.addr);
    let config = load_str(&text, "daemon-it.toml").unwrap();
    let (signals, rx) = mpsc::channel(4);
    let task = tokio::spawn(run(config, RunOptions::default(), rx));
    wait_state(status_port, "starting").await;
    target.wait_served("two failures", |_, f| f >= 2).await;
    signals.send(DaemonSignal::Stop).await.unwrap();
    match tokio::time::timeout(WAIT, task).await {
        Ok(Ok(Ok(()))) => {}
        other => panic!("run() did not end cleanly: {other:?}"),
    }
    // A peer without a session holds none of our routes: there is nothing to confirm.
    let logs = logs.text();
    assert!(!logs.contains("not every peer confirmed"), "{logs}");
}

#[tokio::test]
async fn a_drain_file_present_at_start_keeps_a_healthy_service_unannounced() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("web.drain");
    touch(&file);
    let extra = format!("drain_file = \"{}\"", file.display());
    let setup = Setup {
        service_extra: &extra,
        ..Setup::default()
    };
    let target = Target::start(Answer::Pass).await;
    let mut d = Daemon::start(&setup, &target).await;
    target.wait_served("four passes", |p, _| p >= 4).await;
    d.wait_state("drained").await;
    d.quiet_for(2 * INTERVAL, "drained from the start").await;

    std::fs::remove_file(&file).unwrap();
    let u = d.update().await;
    assert_v4_announcement(&u, 0);
    assert!(communities(&u).is_empty(), "{u:?}");
    d.shutdown().await;
}

#[tokio::test]
async fn dry_run_logs_every_decision_and_opens_no_session() {
    let logs = Logs::default();
    let _guard = logs.capture();
    let target = Target::start(Answer::Pass).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let status_port = free_port();
    // A hook that would leave a trace: a dry run must not run it.
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("hook-ran");
    let extra = format!("hook = [\"touch\", \"{}\"]", trace.display());
    let setup = Setup {
        service_extra: &extra,
        ..Setup::default()
    };
    let text = config_text(
        &setup,
        listener.local_addr().unwrap(),
        status_port,
        target.addr,
    );
    let config = load_str(&text, "daemon-it.toml").unwrap();
    let (signals, rx) = mpsc::channel(4);
    let options = RunOptions {
        dry_run: true,
        ..RunOptions::default()
    };
    let task = tokio::spawn(run(config, options, rx));
    wait_state(status_port, "up").await;
    target.set(Answer::Fail);
    wait_state(status_port, "down").await;
    signals.send(DaemonSignal::Stop).await.unwrap();
    match tokio::time::timeout(WAIT, task).await {
        Ok(Ok(Ok(()))) => {}
        other => panic!("run() did not end cleanly: {other:?}"),
    }
    // A connection attempt made at any time would be waiting in the backlog.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), listener.accept())
            .await
            .is_err(),
        "the dry run connected to the peer"
    );
    let logs = logs.text();
    for needle in [
        "dry run: no BGP session is opened",
        "service state changed service=web from=\"starting\" to=\"up\"",
        "service state changed service=web from=\"up\" to=\"down\"",
        "dry run: would send to every peer routes=announce 203.0.113.0/24",
        "dry run: would send to every peer routes=withdraw 203.0.113.0/24",
        "dry run: would run the hook service=web argv=[\"touch\"",
    ] {
        assert!(logs.contains(needle), "{needle:?} not logged:\n{logs}");
    }
    assert!(!trace.exists(), "the dry run ran the hook");
}

#[tokio::test]
async fn health_failing_during_a_drain_withdraws_at_once() {
    // A drain time far beyond every wait here: the withdrawal can only come from the
    // health failure ("a sick site withdraws at once"), not from the end of the drain.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("web.drain");
    let extra = format!("drain_file = \"{}\"", file.display());
    let setup = Setup {
        service_extra: &extra,
        drain_time: "1h",
        ..Setup::default()
    };
    let (target, mut d) = announced(&setup).await;
    touch(&file);
    let u = d.update().await;
    assert_eq!(communities(&u), vec![Community::GRACEFUL_SHUTDOWN], "{u:?}");
    d.wait_state("draining").await;

    target.set(Answer::Fail);
    assert_v4_withdrawal(&d.update().await);
    d.wait_state("drained").await;
    d.quiet_for(2 * INTERVAL, "withdrawn, session kept").await;
    d.shutdown().await;
}

#[tokio::test]
async fn stopping_a_depreferred_service_never_makes_it_more_attractive() {
    let setup = Setup {
        service_extra: "on_down = \"deprefer\"",
        ..Setup::default()
    };
    let (target, mut d) = announced(&setup).await;
    target.set(Answer::Fail);
    assert_v4_announcement(&d.update().await, 3);

    d.stop().await;
    // Whatever is re-announced while draining keeps the de-preference (a router that
    // ignores GRACEFUL_SHUTDOWN must not start preferring the sick site), then the
    // withdrawal, then the Cease.
    let mut last = None;
    for _ in 0..4 {
        match d.peer.recv_skip_keepalives().await {
            Ok(Message::Update(u)) if !u.nlri.is_empty() => {
                assert_v4_announcement(&u, 3);
                assert!(
                    communities(&u).contains(&Community::GRACEFUL_SHUTDOWN),
                    "{u:?}"
                );
                last = Some(u);
            }
            Ok(Message::Update(u)) => {
                assert_v4_withdrawal(&u);
                last = Some(u);
            }
            Ok(Message::Notification(n)) => {
                assert_eq!((n.code, n.subcode), (ErrorCode::Cease, 2));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        last.is_some_and(|u| !u.withdrawn.is_empty()),
        "no withdrawal before the Cease"
    );
    d.peer.expect_closed(WAIT).await;
    d.finished().await;
}

#[tokio::test]
async fn reload_applies_a_changed_community_and_a_rejected_config_changes_nothing() {
    let target = Target::start(Answer::Pass).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = listener.local_addr().unwrap();
    let status_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("anyguard.toml");
    let text = config_text(&Setup::default(), peer_addr, status_port, target.addr);
    std::fs::write(&path, &text).unwrap();
    let config = anyguard::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let (signals, rx) = mpsc::channel(4);
    let options = RunOptions {
        config_path: Some(path.clone()),
        ..RunOptions::default()
    };
    let task = tokio::spawn(run(config, options, rx));
    let mut peer = FakePeer::accept(&listener).await;
    peer.establish(fakepeer::open(PEER_ASN, PEER_ID, 0, true, false))
        .await;
    let mut d = Daemon {
        signals,
        task,
        status_port,
        peer,
    };
    assert_v4_announcement(&d.update().await, 0);

    // A new community on the service: one UPDATE with it, on the same session.
    let with_community = text.replace(
        "[[service.check]]",
        "communities = [\"65010:42\"]\n\n[[service.check]]",
    );
    std::fs::write(&path, &with_community).unwrap();
    d.signals.send(DaemonSignal::Reload).await.unwrap();
    let u = d.update().await;
    assert_v4_announcement(&u, 0);
    assert_eq!(communities(&u), vec![Community::new(65010, 42)], "{u:?}");

    // A config with an unknown key is rejected: nothing changes, the session stays up.
    let broken = with_community.replace("fall = 2", "fall = 2\nfal = 3");
    std::fs::write(&path, broken).unwrap();
    d.signals.send(DaemonSignal::Reload).await.unwrap();
    d.quiet_for(3 * INTERVAL, "rejected reload").await;
    d.wait_state("up").await;

    // The running config (with the community) is still the one in force at stop.
    d.stop().await;
    let u = d.update().await;
    assert_eq!(
        communities(&u),
        vec![Community::new(65010, 42), Community::GRACEFUL_SHUTDOWN],
        "{u:?}"
    );
    assert_v4_withdrawal(&d.update().await);
    d.peer.expect_closed(WAIT).await;
    d.finished().await;
}

#[tokio::test]
async fn hooks_get_every_state_change_in_order_and_a_hung_hook_delays_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hook.log");
    // The hook for "up" hangs until its 5 s timeout; the others return at once.
    let script = format!(
        "echo \"$SERVICE $PREVIOUS_STATE $STATE $PREFIXES\" >> {}; \
         if [ \"$STATE\" = up ]; then sleep 30; fi",
        out.display()
    );
    let extra = format!("hook = [\"sh\", \"-c\", {script:?}]\nhook_timeout = \"5s\"");
    let setup = Setup {
        service_extra: &extra,
        ..Setup::default()
    };
    let (target, mut d) = announced(&setup).await;
    let lines = || {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };

    // The withdrawal goes out while the "up" hook still hangs: hooks never hold an UPDATE.
    target.set(Answer::Fail);
    assert_v4_withdrawal(&d.update().await);
    assert_eq!(lines(), ["web starting up 203.0.113.0/24"]);

    // Once the hung hook is killed, the next change reaches its hook, in order.
    for _ in 0..500 {
        if lines().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        lines(),
        [
            "web starting up 203.0.113.0/24",
            "web up down 203.0.113.0/24"
        ]
    );

    // The stop's change has its hook too, run before run() returns.
    d.shutdown().await;
    assert_eq!(
        lines(),
        [
            "web starting up 203.0.113.0/24",
            "web up down 203.0.113.0/24",
            "web down drained 203.0.113.0/24"
        ]
    );
}

#[tokio::test]
async fn operator_drain_through_the_control_api_drains_and_undrain_reannounces() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token-for-tests\n").unwrap();
    let target = Target::start(Answer::Pass).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let status_port = free_port();
    let text = config_text(
        &Setup::default(),
        listener.local_addr().unwrap(),
        status_port,
        target.addr,
    )
    .replace(
        "[status]\n",
        &format!("[status]\ntoken_file = \"{}\"\n", token_file.display()),
    );
    let config = load_str(&text, "daemon-it.toml").unwrap_or_else(|e| panic!("{e}"));
    let (signals, rx) = mpsc::channel(4);
    let task = tokio::spawn(run(config, RunOptions::default(), rx));
    let mut peer = FakePeer::accept(&listener).await;
    peer.establish(fakepeer::open(PEER_ASN, PEER_ID, 0, true, false))
        .await;
    let mut d = Daemon {
        signals,
        task,
        status_port,
        peer,
    };
    assert_v4_announcement(&d.update().await, 0);

    let (code, body) = post(
        status_port,
        "/services/web/drain",
        "s3cret-token-for-tests",
        r#"{"reason": "maintenance"}"#,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let u = d.update().await;
    assert_v4_announcement(&u, 0);
    assert_eq!(communities(&u), vec![Community::GRACEFUL_SHUTDOWN], "{u:?}");
    assert_v4_withdrawal(&d.update().await);
    d.quiet_for(2 * INTERVAL, "drained by the operator, session kept")
        .await;

    let (code, body) = post(
        status_port,
        "/services/web/undrain",
        "s3cret-token-for-tests",
        "",
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let u = d.update().await;
    assert_v4_announcement(&u, 0);
    assert!(communities(&u).is_empty(), "{u:?}");
    d.shutdown().await;
}
