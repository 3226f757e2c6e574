//! systemd integration: `sd_notify(3)` readiness, status text and watchdog.
//!
//! With `Type=notify` in the unit (`contrib/anyguard.service`), systemd passes the socket in
//! `NOTIFY_SOCKET` and, with `WatchdogSec=`, the period in `WATCHDOG_USEC`. Outside systemd
//! both are absent and every call here does nothing. Messages are formatted by the
//! `sd-notify` crate; sending is done here so the socket path can be injected in tests.
//!
//! The watchdog is pinged at half the period by the coordinator loop itself ([`Link`],
//! [`Heartbeat`]), never by a timer task of its own: a timer task would go on pinging while
//! the loop that decides and sends the routes is stuck, and systemd would never notice.
//! The loop wakes up for [`Link::next_ping`] and pings after its turn when one is due; a
//! loop that does not come round does not ping, and systemd restarts the daemon after
//! `WatchdogSec`.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use super::model::StatusDocument;

/// Where and how often to notify systemd.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notifier {
    socket: Option<PathBuf>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From `NOTIFY_SOCKET` / `WATCHDOG_USEC` / `WATCHDOG_PID`; inert when absent. The
    /// watchdog is off when `WATCHDOG_PID` names another process (sd_watchdog_enabled(3))
    /// or the period is zero. The variables stay set: unsetting them is unsafe once threads
    /// run, and `NotifyAccess=main` makes systemd ignore what a child might send.
    pub fn from_env() -> Self {
        Self {
            socket: std::env::var_os("NOTIFY_SOCKET")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            watchdog: sd_notify::watchdog_enabled().filter(|p| !p.is_zero()),
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
    format!("{phase}; {}", summary(doc))
}

/// Services not up named in the status line; the rest are counted.
const STATUS_NAMES: usize = 3;

/// `status_line` without the phase.
fn summary(doc: &StatusDocument) -> String {
    let up = doc.services.iter().filter(|s| s.state == "up").count();
    // A few names, not a thousand: the line is one line of `systemctl status`.
    let mut not_up: Vec<String> = doc
        .services
        .iter()
        .filter(|s| s.state != "up")
        .take(STATUS_NAMES + 1)
        .map(|s| format!("{} {}", s.name, s.state))
        .collect();
    if not_up.len() > STATUS_NAMES {
        let more = doc.services.len() - up - STATUS_NAMES;
        not_up.truncate(STATUS_NAMES);
        not_up.push(format!("{more} more"));
    }
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
        "services {up}/{} up{detail}; peers {established}/{} established",
        doc.services.len(),
        doc.peers.len()
    )
}

/// When the coordinator loop owes systemd a `WATCHDOG=1` and whether the status line
/// changed: the pure part of [`Link`], with `now` as a parameter.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    /// Half of `WATCHDOG_USEC` (systemd.service(5) recommends pinging at half the period).
    half: Option<Duration>,
    /// The next ping is due at this instant.
    next_ping: Option<Instant>,
    /// The last `STATUS=` sent.
    last_status: Option<String>,
}

/// What one turn of the loop sends.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Beat {
    /// `WATCHDOG=1`.
    pub ping: bool,
    /// `STATUS=…`, when the line differs from the last one sent.
    pub status: Option<String>,
}

impl Heartbeat {
    /// The first ping is due at `now`.
    pub fn new(watchdog: Option<Duration>, now: Instant) -> Self {
        let half = watchdog
            .filter(|p| !p.is_zero())
            .map(|p| (p / 2).max(Duration::from_millis(1)));
        Self {
            half,
            next_ping: half.map(|_| now),
            last_status: None,
        }
    }

    /// When the loop must come round next to ping in time; `None` without a watchdog.
    pub fn next_ping(&self) -> Option<Instant> {
        self.next_ping
    }

    /// A `STATUS=` line was sent by other means (READY=1, STOPPING=1).
    pub fn status_sent(&mut self, line: &str) {
        self.last_status = Some(line.to_string());
    }

