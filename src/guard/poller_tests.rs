//! Poller tests against a tiny hyper server on 127.0.0.1:0.

use std::convert::Infallible;
use std::net::SocketAddr;

use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::*;
use crate::guard::report::{Intent, ServiceReport, SiteReport, REPORT_VERSION};

const WAIT: Duration = Duration::from_secs(5);

fn status_json(site: &str, generation: u64) -> String {
    let report = SiteReport {
        version: REPORT_VERSION,
        site: site.into(),
        generation,
        fleet_digest: None,
        services: vec![ServiceReport {
            name: "web".into(),
            prefixes: vec!["203.0.113.0/24".parse().unwrap()],
            healthy: true,
            announcing: true,
            intent: Intent::None,
        }],
    };
    // Other keys of the status document are ignored by the poller.
    format!(
        r#"{{"daemon":{{"version":"test"}},"guard":{}}}"#,
        serde_json::to_string(&report).unwrap()
    )
}

/// Serves `/status` (the current document from `doc`), `/error` (503), `/slow` (answers
/// after 3 s), `/big` (2 MiB), `/wrong` (a report from site "zzz"), `/garbage`.
struct TestServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    req: hyper::Request<Incoming>,
    doc: watch::Receiver<String>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body) = match req.uri().path() {
        "/status" => (200, doc.borrow().clone()),
        "/error" => (503, "down".to_owned()),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            (200, status_json("e", 1))
        }
        "/big" => (200, "x".repeat(2 * MAX_STATUS_BODY)),
        "/wrong" => (200, status_json("zzz", 1)),
        "/signed" | "/other-key" | "/replay" | "/as-b" => (200, status_json("s", 1)),
        _ => (200, "not json".to_owned()),
    };
    let nonce = crate::guard::auth::nonce_from_query(req.uri().query()).unwrap_or_default();
    let signature = match req.uri().path() {
        "/signed" => Some(test_key().sign("s", &nonce, body.as_bytes())),
        "/other-key" => Some(other_key().sign("s", &nonce, body.as_bytes())),
        // A genuine signature, for a nonce of an earlier poll.
        "/replay" => Some(test_key().sign("s", &[7; 16], body.as_bytes())),
        // Site b's signature on the same bytes: not valid for site "s".
        "/as-b" => Some(test_key().sign("b", &nonce, body.as_bytes())),
        _ => None,
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    if let Some(sig) = signature {
        response
            .headers_mut()
            .insert(SIGNATURE_HEADER, HeaderValue::from_str(&sig).unwrap());
    }
    Ok(response)
}

