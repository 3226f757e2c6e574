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

/// The next TCP and HTTP probe on `tcp` and `http` end with a reset and leave no TIME_WAIT.
async fn probes_close_with_a_reset(http: &TcpListener, tcp: &TcpListener) {
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
    // The answer is complete by its Content-Length, so the probe may reset the connection
    // before our FIN goes out: then the shutdown reports the reset (a CI run under load
    // saw it), and that is the reset this step looks for.
    let read = match sock.shutdown().await {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Err(e),
        done => {
            done.unwrap();
            read_after_probe(&mut sock).await
        }
    };
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
}

/// The `web` service both daemons run: an HTTP and a TCP check against the test's two
/// listeners, with timeouts long enough that the probe is still waiting when the test
/// answers.
fn web_service(http: &TcpListener, tcp: &TcpListener) -> String {
    format!(
        r#"[[service]]
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
    )
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

{web}"#,
        web = web_service(&http, &tcp),
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

    probes_close_with_a_reset(&http, &tcp).await;
    signals.send(DaemonSignal::Stop).await.unwrap();
    match tokio::time::timeout(WAIT, task).await {
        Ok(Ok(Ok(()))) => {}
        other => panic!("run() did not end cleanly: {other:?}"),
    }
}

/// The `anyguard` binary's status document, or None while it does not answer.
pub(super) async fn binary_doc(port: u16) -> Option<serde_json::Value> {
    let url = format!("http://127.0.0.1:{port}/status");
    let text = anyguard::status::client::run(&url, true, false)
        .await
        .ok()?;
    serde_json::from_str(&text).ok()
}

/// The `anyguard` binary in a dry run of config `text`, written to `dir`/anyguard.toml;
/// its state file in `dir`, its log in `dir`/anyguard.log.
pub(super) fn dry_run_binary(dir: &std::path::Path, text: &str) -> super::process::Process {
    let config = dir.join("anyguard.toml");
    std::fs::write(&config, text).unwrap();
    let log = std::fs::File::create(dir.join("anyguard.log")).unwrap();
    super::process::Process(
        std::process::Command::new(env!("CARGO_BIN_EXE_anyguard"))
            .args(["--log-format", "human", "run", "--dry-run", "--config"])
            .arg(&config)
            .env("STATE_DIRECTORY", dir)
            .env_remove("NOTIFY_SOCKET")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// The names of process `pid`'s threads.
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect()
}

/// The real binary (where the check tasks run on a probe thread of their own,
/// `health::probe_threads`, and a TCP probe on loopback connects without the reactor,
/// `health::probe::tcp`): the probes still reach the coordinator, still close with a
/// reset and leave no TIME_WAIT; a TCP check against a closed port fails with the
/// connect error, and one whose connection never completes (a listener with a full
/// accept queue drops the SYN, so the connect stays in progress and goes to the
/// reactor) fails at its timeout.
#[tokio::test]
async fn the_binarys_probes_run_on_their_own_thread_close_with_a_reset_and_fail_when_refused_or_never_accepted(
) {
    use socket2::{Domain, Socket, Type};

    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    // A port nothing listens on any more.
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // Backlog 0 holds one connection: this test's own fills it, and the probe's SYN is
    // then dropped (never accepted: the test does not call accept).
    let full = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    full.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    full.listen(0).unwrap();
    let full_addr = full.local_addr().unwrap().as_socket().unwrap();
    let _filler =
        std::net::TcpStream::connect_timeout(&full_addr, std::time::Duration::from_secs(2))
            .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let status_port = free_port();
    let text = format!(
        r#"router_id = "198.18.0.2"
local_asn = {LOCAL_ASN}

[status]
listen = "127.0.0.1:{status_port}"

{web}
[[service]]
name = "refused"
prefixes = ["198.51.100.1/32"]

[[service.check]]
type = "tcp"
address = "{refused}"
interval = "200ms"
timeout = "150ms"

[[service]]
name = "stalled"
prefixes = ["198.51.100.2/32"]

[[service.check]]
type = "tcp"
address = "{full_addr}"
interval = "300ms"
timeout = "200ms"
"#,
        web = web_service(&http, &tcp),
    );
    let mut daemon = dry_run_binary(dir.path(), &text);
    let log = || std::fs::read_to_string(dir.path().join("anyguard.log")).unwrap_or_default();

    probes_close_with_a_reset(&http, &tcp).await;

    // From here on the targets answer every probe.
    let serving = tokio::spawn(async move {
        loop {
            tokio::select! {
                Ok((mut sock, _)) = http.accept() => {
                    tokio::spawn(async move {
                        if read_request_head(&mut sock).await {
                            let _ = sock.write_all(OK).await;
                        }
                    });
                }
                Ok((sock, _)) = tcp.accept() => drop(sock),
            }
        }
    });

    // Every result reached the coordinator: both web checks have passed, the refused and
    // the stalled checks failed, each for its own reason (bounded wait: 10 s).
    let detail = |doc: &serde_json::Value, service: usize, check: usize| {
        doc["services"][service]["checks"][check]["last_results"][0]["detail"]
            .as_str()
            .map(str::to_string)
    };
    let mut last = None;
    let mut seen = false;
    for _ in 0..200 {
        if let Some(doc) = binary_doc(status_port).await {
            let web_up = (0..2).all(|c| {
                doc["services"][0]["checks"][c]["last_results"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|r| r["ok"] == true))
            });
            let refused_down = doc["services"][1]["checks"][0]["state"] == "down"
                && detail(&doc, 1, 0).is_some_and(|d| {
                    d.starts_with(&format!("connect to {refused}: ")) && d.contains("refused")
                });
            let stalled_down = doc["services"][2]["checks"][0]["state"] == "down"
                && detail(&doc, 2, 0).is_some_and(|d| d.starts_with("timed out after 200ms"));
            if web_up && refused_down && stalled_down {
                seen = true;
                break;
            }
            last = Some(doc);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        seen,
        "checks not as expected within 10 s; last {last:?}\nlog:\n{}",
        log()
    );

    // The check tasks ran on the daemon's probe thread.
    let names = thread_names(daemon.0.id());
    assert!(
        names.iter().any(|n| n == "ag-probes-0"),
        "no probe thread among {names:?}"
    );
    serving.abort();
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    let status = daemon.exit().await;
    assert!(status.success(), "exit {status:?}; log:\n{}", log());
}
