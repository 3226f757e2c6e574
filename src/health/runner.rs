//! The check runner: one tokio task per check, results as [`CheckEvent`]s. In the daemon
//! the tasks run on its probe thread ([`super::probe_threads`]), elsewhere on the
//! current runtime.
//!
//! ```text
//!  check task (service 0, check 0) ──┐  every result ──▶ recorded in place (/status, /metrics)
//!  check task (service 0, check 1) ──┼── (CheckSink)
//!  check task (service 1, check 0) ──┘  results with a transition ──▶ coordinator
//!        ▲ Notify per check: HealthRunner::check_now(service)
//! ```
//!
//! In the daemon ([`CheckSink::recording`]) each task records its results itself, where
//! `/status` and `/metrics` read them (`status::record`), and sends only the results that
//! change its check's state: the coordinator is woken by nothing else from the checks,
//! and a state change never queues behind results that change nothing (issue 13). A
//! plain channel (`From<mpsc::Sender>`) gets every result. Every event carries a sequence
//! number ([`CheckEvent::seq`], rising across every check and runner of the process), so
//! a result is recorded once, and an older one overtaken by a newer one of its check can
//! be recognised and left out.
//!
//! Scheduling, per check:
//! - **splay**: the first probe runs at a random offset within the interval, so checks do
//!   not fire in lock-step after a start;
//! - **jitter**: every period is scaled by a random factor in [0.9, 1.1];
//! - **fast interval** while the check is changing state (still unknown, or counting
//!   towards the other state), the normal interval otherwise;
//! - **no drift**: the next deadline is the previous *deadline* plus the period, not the
//!   end of the probe plus the period; when a probe overran the next deadline, the next
//!   probe starts at once and the schedule goes on from there (tokio's
//!   `MissedTickBehavior::Delay`: no burst of catch-up probes), back onto the service's
//!   phase within a few periods;
//! - **timeout**: a probe still running at its timeout is dropped and counts as failed.
//!   Each check has its own task, so a hung probe never delays another check;
//! - **wake coalescing** ([`super::schedule`]): the deadlines above are the *ideal*
//!   schedule; a probe starts at the point of a slot grid nearest to its ideal deadline
//!   (its due time, which the start delay is measured from), so checks due within one
//!   slot start in one wake of their probe thread. The checks of a service share their
//!   thread and, at one interval, their ideal deadlines (the service's *phase*: the same
//!   splay and jitter draws), so they are due together; a check that left the phase (fast
//!   interval, manual probe, overrun) rejoins it within the jitter's range
//!   ([`schedule::CheckSchedule`]).
//!
//! A request to check now (operator's `POST /services/{name}/check`) wakes every check of
//! the service through its [`Notify`]; a request arriving during a probe is kept and runs
//! right after it. The schedule then restarts from the manual probe.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};
use tracing::level_filters::LevelFilter;
use tracing::{debug, info, Instrument, Span};

use crate::config::{CheckConfig, ServiceConfig};
use crate::status::logging::check_span;
use crate::status::record::ResultRecorder;

use super::hysteresis::{CheckState, Hysteresis, Transition};
use super::probe::{AnyProbe, Probe, ProbeError, ProbeOutcome};
use super::schedule;

/// Extra time a self-timed probe (command) gets to kill and reap before the runner gives
/// up on it.
const KILL_GRACE: Duration = Duration::from_secs(1);

/// One probe result, sent to the coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckEvent {
    /// Index of the service in `Config::services`.
    pub service: usize,
    /// Index of the check in `ServiceConfig::checks`.
    pub check: usize,
    /// The probe's result.
    pub outcome: ProbeOutcome,
    /// The check's state after this result.
    pub state: CheckState,
    /// The change this result caused, if any.
    pub transition: Option<Transition>,
    /// How late the probe started after its due time (scheduling delay under load);
    /// `None` for a probe started on request (`POST /services/{name}/check`).
    pub start_delay: Option<Duration>,
    /// Order of the results: greater for a later result of the same check (from one
    /// counter for the whole process, so it keeps rising across a reload's new runner).
    pub seq: u64,
}

/// The sequence numbers of [`CheckEvent::seq`] (0 is never handed out).
static NEXT_SEQ: AtomicU64 = AtomicU64::new(1);

