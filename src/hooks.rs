//! State-change hooks (`hook`, `hook_timeout` on a service): a command run after every
//! change of a service's state, with `SERVICE`, `STATE`, `PREVIOUS_STATE`, `REASON` and
//! `PREFIXES` (space-separated) in its environment.
//!
//! One worker task per service runs that service's hooks one at a time, in the order of
//! the changes, so a hook never sees "up" after a later "down". The coordinator only
//! queues a job and never waits for a hook: a hook cannot delay an announcement or a
//! withdrawal. Each run is bounded by the hook's timeout, after which its whole process
//! group is killed (`health::probe::command::run_bounded`, shared with the command probe).
//! A full queue (a hook far slower than its service changes) drops the new job with a
//! warning rather than grow without bound.
//!
//! Left out: retries (a failed hook is logged, not repeated) and a shell (`hook` is an
//! argv; write `["sh", "-c", "…"]` to get one).

use std::collections::HashMap;
use std::time::Duration;

use ipnet::IpNet;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::HookConfig;
use crate::health::probe::command::run_bounded;
use crate::service::State;

/// Jobs waiting per service before new ones are dropped.
pub const HOOK_QUEUE: usize = 32;

/// One state change to hand to a service's hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookJob {
    /// Service name.
    pub service: String,
    /// State before the change.
    pub from: State,
    /// State after the change.
    pub to: State,
    /// Why, as logged.
    pub reason: String,
    /// The service's prefixes.
    pub prefixes: Vec<IpNet>,
    /// What to run (from the config in force when the change happened).
    pub hook: HookConfig,
}

/// The environment a hook gets on top of the daemon's.
pub fn environment(job: &HookJob) -> Vec<(&'static str, String)> {
    let prefixes: Vec<String> = job.prefixes.iter().map(ToString::to_string).collect();
    vec![
        ("SERVICE", job.service.clone()),
        ("STATE", job.to.as_str().to_string()),
        ("PREVIOUS_STATE", job.from.as_str().to_string()),
        ("REASON", job.reason.clone()),
        ("PREFIXES", prefixes.join(" ")),
    ]
}

struct Worker {
    tx: mpsc::Sender<HookJob>,
    task: JoinHandle<()>,
}

/// The hook workers, one per service that has had a change with a hook.
#[derive(Default)]
pub struct HookRunner {
    workers: HashMap<String, Worker>,
}

impl std::fmt::Debug for HookRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookRunner")
            .field("services", &self.workers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl HookRunner {
    /// No workers yet; they start with the first job of each service.
    pub fn new() -> Self {
        HookRunner::default()
    }

    /// Queues `job` for its service's worker (started on first use; must be called inside
    /// a tokio runtime). Never waits.
    pub fn notify(&mut self, job: HookJob) {
        let worker = self
            .workers
            .entry(job.service.clone())
            .or_insert_with(|| spawn_worker(&job.service));
        if let Err(e) = worker.tx.try_send(job) {
            let job = match e {
                mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j) => j,
            };
            tracing::warn!(
                service = %job.service,
                state = job.to.as_str(),
                "hook queue full ({HOOK_QUEUE} waiting); this change is not passed to the hook"
            );
        }
    }

    /// Lets the queued hooks finish for at most `wait`, then kills what still runs.
    pub async fn stop(self, wait: Duration) {
        let tasks: Vec<(String, JoinHandle<()>)> = self
            .workers
            .into_iter()
            .map(|(name, w)| {
                // Closing the queue ends the worker after its last job.
                drop(w.tx);
                (name, w.task)
            })
            .collect();
        let deadline = tokio::time::Instant::now() + wait;
        for (name, mut task) in tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                tracing::warn!(service = %name, "hooks still running at exit; killed");
                // Dropping the running hook kills its process group.
                task.abort();
            }
        }
    }
}

fn spawn_worker(service: &str) -> Worker {
    let (tx, mut rx) = mpsc::channel::<HookJob>(HOOK_QUEUE);
    let span = tracing::info_span!("hook", service = %service);
    let task = tokio::spawn(tracing::Instrument::instrument(
        async move {
            while let Some(job) = rx.recv().await {
                let env = environment(&job);
                match run_bounded(&job.hook.argv, &env, job.hook.timeout).await {
                    Ok(detail) => tracing::info!(
                        from = job.from.as_str(),
                        to = job.to.as_str(),
                        %detail,
                        "hook ran"
                    ),
                    Err(detail) => tracing::warn!(
                        from = job.from.as_str(),
                        to = job.to.as_str(),
                        %detail,
                        "hook failed"
                    ),
                }
            }
        },
        span,
    ));
    Worker { tx, task }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(script: &str, to: State, timeout: Duration) -> HookJob {
        HookJob {
            service: "web".into(),
            from: State::Up,
            to,
            reason: "checks fail; withdrawn".into(),
            prefixes: vec![
                "203.0.113.0/24".parse().unwrap(),
                "2001:db8:100::/48".parse().unwrap(),
            ],
            hook: HookConfig {
                argv: vec!["sh".into(), "-c".into(), script.into()],
                timeout,
            },
        }
    }

    #[test]
    fn the_environment_names_service_states_reason_and_prefixes() {
        let env = environment(&job("true", State::Down, Duration::from_secs(1)));
        assert_eq!(
            env,
            vec![
                ("SERVICE", "web".to_string()),
                ("STATE", "down".to_string()),
                ("PREVIOUS_STATE", "up".to_string()),
                ("REASON", "checks fail; withdrawn".to_string()),
                ("PREFIXES", "203.0.113.0/24 2001:db8:100::/48".to_string()),
            ]
        );
    }

    #[tokio::test]
    async fn hooks_of_a_service_run_in_order_with_their_environment() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("log");
        let script = format!(
            "echo \"$SERVICE $PREVIOUS_STATE $STATE $PREFIXES\" >> {}",
            out.display()
        );
        let mut runner = HookRunner::new();
        for to in [State::Down, State::Up, State::Draining] {
            runner.notify(job(&script, to, Duration::from_secs(5)));
        }
        runner.stop(Duration::from_secs(10)).await;
        let text = std::fs::read_to_string(&out).unwrap();
        assert_eq!(
            text,
            "web up down 203.0.113.0/24 2001:db8:100::/48\n\
             web up up 203.0.113.0/24 2001:db8:100::/48\n\
             web up draining 203.0.113.0/24 2001:db8:100::/48\n"
        );
    }

    #[tokio::test]
    async fn a_hung_hook_is_killed_at_its_timeout_and_the_next_one_runs() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("log");
        let mut runner = HookRunner::new();
        runner.notify(job("sleep 30", State::Down, Duration::from_millis(100)));
        runner.notify(job(
            &format!("echo \"$STATE\" > {}", out.display()),
            State::Up,
            Duration::from_secs(5),
        ));
        // Bounded: 100 ms for the hung hook, then the second one.
        runner.stop(Duration::from_secs(10)).await;
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "up\n");
    }
}
