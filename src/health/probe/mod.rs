//! The probes: one async function each, returning a [`ProbeOutcome`].
//!
//! Probes do I/O only; rise/fall and scheduling are elsewhere. The runner applies the
//! check's timeout around [`Probe::probe`]; the command probe also enforces it itself so
//! that it can kill the process group and reap the child ([`Probe::enforces_timeout`]).
//!
//! | type      | up when                                                          |
//! |-----------|------------------------------------------------------------------|
//! | `http`    | HTTP/1.1 GET (plain or TLS) answers a status in range (and body) |
//! | `tcp`     | a TCP connection is established                                  |
//! | `command` | the command exits with status 0                                  |
//! | `dns`     | the resolver answers NOERROR with the expected A/AAAA records    |
//! | `file`    | the file exists (or, inverted, does not)                         |
//!
//! Not supported yet: DNS over TCP.

mod command;
mod dns;
pub(crate) mod dns_wire;
mod file;
mod http;
mod http_wire;
mod tcp;
pub(crate) mod tls;

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{CheckConfig, CheckKind};

pub use command::CommandProbe;
pub use dns::DnsProbe;
pub use file::FileProbe;
pub use http::HttpProbe;
pub use tcp::TcpProbe;

/// The result of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutcome {
    /// Passed.
    pub ok: bool,
    /// How long it took.
    pub latency: Duration,
    /// Why, for logs and status: status code, exit status and output, error, …
    pub detail: String,
}

impl ProbeOutcome {
    /// A failure because the probe did not finish within `timeout`.
    pub fn timed_out(timeout: Duration) -> Self {
        ProbeOutcome {
            ok: false,
            latency: timeout,
            detail: format!("timed out after {}", humantime::format_duration(timeout)),
        }
    }

    /// Runs `check` (Ok = pass, Err = fail, with the detail either way) and times it.
    pub(crate) async fn timed<F>(check: F) -> Self
    where
        F: Future<Output = Result<String, String>>,
    {
        let start = Instant::now();
        let result = check.await;
        let latency = start.elapsed();
        match result {
            Ok(detail) => ProbeOutcome {
                ok: true,
                latency,
                detail,
            },
            Err(detail) => ProbeOutcome {
                ok: false,
                latency,
                detail,
            },
        }
    }
}

/// Something that can be probed. Implemented by every probe type and by [`AnyProbe`];
/// tests drive the runner with scripted implementations.
pub trait Probe: Send + Sync + 'static {
    /// Runs one probe. Must be cancel-safe: the runner drops it at the timeout.
    fn probe(&self) -> impl Future<Output = ProbeOutcome> + Send;

    /// Whether [`Probe::probe`] enforces the check's timeout itself (and cleans up before
    /// returning), in which case the runner's timeout is only a backstop.
    fn enforces_timeout(&self) -> bool {
        false
    }

    /// Whether [`Probe::probe`] emits no log events, its libraries' included, so that the
    /// runner need not enter the check's span around it: entering and leaving a span at
    /// every poll of every check's task cost ~2 % of the daemon's CPU at 2,000 checks a
    /// second (issue 13). False unless known, so a probe's log lines name their check.
    fn quiet(&self) -> bool {
        false
    }
}

/// A probe could not be built from its configuration (validation makes this unlikely).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// The HTTP URL cannot be used.
    #[error("check {check}: bad url {url:?}: {reason}")]
    BadUrl {
        /// Check name.
        check: String,
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The DNS settings cannot be used.
    #[error("check {check}: bad dns query: {reason}")]
    BadDnsQuery {
        /// Check name.
        check: String,
        /// What is wrong.
        reason: String,
    },
}

/// Any of the configured probe types.
#[derive(Debug)]
pub enum AnyProbe {
    /// `type = "http"` (boxed: its request parts, parsed once, make it the largest).
    Http(Box<HttpProbe>),
    /// `type = "tcp"`.
    Tcp(TcpProbe),
    /// `type = "command"`.
    Command(CommandProbe),
    /// `type = "dns"`.
    Dns(DnsProbe),
    /// `type = "file"`.
    File(FileProbe),
}

impl AnyProbe {
    /// Builds the probe for a validated check.
    pub fn from_check(check: &CheckConfig) -> Result<Self, ProbeError> {
        Ok(match &check.kind {
            CheckKind::Http {
                url,
                status,
                body_contains,
                tls,
                reuse_connection,
            } => AnyProbe::Http(Box::new(
                HttpProbe::new(url, *status, body_contains.clone(), tls.as_ref())
                    .map_err(|reason| ProbeError::BadUrl {
                        check: check.name.clone(),
                        url: url.clone(),
                        reason,
                    })?
                    .reuse_connection(*reuse_connection),
            )),
            CheckKind::Tcp { address } => AnyProbe::Tcp(TcpProbe::new(*address)),
            CheckKind::Command { argv } => {
                AnyProbe::Command(CommandProbe::new(argv.clone(), check.timeout))
            }
            CheckKind::Dns {
                server,
                name,
                record_type,
                expect,
            } => AnyProbe::Dns(
                DnsProbe::new(*server, name, record_type, expect.clone()).map_err(|reason| {
                    ProbeError::BadDnsQuery {
                        check: check.name.clone(),
                        reason,
                    }
                })?,
            ),
            CheckKind::File { path, invert } => {
                AnyProbe::File(FileProbe::new(path.clone(), *invert))
            }
        })
    }
}

impl Probe for AnyProbe {
    async fn probe(&self) -> ProbeOutcome {
        match self {
            // Boxed: the HTTP(S) exchange is the largest future by far (a TLS session is
            // inside it), and every check's task would otherwise carry its size for good,
            // a TCP check's too.
            AnyProbe::Http(p) => Box::pin(p.probe()).await,
            AnyProbe::Tcp(p) => p.probe().await,
            AnyProbe::Command(p) => p.probe().await,
            AnyProbe::Dns(p) => p.probe().await,
            AnyProbe::File(p) => p.probe().await,
        }
    }

    fn enforces_timeout(&self) -> bool {
        matches!(self, AnyProbe::Command(_))
    }

    /// The plain TCP and HTTP probes log nothing (socket2 and tokio's sockets do not
    /// either); TLS (rustls logs through `log`), DNS (hickory uses `tracing`), command and
    /// file probes keep running in the check's span.
    fn quiet(&self) -> bool {
        match self {
            AnyProbe::Tcp(_) => true,
            AnyProbe::Http(p) => !p.is_tls(),
            AnyProbe::Command(_) | AnyProbe::Dns(_) | AnyProbe::File(_) => false,
        }
    }
}

pub(crate) use crate::process::truncate;
