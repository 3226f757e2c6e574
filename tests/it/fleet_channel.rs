//! The fleet channel (issue 11 items 3 and 4): signed reports through the real daemon, and a
//! status endpoint whose fleet polls slow and pipelining clients cannot starve.
//!
//! Everything on 127.0.0.1; every loop is bounded in count and time; the daemon is stopped
//! by its PID. The only time limit asserted is the product's own poll timeout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyguard::guard::auth::{FleetKey, SIGNATURE_HEADER};
use anyguard::guard::fleet::Fleet;
use anyguard::guard::poller::poll_round;
use anyguard::guard::report::{Intent, ServiceReport, SiteReport, REPORT_VERSION};
use anyguard::guard::view::PollFailure;
use anyguard::status::control::ControlRequest;
use anyguard::status::metrics::Metrics;
use anyguard::status::model::StatusDocument;
use anyguard::status::server::{serve_listeners, Limits, Role, StatusState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::httpd::free_port;

const BIN: &str = env!("CARGO_BIN_EXE_anyguard");
const WAIT: Duration = Duration::from_secs(10);
const KEY: &str = "fleet-channel-test-key-0123456789abcdef";
const WEB: &str = "203.0.113.0/24";

fn key() -> FleetKey {
    FleetKey::from_file_bytes(KEY.as_bytes(), "test").unwrap()
}

fn report(site: &str) -> SiteReport {
    SiteReport {
        version: REPORT_VERSION,
        site: site.into(),
        generation: 1,
        fleet_digest: None,
        services: vec![ServiceReport {
            name: "web".into(),
            prefixes: vec![WEB.parse().unwrap()],
            healthy: true,
            announcing: true,
            intent: Intent::None,
        }],
    }
}

/// A temporary directory with the files of one test.
struct Files(tempfile::TempDir);

impl Files {
    fn new() -> Self {
        Files(tempfile::tempdir().unwrap())
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

/// `fleet.toml`: `[auth]` with `key_file` (if any), then `(name, status URL, report URL)`.
fn fleet_toml(key_file: Option<&str>, sites: &[(&str, String, String)]) -> String {
    let mut t = String::from("[poll]\ninterval = \"300ms\"\ntimeout = \"250ms\"\n");
    if let Some(k) = key_file {
        t.push_str(&format!("[auth]\nkey_file = \"{k}\"\n"));
    }
    for (name, status, report) in sites {
        t.push_str(&format!(
            "\n[[site]]\nname = \"{name}\"\nstatus_url = \"{status}\"\nreport_url = \"{report}\"\n"
        ));
    }
    t.push_str("\n[[service]]\nname = \"web\"\nmin_sites = 1\n");
    t
}

// ----- a site that answers polls with forged reports ----------------------------------------

/// What the impostor answers: an unsigned report, one signed with another key, or a replay
/// of a genuine signed answer recorded for an earlier nonce.
const UNSIGNED: u8 = 0;
const WRONG_KEY: u8 = 1;
const REPLAY: u8 = 2;

/// Answers every request with a well-formed report of site `b` that says it announces.
async fn impostor(listener: TcpListener, mode: Arc<AtomicU8>) {
    let body = format!(
        "{}\n",
        serde_json::to_string(&serde_json::json!({ "guard": report("b") })).unwrap()
    );
    // Recorded earlier: the genuine signature of this body for another poll's nonce.
    let recorded = key().sign("b", &[0x5a; 16], body.as_bytes());
    let other_key = FleetKey::from_file_bytes(&[b'x'; 40], "other").unwrap();
    for _ in 0..10_000 {
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        let mode = mode.load(Ordering::SeqCst);
        let (body, recorded, other_key) = (body.clone(), recorded.clone(), other_key.clone());
        tokio::spawn(async move {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16_384 {
                match sock.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&head);
            let nonce = head
                .split_whitespace()
                .nth(1)
                .and_then(|target| target.split_once("nonce="))
                .and_then(|(_, n)| hex::decode(n).ok())
                .unwrap_or_default();
            let signature = match mode {
                UNSIGNED => None,
                WRONG_KEY => Some(other_key.sign("b", &nonce, body.as_bytes())),
                _ => Some(recorded),
            };
            let sig_line =
                signature.map_or(String::new(), |s| format!("{SIGNATURE_HEADER}: {s}\r\n"));
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 {sig_line}Connection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(answer.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}

// ----- the daemon ---------------------------------------------------------------------------

struct Daemon {
    child: Child,
    status_port: u16,
    log: PathBuf,
}

impl Daemon {
    fn start(config: &Path, status_port: u16) -> Self {
        let log = config.with_extension("log");
        let child = Command::new(BIN)
            .args(["--log-level", "warn", "run", "--config"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("start anyguard run");
        Daemon {
            child,
            status_port,
            log,
        }
    }

    /// The body of a 200 answer to `GET path`; `None` while the daemon does not answer.
    async fn get(&self, path: &str) -> Option<String> {
        let raw = http_get(self.status_port, path).await?;
        let (head, body) = raw.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
    }

    async fn doc(&self) -> Option<StatusDocument> {
        serde_json::from_str(&self.get("/status").await?).ok()
    }

    /// The value of the sample `series` (exact name with labels) in `/metrics`.
    async fn metric(&self, series: &str) -> Option<f64> {
        let text = self.get("/metrics").await?;
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }

    /// Waits (at most [`WAIT`]) until `series` is at least `min`.
    async fn metric_at_least(&self, series: &str, min: f64) -> f64 {
        let step = Duration::from_millis(100);
        for _ in 0..WAIT.as_millis() / step.as_millis() {
            if let Some(v) = self.metric(series).await.filter(|v| *v >= min) {
                return v;
            }
            tokio::time::sleep(step).await;
        }
        panic!(
            "{series} never reached {min}: {:?}\n{:#?}",
            self.metric(series).await,
            self.doc().await.and_then(|d| d.fleet)
        );
    }

    async fn stop(mut self) {
        let pid = self.child.id().expect("running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        if tokio::time::timeout(WAIT, self.child.wait()).await.is_err() {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
            panic!("daemon did not stop within {WAIT:?}");
        }
    }
}

#[tokio::test]
async fn daemon_signs_its_report_and_counts_forged_unsigned_and_replayed_reports_as_unreachable() {
    let files = Files::new();
    files.write("fleet.key", &format!("{KEY}\n"));
    let (status_port, fleet_port) = (free_port(), free_port());
    let b_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b = b_listener.local_addr().unwrap();
    let mode = Arc::new(AtomicU8::new(UNSIGNED));
    let impostor = tokio::spawn(impostor(b_listener, Arc::clone(&mode)));
    let sites = [
        (
            "a",
            format!("http://127.0.0.1:{status_port}/status"),
            format!("http://127.0.0.1:{fleet_port}/fleet/report"),
        ),
        (
            "b",
            format!("http://{b}/status"),
            format!("http://{b}/fleet/report"),
        ),
    ];
    let fleet_path = files.write("fleet.toml", &fleet_toml(Some("fleet.key"), &sites));
    let config = files.write(
        "a.toml",
        &format!(
            "router_id = \"198.18.0.2\"\nlocal_asn = 65010\n\n[status]\n\
             listen = \"127.0.0.1:{status_port}\"\nfleet_listen = \"127.0.0.1:{fleet_port}\"\n\n\
             [fleet]\npath = \"{}\"\nsite = \"a\"\n\n[[service]]\nname = \"web\"\n\
             prefixes = [\"{WEB}\"]\n[[service.check]]\ntype = \"command\"\nargv = [\"true\"]\n\
             interval = \"200ms\"\nrise = 1\nfall = 1\n",
            fleet_path.display()
        ),
    );
    let daemon = Daemon::start(&config, status_port);

    // Each kind of forgery, one after the other, is counted under its own reason.
    let series = |reason: &str| {
        format!("anyguard_guard_poll_failures_total{{site=\"b\",reason=\"{reason}\"}}")
    };
    daemon.metric_at_least(&series("unsigned"), 2.0).await;
    mode.store(WRONG_KEY, Ordering::SeqCst);
    daemon.metric_at_least(&series("bad_signature"), 2.0).await;
    let wrong_key = daemon.metric(&series("bad_signature")).await.unwrap();
    mode.store(REPLAY, Ordering::SeqCst);
    daemon
        .metric_at_least(&series("bad_signature"), wrong_key + 2.0)
        .await;
    assert_eq!(
        daemon.metric("anyguard_guard_reports_signed").await,
        Some(1.0)
    );
    let doc = daemon.doc().await.unwrap();
    let fleet = doc.fleet.clone().unwrap();
    assert_eq!(
        (fleet.auth.as_str(), &fleet.warning),
        ("hmac-sha256", &None)
    );
    let site_b = &fleet.sites[0];
    assert_eq!(site_b.name, "b");
    assert_eq!(
        site_b.last_poll,
        "report signature is invalid (signature does not match)"
    );
    assert!(site_b.poll_failures["unsigned"] >= 2, "{site_b:?}");
    // Never a single accepted report from the impostor: b counts as not announcing.
    let guard = &doc.services[0].guard;
    assert!(guard.sites_announcing.is_empty(), "{guard:?}");

    // The daemon's own report, polled as another site would (the CLI's poll_round):
    // verified with the fleet key, refused with another key, unsigned accepted only by a
    // fleet without a key.
    let as_b = Fleet::load(&fleet_path).unwrap();
    let view = poll_round(&as_b, "b").await;
    let got = view.site("a").unwrap().last_poll.clone().unwrap().result;
    assert_eq!(got.unwrap().site, "a");
    files.write("other.key", &"y".repeat(40));
    let other = files.write("other.toml", &fleet_toml(Some("other.key"), &sites));
    let view = poll_round(&Fleet::load(&other).unwrap(), "b").await;
    assert_eq!(
        view.site("a").unwrap().last_poll.clone().unwrap().result,
        Err(PollFailure::BadSignature("signature does not match".into()))
    );
    // `anyguard check --config B --fleet F` (site b's candidate) polls a on the signed path
    // and says what it saw: a verified report with the key, a bad signature with another.
    let candidate = files.write(
        "b.toml",
        &format!(
            "router_id = \"198.18.0.3\"\nlocal_asn = 65010\n\n[fleet]\npath = \"{}\"\nsite = \"b\"\n\n\
             [[service]]\nname = \"web\"\nprefixes = [\"{WEB}\"]\n[[service.check]]\n\
             type = \"command\"\nargv = [\"true\"]\n",
            fleet_path.display()
        ),
    );
    let check = |fleet: PathBuf| {
        let candidate = candidate.clone();
        async move {
            let out = Command::new(BIN)
                .arg("check")
                .arg("--config")
                .arg(&candidate)
                .arg("--fleet")
                .arg(&fleet)
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output();
            let out = tokio::time::timeout(WAIT, out).await.unwrap().unwrap();
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        }
    };
    let signed = check(fleet_path.clone()).await;
    // (b has no peer here, so the check rejects it either way; what matters is how it saw a:
    // through a verified report, which says a does not announce either.)
    assert!(
        signed.contains("a: not announcing") && !signed.contains("a: unreachable"),
        "{signed}"
    );
    let forged = check(other.clone()).await;
    assert!(
        forged.contains("a: unreachable (report signature is invalid (signature does not match))"),
        "{forged}"
    );

    // Without a nonce there is nothing to sign for: 400.
    let raw = http_get(fleet_port, "/fleet/report").await.unwrap();
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    // The fleet listener serves nothing else.
    let raw = http_get(fleet_port, "/status").await.unwrap();
    assert!(raw.starts_with("HTTP/1.1 404"), "{raw}");

    let log = std::fs::read_to_string(&daemon.log).unwrap();
    assert!(!log.contains("UNSIGNED"), "{log}");
    daemon.stop().await;
    impostor.abort();
    drop(files);
}

/// One `GET path` on 127.0.0.1:`port`: the whole answer, head and body, as text.
async fn http_get(port: u16, path: &str) -> Option<String> {
    let exchange = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        s.write_all(request.as_bytes()).await.ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.ok()?;
        Some(String::from_utf8_lossy(&out).into_owned())
    };
    tokio::time::timeout(WAIT, exchange).await.ok().flatten()
}

#[tokio::test]
async fn a_fleet_without_a_key_polls_unsigned_reports_and_says_so() {
    let files = Files::new();
    let status_port = free_port();
    let closed = free_port();
    let sites = [
        (
            "a",
            format!("http://127.0.0.1:{status_port}/status"),
            format!("http://127.0.0.1:{status_port}/fleet/report"),
        ),
        (
            "b",
            format!("http://127.0.0.1:{closed}/status"),
            format!("http://127.0.0.1:{closed}/fleet/report"),
        ),
    ];
    let fleet_path = files.write("fleet.toml", &fleet_toml(None, &sites));
    let config = files.write(
        "a.toml",
        &format!(
            "router_id = \"198.18.0.2\"\nlocal_asn = 65010\n\n[status]\n\
             listen = \"127.0.0.1:{status_port}\"\n\n[fleet]\npath = \"{}\"\nsite = \"a\"\n\n\
             [[service]]\nname = \"web\"\nprefixes = [\"{WEB}\"]\n[[service.check]]\n\
             type = \"command\"\nargv = [\"true\"]\n",
            fleet_path.display()
        ),
    );
    let daemon = Daemon::start(&config, status_port);
    daemon
        .metric_at_least(
            "anyguard_guard_poll_failures_total{site=\"b\",reason=\"request\"}",
            1.0,
        )
        .await;
    assert_eq!(
        daemon.metric("anyguard_guard_reports_signed").await,
        Some(0.0)
    );
    let fleet = daemon.doc().await.unwrap().fleet.unwrap();
    assert_eq!(fleet.auth, "none");
    assert!(
        fleet
            .warning
            .as_deref()
            .unwrap()
            .contains("neither signed nor verified"),
        "{fleet:?}"
    );
    let log = std::fs::read_to_string(&daemon.log).unwrap();
    assert!(
        log.contains("all-sites guard: UNSIGNED fleet reports"),
        "no warning at start: {log}"
    );
    // Served on the main listener (no fleet_listen), unsigned, and accepted as such.
    let view = poll_round(&Fleet::load(&fleet_path).unwrap(), "b").await;
    let got = view.site("a").unwrap().last_poll.clone().unwrap().result;
    assert_eq!(got.unwrap().site, "a");
    daemon.stop().await;
}

// ----- slow and hostile clients ------------------------------------------------------------

/// Slow clients: 200 that send half a request head and wait, 200 that pipeline 50 requests
/// with a tiny receive buffer and never read.
const HALF: usize = 200;
const PIPELINERS: usize = 200;
const PIPELINED: usize = 50;
/// Half-request clients on the fleet listener too, all from one other address (127.0.0.2).
const FLEET_HALF: usize = 100;
/// Polls made while the clients hold the endpoint, one every poll timeout.
const POLLS: usize = 12;

#[tokio::test]
async fn fleet_polls_are_answered_while_slow_and_pipelining_clients_fill_the_status_endpoint() {
    // The real status server with the daemon's default slots (64) and header deadline
    // (5 s); the whole-connection deadline shortened to keep the test short.
    let limits = Limits {
        connection_timeout: Duration::from_secs(3),
        ..Limits::default()
    };
    let mut doc = crate::status_http::fixture::realistic_document();
    doc.guard = Some(report("b"));
    let (_doc_tx, doc_rx) = watch::channel(doc);
    let (control_tx, _control_rx) = mpsc::channel::<ControlRequest>(1);
    let (_key_tx, key_rx) = watch::channel(Some(key()));
    let state = StatusState::new(
        doc_rx.clone(),
        Metrics::new(doc_rx),
        None,
        control_tx,
        limits,
    )
    .with_fleet_key(key_rx);
    let general = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fleet_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (g_addr, f_addr) = (general.local_addr().unwrap(), fleet_l.local_addr().unwrap());
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let server = tokio::spawn(serve_listeners(
        vec![(general, Role::General), (fleet_l, Role::Fleet)],
        state,
        async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        },
    ));

    // Site b answers on its fleet listener, site c is the same server's main listener.
    let files = Files::new();
    files.write("fleet.key", KEY);
    let fleet_path = files.write(
        "fleet.toml",
        &fleet_toml(
            Some("fleet.key"),
            &[
                (
                    "a",
                    "http://127.0.0.1:9/status".into(),
                    "http://127.0.0.1:9/fleet/report".into(),
                ),
                (
                    "b",
                    format!("http://{g_addr}/status"),
                    format!("http://{f_addr}/fleet/report"),
                ),
                (
                    "c",
                    format!("http://{g_addr}/status"),
                    format!("http://{g_addr}/fleet/report"),
                ),
            ],
        )
        .replace("timeout = \"250ms\"", "timeout = \"500ms\"")
        .replace("interval = \"300ms\"", "interval = \"1s\""),
    );
    let fleet = Fleet::load(&fleet_path).unwrap();
    let poll_timeout = fleet.poll.timeout;
    assert_eq!(
        poll_timeout,
        Duration::from_millis(500),
        "the product's default"
    );
    // Before the attack both listeners answer within the poll timeout (c's answer is b's
    // report, signed for b: for the name c that is a bad signature, but an answer).
    let before = poll_round(&fleet, "a").await;
    let result = |v: &anyguard::guard::view::FleetView, s: &str| {
        v.site(s).unwrap().last_poll.clone().unwrap().result
    };
    assert!(result(&before, "b").is_ok(), "{before:#?}");
    assert_eq!(
        result(&before, "c").map(|_| ()),
        Err(PollFailure::BadSignature("signature does not match".into()))
    );

    // The attack.
    let start = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..HALF + PIPELINERS {
        clients.spawn(stuck_client(None, g_addr, i >= HALF, start));
    }
    let other_host: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    for _ in 0..FLEET_HALF {
        clients.spawn(stuck_client(Some(other_host), f_addr, false, start));
    }
    // Let the connections queue up before polling.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut answered = 0;
    let mut general_failures = Vec::new();
    for _ in 0..POLLS {
        let round = Instant::now();
        let view = poll_round(&fleet, "a").await;
        let b = result(&view, "b");
        assert!(
            b.is_ok(),
            "fleet poll failed under load after {:?}: {b:?}",
            start.elapsed()
        );
        answered += 1;
        if let Err(e) = result(&view, "c") {
            general_failures.push(e.reason());
        }
        tokio::time::sleep_until(round + poll_timeout).await;
    }
    assert_eq!(answered, POLLS);
    // The same polls on the main listener were starved: the attack was real.
    assert!(
        general_failures.contains(&"timeout"),
        "polls of the main listener never timed out under the attack: {general_failures:?}"
    );

    // Every stuck connection is closed by the server. The stated bound: each connection
    // lives at most `connection_timeout` after it is accepted, and at most
    // `max_connections` are open at once, so N queued connections are all closed within
    // ceil(N / max_connections) × connection_timeout (the half-request ones end at the
    // earlier of the header deadline and that; on the fleet listener, all but 4 of the
    // other host's are closed as soon as they are accepted, the 4 within its 2 s).
    let n = HALF + PIPELINERS + FLEET_HALF;
    let waves = n.div_ceil(limits.max_connections);
    // One more deadline of slack: the accepts themselves are scheduled on a busy machine.
    let bound = limits.connection_timeout * (u32::try_from(waves).unwrap() + 1);
    let mut closed = 0;
    let mut latest = Duration::ZERO;
    for _ in 0..n {
        let Some(joined) = clients.join_next().await else {
            break;
        };
        let at = joined
            .unwrap()
            .unwrap_or_else(|| panic!("a stuck connection was still open after {bound:?}"));
        latest = latest.max(at);
        closed += 1;
    }
    assert_eq!(closed, n);
    assert!(latest <= bound, "closed after {latest:?}, bound {bound:?}");
    eprintln!(
        "fleet_channel: {answered}/{POLLS} fleet polls answered within {poll_timeout:?} under \
         {HALF} half-request and {PIPELINERS} pipelining clients (and {FLEET_HALF} half-request \
         ones from another address on the fleet listener); the main listener's polls \
         failed {} times; the {n} stuck connections were closed by {latest:?} (bound {bound:?})",
        general_failures.len()
    );

    stop_tx.send_replace(true);
    tokio::time::timeout(WAIT, server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// One hostile client on `addr` (from `source`, else the default address): half a request
/// head, or `PIPELINED` pipelined requests with a tiny receive buffer, never reading until
/// the polls are done. Returns when the server closed the connection (time since `start`),
/// `None` if it did not within 60 s.
async fn stuck_client(
    source: Option<std::net::IpAddr>,
    addr: std::net::SocketAddr,
    pipeline: bool,
    start: Instant,
) -> Option<Duration> {
    let socket = TcpSocket::new_v4().ok()?;
    socket.set_recv_buffer_size(2048).ok()?;
    if let Some(ip) = source {
        socket.bind(std::net::SocketAddr::new(ip, 0)).ok()?;
    }
    let mut stream = socket.connect(addr).await.ok()?;
    if pipeline {
        let one = "GET /status HTTP/1.1\r\nHost: a\r\n\r\n".repeat(PIPELINED);
        stream.write_all(one.as_bytes()).await.ok()?;
        // Never read while the polls run.
        tokio::time::sleep(Duration::from_secs(7)).await;
    } else {
        stream
            .write_all(b"GET /status HTTP/1.1\r\nHost: a\r\n")
            .await
            .ok()?;
    }
    // Drain what was sent until the server closes (EOF or reset).
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = start + Duration::from_secs(60);
    for _ in 0..1_000_000 {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
    None
}
