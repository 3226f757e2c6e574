//! The status, metrics and control HTTP endpoint (hyper 1, HTTP/1.1).
//!
//! | path | methods | answer |
//! |---|---|---|
//! | `/status` | GET, HEAD | the latest [`StatusDocument`] as JSON (`docs/status.md`); `?service=NAME`, `?summary=1` |
//! | `/fleet/report?nonce=<hex>` | GET, HEAD | this site's guard report only, signed with the fleet key ([`crate::guard::auth`]) |
//! | `/metrics` | GET, HEAD | Prometheus text exposition 0.0.4 ([`Metrics`]) |
//! | `/healthz` | GET, HEAD | 200 while the process serves HTTP |
//! | `/readyz` | GET, HEAD | 200 once ready (config loaded, sessions started), else 503 |
//! | `/services/{name}/drain` | POST | [`ControlCommand::Drain`]; optional body `{"force": bool, "reason": "…"}` |
//! | `/services/{name}/undrain` | POST | [`ControlCommand::Undrain`] |
//! | `/services/{name}/check` | POST | [`ControlCommand::Check`] |
//! | `/reload` | POST | [`ControlCommand::Reload`] |
//!
//! Control endpoints need `Authorization: Bearer <token>` with the token from the file the
//! config names: 401 (with `WWW-Authenticate`) when the header is missing or malformed, 403
//! when the token is wrong. Without a configured token they do not exist (404). The token is
//! compared in constant time.
//!
//! Errors: unknown path 404; known path, wrong method 405 with `Allow`; request body over
//! [`Limits::max_body`] 413; malformed drain body 400; reason too long for a shutdown
//! communication 422. Control replies map to 200 (`Ok`), 404 (`NotFound`), 409 (`Rejected`);
//! a coordinator that does not answer within [`Limits::reply_timeout`] gives 503, and every
//! request is bounded by [`Limits::request_timeout`] (503). Every error body is JSON
//! `{"error": "…", "reasons": […]}`; control successes are `{"ok": true, "message": "…"}`.
//!
//! The server only reads the `watch` snapshot and sends typed requests to the coordinator; it
//! holds no daemon state. HEAD is answered like GET without a body (hyper drops it).
//!
//! # Slow and hostile clients
//!
//! Every connection holds one of [`Limits::max_connections`] slots and is closed, whatever
//! it does, [`Limits::connection_timeout`] after it was accepted: that deadline covers
//! reading requests, the handlers *and writing the responses*, so a client that pipelines
//! requests and never reads its answers cannot keep a slot longer. A connection answers at
//! most [`Limits::max_requests`] requests (the last one with `Connection: close`), so
//! pipelining is bounded too.
//!
//! The other sites' polls must keep being answered while all those slots are taken
//! (otherwise they count this site as not announcing). A reserved share of the slots for
//! the fleet report path cannot be given out at accept time: the path is only known once
//! the request head is read, and reading it is exactly what a slow client makes take long.
//! So the fleet report has a listener of its own (`[status] fleet_listen`,
//! [`serve_listeners`] with [`Role::Fleet`]): its own accept loop and slots, only
//! `/fleet/report`, and short deadlines ([`Limits::fleet`]: 1 s for the request head, 2 s
//! for the whole connection, at most 4 connections per source address), since a poll is
//! one small request. Without `fleet_listen`
//! the report is served on the main listener, which is fine for a small lab but shares
//! its slots with every other client.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

use super::control::{ControlCommand, ControlReply, ControlRequest};
use super::metrics::{self, Metrics};
use super::model::StatusDocument;
use crate::guard::auth::{nonce_from_query, FleetKey, REPORT_PATH, SIGNATURE_HEADER};
use crate::guard::report::StatusEnvelope;

/// Longest shutdown communication a drain reason may carry (RFC 9003 §2: 255 octets).
pub const MAX_REASON_LEN: usize = 255;

