//! Runner tests on tokio's paused clock: times are virtual and exact.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::*;
use crate::config::testing::service_config;
use crate::config::CheckKind;
use crate::health::hysteresis::CheckStatus;
use crate::health::same_check;

/// `script(call number) -> (ok, how long the probe takes)`.
type Script = fn(u32) -> (bool, Duration);

/// A probe following a script: `script(call number) -> (ok, how long it takes)`.
struct Scripted {
    calls: Arc<AtomicU32>,
    script: Script,
}

impl Probe for Scripted {
    async fn probe(&self) -> ProbeOutcome {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let (ok, delay) = (self.script)(n);
        tokio::time::sleep(delay).await;
        ProbeOutcome {
            ok,
            latency: delay,
            detail: format!("call {n}"),
        }
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn check(interval: u64, fast: u64, timeout: u64, rise: u32, fall: u32) -> CheckConfig {
    CheckConfig {
        name: "c".into(),
        kind: CheckKind::Command {
            argv: vec!["true".into()],
        },
        interval: ms(interval),
        fast_interval: ms(fast),
        timeout: ms(timeout),
        rise,
        fall,
    }
}

fn service(name: &str, checks: Vec<CheckConfig>) -> ServiceConfig {
    ServiceConfig {
        drain_time: ms(0),
        hold_down: ms(0),
        checks,
        ..service_config(name, &[])
    }
}

const EXACT: RunnerOptions = RunnerOptions {
    splay: false,
    jitter: false,
    seed: Some(1),
    coalesce: false,
};

/// Starts `services` with scripted probes (`scripts[service][check]`).
fn start(
    services: &[ServiceConfig],
    scripts: &[&[Script]],
    options: RunnerOptions,
) -> (
    HealthRunner,
    mpsc::Receiver<CheckEvent>,
    Vec<Arc<AtomicU32>>,
) {
    let (tx, rx) = mpsc::channel(64);
    let mut counters = Vec::new();
    let runner = HealthRunner::start_with(services, tx, options, |s, c, _| {
        let calls = Arc::new(AtomicU32::new(0));
        counters.push(Arc::clone(&calls));
        Ok(Scripted {
            calls,
            script: scripts[s][c],
        })
    })
    .unwrap_or_else(|e| panic!("{e}"));
    (runner, rx, counters)
}

/// Receives `n` events with their virtual time since `t0`.
async fn collect(
    rx: &mut mpsc::Receiver<CheckEvent>,
    t0: Instant,
    n: usize,
) -> Vec<(Duration, CheckEvent)> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        match rx.recv().await {
            Some(e) => out.push((t0.elapsed(), e)),
            None => panic!("event channel closed after {} events", out.len()),
        }
    }
    out
}

#[tokio::test(start_paused = true)]
async fn probes_follow_the_deadline_grid_without_drift() {
    let t0 = Instant::now();
    let (_runner, mut rx, _) = start(
        &[service("s", vec![check(1000, 1000, 500, 1, 1)])],
        &[&[|_| (true, ms(300))]],
        EXACT,
    );
    let times: Vec<Duration> = collect(&mut rx, t0, 4)
        .await
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert_eq!(times, [ms(300), ms(1300), ms(2300), ms(3300)]);
}

#[tokio::test(start_paused = true)]
async fn fast_interval_is_used_while_the_check_is_changing_state() {
    let t0 = Instant::now();
    let (_runner, mut rx, _) = start(
        &[service("s", vec![check(4000, 1000, 500, 3, 2)])],
        &[&[|_| (true, Duration::ZERO)]],
        EXACT,
    );
    let events = collect(&mut rx, t0, 5).await;
    let times: Vec<Duration> = events.iter().map(|(t, _)| *t).collect();
    // Unknown: fast interval until up after the third pass, then the normal interval.
    assert_eq!(times, [ms(0), ms(1000), ms(2000), ms(6000), ms(10000)]);
    let transitions: Vec<Option<Transition>> = events.iter().map(|(_, e)| e.transition).collect();
    assert_eq!(
        transitions,
        [
            None,
            None,
            Some(Transition {
                from: CheckStatus::Unknown,
                to: CheckStatus::Up
            }),
            None,
            None
        ]
    );
    assert_eq!(events[1].1.state.passes, 2);
}

