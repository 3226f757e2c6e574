//! TLS for `https://` checks: rustls with the ring provider, TLS 1.2 and 1.3, ALPN
//! `http/1.1`.
//!
//! Trust comes from the system's CA store, or only from the check's `ca_file` (a PEM
//! bundle — the usual case for a service's own health endpoint with a private CA). The
//! name verified is the URL's host, or `tls_server_name` when the URL names an address
//! (`https://127.0.0.1:8443/healthz` with a certificate for `www.example.test`).
//! `tls_verify = false` accepts any certificate but still checks the handshake's
//! signatures; it exists for self-signed local endpoints and says so in the detail.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{self, WebPkiSupportedAlgorithms};
use tokio_rustls::rustls::{
    self, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_rustls::TlsConnector;

/// Reads the certificates of a PEM file; an error says why it cannot be used.
pub(crate) fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM certificate bundle: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", path.display()));
    }
    Ok(certs)
}

/// A TLS endpoint: how to connect and which name to verify.
#[derive(Clone)]
pub(crate) struct TlsTarget {
    pub(crate) connector: TlsConnector,
    pub(crate) server_name: ServerName<'static>,
}

impl fmt::Debug for TlsTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsTarget")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsTarget {
    /// Settings for `host` (the URL's; `[::1]` already without brackets), overridden by
    /// `server_name`.
    pub(crate) fn new(
        host: &str,
        server_name: Option<&str>,
        ca_file: Option<&Path>,
        verify: bool,
    ) -> Result<Self, String> {
        let name = server_name.unwrap_or(host).to_owned();
        let server_name = ServerName::try_from(name.clone())
            .map_err(|e| format!("TLS server name {name:?}: {e}"))?;
        let provider = Arc::new(crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?;
        let mut config = if verify {
            builder
                .with_root_certificates(roots(ca_file)?)
                .with_no_client_auth()
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate {
                    algorithms: provider.signature_verification_algorithms,
                }))
                .with_no_client_auth()
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsTarget {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }
}

fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    let certs = match ca_file {
        Some(path) => load_ca_file(path)?,
        None => {
            let found = rustls_native_certs::load_native_certs();
            if found.certs.is_empty() {
                let why = found
                    .errors
                    .first()
                    .map_or_else(String::new, |e| format!(": {e}"));
                return Err(format!(
                    "no system CA certificates found (install ca-certificates or set ca_file){why}"
                ));
            }
            found.certs
        }
    };
    // A system store may hold a certificate rustls cannot parse; the others still count.
    let (added, _ignored) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err("no usable CA certificate".into());
    }
    Ok(store)
}

