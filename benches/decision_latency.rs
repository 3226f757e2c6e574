//! The added delay between a health decision and the UPDATE that carries it, over loopback
//! TCP to a scripted BGP peer, measured two ways in one run:
//!
//! 1. **core + session** — a check transition is handed to the coordinator's pure
//!    [`Core`] exactly as the coordinator loop does (`on_probe`, `evaluate`, `desired`,
//!    publish on the routes `watch`); the peer task (`spawn_peer`, the daemon's own) diffs,
//!    encodes and writes; the clock stops when the peer has read and decoded the UPDATE.
//!    This is the decision → wire path with nothing else around it.
//! 2. **whole daemon** — `coordinator::run` itself, with an HTTP check against a local
//!    target that the benchmark flips between 200 and 503. The clock starts when the
//!    target has written the first answer of the new kind (with rise = fall = 1 that
//!    answer *is* the decision) and stops when the peer has decoded the UPDATE. This adds
//!    the probe's read of the answer, the check task, the coordinator's channel and loop
//!    (status publication and metrics included) to path 1: an upper bound on the added
//!    delay as operators would see it.
//!
//! `on_down = "deprefer"` makes every flip an UPDATE (down: prepends + community; up: back
//! to normal) without the hold-down and flap dampening that a withdraw/re-announce cycle
//! would rightly impose. The daemon runs on a multi-thread runtime like `anyguard run`; the
//! target and the peer run on their own thread and runtime so that measuring does not
//! compete with the daemon's workers. A tracing subscriber formats every log line into a
//! sink, so logging costs what it costs in production.
//!
//! Run: `cargo bench --bench decision_latency` (200 repetitions per path; set
//! `DECISION_LATENCY_REPS` for another count, at most 10 000). Prints min/p50/p90/p99/max
//! in microseconds. Figures only: nothing here asserts on time.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyguard::config::{load_str, Config};
use anyguard::coordinator::core::Core;
use anyguard::coordinator::{run, DaemonSignal, RunOptions};
use anyguard::health::{CheckEvent, CheckState, CheckStatus, ProbeOutcome, Transition};
use anyguard::session::{spawn_peer, LocalSpeaker, Tuning};
use anyguard::status::model::PeerStatus;
use anyguard_proto::{Message, PathAttribute, UpdateMessage};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

// The scripted peer and HTTP pieces of the integration tests, shared rather than copied.
#[path = "../tests/it/fakepeer.rs"]
mod fakepeer;
#[path = "common/flip_target.rs"]
mod flip_target;
#[path = "../tests/it/httpd.rs"]
mod httpd;

use fakepeer::{FakeError, FakePeer};
use flip_target::{serve_target, TargetState};

const DEFAULT_REPS: usize = 200;
const MAX_REPS: usize = 10_000;
/// Longest wait for one UPDATE; a repetition that exceeds it ends the run with an error.
const UPDATE_WAIT: Duration = Duration::from_secs(5);
const PEER_ASN: u32 = 65000;

type BenchResult<T> = Result<T, String>;

fn main() {
    let reps = std::env::var("DECISION_LATENCY_REPS")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(DEFAULT_REPS)
        .clamp(1, MAX_REPS);
    // Formatting every log line, as the daemon does, into a sink.
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::io::sink)
        .with_max_level(tracing::Level::INFO)
        .finish();
    if let Err(e) = tracing::subscriber::set_global_default(subscriber) {
        eprintln!("decision_latency: no tracing subscriber: {e}");
    }
    println!("decision_latency: {reps} repetitions per path, loopback TCP, times in µs");
    // The target is for an idle machine: say how idle this one was.
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        let cpus = std::thread::available_parallelism().map_or(0, usize::from);
        println!("load average {} on {cpus} CPUs", load.trim());
    }
    println!(
        "{:<34} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "path", "min", "p50", "p90", "p99", "max"
    );
    let mut p99s = Vec::new();
    for (name, result) in [
        ("core + session (injected event)", core_and_session(reps)),
        ("whole daemon (HTTP target flip)", whole_daemon(reps)),
    ] {
        match result {
            Ok(mut samples) => {
                let s = Summary::of(&mut samples);
                println!(
                    "{name:<34} {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>8.0}",
                    s.min, s.p50, s.p90, s.p99, s.max
                );
                p99s.push((name, s.p99));
            }
            Err(e) => {
                println!("{name:<34} failed: {e}");
                std::process::exit(1);
            }
        }
    }
    for (name, p99) in p99s {
        let verdict = if p99 < 2000.0 { "under" } else { "OVER" };
        println!("{name}: p99 {p99:.0} µs is {verdict} the 2 ms target");
    }
}

