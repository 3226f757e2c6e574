//! Issue 13's figures, "A thousand services on one daemon" (docs/benchmarks.md), each
//! printed for this build and, with `MANY_SERVICES_BASELINE`, for an older binary
//! measured in the same run:
//!
//! 1. **One HTTP probe's CPU**, in this process: anyguard's HTTP probe against a plain
//!    hyper client and a bare TCP connect over loopback ([`probe_cost`]).
//! 2. **CPU per probe result at N services** (10, 100, 1000 by default): `anyguard run
//!    --dry-run` (the real binary, in its own process) with N services, each with one
//!    HTTP and one TCP check at 1 s against a target in this process. The daemon's CPU
//!    time (utime + stime of `/proc/PID/stat`) over a fixed window is divided by the
//!    probe results of that window (the connections the target accepted: one per
//!    probe); the target's own CPU is this process's, not the daemon's. Printed per N:
//!    checks per second, the daemon's share of one core, CPU per probe result and its
//!    ratio (to the baseline binary at the same N, or to the smallest N), peak RSS, the
//!    slowest of three `GET /status`, `GET /status?summary=1` and `GET /metrics` (with
//!    their sizes), the p99 of `anyguard_probe_start_delay_seconds`, and the service
//!    flaps since the start (which should be 0: a flap means probes timed out). Under
//!    each row of this build, where `perf` may sample the daemon, how much of that CPU
//!    the kernel spent on the *target's* sockets ([`kernel_share`]: over loopback the
//!    target's receive work runs inside the daemon's system calls and is charged to it),
//!    as bounds from a separate window after the measured one, beside the measured total.
//! 3. The same at the largest N with **HTTP checks only** (the probe's share, before and
//!    after), with **a fleet configured** (the all-sites guard polling one other site
//!    that does not answer), and with **HTTP checks keeping their connection**
//!    (`reuse_connection = true`, `http kept+tcp`: against a keep-alive target counting
//!    requests; the TCP checks still connect afresh), its ratio to this build's http+tcp
//!    row (an older baseline binary may not know the option, so it is not run there).
//! 4. **Decision → wire** at the largest N with a real BGP session ([`decision`]).
//! 5. **The floor**: at each N, the same fresh connections at the same rate against the
//!    same targets without the daemon, in a child process measured the same way
//!    ([`floor`]), next to the daemon's figures and their ratio to it.
//!
//! The daemon's CPU is its CPU-time clock (nanoseconds, every thread); the start delay
//! p99 is read twice, over the measured window (from the difference of the histogram's
//! bucket counts between a `/metrics` taken before the window and one after it) and since
//! the daemon started (start-up included).
//!
//! Run: `cargo bench --bench many_services` (release build). `MANY_SERVICES=10,100,1000`
//! and `MANY_SERVICES_SECONDS=10` choose the sizes and the measured window,
//! `MANY_SERVICES_FLIPS=100` the decision → wire repetitions, `MANY_SERVICES_PARTS` which
//! of `probe,daemon,decision` to run (all by default; `probe` alone under callgrind);
//! `MANY_SERVICES_BASELINE=/path/to/anyguard` (an older build) measures that binary too,
//! right before this one at each step, and `MANY_SERVICES_THIS` a binary to measure as this
//! build instead of the one cargo built with the benchmark (e.g. one built with `cargo build
//! --release --bin anyguard`, as the baseline was); `MANY_SERVICES_EXTRA=0` leaves out the HTTP-only and
//! fleet rows, `MANY_SERVICES_PERF=0` the kernel's share for the target. Figures only: nothing asserts on time.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

#[path = "common/daemon_io.rs"]
mod daemon_io;
#[path = "many_services/decision.rs"]
mod decision;
#[path = "../tests/it/fakepeer.rs"]
mod fakepeer;
#[path = "common/flip_target.rs"]
mod flip_target;
#[path = "many_services/floor.rs"]
mod floor;
#[path = "../tests/it/httpd.rs"]
mod httpd;
#[path = "many_services/keep_alive.rs"]
mod keep_alive;
#[path = "many_services/kernel_share.rs"]
mod kernel_share;
#[path = "many_services/probe_cost.rs"]
mod probe_cost;

