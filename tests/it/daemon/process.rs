//! The `anyguard` binary itself, driven by real signals: SIGHUP reloads, SIGTERM drains
//! (RFC 8326), withdraws, sends the Cease and exits 0.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::*;

/// The daemon process; killed (by its PID) if the test ends while it still runs.
pub(super) struct Process(pub(super) std::process::Child);

impl Process {
    pub(super) fn signal(&self, s: Signal) {
        let pid = i32::try_from(self.0.id()).unwrap();
        kill(Pid::from_raw(pid), s).unwrap();
    }

    /// Waits (bounded) for the exit status.
    pub(super) async fn exit(&mut self) -> std::process::ExitStatus {
        for _ in 0..500 {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("anyguard did not exit within 10 s");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[tokio::test]
async fn the_binary_reloads_on_sighup_and_drains_withdraws_and_ceases_on_sigterm() {
    let target = Target::start(Answer::Pass).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("anyguard.toml");
    let text = config_text(
        &Setup::default(),
        listener.local_addr().unwrap(),
        free_port(),
        target.addr,
    );
    std::fs::write(&path, &text).unwrap();
    let log = dir.path().join("anyguard.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let mut daemon = Process(
        std::process::Command::new(env!("CARGO_BIN_EXE_anyguard"))
            .arg("run")
            .arg("--config")
            .arg(&path)
            // The state file's default directory, as systemd's StateDirectory= sets it:
            // never the host's /var/lib/anyguard.
            .env("STATE_DIRECTORY", dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap(),
    );
    let mut peer = FakePeer::accept(&listener).await;
    peer.establish(fakepeer::open(PEER_ASN, PEER_ID, 0, true, false))
        .await;
    assert_v4_announcement(&peer.expect_update().await, 0);

    // SIGHUP: the file now gives the service a community.
    let with_community = text.replace(
        "[[service.check]]",
        "communities = [\"65010:42\"]\n\n[[service.check]]",
    );
    std::fs::write(&path, &with_community).unwrap();
    daemon.signal(Signal::SIGHUP);
    let u = peer.expect_update().await;
    assert_v4_announcement(&u, 0);
    assert_eq!(communities(&u), vec![Community::new(65010, 42)], "{u:?}");

    // SIGTERM: GRACEFUL_SHUTDOWN, the withdrawal, the Cease, exit 0.
    daemon.signal(Signal::SIGTERM);
    let u = peer.expect_update().await;
    assert_v4_announcement(&u, 0);
    assert_eq!(
        communities(&u),
        vec![Community::new(65010, 42), Community::GRACEFUL_SHUTDOWN],
        "{u:?}"
    );
    assert_v4_withdrawal(&peer.expect_update().await);
    match peer.recv_skip_keepalives().await {
        Ok(Message::Notification(n)) => {
            assert_eq!((n.code, n.subcode), (ErrorCode::Cease, 2), "{n:?}");
            assert_eq!(
                n.shutdown_communication().map(|c| c.0).as_deref(),
                Some("daemon stopping")
            );
        }
        other => panic!("expected the Cease NOTIFICATION, got {other:?}"),
    }
    peer.expect_closed(WAIT).await;
    let status = daemon.exit().await;
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "exit {status:?}; log:\n{logs}");
    assert!(logs.contains("config generation 2 loaded"), "{logs}");
    assert!(
        logs.contains(&format!(
            "state file read path={} drains=0 addresses=0",
            dir.path().join("state.json").display()
        )),
        "{logs}"
    );
}

/// `anyguard status` (docs/status.md) against the running binary: the tables name the
/// service and the peer, `--json` is the `/status` document; SIGINT stops like SIGTERM.
#[tokio::test]
async fn anyguard_status_reads_the_running_binary_and_sigint_stops_it() {
    let target = Target::start(Answer::Pass).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("anyguard.toml");
    let port = free_port();
    let text = config_text(
        &Setup::default(),
        listener.local_addr().unwrap(),
        port,
        target.addr,
    );
    std::fs::write(&path, &text).unwrap();
    let mut daemon = Process(
        std::process::Command::new(env!("CARGO_BIN_EXE_anyguard"))
            .arg("run")
            .arg("--config")
            .arg(&path)
            .env("STATE_DIRECTORY", dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut peer = FakePeer::accept(&listener).await;
    peer.establish(fakepeer::open(PEER_ASN, PEER_ID, 0, true, false))
        .await;
    assert_v4_announcement(&peer.expect_update().await, 0);
    wait_state(port, "up").await;

    let status = move |json: bool| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_anyguard"));
        c.arg("status")
            .arg("--url")
            .arg(format!("http://127.0.0.1:{port}"))
            .env("NO_COLOR", "1");
        if json {
            c.arg("--json");
        }
        c.output().unwrap()
    };
    let out = tokio::task::spawn_blocking(move || (status(false), status(true)))
        .await
        .unwrap();
    let (tables, json) = out;
    let text = String::from_utf8_lossy(&tables.stdout);
    assert!(tables.status.success(), "{tables:?}");
    assert!(text.contains("web") && text.contains("edge"), "{text}");
    assert!(!text.contains('\u{1b}'), "no colour off a terminal: {text}");
    assert!(json.status.success(), "{json:?}");
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["services"][0]["name"], "web", "{doc}");
    assert_eq!(doc["services"][0]["state"], "up", "{doc}");
    assert_eq!(doc["peers"][0]["state"], "established", "{doc}");

    // SIGINT (Ctrl-C): the same graceful stop as SIGTERM, the Cease, exit 0.
    daemon.signal(Signal::SIGINT);
    let mut ceased = false;
    for _ in 0..20 {
        match peer.recv_skip_keepalives().await {
            Ok(Message::Notification(n)) => {
                ceased = n.code == ErrorCode::Cease;
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert!(ceased, "no Cease after SIGINT");
    assert!(daemon.exit().await.success());
}
