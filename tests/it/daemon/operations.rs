//! Running the daemon: dry run, reload, state-change hooks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

#[tokio::test]
async fn dry_run_logs_every_decision_and_opens_no_session() {
    let logs = Logs::default();
    let _guard = logs.capture();
    let target = Target::start(Answer::Pass).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let status_port = free_port();
    // A hook that would leave a trace: a dry run must not run it.
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("hook-ran");
    let extra = format!("hook = [\"touch\", \"{}\"]", trace.display());
    let setup = Setup {
        service_extra: &extra,
        ..Setup::default()
    };
    let text = config_text(
        &setup,
        listener.local_addr().unwrap(),
        status_port,
        target.addr,
    );
    let config = load_str(&text, "daemon-it.toml").unwrap();
    let (signals, rx) = mpsc::channel(4);
    let options = RunOptions {
        dry_run: true,
        ..RunOptions::default()
    };
    let task = tokio::spawn(run(config, options, rx));
    wait_state(status_port, "up").await;
    target.set(Answer::Fail);
    wait_state(status_port, "down").await;
    signals.send(DaemonSignal::Stop).await.unwrap();
    match tokio::time::timeout(WAIT, task).await {
        Ok(Ok(Ok(()))) => {}
        other => panic!("run() did not end cleanly: {other:?}"),
    }
    // A connection attempt made at any time would be waiting in the backlog.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), listener.accept())
            .await
            .is_err(),
        "the dry run connected to the peer"
    );
    let logs = logs.text();
    for needle in [
        "dry run: no BGP session is opened",
        "service state changed service=web from=\"starting\" to=\"up\"",
        "service state changed service=web from=\"up\" to=\"down\"",
        "dry run: would send to every peer routes=announce 203.0.113.0/24",
        "dry run: would send to every peer routes=withdraw 203.0.113.0/24",
        "dry run: would run the state-change hook service=web hook=touch",
    ] {
        assert!(logs.contains(needle), "{needle:?} not logged:\n{logs}");
    }
    assert!(!trace.exists(), "the dry run ran the hook");
}

#[tokio::test]
async fn reload_applies_a_changed_community_and_a_rejected_config_changes_nothing() {
    let target = Target::start(Answer::Pass).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = listener.local_addr().unwrap();
    let status_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("anyguard.toml");
    let text = config_text(&Setup::default(), peer_addr, status_port, target.addr);
    std::fs::write(&path, &text).unwrap();
    let config = anyguard::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let options = RunOptions {
        config_path: Some(path.clone()),
        ..RunOptions::default()
    };
    let mut d = Daemon::launch(&listener, status_port, config, options, false).await;
    assert_v4_announcement(&d.update().await, 0);

    // A new community on the service: one UPDATE with it, on the same session.
    let with_community = text.replace(
        "[[service.check]]",
        "communities = [\"65010:42\"]\n\n[[service.check]]",
    );
    std::fs::write(&path, &with_community).unwrap();
    d.signals.send(DaemonSignal::Reload).await.unwrap();
    let u = d.update().await;
    assert_v4_announcement(&u, 0);
    assert_eq!(communities(&u), vec![Community::new(65010, 42)], "{u:?}");

    // A config with an unknown key is rejected: nothing changes, the session stays up.
    let broken = with_community.replace("fall = 2", "fall = 2\nfal = 3");
    std::fs::write(&path, broken).unwrap();
    d.signals.send(DaemonSignal::Reload).await.unwrap();
    d.quiet_for(3 * INTERVAL, "rejected reload").await;
    d.wait_state("up").await;

    // The running config (with the community) is still the one in force at stop.
    d.stop().await;
    let u = d.update().await;
    assert_eq!(
        communities(&u),
        vec![Community::new(65010, 42), Community::GRACEFUL_SHUTDOWN],
        "{u:?}"
    );
    assert_v4_withdrawal(&d.update().await);
    d.peer.expect_closed(WAIT).await;
    d.finished().await;
}

