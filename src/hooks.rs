//! State-change hooks: a service's `hook` program run on every change of its state.
//!
//! [`hook_env`] is the pure part (what the program is told); [`Hooks`] is the thin driver:
//! one worker task per service with a hook, fed through a bounded queue, running the
//! invocations one at a time and in order as [`BoundedCommand`]s. The coordinator only
//! enqueues — a slow or hung hook never delays an announcement or a withdrawal — and a
//! queue that is full drops the newest change with a warning rather than growing.

use std::collections::HashMap;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::config::{HookConfig, ServiceConfig};
use crate::process::BoundedCommand;
use crate::service::Change;

/// Changes that may wait for one service's hook before new ones are dropped.
pub const HOOK_QUEUE: usize = 16;

/// The variables a hook gets for `change` of `service`, added to the daemon's environment.
pub fn hook_env(service: &ServiceConfig, change: &Change) -> Vec<(String, String)> {
    let prefixes: Vec<String> = service.prefixes.iter().map(ToString::to_string).collect();
    vec![
        ("SERVICE".into(), service.name.clone()),
        ("STATE".into(), change.to.as_str().into()),
        ("PREVIOUS_STATE".into(), change.from.as_str().into()),
        ("REASON".into(), change.reason.clone()),
        ("PREFIXES".into(), prefixes.join(" ")),
    ]
}

/// The hook workers of the running config, by service name.
#[derive(Debug, Default)]
pub struct Hooks {
    workers: HashMap<String, Worker>,
}

#[derive(Debug)]
struct Worker {
    hook: HookConfig,
    queue: mpsc::Sender<BoundedCommand>,
    task: JoinHandle<()>,
}

impl Hooks {
    /// Workers for every service of `services` that has a hook.
    pub fn start(services: &[ServiceConfig]) -> Self {
        let mut hooks = Hooks::default();
        hooks.reconfigure(services);
        hooks
    }

    /// Follows a reload: services whose hook is unchanged keep their worker (and queue);
    /// changed and new ones get a fresh worker; removed ones finish what is queued.
    pub fn reconfigure(&mut self, services: &[ServiceConfig]) {
        let mut old = std::mem::take(&mut self.workers);
        for s in services {
            let Some(hook) = &s.hook else { continue };
            let worker = match old.remove(&s.name) {
                Some(w) if w.hook == *hook => w,
                // A changed hook: the new worker starts once the old one has finished its
                // queue, so the service's hooks still run one at a time and in order.
                Some(Worker { queue, task, .. }) => {
                    drop(queue);
                    Worker::spawn(&s.name, hook.clone(), Some(task))
                }
                None => Worker::spawn(&s.name, hook.clone(), None),
            };
            self.workers.insert(s.name.clone(), worker);
        }
        // Dropping a worker's sender lets it finish its queue and end.
    }

    /// Queues the hook run for `change` of `service`, if the service has a hook.
    pub fn on_change(&self, service: &ServiceConfig, change: &Change) {
        let Some(w) = self.workers.get(&service.name) else {
            return;
        };
        let command = BoundedCommand::new(w.hook.argv.clone(), w.hook.timeout)
            .with_env(hook_env(service, change));
        if w.queue.try_send(command).is_err() {
            tracing::warn!(
                service = %service.name,
                to = change.to.as_str(),
                "hook queue full ({HOOK_QUEUE} changes waiting): this change's hook is dropped"
            );
        }
    }

    /// Waits (at most `limit`) for the queued hooks to finish, e.g. the `drained` hook of
    /// a stopping daemon; what is still running then is killed.
    pub async fn finish(mut self, limit: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        for (_, w) in std::mem::take(&mut self.workers) {
            drop(w.queue);
            let mut task = w.task;
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                // Aborting drops the running command, which kills its process group.
                task.abort();
            }
        }
    }
}

impl Worker {
    /// A worker that starts running hooks once `after` (the previous worker of the same
    /// service) has ended.
    fn spawn(service: &str, hook: HookConfig, after: Option<JoinHandle<()>>) -> Self {
        let (queue, mut rx) = mpsc::channel::<BoundedCommand>(HOOK_QUEUE);
        let span = tracing::info_span!("hook", service = %service);
        let task = tokio::spawn(
            async move {
                if let Some(previous) = after {
                    let _ = previous.await;
                }
                while let Some(command) = rx.recv().await {
                    match command.run().await {
                        Ok(out) => {
                            tracing::info!(hook = %command.display(), result = %out, "hook ran")
                        }
                        Err(e) => {
                            tracing::warn!(hook = %command.display(), error = %e, "hook failed")
                        }
                    }
                }
            }
            .instrument(span),
        );
        Worker { hook, queue, task }
    }
}

