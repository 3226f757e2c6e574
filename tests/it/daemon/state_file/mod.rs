//! State that survives a restart (issue 11 item 6), through the real `anyguard` binary
//! killed with SIGKILL (no drain, no clean-up): an operator drain made through the control
//! API is still in force after the restart — the route is never sent again — and the
//! service addresses the killed daemon left on the interface are removed at the next
//! start when their service is not up.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use nix::sys::signal::Signal;

use super::process::Process;
use super::*;

mod addresses;

const TOKEN: &str = "s3cret-token-for-tests";

/// One scenario's files: config, log, state directory.
struct Files {
    dir: tempfile::TempDir,
    config: PathBuf,
    state_dir: PathBuf,
}

impl Files {
    /// A config for `setup` (plus a control token and `state_dir`) in a fresh directory.
    fn new(setup: &Setup<'_>, peer: SocketAddr, status_port: u16, target: SocketAddr) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
        let state_dir = dir.path().join("state");
        let status_extra = format!(
            "{}\ntoken_file = \"{}\"",
            setup.status_extra,
            token.display()
        );
        let setup = Setup {
            status_extra: &status_extra,
            ..*setup
        };
        let text = format!(
            "state_dir = \"{}\"\n{}",
            state_dir.display(),
            config_text(&setup, peer, status_port, target)
        );
        let config = dir.path().join("anyguard.toml");
        std::fs::write(&config, text).unwrap();
        Files {
            dir,
            config,
            state_dir,
        }
    }

    /// Starts the binary on the config, its output appended to `anyguard.log`, with
    /// `path_dir` (a fake `ip`) first on `PATH` when given.
    fn spawn(&self, path_dir: Option<&Path>) -> Process {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("anyguard.log"))
            .unwrap();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_anyguard"));
        command
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .env_remove("STATE_DIRECTORY")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some(dir) = path_dir {
            let path = std::env::var("PATH").unwrap_or_default();
            command.env("PATH", format!("{}:{path}", dir.display()));
        }
        Process(command.spawn().unwrap())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("anyguard.log")).unwrap_or_default()
    }

    /// The state file once `f` holds for it (bounded).
    async fn state_when(&self, f: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        for _ in 0..250 {
            let s = self.state();
            if f(&s) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("state file never as expected: {}", self.state());
    }

    fn state(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.state_dir.join("state.json")).unwrap();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }
}

/// SIGKILL, and the exit seen (bounded).
async fn kill(daemon: &mut Process) {
    daemon.signal(Signal::SIGKILL);
    let status = daemon.exit().await;
    assert!(!status.success(), "{status:?}");
}

/// `/status` of the daemon on `port`, once it answers (bounded).
async fn status_doc(port: u16) -> serde_json::Value {
    for _ in 0..250 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            let url = format!("http://127.0.0.1:{port}/status");
            let (_, _, body) = crate::status_http::request(Method::GET, &url, None, "").await;
            return serde_json::from_slice(&body).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the status endpoint on port {port} never answered");
}

/// The daemon connects to `listener`; the session is established (hold time 0: no
/// KEEPALIVEs, every message seen is a decision).
async fn session(listener: &TcpListener) -> FakePeer {
    let mut peer = FakePeer::accept(listener).await;
    peer.establish(fakepeer::open(PEER_ASN, PEER_ID, 0, true, false))
        .await;
    peer
}

/// Asserts that nothing at all arrives within `d` (and the session is still open).
async fn quiet(peer: &mut FakePeer, d: Duration, why: &str) {
    match peer.recv_within(d).await {
        Err(FakeError::Timeout) => {}
        other => panic!("{why}: expected silence, got {other:?}"),
    }
}

