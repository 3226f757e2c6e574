//! The bytes the `anyguard` binary writes for its decisions (issue 13, round 7): its peer
//! tasks run on the coordinator loop's thread (`coordinator::run_on_this_thread`), which
//! yields to them right after publishing routes, and a route change written straight to
//! the socket is confirmed without a round trip through the connection's writer task.
//! What the peer receives must be what the session's Adj-RIB-Out says, in order, byte for
//! byte: every re-announcement the same frame as the first, every withdrawal the RFC 4271
//! §4.3 frame, a route refresh answered with the same frame between decisions, and the
//! stop's withdrawal confirmed written (no wait for the flush deadline).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyguard_proto::{Afi, RefreshSubtype, RouteRefreshMessage, Safi};
use bytes::BytesMut;
use nix::sys::signal::Signal;

use super::process::Process;
use super::*;

/// The withdrawal of 203.0.113.0/24 (RFC 4271 §4.3): marker, length 27, type 2 (UPDATE),
/// withdrawn routes length 4, the prefix (length 24, three octets), no path attributes.
const WITHDRAWAL: [u8; 27] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0x00, 27, 2, 0x00, 4, 24, 203, 0, 113, 0x00, 0x00,
];

/// Flips of the service (down and up again) the test makes.
const FLIPS: usize = 3;

/// The next frame, undecoded, within [`WAIT`] (the peer's hold time is 0: no KEEPALIVEs).
async fn frame(peer: &mut FakePeer, what: &str) -> BytesMut {
    peer.recv_frame_within(WAIT)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e:?}"))
}

fn update_of(peer: &FakePeer, frame: &[u8]) -> UpdateMessage {
    match Message::decode(frame, &peer.decode) {
        Ok(Message::Update(u)) => u,
        other => panic!("expected an UPDATE, got {other:?}"),
    }
}

#[tokio::test]
async fn the_binary_writes_each_decision_as_the_same_bytes_in_order_and_confirms_the_last_withdrawal(
) {
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
    let log = dir.path().join("anyguard.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let mut daemon = Process(
        std::process::Command::new(env!("CARGO_BIN_EXE_anyguard"))
            .arg("run")
            .arg("--config")
            .arg(&path)
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
    let announcement = frame(&mut peer, "the first announcement").await;
    assert_v4_announcement(&update_of(&peer, &announcement), 0);
    wait_state(port, "up").await;

    // RFC 2918 §3: a refresh is answered with the Adj-RIB-Out, written by the peer task
    // itself between decisions: the same frame.
    peer.send(&Message::RouteRefresh(RouteRefreshMessage {
        afi: Afi::Ipv4,
        subtype: RefreshSubtype::Request,
        safi: Safi::Unicast,
    }))
    .await;
    assert_eq!(
        frame(&mut peer, "the refresh").await,
        announcement,
        "refresh"
    );

    for flip in 0..FLIPS {
        target.set(Answer::Fail);
        // A failed service is withdrawn at once (the drain is for stops and operators).
        assert_eq!(
            &frame(&mut peer, "the withdrawal").await[..],
            &WITHDRAWAL[..],
            "flip {flip}"
        );
        wait_state(port, "down").await;

        target.set(Answer::Pass);
        assert_eq!(
            frame(&mut peer, "the re-announcement").await,
            announcement,
            "flip {flip}: the re-announcement is not the first announcement's bytes"
        );
        wait_state(port, "up").await;
    }

    // SIGTERM: drain, withdrawal, Cease; the withdrawal is confirmed written at once (the
    // loop stops without waiting out its flush deadline).
    daemon.signal(Signal::SIGTERM);
    let drain = frame(&mut peer, "the stop's drain").await;
    let drain = update_of(&peer, &drain);
    assert_v4_announcement(&drain, 0);
    assert_eq!(
        communities(&drain),
        vec![Community::GRACEFUL_SHUTDOWN],
        "{drain:?}"
    );
    assert_eq!(
        &frame(&mut peer, "the stop's withdrawal").await[..],
        &WITHDRAWAL[..]
    );
    match peer.recv_skip_keepalives().await {
        Ok(Message::Notification(n)) => {
            assert_eq!((n.code, n.subcode), (ErrorCode::Cease, 2), "{n:?}");
        }
        other => panic!("expected the Cease NOTIFICATION, got {other:?}"),
    }
    peer.expect_closed(WAIT).await;
    let status = daemon.exit().await;
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "exit {status:?}; log:\n{logs}");
    assert!(
        !logs.contains("not every peer confirmed the withdrawals"),
        "the withdrawal written was not confirmed:\n{logs}"
    );
}