    /// One turn of the loop at `now` with its current status line (`None`: unchanged
    /// since the last turn). A turn that comes late pings once (not once per missed half
    /// period) and the next is due half a period after it.
    pub fn turn(&mut self, now: Instant, status: Option<&str>) -> Beat {
        let ping = match (self.half, self.next_ping) {
            (Some(half), Some(due)) if now >= due => {
                self.next_ping = Some(now + half);
                true
            }
            _ => false,
        };
        let status = status
            .filter(|s| self.last_status.as_deref() != Some(*s))
            .map(|s| {
                self.last_status = Some(s.to_string());
                s.to_string()
            });
        Beat { ping, status }
    }
}

/// The daemon's link to systemd: a [`Notifier`] and the loop's [`Heartbeat`]. Every
/// method does nothing outside systemd (no `NOTIFY_SOCKET`); send errors are logged
/// (the first at warn, the rest at debug), never fatal.
#[derive(Debug)]
pub struct Link {
    notifier: Notifier,
    heartbeat: Heartbeat,
    failed: bool,
}

impl Link {
    /// The first watchdog ping is due at `now`.
    pub fn new(notifier: Notifier, now: Instant) -> Self {
        let watchdog = notifier
            .enabled()
            .then(|| notifier.watchdog_period())
            .flatten();
        Self {
            heartbeat: Heartbeat::new(watchdog, now),
            notifier,
            failed: false,
        }
    }

    /// When the loop must come round next for the watchdog (`None`: no watchdog).
    pub fn next_ping(&self) -> Option<Instant> {
        self.heartbeat.next_ping()
    }

    /// `READY=1` with the status line: at start once the config is loaded, the status
    /// endpoint listens and the peers are started, and again after a reload.
    pub fn ready(&mut self, doc: &StatusDocument) {
        if !self.notifier.enabled() {
            return;
        }
        let line = status_line(doc);
        let sent = self.notifier.ready(&line);
        self.heartbeat.status_sent(&line);
        self.check(sent);
    }

    /// `RELOADING=1` (with `MONOTONIC_USEC`) as a reload begins.
    pub fn reloading(&mut self) {
        let sent = self.notifier.reloading();
        self.check(sent);
    }

    /// `STOPPING=1` as the stop begins (before the status document says so).
    pub fn stopping(&mut self, doc: &StatusDocument) {
        if !self.notifier.enabled() {
            return;
        }
        let line = format!("stopping; {}", summary(doc));
        let sent = self.notifier.stopping(&line);
        self.heartbeat.status_sent(&line);
        self.check(sent);
    }

    /// After each turn of the coordinator loop: `WATCHDOG=1` when due, `STATUS=` when the
    /// summary of the published document changed. `doc` is the document when this turn
    /// published a new one, `None` otherwise (its summary, which walks every service, is
    /// then not recomputed).
    pub fn turn(&mut self, now: Instant, doc: Option<&StatusDocument>) {
        if !self.notifier.enabled() {
            return;
        }
        let line = doc.map(status_line);
        let beat = self.heartbeat.turn(now, line.as_deref());
        if beat.ping {
            let sent = self.notifier.watchdog_ping();
            self.check(sent);
        }
        if let Some(line) = beat.status {
            let sent = self.notifier.status(&line);
            self.check(sent);
        }
    }

    /// One last `WATCHDOG=1` as the loop ends: what follows (Cease, hooks, the status
    /// endpoint) is bounded by its own timeouts and by `TimeoutStopSec`.
    pub fn loop_ended(&mut self) {
        if self.heartbeat.next_ping().is_some() {
            let sent = self.notifier.watchdog_ping();
            self.check(sent);
        }
    }