struct Summary {
    min: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

impl Summary {
    /// Nearest-rank percentiles, in microseconds.
    fn of(samples: &mut [Duration]) -> Summary {
        samples.sort_unstable();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let rank = |q: f64| {
            let n = samples.len();
            let i = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
            us(samples[i])
        };
        Summary {
            min: us(samples[0]),
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: us(samples[samples.len() - 1]),
        }
    }
}

fn config_text(peer: SocketAddr, status_port: u16, target: SocketAddr) -> String {
    format!(
        r#"router_id = "198.18.0.2"
local_asn = 65010

[status]
listen = "127.0.0.1:{status_port}"

[[peer]]
name = "bench"
address = "{ip}"
port = {port}
remote_asn = {PEER_ASN}
hold_time = "9s"

[[service]]
name = "web"
prefixes = ["203.0.113.0/24"]
on_down = "deprefer"

[[service.check]]
type = "http"
url = "http://{target}/healthz"
interval = "100ms"
timeout = "50ms"
rise = 1
fall = 1
"#,
        ip = peer.ip(),
        port = peer.port(),
    )
}

fn load(text: &str) -> BenchResult<Config> {
    load_str(text, "decision_latency.toml").map_err(|e| e.to_string())
}

fn daemon_runtime() -> BenchResult<tokio::runtime::Runtime> {
    // What `anyguard run` uses.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))
}

/// Whether `u` announces the service de-preferred (our ASN more than once).
fn depreferred(u: &UpdateMessage) -> Option<bool> {
    if u.nlri.is_empty() {
        return None;
    }
    u.attributes.iter().find_map(|a| match a {
        PathAttribute::AsPath(p) => {
            Some(p.segments.iter().map(|s| s.asns.len()).sum::<usize>() > 1)
        }
        _ => None,
    })
}

/// The next UPDATE (KEEPALIVEs skipped) and the moment it was decoded.
async fn next_update(peer: &mut FakePeer) -> BenchResult<(UpdateMessage, Instant)> {
    for _ in 0..1000 {
        match peer.recv_within(UPDATE_WAIT).await {
            Ok(Message::Update(u)) => return Ok((u, Instant::now())),
            Ok(Message::Keepalive) => continue,
            Ok(other) => return Err(format!("unexpected message {other:?}")),
            Err(FakeError::Timeout) => return Err("no UPDATE within 5 s".into()),
            Err(e) => return Err(format!("peer: {e:?}")),
        }
    }
    Err("endless KEEPALIVEs".into())
}

/// Accepts the daemon's connection and completes the handshake (hold time 0: no
/// KEEPALIVEs in either direction).
async fn accept_session(listener: &TcpListener) -> BenchResult<FakePeer> {
    let (stream, _) = tokio::time::timeout(UPDATE_WAIT, listener.accept())
        .await
        .map_err(|_| "the daemon did not connect".to_string())?
        .map_err(|e| format!("accept: {e}"))?;
    let mut peer = FakePeer::new(stream);
    peer.establish(fakepeer::open(
        PEER_ASN,
        Ipv4Addr::new(198, 18, 0, 1),
        0,
        true,
        false,
    ))
    .await;
    Ok(peer)
}

// ----- path 1: core + session -------------------------------------------------------------

fn check_event(up: bool) -> CheckEvent {
    let (from, to) = if up {
        (CheckStatus::Down, CheckStatus::Up)
    } else {
        (CheckStatus::Up, CheckStatus::Down)
    };
    CheckEvent {
        service: 0,
        check: 0,
        outcome: ProbeOutcome {
            ok: up,
            latency: Duration::from_micros(300),
            detail: if up { "status 200" } else { "status 503" }.to_string(),
        },
        state: CheckState {
            status: to,
            passes: u32::from(up),
            failures: u32::from(!up),
            rise: 1,
            fall: 1,
        },
        transition: Some(Transition { from, to }),
        start_delay: None,
        seq: anyguard::health::next_seq(),
    }
}

fn core_and_session(reps: usize) -> BenchResult<Vec<Duration>> {
    let rt = daemon_runtime()?;
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("bind: {e}"))?;
        let peer_addr = listener.local_addr().map_err(|e| e.to_string())?;
        // The target address is never contacted on this path.
        let config = Arc::new(load(&config_text(
            peer_addr,
            httpd::free_port(),
            "127.0.0.1:9".parse().map_err(|_| "addr")?,
        ))?);
        let mut core = Core::new(Arc::clone(&config), Instant::now(), SystemTime::now());
        let (routes_tx, routes_rx) = watch::channel(Arc::new(core.desired()));
        let (status_tx, _status_rx) = watch::channel(PeerStatus::default());
        let (events_tx, _events_rx) = mpsc::unbounded_channel();
        let local = LocalSpeaker {
            router_id: config.router_id,
            asn: config.local_asn,
            restarted: false,
            service_prefixes: config.services[0].prefixes.clone(),
            tuning: Tuning::default(),
            initial_routes: None,
            bfd: None,
        };
        let handle = spawn_peer(
            config.peers[0].clone(),
            local,
            routes_rx,
            status_tx,
            events_tx,
        );
        let mut peer = accept_session(&listener).await?;

