//! Routine probe results through the real binary (issue 13): every result still shows in
//! `/status` (the check's counters and latest results) and `/metrics` (probe counts, the
//! start-delay histogram), recorded by the check's own task, while the coordinator loop
//! is not woken for them (`anyguard_coordinator_wakeups_total`); a state change wakes
//! it.

use hyper::Method;

use super::*;
use crate::status_http::metrics::value;
use crate::status_http::request;

/// `GET path` of the daemon whose status endpoint is on `port`: the body, if 200.
async fn get(port: u16, path: &str) -> Option<String> {
    let url = format!("http://127.0.0.1:{port}{path}");
    let (status, _, body) = request(Method::GET, &url, None, "").await;
    (status.as_u16() == 200).then(|| String::from_utf8_lossy(&body).into_owned())
}

/// What the test compares between two moments.
#[derive(Debug, Clone)]
struct Sample {
    /// `/status`: the check's state, consecutive passes, newest result's time.
    state: String,
    rise_count: u64,
    newest_at: String,
    /// `/metrics`: the check's probes, scheduled probes' start delays, the loop's
    /// wake-ups for check results and for anything.
    probes: f64,
    start_delays: f64,
    check_wakeups: f64,
    all_wakeups: f64,
}

async fn sample(port: u16) -> Sample {
    let doc: serde_json::Value =
        serde_json::from_str(&get(port, "/status").await.unwrap()).unwrap();
    let check = &doc["services"][0]["checks"][0];
    let text = get(port, "/metrics").await.unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("valid Prometheus text");
    let probes = ["ok", "fail"]
        .iter()
        .filter_map(|result| {
            scrape.samples.iter().find(|s| {
                s.metric == "anyguard_probe_duration_seconds_count"
                    && s.labels.get("result") == Some(result)
            })
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Untyped(v) | prometheus_parse::Value::Counter(v) => v,
            ref other => panic!("probe count {other:?}"),
        })
        .sum();
    let start_delays = scrape
        .samples
        .iter()
        .find(|s| s.metric == "anyguard_probe_start_delay_seconds_count")
        .map(|s| match s.value {
            prometheus_parse::Value::Untyped(v) | prometheus_parse::Value::Counter(v) => v,
            ref other => panic!("start delay count {other:?}"),
        })
        .unwrap_or(0.0);
    let wakeups: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "anyguard_coordinator_wakeups_total")
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("wake-ups {other:?}"),
        })
        .collect();
    assert!(
        !wakeups.is_empty(),
        "no anyguard_coordinator_wakeups_total in /metrics:\n{text}"
    );
    Sample {
        state: check["state"].as_str().unwrap_or_default().to_string(),
        rise_count: check["rise_count"].as_u64().unwrap_or_default(),
        newest_at: check["last_results"][0]["at"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        probes,
        start_delays,
        check_wakeups: value(
            &scrape,
            "anyguard_coordinator_wakeups_total",
            &[("cause", "check")],
        ),
        all_wakeups: wakeups.iter().sum(),
    }
}

