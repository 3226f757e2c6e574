//! Issue 15 item 4, "Scale": issue 13's figures (1,000 services, 2,000 checks/s) with 16
//! established BGP peers instead of a dry run, and the time of a reload that changes 10 %
//! of the services, checked on the wire.
//!
//! The real `anyguard run` binary (this build's release binary, in its own process) gets
//! N services (1,000 by default), each with one HTTP and one TCP check at 1 s against
//! targets in this process (their CPU is this process's, not the daemon's), and 16 peers.
//! The peers are played by this process with the project's own codec
//! (`tests/it/fakepeer.rs` on `anyguard_proto`): each listens on its own port of `[::1]`
//! (the config keys a peer by address *and* port), takes exactly one connection, answers
//! the daemon's OPEN (hold time 9 s, KEEPALIVEs both ways), and decodes every message it
//! receives, logging each UPDATE's announced and withdrawn prefixes, with their MED and
//! communities, and the time it was decoded. In-process peers rather than BIRD or FRR in
//! namespaces: what is measured is the daemon, and a peer that decodes every UPDATE
//! itself can check each one and time it without polling a router's table (whose own
//! processing time would be added to the reload's).
//!
//! 1. **The same daemon in `--dry-run` and with 16 peers**, one after the other, same
//!    config: after the start (with peers: after every peer has every prefix) and 4 s
//!    of warm-up, over a window (10 s): checks per second, the daemon's CPU (utime +
//!    stime) as a share of one core and per probe result, peak RSS (VmHWM, so the
//!    initial sync to 16 peers is in it), the slowest of three `GET /status`,
//!    `/status?summary=1` and `/metrics`, and the p99 of the probe start delay. The
//!    ratio of the two shows what the 16 peers cost.
//! 2. **Reloads**: the config is rewritten with 10 % of the services changed (a third
//!    get a new MED, a third a new community, a third a new prefix; a different tenth
//!    at each reload), SIGHUP, and the clock runs until the last peer has decoded the
//!    last UPDATE the change needs. Then, after a quiet period (3 s), every peer's log
//!    since the SIGHUP is checked: no NOTIFICATION, no closed or new connection, every
//!    changed prefix announced exactly once with its new attributes, every replaced
//!    prefix withdrawn exactly once, and nothing else — no UPDATE for an unchanged
//!    service. A failed check ends the benchmark with an error (exit 1).
//!
//! Run: `cargo bench --bench scale` (release). `SCALE_SERVICES=1000`, `SCALE_PEERS=16`,
//! `SCALE_SECONDS=10` (the window), `SCALE_RELOADS=5` (at most 10: one tenth each);
//! `SCALE_ANYGUARD=/path/to/anyguard` measures another build instead of this one.
//! The last line of the output, `SCALE_JSON {...}`, holds every figure for
//! `lab/bench/scale`. Figures only: nothing asserts on time.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyguard_proto::{Message, PathAttribute, UpdateMessage};
use bytes::BytesMut;
use ipnet::{IpNet, Ipv6Net};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

#[path = "common/daemon_io.rs"]
mod daemon_io;
#[path = "../tests/it/fakepeer.rs"]
mod fakepeer;
#[path = "../tests/it/httpd.rs"]
mod httpd;

use daemon_io::{
    cpu_time, get, load_average, peak_rss_kib, serve_http, serve_tcp, slowest, start_delay_p99,
    Daemon, Fetch,
};
use fakepeer::{FakeError, FakePeer};

type BenchResult<T> = Result<T, String>;

/// Time for every check to have started and settled before measuring.
const WARM_UP: Duration = Duration::from_secs(4);
/// Longest wait for the status endpoint, then for every peer's full table.
const START_WAIT: Duration = Duration::from_secs(90);
/// Longest wait for the UPDATEs of one reload at every peer.
const RELOAD_WAIT: Duration = Duration::from_secs(30);
/// After a reload's last UPDATE: time for any UPDATE that should not come to arrive.
const QUIET: Duration = Duration::from_secs(3);
/// Hold time the daemon is configured with and the peers offer; KEEPALIVE every third.
const HOLD_SECS: u16 = 9;
/// Our ASN, and the first peer's (the others count up from it).
const LOCAL_ASN: u32 = 65010;
const PEER_ASN: u32 = 65100;
/// The share of the services one reload changes: one in ten.
const CHANGED_PER_MILLE: usize = 100;