/// The next [`CheckEvent::seq`].
pub fn next_seq() -> u64 {
    NEXT_SEQ.fetch_add(1, Ordering::Relaxed)
}

/// Where the check tasks put their results: every one on one channel, or
/// ([`CheckSink::recording`]) each recorded by its task and only state changes sent.
#[derive(Debug, Clone)]
pub struct CheckSink {
    events: mpsc::Sender<CheckEvent>,
    recorder: Option<Arc<ResultRecorder>>,
}

impl CheckSink {
    /// Every result recorded by its check's task through `recorder` (its check's
    /// `/status` record and metrics, in place); only a result with a transition is sent
    /// on `changes`, so that the coordinator is woken only by what can change something
    /// (issue 13).
    pub fn recording(changes: mpsc::Sender<CheckEvent>, recorder: ResultRecorder) -> Self {
        CheckSink {
            events: changes,
            recorder: Some(Arc::new(recorder)),
        }
    }

    async fn send(&self, event: CheckEvent) -> Result<(), mpsc::error::SendError<CheckEvent>> {
        if let Some(recorder) = &self.recorder {
            // A state change too is recorded here, before it is sent: a routine result
            // after it, recorded at once, must not come first in the history.
            recorder.record(&event, std::time::SystemTime::now());
            if event.transition.is_none() {
                // Nothing the coordinator decides from: recorded, and that is all (while
                // the coordinator runs: the check stops with it, as when it sends).
                if self.events.is_closed() {
                    return Err(mpsc::error::SendError(event));
                }
                return Ok(());
            }
        }
        self.events.send(event).await
    }
}

impl From<mpsc::Sender<CheckEvent>> for CheckSink {
    fn from(events: mpsc::Sender<CheckEvent>) -> Self {
        CheckSink {
            events,
            recorder: None,
        }
    }
}

/// Scheduling options; the defaults are what the daemon uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunnerOptions {
    /// Random first-probe offset within the interval.
    pub splay: bool,
    /// ±10 % random period variation.
    pub jitter: bool,
    /// Seed for splay and jitter (reproducible runs); from the OS if `None`.
    pub seed: Option<u64>,
    /// Probe wake coalescing: probes start on the points of a slot grid nearest to their
    /// deadlines, so checks due within one slot share a wake ([`super::schedule`]).
    pub coalesce: bool,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            splay: true,
            jitter: true,
            seed: None,
            coalesce: true,
        }
    }
}

/// The running checks. Dropping it stops every check task.
#[derive(Debug)]
pub struct HealthRunner {
    services: Vec<ServiceTasks>,
    /// The recorder of a recording sink, retired once the tasks are aborted.
    recorder: Option<Arc<ResultRecorder>>,
}

#[derive(Debug)]
struct ServiceTasks {
    name: String,
    checks: Vec<CheckTask>,
}

/// Every check's probe, per service, in config order. Blocking: an HTTPS check reads its
/// `ca_file` or the system's trust store.
pub fn build_probes(services: &[ServiceConfig]) -> Result<Vec<Vec<AnyProbe>>, ProbeError> {
    services
        .iter()
        .map(|s| s.checks.iter().map(AnyProbe::from_check).collect())
        .collect()
}

#[derive(Debug)]
struct CheckTask {
    trigger: Arc<Notify>,
    task: JoinHandle<()>,
}

impl HealthRunner {
    /// Starts one task per configured check, with the real probes. Must be called from
    /// within a tokio runtime.
    pub fn start(
        services: &[ServiceConfig],
        events: impl Into<CheckSink>,
        options: RunnerOptions,
    ) -> Result<Self, ProbeError> {
        Self::start_with(services, events, options, |_, _, check| {
            AnyProbe::from_check(check)
        })
    }

