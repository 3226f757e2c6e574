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
