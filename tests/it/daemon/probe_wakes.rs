//! Probe wake coalescing through the real binary (issue 13, `health::schedule`): at a low
//! probe rate the daemon starts several checks in one wake of its probe thread — the
//! checks of a service together, and the services whose deadlines fall in one slot of
//! the grid — while every check is still probed at its interval and the start delay,
//! measured from the due time the grid gave, stays small.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use super::*;
use crate::status_http::metrics::value;

/// Services of the test, each an HTTP and a TCP check at 1 s: 40 checks a second, where a
/// check used to wake the probe thread on its own.
const SERVICES: usize = 20;
/// Arrivals closer than this belong to one wake of the daemon's probe thread.
const SAME_WAKE: Duration = Duration::from_millis(5);
/// What the test looks at: the arrivals in [`SETTLED`, `SETTLED + WINDOW`) after the
/// daemon started (its first probes come within the first interval).
const SETTLED: Duration = Duration::from_secs(2);
const WINDOW: Duration = Duration::from_secs(6);

/// One connection a target accepted: (service, check: 0 HTTP / 1 TCP, when).
type Arrival = (usize, usize, Instant);

/// A listener per check, each recording when it accepted a connection; the HTTP ones
/// answer 200 "ok", the TCP ones close. Returns the listeners' addresses and the tasks.
async fn targets(
    arrivals: &Arc<Mutex<Vec<Arrival>>>,
) -> (Vec<(SocketAddr, SocketAddr)>, Vec<JoinHandle<()>>) {
    let mut addrs = Vec::new();
    let mut tasks = Vec::new();
    for service in 0..SERVICES {
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push((http.local_addr().unwrap(), tcp.local_addr().unwrap()));
        for (check, listener) in [(0, http), (1, tcp)] {
            let arrivals = Arc::clone(arrivals);
            tasks.push(tokio::spawn(async move {
                loop {
                    let Ok((mut sock, _)) = listener.accept().await else {
                        return;
                    };
                    arrivals
                        .lock()
                        .unwrap()
                        .push((service, check, Instant::now()));
                    if check == 0 {
                        tokio::spawn(async move {
                            if read_request_head(&mut sock).await {
                                let _ = sock.write_all(OK).await;
                            }
                        });
                    }
                }
            }));
        }
    }
    (addrs, tasks)
}

