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
//!   route serving the site's latest report), and `guard::runtime::decide`;
//! - **poll mesh, one site measured** (`site`): what one site of an N-site fleet carries
//!   (`run_one_site`): site 0 with the real poller, status server and decisions on a
//!   runtime of its own (its threads' CPU), the others real status servers with signed
//!   reports polling site 0 only. One process cannot hold both ends of every poll of 100
//!   sites or more (`ETCD_FLEET_MESH_MAX` bounds the all-in-one mesh, 50 by default).
//!
//! The bench moves itself into a network namespace of its own at start (root), so that the
//! TCP counters count its own connections only; without root the mesh modes are not run.
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
//! `ETCD_FLEET_SITES=50,100,200` (sizes), `ETCD_FLEET_MIN_SITES=2`, `ETCD_FLEET_MESH_MAX=50`
//! (largest fleet run on the all-in-one poll mesh), `ETCD_FLEET_BACKENDS=etcd,poll,site`,
//! `ETCD_FLEET_SINGLES=20`, `ETCD_FLEET_GROUPS=3`, `ETCD_FLEET_GROUP_SIZE=10`.
//! Figures only: nothing asserts on time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyguard::guard::auth::FleetKey;
use anyguard::guard::backend::FleetBackend;
use anyguard::guard::digest::fleet_digest;
use anyguard::guard::fleet::Fleet;
use anyguard::guard::poller::{self, PollerConfig};
use anyguard::guard::report::{Intent, ServiceReport, SiteReport, REPORT_VERSION};
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
/// The windows of the one-site mode: longer, since site 0 polls every other site in one
/// burst a second, so a window holds one burst more or less (±(N − 1) polls).
const SITE_WINDOW: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Etcd,
    Poll,
    /// The poll mesh seen from one site: see `run_one_site`.
    PollSite,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Etcd => "etcd",
            Backend::Poll => "poll mesh",
            Backend::PollSite => "poll mesh, one site measured",
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
    let mesh_max = env_or("ETCD_FLEET_MESH_MAX", 50);
    let backends = std::env::var("ETCD_FLEET_BACKENDS").unwrap_or_else(|_| "etcd,poll,site".into());
    // Before any thread: every thread and child inherits the namespace.
    let counted = own_netns();
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
        for backend in [Backend::Etcd, Backend::Poll, Backend::PollSite] {
            let wanted = match backend {
                Backend::Etcd => backends.contains("etcd"),
                Backend::Poll => backends.contains("poll") && n <= mesh_max && counted,
                Backend::PollSite => backends.contains("site") && counted,
            };
            if !wanted {
                continue;
            }
            let run = match backend {
                Backend::PollSite => runtime.block_on(run_one_site(n, &settings)),
                _ => runtime.block_on(run_fleet(backend, n, &settings)),
            };
            match run {
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

/// The host's load average (1, 5, 15 min) as `/proc/loadavg` says it: the machine is
/// shared, and the times depend on the CPU left.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |e| format!("unknown ({e})"),
        |s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
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

/// utime + stime of `/proc/<pid>/stat` (or `/proc/self/task/<tid>/stat`), in seconds. An
/// error, never 0: at 200 all-in-one mesh sites the process ran out of descriptors, the read
/// failed, and a 0 taken for "no CPU yet" made the window's figure the process's whole life
/// (the "22.9 cores" of the first run).
fn cpu_seconds_at(stat_path: &str) -> BenchResult<f64> {
    let stat = std::fs::read_to_string(stat_path).map_err(|e| format!("{stat_path}: {e}"))?;
    // The command may hold spaces: the fields after it start after the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| format!("{stat_path}: no ')'"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after ')'.
    let mut ticks = 0.0;
    for i in [11, 12] {
        ticks += fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .ok_or_else(|| format!("{stat_path}: field {} unreadable", i + 3))?;
    }
    Ok(ticks / 100.0)
}

fn cpu_seconds(pid: &str) -> BenchResult<f64> {
    cpu_seconds_at(&format!("/proc/{pid}/stat"))
}

/// CPU seconds of this process's threads whose name starts with `prefix` (the measured
/// site's runtime), from `/proc/self/task`. Threads that ended are not counted: the
/// measured runtime keeps its threads for the whole run.
fn threads_cpu_seconds(prefix: &str) -> BenchResult<f64> {
    let tasks =
        std::fs::read_dir("/proc/self/task").map_err(|e| format!("/proc/self/task: {e}"))?;
    let mut sum = 0.0;
    for task in tasks.take(10_000) {
        let task = task.map_err(|e| e.to_string())?.path();
        let Ok(comm) = std::fs::read_to_string(task.join("comm")) else {
            continue; // ended meanwhile
        };
        if comm.starts_with(prefix) {
            if let Ok(cpu) = cpu_seconds_at(&task.join("stat").to_string_lossy()) {
                sum += cpu;
            }
        }
    }
    Ok(sum)
}

/// `ActiveOpens` and `PassiveOpens` of `/proc/self/net/snmp`: TCP connections opened and
/// accepted in this process's network namespace. The bench moves itself into a namespace of
/// its own at start (`own_netns`), so these are its own connections only; in the host's
/// namespace they would count every other process of a shared machine.
fn tcp_opens() -> BenchResult<(f64, f64)> {
    let snmp = std::fs::read_to_string("/proc/self/net/snmp")
        .map_err(|e| format!("/proc/self/net/snmp: {e}"))?;
    let tcp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Tcp:")).collect();
    let (Some(names), Some(values)) = (tcp.first(), tcp.get(1)) else {
        return Err("/proc/self/net/snmp: no Tcp lines".into());
    };
    let field = |name: &str| -> BenchResult<f64> {
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.parse().ok())
            .ok_or_else(|| format!("/proc/self/net/snmp: no {name}"))
    };
    Ok((field("ActiveOpens")?, field("PassiveOpens")?))
}

/// Moves this process into a network namespace of its own with loopback up, so that the
/// TCP counters count its connections only. Called before any thread exists (every thread
/// and child started later inherits it). Needs root; without it the counters are the
/// host's and the mesh's request figures are not printed.
fn own_netns() -> bool {
    if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET) {
        eprintln!("etcd_fleet: no network namespace of its own ({e}): the mesh's request counts are not measured");
        return false;
    }
    let up = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .is_ok_and(|s| s.success());
    if !up {
        eprintln!("etcd_fleet: `ip link set lo up` failed in the bench's namespace");
    }
    up
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
        guard_cpu: cpu_seconds("self")?,
        at: Some(Instant::now()),
        ..Counters::default()
    };
    let Some(cluster) = cluster else {
        c.requests = tcp_opens()?.0;
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
        c.etcd_cpu += cpu_seconds(&child.id().to_string())?;
    }
    Ok(c)
}