    /// Starts after a configuration reload: checks for which `previous(service, check)`
    /// returns a state continue from it (see [`Hysteresis::resume`]) instead of starting
    /// unknown, so a reload does not withdraw healthy services. The caller (the
    /// coordinator, which keeps the last [`CheckEvent`] of every check) decides which checks
    /// are the same; [`same_check`] is the recommended rule. Use a fresh event channel
    /// and drop the old runner, so that no event of the old numbering is mistaken for one
    /// of the new.
    ///
    /// `probes` are what [`build_probes`] made of `services` (a reload builds them off the
    /// coordinator loop: building reads TLS trust stores); a service or check `probes`
    /// lacks gets its probe built here.
    pub fn start_built<R>(
        services: &[ServiceConfig],
        probes: Vec<Vec<AnyProbe>>,
        events: impl Into<CheckSink>,
        options: RunnerOptions,
        previous: R,
    ) -> Result<Self, ProbeError>
    where
        R: FnMut(&ServiceConfig, &CheckConfig) -> Option<CheckState>,
    {
        let mut probes: Vec<_> = probes.into_iter().map(Vec::into_iter).collect();
        let take = move |si: usize, _: usize, check: &CheckConfig| match probes
            .get_mut(si)
            .and_then(Iterator::next)
        {
            Some(probe) => Ok(probe),
            None => AnyProbe::from_check(check),
        };
        Self::spawn_all(services, events, options, take, previous)
    }

    /// Like [`HealthRunner::start`] with probes from `make_probe(service, check, config)`
    /// (tests inject scripted probes here).
    pub fn start_with<P, F>(
        services: &[ServiceConfig],
        events: impl Into<CheckSink>,
        options: RunnerOptions,
        make_probe: F,
    ) -> Result<Self, ProbeError>
    where
        P: Probe,
        F: FnMut(usize, usize, &CheckConfig) -> Result<P, ProbeError>,
    {
        Self::spawn_all(services, events, options, make_probe, |_, _| None)
    }

    fn spawn_all<P, F, R>(
        services: &[ServiceConfig],
        events: impl Into<CheckSink>,
        options: RunnerOptions,
        mut make_probe: F,
        mut previous: R,
    ) -> Result<Self, ProbeError>
    where
        P: Probe,
        F: FnMut(usize, usize, &CheckConfig) -> Result<P, ProbeError>,
        R: FnMut(&ServiceConfig, &CheckConfig) -> Option<CheckState>,
    {
        let events = events.into();
        // Build every probe first, so that an error starts nothing.
        let mut probes = Vec::with_capacity(services.len());
        for (si, service) in services.iter().enumerate() {
            let built: Result<Vec<P>, ProbeError> = service
                .checks
                .iter()
                .enumerate()
                .map(|(ci, check)| make_probe(si, ci, check))
                .collect();
            probes.push(built?);
        }
        let mut seeds = match options.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_entropy(),
        };
        let plan = ThreadPlan::new(services, options, super::probe_threads::installed());
        let mut tasks = Vec::with_capacity(services.len());
        for (si, (service, service_probes)) in services.iter().zip(probes).enumerate() {
            let mut checks = Vec::with_capacity(service_probes.len());
            // The checks of a service share a phase: the same splay and the same jitter
            // draws, so while they run at the same period they are due in the same slot
            // (one wake for the service, not one per check), and a check that left it
            // can find it again (`schedule::CheckSchedule`).
            let service_seed: u64 = seeds.gen();
            let (thread, grid) = plan.service(si);
            for (ci, (check, probe)) in service.checks.iter().zip(service_probes).enumerate() {
                let trigger = Arc::new(Notify::new());
                let span = check_span(&service.name, &check.name);
                let ctx = CheckContext {
                    service: si,
                    check: ci,
                    timing: Timing::from(check),
                    resume: previous(service, check),
                    options,
                    seed: service_seed,
                    grid,
                    trigger: Arc::clone(&trigger),
                    events: events.clone(),
                    span,
                };
                let task = super::probe_threads::spawn_on(thread, run_check(ctx, probe));
                checks.push(CheckTask { trigger, task });
            }
            tasks.push(ServiceTasks {
                name: service.name.clone(),
                checks,
            });
        }
        Ok(HealthRunner {
            services: tasks,
            recorder: events.recorder.clone(),
        })
    }

    /// Runs every check of service `service` now; false if there is no such service.
    pub fn check_now(&self, service: usize) -> bool {
        let Some(s) = self.services.get(service) else {
            return false;
        };
        for c in &s.checks {
            c.trigger.notify_one();
        }
        true
    }

    /// [`HealthRunner::check_now`] by service name.
    pub fn check_now_by_name(&self, name: &str) -> bool {
        match self.services.iter().position(|s| s.name == name) {
            Some(i) => self.check_now(i),
            None => false,
        }
    }

    /// Stops every check task.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for HealthRunner {
    fn drop(&mut self) {
        for c in self.services.iter().flat_map(|s| &s.checks) {
            c.task.abort();
        }
        // A task in the middle of a poll on its probe thread is aborted only at its next
        // await: the result it is finishing would still be recorded, and could create the
        // metrics series of a check the reload that stops this runner removes
        // (`status::record`). From here on it records nothing.
        if let Some(recorder) = &self.recorder {
            recorder.retire();
        }
    }
}

