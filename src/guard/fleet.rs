//! The fleet description (`fleet.toml`): every site with its status URL, per service the
//! minimum number of sites that must keep announcing, and the poll timing.
//!
//! Parse, don't validate: [`RawFleet`] mirrors the file (`deny_unknown_fields`, spans from
//! `toml::Spanned`), [`Fleet::parse`] builds the validated [`Fleet`] and collects *every*
//! error with `file:line:column: key: message`. Example: `config/fleet.toml`.

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper::Uri;
use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use super::auth::{read_key_file, FleetKey, KeyError, REPORT_PATH};
use super::runtime::GuardTiming;
use super::view::FleetView;
use crate::config::MAX_DURATION;

/// Default poll interval.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Default poll timeout.
pub const DEFAULT_POLL_TIMEOUT: Duration = Duration::from_millis(500);
/// Shortest poll interval accepted: below it every other site is polled in a tight loop.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The validated fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct Fleet {
    /// Where it was loaded from (for messages).
    pub source: String,
    /// Poll timing.
    pub poll: PollSettings,
    /// Sites in file order; the order is the hold rank (earlier sites keep announcing
    /// when several are held, see `docs/guard.md`).
    pub sites: Vec<FleetSite>,
    /// Services with their guard settings, in file order.
    pub services: Vec<FleetService>,
    /// `[auth]`: the key that signs and verifies reports; `None` = unsigned reports (a
    /// warning at start and in `/status`, see `docs/guard.md`).
    pub auth: Option<FleetAuth>,
    /// `backend` (with `[etcd]`): where the sites learn about each other.
    pub backend: BackendSettings,
}

/// `backend = "poll" | "etcd"`: the fleet view's source ([`super::backend`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BackendSettings {
    /// Every site polls every other site's report (no infrastructure; the default).
    #[default]
    Poll,
    /// The sites publish their state in etcd and withdraw by transaction (`[etcd]`).
    Etcd(Box<EtcdSettings>),
}

impl BackendSettings {
    /// `poll` or `etcd`, as written in the fleet file and shown in `/status`.
    pub fn name(&self) -> &'static str {
        match self {
            BackendSettings::Poll => "poll",
            BackendSettings::Etcd(_) => "etcd",
        }
    }
}

/// Default `[etcd] key_prefix`.
pub const DEFAULT_ETCD_KEY_PREFIX: &str = "/anyguard";
/// Default `[etcd] lease_ttl`.
pub const DEFAULT_ETCD_LEASE_TTL: Duration = Duration::from_secs(5);
/// Default `[etcd] timeout` (one request: connect, transaction, lease grant).
pub const DEFAULT_ETCD_TIMEOUT: Duration = Duration::from_secs(1);

/// `[etcd]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdSettings {
    /// Client URLs of the cluster members (`http://` or, with `[etcd.tls]`, `https://`).
    pub endpoints: Vec<String>,
    /// Every key of the fleet lives under it (several fleets can share a cluster).
    pub key_prefix: String,
    /// TTL of each site's lease: a site that stops keeping it alive (dead, frozen, cut off
    /// from etcd) stops counting this long after its last keep-alive. 2 s to 60 s, whole
    /// seconds (etcd's unit).
    pub lease_ttl: Duration,
    /// Limit for one request to etcd.
    pub timeout: Duration,
    /// `user` and the password read from `password_file`.
    pub auth: Option<EtcdAuth>,
    /// `[etcd.tls]`.
    pub tls: Option<EtcdTls>,
}

/// etcd user authentication.
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdAuth {
    /// etcd user name.
    pub user: String,
    /// Where the password was read from.
    pub password_file: PathBuf,
    /// The password (first line of the file, trimmed).
    pub password: String,
}

impl fmt::Debug for EtcdAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the password, whatever prints a fleet.
        f.debug_struct("EtcdAuth")
            .field("user", &self.user)
            .field("password_file", &self.password_file)
            .finish_non_exhaustive()
    }
}

