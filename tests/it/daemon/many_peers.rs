//! Sixteen peers with the same export policy (issue 15 item 4, the scale finding): each
//! gets, byte for byte, the same UPDATE stream, and that stream is the one in
//! `tests/it/golden/sixteen_peers_updates.hex`, recorded before the peers' Adj-RIB-Out
//! became one map shared between them (`announcer::sendable`) and the UPDATEs were
//! computed by a merge walk (`announcer::diff`). Sharing is a memory change only: the
//! wire must not move.
//!
//! The services are all decided before the sessions come up (the daemon's connections
//! wait in the listeners' backlogs until then), so each peer gets the whole table in one
//! go and the stream does not depend on how the probes' results fell into turns.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::*;

const PEERS: usize = 16;
const SERVICES: usize = 48;
/// The peers' ASNs: `EBGP_ASN + k`, all external (none is `LOCAL_ASN`).
const EBGP_ASN: u32 = 64900;
const GOLDEN: &str = "tests/it/golden/sixteen_peers_updates.hex";

/// A config with `PEERS` external peers (one AS each) and `SERVICES` services, in four
/// attribute groups (plain, a MED, a community, both), plus one service whose only check
/// fails (a closed port) and which is therefore never announced.
fn config_text(peers: &[SocketAddr], status_port: u16, target: SocketAddr) -> String {
    let mut text = format!(
        "router_id = \"198.18.0.2\"\nlocal_asn = {LOCAL_ASN}\n\n[status]\nlisten = \"127.0.0.1:{status_port}\"\n"
    );
    for (k, p) in peers.iter().enumerate() {
        let _ = write!(
            text,
            "\n[[peer]]\nname = \"p{k}\"\naddress = \"{}\"\nport = {}\nremote_asn = {}\nhold_time = \"9s\"\nconnect_retry = \"1s\"\n",
            p.ip(),
            p.port(),
            EBGP_ASN + k as u32
        );
    }
    let check = |url: String| {
        format!("\n[[service.check]]\ntype = \"http\"\nurl = \"{url}\"\ninterval = \"100ms\"\ntimeout = \"50ms\"\nrise = 2\nfall = 2\n")
    };
    for i in 0..SERVICES {
        let _ = write!(
            text,
            "\n[[service]]\nname = \"s{i}\"\nprefixes = [\"203.0.113.{i}/32\"]\n"
        );
        if i % 4 == 1 || i % 4 == 3 {
            let _ = writeln!(text, "med = 20");
        }
        if i % 4 >= 2 {
            let _ = writeln!(text, "communities = [\"{LOCAL_ASN}:7\"]");
        }
        text.push_str(&check(format!("http://{target}/healthz")));
    }
    let _ = write!(
        text,
        "\n[[service]]\nname = \"dead\"\nprefixes = [\"203.0.113.200/32\"]\n"
    );
    text.push_str(&check(format!("http://127.0.0.1:{}/healthz", free_port())));
    text
}

/// Polls `/status` (bounded) until every service is decided: the `SERVICES` live ones up
/// and the dead one down.
async fn wait_all_decided(port: u16) {
    let url = format!("http://127.0.0.1:{port}/status?summary=1");
    let mut last = String::new();
    for _ in 0..250 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            let (_, _, body) = crate::status_http::request(Method::GET, &url, None, "").await;
            let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let states: Vec<&str> = doc["services"]
                .as_array()
                .map(|a| a.iter().filter_map(|s| s["state"].as_str()).collect())
                .unwrap_or_default();
            let up = states.iter().filter(|s| **s == "up").count();
            let down = states.iter().filter(|s| **s == "down").count();
            if up == SERVICES && down == 1 {
                return;
            }
            last = format!("{up} up, {down} down of {}", states.len());
        }
        tokio::time::sleep(INTERVAL / 2).await;
    }
    panic!("services not all decided in time: {last}");
}