/// Whether a reloaded check is the same check as before, so its state may carry over: same
/// name and same probe target (timing, rise and fall may change).
pub fn same_check(old: &CheckConfig, new: &CheckConfig) -> bool {
    old.name == new.name && old.kind == new.kind
}

/// A check's timing parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Timing {
    interval: Duration,
    fast_interval: Duration,
    timeout: Duration,
    rise: u32,
    fall: u32,
}

impl From<&CheckConfig> for Timing {
    fn from(c: &CheckConfig) -> Self {
        Timing {
            interval: c.interval,
            fast_interval: c.fast_interval,
            timeout: c.timeout,
            rise: c.rise,
            fall: c.fall,
        }
    }
}

/// Which probe thread runs a service's checks, and the grid their due times fall on
/// ([`super::schedule`]): as few threads as the configured load needs, the services
/// round-robin over them, a slot as wide as the rate of the service's thread asks for.
struct ThreadPlan {
    epoch: Instant,
    /// The grid's base slot per thread (zero: no coalescing).
    slots: Vec<Duration>,
}

impl ThreadPlan {
    fn new(services: &[ServiceConfig], options: RunnerOptions, installed: usize) -> Self {
        let checks = || services.iter().flat_map(|s| &s.checks);
        let load = checks().map(schedule::check_load).sum();
        let threads = schedule::probe_threads_for(load, installed);
        let mut rates = vec![0.0; threads];
        for (si, service) in services.iter().enumerate() {
            rates[si % threads] += service
                .checks
                .iter()
                .map(schedule::checks_per_second)
                .sum::<f64>();
        }
        let slots = rates
            .into_iter()
            .map(|rate| {
                if options.coalesce {
                    schedule::base_slot(rate)
                } else {
                    Duration::ZERO
                }
            })
            .collect();
        ThreadPlan {
            epoch: Instant::now(),
            slots,
        }
    }

    /// Service `si`'s thread and grid.
    fn service(&self, si: usize) -> (usize, Grid) {
        let thread = si % self.slots.len().max(1);
        let base = self.slots.get(thread).copied().unwrap_or_default();
        (
            thread,
            Grid {
                epoch: self.epoch,
                base,
            },
        )
    }
}

/// The slot grid of a check's due times ([`super::schedule`]).
#[derive(Debug, Clone, Copy)]
struct Grid {
    epoch: Instant,
    /// The thread's slot; zero without coalescing (due times are the ideal deadlines).
    base: Duration,
}

impl Grid {
    /// The due time of a probe ideally at `ideal`, scheduled at the nominal interval
    /// `interval` (the slot depends on it, not on the jittered period, so that the checks
    /// on one ideal deadline share its due time).
    fn due(&self, ideal: Instant, now: Instant, interval: Duration) -> Instant {
        schedule::due(
            self.epoch,
            ideal,
            now,
            schedule::slot_for(self.base, interval),
        )
    }
}

struct CheckContext {
    service: usize,
    check: usize,
    timing: Timing,
    resume: Option<CheckState>,
    options: RunnerOptions,
    /// The service's seed for splay and jitter (`schedule::CheckSchedule`).
    seed: u64,
    grid: Grid,
    trigger: Arc<Notify>,
    events: CheckSink,
    /// The check's span (`service = …, check = …`): entered for its log lines and around
    /// a probe that may log, not at every poll of the task ([`debug_possible`]).
    span: Span,
}