/// `[etcd.tls]`: the cluster's CA and, optionally, this site's client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    /// CA certificate(s) (PEM) that sign the members' server certificates.
    pub ca_file: PathBuf,
    /// Its content.
    pub ca_pem: Vec<u8>,
    /// Client certificate and key files (PEM) and their contents, for etcd's
    /// `--client-cert-auth`.
    pub identity: Option<EtcdIdentity>,
    /// The name the server certificates are checked against (default: each endpoint's host).
    pub server_name: Option<String>,
}

/// A client certificate with its key.
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdIdentity {
    /// Certificate file.
    pub cert_file: PathBuf,
    /// Key file.
    pub key_file: PathBuf,
    /// Certificate (PEM).
    pub cert_pem: Vec<u8>,
    /// Key (PEM).
    pub key_pem: Vec<u8>,
}

impl fmt::Debug for EtcdIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdIdentity")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

/// `[auth]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetAuth {
    /// Where the key was read from (resolved against the fleet file's directory).
    pub key_file: PathBuf,
    /// The key, read and checked at load.
    pub key: FleetKey,
}

/// `[poll]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollSettings {
    /// Time between two polls of the same site.
    pub interval: Duration,
    /// Limit for one poll (connect, request, whole body).
    pub timeout: Duration,
    /// A report requested longer ago than this counts as unreachable
    /// (default `3 × interval + timeout`).
    pub stale_after: Duration,
    /// Longest wait, after publishing an intent to withdraw, for reports requested after it
    /// (default `2 × (interval + timeout)`); the service is held when it passes.
    pub intent_wait: Duration,
}

/// One `[[site]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetSite {
    /// Unique name (what each site config's `fleet.site` refers to).
    pub name: String,
    /// The site's `/status` URL (http).
    pub status_url: Uri,
    /// Where its fleet report is polled: `report_url`, or by default `status_url` with the
    /// path replaced by [`REPORT_PATH`].
    pub report_url: Uri,
}

/// One `[[service]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetService {
    /// Service name, as in the site configs.
    pub name: String,
    /// Sites that must keep announcing (≥ 1, ≤ number of sites).
    pub min_sites: usize,
    /// The prefixes every site must configure for the service, if declared here.
    pub prefixes: Option<Vec<IpNet>>,
    /// Retired (`retired = true`): the service is being removed from the whole fleet on
    /// purpose. A reload without it withdraws it at once (no pending removal), and the
    /// config guard accepts it removed everywhere.
    pub retired: bool,
}

/// Raw mirror of the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFleet {
    /// `[poll]`.
    #[serde(default)]
    pub poll: Option<RawPoll>,
    /// `[[site]]`.
    #[serde(default)]
    pub site: Vec<RawSite>,
    /// `[[service]]`.
    #[serde(default)]
    pub service: Vec<RawService>,
    /// `[auth]`.
    #[serde(default)]
    pub auth: Option<RawAuth>,
    /// `backend`: `"poll"` (default) or `"etcd"`.
    #[serde(default)]
    pub backend: Option<Spanned<String>>,
    /// `[etcd]`.
    #[serde(default)]
    pub etcd: Option<Spanned<RawEtcd>>,
}

/// Raw `[etcd]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEtcd {
    /// Member client URLs.
    pub endpoints: Option<Spanned<Vec<Spanned<String>>>>,
    /// e.g. `"/anyguard"`.
    pub key_prefix: Option<Spanned<String>>,
    /// e.g. `"5s"`.
    pub lease_ttl: Option<Spanned<String>>,
    /// e.g. `"1s"`.
    pub timeout: Option<Spanned<String>>,
    /// etcd user.
    pub user: Option<Spanned<String>>,
    /// File holding the user's password.
    pub password_file: Option<Spanned<String>>,
    /// `[etcd.tls]`.
    pub tls: Option<RawEtcdTls>,
}

/// Raw `[etcd.tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEtcdTls {
    /// CA file (PEM).
    pub ca_file: Spanned<String>,
    /// Client certificate (PEM).
    pub cert_file: Option<Spanned<String>>,
    /// Client key (PEM).
    pub key_file: Option<Spanned<String>>,
    /// Server name to verify.
    pub server_name: Option<Spanned<String>>,
}