#[tokio::test]
async fn an_operator_drain_survives_sigkill_and_the_restarted_daemon_never_announces_it() {
    let target = Target::start(Answer::Pass).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let status_port = free_port();
    let files = Files::new(
        &Setup::default(),
        listener.local_addr().unwrap(),
        status_port,
        target.addr,
    );

    let mut daemon = files.spawn(None);
    let mut peer = session(&listener).await;
    assert_v4_announcement(&peer.expect_update().await, 0);
    let (code, body) = post(
        status_port,
        "/services/web/drain",
        TOKEN,
        r#"{"reason": "maintenance rack 4"}"#,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("saved in"), "{body}");
    let u = peer.expect_update().await;
    assert_eq!(communities(&u), vec![Community::GRACEFUL_SHUTDOWN], "{u:?}");
    assert_v4_withdrawal(&peer.expect_update().await);
    // The file says the drain withdrew the service (written right after the UPDATE).
    let saved = files
        .state_when(|s| s["drains"]["web"]["withdrawn"] == true)
        .await;
    assert_eq!(saved["version"], 1, "{saved}");
    assert_eq!(
        saved["drains"]["web"]["reason"], "maintenance rack 4",
        "{saved}"
    );

    // Killed: no drain, no Cease, nothing written at exit.
    kill(&mut daemon).await;
    peer.expect_closed(WAIT).await;

    // The restarted daemon, checks passing: the drain holds from its first evaluation on.
    let passes_before = target.served().0;
    let mut daemon = files.spawn(None);
    let mut peer = session(&listener).await;
    target
        .wait_served("four passes after the restart", |p, _| {
            p >= passes_before + 4
        })
        .await;
    wait_state(status_port, "drained").await;
    quiet(
        &mut peer,
        3 * INTERVAL,
        "drained before the restart: nothing may be sent",
    )
    .await;
    let doc = status_doc(status_port).await;
    let reason = doc["services"][0]["reason"].as_str().unwrap();
    let state_path = files.state_dir.join("state.json");
    assert_eq!(
        reason,
        format!(
            "drained by operator (restored from state file {}, drained at {}): maintenance rack 4",
            state_path.display(),
            saved["drains"]["web"]["at"].as_str().unwrap()
        ),
        "{doc}"
    );
    assert_eq!(
        doc["daemon"]["state_file"]["path"],
        state_path.display().to_string(),
        "{doc}"
    );
    assert_eq!(doc["daemon"]["state_file"]["drains"][0], "web", "{doc}");

    // Undrain: announced again, and the file forgets the drain.
    let (code, body) = post(status_port, "/services/web/undrain", TOKEN, "").await;
    assert_eq!(code, 200, "{body}");
    let u = peer.expect_update().await;
    assert_v4_announcement(&u, 0);
    assert!(communities(&u).is_empty(), "{u:?}");
    let saved = files.state();
    assert_eq!(saved["drains"], serde_json::json!({}), "{saved}");
    // The routes go out before the loop publishes its status (issue 13: the peer task
    // writes the UPDATE while the turn goes on), so /status may show the write a moment
    // after the UPDATE arrived.
    let mut doc = status_doc(status_port).await;
    for _ in 0..100 {
        if doc["daemon"]["state_file"]["last_write"]["ok"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        doc = status_doc(status_port).await;
    }
    assert_eq!(
        doc["daemon"]["state_file"]["last_write"]["ok"], true,
        "{doc}"
    );

    daemon.signal(Signal::SIGTERM);
    let status = daemon.exit().await;
    assert!(status.success(), "exit {status:?}; log:\n{}", files.log());
    assert!(
        files
            .log()
            .contains("operator drain restored from the state file"),
        "{}",
        files.log()
    );
}

#[tokio::test]
async fn a_corrupt_state_file_stops_the_start_with_its_path_line_and_column() {
    let target = Target::start(Answer::Pass).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let files = Files::new(
        &Setup::default(),
        listener.local_addr().unwrap(),
        free_port(),
        target.addr,
    );
    std::fs::create_dir(&files.state_dir).unwrap();
    let path = files.state_dir.join("state.json");
    // Cut short, as a file copied by hand might be.
    std::fs::write(
        &path,
        "{\"version\": 1,\n \"drains\": {\"web\": {\"reason\": \"maint",
    )
    .unwrap();
    let mut daemon = files.spawn(None);
    let status = daemon.exit().await;
    assert!(!status.success(), "started anyway: {status:?}");
    let log = files.log();
    assert!(
        log.contains(&format!(
            "anyguard: state file {}: line 2, column 36: EOF while parsing a string; the \
             daemon does not start without it",
            path.display()
        )),
        "{log}"
    );
    // Nothing was started: no session was opened.
    assert!(
        tokio::time::timeout(3 * INTERVAL, listener.accept())
            .await
            .is_err(),
        "a session was opened"
    );
}

#[tokio::test]
async fn a_saved_drain_outlives_its_service_and_drains_it_again_when_a_reload_brings_it_back() {
    let target = Target::start(Answer::Pass).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let status_port = free_port();
    let files = Files::new(
        &Setup::default(),
        listener.local_addr().unwrap(),
        status_port,
        target.addr,
    );
    let text = std::fs::read_to_string(&files.config).unwrap();
    let config = anyguard::config::load(&files.config).unwrap_or_else(|e| panic!("{e}"));
    let options = RunOptions {
        config_path: Some(files.config.clone()),
        ..RunOptions::default()
    };
    let mut d = Daemon::launch(&listener, status_port, config, options, false).await;
    assert_v4_announcement(&d.update().await, 0);
    let (code, body) = post(
        status_port,
        "/services/web/drain",
        TOKEN,
        r#"{"reason": "moved"}"#,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_v4_announcement(&d.update().await, 0); // GRACEFUL_SHUTDOWN
    assert_v4_withdrawal(&d.update().await);

    // Renamed away by a reload: the new service announces, the drain of `web` is kept.
    let renamed = text.replace("name = \"web\"", "name = \"www\"");
    std::fs::write(&files.config, &renamed).unwrap();
    d.signals.send(DaemonSignal::Reload).await.unwrap();
    assert_v4_announcement(&d.update().await, 0);
    let doc = status_doc(status_port).await;
    assert_eq!(doc["services"][0]["name"], "www", "{doc}");
    assert_eq!(
        doc["daemon"]["state_file"]["drains"],
        serde_json::json!(["web"]),
        "{doc}"
    );

    // Back by a reload: drained as the operator left it, the route withdrawn.
    std::fs::write(&files.config, &text).unwrap();
    d.signals.send(DaemonSignal::Reload).await.unwrap();
    assert_v4_withdrawal(&d.update().await);
    d.wait_state("drained").await;
    let doc = status_doc(status_port).await;
    let reason = doc["services"][0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("drained by operator (restored from state file ")
            && reason.ends_with("): moved"),
        "{doc}"
    );
    d.quiet_for(3 * INTERVAL, "drained again").await;

    // Away again; undrain of the name the config no longer has removes the saved drain.
    std::fs::write(&files.config, &renamed).unwrap();
    d.signals.send(DaemonSignal::Reload).await.unwrap();
    assert_v4_announcement(&d.update().await, 0);
    let (code, body) = post(status_port, "/services/web/undrain", TOKEN, "").await;
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("service web is not in the config; its drain is removed from the state file"),
        "{body}"
    );
    assert_eq!(files.state()["drains"], serde_json::json!({}));
    let (code, body) = post(status_port, "/services/web/undrain", TOKEN, "").await;
    assert_eq!(code, 404, "nothing left to undrain: {body}");
    d.shutdown().await;
}

#[tokio::test]
async fn a_drain_that_cannot_be_saved_is_in_force_said_so_and_saved_once_the_file_can_be_written() {
    let target = Target::start(Answer::Pass).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let status_port = free_port();
    let files = Files::new(
        &Setup::default(),
        listener.local_addr().unwrap(),
        status_port,
        target.addr,
    );
    let config = anyguard::config::load(&files.config).unwrap_or_else(|e| panic!("{e}"));
    let mut d = Daemon::launch(&listener, status_port, config, RunOptions::default(), false).await;
    assert_v4_announcement(&d.update().await, 0);

    // The state directory is a regular file now (permissions would not stop root).
    std::fs::write(&files.state_dir, "").unwrap();
    let (code, body) = post(
        status_port,
        "/services/web/drain",
        TOKEN,
        r#"{"reason": "r"}"#,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("NOT saved, it is lost at a restart: state file "),
        "{body}"
    );
    // In force all the same.
    assert_v4_announcement(&d.update().await, 0); // GRACEFUL_SHUTDOWN
    assert_v4_withdrawal(&d.update().await);
    let doc = status_doc(status_port).await;
    let write = &doc["daemon"]["state_file"]["last_write"];
    assert_eq!(write["ok"], false, "{doc}");
    assert!(
        write["error"]
            .as_str()
            .unwrap()
            .starts_with(&format!("create directory {}: ", files.state_dir.display())),
        "{doc}"
    );
    let url = format!("http://127.0.0.1:{status_port}/metrics");
    let (_, _, body) = crate::status_http::request(Method::GET, &url, None, "").await;
    let metrics = String::from_utf8_lossy(&body).into_owned();
    assert!(
        metrics.contains("anyguard_state_file_last_write_successful 0"),
        "{metrics}"
    );

    // Once the directory can be made, the retry writes the drain.
    std::fs::remove_file(&files.state_dir).unwrap();
    for _ in 0..250 {
        if files.state_dir.join("state.json").exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(files.state()["drains"]["web"]["reason"], "r");
    let mut ok = serde_json::Value::Null;
    for _ in 0..250 {
        ok = status_doc(status_port).await["daemon"]["state_file"]["last_write"]["ok"].clone();
        if ok == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ok, true);
    d.shutdown().await;
}

/// The fleet file of [`a_drain_the_guard_held_is_held_again_after_sigkill_not_withdrawn`]:
/// sites a and b on loopback status ports, `web` at `min_sites = 1`, fast polls.
fn fleet_toml(a_port: u16, b_port: u16) -> String {
    format!(
        "[poll]\ninterval = \"200ms\"\ntimeout = \"150ms\"\nstale_after = \"1s\"\n\
         intent_wait = \"2s\"\n\n\
         [[site]]\nname = \"a\"\nstatus_url = \"http://127.0.0.1:{a_port}/status\"\n\n\
         [[site]]\nname = \"b\"\nstatus_url = \"http://127.0.0.1:{b_port}/status\"\n\n\
         [[service]]\nname = \"web\"\nmin_sites = 1\n"
    )
}

/// An unforced drain the all-sites guard held (the other site did not announce) is
/// restored after SIGKILL as a held drain: the restarted site announces again and keeps
/// announcing while the guard holds, then withdraws through the guard once the other
/// site announces. Restored as withdrawn, a drain held at every site would take the
/// service away from every site at a fleet-wide restart.
#[tokio::test]
async fn a_drain_the_guard_held_is_held_again_after_sigkill_not_withdrawn() {
    let (a_port, b_port) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let fleet = dir.path().join("fleet.toml");
    std::fs::write(&fleet, fleet_toml(a_port, b_port)).unwrap();
    let fleet_table = |site: &str| {
        format!(
            "\n[fleet]\npath = \"{}\"\nsite = \"{site}\"\n",
            fleet.display()
        )
    };

    // Site b, in this process: web's checks fail, so b does not announce it.
    let target_b = Target::start(Answer::Fail).await;
    let listener_b = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let text_b = config_text(
        &Setup::default(),
        listener_b.local_addr().unwrap(),
        b_port,
        target_b.addr,
    ) + &fleet_table("b");
    let config_b = load_str(&text_b, "b.toml").unwrap_or_else(|e| panic!("{e}\n{text_b}"));
    let mut b = Daemon::launch(&listener_b, b_port, config_b, RunOptions::default(), false).await;
    b.wait_state("down").await;

    // Site a, the real binary: web healthy and announced.
    let target_a = Target::start(Answer::Pass).await;
    let listener_a = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let files = Files::new(
        &Setup::default(),
        listener_a.local_addr().unwrap(),
        a_port,
        target_a.addr,
    );
    let text_a = std::fs::read_to_string(&files.config).unwrap() + &fleet_table("a");
    std::fs::write(&files.config, text_a).unwrap();
    let mut daemon = files.spawn(None);
    let mut peer = session(&listener_a).await;
    assert_v4_announcement(&peer.expect_update().await, 0);

    // Drained without force: held, b announces nothing.
    let (code, body) = post(
        a_port,
        "/services/web/drain",
        TOKEN,
        r#"{"reason": "maint"}"#,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    wait_state(a_port, "held").await;
    quiet(
        &mut peer,
        3 * INTERVAL,
        "held by the guard: still announced",
    )
    .await;
    let saved = files.state();
    assert_eq!(saved["drains"]["web"]["withdrawn"], false, "{saved}");

    // Killed and restarted: announced again (as before the kill), then held again.
    kill(&mut daemon).await;
    peer.expect_closed(WAIT).await;
    let mut daemon = files.spawn(None);
    let mut peer = session(&listener_a).await;
    assert_v4_announcement(&peer.expect_update().await, 0);
    wait_state(a_port, "held").await;
    let doc = status_doc(a_port).await;
    let reason = doc["services"][0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("drained by operator (restored from state file ")
            && reason.contains("): maint, but "),
        "{doc}"
    );
    quiet(&mut peer, 3 * INTERVAL, "held again: still announced").await;

    // b announces: the drain completes through the guard (graceful shutdown, withdrawal),
    // and the file says it withdrew.
    target_b.set(Answer::Pass);
    assert_v4_announcement(&b.update().await, 0);
    let u = peer.expect_update().await;
    assert_eq!(communities(&u), vec![Community::GRACEFUL_SHUTDOWN], "{u:?}");
    assert_v4_withdrawal(&peer.expect_update().await);
    files
        .state_when(|s| s["drains"]["web"]["withdrawn"] == true)
        .await;

    daemon.signal(Signal::SIGTERM);
    let status = daemon.exit().await;
    assert!(status.success(), "exit {status:?}; log:\n{}", files.log());
    b.shutdown().await;
}

/// A dry run honours the saved drains (a drained service is shown drained, restored) but
/// never writes the state file: the real daemon may be running with the same one.
#[tokio::test]
async fn a_dry_run_reads_the_state_file_and_never_writes_it() {
    let target = Target::start(Answer::Pass).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let status_port = free_port();
    let files = Files::new(
        &Setup::default(),
        listener.local_addr().unwrap(),
        status_port,
        target.addr,
    );
    std::fs::create_dir(&files.state_dir).unwrap();
    let path = files.state_dir.join("state.json");
    let text = r#"{"version": 1, "drains": {"web": {"reason": "rack 4", "at": "2026-12-07T09:00:00.000Z", "withdrawn": true}}}"#;
    std::fs::write(&path, text).unwrap();
    let config = anyguard::config::load(&files.config).unwrap_or_else(|e| panic!("{e}"));
    let (signals, rx) = mpsc::channel(4);
    let options = RunOptions {
        dry_run: true,
        ..RunOptions::default()
    };
    let task = tokio::spawn(run(config, options, rx));
    wait_state(status_port, "drained").await;
    let doc = status_doc(status_port).await;
    assert_eq!(
        doc["services"][0]["reason"],
        format!(
            "drained by operator (restored from state file {}, drained at 2026-12-07T09:00:00.000Z): rack 4",
            path.display()
        ),
        "{doc}"
    );
    let (code, body) = post(status_port, "/services/web/undrain", TOKEN, "").await;
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("undrained; not saved (dry run: the state file is never written)"),
        "{body}"
    );
    wait_state(status_port, "up").await;
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        text,
        "the dry run wrote the file"
    );
    let doc = status_doc(status_port).await;
    assert_eq!(
        doc["daemon"]["state_file"]["last_write"],
        serde_json::Value::Null,
        "{doc}"
    );
    signals.send(DaemonSignal::Stop).await.unwrap();
    match tokio::time::timeout(WAIT, task).await {
        Ok(Ok(Ok(()))) => {}
        other => panic!("run() did not end cleanly: {other:?}"),
    }
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
}