fn fleet_text(
    backend: Backend,
    endpoints: &[String],
    ports: &[u16],
    min_sites: usize,
    key_file: Option<&Path>,
) -> String {
    let mut t = String::new();
    if let Some(key) = key_file {
        t.push_str(&format!("[auth]\nkey_file = \"{}\"\n", key.display()));
    }
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
            timing: s
                .fleet
                .timing(anyguard::guard::hand_over::DEFAULT_HAND_OVER),
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
    /// `PollSite` only.
    site: Option<SiteFigures>,
}

/// The measured site of `run_one_site`: per second, over the steady window.
struct SiteFigures {
    polls_out: f64,
    polls_in: f64,
    /// Cores: the measured site's threads, running (poller, decisions, server).
    cpu: f64,
    /// Cores: the same threads with the site's loop and poller stopped, its server still
    /// answering the others' polls.
    cpu_serving: f64,
    /// Cores: the whole process while the site runs (the others' servers and pollers too).
    process_cpu: f64,
    /// Failed polls of the others towards the measured site in the window.
    failures_in: u64,
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

/// One site's real status server on `listener` until `stop`, serving `doc`; `/fleet/report`
/// signed with the key in `key` when given.
async fn serve_site(
    listener: tokio::net::TcpListener,
    doc: watch::Receiver<StatusDocument>,
    key: Option<watch::Receiver<Option<FleetKey>>>,
    mut stop: watch::Receiver<bool>,
) {
    let (control, _control_rx) = mpsc::channel(1);
    let mut state = StatusState::new(
        doc.clone(),
        Metrics::new(doc),
        None,
        control,
        Limits::default(),
    );
    if let Some(key) = key {
        state = state.with_fleet_key(key);
    }
    let _ = serve_listeners(vec![(listener, Role::General)], state, async move {
        let _ = stop.wait_for(|s| *s).await;
    })
    .await;
}

async fn start_mesh(
    n: usize,
    key: Option<watch::Receiver<Option<FleetKey>>>,
) -> BenchResult<(Mesh, Vec<u16>)> {
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
        mesh.tasks.push(tokio::spawn(serve_site(
            listener,
            doc_rx,
            key.clone(),
            stop_rx.clone(),
        )));
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
    expect_seen: usize,
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
            && b.seen_by_first == expect_seen
    })
    .await?;
    Ok(times)
}

