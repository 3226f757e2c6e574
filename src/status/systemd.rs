//! systemd integration: `sd_notify(3)` readiness, status text and watchdog.
//!
//! With `Type=notify` in the unit (`contrib/anyguard.service`), systemd passes the socket in
//! `NOTIFY_SOCKET` and, with `WatchdogSec=`, the period in `WATCHDOG_USEC`. Outside systemd
//! both are absent and every call here does nothing. Messages are formatted by the
//! `sd-notify` crate; sending is done here so the socket path can be injected in tests.
//!
//! The watchdog is pinged at half the period from a tokio task: if the runtime wedges, the
//! pings stop and systemd restarts the daemon.

use std::future::Future;
use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

use sd_notify::NotifyState;

use super::model::StatusDocument;

/// Where and how often to notify systemd.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notifier {
    socket: Option<PathBuf>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From `NOTIFY_SOCKET` / `WATCHDOG_USEC` / `WATCHDOG_PID`; inert when absent.
    pub fn from_env() -> Self {
        Self {
            socket: std::env::var_os("NOTIFY_SOCKET").map(PathBuf::from),
            watchdog: sd_notify::watchdog_enabled(),
        }
    }

    /// Explicit socket and watchdog period (tests, or a caller that read the env itself).
    pub fn new(socket: Option<PathBuf>, watchdog: Option<Duration>) -> Self {
        Self { socket, watchdog }
    }

    /// True when running under a notify-type systemd unit.
    pub fn enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// The watchdog period systemd expects pings within, if any.
    pub fn watchdog_period(&self) -> Option<Duration> {
        self.watchdog
    }

    /// `READY=1` plus a status line: call once the config is loaded and sessions started.
    pub fn ready(&self, status: &str) -> io::Result<()> {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)])
    }

    /// `RELOADING=1` (with `MONOTONIC_USEC`, as systemd ≥ 253 requires for `Type=notify-reload`).
    pub fn reloading(&self) -> io::Result<()> {
        let mut states = vec![NotifyState::Reloading];
        if let Ok(now) = NotifyState::monotonic_usec_now() {
            states.push(now);
        }
        self.send(&states)
    }

    /// `STOPPING=1` plus a status line: call when shutdown (drain before Cease) begins.
    pub fn stopping(&self, status: &str) -> io::Result<()> {
        self.send(&[NotifyState::Stopping, NotifyState::Status(status)])
    }

    /// `STATUS=…`: one line shown by `systemctl status`.
    pub fn status(&self, status: &str) -> io::Result<()> {
        self.send(&[NotifyState::Status(status)])
    }

    /// One `WATCHDOG=1` ping.
    pub fn watchdog_ping(&self) -> io::Result<()> {
        self.send(&[NotifyState::Watchdog])
    }

    /// Pings the watchdog every half period until `shutdown` completes; returns at once when
    /// no watchdog is configured. Send errors are logged, never fatal.
    pub async fn run_watchdog(&self, shutdown: impl Future<Output = ()>) {
        let Some(period) = self.watchdog else {
            return;
        };
        let half = (period / 2).max(Duration::from_millis(1));
        let mut ticks = tokio::time::interval(half);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    if let Err(error) = self.watchdog_ping() {
                        tracing::warn!(%error, "systemd watchdog ping failed");
                    }
                }
                () = &mut shutdown => return,
            }
        }
    }

    fn send(&self, states: &[NotifyState<'_>]) -> io::Result<()> {
        let Some(path) = &self.socket else {
            return Ok(());
        };
        let msg: String = states.iter().map(|s| format!("{s}\n")).collect();
        let sock = UnixDatagram::unbound()?;
        let bytes = path.as_os_str().as_encoded_bytes();
        if let Some(name) = bytes.strip_prefix(b"@") {
            // Abstract-namespace socket (sd_notify(3)).
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(msg.as_bytes(), &addr)?;
        } else {
            sock.send_to(msg.as_bytes(), path)?;
        }
        Ok(())
    }
}

