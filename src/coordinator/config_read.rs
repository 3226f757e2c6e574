//! A reload's file reads (the config, the files it names, the status token, the fleet
//! file, and the checks' TLS trust stores when the checks changed), off the coordinator
//! loop. Reading a config can block for as long as its file system likes (a hung NFS
//! mount, a FIFO nobody writes): the read runs on tokio's blocking pool, and the loop goes
//! on turning (checks, sessions, `/status`, watchdog pings) until it hands back what it
//! read, which the loop then applies.
//!
//! One read at a time: a reload asked for while one is reading is queued and starts when
//! it ends (the file may have changed after that read began); every reload asked for
//! meanwhile is answered by that next one.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::fleet_guard::read_fleet;
use crate::config::{self, Config};
use crate::guard::fleet::Fleet;
use crate::health::{build_probes, AnyProbe};
use crate::status::control::ControlReply;
use crate::status::server::read_token_file;

/// What one read gives: the files of a candidate config, or every error of the config.
pub(super) type Loaded = Result<Read, Vec<String>>;

/// The files of a candidate config, read.
pub(super) struct Read {
    /// The config (with the files it names that `config::load` reads, e.g. TCP-MD5 keys).
    pub(super) config: Config,
    /// The `[status] token_file`'s token, or why it cannot be read (`None`: no such file).
    pub(super) token: Option<Result<Vec<u8>, String>>,
    /// The `[fleet]` file (`None`: no `[fleet]`).
    pub(super) fleet: Option<Result<Fleet, Vec<String>>>,
    /// The new checks' probes, when the checks differ from the running config's.
    pub(super) probes: Option<Result<Vec<Vec<AnyProbe>>, String>>,
}

/// Who asked for a reload: SIGHUP, and control requests (`POST /reload`) waiting for its
/// outcome.
#[derive(Default)]
pub(super) struct Asked {
    /// A signal asked (nobody waits for the answer).
    pub(super) signal: bool,
    /// Where to answer each control request.
    pub(super) waiters: Vec<oneshot::Sender<ControlReply>>,
}

impl Asked {
    /// SIGHUP.
    pub(super) fn by_signal() -> Self {
        Asked {
            signal: true,
            waiters: Vec::new(),
        }
    }

    /// A control request answered at `reply`.
    pub(super) fn by_request(reply: oneshot::Sender<ControlReply>) -> Self {
        Asked {
            signal: false,
            waiters: vec![reply],
        }
    }

    fn merge(&mut self, other: Asked) {
        self.signal |= other.signal;
        self.waiters.extend(other.waiters);
    }

    /// Only control requests asked, and the server answered every one 503 already (it
    /// gave up waiting): the operator was told the reload failed, so it must not happen
    /// behind their back (as `on_control` skips such requests).
    pub(super) fn abandoned(&self) -> bool {
        !self.signal
            && !self.waiters.is_empty()
            && self.waiters.iter().all(oneshot::Sender::is_closed)
    }
}

/// The read in flight, if any, and the reload queued behind it.
#[derive(Default)]
pub(super) struct ConfigRead {
    task: Option<JoinHandle<Loaded>>,
    /// Who asked for the read in flight.
    asked: Asked,
    /// A reload asked for during the read in flight.
    queued: Option<Asked>,
}

impl ConfigRead {
    /// Starts reading `path` (checks compared with `running`'s), or queues the reload
    /// behind the read in flight. True when a read started now.
    pub(super) fn request(&mut self, path: &Path, running: Arc<Config>, asked: Asked) -> bool {
        if self.task.is_some() {
            self.queued.get_or_insert_with(Asked::default).merge(asked);
            return false;
        }
        let path = path.to_path_buf();
        self.task = Some(tokio::task::spawn_blocking(move || read(&path, &running)));
        self.asked = asked;
        true
    }

    /// The reload queued during the read that just ended, to start now.
    pub(super) fn take_queued(&mut self) -> Option<Asked> {
        self.queued.take()
    }

    /// Waits for the read in flight (for ever when there is none) and gives its outcome
    /// with who asked for it. Cancel-safe: the read goes on and a later call gets it.
    pub(super) async fn finished(&mut self) -> (Loaded, Asked) {
        let Some(task) = self.task.as_mut() else {
            return std::future::pending().await;
        };
        let joined = task.await;
        self.task = None;
        let loaded = joined.unwrap_or_else(|e| Err(vec![format!("reading the config: {e}")]));
        (loaded, std::mem::take(&mut self.asked))
    }
}

/// Whether a reload from `old` to `new` changes some service's checks (then the health
/// runner restarts with new probes; otherwise the running checks go on).
pub(super) fn checks_changed(old: &Config, new: &Config) -> bool {
    old.services.len() != new.services.len()
        || old
            .services
            .iter()
            .zip(&new.services)
            .any(|(a, b)| a.name != b.name || a.checks != b.checks)
}

/// The blocking part: the config file (and the files it names, which `config::load`
/// reads), the status token file, the fleet file, and the probes of changed checks.
fn read(path: &Path, running: &Config) -> Loaded {
    let config = config::load(path)
        .map_err(|e| e.errors.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    let token = config
        .status
        .token_file
        .as_deref()
        .map(|f| read_token_file(f).map_err(|e| e.to_string()));
    let fleet = read_fleet(&config);
    let probes = checks_changed(running, &config)
        .then(|| build_probes(&config.services).map_err(|e| format!("health checks: {e}")));
    Ok(Read {
        config,
        token,
        fleet,
        probes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_is_abandoned_only_when_every_asker_was_a_request_answered_already() {
        let (open, _rx) = oneshot::channel();
        let (closed, rx) = oneshot::channel();
        drop(rx);
        assert!(!Asked::by_signal().abandoned(), "a SIGHUP always applies");
        assert!(!Asked::by_request(open).abandoned(), "a caller still waits");
        let mut asked = Asked::by_request(closed);
        assert!(asked.abandoned(), "the only caller got its 503");
        asked.merge(Asked::by_signal());
        assert!(!asked.abandoned(), "a SIGHUP asked too");
        assert!(!Asked::default().abandoned());
    }
}
