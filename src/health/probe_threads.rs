//! The probes' own threads (issue 13: CPU per probe result at 10 as at 1,000 services).
//!
//! In the daemon, the check tasks do not run on the multi-thread runtime's workers but on
//! threads of their own, each a `current_thread` runtime with its own timer and I/O
//! driver, the services shared among as many of them as the configured load needs
//! (`health::schedule`: one thread up to ~4,000 plain probes a second), round-robin, the
//! checks of a service on one thread. A probe's timer and its socket then
//! wake only the thread that owns the check: on the multi-thread runtime, every wake of a
//! probe task also unparked an idle sibling worker to look for work to steal (a futex
//! call and a context switch each, for nothing), which is what made a probe result cost
//! twice as much at 20 results a second as at 2,000 (docs/benchmarks.md, "A thousand
//! services", round 5). The results still go to the coordinator over the same channels.
//!
//! Installed once per process by the binary ([`install`]) before the coordinator starts;
//! without it (library users, tests that drive `coordinator::run` on a runtime of their
//! own, with its paused clock) the check tasks are spawned on the current runtime as
//! before.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::Handle;
use tokio::task::JoinHandle;

/// The probe threads of this process, once installed.
static PROBE_THREADS: OnceLock<ProbeThreads> = OnceLock::new();

struct ProbeThreads {
    handles: Vec<Handle>,
}

/// The probe threads could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ProbeThreadsError {
    /// A runtime or its thread could not be created.
    #[error("cannot start a probe thread: {0}")]
    Start(#[from] std::io::Error),
    /// [`install`] was called before.
    #[error("the probe threads are already installed")]
    AlreadyInstalled,
}

/// Starts `threads` probe threads (at least one); every check task spawned afterwards runs
/// on one of them. The threads live as long as the process; one the runner gives no check
/// (a low load needs fewer, `health::schedule`) sleeps without a timer and costs nothing.
pub fn install(threads: usize) -> Result<(), ProbeThreadsError> {
    let mut handles = Vec::with_capacity(threads.max(1));
    for i in 0..threads.max(1) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name(format!("ag-probes-{i}-b"))
            .build()?;
        handles.push(runtime.handle().clone());
        std::thread::Builder::new()
            .name(format!("ag-probes-{i}"))
            .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
    }
    PROBE_THREADS
        .set(ProbeThreads { handles })
        .map_err(|_| ProbeThreadsError::AlreadyInstalled)
}

/// How many probe threads are installed (0 without [`install`]).
pub(crate) fn installed() -> usize {
    PROBE_THREADS.get().map_or(0, |t| t.handles.len())
}

/// Spawns a check task on probe thread `thread` (modulo the threads installed) when they
/// are installed, else on the current runtime. The runner chooses the thread: the checks
/// of a service on one, and only as many threads as the load needs
/// (`health::schedule`), so that checks due at the same time share a wake.
pub(crate) fn spawn_on<F>(thread: usize, task: F) -> JoinHandle<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    match PROBE_THREADS.get() {
        Some(t) if !t.handles.is_empty() => t.handles[thread % t.handles.len()].spawn(task),
        _ => tokio::spawn(task),
    }
}