async fn run_fleet(backend: Backend, n: usize, st: &Settings) -> BenchResult<Row> {
    let min_sites = st.min_sites.min(n - 1);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (cluster, mesh, ports) = match backend {
        Backend::Etcd => (Some(start_cluster(dir.path()).await?), None, vec![9; n]),
        Backend::Poll | Backend::PollSite => {
            let (mesh, ports) = start_mesh(n, None).await?;
            (None, Some(mesh), ports)
        }
    };
    let endpoints = cluster.as_ref().map_or(Vec::new(), |c| c.clients.clone());
    let path = dir.path().join("fleet.toml");
    std::fs::write(
        &path,
        fleet_text(backend, &endpoints, &ports, min_sites, None),
    )
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
                Backend::Poll | Backend::PollSite => {
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
                    "  every site fails at once: {} left (min_sites {min_sites}) after {:.2} s; fewest on the wire meanwhile {}; {} withdrawals committed, {} conflicts ({:.1} per site); {:.0} requests ({:.0}/s); CPU etcd {:.2}, guard {:.2} cores; load average {}",
                    r.left, settle.as_secs_f64(), r.fewest, r.committed, r.conflicts, r.conflicts as f64 / n as f64, load.total_requests, load.requests, load.etcd_cpu, load.guard_cpu, load_average()
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
            site: None,
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

/// Name prefix of the measured site's runtime threads (≤ 15 bytes with tokio's suffix
/// cut: Linux keeps 15).
const MEASURED_THREADS: &str = "measured-site";

/// What `run_one_site` reads at one moment.
struct SiteSnapshot {
    active_opens: f64,
    site_cpu: f64,
    process_cpu: f64,
    at: Instant,
}

fn site_snapshot() -> BenchResult<SiteSnapshot> {
    Ok(SiteSnapshot {
        active_opens: tcp_opens()?.0,
        site_cpu: threads_cpu_seconds(MEASURED_THREADS)?,
        process_cpu: cpu_seconds("self")?,
        at: Instant::now(),
    })
}

/// (connections opened, site cores, process cores) per second between two snapshots.
fn site_rates(a: &SiteSnapshot, b: &SiteSnapshot) -> (f64, f64, f64) {
    let secs = b.at.duration_since(a.at).as_secs_f64().max(0.001);
    (
        (b.active_opens - a.active_opens) / secs,
        (b.site_cpu - a.site_cpu) / secs,
        (b.process_cpu - a.process_cpu) / secs,
    )
}

/// The poll mesh as one site of an N-site fleet carries it: site 0 runs the real poller
/// (its N − 1 polls a second), its real status server and `runtime::decide`, on a tokio
/// runtime of its own (one worker; its threads named `MEASURED_THREADS`, so that its CPU is
/// read from its own threads). The N − 1 others are real status servers serving real
/// signed reports (`[auth]`), and each runs the real poller towards site 0 only, so that
/// site 0 also answers N − 1 polls a second, as in a real fleet. The machine carries
/// ~2 (N − 1) polls a second instead of N (N − 1).
///
/// The others' reports: `min_sites` of them healthy and announcing, every other one failed
/// and withdrawn. So when site 0 fails, withdrawing leaves exactly `min_sites`: allowed,
/// but only on a fresh, signed report of every other site counted right (one announcing
/// site fewer and it must hold).
///
/// Requests: connections opened in the bench's own network namespace. Window A (site 0
/// running): its polls out + the others' polls in; window B (site 0's loop and poller
/// stopped, its server still answering): the polls in only. Out = A − B.
async fn run_one_site(n: usize, st: &Settings) -> BenchResult<Row> {
    let min_sites = st.min_sites.min(n - 2).max(1);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let key_path = dir.path().join("fleet.key");
    std::fs::write(&key_path, "5e".repeat(32)).map_err(|e| e.to_string())?;
    let (key_tx, key_rx) = watch::channel(None);
    // Site 0's listener: bound here, registered with its own runtime there.
    let own = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    own.set_nonblocking(true).map_err(|e| e.to_string())?;
    let own_port = own.local_addr().map_err(|e| e.to_string())?.port();
    let (mesh, other_ports) = start_mesh(n - 1, Some(key_rx.clone())).await?;
    let mut ports = vec![own_port];
    ports.extend(other_ports);
    let path = dir.path().join("fleet.toml");
    std::fs::write(
        &path,
        fleet_text(Backend::PollSite, &[], &ports, min_sites, Some(&key_path)),
    )
    .map_err(|e| e.to_string())?;
    let fleet = Fleet::load(&path).map_err(|e| e.to_string())?;
    let key = fleet.auth.as_ref().map(|a| a.key.clone());
    let _ = key_tx.send(key.clone());
    let names: Vec<String> = fleet.sites.iter().map(|s| s.name.clone()).collect();
    let digest = fleet_digest(&fleet);
    let prefixes: Vec<IpNet> = vec![WEB.parse().map_err(|e| format!("{e}"))?];
    for (i, doc) in mesh.docs.iter().enumerate() {
        let up = i < min_sites;
        let report = Arc::new(SiteReport {
            version: REPORT_VERSION,
            site: names[i + 1].clone(),
            generation: 0,
            services: vec![ServiceReport {
                name: "web".into(),
                prefixes: prefixes.clone(),
                healthy: up,
                announcing: up,
                intent: Intent::None,
            }],
            fleet_digest: Some(digest.clone()),
        });
        doc.send_modify(|d| d.guard = Some(report));
    }

    // The others' pollers, towards site 0 only, spread over one interval.
    let (poll_stop_tx, poll_stop_rx) = watch::channel(false);
    let (_poll_now_tx, poll_now_rx) = watch::channel(0u64);
    let mut pollers = Vec::new();
    let mut others_views = Vec::new();
    for (i, name) in names.iter().enumerate().skip(1) {
        let config = PollerConfig {
            targets: vec![(names[0].clone(), fleet.sites[0].report_url.clone())],
            interval: fleet.poll.interval,
            timeout: fleet.poll.timeout,
            key: key.clone(),
        };
        let (view_tx, view_rx) = watch::channel(fleet.view_for(name));
        others_views.push(view_rx);
        let (now_rx, stop_rx) = (poll_now_rx.clone(), poll_stop_rx.clone());
        let delay =
            fleet.poll.interval * u32::try_from(i).unwrap_or(0) / u32::try_from(n).unwrap_or(1);
        pollers.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            poller::run(config, view_tx, now_rx, stop_rx).await;
        }));
    }
    let failures_in = |views: &[watch::Receiver<_>]| -> u64 {
        views
            .iter()
            .map(|v: &watch::Receiver<anyguard::guard::view::FleetView>| {
                v.borrow()
                    .sites
                    .iter()
                    .flat_map(|p| p.failures.iter())
                    .sum::<u64>()
            })
            .sum()
    };

    // Site 0 on its own runtime.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(MEASURED_THREADS)
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let (doc_tx, doc_rx) = watch::channel(StatusDocument::default());
    let (server_stop_tx, server_stop_rx) = watch::channel(false);
    let server_key = key_rx.clone();
    let server = rt.spawn(async move {
        match tokio::net::TcpListener::from_std(own) {
            Ok(l) => serve_site(l, doc_rx, Some(server_key), server_stop_rx).await,
            Err(e) => eprintln!("etcd_fleet: site 0 listener: {e}"),
        }
    });
    let board = Arc::new(Mutex::new(Board {
        fewest: 1,
        ..Board::default()
    }));
    lock(&board)
        .wire
        .insert(names[0].clone(), (true, Instant::now()));
    let (health_tx, health_rx) = watch::channel(true);
    let (site_stop_tx, site_stop_rx) = watch::channel(false);
    let site = rt.spawn(run_site(Site {
        fleet: fleet.clone(),
        name: names[0].clone(),
        rank: 0,
        health: health_rx,
        board: Arc::clone(&board),
        stop: site_stop_rx,
        status: Some(doc_tx),
        start_after: Duration::ZERO,
    }));
    let expect_seen = min_sites + 1;
    let label = Backend::PollSite.name();
    let result: BenchResult<Row> = async {
        let mut notes = Vec::new();
        let started = wait_until("site 0 counts the announcing sites", PHASE_WAIT, || {
            lock(&board).seen_by_first == expect_seen
        })
        .await?;
        println!(
            "etcd_fleet: {label}, {n} sites ({min_sites} others announcing), min_sites {min_sites}: counted after {:.2} s",
            started.as_secs_f64()
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        // Window A: site 0 running.
        let out0: u64 = lock(&board).poll_failures.values().sum();
        let in0 = failures_in(&others_views);
        let a0 = site_snapshot()?;
        tokio::time::sleep(SITE_WINDOW).await;
        let a1 = site_snapshot()?;
        let poll_failures = lock(&board).poll_failures.values().sum::<u64>() - out0;
        let in_failures = failures_in(&others_views) - in0;
        let (opens_a, cpu_a, process_a) = site_rates(&a0, &a1);

        // Failure → withdrawal of site 0, one at a time.
        let names0 = [names[0].clone()];
        let health = [health_tx.clone()];
        let mut latency = Vec::new();
        for _ in 0..st.singles {
            match fail_and_recover(&[0], &names0, &health, &board, expect_seen).await {
                Ok(t) => latency.extend(t),
                Err(e) => {
                    notes.push(format!("latency phase stopped after {} samples: {e}", latency.len()));
                    break;
                }
            }
        }
        latency.sort();

        // Window B: site 0's loop and poller stopped, its server still answering.
        let _ = site_stop_tx.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), site).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let b0 = site_snapshot()?;
        tokio::time::sleep(SITE_WINDOW).await;
        let b1 = site_snapshot()?;
        let (opens_b, cpu_b, _) = site_rates(&b0, &b1);
        let figures = SiteFigures {
            polls_out: opens_a - opens_b,
            polls_in: opens_b,
            cpu: cpu_a,
            cpu_serving: cpu_b,
            process_cpu: process_a,
            failures_in: in_failures,
        };
        println!(
            "  site 0: {:.0} polls out/s, {:.0} polls in/s; CPU {:.4} cores ({:.4} serving only), process {:.3}; failed polls out {poll_failures}, in {in_failures}",
            figures.polls_out, figures.polls_in, figures.cpu, figures.cpu_serving, figures.process_cpu
        );
        println!(
            "  failure → withdrawal ({} of site 0): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            latency.len(),
            ms(percentile(&latency, 0.5)),
            ms(percentile(&latency, 0.99)),
            ms(percentile(&latency, 1.0))
        );
        for note in &notes {
            println!("  NOTE: {note}");
        }
        Ok(Row {
            backend: Backend::PollSite,
            sites: n,
            started: Some(started),
            notes,
            steady: Rates::default(),
            latency,
            all_fail: None,
            all_fail_error: None,
            poll_failures,
            site: Some(figures),
        })
    }
    .await;
    let _ = site_stop_tx.send(true);
    let _ = poll_stop_tx.send(true);
    for t in pollers {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    let _ = server_stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    let _ = mesh.stop.send(true);
    for t in mesh.tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    // Not a blocking drop inside the async context.
    rt.shutdown_background();
    result
}

