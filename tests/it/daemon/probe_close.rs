//! How the daemon's probes close their connections (issue 13): with a reset
//! (`SO_LINGER` 0), as HAProxy closes its health checks — the target reads a reset
//! instead of an end of stream, and no TIME_WAIT is left for the probe's connection on
//! either side (at a thousand checks a second, TIME_WAIT alone would exhaust the
//! ephemeral ports within a minute).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tokio::io::AsyncReadExt;

use super::*;

/// What the target reads after the probe is done with the connection.
async fn read_after_probe(sock: &mut tokio::net::TcpStream) -> std::io::Result<usize> {
    let mut buf = [0u8; 64];
    tokio::time::timeout(WAIT, sock.read(&mut buf))
        .await
        .expect("the probe neither closed nor reset its connection")
}

/// The `/proc/net/tcp` lines in TIME_WAIT (state 06) of the connection between the ports
/// `a` and `b`, seen from either end. Both ports, not one: other tests and processes on the
/// same host make connections of their own, and an ephemeral port is reused by them as
/// soon as the probe has given it back (a TIME_WAIT of another connection with the probe's
/// old port at one end once failed this test in CI).
fn time_wait_between(a: u16, b: u16) -> Vec<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let (a, b) = (format!(":{a:04X}"), format!(":{b:04X}"));
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3
                && f[3] == "06"
                && ((f[1].ends_with(&a) && f[2].ends_with(&b))
                    || (f[1].ends_with(&b) && f[2].ends_with(&a)))
        })
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn http_and_tcp_probes_close_with_a_reset_and_leave_no_time_wait() {
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let status_port = free_port();
    let text = format!(
        r#"router_id = "198.18.0.2"
local_asn = {LOCAL_ASN}

[status]
listen = "127.0.0.1:{status_port}"

[[peer]]
name = "edge"
address = "127.0.0.1"
remote_asn = {PEER_ASN}

[[service]]
name = "web"
prefixes = ["{SERVICE_V4}"]

[[service.check]]
name = "http"
type = "http"
url = "http://{http}/healthz"
interval = "3s"
timeout = "2500ms"

[[service.check]]
name = "tcp"
type = "tcp"
address = "{tcp}"
interval = "3s"
timeout = "2500ms"
"#,
        http = http.local_addr().unwrap(),
        tcp = tcp.local_addr().unwrap(),
    );
    // Long timeouts: the probe must still be waiting for the answer when this test,
    // perhaps on a busy machine, writes it (the first probe comes within the interval).
    let config = load_str(&text, "probe-close.toml").unwrap();
    let (signals, rx) = mpsc::channel(4);
    let options = RunOptions {
        dry_run: true,
        ..RunOptions::default()
    };
    let task = tokio::spawn(run(config, options, rx));

    // TCP check: connected, then reset (an ordinary close would read as end of stream).
    let (mut sock, from) = tokio::time::timeout(WAIT, tcp.accept())
        .await
        .unwrap()
        .unwrap();
    let read = read_after_probe(&mut sock).await;
    assert_eq!(
        read.as_ref().map_err(std::io::Error::kind).err(),
        Some(std::io::ErrorKind::ConnectionReset),
        "the TCP probe's connection must end with a reset, got {read:?}"
    );
    drop(sock);
    let tcp_ports = (from.port(), tcp.local_addr().unwrap().port());

    // HTTP check: the target answers and closes first, as `Connection: close` has it;
    // the probe reads the answer and resets the connection instead of closing its side.
    let (mut sock, from) = tokio::time::timeout(WAIT, http.accept())
        .await
        .unwrap()
        .unwrap();
    assert!(read_request_head(&mut sock).await, "no request");
    sock.write_all(OK).await.unwrap();
    sock.shutdown().await.unwrap();
    let read = read_after_probe(&mut sock).await;
    assert_eq!(
        read.as_ref().map_err(std::io::Error::kind).err(),
        Some(std::io::ErrorKind::ConnectionReset),
        "the HTTP probe's connection must end with a reset, got {read:?}"
    );
    drop(sock);
    let http_ports = (from.port(), http.local_addr().unwrap().port());

    for (what, (probe, target)) in [("TCP", tcp_ports), ("HTTP", http_ports)] {
        let left = time_wait_between(probe, target);
        assert!(
            left.is_empty(),
            "the {what} probe's connection (port {probe} to {target}) left TIME_WAIT: {left:?}"
        );
    }
    signals.send(DaemonSignal::Stop).await.unwrap();
    match tokio::time::timeout(WAIT, task).await {
        Ok(Ok(Ok(()))) => {}
        other => panic!("run() did not end cleanly: {other:?}"),
    }
}