fn main() {
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(d)
    };
    let opts = Options {
        services: env("SCALE_SERVICES", 1000).clamp(10, 4000),
        peers: env("SCALE_PEERS", 16).clamp(1, 64),
        window: Duration::from_secs(env("SCALE_SECONDS", 10).clamp(2, 120) as u64),
        reloads: env("SCALE_RELOADS", 5).clamp(1, 10),
    };
    match bench(&opts) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("!!!!!!!! scale: FAILED: {e}");
            std::process::exit(1);
        }
    }
}

struct Options {
    services: usize,
    peers: usize,
    window: Duration,
    reloads: usize,
}

/// What service `i` looks like in config generation `generation`: the reload of
/// generation `r` (1..=10) changes the `r`-th tenth of the services, and each change
/// stays in the later generations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ServiceState {
    prefix: Ipv6Net,
    med: Option<u32>,
    community: Option<u16>,
}

fn service_state(i: usize, n: usize, generation: usize) -> ServiceState {
    let tenth = n * CHANGED_PER_MILLE / 1000;
    let mut s = ServiceState {
        prefix: prefix(i, 0),
        med: None,
        community: None,
    };
    for r in 1..=generation {
        let first = (r - 1) * tenth;
        if !(first..first + tenth).contains(&i) {
            continue;
        }
        // Thirds of the changed tenth: MED, community, prefix.
        match (i - first) * 3 / tenth.max(1) {
            0 => s.med = Some(r as u32),
            1 => s.community = Some(r as u16),
            _ => s.prefix = prefix(i, r),
        }
    }
    s
}

/// Service `i`'s prefix in prefix generation `g`: `2001:db8:X::/48` with X = g·4096 + i.
fn prefix(i: usize, g: usize) -> Ipv6Net {
    let x = ((g << 12) | i) as u128;
    let base = u128::from(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0));
    // A /48 is always a valid IPv6 prefix length.
    Ipv6Net::new((base | (x << 80)).into(), 48).unwrap_or_else(|_| unreachable!())
}

/// An announcement as a peer sees it: the attributes the reload may change.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Attrs {
    med: Option<u32>,
    communities: Vec<u32>,
}

impl ServiceState {
    fn attrs(&self) -> Attrs {
        Attrs {
            med: self.med,
            communities: self
                .community
                .map(|c| vec![(LOCAL_ASN << 16) | u32::from(c)])
                .unwrap_or_default(),
        }
    }
}

fn config_text(
    opts: &Options,
    generation: usize,
    dir: &Path,
    status_port: u16,
    peers: &[u16],
    (http, tcp): (SocketAddr, SocketAddr),
) -> String {
    let mut text = format!(
        r#"router_id = "198.18.0.2"
local_asn = {LOCAL_ASN}
state_dir = "{dir}"

[status]
listen = "127.0.0.1:{status_port}"
"#,
        dir = dir.display()
    );
    for (k, port) in peers.iter().enumerate() {
        text.push_str(&format!(
            r#"
[[peer]]
name = "p{k}"
address = "::1"
port = {port}
remote_asn = {asn}
hold_time = "{HOLD_SECS}s"
"#,
            asn = PEER_ASN + k as u32
        ));
    }
    for i in 0..opts.services {
        let s = service_state(i, opts.services, generation);
        text.push_str(&format!(
            "\n[[service]]\nname = \"svc{i}\"\nprefixes = [\"{}\"]\n",
            s.prefix
        ));
        if let Some(med) = s.med {
            text.push_str(&format!("med = {med}\n"));
        }
        if let Some(c) = s.community {
            text.push_str(&format!("communities = [\"{LOCAL_ASN}:{c}\"]\n"));
        }
        text.push_str(&format!(
            r#"
[[service.check]]
name = "http"
type = "http"
url = "http://{http}/healthz"
interval = "1s"

[[service.check]]
name = "tcp"
type = "tcp"
address = "{tcp}"
interval = "1s"
"#
        ));
    }
    text
}