/// Bounds on what one client can make the server do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted request body, bytes (413 beyond).
    pub max_body: usize,
    /// Whole-request deadline, body read and coordinator reply included (503 beyond).
    pub request_timeout: Duration,
    /// How long to wait for the coordinator's [`ControlReply`] (503 beyond).
    pub reply_timeout: Duration,
    /// Time allowed to receive a request's headers before the connection is closed.
    pub header_timeout: Duration,
    /// Concurrent connections; further ones wait in the kernel's accept queue.
    pub max_connections: usize,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// Whole life of one connection from accept: reading, handling and writing included.
    /// A connection still open then is closed, whatever it is doing.
    pub connection_timeout: Duration,
    /// Requests answered on one connection; the last is answered with `Connection: close`.
    pub max_requests: usize,
    /// Connections one source address may hold at once; more are closed as soon as they
    /// are accepted. `None`: no such limit.
    pub max_per_source: Option<usize>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body: 4096,
            request_timeout: Duration::from_secs(10),
            reply_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(5),
            max_connections: 64,
            shutdown_grace: Duration::from_secs(5),
            // Above request_timeout + header_timeout, so a legitimate slow request (a
            // control call waiting for the coordinator) still gets its answer.
            connection_timeout: Duration::from_secs(20),
            max_requests: 100,
            // Management clients may all come through one proxy or NAT address.
            max_per_source: None,
        }
    }
}

impl Limits {
    /// The fleet listener's limits: one small GET per poll, so short deadlines; a client
    /// that is not done within them is not a poller.
    pub fn fleet() -> Self {
        Self {
            max_body: 0,
            request_timeout: Duration::from_secs(1),
            reply_timeout: Duration::from_secs(1),
            header_timeout: Duration::from_secs(1),
            max_connections: 32,
            shutdown_grace: Duration::from_secs(1),
            connection_timeout: Duration::from_secs(2),
            max_requests: 4,
            // A poller holds one connection at a time; a single address cannot take every
            // slot, so one hostile host that reaches this listener cannot starve the polls.
            max_per_source: Some(4),
        }
    }
}

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Every path, with [`StatusState`]'s limits.
    General,
    /// `/fleet/report` only, with [`Limits::fleet`].
    Fleet,
}

/// Everything the server reads or talks to.
#[derive(Debug)]
pub struct StatusState {
    status: watch::Receiver<StatusDocument>,
    metrics: Metrics,
    token: watch::Receiver<Option<Vec<u8>>>,
    control: mpsc::Sender<ControlRequest>,
    limits: Limits,
    fleet_key: watch::Receiver<Option<FleetKey>>,
}

impl StatusState {
    /// `token: None` disables the control endpoints (they answer 404). The token is fixed;
    /// see [`with_token_updates`](Self::with_token_updates) to change it at reload.
    /// `limits`: the daemon serves with [`Limits::default`]; tests of slow clients shrink
    /// them.
    pub fn new(
        status: watch::Receiver<StatusDocument>,
        metrics: Metrics,
        token: Option<Vec<u8>>,
        control: mpsc::Sender<ControlRequest>,
        limits: Limits,
    ) -> Self {
        // A receiver whose sender is gone keeps its last value forever.
        let (_, token) = watch::channel(token);
        let (_, fleet_key) = watch::channel(None);
        Self {
            status,
            metrics,
            token,
            control,
            limits,
            fleet_key,
        }
    }

    /// Signs `/fleet/report` with the current value of `key` (`None`: unsigned reports,
    /// a fleet without `[auth]`).
    #[must_use]
    pub fn with_fleet_key(mut self, key: watch::Receiver<Option<FleetKey>>) -> Self {
        self.fleet_key = key;
        self
    }

    /// Takes the token from `token` instead, so a reload can change or remove it without
    /// restarting the server (each request reads the current value).
    #[must_use]
    pub fn with_token_updates(mut self, token: watch::Receiver<Option<Vec<u8>>>) -> Self {
        self.token = token;
        self
    }
}

/// Reading the bearer token file failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The file could not be read.
    #[error("token file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: io::Error,
    },
    /// The file holds only whitespace.
    #[error("token file {path}: empty")]
    Empty {
        /// The file.
        path: String,
    },
}

/// Reads the bearer token from `path`, trimming surrounding whitespace (a trailing newline
/// from `echo`), and rejects an empty one.
pub fn read_token_file(path: &Path) -> Result<Vec<u8>, TokenError> {
    let shown = path.display().to_string();
    let raw = std::fs::read(path).map_err(|source| TokenError::Read {
        path: shown.clone(),
        source,
    })?;
    let token = raw.trim_ascii();
    if token.is_empty() {
        return Err(TokenError::Empty { path: shown });
    }
    Ok(token.to_vec())
}