        let mut samples = Vec::with_capacity(reps);
        // Rep 0 is the first announcement (warm-up, not counted).
        for i in 0..=reps {
            let up = i % 2 == 0;
            let event = check_event(up);
            let start = Instant::now();
            // What the coordinator loop does for one probe result.
            core.on_probe(&event, SystemTime::now());
            let now = Instant::now();
            let changes = core.evaluate(now, SystemTime::now());
            if changes.is_empty() {
                return Err(format!("repetition {i}: no service change"));
            }
            let desired = Arc::new(core.desired());
            if **routes_tx.borrow() != *desired {
                routes_tx.send_replace(desired);
            }
            let (u, at) = next_update(&mut peer).await?;
            if depreferred(&u) != Some(!up) {
                return Err(format!("repetition {i}: unexpected UPDATE {u:?}"));
            }
            if i > 0 {
                samples.push(at - start);
            }
        }
        handle
            .shutdown(anyguard::session::StopReason::DaemonStopping)
            .await;
        Ok(samples)
    })
}

// ----- path 2: the whole daemon -----------------------------------------------------------

fn whole_daemon(reps: usize) -> BenchResult<Vec<Duration>> {
    // The measuring side (target + peer) on its own thread and runtime.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<BenchResult<(SocketAddr, SocketAddr)>>();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let measurer = std::thread::spawn(move || -> BenchResult<Vec<Duration>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("runtime: {e}"))?;
        rt.block_on(async move {
            let bind = async {
                let peer_l = TcpListener::bind("127.0.0.1:0").await?;
                let target_l = TcpListener::bind("127.0.0.1:0").await?;
                Ok::<_, std::io::Error>((peer_l, target_l))
            };
            let (peer_l, target_l) = match bind.await {
                Ok(l) => l,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("bind: {e}")));
                    return Err(format!("bind: {e}"));
                }
            };
            let addrs = (
                peer_l.local_addr().map_err(|e| e.to_string())?,
                target_l.local_addr().map_err(|e| e.to_string())?,
            );
            let state = Arc::new(Mutex::new(TargetState {
                healthy: true,
                ..TargetState::default()
            }));
            let server = tokio::spawn(serve_target(target_l, Arc::clone(&state)));
            let _ = ready_tx.send(Ok(addrs));
            let result = measure_flips(reps, &peer_l, &state).await;
            let _ = done_tx.send(());
            server.abort();
            result
        })
    });
    let (peer_addr, target_addr) = ready_rx
        .recv_timeout(UPDATE_WAIT)
        .map_err(|e| format!("measuring thread: {e}"))??;

    let rt = daemon_runtime()?;
    let config = load(&config_text(peer_addr, httpd::free_port(), target_addr))?;
    let (signals, signals_rx) = mpsc::channel(1);
    rt.block_on(async move {
        let daemon = tokio::spawn(run(config, RunOptions::default(), signals_rx));
        // The measurer says when it is done (or gone).
        let _ = done_rx.await;
        let _ = signals.send(DaemonSignal::Stop).await;
        match tokio::time::timeout(Duration::from_secs(15), daemon).await {
            Ok(Ok(Ok(()))) => Ok(()),
            other => Err(format!("daemon did not stop cleanly: {other:?}")),
        }
    })?;
    measurer
        .join()
        .map_err(|_| "measuring thread panicked".to_string())?
}

async fn measure_flips(
    reps: usize,
    listener: &TcpListener,
    state: &Mutex<TargetState>,
) -> BenchResult<Vec<Duration>> {
    let mut peer = accept_session(listener).await?;
    // The first announcement (the target starts healthy): warm-up, not counted.
    let (u, _) = next_update(&mut peer).await?;
    if depreferred(&u) != Some(false) {
        return Err(format!(
            "first UPDATE is not the normal announcement: {u:?}"
        ));
    }
    let mut samples = Vec::with_capacity(reps);
    for i in 0..reps {
        let healthy = i % 2 == 1;
        {
            let mut s = state.lock().map_err(|_| "target state poisoned")?;
            s.healthy = healthy;
            s.armed = true;
            s.decided_at = None;
        }
        let (u, at) = next_update(&mut peer).await?;
        if depreferred(&u) != Some(!healthy) {
            return Err(format!("repetition {i}: unexpected UPDATE {u:?}"));
        }
        let decided = state
            .lock()
            .map_err(|_| "target state poisoned")?
            .decided_at
            .ok_or_else(|| format!("repetition {i}: UPDATE before the deciding answer"))?;
        samples.push(at.saturating_duration_since(decided));
    }
    Ok(samples)
}