/// Raw `[auth]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// Path of the shared key file.
    pub key_file: Spanned<String>,
}

/// Raw `[poll]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPoll {
    /// e.g. `"1s"`.
    pub interval: Option<Spanned<String>>,
    /// e.g. `"500ms"`.
    pub timeout: Option<Spanned<String>>,
    /// e.g. `"3500ms"`.
    pub stale_after: Option<Spanned<String>>,
    /// e.g. `"3s"`.
    pub intent_wait: Option<Spanned<String>>,
}

/// Raw `[[site]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSite {
    /// Name.
    pub name: Spanned<String>,
    /// URL.
    pub status_url: Spanned<String>,
    /// Fleet report URL (default derived from `status_url`).
    pub report_url: Option<Spanned<String>>,
}

/// Raw `[[service]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    /// Name.
    pub name: Spanned<String>,
    /// Default 1.
    pub min_sites: Option<Spanned<i64>>,
    /// Optional prefix list.
    pub prefixes: Option<Vec<Spanned<String>>>,
    /// Default false.
    pub retired: Option<bool>,
}

/// One problem in a fleet file, shown like a config error: `file:line:column: key:
/// message`, without the position when it is unknown (0) and without an empty key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(self))]
pub struct FleetError {
    /// File name.
    pub file: String,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub column: usize,
    /// Key path, e.g. `site[1].status_url`.
    pub key: String,
    /// What is wrong.
    pub kind: FleetErrorKind,
}

fn render(e: &FleetError) -> String {
    crate::config::render_located(&e.file, e.line, e.column, &e.key, &e.kind)
}

/// What is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FleetErrorKind {
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Io(String),
    /// TOML syntax or shape (unknown key, wrong type, missing key).
    #[error("{0}")]
    Syntax(String),
    /// Not a duration like `500ms` or `1s`.
    #[error("invalid duration {value:?} (e.g. \"500ms\", \"1s\")")]
    InvalidDuration {
        /// As written.
        value: String,
    },
    /// A rule between the poll durations is broken.
    #[error("{0}")]
    Timing(String),
    /// Not an `http://host:port/path` URL.
    #[error("invalid status URL {value:?}: {why}")]
    InvalidUrl {
        /// As written.
        value: String,
        /// Why.
        why: String,
    },
    /// Empty name.
    #[error("must not be empty")]
    EmptyName,
    /// A site name used twice.
    #[error("duplicate site {0:?}")]
    DuplicateSite(String),
    /// A service name used twice.
    #[error("duplicate service {0:?}")]
    DuplicateService(String),
    /// `min_sites` outside `1..=sites`.
    #[error("must be between 1 and the number of sites ({sites}), got {value}")]
    MinSitesOutOfRange {
        /// As written.
        value: i64,
        /// Number of sites.
        sites: usize,
    },
    /// Not a prefix, or host bits set.
    #[error("invalid prefix {value:?}: {why}")]
    InvalidPrefix {
        /// As written.
        value: String,
        /// Why.
        why: String,
    },
    /// No `[[site]]`.
    #[error("the fleet needs at least one [[site]]")]
    NoSites,
    /// The `[auth]` key file is missing, empty or too short.
    #[error("{0}")]
    Key(#[from] KeyError),
    /// `backend` / `[etcd]` is wrong (unknown backend, missing or contradictory keys, a
    /// file that cannot be read, a bad endpoint URL).
    #[error("{0}")]
    Backend(String),
}

/// Every problem found in a fleet file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FleetErrors(pub Vec<FleetError>);

impl fmt::Display for FleetErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.chars().count(), |nl| {
        before[nl + 1..].chars().count()
    }) + 1;
    (line, column)
}

struct Collector<'a> {
    text: &'a str,
    source: &'a str,
    errors: Vec<FleetError>,
}