/// Serves HTTP/1.1 on every listener of `listeners`, each with its own accept loop and
/// slots ([`Role`]), until `shutdown` completes; then stops accepting and lets in-flight
/// requests finish for up to [`Limits::shutdown_grace`].
///
/// Accept errors (e.g. out of file descriptors) are logged and retried after a pause; they
/// never end the server.
pub async fn serve_listeners(
    listeners: Vec<(TcpListener, Role)>,
    state: StatusState,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let state = Arc::new(state);
    let graceful = Arc::new(GracefulShutdown::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut loops = tokio::task::JoinSet::new();
    for (listener, role) in listeners {
        let limits = match role {
            Role::General => state.limits,
            Role::Fleet => Limits::fleet(),
        };
        let watcher = Arc::clone(&graceful);
        let mut stop = stop_rx.clone();
        loops.spawn(accept_loop(
            listener,
            Arc::clone(&state),
            role,
            limits,
            watcher,
            async move {
                let _ = stop.wait_for(|s| *s).await;
            },
        ));
    }
    shutdown.await;
    stop_tx.send_replace(true);
    while loops.join_next().await.is_some() {}
    // The accept loops, the only other holders, have ended.
    let Ok(graceful) = Arc::try_unwrap(graceful) else {
        return Ok(());
    };
    if tokio::time::timeout(state.limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("status endpoint: connections still open after the shutdown grace time");
    }
    Ok(())
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<StatusState>,
    role: Role,
    limits: Limits,
    graceful: Arc<GracefulShutdown>,
    shutdown: impl Future<Output = ()>,
) {
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_headers(64);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, ?role, "status endpoint listening");
    }
    let per_source = Arc::new(PerSource::default());
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_closed) => break,
            },
            () = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, remote) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(%error, "status endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let source = match limits.max_per_source {
            Some(max) => match per_source.enter(remote.ip(), max) {
                Some(guard) => Some(guard),
                None => {
                    tracing::debug!(%remote, ?role, "status connection refused: too many from this address");
                    continue;
                }
            },
            None => None,
        };
        let st = state.clone();
        let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let service = service_fn(move |req| {
            let st = st.clone();
            let n = served.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            async move {
                let mut resp = handle(&st, role, req).await;
                if n >= limits.max_requests {
                    // Bounded pipelining: hyper reads no further request after this one.
                    resp.headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                Ok::<_, Infallible>(resp)
            }
        });
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // The deadline covers the whole exchange, writes included: dropping the
            // connection future closes the socket, however full its send buffer is.
            match tokio::time::timeout(limits.connection_timeout, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::debug!(%remote, %error, "status connection ended with an error");
                }
                Err(_elapsed) => {
                    tracing::debug!(%remote, ?role, "status connection closed at its deadline");
                }
            }
            drop(source);
            drop(permit);
        });
    }
}

/// Open connections per source address (for [`Limits::max_per_source`]).
#[derive(Debug, Default)]
struct PerSource(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

/// One counted connection; dropping it releases the count.
struct SourceGuard {
    table: Arc<PerSource>,
    ip: std::net::IpAddr,
}

impl PerSource {
    fn enter(self: &Arc<Self>, ip: std::net::IpAddr, max: usize) -> Option<SourceGuard> {
        let mut table = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = table.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(SourceGuard {
            table: Arc::clone(self),
            ip,
        })
    }
}

impl Drop for SourceGuard {
    fn drop(&mut self) {
        let mut table = self
            .table
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = table.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                // Entries only for addresses with open connections: the table is bounded
                // by the slots, however many addresses connect over time.
                table.remove(&self.ip);
            }
        }
    }
}

/// What a path names.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Status,
    FleetReport,
    Metrics,
    Healthz,
    Readyz,
    Reload,
    Service { name: String, action: ServiceAction },
    NotFound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServiceAction {
    Drain,
    Undrain,
    Check,
}

