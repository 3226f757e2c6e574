//! Scale run of the etcd fleet backend (issue 16): N simulated sites in one process, each
//! with the real backend (`guard::backend::FleetBackend`: the etcd driver with its lease,
//! watch and transactions, and `guard::store::decide`) and a minimal coordinator loop that
//! acts on the decisions like the daemon's (withdraw on `Withdraw`, publish the report
//! after every decision), on a three-node etcd cluster on loopback (Debian's
//! `/usr/bin/etcd`, ports from the OS, data in a temporary directory, stopped by PID).
//!
//! Printed: the load on etcd while the fleet is steady (gRPC requests per second, summed
//! over the members' `grpc_server_handled_total`) next to what the poll mesh needs for the
//! same fleet (N × (N − 1) polls per interval); the time from one site's failure to its
//! withdrawal (committed in etcd and acted on), over a few sites in turn; and every site
//! failing at once: the time until exactly `min_sites` are left, the transactions it took
//! (committed, conflicts) and the requests to etcd meanwhile. The lowest number of sites
//! announcing during that run is checked against `min_sites` and printed.
//!
//! Run by hand (not in CI): `cargo bench --bench etcd_fleet` (or `--profile dev`);
//! `ETCD_FLEET_SITES=200`, `ETCD_FLEET_MIN_SITES=2`. Figures only: nothing asserts on time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyguard::guard::backend::FleetBackend;
use anyguard::guard::digest::fleet_digest;
use anyguard::guard::fleet::Fleet;
use anyguard::guard::report::{ServiceReport, SiteReport, REPORT_VERSION};
use anyguard::guard::runtime::{Decision, Drain, GuardInput, LocalIntent, LocalService};
use ipnet::IpNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

type BenchResult<T> = Result<T, String>;

const ETCD: &str = "/usr/bin/etcd";
const WEB: &str = "203.0.113.0/24";
/// Longest wait for any phase.
const PHASE_WAIT: Duration = Duration::from_secs(120);