use daemon_io::{
    cpu_time, get, load_average, peak_rss_kib, serve_http, serve_tcp, slowest, start_delay_p99,
    start_delay_p99_between, Daemon, Fetch, Percentiles,
};

type BenchResult<T> = Result<T, String>;

/// Time for every check to have started and settled before measuring.
const WARM_UP: Duration = Duration::from_secs(4);
/// Longest wait for the status endpoint to answer after the start.
const START_WAIT: Duration = Duration::from_secs(20);

fn main() {
    if let Ok(spec) = std::env::var(floor::CHILD_ENV) {
        if let Err(e) = floor::child_main(&spec) {
            eprintln!("many_services floor: {e}");
            std::process::exit(1);
        }
        return;
    }
    let sizes: Vec<usize> = std::env::var("MANY_SERVICES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10, 100, 1000]);
    let seconds: u64 = std::env::var("MANY_SERVICES_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
        .clamp(2, 120);
    let flips: usize = std::env::var("MANY_SERVICES_FLIPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100)
        .clamp(2, 2000);
    let parts = std::env::var("MANY_SERVICES_PARTS")
        .unwrap_or_else(|_| "probe,daemon,decision".to_string());
    let parts: Vec<&str> = parts.split(',').map(str::trim).collect();
    let extra = std::env::var("MANY_SERVICES_EXTRA").map_or(true, |v| v != "0");
    if let Err(e) = bench(&sizes, Duration::from_secs(seconds), flips, &parts, extra) {
        eprintln!("many_services: {e}");
        std::process::exit(1);
    }
}

/// What each service checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mix {
    /// One HTTP and one TCP check at 1 s.
    HttpAndTcp,
    /// One HTTP check at 1 s.
    HttpOnly,
    /// One HTTP check at 1 s keeping its connection (`reuse_connection = true`, against a
    /// keep-alive target: a result is a request, not a connection) and one TCP check at
    /// 1 s (a new connection each probe, as a TCP check must).
    KeptHttpAndTcp,
}

/// One daemon run to measure.
#[derive(Debug, Clone, Copy)]
struct Setup {
    n: usize,
    mix: Mix,
    fleet: bool,
}

impl Setup {
    fn label(&self) -> String {
        let mut l = match self.mix {
            Mix::HttpAndTcp => "http+tcp",
            Mix::HttpOnly => "http only",
            Mix::KeptHttpAndTcp => "http kept+tcp",
        }
        .to_string();
        if self.fleet {
            l.push_str(", fleet");
        }
        l
    }
}

/// The figures of this build that issue 13 sets targets for.
#[derive(Default)]
struct Verdicts {
    per_result: Vec<(usize, f64)>,
    at_largest: Option<(f64, f64, f64)>,
    start_delay: Option<String>,
    status_ms: Option<f64>,
    metrics_ms: Option<f64>,
    decision_p99: Option<f64>,
    probe: Option<(f64, f64)>,
    /// At the largest size with both checks: (services, floor's CPU share, this build's).
    floor: Option<(usize, f64, f64)>,
}

fn bench(
    sizes: &[usize],
    window: Duration,
    flips: usize,
    parts: &[&str],
    extra: bool,
) -> BenchResult<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let accepted = Arc::new(AtomicU64::new(0));
    let (http, tcp) = runtime
        .block_on(async {
            let http = TcpListener::bind("127.0.0.1:0").await?;
            let tcp = TcpListener::bind("127.0.0.1:0").await?;
            Ok::<_, std::io::Error>((http, tcp))
        })
        .map_err(|e| format!("target: {e}"))?;
    let (http_addr, tcp_addr) = (
        http.local_addr().map_err(|e| e.to_string())?,
        tcp.local_addr().map_err(|e| e.to_string())?,
    );
    runtime.spawn(serve_http(http, Arc::clone(&accepted)));
    runtime.spawn(serve_tcp(tcp, Arc::clone(&accepted)));
    let this = std::env::var_os("MANY_SERVICES_THIS").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_anyguard")),
        PathBuf::from,
    );
    let old = std::env::var_os("MANY_SERVICES_BASELINE").map(PathBuf::from);
    let mut verdicts = Verdicts::default();

    println!(
        "many_services: {} build, {} CPUs, load average {} at the start",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        std::thread::available_parallelism().map_or(0, usize::from),
        load_average()
    );
    if parts.contains(&"probe") {
        probe_part(&mut verdicts)?;
    }
    let largest = sizes.iter().copied().max().unwrap_or(1000);
    if parts.contains(&"daemon") {
        let targets = (http_addr, tcp_addr, accepted.as_ref());
        daemon_part(
            &this,
            old.as_deref(),
            (sizes, extra),
            window,
            targets,
            &mut verdicts,
        )?;
    }
    if parts.contains(&"decision") {
        decision_part(
            &this,
            old.as_deref(),
            largest,
            flips,
            (http_addr, tcp_addr),
            &mut verdicts,
        );
    }
    print_verdicts(&verdicts, largest);
    Ok(())
}

