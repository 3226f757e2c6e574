//! HTTP probe: an HTTP/1.1 GET with hyper 1 over a tokio `TcpStream`, or over TLS
//! (rustls, ring provider) for `https://` URLs.
//!
//! Up when the status is within the configured inclusive range and, if configured, the
//! body contains a substring; only the first [`MAX_BODY`] bytes of the body are read.
//! One connection per probe (`Connection: close`), so a probe measures connection set-up
//! (and the TLS handshake) too. HTTPS verifies the server's certificate against the
//! system's roots, or only against the check's `ca_file` when one is given (self-signed
//! and internal CAs); there is no "insecure" mode: a check that trusts anything would
//! also pass against the wrong server.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{CONNECTION, HOST, USER_AGENT};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::{truncate, Probe, ProbeOutcome};

/// At most this much of the body is read.
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// How much of a failing body goes into the detail.
const DETAIL_BODY: usize = 200;

/// `type = "http"`.
#[derive(Debug, Clone)]
pub struct HttpProbe {
    host: String,
    port: u16,
    authority: String,
    path: String,
    status: (u16, u16),
    body_contains: Option<String>,
    /// Set for `https://`.
    tls: Option<Tls>,
}

/// What an HTTPS probe needs for its handshake.
#[derive(Debug, Clone)]
struct Tls {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
}

impl HttpProbe {
    /// Parses `url` (`http://` or `https://host[:port][/path]`); for HTTPS, trusts the
    /// certificates in `ca_file` if given, else the system's roots. The error says why it
    /// cannot be used.
    pub fn new(
        url: &str,
        status: (u16, u16),
        body_contains: Option<String>,
        ca_file: Option<&Path>,
    ) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|e| format!("{e}"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err("only http:// and https:// URLs are supported".into()),
        };
        if ca_file.is_some() && !https {
            return Err("ca_file needs an https:// URL".into());
        }
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
        let tls = if https {
            let server_name = ServerName::try_from(host.clone())
                .map_err(|e| format!("{host:?} cannot be a TLS server name: {e}"))?;
            Some(Tls {
                config: tls_config(ca_file)?,
                server_name,
            })
        } else {
            None
        };
        Ok(HttpProbe {
            host,
            port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
            authority: authority.as_str().to_owned(),
            path: uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
            status,
            body_contains,
            tls,
        })
    }

    async fn check(&self) -> Result<String, String> {
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("connect to {}: {e}", self.authority))?;
        // Latency matters more than throughput for a health check; ignore failures.
        let _ = stream.set_nodelay(true);
        match &self.tls {
            None => self.exchange(TokioIo::new(stream)).await,
            Some(tls) => {
                let connector = tokio_rustls::TlsConnector::from(Arc::clone(&tls.config));
                let stream = connector
                    .connect(tls.server_name.clone(), stream)
                    .await
                    .map_err(|e| format!("TLS handshake with {}: {e}", self.authority))?;
                self.exchange(TokioIo::new(stream)).await
            }
        }
    }

    /// The request and its answer over an established connection (plain or TLS).
    async fn exchange<I>(&self, io: I) -> Result<String, String>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("http handshake: {e}"))?;
        let _conn = AbortOnDrop::spawn(conn);
        let request = Request::get(self.path.as_str())
            .header(HOST, self.authority.as_str())
            .header(USER_AGENT, concat!("anyguard/", env!("CARGO_PKG_VERSION")))
            .header(CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("building request: {e}"))?;
        let response = sender
            .send_request(request)
            .await
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
        let body = read_bounded(response.into_body(), MAX_BODY).await?;
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

