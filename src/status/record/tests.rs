use std::time::Duration;

use tokio::sync::watch;

use super::*;
use crate::config::testing::service_config;
use crate::config::{CheckConfig, CheckKind};
use crate::health::{next_seq, CheckState, CheckStatus, ProbeOutcome, Transition};
use crate::status::model::{CheckStatus as Entry, StatusDocument};

fn check(name: &str) -> CheckConfig {
    CheckConfig {
        name: name.into(),
        kind: CheckKind::Command {
            argv: vec!["true".into()],
        },
        interval: Duration::from_secs(1),
        fast_interval: Duration::from_secs(1),
        timeout: Duration::from_millis(500),
        rise: 2,
        fall: 2,
    }
}

fn services() -> Vec<ServiceConfig> {
    let mut web = service_config("web", &[]);
    web.checks = vec![check("http"), check("tcp")];
    vec![web]
}

fn metrics() -> Metrics {
    Metrics::new(watch::channel(StatusDocument::default()).1)
}

/// A result of check `check` of service 0 with the counters after it.
fn result(check: usize, ok: bool, passes: u32, failures: u32, detail: &str) -> CheckEvent {
    CheckEvent {
        service: 0,
        check,
        outcome: ProbeOutcome {
            ok,
            latency: Duration::from_millis(3),
            detail: detail.into(),
        },
        state: CheckState {
            status: CheckStatus::Up,
            passes,
            failures,
            rise: 2,
            fall: 2,
        },
        transition: None,
        start_delay: Some(Duration::from_micros(200)),
        seq: next_seq(),
    }
}

/// What `/status` shows of `live`: counters, then every kept result's detail, newest first.
fn shown(live: &LiveCheck) -> (u32, u32, Vec<String>) {
    let mut entry = Entry {
        live: live.clone(),
        ..Entry::default()
    };
    entry.copy_live();
    let details = entry
        .last_results
        .iter()
        .chain(&entry.older_results)
        .map(|r| r.detail.clone())
        .collect();
    (entry.rise_count, entry.fall_count, details)
}

/// The samples of `text` whose line starts with `prefix`, sorted (a family's series come
/// in no particular order).
fn samples<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    let mut lines: Vec<&str> = text.lines().filter(|l| l.starts_with(prefix)).collect();
    lines.sort_unstable();
    lines
}

#[test]
fn results_are_recorded_in_their_checks_record_and_metrics_newest_first() {
    let m = metrics();
    let (http, tcp) = (LiveCheck::new(RESULTS_KEPT), LiveCheck::new(RESULTS_KEPT));
    let recorder = ResultRecorder::new(&services(), vec![vec![http.clone(), tcp.clone()]], &m);
    let at = SystemTime::UNIX_EPOCH;
    assert!(recorder.record(&result(0, true, 5, 0, "200 a"), at));
    assert!(recorder.record(&result(0, false, 0, 1, "503"), at));
    assert!(recorder.record(&result(1, true, 9, 0, "connected"), at));

    assert_eq!(shown(&http), (0, 1, vec!["503".into(), "200 a".into()]));
    assert_eq!(shown(&tcp), (9, 0, vec!["connected".into()]));
    let text = m.encode().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        samples(&text, "anyguard_probe_duration_seconds_count"),
        [
            r#"anyguard_probe_duration_seconds_count{service="web",check="http",result="fail"} 1"#,
            r#"anyguard_probe_duration_seconds_count{service="web",check="http",result="ok"} 1"#,
            r#"anyguard_probe_duration_seconds_count{service="web",check="tcp",result="ok"} 1"#,
        ]
    );
    assert_eq!(
        samples(&text, "anyguard_probe_start_delay_seconds_count"),
        ["anyguard_probe_start_delay_seconds_count 3"]
    );
}

#[test]
fn only_the_newest_results_are_kept_each_written_over_the_oldest() {
    let live = LiveCheck::new(RESULTS_KEPT);
    let recorder = ResultRecorder::new(&services(), vec![vec![live.clone()]], &metrics());
    for n in 0..RESULTS_KEPT + 5 {
        let detail = format!("call {n}");
        recorder.record(&result(0, true, 1, 0, &detail), SystemTime::now());
    }
    // The oldest entries are written over in place: what shows is the newest, in order.
    let (_, _, details) = shown(&live);
    let newest: Vec<String> = (5..RESULTS_KEPT + 5)
        .rev()
        .map(|n| format!("call {n}"))
        .collect();
    assert_eq!(details, newest);
}

#[test]
fn a_result_is_recorded_once_and_never_after_a_newer_one() {
    let m = metrics();
    let live = LiveCheck::new(RESULTS_KEPT);
    let recorder = ResultRecorder::new(&services(), vec![vec![live.clone()]], &m);
    let at = SystemTime::UNIX_EPOCH;
    let older = result(0, true, 3, 0, "older");
    let mut change = result(0, false, 0, 2, "down");
    change.transition = Some(Transition {
        from: CheckStatus::Up,
        to: CheckStatus::Down,
    });
    assert!(recorder.record(&change, at));
    // The same state change once more (as the coordinator would take it in), and a result
    // sent before it that it overtook: neither is recorded again.
    assert!(!recorder.record(&change, at));
    assert!(!recorder.record(&older, at));
    assert_eq!(shown(&live), (0, 2, vec!["down".into()]));
    let text = m.encode().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        samples(&text, "anyguard_probe_duration_seconds_count"),
        [r#"anyguard_probe_duration_seconds_count{service="web",check="http",result="fail"} 1"#]
    );
}

#[test]
fn a_result_of_a_check_the_recorder_does_not_have_records_nothing() {
    let m = metrics();
    let recorder = ResultRecorder::new(&services(), vec![vec![LiveCheck::new(RESULTS_KEPT)]], &m);
    let mut stray = result(0, true, 1, 0, "x");
    stray.check = 2;
    assert!(!recorder.record(&stray, SystemTime::now()));
    stray.service = 1;
    stray.check = 0;
    assert!(!recorder.record(&stray, SystemTime::now()));
    // Nor does a check given no record (tcp).
    assert!(!recorder.record(&result(1, true, 1, 0, "y"), SystemTime::now()));
    let text = m.encode().unwrap_or_else(|e| panic!("{e}"));
    assert!(samples(&text, "anyguard_probe_duration_seconds_count").is_empty());
}

#[test]
fn a_forked_record_starts_as_a_copy_and_then_goes_its_own_way() {
    let old = LiveCheck::new(RESULTS_KEPT);
    let recorder = ResultRecorder::new(&services(), vec![vec![old.clone()]], &metrics());
    let at = SystemTime::UNIX_EPOCH;
    recorder.record(&result(0, true, 7, 0, "before"), at);
    let (new, counters) = old.fork(RESULTS_KEPT);
    assert_eq!(counters, (7, 0));
    assert_ne!(new, old, "another record");
    // The old runner's late result stays in the old record.
    recorder.record(&result(0, false, 0, 1, "late"), at);
    assert_eq!(shown(&new), (7, 0, vec!["before".into()]));
    assert_eq!(shown(&old).2, ["late", "before"]);
    // The new runner's results go on from the copy.
    let renewed = ResultRecorder::new(&services(), vec![vec![new.clone()]], &metrics());
    renewed.record(&result(0, true, 8, 0, "after"), at);
    assert_eq!(shown(&new), (8, 0, vec!["after".into(), "before".into()]));
}