fn main() {
    let sites: usize = env_or("ETCD_FLEET_SITES", 200).clamp(3, 1000);
    let min_sites: usize = env_or("ETCD_FLEET_MIN_SITES", 2).clamp(1, sites);
    if !Path::new(ETCD).exists() {
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
    if let Err(e) = runtime.block_on(bench(sites, min_sites)) {
        eprintln!("etcd_fleet: {e}");
        std::process::exit(1);
    }
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
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

/// gRPC messages every member has received so far (`grpc_server_msg_received_total`: unary requests and every message of a stream, keep-alives included).
async fn grpc_handled(cluster: &Cluster) -> BenchResult<f64> {
    let mut total = 0.0;
    for url in &cluster.clients {
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
        total += body
            .lines()
            .filter(|l| l.starts_with("grpc_server_msg_received_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    Ok(total)
}

fn fleet_text(endpoints: &[String], sites: usize, min_sites: usize) -> String {
    let list: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    let mut t = format!(
        "backend = \"etcd\"\n[etcd]\nendpoints = [{}]\nkey_prefix = \"/bench\"\nlease_ttl = \"5s\"\n",
        list.join(", ")
    );
    for i in 0..sites {
        t.push_str(&format!(
            "[[site]]\nname = \"s{i:03}\"\nstatus_url = \"http://127.0.0.1:9/status\"\n"
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
    /// Per site: withdrawal transactions committed and conflicted, publications.
    txns: BTreeMap<String, (u64, u64, u64)>,
    /// The sites the first site's store shows announcing.
    store_announcing: usize,
    /// The fewest sites on the wire since the board was last reset.
    fewest: usize,
}

/// One simulated site: the real backend and the coordinator's part that matters here.
async fn site(
    fleet: Fleet,
    name: String,
    rank: usize,
    mut health: watch::Receiver<bool>,
    board: Arc<Mutex<Board>>,
    mut stop: watch::Receiver<bool>,
) {
    let digest = fleet_digest(&fleet);
    let mut backend = FleetBackend::start(&fleet, &name, &digest, fleet.view_for(&name));
    let prefixes: [IpNet; 1] = [WEB.parse().unwrap_or_else(|_| IpNet::default())];
    let (mut wire, mut intent) = (true, LocalIntent::None);
    let mut last: Option<Arc<SiteReport>> = None;
    let mut last_census = Instant::now();
    let deadline = tokio::time::Instant::now() + 4 * PHASE_WAIT;
    while tokio::time::Instant::now() < deadline && !*stop.borrow() {
        let healthy = *health.borrow();
        let view = backend.view();
        let input = GuardInput {
            service: "web",
            prefixes: &prefixes,
            min_sites: fleet.min_sites("web"),
            local_site: &name,
            local_rank: rank,
            local: LocalService {
                healthy,
                drain: Drain::None,
                announcing: wire,
                intent,
            },
            view: &view,
            timing: fleet.timing(),
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
            let mut b = board
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            b.wire.insert(name.clone(), (wire, now));
            let on = b.wire.values().filter(|(w, _)| *w).count();
            b.fewest = b.fewest.min(on);
        }
        let report = Arc::new(SiteReport {
            version: REPORT_VERSION,
            site: name.clone(),
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
        if last.as_ref().is_none_or(|l| l.services != report.services) {
            backend.published(Some(&report), false);
            last = Some(report);
        }
        intent = intent.advance(&decision, Instant::now());
        // The bench's own bookkeeping (a walk over the store): at most once a second per
        // site, and at once after a change on the wire, not at every event.
        let census = was != wire || rank == 0 || last_census.elapsed() >= Duration::from_secs(1);
        if let Some(s) = census
            .then(|| backend.store_status(Instant::now()))
            .flatten()
        {
            last_census = Instant::now();
            let mut b = board
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            b.txns.insert(
                name.clone(),
                (
                    s.withdrawals_committed,
                    s.withdrawals_conflicted,
                    s.publications,
                ),
            );
            if rank == 0 {
                b.store_announcing = s
                    .prefixes
                    .iter()
                    .find(|p| p.prefix == WEB)
                    .map_or(0, |p| p.sites_announcing.len());
            }
        }
        tokio::select! {
            () = backend.changed() => {}
            _ = health.changed() => {}
            _ = stop.changed() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    backend.stop().await;
}

async fn wait_until(what: &str, mut pred: impl FnMut() -> bool) -> BenchResult<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < PHASE_WAIT {
        if pred() {
            return Ok(t0.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Err(format!("{what}: not within {PHASE_WAIT:?}"))
}

fn on_wire(board: &Mutex<Board>) -> usize {
    board
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .wire
        .values()
        .filter(|(w, _)| *w)
        .count()
}

async fn bench(n: usize, min_sites: usize) -> BenchResult<()> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let cluster = start_cluster(dir.path()).await?;
    let path = dir.path().join("fleet.toml");
    std::fs::write(&path, fleet_text(&cluster.clients, n, min_sites)).map_err(|e| e.to_string())?;
    let fleet = Fleet::load(&path).map_err(|e| e.to_string())?;

    let board = Arc::new(Mutex::new(Board {
        fewest: n,
        ..Board::default()
    }));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut health = Vec::new();
    let mut tasks = Vec::new();
    let t_start = Instant::now();
    for (rank, s) in fleet.sites.iter().enumerate() {
        let (tx, rx) = watch::channel(true);
        health.push(tx);
        board
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .wire
            .insert(s.name.clone(), (true, t_start));
        tasks.push(tokio::spawn(site(
            fleet.clone(),
            s.name.clone(),
            rank,
            rx,
            Arc::clone(&board),
            stop_rx.clone(),
        )));
    }
    let started = wait_until("every site published", || {
        board
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .store_announcing
            == n
    })
    .await?;
    println!(
        "etcd_fleet: {n} sites, min_sites {min_sites}, three etcd members on loopback; every site in the store after {:.2} s",
        started.as_secs_f64()
    );

    // Steady load.
    let window = Duration::from_secs(10);
    let before = grpc_handled(&cluster).await?;
    tokio::time::sleep(window).await;
    let steady = (grpc_handled(&cluster).await? - before) / window.as_secs_f64();
    let poll_mesh = (n * (n - 1)) as f64 / fleet.poll.interval.as_secs_f64();
    println!(
        "  steady: {steady:.0} gRPC requests/s to etcd (lease keep-alives; watches idle) vs {poll_mesh:.0} polls/s for the poll mesh at {} intervals: {:.4} of it",
        humantime::format_duration(fleet.poll.interval),
        steady / poll_mesh
    );

    // One site at a time fails.
    let mut times = Vec::new();
    for i in [1usize, n / 3, n / 2, 2 * n / 3, n - 1] {
        let name = fleet.sites[i].name.clone();
        let t0 = Instant::now();
        let _ = health[i].send(false);
        wait_until("one failing site withdrawn", || {
            board
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .wire
                .get(&name)
                .is_some_and(|(w, _)| !*w)
        })
        .await?;
        let at = board
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .wire
            .get(&name)
            .map_or(t0, |(_, t)| *t);
        times.push(at.saturating_duration_since(t0));
        let _ = health[i].send(true);
        wait_until("the site back", || {
            board
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .wire
                .get(&name)
                .is_some_and(|(w, _)| *w)
        })
        .await?;
    }
    times.sort();
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    println!(
        "  one site fails (health → withdrawal committed in etcd and acted on), {} sites in turn: median {:.1} ms, max {:.1} ms",
        times.len(),
        ms(&times[times.len() / 2]),
        ms(&times[times.len() - 1])
    );

    // Every site at once.
    let txn_sum = |b: &Board| {
        b.txns
            .values()
            .fold((0, 0, 0), |acc, t| (acc.0 + t.0, acc.1 + t.1, acc.2 + t.2))
    };
    let (c0, x0, p0) = txn_sum(
        &board
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    board
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .fewest = n;
    let before = grpc_handled(&cluster).await?;
    let t0 = Instant::now();
    for h in &health {
        let _ = h.send(false);
    }
    let settle = wait_until("exactly min_sites left", || on_wire(&board) == min_sites).await?;
    let requests = grpc_handled(&cluster).await? - before;
    // A little longer: nothing else may move.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (c1, x1, p1, left, fewest) = {
        let b = board
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (c1, x1, p1) = txn_sum(&b);
        (
            c1,
            x1,
            p1,
            b.wire.values().filter(|(w, _)| *w).count(),
            b.fewest,
        )
    };
    println!(
        "  every site fails at once: {left} left (min_sites {min_sites}) after {:.2} s; fewest on the wire meanwhile {fewest}; {} withdrawals committed, {} conflicts, {} publications; {:.0} gRPC requests to etcd ({:.0}/s); {:.2} s since the failures",
        settle.as_secs_f64(),
        c1 - c0,
        x1 - x0,
        p1 - p0,
        requests,
        requests / settle.as_secs_f64().max(0.001),
        t0.elapsed().as_secs_f64()
    );
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    drop(cluster);
    if fewest < min_sites || left != min_sites {
        return Err(format!(
            "the guard left {left} (fewest {fewest}) with min_sites {min_sites}"
        ));
    }
    Ok(())
}
