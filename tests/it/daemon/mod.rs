//! The whole daemon end to end over loopback (issue 4): `coordinator::run` in this process
//! with a config built from TOML text, a scripted BGP peer (`fakepeer`) it connects to, and
//! a local HTTP health target whose answer the test switches. Every assertion is on the
//! BGP bytes the peer receives (or on their absence), in order; every wait is bounded and
//! nothing asserts on wall-clock speed.
//!
//! Timers are short (interval 100 ms, rise = fall = 2, drain_time 300 ms, hold_down
//! 200 ms) so that a whole scenario takes about a second.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod addresses;
mod attributes;
mod binary_checks;
mod check_logs;
mod collision;
mod drain;
mod endpoints;
mod health;
mod http_probe;
mod http_reuse;
mod many_peers;
mod operations;
mod probe_close;
mod probe_wakes;
mod process;
mod routine_results;
mod state_file;
mod systemd;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyguard::config::{load_str, Config};
use anyguard::coordinator::{run, DaemonSignal, RunError, RunOptions};
use anyguard_proto::{
    AsPathSegmentType, Community, ErrorCode, Message, MpReach, PathAttribute, UpdateMessage,
};
use hyper::Method;
use ipnet::{IpNet, Ipv4Net};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::fakepeer::{self, FakeError, FakePeer, WAIT};
use crate::httpd::{free_port, read_request_head, OK, UNAVAILABLE};

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
                    if !read_request_head(&mut sock).await {
                        return;
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
                    let reply = match answer {
                        Answer::Pass => OK,
                        Answer::Fail => UNAVAILABLE,
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
    /// Extra `[status]` lines.
    status_extra: &'a str,
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
            status_extra: "",
            hold_down: "200ms",
            drain_time: "300ms",
            ipv6_session: false,
        }
    }
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
{status_extra}

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
        status_extra = setup.status_extra,
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
        let ipv6 = setup.prefixes.iter().any(|p| p.contains(':'));
        Self::launch(&listener, status_port, config, RunOptions::default(), ipv6).await
    }

    /// Starts `run()` with `config` and `options` and accepts its session on `listener`
    /// (IPv6 unicast offered too when `ipv6`).
    async fn launch(
        listener: &TcpListener,
        status_port: u16,
        config: Config,
        options: RunOptions,
        ipv6: bool,
    ) -> Self {
        let (signals, rx) = mpsc::channel(4);
        let task = tokio::spawn(run(config, options, rx));
        let mut peer = FakePeer::accept(listener).await;
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
    // Connection refused until the daemon has bound the port.
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let url = format!("http://127.0.0.1:{port}/status");
    let (_, _, body) = crate::status_http::request(Method::GET, &url, None, "").await;
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    Some(doc["services"][0]["state"].as_str().unwrap().to_string())
}

/// The whole status document `/status` on `port` serves.
async fn status_doc(port: u16) -> serde_json::Value {
    let url = format!("http://127.0.0.1:{port}/status");
    let (code, _, body) = crate::status_http::request(Method::GET, &url, None, "").await;
    assert_eq!(code.as_u16(), 200);
    serde_json::from_slice(&body).unwrap()
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
    let url = format!("http://127.0.0.1:{port}{path}");
    let bearer = format!("Bearer {token}");
    let (status, _, body) =
        crate::status_http::request(Method::POST, &url, Some(&bearer), body).await;
    (status.as_u16(), String::from_utf8_lossy(&body).into_owned())
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
