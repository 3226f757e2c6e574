//! The coordinator's CPU per probe result as the number of services grows (issue 13):
//! `anyguard run --dry-run` (the real binary, in its own process) with N services, each
//! with one HTTP and one TCP check at 1 s against a target in this process, for N = 10, 100
//! and 1000 by default. The daemon's CPU time (utime + stime of `/proc/PID/stat`) over a
//! fixed window is divided by the probe results of that window (the connections the target
//! accepted: one per probe). The target's own CPU is this process's, not the daemon's.
//!
//! Printed per N: checks per second, the daemon's share of one core, CPU per probe result
//! and its ratio to the smallest N of the same run (the baseline: the same daemon with few
//! services, where the per-event work is the probe itself), peak RSS, and how long one
//! `GET /status`, `GET /status?summary=1` and `GET /metrics` took (with their sizes).
//!
//! Run: `cargo bench --bench many_services` (or `--profile dev` on a shared machine; the
//! ratios are what compare). `MANY_SERVICES=10,100,1000` and `MANY_SERVICES_SECONDS=10`
//! choose the sizes and the measured window. `MANY_SERVICES_BASELINE=/path/to/anyguard`
//! (an older build) measures that binary too, right before this one at each size, and
//! prints this one's CPU per result as a ratio to it. Figures only: nothing asserts on time.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

#[path = "../tests/it/httpd.rs"]
mod httpd;

type BenchResult<T> = Result<T, String>;

/// Time for every check to have started and settled before measuring.
const WARM_UP: Duration = Duration::from_secs(4);
/// Longest wait for the status endpoint to answer after the start.
const START_WAIT: Duration = Duration::from_secs(20);