fn route(path: &str) -> Route {
    match path {
        "/status" => Route::Status,
        REPORT_PATH => Route::FleetReport,
        "/metrics" => Route::Metrics,
        "/healthz" => Route::Healthz,
        "/readyz" => Route::Readyz,
        "/reload" => Route::Reload,
        _ => {
            let Some(rest) = path.strip_prefix("/services/") else {
                return Route::NotFound;
            };
            let Some((raw_name, action)) = rest.split_once('/') else {
                return Route::NotFound;
            };
            let action = match action {
                "drain" => ServiceAction::Drain,
                "undrain" => ServiceAction::Undrain,
                "check" => ServiceAction::Check,
                _ => return Route::NotFound,
            };
            match percent_decode(raw_name) {
                Some(name) if !name.is_empty() && !name.contains('/') => {
                    Route::Service { name, action }
                }
                _ => Route::NotFound,
            }
        }
    }
}

/// Decodes `%XX` escapes; `None` on a bad escape or non-UTF-8 result.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

type Reply = Response<Full<Bytes>>;

fn response(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn json_reply(status: StatusCode, value: &serde_json::Value) -> Reply {
    let mut body = serde_json::to_vec(value).unwrap_or_default();
    body.push(b'\n');
    response(status, "application/json", body)
}

fn error_reply(status: StatusCode, error: &str, reasons: &[String]) -> Reply {
    json_reply(
        status,
        &serde_json::json!({ "error": error, "reasons": reasons }),
    )
}

fn method_not_allowed(allow: &'static str) -> Reply {
    let mut resp = error_reply(StatusCode::METHOD_NOT_ALLOWED, "method not allowed", &[]);
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
}

async fn handle(state: &StatusState, role: Role, req: Request<Incoming>) -> Reply {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    if role == Role::Fleet && route(&path) != Route::FleetReport {
        return error_reply(StatusCode::NOT_FOUND, "not found (fleet listener)", &[]);
    }
    let resp = match tokio::time::timeout(state.limits.request_timeout, dispatch(state, req)).await
    {
        Ok(resp) => resp,
        Err(_elapsed) => error_reply(StatusCode::SERVICE_UNAVAILABLE, "request timed out", &[]),
    };
    tracing::debug!(%method, %path, status = resp.status().as_u16(), "status request");
    resp
}

async fn dispatch(state: &StatusState, req: Request<Incoming>) -> Reply {
    let route = route(req.uri().path());
    let read_only = matches!(*req.method(), Method::GET | Method::HEAD);
    match route {
        Route::NotFound => error_reply(StatusCode::NOT_FOUND, "not found", &[]),
        Route::Status | Route::FleetReport | Route::Metrics | Route::Healthz | Route::Readyz
            if !read_only =>
        {
            method_not_allowed("GET, HEAD")
        }
        Route::FleetReport => fleet_report(state, req.uri().query()),
        Route::Status => {
            let view = match StatusView::parse(req.uri().query()) {
                Ok(v) => v,
                Err(e) => return error_reply(StatusCode::BAD_REQUEST, &e, &[]),
            };
            // A cheap clone: the service entries are shared (`Arc`).
            let mut doc = state.status.borrow().clone();
            if let Some(name) = &view.service {
                doc.services.retain(|s| s.name == *name);
                if doc.services.is_empty() {
                    return error_reply(
                        StatusCode::NOT_FOUND,
                        &format!("no service named {name:?}"),
                        &[],
                    );
                }
            }
            // Off the runtime's threads: a whole document at a thousand services takes
            // milliseconds to fill in and serialise, which no probe, session or state
            // change should wait for (issue 13).
            let built = tokio::task::spawn_blocking(move || {
                // The checks' counters and results are read from their live records as
                // the document is serialised (the entries are rebuilt only when their
                // service changes; a result alone is recorded live). The views that show
                // another number of results copy them into the entries first.
                if view.service.is_some() || view.summary {
                    for s in &mut doc.services {
                        Arc::make_mut(s).fill_live();
                    }
                }
                if view.service.is_some() {
                    for s in &mut doc.services {
                        with_every_result(s);
                    }
                }
                if view.summary {
                    for s in &mut doc.services {
                        summarise(s);
                    }
                }
                serde_json::to_vec(&doc).map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
            match built {
                Ok(mut body) => {
                    body.push(b'\n');
                    response(StatusCode::OK, "application/json", body)
                }
                Err(e) => error_reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "status serialisation failed",
                    &[e],
                ),
            }
        }
        Route::Metrics => {
            // Off the runtime's threads, as `/status`: 3 MB of text at a thousand services.
            let metrics = state.metrics.clone();
            match tokio::task::spawn_blocking(move || metrics.encode()).await {
                Ok(Ok(text)) => response(StatusCode::OK, metrics::CONTENT_TYPE, text),
                _ => error_reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "metrics encoding failed",
                    &[],
                ),
            }
        }
        Route::Healthz => response(StatusCode::OK, "text/plain; charset=utf-8", "ok\n"),
        Route::Readyz => {
            let (ready, stopping) = {
                let doc = state.status.borrow();
                (doc.daemon.ready, doc.daemon.stopping)
            };
            let (status, text) = match (ready, stopping) {
                (_, true) => (StatusCode::SERVICE_UNAVAILABLE, "stopping\n"),
                (true, false) => (StatusCode::OK, "ready\n"),
                (false, false) => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
            };
            response(status, "text/plain; charset=utf-8", text)
        }
        Route::Reload | Route::Service { .. } => control(state, route, req).await,
    }
}

/// What `GET /status` was asked for: `?service=NAME` (that service only, with every kept
/// result of its checks instead of the newest three; 404 when there is none) and
/// `?summary=1` (each check's latest result only: what `anyguard status` shows).
/// Anything else in the query is a 400.
#[derive(Debug, Default, PartialEq, Eq)]
struct StatusView {
    service: Option<String>,
    summary: bool,
}

impl StatusView {
    fn parse(query: Option<&str>) -> Result<Self, String> {
        let mut view = StatusView::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "service" => {
                    let name = percent_decode(&value.replace('+', " "))
                        .filter(|n| !n.is_empty())
                        .ok_or_else(|| format!("bad service name in the query: {value:?}"))?;
                    view.service = Some(name);
                }
                "summary" => {
                    view.summary = match value {
                        "" | "1" | "true" => true,
                        "0" | "false" => false,
                        _ => return Err(format!("summary must be 1 or 0, not {value:?}")),
                    }
                }
                _ => {
                    return Err(format!(
                        "unknown query parameter {key:?} (known: service, summary)"
                    ))
                }
            }
        }
        Ok(view)
    }
}