/// The number of groups of `times` (sorted) whose neighbours are within [`SAME_WAKE`].
fn groups(times: &[Instant]) -> usize {
    let gaps = times
        .windows(2)
        .filter(|w| w[1].duration_since(w[0]) > SAME_WAKE)
        .count();
    gaps + usize::from(!times.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_starts_checks_due_together_in_one_wake_and_keeps_their_interval() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let (addrs, tasks) = targets(&arrivals).await;
    let status_port = free_port();
    let mut text = format!(
        "router_id = \"198.18.0.2\"\nlocal_asn = {LOCAL_ASN}\n\n[status]\nlisten = \"127.0.0.1:{status_port}\"\n"
    );
    for (i, (http, tcp)) in addrs.iter().enumerate() {
        text.push_str(&format!(
            r#"
[[service]]
name = "s{i}"
prefixes = ["198.51.100.{i}/32"]

[[service.check]]
name = "http"
type = "http"
url = "http://{http}/healthz"
interval = "1s"
timeout = "500ms"
rise = 1

[[service.check]]
name = "tcp"
type = "tcp"
address = "{tcp}"
interval = "1s"
timeout = "500ms"
rise = 1
"#
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut daemon = super::probe_close::dry_run_binary(dir.path(), &text);
    let log = || std::fs::read_to_string(dir.path().join("anyguard.log")).unwrap_or_default();
    tokio::time::sleep(SETTLED + WINDOW).await;

    // The start delay of every scheduled probe, from /metrics.
    let (code, _, body) = crate::status_http::request(
        Method::GET,
        &format!("http://127.0.0.1:{status_port}/metrics"),
        None,
        "",
    )
    .await;
    assert_eq!(code, 200, "log:\n{}", log());
    let metrics = String::from_utf8(body.to_vec()).unwrap();
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    let status = daemon.exit().await;
    assert!(status.success(), "exit {status:?}; log:\n{}", log());
    for t in tasks {
        t.abort();
    }

    let mut seen: Vec<Arrival> = arrivals
        .lock()
        .unwrap()
        .iter()
        .copied()
        .filter(|(_, _, at)| {
            let since = at.duration_since(started);
            since >= SETTLED && since < SETTLED + WINDOW
        })
        .collect();
    seen.sort_by_key(|(_, _, at)| *at);

    // Every check probed at its interval: about one probe a second over the window.
    for service in 0..SERVICES {
        for check in 0..2 {
            let n = seen
                .iter()
                .filter(|(s, c, _)| *s == service && *c == check)
                .count();
            assert!(
                (4..=8).contains(&n),
                "service {service} check {check}: {n} probes in {WINDOW:?}"
            );
        }
    }

    // The checks of a service share a wake: each HTTP probe's TCP sibling arrives with it.
    let http: Vec<&Arrival> = seen.iter().filter(|(_, c, _)| *c == 0).collect();
    let together = http
        .iter()
        .filter(|(s, _, at)| {
            seen.iter().any(|(s2, c2, at2)| {
                s2 == s
                    && *c2 == 1
                    && (if at2 > at {
                        at2.duration_since(*at)
                    } else {
                        at.duration_since(*at2)
                    }) <= SAME_WAKE
            })
        })
        .count();

    // And services share wakes: far fewer groups of arrivals than services probed (one
    // wake per service would make nearly as many groups as HTTP probes; at 20 services a
    // second on a 128 ms grid, about 7 groups a second).
    let times: Vec<Instant> = seen.iter().map(|(_, _, at)| *at).collect();
    let wakes = groups(&times);

    // The start delay, measured from each probe's due time on the grid, stays small.
    let scrape = prometheus_parse::Scrape::parse(metrics.lines().map(|l| Ok(l.to_owned())))
        .expect("valid Prometheus text");
    let count = value(&scrape, "anyguard_probe_start_delay_seconds_count", &[]);
    let within_10ms = scrape
        .samples
        .iter()
        .find_map(|s| match &s.value {
            prometheus_parse::Value::Histogram(buckets)
                if s.metric == "anyguard_probe_start_delay_seconds" =>
            {
                buckets
                    .iter()
                    .find(|b| (b.less_than - 0.01).abs() < 1e-9)
                    .map(|b| b.count)
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no start delay histogram:\n{metrics}"));
    eprintln!(
        "{} connections in {wakes} groups; {together} of {} HTTP probes with their TCP \
         sibling; start delay within 10 ms: {within_10ms} of {count}",
        times.len(),
        http.len()
    );
    assert!(
        together * 10 >= http.len() * 8,
        "only {together} of {} HTTP probes came with their service's TCP probe",
        http.len()
    );
    assert!(
        wakes * 10 <= http.len() * 6,
        "{} services probed in {wakes} groups of arrivals: services did not share wakes",
        http.len()
    );
    assert!(
        count >= (2 * SERVICES * 6) as f64,
        "{count} probes in the start delay histogram"
    );
    assert!(
        within_10ms >= 0.8 * count,
        "{within_10ms} of {count} probes started within 10 ms of their due time"
    );
}

/// Filler checks that raise the probe thread's rate, so that its grid's slot is narrow
/// (16 ms at about 300 checks a second, `health::schedule::base_slot`) and two checks
/// land in one slot by chance only rarely: what puts them in one wake is their phase.
/// File checks: a `stat` each, no connection, so they load the machine very little.
const FILLERS: usize = 3;

/// The tests of this module look at when connections arrive, a few milliseconds apart:
/// one at a time, so that neither daemon's probes load the other's.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Whether some arrival of `others` lies within [`SAME_WAKE`] of `at`.
fn paired(at: Instant, others: &[Instant]) -> bool {
    others.iter().any(|o| {
        let gap = if *o > at {
            o.duration_since(at)
        } else {
            at.duration_since(*o)
        };
        gap <= SAME_WAKE
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_back_from_its_fast_interval_starts_with_its_services_other_check_again() {
    use std::sync::atomic::{AtomicBool, Ordering};

    let _alone = ONE_AT_A_TIME.lock().await;

    // Two HTTP targets, "a" answering 503 while `failing`, "b" always 200; each records
    // when it accepted a connection.
    let failing = Arc::new(AtomicBool::new(false));
    let arrivals: Arc<Mutex<[Vec<Instant>; 2]>> = Arc::default();
    let mut addrs = Vec::new();
    let mut tasks = Vec::new();
    for check in 0..2 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(listener.local_addr().unwrap());
        let (arrivals, failing) = (Arc::clone(&arrivals), Arc::clone(&failing));
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                arrivals.lock().unwrap()[check].push(Instant::now());
                let answer = if check == 0 && failing.load(Ordering::SeqCst) {
                    UNAVAILABLE
                } else {
                    OK
                };
                tokio::spawn(async move {
                    if read_request_head(&mut sock).await {
                        let _ = sock.write_all(answer).await;
                    }
                });
            }
        }));
    }
    let dir = tempfile::tempdir().unwrap();
    let filler_file = dir.path().join("filler");
    std::fs::write(&filler_file, "").unwrap();

    let status_port = free_port();
    let mut text = format!(
        "router_id = \"198.18.0.2\"\nlocal_asn = {LOCAL_ASN}\n\n[status]\nlisten = \"127.0.0.1:{status_port}\"\n"
    );
    text.push_str("\n[[service]]\nname = \"s\"\nprefixes = [\"198.51.100.1/32\"]\n");
    for (name, addr) in ["a", "b"].iter().zip(&addrs) {
        text.push_str(&format!(
            r#"
[[service.check]]
name = "{name}"
type = "http"
url = "http://{addr}/healthz"
interval = "200ms"
fast_interval = "50ms"
timeout = "150ms"
rise = 2
fall = 2
"#
        ));
    }
    text.push_str("\n[[service]]\nname = \"filler\"\nprefixes = [\"198.51.100.2/32\"]\n");
    for i in 0..FILLERS {
        text.push_str(&format!(
            "\n[[service.check]]\nname = \"f{i}\"\ntype = \"file\"\npath = \"{}\"\ninterval = \"10ms\"\ntimeout = \"8ms\"\nrise = 1\nfall = 100\n",
            filler_file.display()
        ));
    }
    let mut daemon = super::probe_close::dry_run_binary(dir.path(), &text);
    let log = || std::fs::read_to_string(dir.path().join("anyguard.log")).unwrap_or_default();
    let since = |t0: Instant, check: usize| -> Vec<Instant> {
        arrivals.lock().unwrap()[check]
            .iter()
            .copied()
            .filter(|at| *at >= t0)
            .collect()
    };

    // Up, on the service's phase: b's probes come with a's.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let settled = Instant::now();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (a, b) = (since(settled, 0), since(settled, 1));
    let before = b.iter().filter(|at| paired(**at, &a)).count();
    assert!(
        before * 10 >= b.len() * 8 && b.len() >= 3,
        "before: {before} of {} probes of b with a's; log:\n{}",
        b.len(),
        log()
    );

    // a's target fails, then recovers: a counts to down at its fast interval, then to up.
    let failed = Instant::now();
    failing.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(800)).await;
    failing.store(false, Ordering::SeqCst);
    let recovered = Instant::now();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let fastest = |probes: &[Instant]| {
        probes
            .windows(2)
            .map(|w| w[1].duration_since(w[0]))
            .min()
            .unwrap_or(Duration::MAX)
    };
    let a = since(failed, 0);
    assert!(
        fastest(&a) < Duration::from_millis(120),
        "a never ran at its fast interval: {:?}",
        a.windows(2)
            .map(|w| w[1].duration_since(w[0]))
            .collect::<Vec<_>>()
    );

    // Back at its interval, a rejoins the service's phase: b's probes come with a's
    // again, for good (of 10 in a row, two spared for a loaded machine: by chance, in a
    // 16 ms slot of a 200 ms interval, about one in twelve would). Bounded: 40 intervals
    // after the recovery.
    const IN_A_ROW: usize = 10;
    let mut last = (0, 0);
    let mut together = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let a = since(recovered, 0);
        // A probe of b whose sibling may still be on its way is not judged yet.
        let now = Instant::now();
        let b: Vec<Instant> = since(recovered, 1)
            .into_iter()
            .filter(|at| now.duration_since(*at) > Duration::from_millis(50))
            .collect();
        if b.len() < IN_A_ROW {
            continue;
        }
        let recent = &b[b.len() - IN_A_ROW..];
        let n = recent.iter().filter(|at| paired(**at, &a)).count();
        last = (n, b.len());
        if n + 2 >= IN_A_ROW {
            together = true;
            break;
        }
    }
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    let status = daemon.exit().await;
    for t in tasks {
        t.abort();
    }
    assert!(
        together,
        "a and b did not start together again: {} of the last {IN_A_ROW} of b's {} probes \
         since the recovery came with a's; log:\n{}",
        last.0,
        last.1,
        log()
    );
    assert!(status.success(), "exit {status:?}; log:\n{}", log());
}
