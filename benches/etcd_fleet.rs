//! Scale run of the fleet backends (issue 16): for each fleet size, N simulated sites in
//! one process, each with the real backend (`guard::backend::FleetBackend`) and a minimal
//! coordinator loop that acts on the decisions like the daemon's (withdraw on `Withdraw`,
//! publish the report after every decision, the view taken at every change), run twice:
//!
//! - **etcd**: the etcd driver (lease, watch, transactions) and `guard::store::decide`, on
//!   a three-node etcd cluster on loopback (Debian's `/usr/bin/etcd`, ports from the OS,
//!   data in a temporary directory, stopped by PID);
//! - **poll mesh**: the real poller (`guard::poller`, one HTTP request per other site per
//!   interval) against every site's real status server (`status::server`, its `/fleet/report`
//!   route serving the site's latest report), and `guard::runtime::decide`.
//!
//! Measured, per backend and size, in the same run: while the fleet is steady (a 10 s
//! window) the requests (etcd: gRPC messages received by the members, from their own
//! `/metrics`; mesh: TCP connections opened, one per poll), etcd's watch responses and bytes,
//! the CPU of the etcd members and of the guard process (`/proc`); the time from a site's
//! failure to its withdrawal being acted on (the commit in etcd / the confirmation by the
//! polls, then the decision `Withdraw`), p50/p99/max over single sites failing in turn and
//! groups failing at once; and every site failing at once: the time until exactly
//! `min_sites` are left and the fewest on the wire meanwhile (checked against `min_sites`).
//!
//! Run by hand (not in CI), at a high priority for the measuring process:
//! `nice -n -10 cargo bench --bench etcd_fleet` (release). Environment:
//! `ETCD_FLEET_SITES=50,100,200` (sizes), `ETCD_FLEET_MIN_SITES=2`, `ETCD_FLEET_MESH_MAX=200`
//! (largest fleet run on the poll mesh), `ETCD_FLEET_BACKENDS=etcd,poll`,
//! `ETCD_FLEET_SINGLES=20`, `ETCD_FLEET_GROUPS=3`, `ETCD_FLEET_GROUP_SIZE=10`.
//! Figures only: nothing asserts on time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyguard::guard::backend::FleetBackend;
use anyguard::guard::digest::fleet_digest;
use anyguard::guard::fleet::Fleet;
use anyguard::guard::report::{ServiceReport, SiteReport, REPORT_VERSION};
use anyguard::guard::runtime::{Decision, Drain, GuardInput, LocalIntent, LocalService};
use anyguard::status::metrics::Metrics;
use anyguard::status::model::StatusDocument;
use anyguard::status::server::{serve_listeners, Limits, Role, StatusState};
use ipnet::IpNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

type BenchResult<T> = Result<T, String>;

const ETCD: &str = "/usr/bin/etcd";
const WEB: &str = "203.0.113.0/24";
/// Longest wait for the start and for every site failing at once.
const PHASE_WAIT: Duration = Duration::from_secs(120);
/// Longest wait for one failure (or one recovery) of the latency phase: a backend that
/// cannot withdraw one failing site in this time is past what this machine does.
const STEP_WAIT: Duration = Duration::from_secs(30);
/// The steady window.
const WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Etcd,
    Poll,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Etcd => "etcd",
            Backend::Poll => "poll mesh",
        }
    }
}

struct Settings {
    min_sites: usize,
    singles: usize,
    groups: usize,
    group_size: usize,
}