async fn server(doc: watch::Receiver<String>) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let doc = doc.clone();
            connections.spawn(async move {
                let service = service_fn(move |req| handle(req, doc.clone()));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    TestServer { addr, task }
}

fn test_key() -> FleetKey {
    FleetKey::from_file_bytes(&[b'k'; 32], "test").unwrap()
}

fn other_key() -> FleetKey {
    FleetKey::from_file_bytes(&[b'o'; 32], "test").unwrap()
}

/// A port with nothing listening (bound, then released).
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

fn fleet(sites: &[(&str, String)], interval: &str, timeout: &str) -> Fleet {
    let mut text = format!("[poll]\ninterval = \"{interval}\"\ntimeout = \"{timeout}\"\n");
    for (name, url) in sites {
        text.push_str(&format!(
            "[[site]]\nname = \"{name}\"\nstatus_url = \"{url}\"\nreport_url = \"{url}\"\n"
        ));
    }
    Fleet::parse(&text, "fleet.toml").unwrap()
}

#[tokio::test]
async fn poll_round_records_reports_and_every_kind_of_failure() {
    let (_doc_tx, doc) = watch::channel(status_json("b", 1));
    let srv = server(doc).await;
    let closed = closed_port().await;
    let url = |path: &str| format!("http://{}{path}", srv.addr);
    let f = fleet(
        &[
            ("a", "http://127.0.0.1:9/status".into()),
            ("b", url("/status")),
            ("c", url("/error")),
            ("d", format!("http://{closed}/status")),
            ("e", url("/slow")),
            ("f", url("/big")),
            ("g", url("/wrong")),
            ("h", url("/garbage")),
        ],
        "1s",
        "300ms",
    );
    let before = Instant::now();
    let view = tokio::time::timeout(WAIT, poll_round(&f, "a"))
        .await
        .unwrap();
    let after = Instant::now();
    let names: Vec<(&str, usize)> = view
        .sites
        .iter()
        .map(|s| (s.name.as_str(), s.rank))
        .collect();
    assert_eq!(
        names,
        [
            ("b", 1),
            ("c", 2),
            ("d", 3),
            ("e", 4),
            ("f", 5),
            ("g", 6),
            ("h", 7)
        ]
    );
    let outcome = |site: &str| view.site(site).unwrap().last_poll.clone().unwrap();
    for s in &view.sites {
        let p = s.last_poll.as_ref().unwrap();
        assert!(p.requested_at >= before && p.requested_at <= after);
    }
    let b = outcome("b").result.unwrap();
    assert_eq!((b.site.as_str(), b.generation), ("b", 1));
    assert_eq!(outcome("c").result, Err(PollFailure::Status(503)));
    assert!(
        matches!(outcome("d").result, Err(PollFailure::Request(ref e)) if e.contains("onnect")),
        "{:?}",
        outcome("d").result
    );
    assert_eq!(
        outcome("e").result,
        Err(PollFailure::Timeout(Duration::from_millis(300)))
    );
    assert!(
        matches!(outcome("f").result, Err(PollFailure::Body(ref e)) if e.contains("length limit")),
        "{:?}",
        outcome("f").result
    );
    assert_eq!(
        outcome("g").result.unwrap_err().to_string(),
        r#"report is from site "zzz", expected "g""#
    );
    assert!(matches!(outcome("h").result, Err(PollFailure::Body(_))));
}

#[tokio::test]
async fn run_publishes_the_view_polls_at_once_on_request_and_stops_on_shutdown() {
    let (doc_tx, doc) = watch::channel(status_json("b", 1));
    let srv = server(doc).await;
    // A long interval: after the first round, only `poll_now` triggers polls.
    let f = fleet(
        &[
            ("a", "http://127.0.0.1:9/status".into()),
            ("b", format!("http://{}/status", srv.addr)),
        ],
        "1h",
        "2s",
    );
    let (view_tx, mut view_rx) = watch::channel(f.view_for("a"));
    let (poll_tx, poll_rx) = watch::channel(0u64);
    let (stop_tx, stop_rx) = watch::channel(false);
    let poller = tokio::spawn(run(
        PollerConfig::from_fleet(&f, "a"),
        view_tx,
        poll_rx,
        stop_rx,
    ));
    let generation = |v: &FleetView| {
        v.site("b")
            .and_then(|s| s.last_poll.as_ref())
            .and_then(|p| p.result.as_ref().ok())
            .map(|r| r.generation)
    };
    tokio::time::timeout(WAIT, view_rx.wait_for(|v| generation(v) == Some(1)))
        .await
        .unwrap()
        .unwrap();

    doc_tx.send(status_json("b", 2)).unwrap();
    let asked_at = Instant::now();
    poll_tx.send(1).unwrap();
    let view = tokio::time::timeout(WAIT, view_rx.wait_for(|v| generation(v) == Some(2)))
        .await
        .unwrap()
        .unwrap()
        .clone();
    let requested_at = view
        .site("b")
        .unwrap()
        .last_poll
        .as_ref()
        .unwrap()
        .requested_at;
    assert!(
        requested_at > asked_at,
        "the report must be requested after the ask"
    );

    stop_tx.send(true).unwrap();
    tokio::time::timeout(WAIT, poller).await.unwrap().unwrap();
}

#[test]
fn a_report_of_an_unknown_version_is_a_poll_failure() {
    let v1 = status_json("a", 1);
    assert!(parse(v1.as_bytes(), "a").is_ok());
    // The same shape under another version number: its fields may mean something else.
    let same_shape = v1.replace(
        &format!("\"version\":{REPORT_VERSION}"),
        &format!("\"version\":{}", REPORT_VERSION + 1),
    );
    assert_ne!(same_shape, v1);
    let unsupported = Err(PollFailure::UnsupportedVersion {
        found: REPORT_VERSION + 1,
        supported: REPORT_VERSION,
    });
    assert_eq!(parse(same_shape.as_bytes(), "a"), unsupported);
    // A future format that does not even have v1's fields says why, too.
    let other_shape = format!(
        r#"{{"guard":{{"version":{},"site":"a","sites":{{}}}}}}"#,
        REPORT_VERSION + 1
    );
    assert_eq!(parse(other_shape.as_bytes(), "a"), unsupported);
    assert_eq!(
        PollFailure::UnsupportedVersion {
            found: 2,
            supported: 1
        }
        .to_string(),
        "report format version 2 is not supported (this anyguard reads version 1)"
    );
}

#[tokio::test]
async fn with_a_key_only_a_report_signed_for_this_site_and_nonce_is_accepted() {
    let (_doc_tx, doc) = watch::channel(status_json("s", 1));
    let srv = server(doc).await;
    let url = |path: &str| format!("http://{}{path}", srv.addr);
    let client = client();
    let timeout = Duration::from_secs(2);
    let key = test_key();
    let poll = |path: &str| {
        let uri: Uri = url(path).parse().unwrap();
        let (client, key) = (client.clone(), key.clone());
        async move {
            poll_with(&client, "s", &uri, timeout, Some(&key))
                .await
                .result
        }
    };
    assert_eq!(poll("/signed").await.unwrap().site, "s");
    assert_eq!(poll("/status").await, Err(PollFailure::Unsigned));
    for path in ["/other-key", "/replay", "/as-b"] {
        assert_eq!(
            poll(path).await,
            Err(PollFailure::BadSignature("signature does not match".into())),
            "{path}"
        );
    }
    // Without a key, an unsigned report is taken as it is.
    let uri: Uri = url("/status").parse().unwrap();
    let plain = poll_with(&client, "s", &uri, timeout, None).await;
    assert!(plain.result.is_ok());
}
