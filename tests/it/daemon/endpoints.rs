//! The operator surface of the running daemon (issue 5): every endpoint over real HTTP, with
//! values that come from the daemon's own state — the service the scripted peer received,
//! the check that probed the local target, the session to the peer — and the refusals
//! (401, 403, 404, 405, 413) on the daemon's own control endpoint.

use hyper::Method;

use super::*;
use crate::status_http::metrics::value;
use crate::status_http::request;

const TOKEN: &str = "endpoints-test-token";

async fn get(port: u16, path: &str) -> (u16, Vec<u8>) {
    let url = format!("http://127.0.0.1:{port}{path}");
    let (status, _, body) = request(Method::GET, &url, None, "").await;
    (status.as_u16(), body.to_vec())
}

/// A daemon with a control token whose service is announced to the peer.
async fn daemon(dir: &Path) -> (Target, Daemon) {
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let status_extra = format!("token_file = \"{}\"", token_file.display());
    let setup = Setup {
        status_extra: &status_extra,
        ..Setup::default()
    };
    let target = Target::start(Answer::Pass).await;
    let mut d = Daemon::start(&setup, &target).await;
    assert_v4_announcement(&d.update().await, 0);
    d.wait_state("up").await;
    (target, d)
}

#[tokio::test]
async fn status_metrics_and_probes_describe_the_running_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let (_target, d) = daemon(dir.path()).await;
    let port = d.status_port;

    assert_eq!(get(port, "/healthz").await.0, 200);
    assert_eq!(get(port, "/readyz").await.0, 200);

    let (code, body) = get(port, "/status").await;
    assert_eq!(code, 200);
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let daemon = &doc["daemon"];
    assert_eq!(daemon["router_id"], "198.18.0.2");
    assert_eq!(daemon["local_asn"], LOCAL_ASN);
    assert_eq!(daemon["ready"], true);
    assert_eq!(daemon["config_generation"], 1);
    assert_eq!(daemon["version"], env!("CARGO_PKG_VERSION"));
    let service = &doc["services"][0];
    assert_eq!(service["name"], "web");
    assert_eq!(service["state"], "up");
    assert_eq!(service["prefixes"], serde_json::json!([SERVICE_V4]));
    assert_eq!(service["announcements"][0]["peer"], "edge");
    assert_eq!(service["announcements"][0]["state"], "announced");
    assert_eq!(service["guard"]["decision"], "disabled");
    let check = &service["checks"][0];
    assert_eq!(check["kind"], "http");
    assert_eq!(check["state"], "up");
    let last = &check["last_results"][0];
    assert_eq!(last["ok"], true, "{check}");
    assert!(last["latency_ms"].as_f64().unwrap() > 0.0, "{check}");
    let peer = &doc["peers"][0];
    assert_eq!(peer["name"], "edge");
    assert_eq!(peer["state"], "established");
    assert_eq!(peer["remote_asn"], PEER_ASN);
    assert!(
        peer["messages_sent"]["update"].as_u64().unwrap() >= 1,
        "{peer}"
    );
    assert_eq!(peer["prefixes_sent"], 1);
    assert!(
        peer["capabilities"]
            .as_array()
            .is_some_and(|c| !c.is_empty()),
        "{peer}"
    );

    let (code, body) = get(port, "/metrics").await;
    assert_eq!(code, 200);
    let text = String::from_utf8(body).unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("valid Prometheus text");
    assert_eq!(
        value(&scrape, "anyguard_service_up", &[("service", "web")]),
        1.0
    );
    assert_eq!(
        value(
            &scrape,
            "anyguard_peer_state",
            &[("peer", "edge"), ("state", "established")]
        ),
        1.0
    );
    assert_eq!(value(&scrape, "anyguard_ready", &[]), 1.0);
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "anyguard_probe_duration_seconds"),
        "no probe latency histogram:\n{text}"
    );
    // Every scheduled probe's start delay (issue 13): the check has probed by now.
    assert!(
        value(&scrape, "anyguard_probe_start_delay_seconds_count", &[]) >= 1.0,
        "no probe start delay histogram:\n{text}"
    );
    d.shutdown().await;
}