/// Samples (bounded: ~10 s) until `done` holds; the last sample either way.
async fn sample_until(port: u16, done: impl Fn(&Sample) -> bool) -> Sample {
    let mut last = None;
    for _ in 0..100 {
        // Once the endpoint listens (`request` takes a refused connection as a failure).
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            let s = sample(port).await;
            if done(&s) {
                return s;
            }
            last = Some(s);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not reached within 10 s; last {last:?}");
}

#[tokio::test]
async fn routine_results_show_in_status_and_metrics_without_waking_the_coordinator_and_a_state_change_wakes_it(
) {
    // The target: accepts (and drops) every connection until it is closed.
    let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = target.local_addr().unwrap();
    let serving = tokio::spawn(async move {
        while let Ok((sock, _)) = target.accept().await {
            drop(sock);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let status_port = free_port();
    let _daemon = super::probe_close::dry_run_binary(
        dir.path(),
        &format!(
            r#"router_id = "198.18.0.2"
local_asn = {LOCAL_ASN}

[status]
listen = "127.0.0.1:{status_port}"

[[service]]
name = "web"
prefixes = ["{SERVICE_V4}"]

[[service.check]]
name = "tcp"
type = "tcp"
address = "{addr}"
interval = "50ms"
timeout = "40ms"
rise = 2
fall = 2
"#
        ),
    );

    // Up, and past the first results.
    let before = sample_until(status_port, |s| s.state == "up" && s.rise_count >= 4).await;
    // Routine results only (the check stays up): ~20 in a second.
    let after = sample_until(status_port, |s| s.probes >= before.probes + 10.0).await;
    assert_eq!(after.state, "up");
    assert!(after.rise_count > before.rise_count, "{before:?} {after:?}");
    assert_ne!(after.newest_at, before.newest_at, "{before:?} {after:?}");
    assert!(
        after.start_delays >= before.start_delays + 10.0,
        "start delays not recorded: {before:?} {after:?}"
    );
    assert_eq!(
        after.check_wakeups, before.check_wakeups,
        "a routine result woke the coordinator: {before:?} {after:?}"
    );
    // Nothing else woke it once a result either (no peers, no drain file, no watchdog).
    assert!(
        after.all_wakeups - before.all_wakeups < (after.probes - before.probes) / 2.0,
        "the coordinator woke with the results: {before:?} {after:?}"
    );

    // The target goes away: the check fails twice and goes down, which wakes the loop.
    serving.abort();
    let _ = serving.await;
    let down = sample_until(status_port, |s| s.state == "down").await;
    assert!(
        down.check_wakeups > after.check_wakeups,
        "the state change did not wake the coordinator: {after:?} {down:?}"
    );
    // Its failures show like every other result.
    assert!(down.probes >= after.probes + 2.0, "{after:?} {down:?}");
}

/// How long the slow target takes to answer.
const SLOW: Duration = Duration::from_millis(250);

/// The `(service, check)` of every `anyguard_probe_duration_seconds` series of `text`.
fn probe_series(text: &str) -> Vec<(String, String)> {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("valid Prometheus text");
    let mut series: Vec<(String, String)> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "anyguard_probe_duration_seconds_count")
        .map(|s| {
            let label = |k: &str| s.labels.get(k).unwrap_or_default().to_string();
            (label("service"), label("check"))
        })
        .collect();
    series.sort();
    series.dedup();
    series
}

/// The `(service, check)` names `/status` shows.
fn status_checks(doc: &serde_json::Value) -> Vec<(String, String)> {
    let mut names = Vec::new();
    for s in doc["services"].as_array().into_iter().flatten() {
        for c in s["checks"].as_array().into_iter().flatten() {
            names.push((
                s["name"].as_str().unwrap_or_default().to_string(),
                c["name"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    names.sort();
    names
}

/// The probes recorded for check `check` of service `service` in `text`.
fn probes_of(text: &str, service: &str, check: &str) -> f64 {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("valid Prometheus text");
    scrape
        .samples
        .iter()
        .filter(|s| {
            s.metric == "anyguard_probe_duration_seconds_count"
                && s.labels.get("service") == Some(service)
                && s.labels.get("check") == Some(check)
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Untyped(v) | prometheus_parse::Value::Counter(v) => v,
            ref other => panic!("probe count {other:?}"),
        })
        .sum()
}

/// A reload that removes checks while their probes wait on a slow target (the old
/// runner's tasks are aborted, and a task finishing its probe at that moment still
/// records it, `status::record`): once the probes' time has passed, neither `/metrics`
/// nor `/status` shows anything of the removed checks — not the series the reload
/// dropped, not a new one for a first failure answered after it — while the check that
/// stays goes on recording.
#[tokio::test]
async fn checks_a_reload_removes_while_probing_a_slow_target_leave_no_series_and_no_record() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    // The slow target: answers every request after `SLOW`, 200 until `failing`, then 503
    // (a first failure, whose series a late result would create); counts the requests
    // it is holding.
    let slow = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slow_addr = slow.local_addr().unwrap();
    let failing = Arc::new(AtomicBool::new(false));
    let holding = Arc::new(AtomicUsize::new(0));
    let (f, h) = (Arc::clone(&failing), Arc::clone(&holding));
    let slow_task = tokio::spawn(async move {
        while let Ok((mut sock, _)) = slow.accept().await {
            let (failing, holding) = (Arc::clone(&f), Arc::clone(&h));
            tokio::spawn(async move {
                if read_request_head(&mut sock).await {
                    holding.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(SLOW).await;
                    holding.fetch_sub(1, Ordering::SeqCst);
                    let answer = if failing.load(Ordering::SeqCst) {
                        UNAVAILABLE
                    } else {
                        OK
                    };
                    let _ = sock.write_all(answer).await;
                }
            });
        }
    });
    // The check that stays: a TCP target that accepts and closes.
    let fast = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fast_addr = fast.local_addr().unwrap();
    let fast_task = tokio::spawn(async move {
        while let Ok((sock, _)) = fast.accept().await {
            drop(sock);
        }
    });

    let slow_check = |name: &str| {
        format!(
            "\n[[service.check]]\nname = \"{name}\"\ntype = \"http\"\nurl = \"http://{slow_addr}/\"\ninterval = \"500ms\"\nfast_interval = \"500ms\"\ntimeout = \"400ms\"\nrise = 1\nfall = 3\n"
        )
    };
    let kept = format!(
        "\n[[service.check]]\nname = \"kept\"\ntype = \"tcp\"\naddress = \"{fast_addr}\"\ninterval = \"100ms\"\ntimeout = \"80ms\"\nrise = 1\nfall = 3\n"
    );
    let status_port = free_port();
    let head = format!(
        "router_id = \"198.18.0.2\"\nlocal_asn = {LOCAL_ASN}\n\n[status]\nlisten = \"127.0.0.1:{status_port}\"\n\n[[service]]\nname = \"web\"\nprefixes = [\"{SERVICE_V4}\"]\n{kept}"
    );
    let mut before = format!("{head}{}", slow_check("slow"));
    before.push_str("\n[[service]]\nname = \"gone\"\nprefixes = [\"198.51.100.7/32\"]\n");
    for i in 0..4 {
        before.push_str(&slow_check(&format!("g{i}")));
    }
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = super::probe_close::dry_run_binary(dir.path(), &before);
    let log = || std::fs::read_to_string(dir.path().join("anyguard.log")).unwrap_or_default();
    let removed = |(service, check): &(String, String)| service == "gone" || check == "slow";

    // Every slow check has results (and its series) before the reload.
    let mut text = String::new();
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", status_port))
            .await
            .is_ok()
        {
            text = get(status_port, "/metrics").await.unwrap_or_default();
            if probe_series(&text).iter().filter(|s| removed(s)).count() == 5 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        probe_series(&text).iter().filter(|s| removed(s)).count(),
        5,
        "{text}\nlog:\n{}",
        log()
    );

    // While the target holds some of their requests (bounded: 2 s), a reload removes
    // service "gone" and web's check "slow".
    failing.store(true, Ordering::SeqCst);
    for _ in 0..200 {
        if holding.load(Ordering::SeqCst) >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(holding.load(Ordering::SeqCst) >= 1, "no probe in flight");
    std::fs::write(dir.path().join("anyguard.toml"), &head).unwrap();
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    let mut generation = serde_json::Value::Null;
    for _ in 0..100 {
        let doc: serde_json::Value =
            serde_json::from_str(&get(status_port, "/status").await.unwrap_or_default())
                .unwrap_or_default();
        generation = doc["daemon"]["config_generation"].clone();
        if generation == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(generation, 2, "the reload was not taken; log:\n{}", log());

    // Past the held requests' answers and the probes' timeout, three looks 200 ms
    // apart: nothing of the removed checks, and the kept check still recording.
    tokio::time::sleep(SLOW + Duration::from_millis(400) + Duration::from_millis(300)).await;
    let mut kept_probes = Vec::new();
    for _ in 0..3 {
        let text = get(status_port, "/metrics").await.unwrap();
        let series = probe_series(&text);
        assert!(
            !series.iter().any(removed),
            "a removed check's series after the reload: {series:?}\n{text}"
        );
        let doc: serde_json::Value =
            serde_json::from_str(&get(status_port, "/status").await.unwrap()).unwrap();
        assert_eq!(
            status_checks(&doc),
            [("web".to_string(), "kept".to_string())],
            "{doc}"
        );
        kept_probes.push(probes_of(&text, "web", "kept"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        kept_probes.windows(2).all(|w| w[1] > w[0]),
        "the kept check stopped recording: {kept_probes:?}"
    );
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    let status = daemon.exit().await;
    slow_task.abort();
    fast_task.abort();
    assert!(status.success(), "exit {status:?}; log:\n{}", log());
}