fn main() {
    let sizes: Vec<usize> = std::env::var("ETCD_FLEET_SITES")
        .unwrap_or_else(|_| "50,100,200".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .map(|n: usize| n.clamp(4, 1000))
        .collect();
    let mesh_max = env_or("ETCD_FLEET_MESH_MAX", 200);
    let backends = std::env::var("ETCD_FLEET_BACKENDS").unwrap_or_else(|_| "etcd,poll".into());
    let settings = Settings {
        min_sites: env_or("ETCD_FLEET_MIN_SITES", 2).max(1),
        singles: env_or("ETCD_FLEET_SINGLES", 20).clamp(1, 200),
        groups: env_or("ETCD_FLEET_GROUPS", 3).min(50),
        group_size: env_or("ETCD_FLEET_GROUP_SIZE", 10).max(2),
    };
    if backends.contains("etcd") && !Path::new(ETCD).exists() {
        eprintln!("etcd_fleet: SKIP: {ETCD} is missing (apt-get install etcd-server)");
        return;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("etcd_fleet: runtime: {e}");
            std::process::exit(1);
        }
    };
    let mut rows = Vec::new();
    let mut failed = false;
    for &n in &sizes {
        for backend in [Backend::Etcd, Backend::Poll] {
            let wanted = match backend {
                Backend::Etcd => backends.contains("etcd"),
                Backend::Poll => backends.contains("poll") && n <= mesh_max,
            };
            if !wanted {
                continue;
            }
            match runtime.block_on(run_fleet(backend, n, &settings)) {
                Ok(row) => rows.push(row),
                Err(e) => {
                    eprintln!("etcd_fleet: {} {n} sites: {e}", backend.name());
                    failed = true;
                }
            }
            // Let the sockets of the run close before the next one starts.
            std::thread::sleep(Duration::from_secs(3));
        }
    }
    print_table(&rows);
    if failed {
        std::process::exit(1);
    }
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Three etcd members on loopback, killed by PID on drop.
struct Cluster {
    children: Vec<Child>,
    clients: Vec<String>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> BenchResult<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

async fn start_cluster(dir: &Path) -> BenchResult<Cluster> {
    let mut ports = Vec::new();
    for _ in 0..3 {
        ports.push((free_port()?, free_port()?));
    }
    let initial: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer))| format!("e{i}=http://127.0.0.1:{peer}"))
        .collect();
    let mut cluster = Cluster {
        children: Vec::new(),
        clients: Vec::new(),
    };
    for (i, (client, peer)) in ports.iter().enumerate() {
        let client_url = format!("http://127.0.0.1:{client}");
        let data: PathBuf = dir.join(format!("e{i}"));
        let child = Command::new(ETCD)
            .args(["--name", &format!("e{i}")])
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
            ])
            .args(["--initial-cluster", &initial.join(",")])
            .args(["--initial-cluster-token", "anyguard-bench"])
            .args(["--initial-cluster-state", "new", "--log-level", "error"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start etcd: {e}"))?;
        cluster.children.push(child);
        cluster.clients.push(client_url);
    }
    for url in &cluster.clients {
        let mut ready = false;
        for _ in 0..200 {
            let probe = async {
                let mut c = etcd_client::Client::connect([url.as_str()], None).await?;
                c.get("ready-probe", None).await
            };
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), probe).await {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !ready {
            return Err(format!("etcd member {url} did not become ready"));
        }
    }
    Ok(cluster)
}

/// What the load counters say at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    /// etcd: gRPC messages received by the members (unary requests and every message of
    /// a stream: keep-alives, watch requests); mesh: TCP connections opened (one per poll).
    requests: f64,
    /// etcd: watch responses sent by the members (each carries one or more events).
    watch_responses: f64,
    /// etcd: gRPC bytes received + sent by the members.
    bytes: f64,
    /// CPU seconds of the etcd members.
    etcd_cpu: f64,
    /// CPU seconds of this process (the guard code of every site).
    guard_cpu: f64,
    /// When.
    at: Option<Instant>,
}

impl Counters {
    fn rate(&self, before: &Counters) -> Rates {
        let secs = match (self.at, before.at) {
            (Some(a), Some(b)) => a.duration_since(b).as_secs_f64().max(0.001),
            _ => 1.0,
        };
        Rates {
            requests: (self.requests - before.requests) / secs,
            watch_responses: (self.watch_responses - before.watch_responses) / secs,
            bytes: (self.bytes - before.bytes) / secs,
            etcd_cpu: (self.etcd_cpu - before.etcd_cpu) / secs,
            guard_cpu: (self.guard_cpu - before.guard_cpu) / secs,
            total_requests: self.requests - before.requests,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Rates {
    requests: f64,
    watch_responses: f64,
    bytes: f64,
    /// Cores.
    etcd_cpu: f64,
    /// Cores.
    guard_cpu: f64,
    total_requests: f64,
}

/// utime + stime of `/proc/<pid>/stat`, in seconds.
fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command may hold spaces: the fields after it start after the last ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after ')'.
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<f64>().ok())
        .sum();
    ticks / 100.0
}

/// TCP connections this network namespace opened (`ActiveOpens` of `/proc/net/snmp`).
fn tcp_active_opens() -> f64 {
    let Ok(snmp) = std::fs::read_to_string("/proc/self/net/snmp") else {
        return 0.0;
    };
    let tcp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Tcp:")).collect();
    let (Some(names), Some(values)) = (tcp.first(), tcp.get(1)) else {
        return 0.0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "ActiveOpens")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0.0)
}

