//! HTTP probe: an HTTP/1.1 GET on a fresh connection (or, opt-in, one kept per check),
//! plain or TLS.
//!
//! Up when the status is within the configured inclusive range and, if configured, the
//! body contains a substring; only the first [`MAX_BODY`](super::http_wire::MAX_BODY) bytes of the body are read.
//! `https://` runs the same exchange over TLS ([`super::tls`]). One connection per probe
//! (`Connection: close`), so a probe measures connection set-up (and TLS handshake) too;
//! it is closed with a reset once the answer is read (see [`super::tcp`]).
//!
//! What a probe costs besides the kernel's TCP work is kept small (issue 13: a thousand
//! services probe thousands of times a second). The request's bytes are built once, when
//! the probe is built. A plain probe connects as the TCP probe does ([`super::tcp::connect`]:
//! on loopback the handshake is over when `connect` returns) and writes its request on
//! the just-connected socket before the socket goes to the reactor — the send buffer of a
//! new connection is empty, so the write of a small request completes at once — so the
//! only turn of the runtime a probe waits for is the one that brings the answer. The
//! answer is read by one sans-IO reader for plain and TLS connections
//! ([`super::http_wire`], `httparse` underneath): until the head is complete, and the
//! body only when the check matches on it (bounded by its framing and 64 KiB).
//! `benches/many_services.rs` measures the probe against a plain hyper client.
//!
//! **Kept connections** (`reuse_connection = true`, opt-in per check; plain and TLS): the
//! check keeps one connection of its own between probes and sends its requests on it
//! without `Connection: close` (persistence is HTTP/1.1's default, RFC 9112 §9.3), as
//! Envoy's health checker does by default. It saves the prober and the target a TCP (and
//! TLS) handshake per probe; what a probe then no longer proves is that a *new* client can
//! connect (see docs/config.md). The rules that keep an answer from being read as another
//! probe's:
//! - the connection is taken out of the check for the probe and put back only after a
//!   passing answer read to its framed end (length or chunks, trailers included) with no
//!   byte after it and no `Connection: close` ([`super::http_wire::ResponseReader::end`]);
//!   a probe that failed, or was dropped at its timeout, drops (resets) the connection;
//! - before a request goes out, the kept socket is read without waiting: bytes there (or,
//!   for TLS, application data or a `close_notify`) mean the connection is not at the
//!   start of an answer, and it is dropped;
//! - a kept connection the server closed or reset between probes — seen before the
//!   request, or as the request goes out, before any byte of an answer — is not a failure:
//!   the probe opens a new connection at once, within the same probe and timeout, and that
//!   connection's result is the result (a `GET` may be repeated, RFC 9112 §9.3.1). The
//!   detail says so.

use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use hyper::Uri;
use socket2::{SockRef, Socket};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::http_wire::{encode_request, ResponseError, ResponseReader, Reuse};
use super::tcp::{connect, Connected};
use super::tls::TlsTarget;
use super::{truncate, Probe, ProbeOutcome};
use crate::config::HttpTls;

/// How much of a failing body goes into the detail.
const DETAIL_BODY: usize = 200;

/// `type = "http"`.
#[derive(Debug, Clone)]
pub struct HttpProbe {
    host: String,
    port: u16,
    /// The address when the URL names one (no lookup).
    literal: Option<SocketAddr>,
    authority: String,
    path: String,
    /// The request's bytes (`GET path`, `Host: authority`, …), built once.
    request: Box<[u8]>,
    status: (u16, u16),
    body_contains: Option<String>,
    tls: Option<TlsTarget>,
    /// A host-name lookup of this probe is running on the blocking pool. The resolver
    /// cannot be cancelled: a probe that times out leaves its lookup behind, so a hung
    /// resolver would otherwise take one more blocking thread every interval.
    lookup_busy: Arc<AtomicBool>,
    /// `reuse_connection`: the connection kept between probes (`None`: a fresh
    /// connection per probe).
    kept: Option<KeptSlot>,
}

/// A connection kept between the probes of one check.
#[derive(Debug)]
enum KeptConnection {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Where a check keeps its connection between probes. A clone starts empty: a connection
/// is never shared between checks (or between two copies of one).
#[derive(Debug, Default)]
struct KeptSlot(Mutex<Option<KeptConnection>>);

impl Clone for KeptSlot {
    fn clone(&self) -> Self {
        KeptSlot::default()
    }
}

impl KeptSlot {
    /// The kept connection, taken out for a probe: dropped with the probe unless put back.
    fn take(&self) -> Option<KeptConnection> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    fn put(&self, connection: KeptConnection) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(connection);
    }
}

