//! The collision race of issue 12 item 7 through the whole daemon (`coordinator::run`,
//! `mode = "both"`, `[bgp] listen`): what `/status`, the logs and the router see when the
//! session moves from the daemon's connection to the one the router kept.

use super::*;

/// The daemon's one peer in `/status`.
async fn peer_doc(port: u16) -> serde_json::Value {
    let url = format!("http://127.0.0.1:{port}/status");
    let (_, _, body) = crate::status_http::request(Method::GET, &url, None, "").await;
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    doc["peers"][0].clone()
}

async fn wait_peer(port: u16, f: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    for _ in 0..250 {
        last = peer_doc(port).await;
        if f(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("peer never matched; last {last}");
}

#[tokio::test]
async fn the_daemon_keeps_one_session_through_the_late_open_collision_race() {
    let logs = Logs::default();
    let _capture = logs.capture();
    let target = Target::start(Answer::Pass).await;
    let router = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let status_port = free_port();
    let bgp_port = free_port();
    let setup = Setup {
        peer_extra: "mode = \"both\"",
        ..Setup::default()
    };
    let text = config_text(
        &setup,
        router.local_addr().unwrap(),
        status_port,
        target.addr,
    )
    .replace(
        "[status]",
        &format!("[bgp]\nlisten = \"127.0.0.1:{bgp_port}\"\n\n[status]"),
    );
    let config = load_str(&text, "collision.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
    let (signals, rx) = mpsc::channel(4);
    let task = tokio::spawn(run(config, RunOptions::default(), rx));
    wait_state(status_port, "up").await;

    // The router's identifier is higher than the daemon's 198.18.0.2: by RFC 4271 §6.8 the
    // connection the router opens is the one to keep.
    let router_id = Ipv4Addr::new(198, 18, 0, 9);
    let open = || Message::Open(fakepeer::open(PEER_ASN, router_id, 9, true, false));
    // C1, the daemon's connection to the router: its OPEN.
    let mut c1 = FakePeer::accept(&router).await;
    c1.expect_open().await;
    // C2, the router's connection to the daemon: the daemon's OPEN there too.
    let mut c2 = None;
    for _ in 0..100 {
        if let Ok(c) = FakePeer::connect(SocketAddr::from(([127, 0, 0, 1], bgp_port))).await {
            c2 = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut c2 = c2.expect("the daemon's BGP listener");
    c2.expect_open().await;
    for c in [&mut c1, &mut c2] {
        c.decode.four_octet_as = true;
        c.encode.four_octet_as = true;
    }
    // Established on C1 for the daemon, OpenConfirm for the router (it has not read the
    // daemon's KEEPALIVE) ...
    c1.send(&open()).await;
    c1.send(&Message::Keepalive).await;
    c1.expect_keepalive().await;
    wait_peer(status_port, |p| p["state"] == "established").await;
    c1.expect_update().await;
    wait_state(status_port, "up").await;
    // ... when the router's OPEN arrives on C2. The daemon holds C2 unanswered.
    c2.send(&open()).await;
    match c2.recv_within(Duration::from_millis(300)).await {
        Err(FakeError::Timeout) => {}
        other => panic!("C2 answered before the router's verdict: {other:?}"),
    }
    // The router, in OpenConfirm on C1, keeps C2 (the higher identifier's) as BIRD and
    // FRR do: KEEPALIVE on C2, Cease/Connection Collision Resolution on C1.
    c2.send(&Message::Keepalive).await;
    c1.send(&Message::Notification(
        anyguard_proto::NotificationMessage {
            code: ErrorCode::Cease,
            subcode: 7,
            data: Vec::new(),
        },
    ))
    .await;
    drop(c1);
    // The daemon completes C2 and announces the service there.
    c2.expect_keepalive().await;
    let u = c2.expect_update().await;
    assert_eq!(u.nlri, vec![v4(SERVICE_V4)]);

    // One session: established once, never down; the service stays up.
    let p = wait_peer(status_port, |p| p["state"] == "established").await;
    assert_eq!(p["established_count"], 1, "{p}");
    assert_eq!(p["last_notification_received"]["code"], 6, "{p}");
    assert_eq!(p["last_notification_received"]["subcode"], 7, "{p}");
    assert!(p["last_notification_sent"].is_null(), "{p}");
    assert_eq!(service_state(status_port).await.as_deref(), Some("up"));
    let text = logs.text();
    assert!(text.contains("session moved"), "{text}");
    assert!(!text.contains("session down"), "{text}");

    signals.send(DaemonSignal::Stop).await.unwrap();
    c2.expect_closed(WAIT).await;
    match tokio::time::timeout(WAIT, task).await {
        Ok(Ok(Ok(()))) => {}
        other => panic!("run() did not end cleanly: {other:?}"),
    }
}
