//! Probe results recorded where `/status` and `/metrics` read them, by the check tasks
//! themselves (issue 13: CPU per probe result at 10 as at 1,000 services).
//!
//! ```text
//!  check task ──every result──▶ ResultRecorder ──▶ its check's LiveCheck   (/status)
//!      │                                     └──▶ its check's CheckMetrics (/metrics)
//!      └──state changes only──▶ coordinator (CheckEvent)
//! ```
//!
//! Nearly every probe result says "still up": it changes its check's counters and history
//! and the probe metrics, nothing the coordinator decides from. Sent to the coordinator,
//! each one woke the loop's thread (at a few results a second a whole idle-thread wake-up
//! each, about as much CPU as the probe itself). So the check's task records every result
//! itself, in place: the check's [`LiveCheck`] (which the service's `/status` entry shares)
//! and its [`CheckMetrics`] (series of the registry's families, updated in place). Only a
//! result with a state change goes to the coordinator, which takes its new state (the
//! history is already recorded: [`LiveCheck::record`] records a result once).
//!
//! A recorder belongs to one health runner, numbered like the config that runner was
//! started with: a reload that restarts the runner makes a new recorder, with copies of
//! the records of the checks that carry over (`Core::fork_checks`), so that a result of
//! the old runner still on its way lands in a record nobody reads any more, never in
//! another check's. Such a result exists: stopping a runner aborts its check tasks, and
//! an abort takes effect at a task's next await, so a task finishing a probe on its probe
//! thread at that moment still records. The runner retires its recorder when it stops
//! ([`ResultRecorder::retire`]): a retired recorder records nothing more, and, decided
//! under the lock the reload's dropping of removed checks' series takes
//! ([`RunnerMetrics`]), creates no metrics series for a check that reload removed.

use std::time::SystemTime;

use crate::config::ServiceConfig;
use crate::coordinator::core::RESULTS_KEPT;
use crate::health::CheckEvent;

use super::metrics::{CheckMetrics, Metrics, RunnerMetrics};
use super::model::LiveCheck;

/// Records `event`, observed at `at`, in the check's record `live` (its counters and its
/// kept results): what the check task does for every result, and the coordinator for a
/// state change its task did not record. False when `live` holds a newer result already.
pub(crate) fn record_in(live: &LiveCheck, event: &CheckEvent, at: SystemTime) -> bool {
    live.record(
        event.seq,
        event.state.passes,
        event.state.failures,
        at,
        &event.outcome,
        RESULTS_KEPT,
    )
}

/// Where the checks of one health runner record their results.
#[derive(Debug)]
pub struct ResultRecorder {
    /// Per service, per check, in the runner's config order.
    checks: Vec<Vec<CheckRecord>>,
    metrics: RunnerMetrics,
}

#[derive(Debug)]
struct CheckRecord {
    live: LiveCheck,
    metrics: CheckMetrics,
}

impl ResultRecorder {
    /// A recorder for the checks of `services`, each into its record of `lives` (the same
    /// shape: per service, per check) and its series of `metrics`. A check given no
    /// record (`lives` shorter) records nothing.
    pub fn new(services: &[ServiceConfig], lives: Vec<Vec<LiveCheck>>, metrics: &Metrics) -> Self {
        let runner = metrics.runner();
        let mut lives = lives.into_iter();
        let checks = services
            .iter()
            .map(|s| {
                let mut service_lives = lives.next().unwrap_or_default().into_iter();
                s.checks
                    .iter()
                    .map(|c| CheckRecord {
                        live: service_lives.next().unwrap_or_default(),
                        metrics: runner.check(&s.name, &c.name),
                    })
                    .collect()
            })
            .collect();
        ResultRecorder {
            checks,
            metrics: runner,
        }
    }

    /// Its runner is stopped: a result still recorded afterwards by a task that was
    /// finishing its probe is left out, and no metrics series is created for it.
    pub fn retire(&self) {
        self.metrics.retire();
    }

    /// Records `event`, observed at `at`: its counters and history in its check's
    /// [`LiveCheck`], its latency and start delay in the check's metrics. False,
    /// recording nothing, for a check this recorder does not have, a result not newer
    /// than the newest recorded, or once the recorder is retired.
    pub fn record(&self, event: &CheckEvent, at: SystemTime) -> bool {
        // The metrics decide again under their lock (a retirement may come in between);
        // this spares the record too.
        if self.metrics.retired() {
            return false;
        }
        let Some(check) = self
            .checks
            .get(event.service)
            .and_then(|s| s.get(event.check))
        else {
            return false;
        };
        let recorded = record_in(&check.live, event, at);
        if recorded {
            check
                .metrics
                .observe(event.outcome.latency, event.outcome.ok, event.start_delay);
        }
        recorded
    }
}

#[cfg(test)]
mod tests;
