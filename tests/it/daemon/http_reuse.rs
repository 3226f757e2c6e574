//! `reuse_connection = true` on HTTP checks of the `anyguard` binary (issue 13), against
//! scripted keep-alive targets that count the connections they accept: one connection
//! serves every probe of a check; a target closing its side between probes costs a new
//! connection, not a failed probe; an answer with `Connection: close` ends reuse; a probe
//! that times out resets its connection and the next one starts afresh; and a check
//! without the option still opens a connection per probe.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::AsyncReadExt;

use super::probe_close::dry_run_binary;
use super::*;

/// How a scripted target treats each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Script {
    /// `200 ok` with `Content-Length` to every request, the connection left open.
    KeepAlive,
    /// Answers one request as `KeepAlive` does, then closes its side (nothing in the
    /// answer says so).
    CloseAfterOne,
    /// `200 ok` with `Connection: close`, then the close.
    SaysClose,
    /// The first connection's second request gets no answer (the probe times out); what
    /// the target reads on that connection after it is recorded. Otherwise `KeepAlive`.
    HangOnce,
}

/// What a target saw.
#[derive(Debug, Default)]
struct Seen {
    accepts: usize,
    requests: usize,
    /// Requests carrying `Connection: close`.
    closing_requests: usize,
    /// What the hung connection read after its unanswered request.
    after_hang: Option<std::io::Result<usize>>,
}

const KEEP_OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// Serves `script` on `listener` until aborted, recording into `seen`.
fn serve(listener: TcpListener, script: Script, seen: Arc<Mutex<Seen>>) -> JoinHandle<()> {
    let hung = Arc::new(AtomicBool::new(false));
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            seen.lock().unwrap().accepts += 1;
            let (seen, hung) = (Arc::clone(&seen), Arc::clone(&hung));
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                // Bounded: 1,000 requests a connection.
                for n in 0..1000 {
                    let mut head = Vec::new();
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => head.extend_from_slice(&buf[..k]),
                        }
                    }
                    {
                        let mut s = seen.lock().unwrap();
                        s.requests += 1;
                        let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
                        if text.contains("\r\nconnection: close\r\n") {
                            s.closing_requests += 1;
                        }
                    }
                    let answer: &[u8] = match script {
                        Script::SaysClose => {
                            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
                        }
                        Script::HangOnce if n == 1 && !hung.swap(true, Ordering::SeqCst) => {
                            let after = tokio::time::timeout(WAIT, sock.read(&mut buf))
                                .await
                                .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()));
                            seen.lock().unwrap().after_hang = Some(after);
                            return;
                        }
                        _ => KEEP_OK,
                    };
                    if sock.write_all(answer).await.is_err() {
                        return;
                    }
                    if matches!(script, Script::SaysClose | Script::CloseAfterOne) {
                        let _ = sock.shutdown().await;
                        // Until the probe resets or closes its end.
                        let _ = tokio::time::timeout(WAIT, sock.read(&mut buf)).await;
                        return;
                    }
                }
            });
        }
    })
}

/// One service named `name` with one HTTP check of `target`'s `/healthz`, keeping its
/// connection if `reuse`.
fn service(name: &str, prefix: &str, target: SocketAddr, reuse: bool) -> String {
    format!(
        r#"
[[service]]
name = "{name}"
prefixes = ["{prefix}"]

[[service.check]]
name = "http"
type = "http"
url = "http://{target}/healthz"
reuse_connection = {reuse}
interval = "200ms"
fast_interval = "200ms"
timeout = "100ms"
"#
    )
}