#[tokio::test]
async fn the_daemons_control_endpoint_refuses_what_it_must() {
    let dir = tempfile::tempdir().unwrap();
    let (_target, d) = daemon(dir.path()).await;
    let port = d.status_port;
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let bearer = format!("Bearer {TOKEN}");
    let code =
        |(status, _, _): (hyper::StatusCode, hyper::HeaderMap, bytes::Bytes)| status.as_u16();

    let check = url("/services/web/check");
    assert_eq!(code(request(Method::POST, &check, None, "").await), 401);
    assert_eq!(
        code(request(Method::POST, &check, Some("Bearer wrong"), "").await),
        403
    );
    assert_eq!(
        code(request(Method::POST, &check, Some(&bearer), "").await),
        200
    );
    assert_eq!(
        code(
            request(
                Method::POST,
                &url("/services/nope/drain"),
                Some(&bearer),
                ""
            )
            .await
        ),
        404
    );
    assert_eq!(
        code(request(Method::GET, &url("/nowhere"), None, "").await),
        404
    );
    assert_eq!(
        code(request(Method::DELETE, &url("/status"), None, "").await),
        405
    );
    assert_eq!(
        code(request(Method::GET, &url("/services/web/drain"), Some(&bearer), "").await),
        405
    );
    let huge = format!(r#"{{"reason": "{}"}}"#, "x".repeat(8 * 1024));
    assert_eq!(
        code(
            request(
                Method::POST,
                &url("/services/web/drain"),
                Some(&bearer),
                &huge
            )
            .await
        ),
        413
    );
    // None of the refused requests changed anything.
    assert_eq!(service_state(port).await.as_deref(), Some("up"));
    d.shutdown().await;
}

/// `/status` and `/metrics` of the running daemon, parsed.
async fn status_and_metrics(port: u16) -> (serde_json::Value, prometheus_parse::Scrape) {
    let (code, body) = get(port, "/status").await;
    assert_eq!(code, 200);
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let (code, body) = get(port, "/metrics").await;
    assert_eq!(code, 200);
    let text = String::from_utf8(body).unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("valid Prometheus text");
    (doc, scrape)
}

/// Every per-service family of `scrape` against the first service's `/status` entry in
/// `doc`; the first difference found, if any.
fn per_service_families_differ(
    doc: &serde_json::Value,
    scrape: &prometheus_parse::Scrape,
) -> Option<String> {
    let s = &doc["services"][0];
    let name = s["name"].as_str().unwrap();
    let found = |metric: &str, labels: &[(&str, &str)]| {
        scrape
            .samples
            .iter()
            .find(|x| x.metric == metric && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
            .map(|x| match x.value {
                prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
                ref other => panic!("{metric}: unexpected value {other:?}"),
            })
    };
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let state = s["state"].as_str().unwrap();
    // (metric, labels besides `service`, value /status implies)
    type Expected = (String, Vec<(&'static str, String)>, f64);
    let mut expected: Vec<Expected> = vec![
        ("anyguard_service_up".into(), vec![], flag(state == "up")),
        (
            "anyguard_guard_held".into(),
            vec![],
            flag(s["guard"]["decision"] == "held"),
        ),
        (
            "anyguard_guard_sites_announcing".into(),
            vec![],
            s["guard"]["sites_announcing"].as_array().unwrap().len() as f64,
        ),
        (
            "anyguard_service_suppressed".into(),
            vec![],
            flag(!s["dampening"]["suppressed_until"].is_null()),
        ),
        (
            "anyguard_service_flaps".into(),
            vec![],
            s["dampening"]["flaps"].as_f64().unwrap(),
        ),
    ];
    for st in ["starting", "up", "down", "draining", "drained", "held"] {
        expected.push((
            "anyguard_service_state".into(),
            vec![("state", st.to_string())],
            flag(state == st),
        ));
    }
    for a in s["announcements"].as_array().unwrap() {
        expected.push((
            "anyguard_announced_prefixes".into(),
            vec![("peer", a["peer"].as_str().unwrap().to_string())],
            a["prefixes"].as_array().unwrap().len() as f64,
        ));
    }
    for c in s["checks"].as_array().unwrap() {
        expected.push((
            "anyguard_check_up".into(),
            vec![("check", c["name"].as_str().unwrap().to_string())],
            flag(c["state"] == "up"),
        ));
    }
    for (metric, extra, want) in expected {
        let mut labels: Vec<(&str, &str)> = vec![("service", name)];
        labels.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
        let got = found(&metric, &labels);
        if got != Some(want) {
            return Some(format!(
                "{metric} {labels:?}: /metrics {got:?}, /status {want}"
            ));
        }
    }
    None
}

/// Polls (bounded) until every per-service family of `/metrics` shows what `/status`
/// shows of the service (the two are read one after the other, so a change in between
/// is waited out); panics with the last difference.
async fn assert_per_service_families_follow(
    port: u16,
) -> (serde_json::Value, prometheus_parse::Scrape) {
    let mut last = None;
    for _ in 0..100 {
        let (doc, scrape) = status_and_metrics(port).await;
        match per_service_families_differ(&doc, &scrape) {
            None => return (doc, scrape),
            Some(d) => last = Some(d),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("/metrics never matched /status: {last:?}");
}

/// The per-service families are kept between scrapes and set when the service's entry
/// changes (issue 13): a family left out of that update keeps its old value here.
#[tokio::test]
async fn per_service_metrics_follow_the_service_through_a_withdrawal() {
    let dir = tempfile::tempdir().unwrap();
    let (target, mut d) = daemon(dir.path()).await;
    let port = d.status_port;
    let (_, before) = assert_per_service_families_follow(port).await;
    let web = [("service", "web")];
    assert_eq!(value(&before, "anyguard_service_up", &web), 1.0);
    assert_eq!(
        value(
            &before,
            "anyguard_announced_prefixes",
            &[("service", "web"), ("peer", "edge")]
        ),
        1.0
    );

    target.set(Answer::Fail);
    assert_v4_withdrawal(&d.update().await);
    d.wait_state("down").await;
    let (_, after) = assert_per_service_families_follow(port).await;
    // Every value that the withdrawal changes, changed in place.
    assert_eq!(value(&after, "anyguard_service_up", &web), 0.0);
    for (state, v) in [("up", 0.0), ("down", 1.0)] {
        assert_eq!(
            value(
                &after,
                "anyguard_service_state",
                &[("service", "web"), ("state", state)]
            ),
            v
        );
    }
    assert_eq!(
        value(
            &after,
            "anyguard_announced_prefixes",
            &[("service", "web"), ("peer", "edge")]
        ),
        0.0
    );
    assert!(
        after.samples.iter().any(|s| s.metric == "anyguard_check_up"
            && s.labels.get("service") == Some("web")
            && s.value == prometheus_parse::Value::Gauge(0.0)),
        "the check is down in /metrics"
    );
    assert!(value(&after, "anyguard_service_flaps", &web) >= 1.0);
    d.shutdown().await;
}

/// The whole `/status` carries each check's three newest results; one service asked for
/// carries every kept one (issue 13: the whole document stays small).
#[tokio::test]
async fn the_whole_status_carries_three_results_per_check_and_one_service_all_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (_target, d) = daemon(dir.path()).await;
    let port = d.status_port;
    let results = |doc: &serde_json::Value| {
        doc["services"][0]["checks"][0]["last_results"]
            .as_array()
            .unwrap()
            .len()
    };
    // At 100 ms, more than three results soon.
    let mut kept = 0;
    for _ in 0..100 {
        let (_, body) = get(port, "/status?service=web").await;
        kept = results(&serde_json::from_slice(&body).unwrap());
        if kept > 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!((5..=10).contains(&kept), "kept {kept}");
    let (_, body) = get(port, "/status").await;
    assert_eq!(results(&serde_json::from_slice(&body).unwrap()), 3);
    let (_, body) = get(port, "/status?summary=1").await;
    assert_eq!(results(&serde_json::from_slice(&body).unwrap()), 1);
    d.shutdown().await;
}