/// Every UPDATE frame the peer gets until it holds `want` prefixes, then nothing more for
/// a few intervals.
async fn updates_until(peer: &mut FakePeer, want: usize) -> Vec<u8> {
    let mut stream = Vec::new();
    let mut table: BTreeMap<Ipv4Net, UpdateMessage> = BTreeMap::new();
    for _ in 0..1000 {
        if table.len() == want {
            break;
        }
        let frame = peer.recv_frame_within(WAIT).await.expect("an UPDATE");
        match Message::decode(&frame, &peer.decode).expect("decodes") {
            Message::Keepalive => continue,
            Message::Update(u) => {
                for p in &u.withdrawn {
                    assert!(table.remove(p).is_some(), "withdrawn, never announced: {p}");
                }
                for p in &u.nlri {
                    assert!(
                        table.insert(*p, u.clone()).is_none(),
                        "announced twice: {p}"
                    );
                }
                stream.extend_from_slice(&frame);
            }
            other => panic!("expected UPDATEs, got {other:?}"),
        }
    }
    assert_eq!(table.len(), want, "the peer's table");
    for (p, u) in &table {
        let last = p.addr().octets()[3] as usize;
        assert!(
            last < SERVICES,
            "the dead service's prefix was announced: {p}"
        );
        let med = u
            .attributes
            .iter()
            .any(|a| matches!(a, PathAttribute::MultiExitDisc(20)));
        let community = u.attributes.iter().any(|a| {
            matches!(a, PathAttribute::Communities(c) if *c == [Community((LOCAL_ASN << 16) | 7)])
        });
        assert_eq!(
            (med, community),
            (last % 4 % 2 == 1, last % 4 >= 2),
            "{p}: {u:?}"
        );
    }
    match peer.recv_frame_within(INTERVAL * 5).await {
        Err(FakeError::Timeout) => {}
        Ok(frame) => {
            let m = Message::decode(&frame, &peer.decode);
            assert!(
                matches!(m, Ok(Message::Keepalive)),
                "more after the table: {m:?}"
            );
        }
        Err(e) => panic!("session broke: {e:?}"),
    }
    stream
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .chunks(32)
        .map(|c| c.iter().map(|b| format!("{b:02x}")).collect::<String>() + "\n")
        .collect()
}

#[tokio::test]
async fn sixteen_peers_with_one_export_policy_get_the_same_update_bytes_as_before() {
    let target = Target::start(Answer::Pass).await;
    let mut listeners = Vec::new();
    for _ in 0..PEERS {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let status_port = free_port();
    let text = config_text(&addrs, status_port, target.addr);
    let config = load_str(&text, "many-peers.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
    let (signals, rx) = mpsc::channel(4);
    let task = tokio::spawn(run(config, RunOptions::default(), rx));
    wait_all_decided(status_port).await;

    let mut peers = Vec::new();
    for (k, l) in listeners.iter().enumerate() {
        let mut peer = FakePeer::accept(l).await;
        peer.establish(fakepeer::open(EBGP_ASN + k as u32, PEER_ID, 0, true, false))
            .await;
        peers.push(peer);
    }
    let mut streams = Vec::new();
    for peer in &mut peers {
        streams.push(updates_until(peer, SERVICES).await);
    }
    for (k, s) in streams.iter().enumerate() {
        assert!(
            s == &streams[0],
            "peer p{k} got other bytes than p0:\n{}\n{}",
            hex(s),
            hex(&streams[0])
        );
    }
    let got = hex(&streams[0]);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(GOLDEN, &got).unwrap();
    }
    let golden =
        std::fs::read_to_string(GOLDEN).expect("golden file (UPDATE_SNAPSHOTS=1 writes it)");
    assert_eq!(
        got, golden,
        "the UPDATE bytes changed; UPDATE_SNAPSHOTS=1 rewrites {GOLDEN}"
    );

    signals.send(DaemonSignal::Stop).await.unwrap();
    for peer in &mut peers {
        peer.expect_closed(WAIT).await;
    }
    match tokio::time::timeout(WAIT, task).await {
        Ok(Ok(Ok(()))) => {}
        other => panic!("run() did not end cleanly: {other:?}"),
    }
}