/// Whether a debug event can be enabled anywhere (the filter's most verbose level: a
/// global read). The runner's per-result debug line and the detail copied for it are only
/// worth entering the check's span for when it can.
fn debug_possible() -> bool {
    LevelFilter::current() >= LevelFilter::DEBUG
}

/// Runs a probe under the check's timeout; a probe still running then has failed.
async fn run_probe<P: Probe>(probe: &P, timeout: Duration) -> ProbeOutcome {
    let limit = if probe.enforces_timeout() {
        timeout + KILL_GRACE
    } else {
        timeout
    };
    match tokio::time::timeout(limit, probe.probe()).await {
        Ok(outcome) => outcome,
        Err(_) => ProbeOutcome::timed_out(timeout),
    }
}

async fn run_check<P: Probe>(ctx: CheckContext, probe: P) {
    let t = ctx.timing;
    let mut hysteresis = match ctx.resume {
        Some(state) => Hysteresis::resume(t.rise, t.fall, state),
        None => Hysteresis::new(t.rise, t.fall),
    };
    let start = Instant::now();
    // `schedule` holds the ideal deadlines (splay, jitter, no drift, the service's
    // phase); `deadline` is the due time the grid gives the current one, which the probe
    // waits for and its start delay is measured from.
    let mut schedule = schedule::CheckSchedule::new(
        start,
        ctx.seed,
        t.interval,
        t.fast_interval,
        ctx.options.splay,
        ctx.options.jitter,
    );
    let mut deadline = ctx.grid.due(schedule.ideal(), start, t.interval);
    // One wait for a request to check now, kept across the probes until a request comes:
    // not a new waiter put on the `Notify`'s list and taken off again at every result
    // (a lock each way, issue 13). A request during a probe completes it, and the next
    // probe runs right after, as a stored permit made it do.
    let trigger = Arc::clone(&ctx.trigger);
    let mut request = std::pin::pin!(trigger.notified());
    loop {
        let manual = tokio::select! {
            () = sleep_until(deadline) => false,
            () = request.as_mut() => true,
        };
        if manual {
            request.set(trigger.notified());
        }
        let started = Instant::now();
        let start_delay = (!manual).then(|| started.saturating_duration_since(deadline));
        let outcome = if probe.quiet() {
            run_probe(&probe, t.timeout).await
        } else {
            run_probe(&probe, t.timeout)
                .instrument(ctx.span.clone())
                .await
        };
        let transition = hysteresis.observe(outcome.ok);
        let state = hysteresis.state();
        // The detail is copied for the log line only when one will be written (a result
        // at the debug level, or a transition).
        let (ok, latency) = (outcome.ok, outcome.latency);
        let debug = debug_possible()
            && ctx
                .span
                .in_scope(|| tracing::enabled!(tracing::Level::DEBUG));
        let detail = if transition.is_some() || debug {
            outcome.detail.clone()
        } else {
            String::new()
        };
        let event = CheckEvent {
            service: ctx.service,
            check: ctx.check,
            outcome,
            state,
            transition,
            start_delay,
            seq: next_seq(),
        };
        // The result goes to the coordinator before it is logged: a transition may be the
        // decision that sends an UPDATE, and that should not wait for a log line to be
        // formatted and written (stdout may be a pipe to journald).
        let sent = ctx.events.send(event).await;
        match &transition {
            Some(tr) => ctx.span.in_scope(|| {
                info!(
                    from = %tr.from,
                    to = %tr.to,
                    reason = %detail,
                    "check {tr}: {detail}"
                );
            }),
            None if debug => ctx.span.in_scope(|| {
                debug!(
                    ok,
                    latency_ms = latency.as_millis(),
                    passes = state.passes,
                    failures = state.failures,
                    manual,
                    "{detail}"
                );
            }),
            None => {}
        }
        if sent.is_err() {
            ctx.span
                .in_scope(|| debug!("coordinator gone, check stops"));
            return;
        }
        let now = Instant::now();
        let (ideal, interval) = schedule.next(state.changing(), manual.then_some(started), now);
        deadline = ctx.grid.due(ideal, now, interval);
    }
}

#[cfg(test)]
mod tests;
