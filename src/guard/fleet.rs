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

        match (c.errors.is_empty(), poll) {
            (true, Some(poll)) => Ok(Fleet {
                source: source.to_owned(),
                poll,
                sites,
                services,
                auth,
            }),
            _ => Err(FleetErrors(c.errors)),
        }
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

    /// Protocol timing for [`super::runtime::GuardInput`].
    pub fn timing(&self) -> GuardTiming {
        GuardTiming {
            stale_after: self.poll.stale_after,
            intent_wait: self.poll.intent_wait,
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