/// The one-line `STATUS=` text for `systemctl status`, e.g.
/// `ready; services 2/3 up (ntp held); peers 1/2 established`.
pub fn status_line(doc: &StatusDocument) -> String {
    let phase = if doc.daemon.stopping {
        "stopping"
    } else if doc.daemon.ready {
        "ready"
    } else {
        "starting"
    };
    let up = doc.services.iter().filter(|s| s.state == "up").count();
    let not_up: Vec<String> = doc
        .services
        .iter()
        .filter(|s| s.state != "up")
        .map(|s| format!("{} {}", s.name, s.state))
        .collect();
    let detail = if not_up.is_empty() {
        String::new()
    } else {
        format!(" ({})", not_up.join(", "))
    };
    let established = doc
        .peers
        .iter()
        .filter(|p| p.state == "established")
        .count();
    format!(
        "{phase}; services {up}/{} up{detail}; peers {established}/{} established",
        doc.services.len(),
        doc.peers.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_socket(name: &str) -> (PathBuf, UnixDatagram) {
        let dir = std::env::temp_dir().join(format!("anyguard-sd-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (path, sock)
    }

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn ready_and_stopping_send_sd_notify_lines() {
        let (path, sock) = temp_socket("ready");
        let n = Notifier::new(Some(path.clone()), None);
        assert!(n.enabled());
        n.ready("2 peers, 3 services").unwrap();
        assert_eq!(recv(&sock), "READY=1\nSTATUS=2 peers, 3 services\n");
        n.stopping("draining").unwrap();
        assert_eq!(recv(&sock), "STOPPING=1\nSTATUS=draining\n");
        n.watchdog_ping().unwrap();
        assert_eq!(recv(&sock), "WATCHDOG=1\n");
        n.reloading().unwrap();
        let msg = recv(&sock);
        assert!(msg.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{msg}");
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn status_line_counts_services_and_peers_and_names_the_unhealthy() {
        use crate::status::model::{PeerStatus, ServiceStatus};
        let mut doc = StatusDocument::default();
        doc.daemon.ready = true;
        for (name, state) in [("dns", "up"), ("ntp", "held"), ("web", "down")] {
            doc.services.push(std::sync::Arc::new(ServiceStatus {
                name: name.into(),
                state: state.into(),
                ..ServiceStatus::default()
            }));
        }
        for state in ["established", "active"] {
            doc.peers.push(PeerStatus {
                state: state.into(),
                ..PeerStatus::default()
            });
        }
        assert_eq!(
            status_line(&doc),
            "ready; services 1/3 up (ntp held, web down); peers 1/2 established"
        );
        doc.daemon.stopping = true;
        doc.services.truncate(1);
        assert_eq!(
            status_line(&doc),
            "stopping; services 1/1 up; peers 1/2 established"
        );
    }

    #[test]
    fn outside_systemd_everything_is_a_no_op() {
        let n = Notifier::new(None, None);
        assert!(!n.enabled());
        n.ready("x").unwrap();
        n.status("x").unwrap();
        n.watchdog_ping().unwrap();
    }

    #[tokio::test]
    async fn watchdog_pings_at_half_the_period_until_shutdown() {
        let (path, sock) = temp_socket("watchdog");
        let n = Notifier::new(Some(path.clone()), Some(Duration::from_millis(40)));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            n.run_watchdog(async {
                let _ = stopped.await;
            })
            .await;
        });
        // Three pings arrive (the first immediately); then stop the task.
        let got =
            tokio::task::spawn_blocking(move || (0..3).map(|_| recv(&sock)).collect::<Vec<_>>())
                .await
                .unwrap();
        assert_eq!(got, vec!["WATCHDOG=1\n"; 3]);
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[tokio::test]
    async fn watchdog_without_period_returns_at_once() {
        let n = Notifier::new(None, None);
        tokio::time::timeout(
            Duration::from_secs(5),
            n.run_watchdog(std::future::pending()),
        )
        .await
        .unwrap();
    }
}