/// What one peer saw, in order.
#[derive(Debug)]
enum Seen {
    Established,
    Update {
        at: Instant,
        announced: Vec<(IpNet, Attrs)>,
        withdrawn: Vec<IpNet>,
    },
    /// Anything that is not an UPDATE or KEEPALIVE after the session is up: a
    /// NOTIFICATION, a closed connection, a second connection, a decode error.
    Broken(String),
}

type PeerLog = Arc<Mutex<Vec<Seen>>>;

fn summarise(u: &UpdateMessage) -> (Vec<(IpNet, Attrs)>, Vec<IpNet>) {
    let mut attrs = Attrs {
        med: None,
        communities: Vec::new(),
    };
    let mut reach: Vec<IpNet> = u.nlri.iter().copied().map(IpNet::V4).collect();
    let mut withdrawn: Vec<IpNet> = u.withdrawn.iter().copied().map(IpNet::V4).collect();
    for a in &u.attributes {
        match a {
            PathAttribute::MultiExitDisc(m) => attrs.med = Some(*m),
            PathAttribute::Communities(c) => attrs.communities = c.iter().map(|c| c.0).collect(),
            PathAttribute::MpReach(r) => reach.extend(r.nlri.iter().copied()),
            PathAttribute::MpUnreach(r) => withdrawn.extend(r.withdrawn.iter().copied()),
            _ => {}
        }
    }
    (
        reach.into_iter().map(|p| (p, attrs.clone())).collect(),
        withdrawn,
    )
}

/// One peer: accepts the daemon's one connection, answers its OPEN, sends a KEEPALIVE
/// every third of the hold time and logs every message it decodes. A second connection
/// on its port is logged as a break (the daemon would only open one after a reset).
async fn peer_task(listener: TcpListener, k: usize, log: PeerLog) {
    let broken = |what: String| {
        if let Ok(mut l) = log.lock() {
            l.push(Seen::Broken(what));
        }
    };
    let stream = match tokio::time::timeout(START_WAIT, listener.accept()).await {
        Ok(Ok((s, _))) => s,
        Ok(Err(e)) => return broken(format!("accept: {e}")),
        Err(_) => return broken("the daemon did not connect".into()),
    };
    let mut peer = FakePeer::new(stream);
    let open = fakepeer::open(
        PEER_ASN + k as u32,
        Ipv4Addr::new(198, 18, 1, k as u8 + 1),
        HOLD_SECS,
        false,
        true,
    );
    if tokio::time::timeout(START_WAIT, peer.establish(open))
        .await
        .is_err()
    {
        return broken("no session within the wait".into());
    }
    if let Ok(mut l) = log.lock() {
        l.push(Seen::Established);
    }
    let mut keepalive = BytesMut::new();
    if let Err(e) = Message::Keepalive.encode(&peer.encode, &mut keepalive) {
        return broken(format!("encode KEEPALIVE: {e}"));
    }
    let mut ticker = tokio::time::interval(Duration::from_secs(u64::from(HOLD_SECS / 3)));
    // Bounded: the benchmark ends the process long before (hours of messages at most).
    for _ in 0..100_000_000u64 {
        tokio::select! {
            m = peer.recv_within(Duration::from_secs(3600)) => {
                let seen = match m {
                    Ok(Message::Update(u)) => {
                        let at = Instant::now();
                        let (announced, withdrawn) = summarise(&u);
                        Seen::Update { at, announced, withdrawn }
                    }
                    Ok(Message::Keepalive) => continue,
                    Ok(Message::Notification(n)) => Seen::Broken(format!("NOTIFICATION {n:?}")),
                    Ok(other) => Seen::Broken(format!("unexpected message {other:?}")),
                    Err(FakeError::Closed) => Seen::Broken("connection closed".into()),
                    Err(e) => Seen::Broken(format!("receive: {e:?}")),
                };
                let stop = matches!(seen, Seen::Broken(_));
                if let Ok(mut l) = log.lock() {
                    l.push(seen);
                }
                if stop {
                    return;
                }
            }
            _ = ticker.tick() => {
                if let Err(e) = peer.stream.write_all(&keepalive).await {
                    return broken(format!("send KEEPALIVE: {e}"));
                }
            }
            again = listener.accept() => {
                broken(format!("a second connection ({:?})", again.map(|(_, a)| a)));
                return;
            }
        }
    }
}

