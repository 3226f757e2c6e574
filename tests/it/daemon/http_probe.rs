//! The HTTP probe of the `anyguard` binary against scripted targets (issue 13): the
//! probe writes its request on the just-connected socket and reads the answer with its
//! own `httparse`-based reader (`health::probe::http_wire`). What a target sees and what
//! `/status` says, end to end: the request's exact bytes, an answer in several TCP
//! segments with pauses between them (head, chunked body) still passes, the connection
//! ends with a reset, and malformed, endless and cut-short answers fail with a precise
//! detail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::probe_close::{binary_doc, dry_run_binary};
use super::*;

/// How a scripted target answers each connection.
#[derive(Debug, Clone, Copy)]
enum Script {
    /// 200 with a chunked body `healthy`, written in four segments with pauses between
    /// them (the head itself in two); then reports the request and what it read after.
    Split,
    /// A status line with letters for the code.
    BadStatus,
    /// A status line, then header lines without end (bounded: 1 MiB, or until the probe
    /// resets the connection).
    Endless,
    /// `Content-Length: 10` and three bytes of body, then the close.
    ShortBody,
}

/// What the `Split` target saw on one connection: the request's bytes, and the result of
/// a read after its answer.
type Seen = (Vec<u8>, std::io::Result<usize>);

/// Serves `script` on every connection to `listener` until aborted; `Split` sends what it
/// saw to `seen`.
fn serve(listener: TcpListener, script: Script, seen: mpsc::Sender<Seen>) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let _ = sock.set_nodelay(true);
                let Some(request) = read_head(&mut sock).await else {
                    return;
                };
                match script {
                    Script::Split => {
                        for (segment, pause) in [
                            (
                                &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"[..],
                                50,
                            ),
                            (b"Content-Type: text/plain\r\n\r\n", 150),
                            (b"4\r\nheal\r\n", 50),
                            (b"3;ext=1\r\nthy\r\n0\r\n\r\n", 0),
                        ] {
                            if sock.write_all(segment).await.is_err() {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(pause)).await;
                        }
                        let mut buf = [0u8; 64];
                        let after = tokio::time::timeout(WAIT, sock.read(&mut buf))
                            .await
                            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()));
                        let _ = seen.send((request, after)).await;
                    }
                    Script::BadStatus => {
                        let _ = sock.write_all(b"HTTP/1.1 2OO OK\r\n\r\n").await;
                    }
                    Script::Endless => {
                        let _ = sock.write_all(b"HTTP/1.1 200 OK\r\n").await;
                        let line = b"X-Filler: 0123456789abcdef0123456789abcdef\r\n";
                        for _ in 0..(1 << 20) / line.len() {
                            if sock.write_all(line).await.is_err() {
                                return;
                            }
                        }
                    }
                    Script::ShortBody => {
                        let _ = sock
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
                            .await;
                    }
                }
            });
        }
    })
}

/// The request head as received (bounded: 16 KiB), or None if the connection ended first.
async fn read_head(sock: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return None;
        }
        match sock.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    Some(head)
}

/// One service named `name` with one HTTP check of `target`'s `/healthz`.
fn service(name: &str, prefix: &str, target: SocketAddr, body: &str) -> String {
    format!(
        r#"
[[service]]
name = "{name}"
prefixes = ["{prefix}"]

[[service.check]]
name = "http"
type = "http"
url = "http://{target}/healthz"
body_contains = "{body}"
interval = "1s"
timeout = "900ms"
"#
    )
}

/// The details of the results `/status` holds for service `i`'s check.
fn details(doc: &serde_json::Value, i: usize) -> Vec<(bool, String)> {
    doc["services"][i]["checks"][0]["last_results"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|r| {
                    (
                        r["ok"] == true,
                        r["detail"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn the_binarys_http_probe_sends_its_exact_request_reads_a_split_answer_resets_and_names_what_is_malformed(
) {
    let (seen_tx, mut seen) = mpsc::channel(16);
    let mut targets = Vec::new();
    let mut services = String::new();
    for (i, (name, script)) in [
        ("split", Script::Split),
        ("bad-status", Script::BadStatus),
        ("endless", Script::Endless),
        ("short-body", Script::ShortBody),
    ]
    .into_iter()
    .enumerate()
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        services.push_str(&service(
            name,
            &format!("198.51.100.{}/32", i + 1),
            addr,
            "healthy",
        ));
        targets.push((addr, serve(listener, script, seen_tx.clone())));
    }
    let split_addr = targets[0].0;

    let dir = tempfile::tempdir().unwrap();
    let status_port = free_port();
    let mut daemon = dry_run_binary(
        dir.path(),
        &format!(
            "router_id = \"198.18.0.2\"\nlocal_asn = {LOCAL_ASN}\n\n[status]\n\
             listen = \"127.0.0.1:{status_port}\"\n{services}"
        ),
    );
    let log_path = dir.path().join("anyguard.log");
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    // The split target's first connection: the request as sent, then a reset once the
    // probe had its answer (an ordinary close would read as 0, a hang as TimedOut).
    let (request, after) = tokio::time::timeout(WAIT, seen.recv())
        .await
        .unwrap_or_else(|_| panic!("no probe reached the target; log:\n{}", log()))
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&request),
        format!(
            "GET /healthz HTTP/1.1\r\nHost: {split_addr}\r\nUser-Agent: anyguard/{}\r\n\
             Connection: close\r\n\r\n",
            env!("CARGO_PKG_VERSION")
        )
    );
    assert_eq!(
        after.as_ref().map_err(std::io::Error::kind).err(),
        Some(std::io::ErrorKind::ConnectionReset),
        "the probe's connection must end with a reset, got {after:?}"
    );

    // Every check's result, each with its own detail (bounded wait: 10 s).
    let want = [
        (true, "status 200, body contains \"healthy\"".to_string()),
        (
            false,
            "GET /healthz: malformed response head: invalid response status in line 1: \
             \"HTTP/1.1 2OO OK\""
                .to_string(),
        ),
        (
            false,
            "GET /healthz: response head larger than 65536 bytes".to_string(),
        ),
        (
            false,
            "reading body: connection closed after 3 of 10 body bytes".to_string(),
        ),
    ];
    let mut last = None;
    let mut seen_all = false;
    for _ in 0..200 {
        if let Some(doc) = binary_doc(status_port).await {
            seen_all = want
                .iter()
                .enumerate()
                .all(|(i, w)| details(&doc, i).contains(w));
            if seen_all {
                break;
            }
            last = Some(doc);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        seen_all,
        "want {want:?}; got {:?}\nlog:\n{}",
        last.as_ref()
            .map(|d| (0..want.len()).map(|i| details(d, i)).collect::<Vec<_>>()),
        log()
    );

    for (_, task) in &targets {
        task.abort();
    }
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    let status = daemon.exit().await;
    assert!(status.success(), "exit {status:?}; log:\n{}", log());
}