impl Collector<'_> {
    /// A `backend` / `[etcd]` problem.
    fn backend(&mut self, span: Range<usize>, key: &str, msg: String) {
        self.push(Some(span), key, FleetErrorKind::Backend(msg));
    }

    /// `written` relative to the fleet file's directory (like `[auth] key_file`).
    fn relative(&self, written: &str) -> PathBuf {
        let written = Path::new(written);
        match Path::new(self.source).parent() {
            Some(dir) if written.is_relative() => dir.join(written),
            _ => written.to_path_buf(),
        }
    }

    fn push(&mut self, span: Option<Range<usize>>, key: impl Into<String>, kind: FleetErrorKind) {
        let (line, column) = span.map_or((0, 0), |s| line_col(self.text, s.start));
        self.errors.push(FleetError {
            file: self.source.to_owned(),
            line,
            column,
            key: key.into(),
            kind,
        });
    }

    fn duration(&mut self, raw: Option<&Spanned<String>>, key: &str) -> Option<Duration> {
        let raw = raw?;
        match humantime::parse_duration(raw.get_ref()) {
            Ok(d) if d > MAX_DURATION => {
                let max = humantime::format_duration(MAX_DURATION);
                self.push(
                    Some(raw.span()),
                    key,
                    FleetErrorKind::Timing(format!("must be at most {max}")),
                );
                None
            }
            Ok(d) if !d.is_zero() => Some(d),
            _ => {
                let value = raw.get_ref().clone();
                self.push(
                    Some(raw.span()),
                    key,
                    FleetErrorKind::InvalidDuration { value },
                );
                None
            }
        }
    }
}

/// Check an etcd member URL: `http://host:port`, or `https://host:port` when the fleet has
/// `[etcd.tls]` (and only then: a TLS table with plain endpoints would be silently unused).
pub fn parse_etcd_endpoint(value: &str, tls: bool) -> Result<String, String> {
    let uri: Uri = value.parse().map_err(|e| format!("{e}"))?;
    match (uri.scheme_str(), tls) {
        (Some("http"), false) | (Some("https"), true) => {}
        (Some("http"), true) => return Err("http:// with [etcd.tls]: use https://".into()),
        (Some("https"), false) => return Err("https:// needs [etcd.tls] with ca_file".into()),
        (Some(other), _) => {
            return Err(format!(
                "scheme {other:?} is not supported, use http or https"
            ))
        }
        (None, _) => return Err("missing http:// or https:// scheme".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("missing host".into());
    }
    if uri.port_u16().is_none() {
        return Err("missing port (etcd clients usually use 2379)".into());
    }
    if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
        return Err("must not have a path".into());
    }
    Ok(value.trim_end_matches('/').to_owned())
}

