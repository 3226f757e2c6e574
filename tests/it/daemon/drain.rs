//! Drains and stops (RFC 8326): GRACEFUL_SHUTDOWN before the withdrawal, then the Cease
//! on a stop; drain files and the control API keep the session up.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

#[tokio::test]
async fn stop_drains_with_graceful_shutdown_then_withdraws_then_sends_cease() {
    let (_target, mut d) = announced(&Setup::default()).await;
    d.stop().await;

    // RFC 8326 §4: the same route again, tagged GRACEFUL_SHUTDOWN.
    let u = d.update().await;
    assert_v4_announcement(&u, 0);
    assert_eq!(communities(&u), vec![Community::GRACEFUL_SHUTDOWN], "{u:?}");

    // After drain_time: the withdrawal, on the still open session.
    let u = d.update().await;
    assert_v4_withdrawal(&u);

    // Then Cease / Administrative Shutdown (RFC 4486 §4) with an RFC 9003 communication.
    let n = match d.peer.recv_skip_keepalives().await {
        Ok(Message::Notification(n)) => n,
        other => panic!("expected the Cease NOTIFICATION next, got {other:?}"),
    };
    assert_eq!((n.code, n.subcode), (ErrorCode::Cease, 2), "{n:?}");
    assert_eq!(
        n.shutdown_communication().map(|c| c.0).as_deref(),
        Some("daemon stopping")
    );
    d.peer.expect_closed(WAIT).await;
    d.finished().await;
}

#[tokio::test]
async fn stop_while_withdrawn_sends_only_the_cease() {
    let (target, mut d) = announced(&Setup::default()).await;
    target.set(Answer::Fail);
    assert_v4_withdrawal(&d.update().await);
    d.stop().await;
    // Nothing is announced, so there is nothing to drain: no UPDATE before the Cease.
    match d.peer.recv_skip_keepalives().await {
        Ok(Message::Notification(n)) => assert_eq!((n.code, n.subcode), (ErrorCode::Cease, 2)),
        other => panic!("expected the Cease NOTIFICATION, got {other:?}"),
    }
    d.peer.expect_closed(WAIT).await;
    d.finished().await;
}

#[tokio::test]
async fn stop_before_the_service_ever_came_up_sends_only_the_cease() {
    let logs = Logs::default();
    let _guard = logs.capture();
    let target = Target::start(Answer::Fail).await;
    let mut d = Daemon::start(&Setup::default(), &target).await;
    target.wait_served("two failures", |_, f| f >= 2).await;
    d.stop().await;
    match d.peer.recv_skip_keepalives().await {
        Ok(Message::Notification(n)) => assert_eq!((n.code, n.subcode), (ErrorCode::Cease, 2)),
        other => panic!("expected the Cease NOTIFICATION, got {other:?}"),
    }
    d.peer.expect_closed(WAIT).await;
    d.finished().await;
    let logs = logs.text();
    assert!(!logs.contains("not every peer confirmed"), "{logs}");
}

#[tokio::test]
async fn stop_with_a_peer_that_never_connected_does_not_wait_for_it() {
    let logs = Logs::default();
    let _guard = logs.capture();
    // Failing from the start: the desired routes never change, so the peer task never
    // reports them as "flushed" through a route change.
    let target = Target::start(Answer::Fail).await;
    // Nobody listens on this port: the session never comes up.
    let closed = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let status_port = free_port();
    let text = config_text(&Setup::default(), closed, status_port, target.addr);
    let config = load_str(&text, "daemon-it.toml").unwrap();
    let (signals, rx) = mpsc::channel(4);
    let task = tokio::spawn(run(config, RunOptions::default(), rx));
    wait_state(status_port, "starting").await;
    target.wait_served("two failures", |_, f| f >= 2).await;
    signals.send(DaemonSignal::Stop).await.unwrap();
    match tokio::time::timeout(WAIT, task).await {
        Ok(Ok(Ok(()))) => {}
        other => panic!("run() did not end cleanly: {other:?}"),
    }
    // A peer without a session holds none of our routes: there is nothing to confirm.
    let logs = logs.text();
    assert!(!logs.contains("not every peer confirmed"), "{logs}");
}