fn probe_part(verdicts: &mut Verdicts) -> BenchResult<()> {
    println!("\n1. CPU of one HTTP probe over loopback (this process, thread CPU time)");
    let probes = probe_cost::measure()?;
    for p in &probes {
        println!(
            "{:>20} {:>8.1} µs per probe",
            p.client,
            p.cpu_per_probe.as_secs_f64() * 1e6
        );
    }
    if let [ours, hyper, ..] = probes.as_slice() {
        verdicts.probe = Some((
            ours.cpu_per_probe.as_secs_f64() * 1e6,
            hyper.cpu_per_probe.as_secs_f64() * 1e6,
        ));
    }
    Ok(())
}

fn daemon_part(
    this: &Path,
    old: Option<&Path>,
    (sizes, extra): (&[usize], bool),
    window: Duration,
    (http_addr, tcp_addr, accepted): (SocketAddr, SocketAddr, &AtomicU64),
    verdicts: &mut Verdicts,
) -> BenchResult<()> {
    println!(
        "\n2. The daemon at N services: {} s window after {} s warm-up",
        window.as_secs(),
        WARM_UP.as_secs(),
    );
    println!(
        "{:>8} {:>16} {:>8} {:>9} {:>10} {:>14} {:>8} {:>9} {:>18} {:>18} {:>18} {:>16} {:>16} {:>6}",
        "binary",
        "checks",
        "services",
        "checks/s",
        "CPU share",
        "CPU/result µs",
        "ratio",
        "RSS MiB",
        "/status ms (KiB)",
        "summary ms (KiB)",
        "/metrics ms (KiB)",
        "delay p99 window",
        "p99 since start",
        "flaps"
    );
    let largest = sizes.iter().copied().max().unwrap_or(1000);
    let mut setups: Vec<Setup> = sizes
        .iter()
        .map(|&n| Setup {
            n,
            mix: Mix::HttpAndTcp,
            fleet: false,
        })
        .collect();
    if extra {
        setups.push(Setup {
            n: largest,
            mix: Mix::HttpOnly,
            fleet: false,
        });
        setups.push(Setup {
            n: largest,
            mix: Mix::HttpAndTcp,
            fleet: true,
        });
        setups.push(Setup {
            n: largest,
            mix: Mix::KeptHttpAndTcp,
            fleet: false,
        });
    }
    let mut smallest: Option<f64> = None;
    // This build's http+tcp at the largest size: what the kept-connection row is against.
    let mut fresh_largest: Option<f64> = None;
    let mut floors: Vec<FloorRow> = Vec::new();
    // The kernel's work for the target's sockets, sampled with perf after each window of
    // this build (kernel_share); `MANY_SERVICES_PERF=0` leaves it out.
    let perf = std::env::var("MANY_SERVICES_PERF").map_or(true, |v| v != "0");
    for setup in setups {
        let mut old_cpu = None;
        let kept = setup.mix == Mix::KeptHttpAndTcp;
        // An older binary may not know `reuse_connection`: the kept row is compared with
        // this build's fresh connections instead.
        let old = old.filter(|_| !kept);
        let old_per_result = match old {
            Some(bin) => match measure(bin, setup, window, http_addr, tcp_addr, accepted, false) {
                Ok(m) => {
                    print_row("baseline", setup, window, &m, m.per_result(), 1.0);
                    old_cpu = Some(m.cpu_and_results());
                    Some(m.per_result())
                }
                Err(e) => {
                    println!(
                        "{:>8} {:>16} {:>8} failed: {e}",
                        "baseline",
                        setup.label(),
                        setup.n
                    );
                    None
                }
            },
            None => None,
        };
        let m = measure(this, setup, window, http_addr, tcp_addr, accepted, perf)?;
        let per_result = m.per_result();
        let plain = setup.mix == Mix::HttpAndTcp && !setup.fleet;
        // Against the baseline binary in the same setup, or against the smallest size.
        let base = match old_per_result {
            Some(b) => b,
            None if plain => *smallest.get_or_insert(per_result),
            None if kept => fresh_largest.unwrap_or(per_result),
            None => per_result,
        };
        if plain && setup.n == largest {
            fresh_largest = Some(per_result);
        }
        print_row("this", setup, window, &m, per_result, per_result / base);
        print_kernel_share(&m, window, per_result);
        if kept {
            println!(
                "{:>8} {:>16} ratio to this build's http+tcp (fresh connections) at {}",
                "", "", setup.n
            );
        }
        // The floor is fresh connections: not what the kept row does.
        if !setup.fleet && !kept {
            let floor = measure_floor(setup, window, http_addr, tcp_addr, accepted)?;
            floors.push(FloorRow {
                setup,
                floor,
                this: m.cpu_and_results(),
                baseline: old_cpu,
            });
        }
        if plain {
            verdicts.per_result.push((setup.n, per_result));
            if setup.n == largest {
                verdicts.at_largest = Some((
                    m.results as f64 / window.as_secs_f64(),
                    100.0 * m.cpu.as_secs_f64() / window.as_secs_f64(),
                    m.peak_rss_kib as f64 / 1024.0,
                ));
                verdicts.start_delay = Some(m.start_delay_window.clone());
                verdicts.status_ms = m.status.ok.then_some(m.status.took.as_secs_f64() * 1e3);
                verdicts.metrics_ms = m.metrics.ok.then_some(m.metrics.took.as_secs_f64() * 1e3);
            }
        }
    }
    print_floors(&floors, window, verdicts);
    Ok(())
}

