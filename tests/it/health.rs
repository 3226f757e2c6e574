//! Health runner with real probes: a hung command never delays an HTTP check.

use std::net::SocketAddr;
use std::time::Duration;

use anyguard::config::load_str;
use anyguard::health::{HealthRunner, RunnerOptions};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// A minimal HTTP/1.1 server on 127.0.0.1:0 answering 200 "ok" to every request.
async fn http_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let task = tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                if !crate::httpd::read_request_head(&mut sock).await {
                    return;
                }
                let _ = sock.write_all(crate::httpd::OK).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn a_hung_command_probe_does_not_delay_an_http_probe() {
    let (addr, server) = http_server().await;
    let text = format!(
        r#"router_id = "198.18.0.2"
local_asn = 65010

[[service]]
name = "hung"
prefixes = ["203.0.113.0/24"]
[[service.check]]
type = "command"
argv = ["sleep", "30"]
interval = "3s"
timeout = "2s"

[[service]]
name = "web"
prefixes = ["198.51.100.0/24"]
[[service.check]]
type = "http"
url = "http://{addr}/healthz"
body_contains = "ok"
interval = "200ms"
timeout = "150ms"
rise = 1
"#
    );
    let config = load_str(&text, "it.toml").unwrap_or_else(|e| panic!("{e}"));
    let (tx, mut rx) = mpsc::channel(64);
    let options = RunnerOptions {
        splay: false,
        jitter: false,
        seed: Some(1),
        coalesce: false,
    };
    let runner =
        HealthRunner::start(&config.services, tx, options).unwrap_or_else(|e| panic!("{e}"));

    let mut http_events = 0;
    let mut http_ok = 0;
    let command_event = tokio::time::timeout(Duration::from_secs(20), async {
        // Bounded: the command times out after 2 s, at most ~10 HTTP probes before.
        for _ in 0..200 {
            match rx.recv().await {
                Some(e) if e.service == 1 => {
                    http_events += 1;
                    http_ok += usize::from(e.outcome.ok);
                }
                Some(e) => return Some(e),
                None => return None,
            }
        }
        None
    })
    .await
    .unwrap_or_else(|_| panic!("no command event within 20 s"))
    .unwrap_or_else(|| panic!("no command event"));

    assert!(
        http_events >= 3,
        "only {http_events} HTTP events before the hung command's timeout"
    );
    assert!(http_ok >= 1, "no HTTP probe passed ({http_events} events)");
    assert!(!command_event.outcome.ok);
    assert!(
        command_event
            .outcome
            .detail
            .starts_with("timed out after 2s, process group killed"),
        "{:?}",
        command_event.outcome
    );
    runner.stop();
    server.abort();
}