/// The client configuration of an HTTPS check: ring's algorithms, the safe protocol
/// versions (TLS 1.2 and 1.3), and as roots the certificates of `ca_file` (PEM) or the
/// system's.
fn tls_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("ca_file {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("ca_file {}: no certificate in it", path.display()));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
            if roots.is_empty() {
                return Err("no system root certificates found; set ca_file".into());
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
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

/// The hyper connection task, aborted when the probe finishes or is cancelled.
struct AbortOnDrop(JoinHandle<()>);

impl AbortOnDrop {
    fn spawn<F>(conn: F) -> Self
    where
        F: Future<Output = Result<(), hyper::Error>> + Send + 'static,
    {
        AbortOnDrop(tokio::spawn(async move {
            // Errors surface through send_request; nothing to add here.
            let _ = conn.await;
        }))
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::SocketAddr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

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
                    respond(&mut sock, status, &body).await;
                });
            }
        });
        (addr, AbortOnDropTask(task))
    }

    /// Reads a request head (bounded) and answers `status` with `body`, closing.
    async fn respond<S>(sock: &mut S, status: u16, body: &str)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
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

    /// An HTTPS server on 127.0.0.1:0 with a fresh self-signed certificate for
    /// 127.0.0.1 answering 200 "ok"; the certificate's PEM for `ca_file`.
    async fn serve_tls() -> (SocketAddr, String, AbortOnDropTask) {
        let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])
            .unwrap_or_else(|e| panic!("{e}"));
        let pem = key.cert.pem();
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|e| panic!("{e}"))
        .with_no_client_auth()
        .with_single_cert(
            vec![key.cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.key_pair.serialize_der().into()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(sock).await else {
                        return; // the client refused our certificate
                    };
                    respond(&mut tls, 200, "ok").await;
                });
            }
        });
        (addr, pem, AbortOnDropTask(task))
    }

    #[tokio::test]
    async fn https_probe_passes_against_a_certificate_from_its_ca_file() {
        let (addr, pem, _server) = serve_tls().await;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, pem).unwrap_or_else(|e| panic!("{e}"));
        let p = HttpProbe::new(
            &format!("https://{addr}/healthz"),
            (200, 299),
            Some("ok".into()),
            Some(&ca),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let out = p.probe().await;
        assert!(out.ok, "{out:?}");
        assert_eq!(out.detail, "status 200, body contains \"ok\"");
    }

    #[tokio::test]
    async fn https_probe_fails_when_the_certificate_is_not_trusted() {
        let (addr, _pem, _server) = serve_tls().await;
        // Another self-signed certificate as the only trusted one.
        let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])
            .unwrap_or_else(|e| panic!("{e}"));
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let ca = dir.path().join("other.pem");
        std::fs::write(&ca, other.cert.pem()).unwrap_or_else(|e| panic!("{e}"));
        let p = HttpProbe::new(&format!("https://{addr}/"), (200, 299), None, Some(&ca))
            .unwrap_or_else(|e| panic!("{e}"));
        let out = p.probe().await;
        assert!(!out.ok);
        assert!(
            out.detail.starts_with(&format!(
                "TLS handshake with {addr}: invalid peer certificate"
            )),
            "{out:?}"
        );
    }

    #[test]
    fn https_probe_construction_reports_an_unreadable_or_empty_ca_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap_or_else(|e| panic!("{e}"));
        let err = HttpProbe::new("https://127.0.0.1/", (200, 299), None, Some(&empty))
            .err()
            .unwrap_or_default();
        assert!(err.ends_with("no certificate in it"), "{err}");
        let missing = dir.path().join("missing.pem");
        assert!(HttpProbe::new("https://127.0.0.1/", (200, 299), None, Some(&missing)).is_err());
        assert_eq!(
            HttpProbe::new("http://127.0.0.1/", (200, 299), None, Some(&empty)).err(),
            Some("ca_file needs an https:// URL".to_string())
        );
        let p = HttpProbe::new("https://localhost/x", (200, 299), None, Some(&missing));
        assert!(p.is_err());
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
        assert!(p.tls.is_none());
        assert!(HttpProbe::new("ftp://localhost/", (200, 299), None, None).is_err());
    }
}