/// One size's floor, with the daemon's figures (CPU, results) beside it.
struct FloorRow {
    setup: Setup,
    floor: (Duration, u64),
    this: (Duration, u64),
    baseline: Option<(Duration, u64)>,
}

/// The floor table: the fresh connections alone against the daemon doing the same.
fn print_floors(rows: &[FloorRow], window: Duration, verdicts: &mut Verdicts) {
    if rows.is_empty() {
        return;
    }
    println!(
        "\n   The floor: the same fresh connections at the same rate, without the daemon \
         (a child process, its CPU clock over the same window)"
    );
    println!(
        "{:>16} {:>8} {:>9} {:>10} {:>14} {:>14} {:>14} {:>14} {:>14}",
        "checks",
        "services",
        "checks/s",
        "floor CPU",
        "floor µs/res",
        "this CPU",
        "this/floor",
        "above floor µs",
        "baseline/floor"
    );
    let share = |(cpu, _): (Duration, u64)| 100.0 * cpu.as_secs_f64() / window.as_secs_f64();
    let per = |(cpu, n): (Duration, u64)| cpu.as_secs_f64() * 1e6 / n.max(1) as f64;
    for r in rows {
        let base = r.baseline.map_or_else(
            || "n/a".to_string(),
            |b| format!("{:.2}x", per(b) / per(r.floor)),
        );
        println!(
            "{:>16} {:>8} {:>9.0} {:>9.1}% {:>14.1} {:>13.1}% {:>13.2}x {:>14.1} {:>14}",
            r.setup.label(),
            r.setup.n,
            r.floor.1 as f64 / window.as_secs_f64(),
            share(r.floor),
            per(r.floor),
            share(r.this),
            per(r.this) / per(r.floor),
            per(r.this) - per(r.floor),
            base,
        );
        if r.setup.mix == Mix::HttpAndTcp {
            verdicts.floor = Some((r.setup.n, share(r.floor), share(r.this)));
        }
    }
}