fn print_table(rows: &[Row]) {
    println!();
    println!("| sites | backend | start | steady requests/s | watch resp./s | bytes/s | CPU etcd | CPU guard | failure → withdrawn p50 / p99 / max (n) | all fail: left after | fewest | requests during |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows.iter().filter(|r| r.site.is_none()) {
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
    print_site_table(rows);
}

/// The poll mesh per site against etcd per site, same sizes, same run.
fn print_site_table(rows: &[Row]) {
    println!();
    println!("| sites | mesh site: polls out/s | polls in/s | CPU of the site | of it serving only | failure → withdrawn p50 / p99 / max (n) | etcd per site: messages/s | driver CPU/site | members' CPU/site | mesh/etcd requests | mesh/etcd CPU (driver) | mesh/etcd CPU (driver + members) |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let Some(f) = &r.site else { continue };
        let etcd = rows
            .iter()
            .find(|e| e.backend == Backend::Etcd && e.sites == r.sites);
        let per = |e: &Row| {
            let n = e.sites as f64;
            (
                e.steady.requests / n,
                e.steady.guard_cpu / n,
                e.steady.etcd_cpu / n,
            )
        };
        let etcd_cols = etcd.map_or("— | — | — | — | — | —".into(), |e| {
            let (msgs, driver, members) = per(e);
            format!(
                "{msgs:.2} | {driver:.5} | {members:.5} | ×{:.0} | ×{:.1} | ×{:.1}",
                (f.polls_out + f.polls_in) / msgs.max(0.0001),
                f.cpu / driver.max(0.000_001),
                f.cpu / (driver + members).max(0.000_001)
            )
        });
        println!(
            "| {} | {:.0} | {:.0} | {:.4} | {:.4} | {:.0} / {:.0} / {:.0} ms ({}) | {etcd_cols} |",
            r.sites,
            f.polls_out,
            f.polls_in,
            f.cpu,
            f.cpu_serving,
            ms(percentile(&r.latency, 0.5)),
            ms(percentile(&r.latency, 0.99)),
            ms(percentile(&r.latency, 1.0)),
            r.latency.len(),
        );
        if r.poll_failures > 0 || f.failures_in > 0 {
            println!(
                "|   | (failed polls in the window: out {}, in {}; process CPU {:.3} cores) |",
                r.poll_failures, f.failures_in, f.process_cpu
            );
        }
    }
}