#[tokio::test]
async fn stopping_a_depreferred_service_never_makes_it_more_attractive() {
    let setup = Setup {
        service_extra: "on_down = \"deprefer\"",
        ..Setup::default()
    };
    let (target, mut d) = announced(&setup).await;
    target.set(Answer::Fail);
    assert_v4_announcement(&d.update().await, 3);

    d.stop().await;
    // Whatever is re-announced while draining keeps the de-preference (a router that
    // ignores GRACEFUL_SHUTDOWN must not start preferring the sick site), then the
    // withdrawal, then the Cease.
    let mut last = None;
    for _ in 0..4 {
        match d.peer.recv_skip_keepalives().await {
            Ok(Message::Update(u)) if !u.nlri.is_empty() => {
                assert_v4_announcement(&u, 3);
                assert!(
                    communities(&u).contains(&Community::GRACEFUL_SHUTDOWN),
                    "{u:?}"
                );
                last = Some(u);
            }
            Ok(Message::Update(u)) => {
                assert_v4_withdrawal(&u);
                last = Some(u);
            }
            Ok(Message::Notification(n)) => {
                assert_eq!((n.code, n.subcode), (ErrorCode::Cease, 2));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        last.is_some_and(|u| !u.withdrawn.is_empty()),
        "no withdrawal before the Cease"
    );
    d.peer.expect_closed(WAIT).await;
    d.finished().await;
}

#[tokio::test]
async fn a_drain_file_drains_with_graceful_shutdown_and_keeps_the_session_up() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("web.drain");
    let extra = format!("drain_file = \"{}\"", file.display());
    let setup = Setup {
        service_extra: &extra,
        ..Setup::default()
    };
    let (_target, mut d) = announced(&setup).await;

    touch(&file);
    let u = d.update().await;
    assert_v4_announcement(&u, 0);
    assert_eq!(communities(&u), vec![Community::GRACEFUL_SHUTDOWN], "{u:?}");
    assert_v4_withdrawal(&d.update().await);
    // The session stays up: no NOTIFICATION, no close, and it still answers.
    d.quiet_for(3 * INTERVAL, "drained, session kept").await;
    d.wait_state("drained").await;

    std::fs::remove_file(&file).unwrap();
    let u = d.update().await;
    assert_v4_announcement(&u, 0);
    assert!(communities(&u).is_empty(), "{u:?}");
    d.shutdown().await;
}

fn touch(p: &Path) {
    std::fs::write(p, b"maintenance\n").unwrap();
}

#[tokio::test]
async fn a_drain_file_present_at_start_keeps_a_healthy_service_unannounced() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("web.drain");
    touch(&file);
    let extra = format!("drain_file = \"{}\"", file.display());
    let setup = Setup {
        service_extra: &extra,
        ..Setup::default()
    };
    let target = Target::start(Answer::Pass).await;
    let mut d = Daemon::start(&setup, &target).await;
    target.wait_served("four passes", |p, _| p >= 4).await;
    d.wait_state("drained").await;
    d.quiet_for(2 * INTERVAL, "drained from the start").await;

    std::fs::remove_file(&file).unwrap();
    let u = d.update().await;
    assert_v4_announcement(&u, 0);
    assert!(communities(&u).is_empty(), "{u:?}");
    d.shutdown().await;
}

#[tokio::test]
async fn health_failing_during_a_drain_withdraws_at_once() {
    // A drain time far beyond every wait here: the withdrawal can only come from the
    // health failure ("a sick site withdraws at once"), not from the end of the drain.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("web.drain");
    let extra = format!("drain_file = \"{}\"", file.display());
    let setup = Setup {
        service_extra: &extra,
        drain_time: "1h",
        ..Setup::default()
    };
    let (target, mut d) = announced(&setup).await;
    touch(&file);
    let u = d.update().await;
    assert_eq!(communities(&u), vec![Community::GRACEFUL_SHUTDOWN], "{u:?}");
    d.wait_state("draining").await;

    target.set(Answer::Fail);
    assert_v4_withdrawal(&d.update().await);
    d.wait_state("drained").await;
    d.quiet_for(2 * INTERVAL, "withdrawn, session kept").await;
    d.shutdown().await;
}

#[tokio::test]
async fn operator_drain_through_the_control_api_drains_and_undrain_reannounces() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token-for-tests\n").unwrap();
    let target = Target::start(Answer::Pass).await;
    let status_extra = format!("token_file = \"{}\"", token_file.display());
    let setup = Setup {
        status_extra: &status_extra,
        ..Setup::default()
    };
    let mut d = Daemon::start(&setup, &target).await;
    let status_port = d.status_port;
    assert_v4_announcement(&d.update().await, 0);

    let (code, body) = post(
        status_port,
        "/services/web/drain",
        "s3cret-token-for-tests",
        r#"{"reason": "maintenance"}"#,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let u = d.update().await;
    assert_v4_announcement(&u, 0);
    assert_eq!(communities(&u), vec![Community::GRACEFUL_SHUTDOWN], "{u:?}");
    assert_v4_withdrawal(&d.update().await);
    d.quiet_for(2 * INTERVAL, "drained by the operator, session kept")
        .await;

    let (code, body) = post(
        status_port,
        "/services/web/undrain",
        "s3cret-token-for-tests",
        "",
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let u = d.update().await;
    assert_v4_announcement(&u, 0);
    assert!(communities(&u).is_empty(), "{u:?}");
    d.shutdown().await;
}