    fn check(&mut self, sent: io::Result<()>) {
        if let Err(error) = sent {
            if self.failed {
                tracing::debug!(%error, "systemd notification failed");
            } else {
                tracing::warn!(%error, "systemd notification failed (NOTIFY_SOCKET)");
                self.failed = true;
            }
        }
    }
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
        for name in ["a", "b", "c"] {
            doc.services.push(std::sync::Arc::new(ServiceStatus {
                name: name.into(),
                state: "down".into(),
                ..ServiceStatus::default()
            }));
        }
        assert_eq!(
            status_line(&doc),
            "ready; services 1/6 up (ntp held, web down, a down, 2 more); peers 1/2 established"
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

    #[test]
    fn the_watchdog_is_pinged_by_the_loops_turns_at_half_the_period_and_never_without_them() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut h = Heartbeat::new(Some(ms(1000)), t0);
        assert_eq!(h.next_ping(), Some(t0));
        // The first turn pings; the next ping is due half a period later.
        assert!(h.turn(t0, Some("a")).ping);
        assert_eq!(h.next_ping(), Some(t0 + ms(500)));
        assert!(!h.turn(t0 + ms(100), Some("a")).ping);
        assert!(!h.turn(t0 + ms(499), Some("a")).ping);
        assert!(h.turn(t0 + ms(500), Some("a")).ping);
        // A loop stuck for ten seconds sent nothing meanwhile (there is no timer of its
        // own: pings exist only as the result of a turn); when it comes round it pings
        // once, not twenty times, and the next is due half a period after that turn.
        assert_eq!(h.next_ping(), Some(t0 + ms(1000)));
        assert!(h.turn(t0 + ms(10_500), Some("a")).ping);
        assert!(!h.turn(t0 + ms(10_600), Some("a")).ping);
        assert_eq!(h.next_ping(), Some(t0 + ms(11_000)));
    }

    #[test]
    fn the_status_line_is_sent_when_it_changes_only() {
        let t0 = Instant::now();
        let mut h = Heartbeat::new(None, t0);
        assert_eq!(h.next_ping(), None);
        assert_eq!(
            h.turn(t0, Some("ready; x")),
            Beat {
                ping: false,
                status: Some("ready; x".into())
            }
        );
        assert_eq!(h.turn(t0, Some("ready; x")), Beat::default());
        h.status_sent("stopping; x");
        assert_eq!(h.turn(t0, Some("stopping; x")), Beat::default());
        assert_eq!(
            h.turn(t0, Some("stopping; y")).status.as_deref(),
            Some("stopping; y")
        );
        // A turn that published nothing new does not look at the status at all.
        assert_eq!(h.turn(t0, None).status, None);
    }

    #[test]
    fn a_zero_watchdog_period_or_no_socket_means_no_pings() {
        let t0 = Instant::now();
        assert_eq!(Heartbeat::new(Some(Duration::ZERO), t0).next_ping(), None);
        let link = Link::new(Notifier::new(None, Some(Duration::from_secs(1))), t0);
        assert_eq!(link.next_ping(), None);
    }

    #[test]
    fn the_link_sends_ready_status_pings_reloading_and_stopping() {
        let (path, sock) = temp_socket("link");
        let t0 = Instant::now();
        let mut link = Link::new(
            Notifier::new(Some(path.clone()), Some(Duration::from_secs(2))),
            t0,
        );
        let mut doc = StatusDocument::default();
        doc.daemon.ready = true;
        link.ready(&doc);
        assert_eq!(
            recv(&sock),
            "READY=1\nSTATUS=ready; services 0/0 up; peers 0/0 established\n"
        );
        // Same line: only the ping.
        link.turn(t0, Some(&doc));
        assert_eq!(recv(&sock), "WATCHDOG=1\n");
        link.turn(t0 + Duration::from_millis(10), Some(&doc));
        link.reloading();
        assert!(recv(&sock).starts_with("RELOADING=1\nMONOTONIC_USEC="));
        link.stopping(&doc);
        assert_eq!(
            recv(&sock),
            "STOPPING=1\nSTATUS=stopping; services 0/0 up; peers 0/0 established\n"
        );
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