/// `tls_verify = false`: any certificate, any name — but the handshake signatures are
/// still verified, so the session is at least with the holder of the presented key.
#[derive(Debug)]
struct AnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use rustls_pki_types::PrivateKeyDer;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio_rustls::TlsAcceptor;

    use super::*;
    use crate::config::HttpTls;
    use crate::health::probe::{HttpProbe, Probe};

    /// A self-signed certificate for `health.example.test`, and its PEM in a temp file.
    struct Pki {
        cert: CertificateDer<'static>,
        key: Vec<u8>,
        _dir: tempfile::TempDir,
        ca_file: std::path::PathBuf,
    }

    fn pki() -> Pki {
        let ck = rcgen::generate_simple_self_signed(vec!["health.example.test".to_string()])
            .unwrap_or_else(|e| panic!("{e}"));
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ck.cert.pem()).unwrap_or_else(|e| panic!("{e}"));
        Pki {
            cert: ck.cert.der().clone(),
            key: ck.key_pair.serialize_der(),
            _dir: dir,
            ca_file,
        }
    }

    /// An HTTPS server on 127.0.0.1:0 answering 200 "ok" (bounded: stops with the task).
    async fn serve(pki: &Pki) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let (addr, task, _) = serve_with(pki, false).await;
        (addr, task)
    }

    /// `serve`, answering up to 100 requests a connection without closing it if `keep`;
    /// with the count of connections accepted.
    async fn serve_with(
        pki: &Pki,
        keep: bool,
    ) -> (SocketAddr, tokio::task::JoinHandle<()>, Arc<AtomicUsize>) {
        let key = PrivateKeyDer::try_from(pki.key.clone()).unwrap_or_else(|e| panic!("{e}"));
        let config =
            rustls::ServerConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap_or_else(|e| panic!("{e}"))
                .with_no_client_auth()
                .with_single_cert(vec![pki.cert.clone()], key)
                .unwrap_or_else(|e| panic!("{e}"));
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(sock).await else {
                        return;
                    };
                    for _ in 0..100 {
                        let mut head = Vec::new();
                        let mut buf = [0u8; 1024];
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                            match tls.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => head.extend_from_slice(&buf[..n]),
                            }
                        }
                        if keep {
                            let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                            if tls.write_all(answer).await.is_err() || tls.flush().await.is_err() {
                                return;
                            }
                            continue;
                        }
                        let _ = tls
                            .write_all(
                                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                            )
                            .await;
                        let _ = tls.shutdown().await;
                        return;
                    }
                });
            }
        });
        (addr, task, accepted)
    }

    fn probe(addr: SocketAddr, tls: HttpTls) -> HttpProbe {
        HttpProbe::new(
            &format!("https://{addr}/healthz"),
            (200, 299),
            Some("ok".into()),
            Some(&tls),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn https_probe_passes_with_the_ca_file_and_the_certificate_name() {
        let pki = pki();
        let (addr, server) = serve(&pki).await;
        let out = probe(
            addr,
            HttpTls {
                ca_file: Some(pki.ca_file.clone()),
                server_name: Some("health.example.test".into()),
                verify: true,
            },
        )
        .probe()
        .await;
        server.abort();
        assert!(out.ok, "{out:?}");
        assert_eq!(out.detail, "status 200, body contains \"ok\"");
    }

    /// `reuse_connection` on https: one TLS session serves every probe of the check.
    #[tokio::test]
    async fn a_kept_tls_connection_serves_every_probe_of_its_check() {
        let pki = pki();
        let (addr, server, accepted) = serve_with(&pki, true).await;
        let p = probe(
            addr,
            HttpTls {
                ca_file: Some(pki.ca_file.clone()),
                server_name: Some("health.example.test".into()),
                verify: true,
            },
        )
        .reuse_connection(true);
        let mut outs = Vec::new();
        for _ in 0..5 {
            outs.push(p.probe().await);
        }
        server.abort();
        for out in &outs {
            assert_eq!(
                (out.ok, out.detail.as_str()),
                (true, "status 200, body contains \"ok\""),
                "{outs:?}"
            );
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn https_probe_fails_on_a_name_the_certificate_does_not_carry() {
        let pki = pki();
        let (addr, server) = serve(&pki).await;
        // Without tls_server_name the name checked is the URL's address, 127.0.0.1.
        let out = probe(
            addr,
            HttpTls {
                ca_file: Some(pki.ca_file.clone()),
                server_name: None,
                verify: true,
            },
        )
        .probe()
        .await;
        server.abort();
        assert!(!out.ok);
        assert!(
            out.detail
                .starts_with(&format!("TLS handshake with {addr}: "))
                && out.detail.contains("certificate"),
            "{out:?}"
        );
    }

    #[tokio::test]
    async fn https_probe_fails_on_an_untrusted_certificate_and_passes_unverified() {
        let other = pki();
        let pki = pki();
        let (addr, server) = serve(&pki).await;
        let untrusted = probe(
            addr,
            HttpTls {
                ca_file: Some(other.ca_file.clone()),
                server_name: Some("health.example.test".into()),
                verify: true,
            },
        )
        .probe()
        .await;
        let unverified = probe(
            addr,
            HttpTls {
                ca_file: None,
                server_name: None,
                verify: false,
            },
        )
        .probe()
        .await;
        server.abort();
        assert!(!untrusted.ok);
        // Both self-signed certificates carry the same issuer name, so rustls reports the
        // other CA's signature as bad rather than the issuer as unknown.
        assert!(
            untrusted.detail.contains("invalid peer certificate"),
            "{untrusted:?}"
        );
        assert!(unverified.ok, "{unverified:?}");
    }

    #[test]
    fn ca_files_without_certificates_are_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            load_ca_file(&empty).map(|c| c.len()),
            Err(format!("{}: no certificate in it", empty.display()))
        );
        let missing = dir.path().join("missing.pem");
        let err = load_ca_file(&missing).expect_err("missing file");
        assert!(
            err.starts_with(&format!("cannot read {}", missing.display())),
            "{err}"
        );
    }
}