/// How one request on a connection went.
enum Exchange {
    /// The probe's result, and whether the connection can carry the next request (why
    /// not, for the detail).
    Answered {
        result: Result<String, String>,
        reuse: Result<(), String>,
    },
    /// A kept connection turned out closed or reset before any byte of an answer: why.
    Gone(String),
}

impl HttpProbe {
    /// Parses `url` (`http://host[:port][/path]`, or `https://…` with `tls`); the error
    /// says why it cannot be used.
    pub fn new(
        url: &str,
        status: (u16, u16),
        body_contains: Option<String>,
        tls: Option<&HttpTls>,
    ) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|e| format!("{e}"))?;
        let https = match (uri.scheme_str(), tls) {
            (Some("http"), None) => false,
            (Some("https"), Some(_)) => true,
            (Some("https"), None) => return Err("https:// needs TLS settings".into()),
            _ => return Err("only http:// and https:// URLs are supported".into()),
        };
        let authority = uri.authority().ok_or("no host")?.clone();
        let host = authority.host();
        if host.is_empty() {
            return Err("no host".into());
        }
        // `[::1]` in a URL is `::1` for connect().
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let tls = match tls {
            Some(t) if https => Some(TlsTarget::new(
                &host,
                t.server_name.as_deref(),
                t.ca_file.as_deref(),
                t.verify,
            )?),
            _ => None,
        };
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        // The URI's parser admits no control characters, spaces or line ends in either:
        // both go into the request as they are.
        let path = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        Ok(HttpProbe {
            port,
            literal: host
                .parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, port)),
            host,
            tls,
            request: encode_request(&path, authority.as_str(), false),
            authority: authority.as_str().to_owned(),
            path,
            status,
            body_contains,
            lookup_busy: Arc::default(),
            kept: None,
        })
    }

    /// With `reuse`, keeps one connection between probes (`reuse_connection`): the
    /// request without `Connection: close`, each answer read to its end.
    #[must_use]
    pub fn reuse_connection(mut self, reuse: bool) -> Self {
        self.request = encode_request(&self.path, &self.authority, reuse);
        self.kept = reuse.then(KeptSlot::default);
        self
    }

    /// The addresses of the URL's host name (a URL with an address has `literal`),
    /// resolved with at most one lookup of this probe in flight (a new one while the last
    /// still runs fails the probe at once instead of queueing behind it).
    async fn addresses(&self) -> Result<Vec<SocketAddr>, String> {
        if self.lookup_busy.swap(true, Ordering::AcqRel) {
            return Err(format!(
                "name lookup of {} still running since an earlier probe",
                self.host
            ));
        }
        let (busy, host, port) = (Arc::clone(&self.lookup_busy), self.host.clone(), self.port);
        let lookup = tokio::task::spawn_blocking(move || {
            let r = (host.as_str(), port)
                .to_socket_addrs()
                .map(Iterator::collect::<Vec<_>>);
            busy.store(false, Ordering::Release);
            r
        });
        match lookup.await {
            Ok(Ok(addrs)) if !addrs.is_empty() => Ok(addrs),
            Ok(Ok(_)) => Err(format!("{} has no address", self.host)),
            Ok(Err(e)) => Err(format!("resolve {}: {e}", self.host)),
            Err(e) => Err(format!("resolve {}: {e}", self.host)),
        }
    }

    /// A connection to the URL's address, or to the first of its host name's addresses
    /// that accepts one (tried in turn; the last error when none does).
    async fn connect(&self) -> Result<Connected, String> {
        let connected = match self.literal {
            Some(addr) => connect(addr).await,
            None => {
                let mut last = None;
                for addr in self.addresses().await? {
                    match connect(addr).await {
                        Ok(c) => return Ok(c),
                        Err(e) => last = Some(e),
                    }
                }
                // `addresses` has at least one.
                Err(last.unwrap_or_else(|| std::io::ErrorKind::NotFound.into()))
            }
        };
        connected.map_err(|e| format!("connect to {}: {e}", self.authority))
    }

    /// Whether the probe speaks TLS (`https://`).
    pub(super) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    async fn check(&self) -> Result<String, String> {
        let Some(slot) = &self.kept else {
            return self.fresh(false).await.0;
        };
        // Taken out: dropped (reset) with this probe unless put back after a clean answer.
        let mut gone = None;
        if let Some(mut connection) = slot.take() {
            match idle(&mut connection) {
                Ok(()) => match self.on_kept(&mut connection).await {
                    Exchange::Answered { result, reuse } => {
                        return self.settle(slot, connection, result, reuse);
                    }
                    Exchange::Gone(why) => gone = Some(why),
                },
                Err(why) => gone = Some(why),
            }
        }
        // No kept connection, or the kept one was closed: a new one, once, within this
        // probe (and its timeout).
        let (result, connection) = self.fresh(true).await;
        let result = match connection {
            Some((connection, reuse)) => self.settle(slot, connection, result, reuse),
            None => result,
        };
        match gone {
            None => result,
            Some(why) => {
                let note = |d: String| format!("{d}; new connection: the kept one {why}");
                result.map(note).map_err(note)
            }
        }
    }

    /// Puts `connection` back for the next probe after a passing answer that leaves it at
    /// the start of the next one; the result, with why the connection was not kept when
    /// that matters (a passing answer that ends reuse).
    fn settle(
        &self,
        slot: &KeptSlot,
        connection: KeptConnection,
        result: Result<String, String>,
        reuse: Result<(), String>,
    ) -> Result<String, String> {
        match (result, reuse) {
            (Ok(detail), Ok(())) => {
                slot.put(connection);
                Ok(detail)
            }
            (Ok(detail), Err(why)) => Ok(format!("{detail}; connection not kept: {why}")),
            // A failed probe's connection is not trusted with the next one: a failing check
            // is judged on fresh connections, as a new client would see the target.
            (Err(detail), _) => Err(detail),
        }
    }

    /// One request on a new connection; with `keep`, the connection too when the answer
    /// came whole (and whether it can carry the next request).
    async fn fresh(
        &self,
        keep: bool,
    ) -> (
        Result<String, String>,
        Option<(KeptConnection, Result<(), String>)>,
    ) {
        let connected = match self.connect().await {
            Ok(c) => c,
            Err(e) => return (Err(e), None),
        };
        let sent = |e: std::io::Error| format!("GET {}: sending the request: {e}", self.path);
        match &self.tls {
            None => {
                let mut stream = match send(connected, &self.request).await {
                    Ok(s) => s,
                    Err(e) => return (Err(sent(e)), None),
                };
                match self.evaluate(&mut stream, keep, false).await {
                    Exchange::Answered { result, reuse } if keep => {
                        (result, Some((KeptConnection::Plain(stream), reuse)))
                    }
                    Exchange::Answered { result, .. } => (result, None),
                    Exchange::Gone(why) => (Err(why), None),
                }
            }
            Some(tls) => {
                let stream = match connected.into_stream() {
                    Ok(s) => s,
                    Err(e) => return (Err(sent(e)), None),
                };
                // The handshake's flights and then the request: no waiting for ACKs.
                let _ = stream.set_nodelay(true);
                let mut stream = match tls.connector.connect(tls.server_name.clone(), stream).await
                {
                    Ok(s) => s,
                    Err(e) => {
                        return (
                            Err(format!("TLS handshake with {}: {e}", self.authority)),
                            None,
                        )
                    }
                };
                if let Err(e) = write_request(&mut stream, &self.request).await {
                    return (Err(sent(e)), None);
                }
                match self.evaluate(&mut stream, keep, false).await {
                    Exchange::Answered { result, reuse } if keep => {
                        (result, Some((KeptConnection::Tls(Box::new(stream)), reuse)))
                    }
                    Exchange::Answered { result, .. } => (result, None),
                    Exchange::Gone(why) => (Err(why), None),
                }
            }
        }
    }

    /// One request on a kept connection (found idle and clean).
    async fn on_kept(&self, connection: &mut KeptConnection) -> Exchange {
        let written = match connection {
            KeptConnection::Plain(s) => write_request(s, &self.request).await,
            KeptConnection::Tls(s) => write_request(s, &self.request).await,
        };
        match written {
            Err(e) if gone(&e) => {
                return Exchange::Gone(format!("failed as the request went out: {e}"))
            }
            Err(e) => {
                return Exchange::Answered {
                    result: Err(format!("GET {}: sending the request: {e}", self.path)),
                    reuse: Err(String::new()),
                }
            }
            Ok(()) => {}
        }
        match connection {
            KeptConnection::Plain(s) => self.evaluate(s, true, true).await,
            KeptConnection::Tls(s) => self.evaluate(s, true, true).await,
        }
    }

    /// Reads the answer to the request sent on `stream` (plain or TLS) and evaluates it:
    /// the head, and the body only when the check matches on it and the status passes —
    /// or, to `keep` the connection, the whole answer, and whether the connection can
    /// carry the next request. On a `kept` connection, an end before any byte of the
    /// answer is [`Exchange::Gone`]. Dropping `stream` afterwards (or the probe, at its
    /// timeout) resets the connection.
    async fn evaluate<S: AsyncRead + Unpin>(
        &self,
        stream: &mut S,
        keep: bool,
        kept: bool,
    ) -> Exchange {
        let answered = |result: Result<String, String>, reuse| Exchange::Answered { result, reuse };
        let not_asked = || Err(String::new());
        let mut reader = ResponseReader::default();
        let code = match read_until(stream, &mut reader, ResponseReader::head).await {
            Ok(code) => code,
            Err(e) if kept && reader.nothing_received() && e.is_gone() => {
                return Exchange::Gone(format!("ended before an answer: {e}"));
            }
            Err(e) => return answered(Err(format!("GET {}: {e}", self.path)), not_asked()),
        };
        let in_range = (self.status.0..=self.status.1).contains(&code);
        if !in_range {
            return answered(
                Err(format!(
                    "status {code} not in {}..={}",
                    self.status.0, self.status.1
                )),
                not_asked(),
            );
        }
        let Some(needle) = &self.body_contains else {
            let result = Ok(format!("status {code}"));
            if !keep {
                return answered(result, not_asked());
            }
            // Not matched on, but read to its end: the next answer starts after it.
            let reuse = match read_until(stream, &mut reader, ResponseReader::body).await {
                Ok(_) => rest(stream, &mut reader).await,
                Err(e) => Err(format!("reading body: {e}")),
            };
            return answered(result, reuse);
        };
        let body = match read_until(stream, &mut reader, ResponseReader::body).await {
            Ok(body) => body,
            Err(e) => return answered(Err(format!("reading body: {e}")), not_asked()),
        };
        let text = String::from_utf8_lossy(&body);
        if !text.contains(needle.as_str()) {
            return answered(
                Err(format!(
                    "status {code}, body does not contain {needle:?}: {:?}",
                    truncate(&text, DETAIL_BODY)
                )),
                not_asked(),
            );
        }
        let result = Ok(format!("status {code}, body contains {needle:?}"));
        let reuse = if keep {
            rest(stream, &mut reader).await
        } else {
            not_asked()
        };
        answered(result, reuse)
    }
}