#[tokio::test(start_paused = true)]
async fn failures_switch_to_the_fast_interval_until_the_check_is_down() {
    let t0 = Instant::now();
    // Up after one pass, then failing for good.
    let (_runner, mut rx, _) = start(
        &[service("s", vec![check(4000, 1000, 500, 1, 3)])],
        &[&[|n| (n == 0, Duration::ZERO)]],
        EXACT,
    );
    let events = collect(&mut rx, t0, 6).await;
    let times: Vec<Duration> = events.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        times,
        [ms(0), ms(4000), ms(5000), ms(6000), ms(10000), ms(14000)]
    );
    assert_eq!(
        events[3].1.transition,
        Some(Transition {
            from: CheckStatus::Up,
            to: CheckStatus::Down
        })
    );
}

#[tokio::test(start_paused = true)]
async fn a_hung_probe_fails_at_its_timeout_and_does_not_delay_other_checks() {
    let t0 = Instant::now();
    let (_runner, mut rx, _) = start(
        &[service(
            "s",
            vec![check(1000, 1000, 500, 1, 1), check(1000, 1000, 500, 1, 1)],
        )],
        &[&[
            |_| (true, Duration::from_secs(3600)),
            |_| (true, Duration::ZERO),
        ]],
        EXACT,
    );
    let events = collect(&mut rx, t0, 7).await;
    let hung: Vec<(Duration, bool, &str)> = events
        .iter()
        .filter(|(_, e)| e.check == 0)
        .map(|(t, e)| (*t, e.outcome.ok, e.outcome.detail.as_str()))
        .collect();
    let healthy: Vec<Duration> = events
        .iter()
        .filter(|(_, e)| e.check == 1)
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(
        hung,
        [
            (ms(500), false, "timed out after 500ms"),
            (ms(1500), false, "timed out after 500ms"),
            (ms(2500), false, "timed out after 500ms"),
        ]
    );
    assert_eq!(healthy, [ms(0), ms(1000), ms(2000), ms(3000)]);
}

#[tokio::test(start_paused = true)]
async fn check_now_runs_the_services_checks_at_once_and_restarts_the_schedule() {
    let t0 = Instant::now();
    let (runner, mut rx, _) = start(
        &[
            service("a", vec![check(10_000, 10_000, 500, 1, 1)]),
            service("b", vec![check(10_000, 10_000, 500, 1, 1)]),
        ],
        &[&[|_| (true, Duration::ZERO)], &[|_| (true, Duration::ZERO)]],
        EXACT,
    );
    let first = collect(&mut rx, t0, 2).await;
    assert!(first.iter().all(|(t, _)| *t == ms(0)));
    tokio::time::sleep(ms(2000)).await;
    assert!(runner.check_now_by_name("b"));
    assert!(!runner.check_now_by_name("nope"));
    assert!(!runner.check_now(7));
    let events = collect(&mut rx, t0, 3).await;
    let seen: Vec<(Duration, usize)> = events.iter().map(|(t, e)| (*t, e.service)).collect();
    assert_eq!(seen, [(ms(2000), 1), (ms(10_000), 0), (ms(12_000), 1)]);
}

#[tokio::test(start_paused = true)]
async fn a_request_during_a_probe_runs_right_after_it() {
    let t0 = Instant::now();
    let (runner, mut rx, _) = start(
        &[service("a", vec![check(10_000, 10_000, 5000, 1, 1)])],
        &[&[|_| (true, ms(1000))]],
        EXACT,
    );
    tokio::time::sleep(ms(500)).await;
    assert!(runner.check_now(0));
    let times: Vec<Duration> = collect(&mut rx, t0, 2)
        .await
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert_eq!(times, [ms(1000), ms(2000)]);
}

