//! `/metrics` parsed with a Prometheus text-format parser.

use std::time::Duration;

use hyper::header;
use hyper::StatusCode;

use super::Harness;

fn sample<'a>(
    scrape: &'a prometheus_parse::Scrape,
    name: &str,
    labels: &[(&str, &str)],
) -> &'a prometheus_parse::Sample {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
}

pub(crate) fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    match sample(scrape, name, labels).value {
        prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Untyped(v) => v,
        ref other => panic!("{name}: unexpected value {other:?}"),
    }
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_match_the_document() {
    let h = Harness::start(None).await;
    let dns = h.metrics.runner().check("dns", "tcp#0");
    dns.observe(Duration::from_micros(420), true, None);
    dns.observe(Duration::from_millis(30), true, None);
    h.metrics
        .runner()
        .check("ntp", "http#0")
        .observe(Duration::from_secs(2), false, None);
    for _ in 0..3 {
        h.metrics.update_sent("edge1");
    }
    h.metrics.service_flap("ntp");
    h.metrics.reload(false);

    let (status, headers, body) = h.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = std::str::from_utf8(&body).unwrap();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition");

    assert_eq!(value(&scrape, "anyguard_config_generation", &[]), 3.0);
    assert_eq!(value(&scrape, "anyguard_ready", &[]), 1.0);
    assert_eq!(
        value(&scrape, "anyguard_config_last_reload_successful", &[]),
        0.0
    );
    assert_eq!(
        value(&scrape, "anyguard_state_file_last_write_successful", &[]),
        1.0
    );
    assert_eq!(
        value(
            &scrape,
            "anyguard_info",
            &[("version", "0.1.0"), ("site", "ams1")]
        ),
        1.0
    );
    assert_eq!(
        value(&scrape, "anyguard_service_up", &[("service", "dns")]),
        1.0
    );
    assert_eq!(
        value(&scrape, "anyguard_service_up", &[("service", "ntp")]),
        0.0
    );
    assert_eq!(
        value(&scrape, "anyguard_guard_held", &[("service", "ntp")]),
        1.0
    );
    for (site, mismatch) in [("fra1", 0.0), ("lhr1", 1.0)] {
        assert_eq!(
            value(
                &scrape,
                "anyguard_guard_fleet_digest_mismatch",
                &[("site", site)]
            ),
            mismatch
        );
    }
    let doc = super::fixture::realistic_document();
    let fleet = doc.fleet.as_ref().expect("fixture has a fleet");
    assert_eq!(
        value(
            &scrape,
            "anyguard_guard_fleet_info",
            &[("source", &fleet.source), ("digest", &fleet.digest)]
        ),
        1.0
    );
    assert_eq!(
        value(
            &scrape,
            "anyguard_guard_sites_announcing",
            &[("service", "dns")]
        ),
        2.0
    );
    // The etcd backend of the fixture: backend, health, transactions, per-prefix sites.
    assert_eq!(
        value(
            &scrape,
            "anyguard_guard_fleet_backend",
            &[("backend", "etcd")]
        ),
        1.0
    );
    assert_eq!(value(&scrape, "anyguard_guard_store_connected", &[]), 1.0);
    assert_eq!(
        value(&scrape, "anyguard_guard_store_lease_ttl_seconds", &[]),
        4.0
    );
    assert_eq!(
        value(&scrape, "anyguard_guard_store_revision", &[]),
        18342.0
    );
    assert_eq!(
        value(
            &scrape,
            "anyguard_guard_store_transactions_total",
            &[("kind", "withdraw"), ("result", "conflict")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &scrape,
            "anyguard_guard_store_sites_announcing",
            &[("service", "web"), ("prefix", "203.0.113.0/24")]
        ),
        2.0
    );
    assert_eq!(
        value(
            &scrape,
            "anyguard_service_suppressed",
            &[("service", "ntp")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &scrape,
            "anyguard_service_suppressed",
            &[("service", "dns")]
        ),
        0.0
    );
    // One-hot: exactly one state per service and per peer.
    for (family, key, name, state) in [
        ("anyguard_service_state", "service", "dns", "up"),
        ("anyguard_service_state", "service", "ntp", "held"),
        ("anyguard_peer_state", "peer", "edge1", "established"),
        ("anyguard_peer_state", "peer", "edge2", "active"),
    ] {
        let series: Vec<_> = scrape
            .samples
            .iter()
            .filter(|s| s.metric == family && s.labels.get(key) == Some(name))
            .collect();
        assert_eq!(series.len(), 6, "{family} {name}");
        let hot: Vec<_> = series
            .iter()
            .filter(|s| matches!(s.value, prometheus_parse::Value::Gauge(v) if v == 1.0))
            .map(|s| s.labels.get("state").unwrap_or_default())
            .collect();
        assert_eq!(hot, vec![state], "{family} {name}");
    }
    assert_eq!(
        value(&scrape, "anyguard_bgp_session_up", &[("peer", "edge1")]),
        1.0
    );
    assert_eq!(
        value(&scrape, "anyguard_bgp_session_up", &[("peer", "edge2")]),
        0.0
    );
    assert_eq!(
        value(
            &scrape,
            "anyguard_announced_prefixes",
            &[("peer", "edge1"), ("service", "dns")]
        ),
        2.0
    );
    assert_eq!(
        value(
            &scrape,
            "anyguard_bgp_messages_received_total",
            &[("peer", "edge1"), ("type", "keepalive")]
        ),
        2461.0
    );
    // BFD: edge1 has a session (Up, 300 ms, detection 900 ms), edge2 has none.
    let edge1 = [("peer", "edge1")];
    assert_eq!(value(&scrape, "anyguard_bfd_session_up", &edge1), 1.0);
    assert_eq!(
        value(
            &scrape,
            "anyguard_bfd_state",
            &[("peer", "edge1"), ("state", "up")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &scrape,
            "anyguard_bfd_state",
            &[("peer", "edge1"), ("state", "down")]
        ),
        0.0
    );
    assert_eq!(
        value(&scrape, "anyguard_bfd_tx_interval_seconds", &edge1),
        0.3
    );
    assert_eq!(
        value(&scrape, "anyguard_bfd_detection_time_seconds", &edge1),
        0.9
    );
    assert_eq!(value(&scrape, "anyguard_bfd_diagnostic", &edge1), 0.0);
    assert_eq!(
        value(&scrape, "anyguard_bfd_packets_received_total", &edge1),
        24601.0
    );
    assert_eq!(
        value(&scrape, "anyguard_bfd_packets_sent_total", &edge1),
        24655.0
    );
    assert_eq!(
        value(&scrape, "anyguard_bfd_bad_packets_total", &edge1),
        0.0
    );
    assert_eq!(value(&scrape, "anyguard_bfd_failures_total", &edge1), 0.0);
    assert!(
        !scrape
            .samples
            .iter()
            .any(|s| s.metric.starts_with("anyguard_bfd_") && s.labels.get("peer") == Some("edge2")),
        "no BFD series for a peer without bfd"
    );
    // The BFD task's drops: one series per reason, none per sender.
    let dropped = |reason| {
        value(
            &scrape,
            "anyguard_bfd_dropped_packets_total",
            &[("reason", reason)],
        )
    };
    assert_eq!(dropped("no_session"), 15.0);
    assert_eq!(dropped("ttl"), 2.0);
    assert_eq!(dropped("unknown_discriminator"), 1.0);
    assert_eq!(dropped("wrong_source"), 0.0);
    assert_eq!(
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == "anyguard_bfd_dropped_packets_total")
            .count(),
        5
    );
    assert_eq!(
        value(
            &scrape,
            "anyguard_bgp_prefixes_received",
            &[("peer", "edge1"), ("afi", "ipv4")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &scrape,
            "anyguard_check_up",
            &[("service", "ntp"), ("check", "http#0")]
        ),
        0.0
    );
    assert_eq!(
        value(
            &scrape,
            "anyguard_bgp_updates_sent_total",
            &[("peer", "edge1")]
        ),
        3.0
    );
    assert_eq!(
        value(
            &scrape,
            "anyguard_service_flaps_total",
            &[("service", "ntp")]
        ),
        1.0
    );
    assert_eq!(
        value(&scrape, "anyguard_reloads_total", &[("result", "error")]),
        1.0
    );
    let hist = sample(
        &scrape,
        "anyguard_probe_duration_seconds",
        &[("service", "dns"), ("check", "tcp#0"), ("result", "ok")],
    );
    let prometheus_parse::Value::Histogram(buckets) = &hist.value else {
        panic!("not a histogram: {:?}", hist.value);
    };
    let le = |bound: f64| {
        buckets
            .iter()
            .find(|b| {
                (b.less_than.is_infinite() && bound.is_infinite())
                    || (b.less_than - bound).abs() < 1e-9
            })
            .map(|b| b.count)
            .unwrap()
    };
    assert_eq!(le(0.001), 1.0);
    assert_eq!(le(0.05), 2.0);
    assert_eq!(le(f64::INFINITY), 2.0);
    assert_eq!(
        value(
            &scrape,
            "anyguard_probe_duration_seconds_count",
            &[("service", "ntp"), ("result", "fail")]
        ),
        1.0
    );
    // The exposition follows the snapshot: a state change shows at the next scrape.
    h.status.send_modify(|d| d.peers[0].state = "idle".into());
    let (_, _, body) = h.get("/metrics").await;
    let text = std::str::from_utf8(&body).unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    assert_eq!(
        value(&scrape, "anyguard_bgp_session_up", &[("peer", "edge1")]),
        0.0
    );
    h.stop().await;
}