/// After the body: the rest of the answer (trailers), and whether the connection can
/// carry the next request (why not otherwise).
async fn rest<S: AsyncRead + Unpin>(
    stream: &mut S,
    reader: &mut ResponseReader,
) -> Result<(), String> {
    match read_until(stream, reader, ResponseReader::end).await {
        Ok(Reuse::Keep) => Ok(()),
        Ok(Reuse::End(why)) => Err(why.to_string()),
        Err(e) => Err(format!("after the body: {e}")),
    }
}

/// Writes the whole request on a kept or TLS connection.
async fn write_request<S: AsyncWrite + Unpin>(
    stream: &mut S,
    request: &[u8],
) -> std::io::Result<()> {
    stream.write_all(request).await?;
    stream.flush().await
}

/// Whether an I/O error says the peer ended the connection (closed or reset it).
fn gone(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    matches!(
        e.kind(),
        BrokenPipe | ConnectionAborted | ConnectionReset | UnexpectedEof
    )
}

/// Whether a kept connection can carry a request now: nothing has arrived on it since the
/// last answer. Read without waiting, straight from the socket (not through the reactor's
/// readiness, which may not have seen the latest segment yet). Anything there — the
/// server's close or reset, bytes no request asked for — and the connection is not
/// used: why.
fn idle(connection: &mut KeptConnection) -> Result<(), String> {
    match connection {
        KeptConnection::Plain(stream) => {
            let mut byte = [MaybeUninit::<u8>::uninit(); 1];
            match SockRef::from(&*stream)
                .recv_with_flags(&mut byte, libc::MSG_PEEK | libc::MSG_DONTWAIT)
            {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
                Ok(0) => Err("was closed by the server".into()),
                Ok(_) => Err("had bytes before the request".into()),
                Err(e) => Err(idle_error(&e)),
            }
        }
        KeptConnection::Tls(stream) => {
            let (tcp, tls) = stream.get_mut();
            let socket = SockRef::from(&*tcp);
            // What arrived, through rustls: a session ticket or a key update is handled
            // there and leaves the connection usable; application data or a close is not.
            // Bounded: each round takes bytes already in the socket, into rustls's bounded
            // buffer.
            for _ in 0..16 {
                match tls.read_tls(&mut &*socket) {
                    Ok(0) => return Err("was closed by the server".into()),
                    Ok(_) => {
                        tls.process_new_packets()
                            .map_err(|e| format!("had a TLS error: {e}"))?;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(idle_error(&e)),
                }
            }
            let state = tls
                .process_new_packets()
                .map_err(|e| format!("had a TLS error: {e}"))?;
            if state.peer_has_closed() {
                Err("was closed by the server (close_notify)".into())
            } else if state.plaintext_bytes_to_read() > 0 {
                Err("had bytes before the request".into())
            } else {
                Ok(())
            }
        }
    }
}

fn idle_error(e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::ConnectionReset {
        "was reset by the server".into()
    } else {
        format!("failed: {e}")
    }
}

impl Probe for HttpProbe {
    async fn probe(&self) -> ProbeOutcome {
        ProbeOutcome::timed(self.check()).await
    }
}

/// Sends `request` on a plain connection and hands the connection over to the reactor
/// to wait for the answer. On a connection established within `connect` the request is
/// written before the socket goes to the reactor — no turn of the runtime to learn that
/// it is writable; what the send buffer does not take (on a new connection, nothing
/// normally) goes through the reactor as the buffer drains.
async fn send(connected: Connected, request: &[u8]) -> std::io::Result<TcpStream> {
    let written = match &connected {
        Connected::Now(socket) => write_now(socket, request)?,
        Connected::Later(_) => 0,
    };
    let mut stream = connected.into_stream()?;
    if written < request.len() {
        // No waiting for ACKs (Nagle) between the pieces.
        let _ = stream.set_nodelay(true);
        stream.write_all(&request[written..]).await?;
    }
    Ok(stream)
}

/// Writes as much of `request` as `socket` (non-blocking, not on the reactor) takes now:
/// all of it on a new connection, whose send buffer is empty. The count written; the
/// rest, if any, goes through the reactor.
fn write_now(socket: &Socket, request: &[u8]) -> std::io::Result<usize> {
    let mut written = 0;
    while written < request.len() {
        // MSG_NOSIGNAL: a reset connection is an error here, not a SIGPIPE.
        match socket.send_with_flags(&request[written..], libc::MSG_NOSIGNAL) {
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

/// Why reading an answer failed.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error(transparent)]
    Response(#[from] ResponseError),
    #[error("reading the response: {0}")]
    Io(#[from] std::io::Error),
}

impl ReadError {
    /// The connection ended (closed, reset) rather than carrying a bad answer.
    fn is_gone(&self) -> bool {
        match self {
            ReadError::Response(e) => *e == ResponseError::ClosedEmpty,
            ReadError::Io(e) => gone(e),
        }
    }
}

/// Reads from `stream` into `reader` until `step` has an answer. Ends: once the
/// connection has ended, the reader answers or fails (its contract), and every buffer it
/// fills is bounded.
async fn read_until<S, T>(
    stream: &mut S,
    reader: &mut ResponseReader,
    step: fn(&mut ResponseReader) -> Result<Option<T>, ResponseError>,
) -> Result<T, ReadError>
where
    S: AsyncRead + Unpin,
{
    loop {
        if let Some(answer) = step(reader)? {
            return Ok(answer);
        }
        if stream.read_buf(reader.read_buf()).await? == 0 {
            reader.closed();
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::SocketAddr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;

    use super::*;
    use crate::health::probe::http_wire::MAX_BODY;

    /// A one-response-per-connection HTTP server on 127.0.0.1:0 answering `status` and
    /// `body` to every request, until the returned handle is dropped.
    pub(crate) async fn serve(status: u16, body: String) -> (SocketAddr, AbortOnDropTask) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let body = body.clone();
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 1024];
                    // Read the request head (bounded).
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16 * 1024 {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = sock.write_all(head.as_bytes()).await;
                    let _ = sock.write_all(body.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        (addr, AbortOnDropTask(task))
    }

    /// Aborts a test server when dropped.
    pub(crate) struct AbortOnDropTask(JoinHandle<()>);

    impl Drop for AbortOnDropTask {
        fn drop(&mut self) {
            self.0.abort();
        }
    }

    fn probe(addr: SocketAddr, status: (u16, u16), body: Option<&str>) -> HttpProbe {
        HttpProbe::new(
            &format!("http://{addr}/healthz"),
            status,
            body.map(str::to_owned),
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn a_host_name_is_resolved_and_each_address_tried() {
        let (addr, _server) = serve(200, String::new()).await;
        // `localhost` comes from /etc/hosts (no DNS), often ::1 first, where nothing
        // listens: the probe goes on to 127.0.0.1.
        let p = HttpProbe::new(
            &format!("http://localhost:{}/healthz", addr.port()),
            (200, 299),
            None,
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let out = p.probe().await;
        assert!(out.ok, "{out:?}");
        assert!(!p.lookup_busy.load(Ordering::Acquire));
    }

    #[tokio::test]
    async fn a_lookup_still_running_fails_the_next_probe_instead_of_starting_another() {
        let p = HttpProbe::new("http://health.example.test/healthz", (200, 299), None, None)
            .unwrap_or_else(|e| panic!("{e}"));
        // As a lookup left behind by a probe that timed out on a hung resolver.
        p.lookup_busy.store(true, Ordering::Release);
        let out = p.probe().await;
        assert!(!out.ok);
        assert_eq!(
            out.detail,
            "name lookup of health.example.test still running since an earlier probe"
        );
    }

    #[tokio::test]
    async fn http_probe_passes_on_a_status_in_range() {
        let (addr, _server) = serve(204, String::new()).await;
        let out = probe(addr, (200, 299), None).probe().await;
        assert!(out.ok, "{out:?}");
        assert_eq!(out.detail, "status 204");
    }

    #[tokio::test]
    async fn http_probe_fails_on_a_status_out_of_range() {
        let (addr, _server) = serve(503, "busy".into()).await;
        let out = probe(addr, (200, 299), None).probe().await;
        assert!(!out.ok);
        assert_eq!(out.detail, "status 503 not in 200..=299");
    }

    #[tokio::test]
    async fn http_probe_checks_the_body_substring() {
        let (addr, _server) = serve(200, "all ok here".into()).await;
        assert!(probe(addr, (200, 200), Some("ok")).probe().await.ok);
        let out = probe(addr, (200, 200), Some("healthy")).probe().await;
        assert!(!out.ok);
        assert_eq!(
            out.detail,
            "status 200, body does not contain \"healthy\": \"all ok here\""
        );
    }

    #[tokio::test]
    async fn http_probe_reads_at_most_64_kib_of_the_body() {
        // The needle sits after the first 64 KiB: it must not be found.
        let body = format!("{}needle", "x".repeat(MAX_BODY));
        let (addr, _server) = serve(200, body).await;
        let out = probe(addr, (200, 200), Some("needle")).probe().await;
        assert!(!out.ok, "{out:?}");
        assert!(
            out.detail.len() < 400,
            "detail is bounded: {}",
            out.detail.len()
        );
    }

    #[tokio::test]
    async fn http_probe_fails_when_nothing_listens() {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        drop(listener);
        let out = probe(addr, (200, 299), None).probe().await;
        assert!(!out.ok);
        assert!(
            out.detail.starts_with(&format!("connect to {addr}: ")),
            "{out:?}"
        );
    }

    /// A request larger than the send buffer takes: the part written before the socket
    /// goes to the reactor and the rest written through it arrive whole and in order.
    #[tokio::test]
    async fn a_request_the_send_buffer_cannot_take_at_once_is_finished_through_the_reactor() {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let connected = connect(addr).await.unwrap_or_else(|e| panic!("{e}"));
        let Connected::Now(socket) = &connected else {
            panic!("a loopback connect still in progress: {connected:?}");
        };
        socket
            .set_send_buffer_size(4096)
            .unwrap_or_else(|e| panic!("{e}"));
        let request: Vec<u8> = (0..1u32 << 20).map(|i| i.to_le_bytes()[0]).collect();
        let (mut peer, _) = listener.accept().await.unwrap_or_else(|e| panic!("{e}"));
        // The kernel cannot take it all at once while the peer does not read.
        let room = socket.send_buffer_size().unwrap_or_else(|e| panic!("{e}"))
            + socket2::SockRef::from(&peer)
                .recv_buffer_size()
                .unwrap_or_else(|e| panic!("{e}"));
        assert!(room < request.len(), "{room} bytes of buffers");
        let (sent, received) = tokio::join!(send(connected, &request), async {
            let mut all = vec![0; request.len()];
            tokio::time::timeout(
                std::time::Duration::from_secs(10),
                peer.read_exact(&mut all),
            )
            .await
            .unwrap_or_else(|_| panic!("the request did not arrive within 10 s"))
            .unwrap_or_else(|e| panic!("{e}"));
            all
        });
        drop(sent.unwrap_or_else(|e| panic!("{e}")));
        assert!(received == request, "the bytes differ");
    }

    /// How a keep-alive test target answers on each connection.
    #[derive(Debug, Clone, Copy)]
    enum Keep {
        /// `200 ok` (`Content-Length`) to every request on the connection.
        Always,
        /// Answers one request as `Always` does, then closes its side.
        CloseAfterOne,
        /// Answers every request with `Connection: close`, then closes.
        SaysClose,
        /// Answers the first request; the second gets no answer, and what the target
        /// reads after it goes to the channel.
        HangOnSecond,
        /// Answers one request, then sends bytes no request asked for.
        BytesAfter,
        /// Answers the first request; closes at the second, without an answer.
        CloseOnSecond,
    }

    const KEEP_OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

    /// A keep-alive target on 127.0.0.1:0 answering as `keep` says (at most 100 requests
    /// a connection), counting the connections it accepts, until the handle is dropped.
    async fn serve_keeping(
        keep: Keep,
    ) -> (
        SocketAddr,
        Arc<std::sync::atomic::AtomicUsize>,
        tokio::sync::mpsc::Receiver<std::io::Result<usize>>,
        AbortOnDropTask,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (after_tx, after) = tokio::sync::mpsc::channel(4);
        let count = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let after_tx = after_tx.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    for n in 0..100 {
                        let mut req = Vec::new();
                        while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16 * 1024 {
                            match sock.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(k) => req.extend_from_slice(&buf[..k]),
                            }
                        }
                        match keep {
                            Keep::Always => {}
                            Keep::CloseAfterOne => {
                                let _ = sock.write_all(KEEP_OK).await;
                                let _ = sock.shutdown().await;
                                // Until the probe's next request meets the closed socket.
                                let _ = sock.read(&mut buf).await;
                                return;
                            }
                            Keep::SaysClose => {
                                let _ = sock
                                    .write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
                                    .await;
                                let _ = sock.shutdown().await;
                                return;
                            }
                            Keep::HangOnSecond if n == 1 => {
                                let read = tokio::time::timeout(
                                    std::time::Duration::from_secs(10),
                                    sock.read(&mut buf),
                                )
                                .await
                                .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()));
                                let _ = after_tx.send(read).await;
                                return;
                            }
                            Keep::HangOnSecond => {}
                            Keep::CloseOnSecond if n == 1 => return,
                            Keep::CloseOnSecond => {}
                            Keep::BytesAfter => {
                                let _ = sock.write_all(KEEP_OK).await;
                                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                                let _ = sock.write_all(b"HTTP/1.1 200 OK\r\n").await;
                                let _ = sock.read(&mut buf).await;
                                return;
                            }
                        }
                        if sock.write_all(KEEP_OK).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, accepted, after, AbortOnDropTask(task))
    }

    fn keeping(addr: SocketAddr, body: Option<&str>) -> HttpProbe {
        probe(addr, (200, 299), body).reuse_connection(true)
    }

    #[tokio::test]
    async fn a_kept_connection_serves_every_probe_of_its_check_and_the_default_does_not_keep() {
        let (addr, accepted, _after, _server) = serve_keeping(Keep::Always).await;
        let p = keeping(addr, Some("ok"));
        for _ in 0..5 {
            let out = p.probe().await;
            assert_eq!(
                (out.ok, out.detail.as_str()),
                (true, "status 200, body contains \"ok\"")
            );
        }
        let q = keeping(addr, None);
        for _ in 0..5 {
            let out = q.probe().await;
            assert_eq!((out.ok, out.detail.as_str()), (true, "status 200"));
        }
        // One connection per check, never shared: a clone starts without one.
        let r = q.clone();
        assert!(r.probe().await.ok);
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
        let fresh = probe(addr, (200, 299), None);
        for _ in 0..3 {
            assert!(fresh.probe().await.ok);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 6);
    }

    #[tokio::test]
    async fn a_kept_connection_closed_between_probes_is_replaced_within_the_probe() {
        let (addr, accepted, _after, _server) = serve_keeping(Keep::CloseAfterOne).await;
        let p = keeping(addr, None);
        assert_eq!(p.probe().await.detail, "status 200");
        // Until the close has arrived (bounded).
        for _ in 0..100 {
            let kept = p.kept.as_ref().and_then(KeptSlot::take);
            let closed = match kept {
                Some(mut c) => {
                    let r = idle(&mut c);
                    if let Some(slot) = &p.kept {
                        slot.put(c);
                    }
                    r.is_err()
                }
                None => panic!("the connection was not kept"),
            };
            if closed {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let out = p.probe().await;
        assert!(out.ok, "{out:?}");
        assert_eq!(
            out.detail,
            "status 200; new connection: the kept one was closed by the server"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_kept_connection_closed_as_the_request_goes_out_is_replaced_within_the_probe() {
        // The target closes the kept connection when the second request arrives, without
        // an answer (its idle timeout racing the request): nothing to see before sending.
        let (addr, accepted, _after, _server) = serve_keeping(Keep::CloseOnSecond).await;
        let p = keeping(addr, None);
        assert_eq!(p.probe().await.detail, "status 200");
        let out = p.probe().await;
        assert!(out.ok, "{out:?}");
        assert!(
            out.detail
                .starts_with("status 200; new connection: the kept one ended before an answer: "),
            "{out:?}"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_answer_with_connection_close_ends_reuse_and_says_so() {
        let (addr, accepted, _after, _server) = serve_keeping(Keep::SaysClose).await;
        let p = keeping(addr, None);
        for _ in 0..2 {
            let out = p.probe().await;
            assert_eq!(
                (out.ok, out.detail.as_str()),
                (
                    true,
                    "status 200; connection not kept: the answer says Connection: close"
                )
            );
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_probe_dropped_at_its_timeout_resets_its_kept_connection() {
        let (addr, accepted, mut after, _server) = serve_keeping(Keep::HangOnSecond).await;
        let p = keeping(addr, None);
        assert!(p.probe().await.ok);
        let timed_out =
            tokio::time::timeout(std::time::Duration::from_millis(200), p.probe()).await;
        assert!(
            timed_out.is_err(),
            "the hung target answered: {timed_out:?}"
        );
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), after.recv())
            .await
            .unwrap_or_else(|_| panic!("the target never saw the end of the connection"));
        assert_eq!(
            read.and_then(|r| r.err()).map(|e| e.kind()),
            Some(std::io::ErrorKind::ConnectionReset)
        );
        // The next probe: a new connection, not the one with an answer still due.
        let out = p.probe().await;
        assert_eq!((out.ok, out.detail.as_str()), (true, "status 200"));
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn bytes_on_a_kept_connection_before_the_request_drop_it() {
        let (addr, accepted, _after, _server) = serve_keeping(Keep::BytesAfter).await;
        let p = keeping(addr, None);
        assert!(p.probe().await.ok);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let out = p.probe().await;
        assert_eq!(
            (out.ok, out.detail.as_str()),
            (
                true,
                "status 200; new connection: the kept one had bytes before the request"
            )
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn http_probe_parses_urls() {
        let p = HttpProbe::new("http://[::1]:8080/a?b=1", (200, 299), None, None)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (p.host.as_str(), p.port, p.path.as_str()),
            ("::1", 8080, "/a?b=1")
        );
        assert_eq!(p.authority, "[::1]:8080");
        let p = HttpProbe::new("http://localhost", (200, 299), None, None)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((p.port, p.path.as_str()), (80, "/"));
        assert!(HttpProbe::new("https://localhost/", (200, 299), None, None).is_err());
        assert!(HttpProbe::new("ftp://localhost/", (200, 299), None, None).is_err());
    }
}