// Five services, not five checks of one service: the checks of a service share their
// phase (`the_checks_of_a_service_share_a_phase_on_the_grid`).
#[tokio::test(start_paused = true)]
async fn splay_spreads_first_probes_within_the_interval() {
    let t0 = Instant::now();
    let services: Vec<ServiceConfig> = (0..5)
        .map(|i| service(&format!("s{i}"), vec![check(1000, 1000, 500, 1, 1)]))
        .collect();
    let ok: Script = |_| (true, Duration::ZERO);
    let (_runner, mut rx, _) = start(
        &services,
        &[&[ok] as &[Script]; 5],
        RunnerOptions {
            splay: true,
            jitter: false,
            seed: Some(7),
            coalesce: false,
        },
    );
    let events = collect(&mut rx, t0, 5).await;
    let mut firsts: Vec<Duration> = events.iter().map(|(t, _)| *t).collect();
    assert!(firsts.iter().all(|t| *t < ms(1000)), "{firsts:?}");
    firsts.dedup();
    assert!(
        firsts.len() > 1,
        "all first probes at the same time: {firsts:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn jitter_keeps_every_period_within_ten_percent() {
    let t0 = Instant::now();
    let (_runner, mut rx, _) = start(
        &[service("s", vec![check(1000, 1000, 500, 1, 1)])],
        &[&[|_| (true, Duration::ZERO)]],
        // Without the grid: its rounding adds up to a slot to a period (see
        // `coalesced_probes_start_on_the_grid_and_keep_their_interval`).
        RunnerOptions {
            splay: false,
            jitter: true,
            seed: Some(3),
            coalesce: false,
        },
    );
    let times: Vec<Duration> = collect(&mut rx, t0, 10)
        .await
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|g| *g >= ms(900) && *g <= ms(1100)),
        "{gaps:?}"
    );
    assert!(
        gaps.windows(2).any(|w| w[0] != w[1]),
        "no jitter at all: {gaps:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_check_stops_when_the_coordinator_is_gone() {
    let (_runner, rx, counters) = start(
        &[service("s", vec![check(1000, 1000, 500, 1, 1)])],
        &[&[|_| (true, Duration::ZERO)]],
        EXACT,
    );
    drop(rx);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        counters[0].load(Ordering::SeqCst),
        1,
        "one probe, then the send fails"
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_the_runner_stops_every_check() {
    let (runner, mut rx, _) = start(
        &[service(
            "s",
            vec![check(1000, 1000, 500, 1, 1), check(1000, 1000, 500, 1, 1)],
        )],
        &[&[|_| (true, Duration::ZERO), |_| (true, Duration::ZERO)]],
        EXACT,
    );
    drop(runner);
    // Buffered events may still be read, then the channel closes: every sender is gone.
    let mut n = 0;
    while rx.recv().await.is_some() {
        n += 1;
        assert!(n <= 2, "checks kept running after the runner was dropped");
    }
}

#[tokio::test(start_paused = true)]
async fn the_real_probes_are_built_from_the_config() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut c = check(1000, 1000, 500, 1, 1);
    c.kind = CheckKind::File {
        path: dir.path().to_path_buf(),
        invert: false,
    };
    let (tx, mut rx) = mpsc::channel(4);
    let _runner =
        HealthRunner::start(&[service("s", vec![c])], tx, EXACT).unwrap_or_else(|e| panic!("{e}"));
    let e = rx.recv().await.unwrap_or_else(|| panic!("no event"));
    assert!(e.outcome.ok, "{e:?}");
    assert_eq!(
        e.transition,
        Some(Transition {
            from: CheckStatus::Unknown,
            to: CheckStatus::Up
        })
    );
}

