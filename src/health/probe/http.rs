//! HTTP probe: an HTTP/1.1 GET with hyper 1 over a tokio `TcpStream`.
//!
//! Up when the status is within the configured inclusive range and, if configured, the
//! body contains a substring; only the first [`MAX_BODY`] bytes of the body are read.
//! `https://` runs the same exchange over TLS ([`super::tls`]). One connection per probe
//! (`Connection: close`), so a probe measures connection set-up (and TLS handshake) too;
//! it is closed with a reset once the answer is read (see [`super::tcp`]).
//!
//! What a probe costs besides the kernel's TCP work is kept small (issue 13: a thousand
//! services probe thousands of times a second): the request's URI and header values are
//! parsed once, when the probe is built, and the hyper connection is driven inside the
//! probe's own future instead of a task spawned per probe (a spawn allocates and moves
//! the whole connection state; `benches/many_services.rs` measures the probe against a
//! plain hyper client that does spawn it).

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{HeaderValue, CONNECTION, HOST, USER_AGENT};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::tls::TlsTarget;
use super::{truncate, Probe, ProbeOutcome};
use crate::config::HttpTls;

/// At most this much of the body is read.
pub(crate) const MAX_BODY: usize = 64 * 1024;

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
    /// `path` as the request's URI, parsed once.
    uri: Uri,
    /// `authority` as the `Host` header value, parsed once.
    host_header: HeaderValue,
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
            uri: path.parse().map_err(|e| format!("{e}"))?,
            host_header: HeaderValue::from_str(authority.as_str()).map_err(|e| format!("{e}"))?,
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

    async fn check(&self) -> Result<String, String> {
        let connected = match self.literal {
            Some(addr) => TcpStream::connect(addr).await,
            None => TcpStream::connect(&self.addresses().await?[..]).await,
        };
        let stream = connected.map_err(|e| format!("connect to {}: {e}", self.authority))?;
        // Latency matters more than throughput for a health check; ignore failures.
        let _ = stream.set_nodelay(true);
        // Closed with a RST once the answer is read (or the probe is dropped): no
        // TIME_WAIT on the target's side, which closes first after `Connection: close`.
        super::tcp::close_with_reset(&stream);
        match &self.tls {
            None => self.exchange(stream).await,
            Some(tls) => {
                let stream = tls
                    .connector
                    .connect(tls.server_name.clone(), stream)
                    .await
                    .map_err(|e| format!("TLS handshake with {}: {e}", self.authority))?;
                self.exchange(stream).await
            }
        }
    }

    /// The GET and its evaluation over an established (plain or TLS) connection. The
    /// connection is polled alongside the request and the body (not spawned); dropping
    /// the probe (its timeout) closes it.
    async fn exchange<S>(&self, stream: S) -> Result<String, String>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(NoShutdown(stream)))
                .await
                .map_err(|e| format!("http handshake: {e}"))?;
        let mut conn = std::pin::pin!(conn);
        let mut request = Request::new(Empty::<Bytes>::new());
        *request.uri_mut() = self.uri.clone();
        let headers = request.headers_mut();
        headers.insert(HOST, self.host_header.clone());
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("anyguard/", env!("CARGO_PKG_VERSION"))),
        );
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
        let mut send = std::pin::pin!(sender.send_request(request));
        let first = tokio::select! {
            biased;
            response = &mut send => Some(response),
            ended = &mut conn => {
                ended.map_err(|e| format!("GET {}: {e}", self.path))?;
                None
            }
        };
        let response = match first {
            Some(response) => response,
            // The connection ended as it delivered the response (`Connection: close`):
            // the response, or why there is none, is waiting in the request's future.
            None => send.await,
        }
        .map_err(|e| format!("GET {}: {e}", self.path))?;
        let code = response.status().as_u16();
        let in_range = (self.status.0..=self.status.1).contains(&code);
        let Some(needle) = &self.body_contains else {
            return if in_range {
                Ok(format!("status {code}"))
            } else {
                Err(format!(
                    "status {code} not in {}..={}",
                    self.status.0, self.status.1
                ))
            };
        };
        if !in_range {
            return Err(format!(
                "status {code} not in {}..={}",
                self.status.0, self.status.1
            ));
        }
        let mut read = std::pin::pin!(read_bounded(response.into_body(), MAX_BODY));
        let body = tokio::select! {
            biased;
            body = &mut read => body?,
            // The connection ended (or failed): what it delivered, or its error, comes
            // through the body, which is read to its end alone.
            _ = &mut conn => read.await?,
        };
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

/// The probe's connection as hyper sees it, without the write-side shutdown hyper does
/// once a `Connection: close` exchange is over: the probe drops the connection right
/// after, and that close is a reset ([`super::tcp::close_with_reset`]), so a FIN before it
/// would be one more system call and two more packets for nothing (issue 13).
struct NoShutdown<S>(S);

impl<S: AsyncRead + Unpin> AsyncRead for NoShutdown<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for NoShutdown<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Reads at most `max` bytes of `body`; the rest is never read (the connection closes).
async fn read_bounded(mut body: hyper::body::Incoming, max: usize) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    while buf.len() < max {
        match body.frame().await {
            None => break,
            Some(Err(e)) => return Err(format!("reading body: {e}")),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let take = data.len().min(max - buf.len());
                    buf.extend_from_slice(&data[..take]);
                }
            }
        }
    }
    Ok(buf)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::SocketAddr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;

    use super::*;

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
