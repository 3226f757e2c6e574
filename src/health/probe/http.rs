//! HTTP probe: an HTTP/1.1 GET on a fresh connection, plain or TLS.
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

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hyper::Uri;
use socket2::Socket;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::http_wire::{encode_request, ResponseError, ResponseReader};
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
            request: encode_request(&path, authority.as_str()),
            authority: authority.as_str().to_owned(),
            path,
            status,
            body_contains,
            lookup_busy: Arc::default(),
        })
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
        let connected = self.connect().await?;
        let sent = |e: std::io::Error| format!("GET {}: sending the request: {e}", self.path);
        match &self.tls {
            None => {
                let stream = send(connected, &self.request).await.map_err(sent)?;
                self.evaluate(stream).await
            }
            Some(tls) => {
                let stream = connected.into_stream().map_err(sent)?;
                // The handshake's flights and then the request: no waiting for ACKs.
                let _ = stream.set_nodelay(true);
                let mut stream = tls
                    .connector
                    .connect(tls.server_name.clone(), stream)
                    .await
                    .map_err(|e| format!("TLS handshake with {}: {e}", self.authority))?;
                stream.write_all(&self.request).await.map_err(sent)?;
                stream.flush().await.map_err(sent)?;
                self.evaluate(stream).await
            }
        }
    }

    /// Reads the answer to the request sent on `stream` (plain or TLS) and evaluates it:
    /// the head, and the body only when the check matches on it and the status passes.
    /// Dropping `stream` afterwards (or the probe, at its timeout) resets the connection.
    async fn evaluate<S: AsyncRead + Unpin>(&self, mut stream: S) -> Result<String, String> {
        let mut reader = ResponseReader::default();
        let code = read_until(&mut stream, &mut reader, ResponseReader::head)
            .await
            .map_err(|e| format!("GET {}: {e}", self.path))?;
        let in_range = (self.status.0..=self.status.1).contains(&code);
        if !in_range {
            return Err(format!(
                "status {code} not in {}..={}",
                self.status.0, self.status.1
            ));
        }
        let Some(needle) = &self.body_contains else {
            return Ok(format!("status {code}"));
        };
        let body = read_until(&mut stream, &mut reader, ResponseReader::body)
            .await
            .map_err(|e| format!("reading body: {e}"))?;
        let text = String::from_utf8_lossy(&body);
        if text.contains(needle.as_str()) {
            Ok(format!("status {code}, body contains {needle:?}"))
        } else {
            Err(format!(
                "status {code}, body does not contain {needle:?}: {:?}",
                truncate(&text, DETAIL_BODY)
            ))
        }
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
