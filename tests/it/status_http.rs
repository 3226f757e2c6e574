//! The status endpoint over real HTTP on loopback: `serve` on 127.0.0.1:0 with a fake
//! coordinator task answering control requests.
// Test helpers outside #[test] fns are not covered by clippy's allow-unwrap-in-tests.
#![allow(clippy::unwrap_used)]

mod docs_client;
pub(crate) mod fixture;
pub(crate) mod metrics;
mod systemd_unit;

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyguard::status::control::{ControlCommand, ControlReply, ControlRequest};
use anyguard::status::metrics::Metrics;
use anyguard::status::model::StatusDocument;
use anyguard::status::server::{serve_listeners, Limits, Role, StatusState};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderMap};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use fixture::realistic_document;

const TOKEN: &str = "t0ken-for-tests";
pub(crate) const STEP: Duration = Duration::from_secs(10);

/// A server on loopback plus the fake coordinator's log of commands.
pub(crate) struct Harness {
    addr: SocketAddr,
    status: watch::Sender<StatusDocument>,
    metrics: Metrics,
    commands: Arc<Mutex<Vec<ControlCommand>>>,
    shutdown: Option<oneshot::Sender<()>>,
    server: JoinHandle<io::Result<()>>,
    coordinator: JoinHandle<()>,
}

/// The fake coordinator: `dns` and `ntp` exist; draining `ntp` without force is refused by
/// the "guard"; `check` of `slow` is never answered; `reload` succeeds.
async fn fake_coordinator(
    mut rx: mpsc::Receiver<ControlRequest>,
    log: Arc<Mutex<Vec<ControlCommand>>>,
) {
    let mut unanswered = Vec::new();
    while let Some(ControlRequest { command, reply }) = rx.recv().await {
        log.lock().unwrap().push(command.clone());
        let known = |s: &str| s == "dns" || s == "ntp";
        let answer = match command {
            ControlCommand::Check { service } if service == "slow" => {
                unanswered.push(reply);
                continue;
            }
            ControlCommand::Reload => ControlReply::Ok("reloaded: generation 4".into()),
            ControlCommand::Drain { service, .. }
            | ControlCommand::Undrain { service }
            | ControlCommand::Check { service }
                if !known(&service) =>
            {
                ControlReply::NotFound
            }
            ControlCommand::Drain {
                service,
                force: false,
                ..
            } if service == "ntp" => ControlReply::Rejected(vec![
                "guard: ams1 is the last site announcing ntp (min_sites 1)".into(),
            ]),
            ControlCommand::Drain { service, .. } => {
                ControlReply::Ok(format!("{service} draining"))
            }
            ControlCommand::Undrain { service } => ControlReply::Ok(format!("{service} undrained")),
            ControlCommand::Check { service } => ControlReply::Ok(format!("{service} checks run")),
        };
        let _ = reply.send(answer);
    }
}

impl Harness {
    async fn start(token: Option<&str>) -> Self {
        let limits = Limits {
            reply_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let token = token.map(|t| t.as_bytes().to_vec());
        Self::start_with(limits, |state| {
            let (_, fixed) = watch::channel(token);
            state.with_token_updates(fixed)
        })
        .await
    }

    /// `configure` gets the state built with no token and default limits except `limits`.
    async fn start_with(
        limits: Limits,
        configure: impl FnOnce(StatusState) -> StatusState,
    ) -> Self {
        let (status, status_rx) = watch::channel(realistic_document());
        let metrics = Metrics::new(status_rx.clone());
        let (control_tx, control_rx) = mpsc::channel(8);
        let commands = Arc::new(Mutex::new(Vec::new()));
        let coordinator = tokio::spawn(fake_coordinator(control_rx, commands.clone()));
        let state = configure(StatusState::new(
            status_rx,
            metrics.clone(),
            None,
            control_tx,
            limits,
        ));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve_listeners(
            vec![(listener, Role::General)],
            state,
            async {
                let _ = stopped.await;
            },
        ));
        Self {
            addr,
            status,
            metrics,
            commands,
            shutdown: Some(shutdown),
            server,
            coordinator,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: &str,
    ) -> (StatusCode, HeaderMap, Bytes) {
        request(method, &self.url(path), auth, body).await
    }

    async fn get(&self, path: &str) -> (StatusCode, HeaderMap, Bytes) {
        self.request(Method::GET, path, None, "").await
    }

    async fn post(&self, path: &str, body: &str) -> (StatusCode, serde_json::Value) {
        let bearer = format!("Bearer {TOKEN}");
        let (status, _, body) = self.request(Method::POST, path, Some(&bearer), body).await;
        (status, serde_json::from_slice(&body).expect("JSON body"))
    }

    fn commands(&self) -> Vec<ControlCommand> {
        self.commands.lock().unwrap().clone()
    }

    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let result = tokio::time::timeout(STEP, self.server)
            .await
            .expect("server did not stop")
            .expect("server task panicked");
        result.expect("serve returned an error");
        self.coordinator.abort();
    }
}