/// Parse a status URL: `http://host[:port]/path`.
pub fn parse_status_url(value: &str) -> Result<Uri, String> {
    let uri: Uri = value.parse().map_err(|e| format!("{e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => return Err(format!("scheme {other:?} is not supported, use http")),
        None => return Err("missing http:// scheme".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("missing host".into());
    }
    Ok(uri)
}

/// The default fleet report URL of a site: its status URL with the path
/// [`REPORT_PATH`] (same scheme, host and port).
pub fn report_url_for(status_url: &Uri) -> Result<Uri, String> {
    let mut parts = status_url.clone().into_parts();
    parts.path_and_query = Some(hyper::http::uri::PathAndQuery::from_static(REPORT_PATH));
    Uri::from_parts(parts).map_err(|e| e.to_string())
}

impl Fleet {
    /// Read and validate `path`.
    pub fn load(path: &Path) -> Result<Fleet, FleetErrors> {
        let source = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Fleet::parse(&text, &source),
            Err(e) => Err(FleetErrors(vec![FleetError {
                file: source,
                line: 0,
                column: 0,
                key: String::new(),
                kind: FleetErrorKind::Io(e.to_string()),
            }])),
        }
    }

    /// Validate the text of a fleet file; `source` names it in messages.
    pub fn parse(text: &str, source: &str) -> Result<Fleet, FleetErrors> {
        let mut c = Collector {
            text,
            source,
            errors: Vec::new(),
        };
        let raw: RawFleet = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                c.push(
                    e.span(),
                    "",
                    FleetErrorKind::Syntax(e.message().trim().to_owned()),
                );
                return Err(FleetErrors(c.errors));
            }
        };
        let poll = Self::poll(&mut c, raw.poll.as_ref());

        let mut names = HashSet::new();
        let mut sites = Vec::new();
        if raw.site.is_empty() {
            c.push(Some(0..0), "site", FleetErrorKind::NoSites);
        }
        for (i, s) in raw.site.iter().enumerate() {
            let name = s.name.get_ref();
            if name.is_empty() {
                c.push(
                    Some(s.name.span()),
                    format!("site[{i}].name"),
                    FleetErrorKind::EmptyName,
                );
            } else if !names.insert(name.clone()) {
                c.push(
                    Some(s.name.span()),
                    format!("site[{i}].name"),
                    FleetErrorKind::DuplicateSite(name.clone()),
                );
            }
            let status_url = match parse_status_url(s.status_url.get_ref()) {
                Ok(url) => Some(url),
                Err(why) => {
                    c.push(
                        Some(s.status_url.span()),
                        format!("site[{i}].status_url"),
                        FleetErrorKind::InvalidUrl {
                            value: s.status_url.get_ref().clone(),
                            why,
                        },
                    );
                    None
                }
            };
            let report_url = match &s.report_url {
                Some(raw) => match parse_status_url(raw.get_ref()) {
                    Ok(url) => Some(url),
                    Err(why) => {
                        c.push(
                            Some(raw.span()),
                            format!("site[{i}].report_url"),
                            FleetErrorKind::InvalidUrl {
                                value: raw.get_ref().clone(),
                                why,
                            },
                        );
                        None
                    }
                },
                None => status_url.as_ref().and_then(|u| {
                    report_url_for(u)
                        .map_err(|why| {
                            c.push(
                                Some(s.status_url.span()),
                                format!("site[{i}].status_url"),
                                FleetErrorKind::InvalidUrl {
                                    value: s.status_url.get_ref().clone(),
                                    why,
                                },
                            );
                        })
                        .ok()
                }),
            };
            if let (Some(status_url), Some(report_url)) = (status_url, report_url) {
                sites.push(FleetSite {
                    name: name.clone(),
                    status_url,
                    report_url,
                });
            }
        }

        let mut service_names = HashSet::new();
        let mut services = Vec::new();
        for (i, s) in raw.service.iter().enumerate() {
            let name = s.name.get_ref();
            if name.is_empty() {
                c.push(
                    Some(s.name.span()),
                    format!("service[{i}].name"),
                    FleetErrorKind::EmptyName,
                );
            } else if !service_names.insert(name.clone()) {
                c.push(
                    Some(s.name.span()),
                    format!("service[{i}].name"),
                    FleetErrorKind::DuplicateService(name.clone()),
                );
            }
            let min_sites = match &s.min_sites {
                None => Some(1),
                Some(v) => match usize::try_from(*v.get_ref()) {
                    Ok(n) if n >= 1 && n <= raw.site.len().max(1) => Some(n),
                    _ => {
                        c.push(
                            Some(v.span()),
                            format!("service[{i}].min_sites"),
                            FleetErrorKind::MinSitesOutOfRange {
                                value: *v.get_ref(),
                                sites: raw.site.len(),
                            },
                        );
                        None
                    }
                },
            };
            let prefixes = s.prefixes.as_ref().map(|list| {
                list.iter()
                    .enumerate()
                    .filter_map(|(j, p)| match p.get_ref().parse::<IpNet>() {
                        Ok(net) if net.trunc() == net => Some(net),
                        Ok(net) => {
                            c.push(
                                Some(p.span()),
                                format!("service[{i}].prefixes[{j}]"),
                                FleetErrorKind::InvalidPrefix {
                                    value: p.get_ref().clone(),
                                    why: format!("host bits set (did you mean {}?)", net.trunc()),
                                },
                            );
                            None
                        }
                        Err(e) => {
                            c.push(
                                Some(p.span()),
                                format!("service[{i}].prefixes[{j}]"),
                                FleetErrorKind::InvalidPrefix {
                                    value: p.get_ref().clone(),
                                    why: e.to_string(),
                                },
                            );
                            None
                        }
                    })
                    .collect()
            });
            if let Some(min_sites) = min_sites {
                services.push(FleetService {
                    name: name.clone(),
                    min_sites,
                    prefixes,
                    retired: s.retired.unwrap_or(false),
                });
            }
        }

        let auth = raw.auth.as_ref().and_then(|a| {
            let written = Path::new(a.key_file.get_ref());
            // Relative to the fleet file, like a path in an include.
            let key_file = match Path::new(source).parent() {
                Some(dir) if written.is_relative() => dir.join(written),
                _ => written.to_path_buf(),
            };
            match read_key_file(&key_file) {
                Ok(key) => Some(FleetAuth { key_file, key }),
                Err(e) => {
                    c.push(Some(a.key_file.span()), "auth.key_file", e.into());
                    None
                }
            }
        });

        let backend = Self::backend(&mut c, raw.backend.as_ref(), raw.etcd.as_ref());

        match (c.errors.is_empty(), poll, backend) {
            (true, Some(poll), Some(backend)) => Ok(Fleet {
                source: source.to_owned(),
                poll,
                sites,
                services,
                auth,
                backend,
            }),
            _ => Err(FleetErrors(c.errors)),
        }
    }

    fn backend(
        c: &mut Collector<'_>,
        backend: Option<&Spanned<String>>,
        etcd: Option<&Spanned<RawEtcd>>,
    ) -> Option<BackendSettings> {
        match backend.map(|b| (b.get_ref().as_str(), b.span())) {
            None | Some(("poll", _)) => {
                if let Some(etcd) = etcd {
                    let msg =
                        "an [etcd] table needs backend = \"etcd\" (the fleet uses the poll mesh)";
                    c.backend(etcd.span(), "etcd", msg.to_owned());
                    return None;
                }
                Some(BackendSettings::Poll)
            }
            Some(("etcd", span)) => {
                let Some(etcd) = etcd else {
                    c.backend(
                        span,
                        "backend",
                        "backend = \"etcd\" needs an [etcd] table with endpoints".to_owned(),
                    );
                    return None;
                };
                Self::etcd(c, etcd).map(|e| BackendSettings::Etcd(Box::new(e)))
            }
            Some((other, span)) => {
                c.backend(
                    span,
                    "backend",
                    format!("unknown backend {other:?} (\"poll\" or \"etcd\")"),
                );
                None
            }
        }
    }

    fn etcd(c: &mut Collector<'_>, raw: &Spanned<RawEtcd>) -> Option<EtcdSettings> {
        let before = c.errors.len();
        let table = raw.span();
        let raw = raw.get_ref();
        let tls_wanted = raw.tls.is_some();
        let mut endpoints = Vec::new();
        match &raw.endpoints {
            None => c.backend(
                table.clone(),
                "etcd.endpoints",
                "missing: the client URLs of the etcd members".to_owned(),
            ),
            Some(list) if list.get_ref().is_empty() => {
                c.backend(
                    list.span(),
                    "etcd.endpoints",
                    "must list at least one member".to_owned(),
                );
            }
            Some(list) => {
                for (i, e) in list.get_ref().iter().enumerate() {
                    let key = format!("etcd.endpoints[{i}]");
                    match parse_etcd_endpoint(e.get_ref(), tls_wanted) {
                        Ok(url) => endpoints.push(url),
                        Err(why) => c.backend(
                            e.span(),
                            &key,
                            format!("invalid endpoint {:?}: {why}", e.get_ref()),
                        ),
                    }
                }
            }
        }
        let key_prefix = match &raw.key_prefix {
            None => DEFAULT_ETCD_KEY_PREFIX.to_owned(),
            Some(p) => {
                let v = p.get_ref();
                if !v.starts_with('/') || v.len() < 2 || v.ends_with('/') {
                    c.backend(p.span(), "etcd.key_prefix", format!("{v:?} must start with '/' and not end with '/' (e.g. \"/anyguard/prod\")"));
                }
                v.clone()
            }
        };
        let lease_ttl = match &raw.lease_ttl {
            None => Some(DEFAULT_ETCD_LEASE_TTL),
            Some(t) => c.duration(Some(t), "etcd.lease_ttl").and_then(|d| {
                let ok = d.subsec_nanos() == 0 && (2..=60).contains(&d.as_secs());
                if !ok {
                    c.backend(
                        t.span(),
                        "etcd.lease_ttl",
                        format!(
                            "must be whole seconds from 2s to 60s, got {:?}",
                            t.get_ref()
                        ),
                    );
                }
                ok.then_some(d)
            }),
        };
        let timeout = match &raw.timeout {
            None => Some(DEFAULT_ETCD_TIMEOUT),
            Some(t) => c.duration(Some(t), "etcd.timeout"),
        };
        if let (Some(ttl), Some(timeout), Some(t)) = (lease_ttl, timeout, &raw.timeout) {
            if timeout >= ttl {
                c.backend(
                    t.span(),
                    "etcd.timeout",
                    "must be shorter than etcd.lease_ttl".to_owned(),
                );
            }
        }
        let auth = match (&raw.user, &raw.password_file) {
            (None, None) => None,
            (Some(user), Some(file)) => {
                let path = c.relative(file.get_ref());
                match std::fs::read_to_string(&path) {
                    Ok(text) => {
                        let password = text.lines().next().unwrap_or("").trim().to_owned();
                        if password.is_empty() {
                            c.backend(
                                file.span(),
                                "etcd.password_file",
                                format!("{} is empty", path.display()),
                            );
                        }
                        Some(EtcdAuth {
                            user: user.get_ref().clone(),
                            password_file: path,
                            password,
                        })
                    }
                    Err(e) => {
                        c.backend(
                            file.span(),
                            "etcd.password_file",
                            format!("cannot read {}: {e}", path.display()),
                        );
                        None
                    }
                }
            }
            (Some(user), None) => {
                c.backend(
                    user.span(),
                    "etcd.user",
                    "needs etcd.password_file".to_owned(),
                );
                None
            }
            (None, Some(file)) => {
                c.backend(
                    file.span(),
                    "etcd.password_file",
                    "needs etcd.user".to_owned(),
                );
                None
            }
        };
        let tls = raw.tls.as_ref().and_then(|t| {
            let read = |c: &mut Collector<'_>, f: &Spanned<String>, key: &str| {
                let path = c.relative(f.get_ref());
                match std::fs::read(&path) {
                    Ok(bytes) if !bytes.is_empty() => Some((path, bytes)),
                    Ok(_) => {
                        c.backend(f.span(), key, format!("{} is empty", path.display()));
                        None
                    }
                    Err(e) => {
                        c.backend(
                            f.span(),
                            key,
                            format!("cannot read {}: {e}", path.display()),
                        );
                        None
                    }
                }
            };
            let ca = read(c, &t.ca_file, "etcd.tls.ca_file");
            let identity = match (&t.cert_file, &t.key_file) {
                (None, None) => Some(None),
                (Some(cert), Some(key)) => {
                    let cert = read(c, cert, "etcd.tls.cert_file");
                    let key = read(c, key, "etcd.tls.key_file");
                    match (cert, key) {
                        (Some((cert_file, cert_pem)), Some((key_file, key_pem))) => {
                            Some(Some(EtcdIdentity {
                                cert_file,
                                key_file,
                                cert_pem,
                                key_pem,
                            }))
                        }
                        _ => None,
                    }
                }
                (Some(f), None) => {
                    c.backend(
                        f.span(),
                        "etcd.tls.cert_file",
                        "needs etcd.tls.key_file".to_owned(),
                    );
                    None
                }
                (None, Some(f)) => {
                    c.backend(
                        f.span(),
                        "etcd.tls.key_file",
                        "needs etcd.tls.cert_file".to_owned(),
                    );
                    None
                }
            };
            let (ca_file, ca_pem) = ca?;
            Some(EtcdTls {
                ca_file,
                ca_pem,
                identity: identity?,
                server_name: t.server_name.as_ref().map(|s| s.get_ref().clone()),
            })
        });
        if c.errors.len() > before {
            return None;
        }
        Some(EtcdSettings {
            endpoints,
            key_prefix,
            lease_ttl: lease_ttl?,
            timeout: timeout?,
            auth,
            tls,
        })
    }

    fn poll(c: &mut Collector<'_>, raw: Option<&RawPoll>) -> Option<PollSettings> {
        let interval = match raw {
            Some(p) if p.interval.is_some() => c.duration(p.interval.as_ref(), "poll.interval")?,
            _ => DEFAULT_POLL_INTERVAL,
        };
        let span = |s: Option<&Spanned<String>>| s.map(Spanned::span);
        if interval < MIN_POLL_INTERVAL {
            let min = humantime::format_duration(MIN_POLL_INTERVAL);
            c.push(
                span(raw.and_then(|p| p.interval.as_ref())),
                "poll.interval",
                FleetErrorKind::Timing(format!("must be at least {min}")),
            );
            return None;
        }
        let timeout = match raw {
            Some(p) if p.timeout.is_some() => c.duration(p.timeout.as_ref(), "poll.timeout")?,
            _ => DEFAULT_POLL_TIMEOUT,
        };
        if timeout > interval {
            c.push(
                span(raw.and_then(|p| p.timeout.as_ref())),
                "poll.timeout",
                FleetErrorKind::Timing("must not exceed poll.interval".into()),
            );
            return None;
        }
        let round = interval + timeout;
        let stale_after = match raw.and_then(|p| p.stale_after.as_ref()) {
            Some(s) => c.duration(Some(s), "poll.stale_after")?,
            None => 3 * interval + timeout,
        };
        let intent_wait = match raw.and_then(|p| p.intent_wait.as_ref()) {
            Some(s) => c.duration(Some(s), "poll.intent_wait")?,
            None => 2 * round,
        };
        let mut ok = true;
        for (value, key, raw_span) in [
            (
                stale_after,
                "poll.stale_after",
                span(raw.and_then(|p| p.stale_after.as_ref())),
            ),
            (
                intent_wait,
                "poll.intent_wait",
                span(raw.and_then(|p| p.intent_wait.as_ref())),
            ),
        ] {
            if value < round {
                c.push(
                    raw_span,
                    key,
                    FleetErrorKind::Timing(
                        "must be at least poll.interval + poll.timeout (one poll round)".into(),
                    ),
                );
                ok = false;
            }
        }
        ok.then_some(PollSettings {
            interval,
            timeout,
            stale_after,
            intent_wait,
        })
    }

    /// The site named `name`.
    pub fn site(&self, name: &str) -> Option<&FleetSite> {
        self.sites.iter().find(|s| s.name == name)
    }

    /// Position of `name` in the fleet file (its hold rank).
    pub fn rank(&self, name: &str) -> Option<usize> {
        self.sites.iter().position(|s| s.name == name)
    }

    /// The guard settings of `service`, if the fleet lists it.
    pub fn service(&self, name: &str) -> Option<&FleetService> {
        self.services.iter().find(|s| s.name == name)
    }

    /// `min_sites` of `service` (1 for services the fleet does not list).
    pub fn min_sites(&self, service: &str) -> usize {
        self.service(service).map_or(1, |s| s.min_sites)
    }

    /// Whether `service` is retired in the fleet file (see [`FleetService::retired`]).
    pub fn retired(&self, service: &str) -> bool {
        self.service(service).is_some_and(|s| s.retired)
    }

    /// Protocol timing for [`super::runtime::GuardInput`], with the site's `hand_over`
    /// (a site config key, not the fleet's: `[fleet] hand_over`).
    pub fn timing(&self, hand_over: std::time::Duration) -> GuardTiming {
        GuardTiming {
            stale_after: self.poll.stale_after,
            intent_wait: self.poll.intent_wait,
            hand_over,
        }
    }

    /// An unpolled view of every site but `local`.
    pub fn view_for(&self, local: &str) -> FleetView {
        FleetView::unpolled(
            self.sites
                .iter()
                .enumerate()
                .filter(|(_, s)| s.name != local)
                .map(|(rank, s)| (rank, s.name.as_str())),
        )
    }
}

#[cfg(test)]
#[path = "fleet_tests.rs"]
mod tests;