/// Figures of one daemon run over the window.
struct Measured {
    checks_per_s: f64,
    core_share: f64,
    cpu_per_result_us: f64,
    /// Peak RSS before the status requests (start, sync, window).
    steady_rss_mib: f64,
    /// Peak RSS after them.
    peak_rss_mib: f64,
    status: Fetch,
    summary: Fetch,
    metrics: Fetch,
    start_delay_p99: String,
}

fn measure_window(
    pid: u32,
    window: Duration,
    status_addr: SocketAddr,
    accepted: &AtomicU64,
) -> BenchResult<Measured> {
    std::thread::sleep(WARM_UP);
    let (cpu0, results0) = (cpu_time(pid)?, accepted.load(Ordering::Relaxed));
    std::thread::sleep(window);
    let (cpu1, results1) = (cpu_time(pid)?, accepted.load(Ordering::Relaxed));
    let cpu = cpu1.saturating_sub(cpu0).as_secs_f64();
    let results = results1.saturating_sub(results0);
    let steady_rss_mib = peak_rss_kib(pid)? as f64 / 1024.0;
    // The start delays before any timed request: rendering a large `/status` or
    // `/metrics` delays the probes that are due meanwhile, and that is not what this
    // figure is for.
    let start_delay = get(status_addr, "/metrics")
        .filter(|f| f.ok)
        .map_or_else(|| "n/a".to_string(), |f| start_delay_p99(&f.body));
    let status = slowest(status_addr, "/status");
    let summary = slowest(status_addr, "/status?summary=1");
    let metrics = slowest(status_addr, "/metrics");
    Ok(Measured {
        checks_per_s: results as f64 / window.as_secs_f64(),
        core_share: 100.0 * cpu / window.as_secs_f64(),
        cpu_per_result_us: cpu * 1e6 / results.max(1) as f64,
        steady_rss_mib,
        peak_rss_mib: peak_rss_kib(pid)? as f64 / 1024.0,
        status,
        summary,
        start_delay_p99: start_delay,
        metrics,
    })
}