#[tokio::test]
async fn hooks_get_every_state_change_in_order_and_a_hung_hook_delays_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hook.log");
    // The hook for "up" hangs until its 5 s timeout; the others return at once.
    let script = format!(
        "echo \"$SERVICE $PREVIOUS_STATE $STATE $PREFIXES\" >> {}; \
         if [ \"$STATE\" = up ]; then sleep 30; fi",
        out.display()
    );
    let extra = format!("hook = [\"sh\", \"-c\", {script:?}]\nhook_timeout = \"5s\"");
    let setup = Setup {
        service_extra: &extra,
        ..Setup::default()
    };
    let (target, mut d) = announced(&setup).await;
    let lines = || {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };

    // The withdrawal goes out while the "up" hook still hangs: hooks never hold an UPDATE.
    target.set(Answer::Fail);
    assert_v4_withdrawal(&d.update().await);
    assert_eq!(lines(), ["web starting up 203.0.113.0/24"]);

    // Once the hung hook is killed, the next change reaches its hook, in order.
    for _ in 0..500 {
        if lines().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        lines(),
        [
            "web starting up 203.0.113.0/24",
            "web up down 203.0.113.0/24"
        ]
    );

    // The stop's change has its hook too, run before run() returns.
    d.shutdown().await;
    assert_eq!(
        lines(),
        [
            "web starting up 203.0.113.0/24",
            "web up down 203.0.113.0/24",
            "web down drained 203.0.113.0/24"
        ]
    );
}

/// The first check of the first service in `/status` on `port`: (config generation,
/// state, rise_count).
async fn check_status(port: u16) -> (u64, String, u64) {
    let url = format!("http://127.0.0.1:{port}/status");
    let (_, _, body) = crate::status_http::request(Method::GET, &url, None, "").await;
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let check = &doc["services"][0]["checks"][0];
    (
        doc["daemon"]["config_generation"].as_u64().unwrap(),
        check["state"].as_str().unwrap().to_string(),
        check["rise_count"].as_u64().unwrap(),
    )
}