/// The floor child at `setup`'s size and mix, measured as [`measure`] measures a daemon.
fn measure_floor(
    setup: Setup,
    window: Duration,
    http: SocketAddr,
    tcp: SocketAddr,
    accepted: &AtomicU64,
) -> BenchResult<(Duration, u64)> {
    let this_bench = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let tcp = (setup.mix == Mix::HttpAndTcp).then_some(tcp);
    let child = floor::Floor::spawn(&this_bench, setup.n, http, tcp)?;
    // A second to start and reach its pace (it has no splay to settle).
    std::thread::sleep(Duration::from_secs(1));
    let pid = child.pid();
    let (cpu0, results0) = (cpu_time(pid)?, accepted.load(Ordering::Relaxed));
    std::thread::sleep(window);
    let (cpu1, results1) = (cpu_time(pid)?, accepted.load(Ordering::Relaxed));
    drop(child);
    Ok((cpu1.saturating_sub(cpu0), results1 - results0))
}

fn decision_part(
    this: &Path,
    old: Option<&Path>,
    largest: usize,
    flips: usize,
    (http_addr, tcp_addr): (SocketAddr, SocketAddr),
    verdicts: &mut Verdicts,
) {
    println!(
        "\n3. Decision → wire at {largest} services, real BGP session, {flips} flips of one \
         service (µs; the other services keep reporting)"
    );
    println!(
        "{:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "binary", "min", "p50", "p90", "p99", "max"
    );
    let runs = old
        .map(|b| ("baseline", b))
        .into_iter()
        .chain([("this", this)]);
    for (which, bin) in runs {
        match decision::measure(bin, largest, flips, http_addr, tcp_addr) {
            Ok(mut samples) => {
                let s = Percentiles::of(&mut samples);
                println!(
                    "{which:>8} {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>8.0}",
                    s.min, s.p50, s.p90, s.p99, s.max
                );
                if which == "this" {
                    verdicts.decision_p99 = Some(s.p99);
                }
            }
            Err(e) => println!("{which:>8} failed: {e}"),
        }
    }
}

/// Issue 13's "What it must show", for this build.
fn print_verdicts(v: &Verdicts, largest: usize) {
    let mark = |ok: bool| if ok { "met" } else { "MISSED" };
    println!("\n4. Issue 13's targets, this build");
    if let Some((ours, hyper)) = v.probe {
        println!(
            "HTTP probe CPU {ours:.1} µs vs plain hyper {hyper:.1} µs: {:.2}x",
            ours / hyper
        );
    }
    if let (Some(lo), Some(hi)) = (
        v.per_result.iter().map(|p| p.1).reduce(f64::min),
        v.per_result.iter().map(|p| p.1).reduce(f64::max),
    ) {
        let sizes: Vec<String> = v
            .per_result
            .iter()
            .map(|(n, c)| format!("{n}: {c:.1} µs"))
            .collect();
        println!(
            "CPU per result within 2x across sizes ({}): max/min {:.2}x, {}",
            sizes.join(", "),
            hi / lo,
            mark(hi / lo <= 2.0)
        );
    }
    if let Some((rate, share, rss)) = v.at_largest {
        println!(
            "{largest} services, {rate:.0} checks/s: {share:.1} % of one core (target < 5 %, {}), \
             peak RSS {rss:.1} MiB (target < 64 MiB, {})",
            mark(share < 5.0),
            mark(rss < 64.0)
        );
    }
    if let Some((n, floor, this)) = v.floor {
        println!(
            "{n} services: the same fresh connections alone take {floor:.1} % of one core; \
             anyguard {this:.1} % = {:.2}x the floor",
            this / floor
        );
    }
    if let Some(d) = &v.start_delay {
        println!("probe start delay p99 over the window {d} (target < 10 ms)");
    }
    if let Some(ms) = v.status_ms {
        println!("/status {ms:.1} ms (target < 50 ms, {})", mark(ms < 50.0));
    }
    if let Some(ms) = v.metrics_ms {
        println!(
            "/metrics {ms:.1} ms (target < 100 ms, {})",
            mark(ms < 100.0)
        );
    }
    if let Some(p99) = v.decision_p99 {
        println!(
            "decision → wire p99 {:.2} ms (target < 2 ms, {})",
            p99 / 1000.0,
            mark(p99 < 2000.0)
        );
    }
}