/// One HTTP/1.1 request to `url` with an optional `Authorization` header; status,
/// headers and the whole body, each step bounded by [`STEP`]. Also used by the daemon
/// tests against the real status endpoint.
pub(crate) async fn request(
    method: Method,
    url: &str,
    auth: Option<&str>,
    body: &str,
) -> (StatusCode, HeaderMap, Bytes) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = Request::builder().method(method).uri(url);
    if let Some(auth) = auth {
        req = req.header(header::AUTHORIZATION, auth);
    }
    let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
    let resp = tokio::time::timeout(STEP, client.request(req))
        .await
        .expect("request timed out")
        .expect("request failed");
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(STEP, body.collect())
        .await
        .expect("body timed out")
        .expect("body failed")
        .to_bytes();
    (parts.status, parts.headers, body)
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).expect("JSON body")
}

#[tokio::test]
async fn status_serves_the_latest_published_document() {
    let h = Harness::start(None).await;
    let (status, headers, body) = h.get("/status").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    let doc: StatusDocument = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc, realistic_document());
    let v = json(&body);
    assert_eq!(v["daemon"]["router_id"], "198.18.0.2");
    assert_eq!(v["services"][1]["guard"]["decision"], "held");
    assert_eq!(v["peers"][0]["messages_sent"]["update"], 4);
    assert_eq!(v["peers"][1]["hold_time"], serde_json::Value::Null);

    h.status.send_modify(|d| {
        d.services[0].state = "down".into();
        d.daemon.config_generation = 4;
    });
    let (_, _, body) = h.get("/status").await;
    let v = json(&body);
    assert_eq!(v["services"][0]["state"], "down");
    assert_eq!(v["daemon"]["config_generation"], 4);
    h.stop().await;
}