#[tokio::test]
async fn a_reload_that_changes_a_check_continues_it_instead_of_starting_it_unknown() {
    let target = Target::start(Answer::Pass).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let status_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("anyguard.toml");
    let text = config_text(
        &Setup::default(),
        listener.local_addr().unwrap(),
        status_port,
        target.addr,
    );
    std::fs::write(&path, &text).unwrap();
    let config = anyguard::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let options = RunOptions {
        config_path: Some(path.clone()),
        ..RunOptions::default()
    };
    let mut d = Daemon::launch(&listener, status_port, config, options, false).await;
    assert_v4_announcement(&d.update().await, 0);

    // Let the check pass well beyond `rise` (bounded wait).
    let mut before = 0;
    for _ in 0..250 {
        before = check_status(status_port).await.2;
        if before >= 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(before >= 6, "the check never passed 6 times in a row");

    // Same check (name and target), new fall: the runner restarts with the new timing.
    std::fs::write(&path, text.replace("fall = 2", "fall = 3")).unwrap();
    d.signals.send(DaemonSignal::Reload).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..250 {
        let (generation, state, rise_count) = check_status(status_port).await;
        if generation == 2 {
            seen.push((state, rise_count));
            if seen.len() == 10 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen.len(), 10, "the reload was never applied");
    // Passes keep counting from where they were: no detour through unknown, which the
    // all-sites guard reads as failing health.
    for (state, rise_count) in &seen {
        assert_eq!(state, "up", "{seen:?}");
        assert!(*rise_count >= before, "passes restarted: {seen:?}");
    }
    d.quiet_for(2 * INTERVAL, "a reload of an unchanged target")
        .await;
    d.shutdown().await;
}

/// Opens the write end of the FIFO at `path` once a reader has it open (bounded wait).
async fn fifo_writer(path: &Path) -> std::fs::File {
    use std::os::unix::fs::OpenOptionsExt;
    for _ in 0..250 {
        // Non-blocking: ENXIO until the daemon has opened the FIFO for reading.
        if let Ok(f) = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
        {
            return f;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the daemon never opened {} for reading", path.display());
}

/// `POST /reload` while the config file hangs (a FIFO nobody writes, as on a hung file
/// system): the read runs off the loop, the endpoint gives up after its wait (5 s) and
/// answers 503, and when the read ends at last the reload is not carried out: the
/// operator was told it failed.
#[tokio::test]
async fn a_control_request_answered_503_is_not_carried_out_later() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token-for-tests\n").unwrap();
    let status_extra = format!("token_file = \"{}\"", token_file.display());
    let setup = Setup {
        status_extra: &status_extra,
        ..Setup::default()
    };

    let target = Target::start(Answer::Pass).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let status_port = free_port();
    let path = dir.path().join("anyguard.toml");
    let text = config_text(
        &setup,
        listener.local_addr().unwrap(),
        status_port,
        target.addr,
    );
    std::fs::write(&path, &text).unwrap();
    let config = anyguard::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let options = RunOptions {
        config_path: Some(path.clone()),
        ..RunOptions::default()
    };
    let mut d = Daemon::launch(&listener, status_port, config, options, false).await;
    assert_v4_announcement(&d.update().await, 0);

    std::fs::remove_file(&path).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo {}", path.display());
    let (code, body) = post(status_port, "/reload", "s3cret-token-for-tests", "").await;
    assert_eq!(code, 503, "{body}");

    // The read ends only now, with a config that would send a new UPDATE (a community):
    // nothing is sent, the running generation stays.
    let changed = text.replace(
        "[[service.check]]",
        "communities = [\"65010:42\"]\n\n[[service.check]]",
    );
    let mut writer = fifo_writer(&path).await;
    writer.write_all(changed.as_bytes()).unwrap();
    drop(writer);
    d.quiet_for(5 * INTERVAL, "a reload answered with 503")
        .await;
    let doc = status_doc(status_port).await;
    assert_eq!(doc["daemon"]["config_generation"], 1, "{doc}");
    assert_eq!(
        doc["daemon"]["last_reload"],
        serde_json::Value::Null,
        "{doc}"
    );
    d.wait_state("up").await;
    d.shutdown().await;
}

/// Starts the daemon with `peer_extra` on its peer, establishes its session, drops it, and
/// says whether the daemon connected again within `window`.
async fn reconnects_within(peer_extra: &str, window: Duration) -> bool {
    let target = Target::start(Answer::Pass).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let status_port = free_port();
    let setup = Setup {
        peer_extra,
        ..Setup::default()
    };
    let text = config_text(
        &setup,
        listener.local_addr().unwrap(),
        status_port,
        target.addr,
    );
    let config = load_str(&text, "daemon-it.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
    let daemon = Daemon::launch(&listener, status_port, config, RunOptions::default(), false).await;
    let Daemon {
        signals,
        task,
        peer,
        ..
    } = daemon;
    // The router resets the session: a failure, so the back-off applies.
    drop(peer);
    let again = tokio::time::timeout(window, listener.accept())
        .await
        .is_ok();
    signals.send(DaemonSignal::Stop).await.unwrap();
    match tokio::time::timeout(WAIT, task).await {
        Ok(Ok(Ok(()))) => {}
        other => panic!("run() did not end cleanly: {other:?}"),
    }
    again
}

#[tokio::test]
async fn a_peers_reconnect_back_off_is_its_own() {
    // Issue 12: `reconnect = { min, max }` per peer. With the default (1 s) the daemon
    // is back within 3 s; with `min = "30s"` it is not.
    let window = Duration::from_secs(3);
    assert!(reconnects_within("", window).await, "default back-off");
    assert!(
        !reconnects_within("reconnect = { min = \"30s\", max = \"2m\" }", window).await,
        "reconnected although the peer's back-off starts at 30 s"
    );
}