fn print_row(
    which: &str,
    setup: Setup,
    window: Duration,
    m: &Measured,
    per_result: f64,
    ratio: f64,
) {
    println!(
        "{:>8} {:>16} {:>8} {:>9.0} {:>9.1}% {:>14.1} {:>7.2}x {:>9.1} {:>18} {:>18} {:>18} {:>16} {:>16} {:>6}",
        which,
        setup.label(),
        setup.n,
        m.results as f64 / window.as_secs_f64(),
        100.0 * m.cpu.as_secs_f64() / window.as_secs_f64(),
        per_result,
        ratio,
        m.peak_rss_kib as f64 / 1024.0,
        m.status.text(),
        m.summary.text(),
        m.metrics.text(),
        m.start_delay_window,
        start_delay_p99(&m.metrics.body),
        flaps(&m.metrics.body),
    );
}

struct Measured {
    cpu: Duration,
    results: u64,
    peak_rss_kib: u64,
    status: Fetch,
    summary: Fetch,
    metrics: Fetch,
    /// The start delay p99 over the measured window.
    start_delay_window: String,
    /// The kernel's work for the target's sockets, when sampled ([`kernel_share`]).
    kernel_share: Option<BenchResult<kernel_share::Share>>,
}

impl Measured {
    fn cpu_and_results(&self) -> (Duration, u64) {
        (self.cpu, self.results)
    }

    /// CPU per probe result, µs.
    fn per_result(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.results.max(1) as f64
    }
}