/// Every kept result in `last_results`, the older ones the whole document leaves out
/// included (one service is asked for).
fn with_every_result(service: &mut Arc<super::model::ServiceStatus>) {
    if service.checks.iter().all(|c| c.older_results.is_empty()) {
        return;
    }
    let s = Arc::make_mut(service);
    for c in &mut s.checks {
        let older = std::mem::take(&mut c.older_results);
        c.last_results.extend(older);
    }
}

/// Keeps each check's latest result only.
fn summarise(service: &mut Arc<super::model::ServiceStatus>) {
    if service.checks.iter().all(|c| c.last_results.len() <= 1) {
        return;
    }
    let s = Arc::make_mut(service);
    for c in &mut s.checks {
        c.last_results.truncate(1);
    }
}

/// `GET /fleet/report`: `{"guard": <SiteReport>}` only (small, whatever the number of
/// checks), built from the latest published report at request time (never cached: the
/// intent protocol of `docs/guard.md` relies on it), signed for the poller's nonce when a
/// fleet key is configured.
fn fleet_report(state: &StatusState, query: Option<&str>) -> Reply {
    let report = state.status.borrow().guard.clone();
    let Some(report) = report else {
        return error_reply(
            StatusCode::NOT_FOUND,
            "not found (no fleet configured, or no report published yet)",
            &[],
        );
    };
    let key = state.fleet_key.borrow().clone();
    let nonce = nonce_from_query(query);
    if key.is_some() && nonce.is_none() {
        return error_reply(
            StatusCode::BAD_REQUEST,
            "a signed fleet report needs nonce=<hex of 16 to 64 bytes>",
            &[],
        );
    }
    let site = report.site.clone();
    let mut body = match serde_json::to_vec(&StatusEnvelope {
        guard: Arc::unwrap_or_clone(report),
    }) {
        Ok(body) => body,
        Err(e) => {
            return error_reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "report serialisation failed",
                &[e.to_string()],
            )
        }
    };
    body.push(b'\n');
    let signature = match (&key, &nonce) {
        (Some(key), Some(nonce)) => Some(key.sign(&site, nonce, &body)),
        _ => None,
    };
    let mut resp = response(StatusCode::OK, "application/json", body);
    if let Some(sig) = signature.and_then(|s| HeaderValue::from_str(&s).ok()) {
        resp.headers_mut().insert(SIGNATURE_HEADER, sig);
    }
    resp
}