fn wait_ready(status_addr: SocketAddr, deadline: Instant) -> BenchResult<()> {
    while get(status_addr, "/readyz").is_none_or(|f| !f.ok) {
        if Instant::now() > deadline {
            return Err("the status endpoint did not answer".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Every prefix each peer has now (announced and not withdrawn since), or the first
/// break a peer logged.
fn tables(logs: &[PeerLog]) -> BenchResult<Vec<BTreeMap<IpNet, Attrs>>> {
    let mut out = Vec::with_capacity(logs.len());
    for (k, log) in logs.iter().enumerate() {
        let log = log.lock().map_err(|_| "peer log poisoned")?;
        let mut rib = BTreeMap::new();
        for seen in log.iter() {
            match seen {
                Seen::Established => {}
                Seen::Update {
                    announced,
                    withdrawn,
                    ..
                } => {
                    for p in withdrawn {
                        rib.remove(p);
                    }
                    for (p, a) in announced {
                        rib.insert(*p, a.clone());
                    }
                }
                Seen::Broken(what) => return Err(format!("peer p{k}: {what}")),
            }
        }
        out.push(rib);
    }
    Ok(out)
}

/// What every peer must receive for the reload to generation `g`: the changed services'
/// prefixes with their new attributes, and the prefixes that are replaced.
fn expected_change(n: usize, g: usize) -> (BTreeMap<IpNet, Attrs>, BTreeSet<IpNet>) {
    let mut announce = BTreeMap::new();
    let mut withdraw = BTreeSet::new();
    for i in 0..n {
        let (old, new) = (service_state(i, n, g - 1), service_state(i, n, g));
        if old == new {
            continue;
        }
        if old.prefix != new.prefix {
            withdraw.insert(IpNet::V6(old.prefix));
        }
        announce.insert(IpNet::V6(new.prefix), new.attrs());
    }
    (announce, withdraw)
}

/// One reload's figures.
struct Reload {
    generation: usize,
    /// SIGHUP → the last peer decoded the last UPDATE the change needs.
    to_last_peer: Duration,
    /// SIGHUP → the first peer had everything.
    to_first_peer: Duration,
    /// SIGHUP → the first UPDATE at any peer.
    to_first_update: Duration,
    /// UPDATE messages per peer (the same at each peer, or the range).
    updates_per_peer: (usize, usize),
    announced: usize,
    withdrawn: usize,
}

/// Checks peer `k`'s messages since the SIGHUP against the expected change: `Ok(time of
/// the UPDATE that completed it, first UPDATE's time, UPDATE count)` once complete and
/// exact, `Ok(None)` while incomplete, `Err` for a break, a duplicate or anything else.
fn check_peer(
    k: usize,
    seen: &[Seen],
    announce: &BTreeMap<IpNet, Attrs>,
    withdraw: &BTreeSet<IpNet>,
) -> BenchResult<Option<(Instant, Instant, usize)>> {
    let (mut got_a, mut got_w) = (BTreeSet::new(), BTreeSet::new());
    let (mut first, mut done, mut updates) = (None, None, 0);
    for s in seen {
        let (at, announced, withdrawn) = match s {
            Seen::Update {
                at,
                announced,
                withdrawn,
            } => (*at, announced, withdrawn),
            Seen::Established => return Err(format!("peer p{k}: a new session")),
            Seen::Broken(what) => return Err(format!("peer p{k}: {what}")),
        };
        updates += 1;
        first.get_or_insert(at);
        if announced.is_empty() && withdrawn.is_empty() {
            return Err(format!(
                "peer p{k}: an empty UPDATE (End-of-RIB) after the reload"
            ));
        }
        for (p, a) in announced {
            match announce.get(p) {
                None => {
                    return Err(format!(
                        "peer p{k}: UPDATE for {p}, a service the reload did not change ({a:?})"
                    ))
                }
                Some(want) if want != a => {
                    return Err(format!(
                        "peer p{k}: {p} announced with {a:?}, the config says {want:?}"
                    ))
                }
                Some(_) if !got_a.insert(*p) => {
                    return Err(format!("peer p{k}: {p} announced twice"))
                }
                Some(_) => {}
            }
        }
        for p in withdrawn {
            if !withdraw.contains(p) {
                return Err(format!(
                    "peer p{k}: withdrawal of {p}, which the reload kept"
                ));
            }
            if !got_w.insert(*p) {
                return Err(format!("peer p{k}: {p} withdrawn twice"));
            }
        }
        if done.is_none() && got_a.len() == announce.len() && got_w.len() == withdraw.len() {
            done = Some(at);
        }
    }
    Ok(done.zip(first).map(|(d, f)| (d, f, updates)))
}

fn reload(
    pid: u32,
    g: usize,
    write: &dyn Fn(usize) -> BenchResult<()>,
    logs: &[PeerLog],
    n: usize,
) -> BenchResult<Reload> {
    let (announce, withdraw) = expected_change(n, g);
    let marks: Vec<usize> = logs
        .iter()
        .map(|l| l.lock().map(|l| l.len()))
        .collect::<Result<_, _>>()
        .map_err(|_| "peer log poisoned")?;
    write(g)?;
    let t0 = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .map_err(|e| format!("SIGHUP: {e}"))?;
    let check_all = || -> BenchResult<Vec<Option<(Instant, Instant, usize)>>> {
        logs.iter()
            .zip(&marks)
            .enumerate()
            .map(|(k, (log, &mark))| {
                let log = log.lock().map_err(|_| "peer log poisoned")?;
                check_peer(k, &log[mark..], &announce, &withdraw)
            })
            .collect()
    };
    let deadline = t0 + RELOAD_WAIT;
    let mut state = check_all()?;
    while state.iter().any(Option::is_none) {
        if Instant::now() > deadline {
            let missing = state.iter().filter(|s| s.is_none()).count();
            return Err(format!(
                "reload {g}: {missing} peers lack part of the change after {RELOAD_WAIT:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
        state = check_all()?;
    }
    // Anything after the change (an UPDATE for an unchanged service, a duplicate, a
    // reset) fails the check below.
    std::thread::sleep(QUIET);
    let state: Vec<(Instant, Instant, usize)> = check_all()?.into_iter().flatten().collect();
    let last = state.iter().map(|s| s.0).max().unwrap_or(t0);
    let first_done = state.iter().map(|s| s.0).min().unwrap_or(t0);
    let first_update = state.iter().map(|s| s.1).min().unwrap_or(t0);
    let counts = state.iter().map(|s| s.2);
    Ok(Reload {
        generation: g,
        to_last_peer: last.saturating_duration_since(t0),
        to_first_peer: first_done.saturating_duration_since(t0),
        to_first_update: first_update.saturating_duration_since(t0),
        updates_per_peer: (counts.clone().min().unwrap_or(0), counts.max().unwrap_or(0)),
        announced: announce.len(),
        withdrawn: withdraw.len(),
    })
}

fn print_measured(which: &str, m: &Measured) {
    println!(
        "{which:>10} {:>9.0} {:>9.1}% {:>14.1} {:>13} {:>18} {:>18} {:>18} {:>16}",
        m.checks_per_s,
        m.core_share,
        m.cpu_per_result_us,
        format!("{:.1} / {:.1}", m.steady_rss_mib, m.peak_rss_mib),
        m.status.text(),
        m.summary.text(),
        m.metrics.text(),
        m.start_delay_p99
    );
}

fn measured_json(m: &Measured) -> serde_json::Value {
    let ms = |f: &Fetch| f.ok.then_some(f.took.as_secs_f64() * 1e3);
    serde_json::json!({
        "checks_per_s": m.checks_per_s,
        "core_share_pct": m.core_share,
        "cpu_per_result_us": m.cpu_per_result_us,
        "steady_rss_mib": m.steady_rss_mib,
        "peak_rss_mib": m.peak_rss_mib,
        "status_ms": ms(&m.status),
        "status_kib": m.status.bytes / 1024,
        "summary_ms": ms(&m.summary),
        "metrics_ms": ms(&m.metrics),
        "metrics_kib": m.metrics.bytes / 1024,
        "start_delay_p99": m.start_delay_p99,
    })
}

fn bench(opts: &Options) -> BenchResult<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let accepted = Arc::new(AtomicU64::new(0));
    let (http, tcp, peer_listeners) = runtime
        .block_on(async {
            let http = TcpListener::bind("127.0.0.1:0").await?;
            let tcp = TcpListener::bind("127.0.0.1:0").await?;
            let mut peers = Vec::new();
            for _ in 0..opts.peers {
                peers.push(TcpListener::bind("[::1]:0").await?);
            }
            Ok::<_, std::io::Error>((http, tcp, peers))
        })
        .map_err(|e| format!("listeners: {e}"))?;
    let targets = (
        http.local_addr().map_err(|e| e.to_string())?,
        tcp.local_addr().map_err(|e| e.to_string())?,
    );
    let ports: Vec<u16> = peer_listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    runtime.spawn(serve_http(http, Arc::clone(&accepted)));
    runtime.spawn(serve_tcp(tcp, Arc::clone(&accepted)));
    // Another build (an older one, to compare) when SCALE_ANYGUARD names it.
    let binary = std::env::var_os("SCALE_ANYGUARD").map_or_else(
        || env!("CARGO_BIN_EXE_anyguard").into(),
        std::path::PathBuf::from,
    );
    let binary = binary.as_path();
    let dir = std::env::temp_dir().join(format!("anyguard-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let status_port = httpd::free_port();
    let status_addr: SocketAddr = ([127, 0, 0, 1], status_port).into();
    let path = dir.join("anyguard.toml");
    let write = |g: usize| -> BenchResult<()> {
        // Written aside and renamed, so the daemon never reads half a file.
        let tmp = dir.join("anyguard.toml.new");
        let text = config_text(opts, g, &dir, status_port, &ports, targets);
        std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))
    };
    write(0)?;
    println!(
        "scale: {} ({} bench build), {} CPUs, load average {} at the start; {} services x \
         (HTTP + TCP at 1 s), {} peers on [::1], window {} s after {} s warm-up",
        binary.display(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        std::thread::available_parallelism().map_or(0, usize::from),
        load_average(),
        opts.services,
        opts.peers,
        opts.window.as_secs(),
        WARM_UP.as_secs()
    );
    println!(
        "\n1. The daemon: dry run against {} established peers\n{:>10} {:>9} {:>10} {:>14} {:>13} {:>18} {:>18} {:>18} {:>16}",
        opts.peers,
        "run",
        "checks/s",
        "CPU share",
        "CPU/result µs",
        "RSS MiB *",
        "/status ms (KiB)",
        "summary ms (KiB)",
        "/metrics ms (KiB)",
        "start delay p99"
    );

    // The dry run: no session is opened (the peers' listeners take nothing).
    let dry = {
        let daemon = Daemon::spawn(binary, &["--dry-run"], &path, &dir)?;
        wait_ready(status_addr, Instant::now() + START_WAIT)?;
        measure_window(daemon.0.id(), opts.window, status_addr, &accepted)?
    };
    print_measured("dry run", &dry);

    let logs: Vec<PeerLog> = (0..opts.peers).map(|_| PeerLog::default()).collect();
    for (k, l) in peer_listeners.into_iter().enumerate() {
        runtime.spawn(peer_task(l, k, Arc::clone(&logs[k])));
    }
    let daemon = Daemon::spawn(binary, &[], &path, &dir)?;
    let pid = daemon.0.id();
    let started = Instant::now();
    wait_ready(status_addr, started + START_WAIT)?;
    // Every peer has every service's prefix (the targets always answer: all are up).
    let want: BTreeMap<IpNet, Attrs> = (0..opts.services)
        .map(|i| {
            let s = service_state(i, opts.services, 0);
            (IpNet::V6(s.prefix), s.attrs())
        })
        .collect();
    let synced = loop {
        let t = tables(&logs)?;
        if t.iter().all(|rib| *rib == want) {
            break started.elapsed();
        }
        if started.elapsed() > START_WAIT {
            let short: Vec<String> = t
                .iter()
                .enumerate()
                .filter(|(_, rib)| **rib != want)
                .map(|(k, rib)| format!("p{k} {}/{}", rib.len(), want.len()))
                .collect();
            return Err(format!(
                "not every peer has every prefix after {START_WAIT:?}: {}",
                short.join(", ")
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let updates_before = count_updates(&logs)?;
    let real = measure_window(pid, opts.window, status_addr, &accepted)?;
    let steady_updates = count_updates(&logs)? - updates_before;
    print_measured(&format!("{} peers", opts.peers), &real);
    println!(
        "{:>10} {:>9} {:>9.2}x {:>13.2}x {:>13}",
        "ratio",
        "",
        real.core_share / dry.core_share.max(1e-9),
        real.cpu_per_result_us / dry.cpu_per_result_us.max(1e-9),
        format!(
            "{:.2}x / {:.2}x",
            real.steady_rss_mib / dry.steady_rss_mib.max(1e-9),
            real.peak_rss_mib / dry.peak_rss_mib.max(1e-9)
        )
    );
    println!(
        "* peak RSS (VmHWM) before / after the timed status requests; the start delay p99 is \
         read before them"
    );
    println!(
        "every peer had all {} prefixes {:.2} s after the start; UPDATEs at all peers during the \
         steady window: {steady_updates}",
        opts.services,
        synced.as_secs_f64()
    );

    println!(
        "\n2. Reloads changing {} of {} services (a third MED, a third community, a third prefix), \
         SIGHUP -> UPDATE decoded, checked at every peer\n{:>6} {:>9} {:>9} {:>12} {:>12} {:>12} {:>14}",
        opts.services * CHANGED_PER_MILLE / 1000,
        opts.services,
        "reload",
        "announced",
        "withdrawn",
        "first UPDATE",
        "first peer",
        "last peer",
        "UPDATEs/peer"
    );
    let mut reloads = Vec::new();
    for g in 1..=opts.reloads {
        let r = reload(pid, g, &write, &logs, opts.services)?;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "{:>6} {:>9} {:>9} {:>9.1} ms {:>9.1} ms {:>9.1} ms {:>14}",
            r.generation,
            r.announced,
            r.withdrawn,
            ms(r.to_first_update),
            ms(r.to_first_peer),
            ms(r.to_last_peer),
            if r.updates_per_peer.0 == r.updates_per_peer.1 {
                r.updates_per_peer.0.to_string()
            } else {
                format!("{}-{}", r.updates_per_peer.0, r.updates_per_peer.1)
            }
        );
        reloads.push(r);
    }
    let after = measure_rss_and_sessions(pid, &logs)?;
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "every check passed: {} reloads, no session reset, exactly the changed services' UPDATEs \
         at each of {} peers; peak RSS after the reloads {after:.1} MiB",
        reloads.len(),
        opts.peers
    );

    let json = serde_json::json!({
        "services": opts.services,
        "peers": opts.peers,
        "window_s": opts.window.as_secs(),
        "warm_up_s": WARM_UP.as_secs(),
        "quiet_s": QUIET.as_secs(),
        "dry_run": measured_json(&dry),
        "peered": measured_json(&real),
        "synced_s": synced.as_secs_f64(),
        "steady_updates": steady_updates,
        "peak_rss_after_reloads_mib": after,
        "reloads": reloads.iter().map(|r| serde_json::json!({
            "generation": r.generation,
            "announced": r.announced,
            "withdrawn": r.withdrawn,
            "first_update_ms": r.to_first_update.as_secs_f64() * 1e3,
            "first_peer_ms": r.to_first_peer.as_secs_f64() * 1e3,
            "last_peer_ms": r.to_last_peer.as_secs_f64() * 1e3,
            "updates_per_peer_min": r.updates_per_peer.0,
            "updates_per_peer_max": r.updates_per_peer.1,
        })).collect::<Vec<_>>(),
    });
    println!("SCALE_JSON {json}");
    Ok(())
}

fn count_updates(logs: &[PeerLog]) -> BenchResult<usize> {
    let mut n = 0;
    for log in logs {
        let log = log.lock().map_err(|_| "peer log poisoned")?;
        n += log
            .iter()
            .filter(|s| matches!(s, Seen::Update { .. }))
            .count();
    }
    Ok(n)
}

/// Peak RSS after the reloads, once more checking that every session is still the first.
fn measure_rss_and_sessions(pid: u32, logs: &[PeerLog]) -> BenchResult<f64> {
    tables(logs)?;
    Ok(peak_rss_kib(pid)? as f64 / 1024.0)
}