fn measure(
    binary: &Path,
    setup: Setup,
    window: Duration,
    http: SocketAddr,
    tcp: SocketAddr,
    accepted: &AtomicU64,
    perf: bool,
) -> BenchResult<Measured> {
    let dir = std::env::temp_dir().join(format!("anyguard-many-services-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let status_port = httpd::free_port();
    let path = dir.join(format!("services-{}.toml", setup.n));
    // The kept row's HTTP checks go to a keep-alive target counting requests, which are
    // added to the results (its TCP checks to the common target, counting connections).
    let keep_alive = (setup.mix == Mix::KeptHttpAndTcp)
        .then(keep_alive::KeepAliveTarget::start)
        .transpose()?;
    let http = keep_alive.as_ref().map_or(http, |t| t.addr);
    let results =
        || accepted.load(Ordering::Relaxed) + keep_alive.as_ref().map_or(0, |t| t.requests());
    let tcp = matches!(setup.mix, Mix::HttpAndTcp | Mix::KeptHttpAndTcp).then_some(tcp);
    let mut text = config_text(setup.n, status_port, http, tcp);
    if keep_alive.is_some() {
        text = text.replace(
            "type = \"http\"\n",
            "type = \"http\"\nreuse_connection = true\n",
        );
    }
    if setup.fleet {
        let fleet = dir.join("fleet.toml");
        std::fs::write(&fleet, fleet_text()).map_err(|e| format!("{}: {e}", fleet.display()))?;
        text = text.replacen(
            "\n[status]",
            &format!(
                "\n[fleet]\npath = \"{}\"\nsite = \"a\"\n\n[status]",
                fleet.display()
            ),
            1,
        );
    }
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    let daemon = Daemon::spawn(binary, &["--dry-run"], &path, &dir)?;
    let pid = daemon.0.id();
    let status_addr: SocketAddr = ([127, 0, 0, 1], status_port).into();
    let started = Instant::now();
    while get(status_addr, "/readyz").is_none_or(|f| !f.ok) {
        if started.elapsed() > START_WAIT {
            return Err(format!(
                "{} services: the status endpoint did not answer",
                setup.n
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(WARM_UP);
    // The histogram at the window's start, taken before the CPU is read: building
    // `/metrics` is not part of the window's CPU.
    let before = get(status_addr, "/metrics").filter(|f| f.ok);
    let (cpu0, results0) = (cpu_time(pid)?, results());
    std::thread::sleep(window);
    let (cpu1, results1) = (cpu_time(pid)?, results());
    let after = get(status_addr, "/metrics").filter(|f| f.ok);
    let start_delay_window = match (&before, &after) {
        (Some(b), Some(a)) => start_delay_p99_between(&b.body, &a.body),
        _ => "n/a".to_string(),
    };
    let status = slowest(status_addr, "/status");
    let summary = slowest(status_addr, "/status?summary=1");
    let metrics = slowest(status_addr, "/metrics");
    // After the window (sampling costs the daemon CPU of its own), at most 5 s of it.
    let kernel_share = perf.then(|| kernel_share::measure(pid, window.min(PERF_WINDOW), &dir));
    let peak_rss_kib = peak_rss_kib(pid)?;
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Measured {
        cpu: cpu1.saturating_sub(cpu0),
        results: results1 - results0,
        peak_rss_kib,
        status,
        summary,
        metrics,
        start_delay_window,
        kernel_share,
    })
}

/// The longest `perf` samples a daemon for [`kernel_share`].
const PERF_WINDOW: Duration = Duration::from_secs(5);

/// The measured CPU per result split into the kernel's work for the target's sockets and
/// the rest (kernel_share: bounds, from a separate window): beside the total, not
/// instead of it.
fn print_kernel_share(m: &Measured, window: Duration, per_result: f64) {
    let share = match &m.kernel_share {
        None => return,
        Some(Err(e)) => {
            println!("{:>8} kernel work for the target's sockets: n/a ({e})", "");
            return;
        }
        Some(Ok(share)) => share,
    };
    let (lo, hi) = share.bounds();
    let core = 100.0 * m.cpu.as_secs_f64() / window.as_secs_f64();
    println!(
        "{:>8} of it, kernel work for the target's sockets (perf, {} samples after the window): \
         {:.0}-{:.0} % = {:.1}-{:.1} µs per result; the rest {:.1}-{:.1} µs, {:.1}-{:.1} % of a core",
        "",
        share.samples,
        100.0 * lo,
        100.0 * hi,
        per_result * lo,
        per_result * hi,
        per_result * (1.0 - hi),
        per_result * (1.0 - lo),
        core * (1.0 - hi),
        core * (1.0 - lo),
    );
}

/// A fleet of this site (`a`) and one other that never answers a poll (a closed port):
/// the guard runs, polls and decides for every service.
fn fleet_text() -> String {
    let port = httpd::free_port();
    format!(
        r#"[poll]
interval = "1s"
timeout = "500ms"

[[site]]
name = "a"
status_url = "http://127.0.0.1:1/status"

[[site]]
name = "b"
status_url = "http://127.0.0.1:{port}/status"
"#
    )
}

fn config_text(n: usize, status_port: u16, http: SocketAddr, tcp: Option<SocketAddr>) -> String {
    let mut text = format!(
        r#"router_id = "198.18.0.2"
local_asn = 65010

[status]
listen = "127.0.0.1:{status_port}"

[[peer]]
name = "edge"
address = "2001:db8:ffff::1"
remote_asn = 65000
"#
    );
    text.push_str(&services_text(0..n, http, tcp));
    text
}

/// `[[service]]` tables `svc{i}` for `range`: prefix `2001:db8:{i:x}::/48`, an HTTP check
/// at 1 s and, with `tcp`, a TCP check at 1 s.
fn services_text(
    range: std::ops::Range<usize>,
    http: SocketAddr,
    tcp: Option<SocketAddr>,
) -> String {
    let mut text = String::new();
    for i in range {
        text.push_str(&format!(
            r#"
[[service]]
name = "svc{i}"
prefixes = ["2001:db8:{i:x}::/48"]

[[service.check]]
name = "http"
type = "http"
url = "http://{http}/healthz"
interval = "1s"
"#
        ));
        if let Some(tcp) = tcp {
            text.push_str(&format!(
                r#"
[[service.check]]
name = "tcp"
type = "tcp"
address = "{tcp}"
interval = "1s"
"#
            ));
        }
    }
    text
}

/// Service flaps (up → down) since the daemon started, the sum of
/// `anyguard_service_flaps_total` in a `/metrics` answer: every service should stay up
/// through a measurement (a probe that times out under load shows here).
fn flaps(metrics: &[u8]) -> u64 {
    String::from_utf8_lossy(metrics)
        .lines()
        .filter(|l| l.starts_with("anyguard_service_flaps_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.trim().parse::<f64>().ok())
        .sum::<f64>() as u64
}