fn main() {
    let sizes: Vec<usize> = std::env::var("MANY_SERVICES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10, 100, 1000]);
    let seconds: u64 = std::env::var("MANY_SERVICES_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
        .clamp(2, 120);
    if let Err(e) = bench(&sizes, Duration::from_secs(seconds)) {
        eprintln!("many_services: {e}");
        std::process::exit(1);
    }
}

fn bench(sizes: &[usize], window: Duration) -> BenchResult<()> {
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

    println!(
        "many_services: {} s window after {} s warm-up, load average {}",
        window.as_secs(),
        WARM_UP.as_secs(),
        load_average()
    );
    println!(
        "{:>8} {:>8} {:>9} {:>10} {:>14} {:>8} {:>9} {:>18} {:>18} {:>18} {:>16}",
        "binary",
        "services",
        "checks/s",
        "CPU share",
        "CPU/result µs",
        "ratio",
        "RSS MiB",
        "/status ms (KiB)",
        "summary ms (KiB)",
        "/metrics ms (KiB)",
        "start delay p99"
    );
    let this = std::path::PathBuf::from(env!("CARGO_BIN_EXE_anyguard"));
    let old = std::env::var_os("MANY_SERVICES_BASELINE").map(std::path::PathBuf::from);
    let mut baseline: Option<f64> = None;
    for &n in sizes {
        let old_per_result = match &old {
            Some(bin) => {
                let m = measure(bin, n, window, http_addr, tcp_addr, &accepted)?;
                let per_result = m.cpu.as_secs_f64() * 1e6 / m.results.max(1) as f64;
                print_row("baseline", n, window, &m, per_result, 1.0);
                Some(per_result)
            }
            None => None,
        };
        let m = measure(&this, n, window, http_addr, tcp_addr, &accepted)?;
        let per_result = m.cpu.as_secs_f64() * 1e6 / m.results.max(1) as f64;
        // Against the baseline binary at the same size, or against the smallest size.
        let base = old_per_result.unwrap_or(*baseline.get_or_insert(per_result));
        print_row("this", n, window, &m, per_result, per_result / base);
    }
    Ok(())
}

fn print_row(which: &str, n: usize, window: Duration, m: &Measured, per_result: f64, ratio: f64) {
    {
        println!(
            "{:>8} {:>8} {:>9.0} {:>9.1}% {:>14.1} {:>7.2}x {:>9.1} {:>18} {:>18} {:>18} {:>16}",
            which,
            n,
            m.results as f64 / window.as_secs_f64(),
            100.0 * m.cpu.as_secs_f64() / window.as_secs_f64(),
            per_result,
            ratio,
            m.peak_rss_kib as f64 / 1024.0,
            m.status.text(),
            m.summary.text(),
            m.metrics.text(),
            start_delay_p99(&m.metrics.body),
        );
    }
}

struct Fetch {
    took: Duration,
    bytes: usize,
    ok: bool,
    body: Vec<u8>,
}

impl Fetch {
    fn text(&self) -> String {
        if self.ok {
            format!(
                "{:.1} ({})",
                self.took.as_secs_f64() * 1000.0,
                self.bytes / 1024
            )
        } else {
            "n/a".to_string()
        }
    }
}

struct Measured {
    cpu: Duration,
    results: u64,
    peak_rss_kib: u64,
    status: Fetch,
    summary: Fetch,
    metrics: Fetch,
}

/// Kills the daemon when the measurement ends, however it ends.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn measure(
    binary: &std::path::Path,
    n: usize,
    window: Duration,
    http: SocketAddr,
    tcp: SocketAddr,
    accepted: &AtomicU64,
) -> BenchResult<Measured> {
    let dir = std::env::temp_dir().join(format!("anyguard-many-services-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let status_port = httpd::free_port();
    let path = dir.join(format!("services-{n}.toml"));
    std::fs::write(&path, config_text(n, status_port, http, tcp))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let child = Command::new(binary)
        .arg("run")
        .arg("--dry-run")
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("anyguard: {e}"))?;
    let daemon = Daemon(child);
    let pid = daemon.0.id();
    let status_addr: SocketAddr = ([127, 0, 0, 1], status_port).into();
    let started = Instant::now();
    while get(status_addr, "/readyz").is_none_or(|f| !f.ok) {
        if started.elapsed() > START_WAIT {
            return Err(format!("{n} services: the status endpoint did not answer"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(WARM_UP);
    let (cpu0, results0) = (cpu_time(pid)?, accepted.load(Ordering::Relaxed));
    std::thread::sleep(window);
    let (cpu1, results1) = (cpu_time(pid)?, accepted.load(Ordering::Relaxed));
    let fail = || Fetch {
        took: Duration::ZERO,
        bytes: 0,
        ok: false,
        body: Vec::new(),
    };
    let status = get(status_addr, "/status").unwrap_or_else(fail);
    let summary = get(status_addr, "/status?summary=1").unwrap_or_else(fail);
    let metrics = get(status_addr, "/metrics").unwrap_or_else(fail);
    let peak_rss_kib = peak_rss_kib(pid)?;
    drop(daemon);
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_dir(&dir);
    Ok(Measured {
        cpu: cpu1.saturating_sub(cpu0),
        results: results1 - results0,
        peak_rss_kib,
        status,
        summary,
        metrics,
    })
}

fn config_text(n: usize, status_port: u16, http: SocketAddr, tcp: SocketAddr) -> String {
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
    for i in 0..n {
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

async fn serve_http(listener: TcpListener, accepted: Arc<AtomicU64>) {
    use tokio::io::AsyncWriteExt;
    while let Ok((mut sock, _)) = listener.accept().await {
        accepted.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            if httpd::read_request_head(&mut sock).await {
                let _ = sock.write_all(httpd::OK).await;
            }
            let _ = sock.shutdown().await;
        });
    }
}

async fn serve_tcp(listener: TcpListener, accepted: Arc<AtomicU64>) {
    while let Ok((sock, _)) = listener.accept().await {
        accepted.fetch_add(1, Ordering::Relaxed);
        drop(sock);
    }
}

/// One `GET` over a fresh connection, read to its end.
fn get(addr: SocketAddr, path: &str) -> Option<Fetch> {
    let t0 = Instant::now();
    let mut sock = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        sock,
        "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut body = Vec::new();
    sock.read_to_end(&mut body).ok()?;
    Some(Fetch {
        took: t0.elapsed(),
        bytes: body.len(),
        ok: body.starts_with(b"HTTP/1.1 200"),
        body,
    })
}

/// utime + stime of process `pid`, from `/proc/PID/stat` (clock ticks of 10 ms).
fn cpu_time(pid: u32) -> BenchResult<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    // The command name (field 2) may hold spaces: count fields after its closing ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or("/proc/PID/stat without a command name")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after the name.
    let ticks = |i: usize| -> BenchResult<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| "/proc/PID/stat: no utime/stime".to_string())
    };
    let hz = 100; // USER_HZ on Linux
    Ok(Duration::from_millis((ticks(11)? + ticks(12)?) * 1000 / hz))
}

fn peak_rss_kib(pid: u32) -> BenchResult<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "/proc/PID/status: no VmHWM".to_string())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".to_string())
}

/// The bucket bound under which 99 % of the probes started (since the daemon started),
/// from `anyguard_probe_start_delay_seconds` in a `/metrics` answer; "n/a" without it
/// (an older binary).
fn start_delay_p99(metrics: &[u8]) -> String {
    let text = String::from_utf8_lossy(metrics);
    let buckets: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("anyguard_probe_start_delay_seconds_bucket{le=\""))
        .filter_map(|l| {
            let (le, rest) = l.split_once("\"}")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, rest.trim().parse().ok()?))
        })
        .collect();
    let Some(&(_, total)) = buckets.last() else {
        return "n/a".to_string();
    };
    buckets
        .iter()
        .find(|(_, count)| *count >= 0.99 * total)
        .map_or_else(
            || "n/a".to_string(),
            |(le, _)| {
                if le.is_infinite() {
                    "> 1 s".to_string()
                } else {
                    format!("<= {:.1} ms", le * 1000.0)
                }
            },
        )
}