/// Drain request body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DrainBody {
    #[serde(default)]
    force: bool,
    #[serde(default)]
    reason: Option<String>,
}

async fn control(state: &StatusState, route: Route, req: Request<Incoming>) -> Reply {
    // Copied out so the watch lock is not held across the await below.
    let token = state.token.borrow().clone();
    let Some(token) = token else {
        return error_reply(
            StatusCode::NOT_FOUND,
            "not found (control disabled: no token configured)",
            &[],
        );
    };
    if req.method() != Method::POST {
        return method_not_allowed("POST");
    }
    if let Err(resp) = authorise(&token, req.headers().get(header::AUTHORIZATION)) {
        return *resp;
    }
    let body = match read_body(req, state.limits.max_body).await {
        Ok(body) => body,
        Err(resp) => return *resp,
    };
    let command = match route {
        Route::Reload => ControlCommand::Reload,
        Route::Service {
            name,
            action: ServiceAction::Drain,
        } => {
            let parsed = if body.iter().all(u8::is_ascii_whitespace) {
                DrainBody::default()
            } else {
                // An object only: serde would also accept a JSON array for a struct.
                let parsed = serde_json::from_slice::<serde_json::Value>(&body).and_then(|v| {
                    if v.is_object() {
                        serde_json::from_value::<DrainBody>(v)
                    } else {
                        Err(serde::de::Error::custom("expected a JSON object"))
                    }
                });
                match parsed {
                    Ok(parsed) => parsed,
                    Err(e) => {
                        return error_reply(
                            StatusCode::BAD_REQUEST,
                            "bad drain body",
                            &[e.to_string()],
                        )
                    }
                }
            };
            if let Some(reason) = &parsed.reason {
                if reason.len() > MAX_REASON_LEN {
                    return error_reply(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "reason too long",
                        &[format!(
                            "reason is {} bytes; a shutdown communication holds at most \
                             {MAX_REASON_LEN} (RFC 9003 §2)",
                            reason.len()
                        )],
                    );
                }
            }
            ControlCommand::Drain {
                service: name,
                force: parsed.force,
                reason: parsed.reason,
            }
        }
        Route::Service {
            name,
            action: ServiceAction::Undrain,
        } => ControlCommand::Undrain { service: name },
        Route::Service {
            name,
            action: ServiceAction::Check,
        } => ControlCommand::Check { service: name },
        Route::Status
        | Route::FleetReport
        | Route::Metrics
        | Route::Healthz
        | Route::Readyz
        | Route::NotFound => {
            return error_reply(StatusCode::NOT_FOUND, "not found", &[]);
        }
    };
    tracing::info!(?command, "control request");
    match ask_coordinator(state, command).await {
        Some(ControlReply::Ok(message)) => json_reply(
            StatusCode::OK,
            &serde_json::json!({ "ok": true, "message": message }),
        ),
        Some(ControlReply::NotFound) => error_reply(StatusCode::NOT_FOUND, "no such service", &[]),
        Some(ControlReply::Rejected(reasons)) => {
            error_reply(StatusCode::CONFLICT, "rejected", &reasons)
        }
        None => error_reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon did not answer in time",
            &[],
        ),
    }
}

/// `None` when the coordinator is gone or too slow.
async fn ask_coordinator(state: &StatusState, command: ControlCommand) -> Option<ControlReply> {
    let (reply, answer) = oneshot::channel();
    let exchange = async {
        state
            .control
            .send(ControlRequest { command, reply })
            .await
            .ok()?;
        answer.await.ok()
    };
    tokio::time::timeout(state.limits.reply_timeout, exchange)
        .await
        .ok()
        .flatten()
}