async fn metrics_text(url: &str) -> BenchResult<String> {
    let addr = url.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("{url}/metrics: {e}"))?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut body = String::new();
    s.read_to_string(&mut body)
        .await
        .map_err(|e| e.to_string())?;
    Ok(body)
}

fn metric_sum(body: &str, name: &str, filter: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(name) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn counters(cluster: Option<&Cluster>) -> BenchResult<Counters> {
    let mut c = Counters {
        guard_cpu: cpu_seconds("self"),
        at: Some(Instant::now()),
        ..Counters::default()
    };
    let Some(cluster) = cluster else {
        c.requests = tcp_active_opens();
        return Ok(c);
    };
    for (url, child) in cluster.clients.iter().zip(&cluster.children) {
        let body = metrics_text(url).await?;
        c.requests += metric_sum(&body, "grpc_server_msg_received_total{", "");
        c.watch_responses += metric_sum(
            &body,
            "grpc_server_msg_sent_total{",
            "grpc_method=\"Watch\"",
        );
        c.bytes += metric_sum(&body, "etcd_network_client_grpc_received_bytes_total", "")
            + metric_sum(&body, "etcd_network_client_grpc_sent_bytes_total", "");
        c.etcd_cpu += cpu_seconds(&child.id().to_string());
    }
    Ok(c)
}

fn fleet_text(backend: Backend, endpoints: &[String], ports: &[u16], min_sites: usize) -> String {
    let mut t = String::new();
    if backend == Backend::Etcd {
        let list: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
        t.push_str(&format!(
            "backend = \"etcd\"\n[etcd]\nendpoints = [{}]\nkey_prefix = \"/bench\"\nlease_ttl = \"5s\"\n",
            list.join(", ")
        ));
    }
    for (i, port) in ports.iter().enumerate() {
        t.push_str(&format!(
            "[[site]]\nname = \"s{i:03}\"\nstatus_url = \"http://127.0.0.1:{port}/status\"\n"
        ));
    }
    t.push_str(&format!(
        "[[service]]\nname = \"web\"\nmin_sites = {min_sites}\nprefixes = [\"{WEB}\"]\n"
    ));
    t
}

/// What the bench reads of every site.
#[derive(Default)]
struct Board {
    /// Per site: announcing on its (simulated) wire, and when that last changed.
    wire: BTreeMap<String, (bool, Instant)>,
    /// Per site (etcd): withdrawal transactions committed and conflicted, publications.
    txns: BTreeMap<String, (u64, u64, u64)>,
    /// The sites the first site's guard counts as announcing, itself included.
    seen_by_first: usize,
    /// The fewest sites on the wire since the board was last reset.
    fewest: usize,
    /// Mesh: failed polls, summed over the sites' views at their last census.
    poll_failures: BTreeMap<String, u64>,
}

/// One simulated site: the real backend and the coordinator's part that matters here.
struct Site {
    fleet: Fleet,
    name: String,
    rank: usize,
    health: watch::Receiver<bool>,
    board: Arc<Mutex<Board>>,
    stop: watch::Receiver<bool>,
    /// Mesh: the status document its status server serves.
    status: Option<watch::Sender<StatusDocument>>,
    /// Mesh: when the site starts, so that the fleet's polls are spread over the interval
    /// as in a real fleet (sites do not start in the same millisecond). Started together,
    /// every poller of every site fires in the same instant each interval: 100 sites make
    /// 9,900 connections at once, two descriptors each in this one process, past its limit.
    start_after: Duration,
}

async fn run_site(mut s: Site) {
    tokio::time::sleep(s.start_after).await;
    let digest = fleet_digest(&s.fleet);
    let mut backend = FleetBackend::start(&s.fleet, &s.name, &digest, s.fleet.view_for(&s.name));
    let prefixes: [IpNet; 1] = [WEB.parse().unwrap_or_else(|_| IpNet::default())];
    let (mut wire, mut intent) = (true, LocalIntent::None);
    let mut last: Option<Arc<SiteReport>> = None;
    let mut last_census = Instant::now();
    let deadline = tokio::time::Instant::now() + 8 * PHASE_WAIT;
    while tokio::time::Instant::now() < deadline && !*s.stop.borrow() {
        let healthy = *s.health.borrow();
        // As the coordinator: the view taken at every change.
        let view = backend.take_view();
        let input = GuardInput {
            service: "web",
            prefixes: &prefixes,
            min_sites: s.fleet.min_sites("web"),
            local_site: &s.name,
            local_rank: s.rank,
            local: LocalService {
                healthy,
                drain: Drain::None,
                announcing: wire,
                intent,
            },
            view: &view,
            timing: s.fleet.timing(),
        };
        let now = Instant::now();
        let decision = backend.decide(&input, now);
        let was = wire;
        match decision {
            Decision::Withdraw { .. } => wire = false,
            Decision::Announce => wire = true,
            Decision::Hold { .. } | Decision::PublishIntentAndWait { .. } => {}
        }
        if was != wire {
            let mut b = lock(&s.board);
            b.wire.insert(s.name.clone(), (wire, now));
            let on = b.wire.values().filter(|(w, _)| *w).count();
            b.fewest = b.fewest.min(on);
        }
        let report = Arc::new(SiteReport {
            version: REPORT_VERSION,
            site: s.name.clone(),
            generation: 0,
            services: vec![ServiceReport {
                name: "web".into(),
                prefixes: prefixes.to_vec(),
                healthy,
                announcing: wire && decision.announces(),
                intent: decision.intent(),
            }],
            fleet_digest: Some(digest.clone()),
        });
        let changed = last.as_ref().is_none_or(|l| l.services != report.services);
        if changed {
            if let Some(status) = &s.status {
                status.send_modify(|d| d.guard = Some(Arc::clone(&report)));
            }
        }
        // The report is visible from here on (as `FleetGuard::published`).
        let next = intent.advance(&decision, Instant::now());
        let newly_withdrawing = matches!(next, LocalIntent::Withdrawing { .. })
            && !matches!(intent, LocalIntent::Withdrawing { .. });
        intent = next;
        if changed {
            backend.published(Some(&report), newly_withdrawing);
            last = Some(report);
        } else if newly_withdrawing {
            backend.published(last.as_ref(), true);
        }
        // The bench's own bookkeeping: at most once a second per site, at once after a
        // change on the wire, and at every step of the first site.
        let census = was != wire || s.rank == 0 || last_census.elapsed() >= Duration::from_secs(1);
        if census {
            last_census = Instant::now();
            let status = backend.guard_status(&input, &decision, now);
            let store = backend.store_status(now);
            let failures: u64 = view.sites.iter().flat_map(|p| p.failures.iter()).sum();
            let mut b = lock(&s.board);
            if let Some(st) = store {
                b.txns.insert(
                    s.name.clone(),
                    (
                        st.withdrawals_committed,
                        st.withdrawals_conflicted,
                        st.publications,
                    ),
                );
            }
            b.poll_failures.insert(s.name.clone(), failures);
            if s.rank == 0 {
                b.seen_by_first = status.sites_announcing.len() + usize::from(wire);
            }
        }
        tokio::select! {
            () = backend.changed() => {}
            _ = s.health.changed() => {}
            _ = s.stop.changed() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    backend.stop().await;
}

async fn wait_until(
    what: &str,
    limit: Duration,
    mut pred: impl FnMut() -> bool,
) -> BenchResult<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if pred() {
            return Ok(t0.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Err(format!("{what}: not within {limit:?}"))
}

fn on_wire(board: &Mutex<Board>) -> usize {
    lock(board).wire.values().filter(|(w, _)| *w).count()
}

/// One row of the final table.
struct Row {
    backend: Backend,
    sites: usize,
    started: Option<Duration>,
    notes: Vec<String>,
    steady: Rates,
    latency: Vec<Duration>,
    all_fail: Option<AllFail>,
    all_fail_error: Option<String>,
    poll_failures: u64,
}

struct AllFail {
    settle: Duration,
    left: usize,
    fewest: usize,
    committed: u64,
    conflicts: u64,
    load: Rates,
}

/// The status servers of the poll mesh: one per site, each the daemon's own server on a
/// listener of its own, stopped with the run.
struct Mesh {
    docs: Vec<watch::Sender<StatusDocument>>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

async fn start_mesh(n: usize) -> BenchResult<(Mesh, Vec<u16>)> {
    let (stop, stop_rx) = watch::channel(false);
    let mut mesh = Mesh {
        docs: Vec::new(),
        stop,
        tasks: Vec::new(),
    };
    let mut ports = Vec::new();
    for _ in 0..n {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("bind: {e}"))?;
        ports.push(listener.local_addr().map_err(|e| e.to_string())?.port());
        let (doc_tx, doc_rx) = watch::channel(StatusDocument::default());
        let (control, _control_rx) = mpsc::channel(1);
        let state = StatusState::new(
            doc_rx.clone(),
            Metrics::new(doc_rx),
            None,
            control,
            Limits::default(),
        );
        let mut stop_rx = stop_rx.clone();
        mesh.tasks.push(tokio::spawn(async move {
            let _ = serve_listeners(vec![(listener, Role::General)], state, async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            })
            .await;
        }));
        mesh.docs.push(doc_tx);
    }
    Ok((mesh, ports))
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Fails `which` at once and waits until each is off the wire: the time of each.
async fn fail_and_recover(
    which: &[usize],
    names: &[String],
    health: &[watch::Sender<bool>],
    board: &Mutex<Board>,
    n: usize,
) -> BenchResult<Vec<Duration>> {
    let t0 = Instant::now();
    for &i in which {
        let _ = health[i].send(false);
    }
    wait_until("failing sites withdrawn", STEP_WAIT, || {
        let b = lock(board);
        which
            .iter()
            .all(|&i| b.wire.get(&names[i]).is_some_and(|(w, _)| !*w))
    })
    .await?;
    let times = {
        let b = lock(board);
        which
            .iter()
            .map(|&i| {
                b.wire
                    .get(&names[i])
                    .map_or(Duration::ZERO, |(_, t)| t.saturating_duration_since(t0))
            })
            .collect()
    };
    for &i in which {
        let _ = health[i].send(true);
    }
    wait_until("the sites back and counted", STEP_WAIT, || {
        let b = lock(board);
        which
            .iter()
            .all(|&i| b.wire.get(&names[i]).is_some_and(|(w, _)| *w))
            && b.seen_by_first == n
    })
    .await?;
    Ok(times)
}

async fn run_fleet(backend: Backend, n: usize, st: &Settings) -> BenchResult<Row> {
    let min_sites = st.min_sites.min(n - 1);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (cluster, mesh, ports) = match backend {
        Backend::Etcd => (Some(start_cluster(dir.path()).await?), None, vec![9; n]),
        Backend::Poll => {
            let (mesh, ports) = start_mesh(n).await?;
            (None, Some(mesh), ports)
        }
    };
    let endpoints = cluster.as_ref().map_or(Vec::new(), |c| c.clients.clone());
    let path = dir.path().join("fleet.toml");
    std::fs::write(&path, fleet_text(backend, &endpoints, &ports, min_sites))
        .map_err(|e| e.to_string())?;
    let fleet = Fleet::load(&path).map_err(|e| e.to_string())?;
    let names: Vec<String> = fleet.sites.iter().map(|s| s.name.clone()).collect();

    let board = Arc::new(Mutex::new(Board {
        fewest: n,
        ..Board::default()
    }));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut health = Vec::new();
    let mut tasks = Vec::new();
    let t_start = Instant::now();
    for (rank, name) in names.iter().enumerate() {
        let (tx, rx) = watch::channel(true);
        health.push(tx);
        lock(&board).wire.insert(name.clone(), (true, t_start));
        tasks.push(tokio::spawn(run_site(Site {
            fleet: fleet.clone(),
            name: name.clone(),
            rank,
            health: rx,
            board: Arc::clone(&board),
            stop: stop_rx.clone(),
            status: mesh.as_ref().map(|m| m.docs[rank].clone()),
            start_after: match backend {
                Backend::Etcd => Duration::ZERO,
                Backend::Poll => {
                    fleet.poll.interval * u32::try_from(rank).unwrap_or(0)
                        / u32::try_from(n).unwrap_or(1)
                }
            },
        })));
    }
    let label = backend.name();
    let result: BenchResult<Row> = async {
        let mut notes = Vec::new();
        let started = match wait_until("every site counted by the first", PHASE_WAIT, || {
            lock(&board).seen_by_first == n
        })
        .await
        {
            Ok(t) => Some(t),
            Err(e) => {
                notes.push(format!("start: {e} ({} counted)", lock(&board).seen_by_first));
                None
            }
        };
        println!(
            "etcd_fleet: {label}, {n} sites, min_sites {min_sites}: every site counted by the first after {}",
            started.map_or("—".into(), |t| format!("{:.2} s", t.as_secs_f64()))
        );
        // Let the start settle, then the steady window.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let failures0: u64 = lock(&board).poll_failures.values().sum();
        let before = counters(cluster.as_ref()).await?;
        tokio::time::sleep(WINDOW).await;
        let steady = counters(cluster.as_ref()).await?.rate(&before);
        let poll_failures = lock(&board).poll_failures.values().sum::<u64>() - failures0;
        println!(
            "  steady: {:.0} requests/s, {:.0} watch responses/s, {:.0} bytes/s; CPU: etcd {:.3} cores, guard {:.3} cores; failed polls {poll_failures}",
            steady.requests, steady.watch_responses, steady.bytes, steady.etcd_cpu, steady.guard_cpu
        );

        // Single sites in turn, spread over the ranks, then groups at once.
        let mut latency = Vec::new();
        let size = st.group_size.min(n - min_sites - 1);
        let mut plan: Vec<Vec<usize>> = (0..st.singles)
            .map(|k| vec![1 + (k * 7919) % (n - 1)])
            .collect();
        for g in 0..st.groups {
            let which: std::collections::BTreeSet<usize> = (0..size)
                .map(|j| 1 + (g * 31 + j * (n / size).max(1)) % (n - 1))
                .collect();
            plan.push(which.into_iter().collect());
        }
        if started.is_some() {
            for which in &plan {
                match fail_and_recover(which, &names, &health, &board, n).await {
                    Ok(t) => latency.extend(t),
                    Err(e) => {
                        notes.push(format!("latency phase stopped after {} samples: {e}", latency.len()));
                        break;
                    }
                }
            }
        }
        latency.sort();
        println!(
            "  failure → withdrawal acted on ({} single, {} groups of {size}): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            st.singles,
            st.groups,
            ms(percentile(&latency, 0.5)),
            ms(percentile(&latency, 0.99)),
            ms(percentile(&latency, 1.0))
        );

        // Every site at once.
        let txn_sum = |b: &Board| {
            b.txns
                .values()
                .fold((0, 0), |acc, t| (acc.0 + t.0, acc.1 + t.1))
        };
        let (c0, x0) = txn_sum(&lock(&board));
        lock(&board).fewest = n;
        let before = counters(cluster.as_ref()).await?;
        for h in &health {
            let _ = h.send(false);
        }
        let all_fail = match wait_until("exactly min_sites left", PHASE_WAIT, || on_wire(&board) == min_sites).await {
            Ok(settle) => {
                let load = counters(cluster.as_ref()).await?.rate(&before);
                // A little longer: nothing else may move.
                tokio::time::sleep(Duration::from_secs(3)).await;
                let b = lock(&board);
                let (c1, x1) = txn_sum(&b);
                let r = AllFail {
                    settle,
                    left: b.wire.values().filter(|(w, _)| *w).count(),
                    fewest: b.fewest,
                    committed: c1 - c0,
                    conflicts: x1 - x0,
                    load,
                };
                println!(
                    "  every site fails at once: {} left (min_sites {min_sites}) after {:.2} s; fewest on the wire meanwhile {}; {} withdrawals committed, {} conflicts; {:.0} requests ({:.0}/s); CPU etcd {:.2}, guard {:.2} cores",
                    r.left, settle.as_secs_f64(), r.fewest, r.committed, r.conflicts, load.total_requests, load.requests, load.etcd_cpu, load.guard_cpu
                );
                Ok(r)
            }
            Err(e) => {
                let b = lock(&board);
                println!(
                    "  every site fails at once: {e}; {} on the wire, fewest {}",
                    b.wire.values().filter(|(w, _)| *w).count(),
                    b.fewest
                );
                Err(e)
            }
        };
        let (all_fail, all_fail_error) = match all_fail {
            Ok(r) => (Some(r), None),
            Err(e) => (None, Some(e)),
        };
        for note in &notes {
            println!("  NOTE: {note}");
        }
        Ok(Row {
            backend,
            sites: n,
            started,
            notes,
            steady,
            latency,
            all_fail,
            all_fail_error,
            poll_failures,
        })
    }
    .await;
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    if let Some(mesh) = mesh {
        let _ = mesh.stop.send(true);
        for t in mesh.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
    drop(cluster);
    let row = result?;
    if let Some(r) = &row.all_fail {
        if r.fewest < min_sites || r.left != min_sites {
            return Err(format!(
                "the guard left {} (fewest {}) with min_sites {min_sites}",
                r.left, r.fewest
            ));
        }
    }
    Ok(row)
}

fn print_table(rows: &[Row]) {
    println!();
    println!("| sites | backend | start | steady requests/s | watch resp./s | bytes/s | CPU etcd | CPU guard | failure → withdrawn p50 / p99 / max (n) | all fail: left after | fewest | requests during |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let sorted = &r.latency;
        let all = match (&r.all_fail, &r.all_fail_error) {
            (Some(a), _) => format!(
                "{} after {:.2} s | {} | {:.0}",
                a.left,
                a.settle.as_secs_f64(),
                a.fewest,
                a.load.total_requests
            ),
            (None, Some(e)) => format!("{e} | — | —"),
            _ => "— | — | —".into(),
        };
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.3} | {:.3} | {:.0} / {:.0} / {:.0} ms ({}) | {all} |",
            r.sites,
            r.backend.name(),
            r.started.map_or("—".into(), |t| format!("{:.1} s", t.as_secs_f64())),
            r.steady.requests,
            r.steady.watch_responses,
            r.steady.bytes,
            r.steady.etcd_cpu,
            r.steady.guard_cpu,
            ms(percentile(sorted, 0.5)),
            ms(percentile(sorted, 0.99)),
            ms(percentile(sorted, 1.0)),
            sorted.len(),
        );
        for note in &r.notes {
            println!("|   | NOTE: {note} |");
        }
        if r.backend == Backend::Poll && r.poll_failures > 0 {
            println!(
                "|   | (poll mesh: {} failed polls in the steady window) |",
                r.poll_failures
            );
        }
    }
    // Ratios in the same run.
    for etcd in rows.iter().filter(|r| r.backend == Backend::Etcd) {
        if let Some(mesh) = rows
            .iter()
            .find(|r| r.backend == Backend::Poll && r.sites == etcd.sites)
        {
            let e_cpu = etcd.steady.etcd_cpu + etcd.steady.guard_cpu;
            println!(
                "ratio at {} sites: mesh/etcd requests ×{:.0}, CPU (etcd + guard vs guard) ×{:.1}, p50 latency ×{:.2}",
                etcd.sites,
                mesh.steady.requests / etcd.steady.requests.max(0.001),
                mesh.steady.guard_cpu / e_cpu.max(0.0001),
                ms(percentile(&mesh.latency, 0.5)) / ms(percentile(&etcd.latency, 0.5)).max(0.001)
            );
        }
    }
}
