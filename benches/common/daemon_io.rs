//! What the daemon benchmarks (`many_services`, `scale`) share: the `anyguard run`
//! process under measurement, the health targets it probes (counting the connections
//! they accept: one per probe result), timed `GET`s of its status endpoint, its CPU time
//! and peak RSS from `/proc`, and nearest-rank percentiles.

// Each benchmark that includes this file uses a part of it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use super::httpd;

type BenchResult<T> = Result<T, String>;

/// Requests of each kind timed per measurement (the slowest is printed).
pub(crate) const FETCHES: usize = 3;

/// Nearest-rank percentiles, in microseconds.
pub(crate) struct Percentiles {
    pub(crate) min: f64,
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
}

impl Percentiles {
    pub(crate) fn of(samples: &mut [Duration]) -> Percentiles {
        samples.sort_unstable();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let rank = |q: f64| {
            let i = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
            us(samples[i])
        };
        Percentiles {
            min: samples.first().map_or(0.0, |d| us(*d)),
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: samples.last().map_or(0.0, |d| us(*d)),
        }
    }
}

pub(crate) struct Fetch {
    pub(crate) took: Duration,
    pub(crate) bytes: usize,
    pub(crate) ok: bool,
    pub(crate) body: Vec<u8>,
}

impl Fetch {
    pub(crate) fn failed() -> Fetch {
        Fetch {
            took: Duration::ZERO,
            bytes: 0,
            ok: false,
            body: Vec::new(),
        }
    }

    pub(crate) fn text(&self) -> String {
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

/// Kills the daemon when the measurement ends, however it ends.
pub(crate) struct Daemon(pub(crate) Child);

impl Daemon {
    /// `binary run ARGS --config CONFIG`, logging warnings only (to nowhere), its state
    /// file in `dir`.
    pub(crate) fn spawn(
        binary: &Path,
        args: &[&str],
        config: &Path,
        dir: &Path,
    ) -> BenchResult<Daemon> {
        Command::new(binary)
            .arg("run")
            .args(args)
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "warn")
            .env("STATE_DIRECTORY", dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(Daemon)
            .map_err(|e| format!("anyguard: {e}"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The slowest of [`FETCHES`] `GET path`s (the body of the last one).
pub(crate) fn slowest(addr: SocketAddr, path: &str) -> Fetch {
    let mut worst: Option<Fetch> = None;
    for _ in 0..FETCHES {
        let Some(f) = get(addr, path).filter(|f| f.ok) else {
            return Fetch::failed();
        };
        let took = worst.as_ref().map_or(f.took, |w| w.took.max(f.took));
        worst = Some(Fetch { took, ..f });
    }
    worst.unwrap_or_else(Fetch::failed)
}

pub(crate) async fn serve_http(listener: TcpListener, accepted: Arc<AtomicU64>) {
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

pub(crate) async fn serve_tcp(listener: TcpListener, accepted: Arc<AtomicU64>) {
    while let Ok((sock, _)) = listener.accept().await {
        accepted.fetch_add(1, Ordering::Relaxed);
        drop(sock);
    }
}

/// One `GET` over a fresh connection, read to its end.
pub(crate) fn get(addr: SocketAddr, path: &str) -> Option<Fetch> {
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

/// The CPU time (user + system, every thread, live or exited) of process `pid`, in
/// nanoseconds: its CPU-time clock (`clock_getcpuclockid`). `/proc/PID/stat`'s utime +
/// stime count 10 ms ticks, which at 10 services (~40 ms of CPU in a window) is a
/// quarter of the figure; it is the fallback where the clock cannot be read.
pub(crate) fn cpu_time(pid: u32) -> BenchResult<Duration> {
    use nix::time::{clock_getcpuclockid, clock_gettime};
    let clock = i32::try_from(pid)
        .ok()
        .and_then(|p| clock_getcpuclockid(nix::unistd::Pid::from_raw(p)).ok());
    if let Some(t) = clock.and_then(|c| clock_gettime(c).ok()) {
        return Ok(Duration::from(t));
    }
    cpu_ticks(pid)
}

/// utime + stime of process `pid`, from `/proc/PID/stat` (clock ticks of 10 ms).
fn cpu_ticks(pid: u32) -> BenchResult<Duration> {
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

pub(crate) fn peak_rss_kib(pid: u32) -> BenchResult<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "/proc/PID/status: no VmHWM".to_string())
}

pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".to_string())
}

/// The bucket bound under which 99 % of the probes started (since the daemon started),
/// from `anyguard_probe_start_delay_seconds` in a `/metrics` answer; "n/a" without it
/// (an older binary).
pub(crate) fn start_delay_p99(metrics: &[u8]) -> String {
    p99_bound(&start_delay_buckets(metrics))
}

/// The same over a window: from the difference of the bucket counts of two `/metrics`
/// answers, one taken at the window's start and one at its end (the start-up burst and
/// the warm-up are left out).
pub(crate) fn start_delay_p99_between(before: &[u8], after: &[u8]) -> String {
    let before = start_delay_buckets(before);
    let after = start_delay_buckets(after);
    if before.len() != after.len() || before.iter().zip(&after).any(|(b, a)| b.0 != a.0) {
        return "n/a".to_string();
    }
    let window: Vec<(f64, f64)> = after
        .iter()
        .zip(&before)
        .map(|(a, b)| (a.0, a.1 - b.1))
        .collect();
    p99_bound(&window)
}

/// The cumulative buckets (upper bound in seconds, count) of
/// `anyguard_probe_start_delay_seconds`.
fn start_delay_buckets(metrics: &[u8]) -> Vec<(f64, f64)> {
    let text = String::from_utf8_lossy(metrics);
    text.lines()
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
        .collect()
}

/// The smallest bucket bound that holds 99 % of the count.
fn p99_bound(buckets: &[(f64, f64)]) -> String {
    let Some(&(_, total)) = buckets.last() else {
        return "n/a".to_string();
    };
    if total <= 0.0 {
        return "n/a".to_string();
    }
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