#[tokio::test(start_paused = true)]
async fn a_resumed_check_keeps_its_state_across_a_reload() {
    let up = CheckState {
        status: CheckStatus::Up,
        passes: 5,
        failures: 0,
        rise: 2,
        fall: 2,
    };
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut kept = check(4000, 1000, 500, 3, 3);
    kept.name = "kept".into();
    kept.kind = CheckKind::File {
        path: dir.path().to_path_buf(),
        invert: false,
    };
    let mut fresh = kept.clone();
    fresh.name = "fresh".into();
    let old = kept.clone();
    let (tx, mut rx) = mpsc::channel(8);
    let services = [service("s", vec![kept, fresh])];
    let probes = build_probes(&services).unwrap_or_else(|e| panic!("{e}"));
    let _runner = HealthRunner::start_built(&services, probes, tx, EXACT, |_, c| {
        same_check(&old, c).then_some(up)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let mut first = collect(&mut rx, Instant::now(), 2).await;
    first.sort_by_key(|(_, e)| e.check);
    let kept_event = &first[0].1;
    assert_eq!(kept_event.state.status, CheckStatus::Up, "{kept_event:?}");
    assert_eq!((kept_event.state.passes, kept_event.state.rise), (6, 3));
    assert_eq!(kept_event.transition, None);
    let fresh_event = &first[1].1;
    assert_eq!(
        fresh_event.state.status,
        CheckStatus::Unknown,
        "{fresh_event:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_recording_sink_records_every_result_in_place_and_sends_only_the_state_changes() {
    use crate::status::metrics::Metrics;
    use crate::status::model::{CheckStatus as Entry, LiveCheck, StatusDocument};

    // rise = fall = 2: pass, pass (→ up), pass, fail, fail (→ down), fail.
    let services = [service("s", vec![check(100, 100, 50, 2, 2)])];
    let (changes_tx, mut changes) = mpsc::channel(64);
    let live = LiveCheck::new(10);
    let metrics = Metrics::new(tokio::sync::watch::channel(StatusDocument::default()).1);
    let recorder = ResultRecorder::new(&services, vec![vec![live.clone()]], &metrics);
    let script: Script = |n| (n < 3, ms(1));
    let _runner = HealthRunner::start_with(
        &services,
        CheckSink::recording(changes_tx, recorder),
        EXACT,
        move |_, _, _| {
            Ok(Scripted {
                calls: Arc::new(AtomicU32::new(0)),
                script,
            })
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let changed = collect(&mut changes, Instant::now(), 2).await;
    let to: Vec<CheckStatus> = changed
        .iter()
        .map(|(_, e)| {
            e.transition
                .map(|t| t.to)
                .unwrap_or_else(|| panic!("{e:?}"))
        })
        .collect();
    assert_eq!(to, [CheckStatus::Up, CheckStatus::Down]);
    // The sixth result (virtual time: one interval after the fifth).
    let mut entry = Entry {
        live,
        ..Entry::default()
    };
    for _ in 0..50 {
        entry.copy_live();
        if entry.last_results.len() + entry.older_results.len() >= 6 {
            break;
        }
        tokio::time::sleep(ms(10)).await;
    }
    // Every result recorded, newest first, with the counters after the newest; none but
    // the two changes sent.
    let details: Vec<&str> = entry
        .last_results
        .iter()
        .chain(&entry.older_results)
        .map(|r| r.detail.as_str())
        .collect();
    assert_eq!(
        details,
        ["call 5", "call 4", "call 3", "call 2", "call 1", "call 0"]
    );
    assert_eq!((entry.rise_count, entry.fall_count), (0, 3));
    assert!(changes.try_recv().is_err(), "a routine result was sent");
    let text = metrics.encode().unwrap_or_else(|e| panic!("{e}"));
    for line in [
        r#"anyguard_probe_duration_seconds_count{service="s",check="c",result="ok"} 3"#,
        r#"anyguard_probe_duration_seconds_count{service="s",check="c",result="fail"} 3"#,
        "anyguard_probe_start_delay_seconds_count 6",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_recording_check_stops_once_the_coordinator_is_gone() {
    let services = [service("s", vec![check(100, 100, 50, 1, 1)])];
    let (changes_tx, changes) = mpsc::channel(64);
    let metrics = crate::status::metrics::Metrics::new(
        tokio::sync::watch::channel(crate::status::model::StatusDocument::default()).1,
    );
    let recorder = ResultRecorder::new(&services, Vec::new(), &metrics);
    let calls = Arc::new(AtomicU32::new(0));
    let probe_calls = Arc::clone(&calls);
    let runner = HealthRunner::start_with(
        &services,
        CheckSink::recording(changes_tx, recorder),
        EXACT,
        move |_, _, _| {
            Ok(Scripted {
                calls: Arc::clone(&probe_calls),
                script: |_| (true, ms(1)),
            })
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(ms(250)).await;
    drop(changes);
    tokio::time::sleep(ms(250)).await;
    let after = calls.load(Ordering::SeqCst);
    tokio::time::sleep(ms(1000)).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        after,
        "the check went on probing for nobody"
    );
    drop(runner);
}

/// Ten services with an HTTP-like and a TCP-like check each at 1 s (20 checks a second,
/// a 256 ms grid: `health::schedule`), every probe passing at once; their first `n`
/// results with their virtual times.
async fn ten_services(options: RunnerOptions, n: usize) -> Vec<(Duration, CheckEvent)> {
    let t0 = Instant::now();
    let services: Vec<ServiceConfig> = (0..10)
        .map(|i| {
            service(
                &format!("s{i}"),
                vec![check(1000, 500, 400, 1, 1), check(1000, 500, 400, 1, 1)],
            )
        })
        .collect();
    let ok: Script = |_| (true, Duration::ZERO);
    let (_runner, mut rx, _) = start(&services, &[&[ok, ok] as &[Script]; 10], options);
    collect(&mut rx, t0, n).await
}

#[tokio::test(start_paused = true)]
async fn the_checks_of_a_service_share_a_phase_on_the_grid() {
    let options = RunnerOptions {
        seed: Some(11),
        ..RunnerOptions::default()
    };
    let events = ten_services(options, 200).await;
    let slot = ms(256);
    let mut times: Vec<Duration> = events.iter().map(|(t, _)| *t).collect();
    assert!(
        times.iter().all(|t| t.as_nanos() % slot.as_nanos() == 0),
        "a probe off the {slot:?} grid: {times:?}"
    );
    // Both checks of a service probe at the same instants.
    for s in 0..10 {
        let of = |c: usize| -> Vec<Duration> {
            events
                .iter()
                .filter(|(_, e)| e.service == s && e.check == c)
                .map(|(t, _)| *t)
                .collect()
        };
        let (a, b) = (of(0), of(1));
        let n = a.len().min(b.len());
        assert!(n >= 5, "service {s}: {a:?} {b:?}");
        assert_eq!(a[..n], b[..n], "service {s}");
    }
    // 200 checks (100 probes of a service's pair) started in far fewer wakes.
    times.dedup();
    assert!(
        times.len() <= 200 / 3,
        "{} distinct start times",
        times.len()
    );
    // Every probe started at its due time (the grid point): no lateness on this clock.
    assert!(
        events
            .iter()
            .all(|(_, e)| e.start_delay == Some(Duration::ZERO)),
        "{:?}",
        events
            .iter()
            .map(|(_, e)| e.start_delay)
            .collect::<Vec<_>>()
    );
}

#[tokio::test(start_paused = true)]
async fn coalesced_probes_start_on_the_grid_and_keep_their_interval() {
    // Splay, no jitter: every due time within half a slot (128 ms) of the check's ideal
    // deadline `first + k × 1 s`, so the rounding never accumulates.
    let options = RunnerOptions {
        jitter: false,
        seed: Some(5),
        ..RunnerOptions::default()
    };
    let events = ten_services(options, 20 * 30).await;
    for s in 0..10 {
        let times: Vec<Duration> = events
            .iter()
            .filter(|(_, e)| e.service == s && e.check == 0)
            .map(|(t, _)| *t)
            .collect();
        assert!(times.len() >= 25, "service {s}: {times:?}");
        let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(
            gaps.iter()
                .all(|g| *g >= ms(1000 - 256) && *g <= ms(1000 + 256)),
            "service {s}: {gaps:?}"
        );
        // The last start as far from the first as the interval says, within a slot.
        let span = times[times.len() - 1] - times[0];
        let want = ms(1000) * u32::try_from(times.len() - 1).unwrap_or(0);
        let off = span.abs_diff(want);
        assert!(off <= ms(256), "service {s}: {span:?} for {want:?}");
    }
}

/// A probe whose first poll blocks its thread (no await) until the test lets it finish,
/// then fails: a check task in the middle of finishing a probe on its thread, which an
/// abort cannot stop (it takes effect at the task's next await).
struct FinishingWhenStopped {
    entered: std::sync::mpsc::SyncSender<()>,
    finish: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl Probe for FinishingWhenStopped {
    async fn probe(&self) -> ProbeOutcome {
        let _ = self.entered.send(());
        if let Ok(finish) = self.finish.lock() {
            let _ = finish.recv_timeout(Duration::from_secs(10));
        }
        ProbeOutcome {
            ok: false,
            latency: ms(1),
            detail: "late".into(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_finished_after_its_runner_is_stopped_creates_no_series_and_no_record() {
    use crate::status::metrics::Metrics;
    use crate::status::model::{LiveCheck, StatusDocument};

    let mut gone = check(1000, 1000, 500, 1, 1);
    gone.name = "gone".into();
    let services = [service("s", vec![gone])];
    let metrics = Metrics::new(tokio::sync::watch::channel(StatusDocument::default()).1);
    let live = LiveCheck::new(10);
    let recorder = ResultRecorder::new(&services, vec![vec![live.clone()]], &metrics);
    let (changes_tx, mut changes) = mpsc::channel(4);
    let (entered_tx, entered) = std::sync::mpsc::sync_channel(1);
    let (finish, finish_rx) = std::sync::mpsc::channel();
    let mut probe = Some(FinishingWhenStopped {
        entered: entered_tx,
        finish: std::sync::Mutex::new(finish_rx),
    });
    let runner = HealthRunner::start_with(
        &services,
        CheckSink::recording(changes_tx, recorder),
        EXACT,
        move |_, _, check| {
            probe.take().ok_or_else(|| ProbeError::BadDnsQuery {
                check: check.name.clone(),
                reason: "one probe only".into(),
            })
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // The probe is running (its task in the middle of a poll on a worker thread).
    entered
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("the probe never started: {e}"));
    // A reload removes the check: the runner is stopped, then the series of the checks
    // that are gone are dropped (`Shell::reload_read`).
    drop(runner);
    metrics.retain_checks([]);
    // The probe finishes now, in the same poll: its task records, then sends the
    // transition (unknown → down), which tells the test the result went through.
    let _ = finish.send(());
    let late = tokio::time::timeout(Duration::from_secs(10), changes.recv())
        .await
        .unwrap_or_else(|_| panic!("the late result never came"));
    assert_eq!(late.map(|e| e.outcome.detail), Some("late".to_string()));
    let text = metrics.encode().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !text.contains(r#"check="gone""#),
        "a removed check's series came back:\n{text}"
    );
    let mut entry = crate::status::model::CheckStatus {
        live,
        ..crate::status::model::CheckStatus::default()
    };
    entry.copy_live();
    assert!(
        entry.last_results.is_empty() && entry.older_results.is_empty(),
        "recorded after its runner stopped: {:?}",
        entry.last_results
    );
}