/// The results of service `name`'s check that `/status?service=NAME` holds (every kept
/// one), by time.
async fn results(port: u16, name: &str) -> Vec<(String, bool, String)> {
    let url = format!("http://127.0.0.1:{port}/status?service={name}");
    let Ok(text) = anyguard::status::client::run(&url, true, false).await else {
        return Vec::new();
    };
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Vec::new();
    };
    doc["services"][0]["checks"][0]["last_results"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|r| {
                    (
                        r["at"].as_str().unwrap_or_default().to_string(),
                        r["ok"] == true,
                        r["detail"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn the_binarys_http_checks_keep_their_connection_when_asked_and_reconnect_or_drop_it_as_the_target_requires(
) {
    let names = ["kept", "closing", "says-close", "hang", "fresh"];
    let scripts = [
        (Script::KeepAlive, true),
        (Script::CloseAfterOne, true),
        (Script::SaysClose, true),
        (Script::HangOnce, true),
        // The default: a keep-alive target, a check without the option.
        (Script::KeepAlive, false),
    ];
    let mut seen = Vec::new();
    let mut tasks = Vec::new();
    let mut services = String::new();
    for (i, (name, (script, reuse))) in names.iter().zip(scripts).enumerate() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let s = Arc::new(Mutex::new(Seen::default()));
        tasks.push(serve(listener, script, Arc::clone(&s)));
        seen.push(s);
        services.push_str(&service(
            name,
            &format!("198.51.100.{}/32", i + 1),
            addr,
            reuse,
        ));
    }
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

    // Every result of every check while the probes run (polled more often than they
    // come; bounded: 15 s), until each target has served enough requests.
    let mut all: Vec<BTreeMap<String, (bool, String)>> = vec![BTreeMap::new(); names.len()];
    let enough = |seen: &[Arc<Mutex<Seen>>]| {
        let s: Vec<_> = seen.iter().map(|s| s.lock().unwrap()).collect();
        s[0].requests >= 6
            && s[1].requests >= 4
            && s[2].requests >= 3
            && s[3].after_hang.is_some()
            && s[3].requests >= 5
            && s[4].requests >= 3
    };
    let mut done = false;
    for _ in 0..300 {
        for (i, name) in names.iter().enumerate() {
            for (at, ok, detail) in results(status_port, name).await {
                all[i].insert(at, (ok, detail));
            }
        }
        if done {
            break;
        }
        done = enough(&seen);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        done,
        "targets saw {seen:?}; results {all:?}\nlog:\n{}",
        log()
    );
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    let status = daemon.exit().await;
    for task in &tasks {
        task.abort();
    }
    assert!(status.success(), "exit {status:?}; log:\n{}", log());
    let seen: Vec<_> = seen.iter().map(|s| s.lock().unwrap()).collect();
    let details = |i: usize| all[i].values().cloned().collect::<Vec<_>>();

    // One connection serves every probe, with no `Connection: close` in the requests.
    assert_eq!(
        (seen[0].accepts, seen[0].closing_requests),
        (1, 0),
        "kept: {:?}",
        seen[0]
    );
    assert!(
        details(0).iter().all(|(ok, d)| *ok && d == "status 200"),
        "kept: {:?}",
        details(0)
    );

    // A target closing its side between probes: a new connection each probe, never a
    // failed one; the detail says why.
    assert_eq!(seen[1].accepts, seen[1].requests, "closing: {:?}", seen[1]);
    assert!(
        details(1).iter().all(|(ok, _)| *ok),
        "closing: {:?}",
        details(1)
    );
    assert!(
        details(1)
            .iter()
            .any(|(_, d)| d == "status 200; new connection: the kept one was closed by the server"),
        "closing: {:?}",
        details(1)
    );

    // `Connection: close` in the answer ends reuse: a connection per probe, said so.
    assert_eq!(
        seen[2].accepts, seen[2].requests,
        "says-close: {:?}",
        seen[2]
    );
    assert!(
        details(2).iter().all(|(ok, d)| *ok
            && d == "status 200; connection not kept: the answer says Connection: close"),
        "says-close: {:?}",
        details(2)
    );

    // The probe that timed out reset its connection; the next probes came on a second
    // connection, which then served them all, and passed.
    assert_eq!(
        seen[3]
            .after_hang
            .as_ref()
            .and_then(|r| r.as_ref().err())
            .map(std::io::Error::kind),
        Some(std::io::ErrorKind::ConnectionReset),
        "hang: {:?}",
        seen[3]
    );
    assert_eq!(seen[3].accepts, 2, "hang: {:?}", seen[3]);
    let hang = details(3);
    let timed_out = hang
        .iter()
        .position(|(ok, d)| !ok && d == "timed out after 100ms")
        .unwrap_or_else(|| panic!("hang: no timeout in {hang:?}"));
    assert!(
        hang[timed_out + 1..]
            .iter()
            .all(|(ok, d)| *ok && d == "status 200"),
        "hang: {hang:?}"
    );

    // Without the option: a connection per probe, each request saying so.
    assert_eq!(
        (seen[4].accepts, seen[4].closing_requests),
        (seen[4].requests, seen[4].requests),
        "fresh: {:?}",
        seen[4]
    );
}

/// `anyguard check` accepts `reuse_connection` on an http check and names file, line and
/// key when it is given to a tcp check.
#[tokio::test]
async fn anyguard_check_accepts_reuse_connection_on_http_and_names_it_on_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let base = "router_id = \"198.18.0.2\"\nlocal_asn = 65010\n\n[[service]]\nname = \"web\"\n\
                prefixes = [\"203.0.113.0/24\"]\n\n[[service.check]]\n";
    std::fs::write(
        dir.path().join("ok.toml"),
        format!(
            "{base}type = \"http\"\nurl = \"http://127.0.0.1:8080/healthz\"\n\
             reuse_connection = true\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        format!("{base}type = \"tcp\"\naddress = \"127.0.0.1:80\"\nreuse_connection = true\n"),
    )
    .unwrap();
    let ok = crate::guard_cli::check(dir.path(), &["--config", "ok.toml"]).await;
    assert_eq!(ok.code, Some(0), "{ok:#?}");
    let bad = crate::guard_cli::check(dir.path(), &["--config", "bad.toml"]).await;
    assert_eq!(bad.code, Some(1), "{bad:#?}");
    assert!(
        bad.stderr.contains(
            "bad.toml:11:20: service[0].check[0].reuse_connection: `reuse_connection` does not \
             apply to a tcp check"
        ),
        "{bad:#?}"
    );
}

/// A reload that turns `reuse_connection` on changes the check: from then on one
/// connection serves its probes (before it, one connection a probe).
#[tokio::test]
async fn a_reload_that_turns_reuse_connection_on_keeps_the_connection_from_then_on() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let task = serve(listener, Script::KeepAlive, Arc::clone(&seen));
    let dir = tempfile::tempdir().unwrap();
    let status_port = free_port();
    let config = |reuse: bool| {
        format!(
            "router_id = \"198.18.0.2\"\nlocal_asn = {LOCAL_ASN}\n\n[status]\n\
             listen = \"127.0.0.1:{status_port}\"\n{}",
            service("web", "198.51.100.1/32", addr, reuse)
        )
    };
    let mut daemon = dry_run_binary(dir.path(), &config(false));
    let log_path = dir.path().join("anyguard.log");
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let counts = || {
        let s = seen.lock().unwrap();
        (s.accepts, s.requests)
    };
    // Bounded: 200 × 50 ms.
    for _ in 0..200 {
        if counts().1 >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (accepts, requests) = counts();
    assert!(requests >= 3, "{:?}\nlog:\n{}", counts(), log());
    assert_eq!(accepts, requests, "a connection a probe before the reload");

    std::fs::write(dir.path().join("anyguard.toml"), config(true)).unwrap();
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    let generation = || async {
        super::probe_close::binary_doc(status_port)
            .await
            .and_then(|d| d["daemon"]["config_generation"].as_u64())
    };
    let mut reloaded = false;
    for _ in 0..200 {
        if generation().await == Some(2) {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reloaded, "the reload was not applied; log:\n{}", log());
    // The first probe of the new check opens its connection; the next ones use it.
    let (accepts, requests) = counts();
    for _ in 0..200 {
        if counts().1 >= requests + 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (accepts_after, requests_after) = counts();
    assert!(
        accepts_after <= accepts + 2 && requests_after >= requests + 5,
        "after the reload: {accepts} → {accepts_after} connections for {requests} → \
         {requests_after} requests"
    );
    task.abort();
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    let status = daemon.exit().await;
    assert!(status.success(), "exit {status:?}; log:\n{}", log());
}