impl Drop for Hooks {
    fn drop(&mut self) {
        for w in self.workers.values() {
            w.task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::service::State;

    fn service(hook: Option<HookConfig>) -> ServiceConfig {
        let mut s = crate::config::testing::dual_stack_service("web");
        s.hook = hook;
        s
    }

    fn change(from: State, to: State) -> Change {
        Change {
            from,
            to,
            reason: "1/1 checks failed".into(),
        }
    }

    #[test]
    fn the_environment_names_service_states_reason_and_prefixes() {
        let env = hook_env(&service(None), &change(State::Up, State::Down));
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("SERVICE"), Some("web"));
        assert_eq!(get("STATE"), Some("down"));
        assert_eq!(get("PREVIOUS_STATE"), Some("up"));
        assert_eq!(get("REASON"), Some("1/1 checks failed"));
        assert_eq!(get("PREFIXES"), Some("203.0.113.0/24 2001:db8:100::/48"));
    }

    #[tokio::test]
    async fn hooks_run_in_order_with_their_environment() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let log = dir.path().join("log");
        let script = format!(
            "echo \"$SERVICE $PREVIOUS_STATE>$STATE\" >> {}",
            log.display()
        );
        let svc = service(Some(HookConfig {
            argv: vec!["sh".into(), "-c".into(), script],
            timeout: Duration::from_secs(5),
        }));
        let hooks = Hooks::start(std::slice::from_ref(&svc));
        hooks.on_change(&svc, &change(State::Starting, State::Up));
        hooks.on_change(&svc, &change(State::Up, State::Down));
        hooks.on_change(&svc, &change(State::Down, State::Up));
        hooks.finish(Duration::from_secs(10)).await;
        let text = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(text, "web starting>up\nweb up>down\nweb down>up\n");
    }

    #[tokio::test]
    async fn a_reload_that_changes_the_hook_keeps_the_services_hooks_one_at_a_time() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let log = dir.path().join("log");
        let script = format!(
            "echo \"start $STATE\" >> {0}; sleep 0.3; echo \"end $STATE\" >> {0}",
            log.display()
        );
        let hook = |secs| HookConfig {
            argv: vec!["sh".into(), "-c".into(), script.clone()],
            timeout: Duration::from_secs(secs),
        };
        let old = service(Some(hook(5)));
        let mut hooks = Hooks::start(std::slice::from_ref(&old));
        hooks.on_change(&old, &change(State::Starting, State::Up));
        // A reload changes the hook's timeout while the "up" hook runs.
        let new = service(Some(hook(6)));
        hooks.reconfigure(std::slice::from_ref(&new));
        hooks.on_change(&new, &change(State::Up, State::Down));
        hooks.finish(Duration::from_secs(10)).await;
        let text = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(text, "start up\nend up\nstart down\nend down\n");
    }

    #[tokio::test]
    async fn a_hung_hook_is_killed_at_its_timeout_and_the_next_one_runs() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let log = dir.path().join("log");
        // The first run (to = up) hangs; the second (to = down) writes.
        let script = format!(
            "if [ \"$STATE\" = up ]; then sleep 30; else echo \"$STATE\" >> {}; fi",
            log.display()
        );
        let svc = service(Some(HookConfig {
            argv: vec!["sh".into(), "-c".into(), script],
            timeout: Duration::from_millis(200),
        }));
        let hooks = Hooks::start(std::slice::from_ref(&svc));
        hooks.on_change(&svc, &change(State::Starting, State::Up));
        hooks.on_change(&svc, &change(State::Up, State::Down));
        hooks.finish(Duration::from_secs(10)).await;
        let text = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(text, "down\n");
    }

    #[tokio::test]
    async fn a_full_queue_drops_changes_instead_of_blocking() {
        let svc = service(Some(HookConfig {
            argv: vec!["sleep".into(), "30".into()],
            timeout: Duration::from_secs(30),
        }));
        let hooks = Hooks::start(std::slice::from_ref(&svc));
        // Far more than the queue holds: on_change must return at once every time.
        for _ in 0..(HOOK_QUEUE * 4) {
            hooks.on_change(&svc, &change(State::Up, State::Down));
        }
        let queued = hooks.workers.get("web").map(|w| w.queue.capacity());
        assert_eq!(queued, Some(0), "the queue is full, not grown");
        // finish() with a short limit kills the running sleep.
        hooks.finish(Duration::from_millis(100)).await;
    }

    #[test]
    fn services_without_a_hook_get_no_worker() {
        // No runtime needed: nothing is spawned.
        let hooks = Hooks::start(&[service(None)]);
        assert!(hooks.workers.is_empty());
    }
}