fn authorise(token: &[u8], header: Option<&HeaderValue>) -> Result<(), Box<Reply>> {
    let unauthorised = || {
        let mut resp = error_reply(
            StatusCode::UNAUTHORIZED,
            "missing or malformed Authorization: Bearer header",
            &[],
        );
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"anyguard\""),
        );
        Box::new(resp)
    };
    let value = header.ok_or_else(unauthorised)?.as_bytes();
    let (scheme, presented) = match value.iter().position(|&b| b == b' ') {
        Some(i) => (&value[..i], value[i + 1..].trim_ascii()),
        None => return Err(unauthorised()),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") || presented.is_empty() {
        return Err(unauthorised());
    }
    if bool::from(presented.ct_eq(token)) {
        Ok(())
    } else {
        Err(Box::new(error_reply(
            StatusCode::FORBIDDEN,
            "wrong token",
            &[],
        )))
    }
}

async fn read_body(req: Request<Incoming>, max: usize) -> Result<Bytes, Box<Reply>> {
    let too_large = || {
        Box::new(error_reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
            &[format!("at most {max} bytes")],
        ))
    };
    // Refuse early on a declared length, without reading anything.
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > u64::try_from(max).unwrap_or(u64::MAX) {
            return Err(too_large());
        }
    }
    match Limited::new(req.into_body(), max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(too_large()),
        Err(e) => Err(Box::new(error_reply(
            StatusCode::BAD_REQUEST,
            "could not read the request body",
            &[e.to_string()],
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_per_source_are_capped_and_released() {
        let table = Arc::new(PerSource::default());
        let a: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        let b: std::net::IpAddr = "127.0.0.2".parse().unwrap();
        let first = table.enter(a, 2).unwrap();
        let _second = table.enter(a, 2).unwrap();
        assert!(table.enter(a, 2).is_none());
        assert!(table.enter(b, 2).is_some());
        drop(first);
        assert!(table.enter(a, 2).is_some());
    }

    #[test]
    fn routes_are_parsed_with_percent_decoded_service_names() {
        assert_eq!(route("/status"), Route::Status);
        assert_eq!(route("/fleet/report"), Route::FleetReport);
        assert_eq!(route("/reload"), Route::Reload);
        assert_eq!(
            route("/services/dns%2Dv4/drain"),
            Route::Service {
                name: "dns-v4".into(),
                action: ServiceAction::Drain
            }
        );
        assert_eq!(route("/services//drain"), Route::NotFound);
        assert_eq!(route("/services/a%2Fb/drain"), Route::NotFound);
        assert_eq!(route("/services/dns/explode"), Route::NotFound);
        assert_eq!(route("/services/dns"), Route::NotFound);
        assert_eq!(route("/services/dns/drain/x"), Route::NotFound);
        assert_eq!(route("/status/"), Route::NotFound);
        assert_eq!(route("/services/%zz/check"), Route::NotFound);
    }

    proptest::proptest! {
        #[test]
        fn any_path_routes_without_panicking(path in "\\PC{0,64}", raw in "[/%a-z0-9]{0,40}") {
            let _ = route(&path);
            let _ = route(&format!("/services/{raw}/drain"));
            let _ = percent_decode(&raw);
        }
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_token_must_match() {
        let ok = HeaderValue::from_static("bearer s3cret");
        assert!(authorise(b"s3cret", Some(&ok)).is_ok());
        let wrong = HeaderValue::from_static("Bearer s3cre");
        let resp = authorise(b"s3cret", Some(&wrong)).unwrap_err();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        for bad in ["Basic czNjcmV0", "Bearer", "Bearer ", "s3cret"] {
            let v = HeaderValue::from_static(bad);
            let resp = authorise(b"s3cret", Some(&v)).unwrap_err();
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{bad}");
        }
        let resp = authorise(b"s3cret", None).unwrap_err();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert!(resp.headers().contains_key(header::WWW_AUTHENTICATE));
    }

    #[test]
    fn token_file_is_trimmed_and_must_not_be_empty() {
        let dir = std::env::temp_dir().join(format!("anyguard-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good");
        std::fs::write(&good, "  s3cret\n").unwrap();
        assert_eq!(read_token_file(&good).unwrap(), b"s3cret");
        let empty = dir.join("empty");
        std::fs::write(&empty, "\n\n").unwrap();
        assert!(matches!(
            read_token_file(&empty),
            Err(TokenError::Empty { .. })
        ));
        assert!(matches!(
            read_token_file(&dir.join("missing")),
            Err(TokenError::Read { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