#[tokio::test]
async fn head_is_answered_like_get_without_a_body() {
    let h = Harness::start(None).await;
    let (_, get_headers, get_body) = h.get("/status").await;
    let (status, headers, body) = h.request(Method::HEAD, "/status", None, "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.is_empty());
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(
        headers[header::CONTENT_LENGTH],
        get_body.len().to_string().as_str()
    );
    assert_eq!(
        get_headers[header::CONTENT_LENGTH],
        headers[header::CONTENT_LENGTH]
    );
    h.stop().await;
}

#[tokio::test]
async fn healthz_is_always_ok_and_readyz_follows_the_document() {
    let h = Harness::start(None).await;
    let (status, _, body) = h.get("/healthz").await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok\n"[..]));
    let (status, _, body) = h.get("/readyz").await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"ready\n"[..]));

    h.status.send_modify(|d| d.daemon.ready = false);
    let (status, _, body) = h.get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(&body[..], b"not ready\n");

    h.status.send_modify(|d| {
        d.daemon.ready = true;
        d.daemon.stopping = true;
    });
    let (status, _, body) = h.get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(&body[..], b"stopping\n");
    let (status, _, _) = h.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    h.stop().await;
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_are_405_with_allow() {
    let h = Harness::start(Some(TOKEN)).await;
    for path in [
        "/",
        "/nope",
        "/status/",
        "/services/dns",
        "/services/dns/explode",
    ] {
        let (status, _, body) = h.get(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(json(&body)["error"], "not found", "{path}");
    }
    for (method, path, allow) in [
        (Method::POST, "/status", "GET, HEAD"),
        (Method::DELETE, "/metrics", "GET, HEAD"),
        (Method::PUT, "/healthz", "GET, HEAD"),
        (Method::GET, "/reload", "POST"),
        (Method::GET, "/services/dns/drain", "POST"),
        (Method::DELETE, "/services/dns/check", "POST"),
    ] {
        let (status, headers, _) = h.request(method.clone(), path, None, "").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_eq!(headers[header::ALLOW], allow, "{method} {path}");
    }
    assert!(h.commands().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn control_needs_a_bearer_token_401_without_403_when_wrong() {
    let h = Harness::start(Some(TOKEN)).await;
    let (status, headers, _) = h.request(Method::POST, "/reload", None, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        headers[header::WWW_AUTHENTICATE],
        "Bearer realm=\"anyguard\""
    );
    for malformed in [
        format!("Basic {TOKEN}"),
        "Bearer".to_owned(),
        TOKEN.to_owned(),
    ] {
        let (status, _, _) = h
            .request(Method::POST, "/reload", Some(&malformed), "")
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{malformed}");
    }
    for wrong in [format!("Bearer {TOKEN}x"), "Bearer t0ken".to_owned()] {
        let (status, _, body) = h
            .request(Method::POST, "/services/dns/drain", Some(&wrong), "")
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{wrong}");
        assert_eq!(json(&body)["error"], "wrong token");
    }
    assert!(h.commands().is_empty(), "nothing may reach the coordinator");
    h.stop().await;
}

#[tokio::test]
async fn control_is_disabled_entirely_without_a_token() {
    let h = Harness::start(None).await;
    let bearer = format!("Bearer {TOKEN}");
    for path in [
        "/reload",
        "/services/dns/drain",
        "/services/dns/undrain",
        "/services/dns/check",
    ] {
        for auth in [None, Some(bearer.as_str())] {
            let (status, _, _) = h.request(Method::POST, path, auth, "").await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        }
    }
    assert!(h.commands().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn control_commands_reach_the_coordinator_and_replies_map_to_status_codes() {
    let h = Harness::start(Some(TOKEN)).await;
    let (status, v) = h.post("/services/dns/drain", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        v,
        serde_json::json!({"ok": true, "message": "dns draining"})
    );

    let (status, v) = h
        .post("/services/ntp/drain", r#"{"reason": "kernel upgrade"}"#)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(v["error"], "rejected");
    assert_eq!(
        v["reasons"][0],
        "guard: ams1 is the last site announcing ntp (min_sites 1)"
    );

    let (status, _) = h
        .post(
            "/services/ntp/drain",
            r#"{"force": true, "reason": "kernel upgrade"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, v) = h.post("/services/web/drain", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(v["error"], "no such service");
    let (status, v) = h.post("/services/ntp/undrain", "").await;
    assert_eq!(
        (status, v["message"].as_str()),
        (StatusCode::OK, Some("ntp undrained"))
    );
    let (status, v) = h.post("/services/dns/check", "").await;
    assert_eq!(
        (status, v["message"].as_str()),
        (StatusCode::OK, Some("dns checks run"))
    );
    let (status, v) = h.post("/reload", "").await;
    assert_eq!(
        (status, v["message"].as_str()),
        (StatusCode::OK, Some("reloaded: generation 4"))
    );

    let drain = |service: &str, force, reason: Option<&str>| ControlCommand::Drain {
        service: service.into(),
        force,
        reason: reason.map(Into::into),
    };
    assert_eq!(
        h.commands(),
        vec![
            drain("dns", false, None),
            drain("ntp", false, Some("kernel upgrade")),
            drain("ntp", true, Some("kernel upgrade")),
            drain("web", false, None),
            ControlCommand::Undrain {
                service: "ntp".into()
            },
            ControlCommand::Check {
                service: "dns".into()
            },
            ControlCommand::Reload,
        ]
    );
    h.stop().await;
}

#[tokio::test]
async fn bad_drain_bodies_are_400_and_overlong_reasons_422() {
    let h = Harness::start(Some(TOKEN)).await;
    for body in ["{", r#"{"force": "yes"}"#, r#"{"forse": true}"#, "[]"] {
        let (status, v) = h.post("/services/dns/drain", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(v["error"], "bad drain body");
    }
    let long = format!(r#"{{"reason": "{}"}}"#, "x".repeat(256));
    let (status, v) = h.post("/services/dns/drain", &long).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(v["reasons"][0].as_str().unwrap().contains("RFC 9003"));
    assert!(h.commands().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn request_bodies_over_4_kib_are_413_with_or_without_content_length() {
    let h = Harness::start(Some(TOKEN)).await;
    // Exactly at the limit is read (and then refused as JSON, not as too large).
    let at_limit = " ".repeat(4095) + "{";
    let (status, _) = h.post("/services/dns/drain", &at_limit).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let over = format!(r#"{{"reason": "{}"}}"#, "x".repeat(5000));
    let (status, v) = h.post("/services/dns/drain", &over).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(v["error"], "request body too large");

    // Chunked: no declared length, the limit is enforced while reading.
    let mut stream = TcpStream::connect(h.addr).await.unwrap();
    let chunk = "x".repeat(1024);
    let mut raw = format!(
        "POST /services/dns/drain HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        h.addr
    );
    for _ in 0..6 {
        raw.push_str(&format!("400\r\n{chunk}\r\n"));
    }
    raw.push_str("0\r\n\r\n");
    stream.write_all(raw.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(STEP, stream.read_to_end(&mut answer))
        .await
        .expect("no answer")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(h.commands().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn a_coordinator_that_does_not_answer_gives_503() {
    let h = Harness::start(Some(TOKEN)).await;
    let (status, v) = h.post("/services/slow/check", "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v["error"], "the daemon did not answer in time");
    // The server is still serving.
    let (status, _, _) = h.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    h.stop().await;
}

#[tokio::test]
async fn a_stopped_coordinator_gives_503_not_a_hang() {
    let h = Harness::start(Some(TOKEN)).await;
    h.coordinator.abort();
    let (status, _) = h.post("/reload", "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    h.stop().await;
}

#[tokio::test]
async fn shutdown_stops_accepting_and_serve_returns() {
    let h = Harness::start(None).await;
    let addr = h.addr;
    h.stop().await;
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn a_token_changed_at_reload_applies_to_the_next_request() {
    let (token_tx, token_rx) = watch::channel(None);
    let h = Harness::start_with(Limits::default(), |state| {
        state.with_token_updates(token_rx)
    })
    .await;
    let bearer = format!("Bearer {TOKEN}");
    let (status, _, _) = h.request(Method::POST, "/reload", Some(&bearer), "").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "disabled before a token exists"
    );

    token_tx.send_replace(Some(TOKEN.as_bytes().to_vec()));
    let (status, _) = h.post("/reload", "").await;
    assert_eq!(status, StatusCode::OK);

    token_tx.send_replace(Some(b"rotated".to_vec()));
    let (status, _, _) = h.request(Method::POST, "/reload", Some(&bearer), "").await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "the old token no longer works"
    );
    let (status, _, _) = h
        .request(Method::POST, "/reload", Some("Bearer rotated"), "")
        .await;
    assert_eq!(status, StatusCode::OK);

    token_tx.send_replace(None);
    let (status, _, _) = h
        .request(Method::POST, "/reload", Some("Bearer rotated"), "")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "disabled again");
    assert_eq!(
        h.commands(),
        vec![ControlCommand::Reload, ControlCommand::Reload]
    );
    h.stop().await;
}

#[tokio::test]
async fn idle_and_half_sent_connections_are_closed_after_the_header_timeout() {
    let limits = Limits {
        header_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let h = Harness::start_with(limits, |state| state).await;
    // A half-sent request, and a connection that never sends anything.
    // And a keep-alive connection left idle after a complete request.
    for sent in [
        &b"GET /status HTTP/1.1\r\nHost: x\r\n"[..],
        b"",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let mut stream = TcpStream::connect(h.addr).await.unwrap();
        stream.write_all(sent).await.unwrap();
        let mut answer = Vec::new();
        // Closed by the server (possibly after a 408), not by our own timeout.
        tokio::time::timeout(STEP, stream.read_to_end(&mut answer))
            .await
            .expect("the server kept an idle connection open")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        let complete = sent.ends_with(b"\r\n\r\n");
        assert!(
            (complete && answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok\n"))
                || (!complete && (answer.is_empty() || answer.starts_with("HTTP/1.1 408"))),
            "{answer}"
        );
    }
    // And it still serves everyone else.
    let (status, _, _) = h.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    h.stop().await;
}

#[tokio::test]
async fn start_reads_the_token_file_binds_and_serves() {
    use anyguard::config::StatusConfig;
    use anyguard::status::{start, StartError};

    let dir = std::env::temp_dir().join(format!("anyguard-start-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let config = StatusConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        token_file: Some(token_file),
        fleet_listen: None,
    };
    let (_status, status_rx) = watch::channel(realistic_document());
    let metrics = Metrics::new(status_rx.clone());
    let (control_tx, control_rx) = mpsc::channel(8);
    let commands = Arc::new(Mutex::new(Vec::new()));
    let coordinator = tokio::spawn(fake_coordinator(control_rx, commands.clone()));
    let (stop, stopped) = oneshot::channel::<()>();
    let started = start(&config, status_rx, metrics, control_tx, async {
        let _ = stopped.await;
    })
    .await
    .unwrap();
    assert_ne!(started.local_addr.port(), 0);

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = Request::post(format!("http://{}/reload", started.local_addr))
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = tokio::time::timeout(STEP, client.request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        commands.lock().unwrap().clone(),
        vec![ControlCommand::Reload]
    );

    stop.send(()).unwrap();
    tokio::time::timeout(STEP, started.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    coordinator.abort();

    // A missing token file and a taken port are reported, not panics.
    let missing = StatusConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        token_file: Some(dir.join("missing")),
        fleet_listen: None,
    };
    let (_status, status_rx) = watch::channel(StatusDocument::default());
    let (control_tx, _control_rx) = mpsc::channel(1);
    let err = start(
        &missing,
        status_rx.clone(),
        Metrics::new(status_rx.clone()),
        control_tx.clone(),
        std::future::ready(()),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, StartError::Token(_)), "{err}");
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let busy = StatusConfig {
        listen: taken.local_addr().unwrap(),
        token_file: None,
        fleet_listen: None,
    };
    let err = start(
        &busy,
        status_rx.clone(),
        Metrics::new(status_rx),
        control_tx,
        std::future::ready(()),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, StartError::Bind { .. }), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_body_that_never_arrives_ends_in_503_at_the_request_timeout() {
    let limits = Limits {
        request_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let h = Harness::start_with(limits, |state| {
        let (_, token) = watch::channel(Some(TOKEN.as_bytes().to_vec()));
        state.with_token_updates(token)
    })
    .await;
    let mut stream = TcpStream::connect(h.addr).await.unwrap();
    let head = format!(
        "POST /services/dns/drain HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Length: 100\r\nConnection: close\r\n\r\n{{\"force\":"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(STEP, stream.read_to_end(&mut answer))
        .await
        .expect("no answer")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(answer.contains("request timed out"), "{answer}");
    assert!(h.commands().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn status_client_reaches_an_ipv6_loopback_endpoint() {
    use anyguard::config::StatusConfig;
    use anyguard::status::{client, start};

    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!(
            "SKIPPED: status_client_reaches_an_ipv6_loopback_endpoint because ::1 is not available"
        );
        return;
    }
    let config = StatusConfig {
        listen: "[::1]:0".parse().unwrap(),
        token_file: None,
        fleet_listen: None,
    };
    let (_status, status_rx) = watch::channel(realistic_document());
    let (control_tx, _control_rx) = mpsc::channel(1);
    let (stop, stopped) = oneshot::channel::<()>();
    let started = start(
        &config,
        status_rx.clone(),
        Metrics::new(status_rx),
        control_tx,
        async {
            let _ = stopped.await;
        },
    )
    .await
    .unwrap();
    let url = format!("http://[::1]:{}", started.local_addr.port());
    let json = client::run(&url, true, false).await.unwrap();
    let doc: StatusDocument = serde_json::from_str(&json).unwrap();
    assert_eq!(doc, realistic_document());
    stop.send(()).unwrap();
    tokio::time::timeout(STEP, started.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
