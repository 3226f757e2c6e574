//! `anyguard status`: fetch `/status` and print it as compact tables, or as pretty JSON.
//!
//! [`run`] is what `main` calls; [`render`] is the pure renderer (time is a parameter, so
//! golden tests are stable). Colour is plain ANSI SGR, applied after padding so columns stay
//! aligned; the caller decides (`std::io::IsTerminal` on stdout, `NO_COLOR`).

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header;
use hyper::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::model::{PeerStatus, ServiceStatus, StatusDocument};

/// Where `anyguard status` looks without `--url` (the config's default `[status] listen`).
pub const DEFAULT_URL: &str = "http://127.0.0.1:9180/status";

/// How long the whole fetch may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest `/status` document accepted, bytes.
pub const MAX_DOCUMENT: usize = 16 * 1024 * 1024;

/// Why `anyguard status` failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL does not parse or is not `http://host[:port][/path]`.
    #[error("bad URL {url:?}: {reason}")]
    BadUrl {
        /// As given.
        url: String,
        /// Why.
        reason: String,
    },
    /// Connecting or sending failed.
    #[error("cannot reach {url}: {message}")]
    Request {
        /// Target.
        url: String,
        /// Transport error text.
        message: String,
    },
    /// No complete answer within [`FETCH_TIMEOUT`].
    #[error("no answer from {url} within {FETCH_TIMEOUT:?}")]
    Timeout {
        /// Target.
        url: String,
    },
    /// The endpoint answered with a non-200 status.
    #[error("{url} answered HTTP {status}: {body}")]
    Status {
        /// Target.
        url: String,
        /// HTTP status code.
        status: u16,
        /// Start of the body.
        body: String,
    },
    /// Reading the body failed or it was larger than [`MAX_DOCUMENT`].
    #[error("reading the answer from {url}: {message}")]
    Body {
        /// Target.
        url: String,
        /// Why.
        message: String,
    },
    /// The body is not a status document.
    #[error("{url} did not return a status document: {source}")]
    Json {
        /// Target.
        url: String,
        /// Parser error.
        source: serde_json::Error,
    },
}

/// Whether `anyguard status` should colour its tables: stdout is a terminal and `NO_COLOR`
/// (<https://no-color.org>) is unset or empty.
pub fn colour_wanted() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Fetches `url` (a base such as `http://127.0.0.1:9179` gets `/status` appended) and
/// returns the text to print: tables, or with `json` the document pretty-printed.
pub async fn run(url: &str, json: bool, color: bool) -> Result<String, ClientError> {
    let mut uri = status_uri(url)?;
    if !json && uri.query().is_none() && uri.path() == "/status" {
        // The tables show each check's latest result only: ask for just that (the whole
        // document is megabytes at a thousand services; docs/status.md).
        uri = summary_uri(&uri).unwrap_or(uri);
    }
    let shown = uri.to_string();
    let body = tokio::time::timeout(FETCH_TIMEOUT, fetch(uri, &shown))
        .await
        .map_err(|_| ClientError::Timeout { url: shown.clone() })??;
    if json {
        let value: serde_json::Value =
            serde_json::from_slice(&body).map_err(|source| ClientError::Json {
                url: shown.clone(),
                source,
            })?;
        let mut out = serde_json::to_string_pretty(&value).map_err(|source| ClientError::Json {
            url: shown.clone(),
            source,
        })?;
        out.push('\n');
        return Ok(out);
    }
    let doc = parse_document(&body, &shown)?;
    Ok(render(&doc, SystemTime::now(), color))
}

/// Fetches the status document at `url` (a base URL gets `/status`), each check's latest
/// result only (`?summary=1`): what a program watching a daemon needs (`anyguard demo`).
pub async fn document(url: &str) -> Result<StatusDocument, ClientError> {
    let uri = status_uri(url)?;
    let uri = summary_uri(&uri).unwrap_or(uri);
    let shown = uri.to_string();
    let body = tokio::time::timeout(FETCH_TIMEOUT, fetch(uri, &shown))
        .await
        .map_err(|_| ClientError::Timeout { url: shown.clone() })??;
    parse_document(&body, &shown)
}

fn parse_document(body: &[u8], shown: &str) -> Result<StatusDocument, ClientError> {
    serde_json::from_slice(body).map_err(|source| ClientError::Json {
        url: shown.to_owned(),
        source,
    })
}

/// `url` as an `http` URI, `/status` added when it names no path.
fn status_uri(url: &str) -> Result<Uri, ClientError> {
    let bad = |reason: &str| ClientError::BadUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let with_scheme = if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    };
    let uri: Uri = with_scheme
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| bad(&e.to_string()))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad(
            "only http:// is supported (the endpoint is plain HTTP on loopback)",
        ));
    }
    let authority = uri.authority().ok_or_else(|| bad("no host"))?.clone();
    let path_and_query = match uri.path_and_query().map(|p| p.as_str()) {
        None | Some("" | "/") => "/status",
        Some(p) => p,
    };
    Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(path_and_query)
        .build()
        .map_err(|e| bad(&e.to_string()))
}

/// `uri` with `?summary=1`.
fn summary_uri(uri: &Uri) -> Option<Uri> {
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(format!("{}?summary=1", uri.path()).parse().ok()?);
    Uri::from_parts(parts).ok()
}

async fn fetch(uri: Uri, shown: &str) -> Result<Bytes, ClientError> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let req = hyper::Request::get(uri)
        .header(header::ACCEPT, "application/json")
        .header(
            header::USER_AGENT,
            concat!("anyguard/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::new())
        .map_err(|e| ClientError::Request {
            url: shown.to_owned(),
            message: e.to_string(),
        })?;
    let resp = client
        .request(req)
        .await
        .map_err(|e| ClientError::Request {
            url: shown.to_owned(),
            message: error_chain(&e),
        })?;
    let status = resp.status();
    let body = http_body_util::Limited::new(resp.into_body(), MAX_DOCUMENT)
        .collect()
        .await
        .map_err(|e| ClientError::Body {
            url: shown.to_owned(),
            message: e.to_string(),
        })?
        .to_bytes();
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body);
        return Err(ClientError::Status {
            url: shown.to_owned(),
            status: status.as_u16(),
            body: truncate(text.trim(), 200),
        });
    }
    Ok(body)
}

/// "connect error: Connection refused (os error 111)" rather than just "client error".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let _ = write!(text, ": {c}");
        cause = c.source();
    }
    text
}

/// ANSI colours used for states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Colour {
    Green,
    Yellow,
    Red,
}

impl Colour {
    fn sgr(self) -> &'static str {
        match self {
            Colour::Green => "\u{1b}[32m",
            Colour::Yellow => "\u{1b}[33m",
            Colour::Red => "\u{1b}[31m",
        }
    }
}

/// The colour of a state word (service, peer, check or announcement).
fn state_colour(state: &str) -> Option<Colour> {
    match state {
        "up" | "established" | "announced" | "allow" | "ok" => Some(Colour::Green),
        "down" | "idle" | "withdrawn" | "fail" | "error" => Some(Colour::Red),
        "draining" | "drained" | "held" | "starting" | "connect" | "active" | "opensent"
        | "openconfirm" | "depreferred" | "graceful-shutdown" | "pending" | "unknown"
        | "forced" | "init" | "admin_down" => Some(Colour::Yellow),
        _ => None,
    }
}

struct Cell {
    text: String,
    colour: Option<Colour>,
}

impl Cell {
    fn plain(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            colour: None,
        }
    }

    fn state(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            colour: state_colour(text),
        }
    }
}

/// A left-aligned table with a header row, two spaces between columns, no trailing blanks.
fn table(out: &mut String, title: &str, headers: &[&str], rows: &[Vec<Cell>], color: bool) {
    let _ = writeln!(out, "{title}");
    if rows.is_empty() {
        let _ = writeln!(out, "  (none)");
        return;
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.text.chars().count());
        }
    }
    let mut line = |cells: Vec<(&str, Option<Colour>)>| {
        let mut text = String::from("  ");
        let last = cells.len().saturating_sub(1);
        for (i, ((cell, colour), width)) in cells.into_iter().zip(&widths).enumerate() {
            let pad = width.saturating_sub(cell.chars().count());
            match colour.filter(|_| color) {
                Some(c) => {
                    let _ = write!(text, "{}{cell}\u{1b}[0m", c.sgr());
                }
                None => text.push_str(cell),
            }
            if i != last {
                text.push_str(&" ".repeat(pad + 2));
            }
        }
        let _ = writeln!(out, "{}", text.trim_end());
    };
    line(headers.iter().map(|h| (*h, None)).collect());
    for row in rows {
        line(row.iter().map(|c| (c.text.as_str(), c.colour)).collect());
    }
}

/// At most `max` characters, with `…` when cut; newlines become spaces.
fn truncate(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        return flat;
    }
    let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A compact age: `42s`, `7m05s`, `3h04m`, `2d03h`.
pub fn format_age(age: Duration) -> String {
    let s = age.as_secs();
    let (d, h, m, sec) = (s / 86_400, (s / 3600) % 24, (s / 60) % 60, s % 60);
    if d > 0 {
        format!("{d}d{h:02}h")
    } else if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{sec:02}s")
    } else {
        format!("{sec}s")
    }
}

/// `0.4ms`, `812.0ms`, `2.00s`.
fn format_latency(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{:.2}s", ms / 1000.0)
    }
}

/// Age of an RFC 3339 timestamp at `now`; the raw text if it does not parse, `-` if empty.
fn since(at: &str, now: SystemTime) -> String {
    if at.is_empty() {
        return "-".to_owned();
    }
    match humantime::parse_rfc3339_weak(at) {
        Ok(t) => format_age(now.duration_since(t).unwrap_or_default()),
        Err(_) => at.to_owned(),
    }
}

fn announced_to(s: &ServiceStatus) -> String {
    let parts: Vec<String> = s
        .announcements
        .iter()
        .filter(|a| !matches!(a.state.as_str(), "withdrawn" | "pending"))
        .map(|a| match a.state.as_str() {
            "announced" => a.peer.clone(),
            other => format!("{} ({other})", a.peer),
        })
        .collect();
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(", ")
    }
}

fn peer_error(p: &PeerStatus) -> String {
    if let Some(e) = &p.last_error {
        return truncate(e, 50);
    }
    let note = p
        .last_notification_received
        .as_ref()
        .map(|n| ("recv", n))
        .or_else(|| p.last_notification_sent.as_ref().map(|n| ("sent", n)));
    match note {
        Some((dir, n)) => {
            let comm = n
                .communication
                .as_deref()
                .map(|c| format!(" \"{c}\""))
                .unwrap_or_default();
            truncate(&format!("{dir} {}{comm}", n.name), 50)
        }
        None => "-".to_owned(),
    }
}

/// The line `anyguard status` prints when other sites run another fleet file.
fn fleet_warning(doc: &StatusDocument) -> Option<String> {
    let fleet = doc.fleet.as_ref()?;
    if fleet.mismatch.is_empty() {
        return None;
    }
    let short = |d: &str| d.get(..12).unwrap_or(d).to_owned();
    let theirs: Vec<String> = fleet
        .sites
        .iter()
        .filter(|s| fleet.mismatch.contains(&s.name))
        .map(|s| format!("{} {}", s.name, short(s.digest.as_deref().unwrap_or("?"))))
        .collect();
    Some(format!(
        "WARNING: sites run different fleet files: here {}, {}",
        short(&fleet.digest),
        theirs.join(", ")
    ))
}

/// The fleet backend line `anyguard status` prints with the etcd backend: its health, the
/// lease, the last transaction and per prefix the sites the store says announce it; the
/// alarm when etcd cannot be reached.
fn store_lines(doc: &StatusDocument) -> Vec<String> {
    let Some(store) = doc.fleet.as_ref().and_then(|f| f.store.as_ref()) else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    if store.connected {
        let txn = store.last_txn.as_ref().map_or_else(String::new, |t| {
            let changed = if t.changed.is_empty() {
                String::new()
            } else {
                format!(" ({})", t.changed.join(", "))
            };
            format!(
                ", last transaction {} {} at revision {}{changed}",
                t.what, t.outcome, t.revision
            )
        });
        lines.push(format!(
            "fleet backend etcd: connected, lease {} ttl {}s, revision {}{txn}",
            store.lease_id.as_deref().unwrap_or("-"),
            store.lease_ttl_ms / 1000,
            store.revision
        ));
    } else {
        lines.push(format!(
            "ETCD UNREACHABLE ({}): every withdrawal is held until etcd answers again",
            truncate(store.error.as_deref().unwrap_or("no lease yet"), 100)
        ));
    }
    for p in &store.prefixes {
        lines.push(format!(
            "  etcd: {} {} announced by {}",
            p.service,
            p.prefix,
            if p.sites_announcing.is_empty() {
                "no site".to_owned()
            } else {
                p.sites_announcing.join(", ")
            }
        ));
    }
    lines
}

/// One line per route set a reload removed that the all-sites guard still keeps announced.
fn pending_removal_lines(doc: &StatusDocument, now: SystemTime) -> Vec<String> {
    doc.pending_removals
        .iter()
        .map(|r| {
            let prefixes: Vec<String> = r.prefixes.iter().map(ToString::to_string).collect();
            format!(
                "REMOVAL {} by reload {} ago: {} {}: {}",
                r.decision.to_uppercase(),
                since(&r.since, now),
                r.service,
                prefixes.join(", "),
                truncate(&r.reason, 120)
            )
        })
        .collect()
}

/// Renders `doc` as three tables (services, peers, checks) under a one-line daemon summary.
pub fn render(doc: &StatusDocument, now: SystemTime, color: bool) -> String {
    let d = &doc.daemon;
    let mut out = String::new();
    let site = d
        .site
        .as_deref()
        .map(|s| format!("  site {s}"))
        .unwrap_or_default();
    let readiness = if d.stopping {
        "stopping"
    } else if d.ready {
        "ready"
    } else {
        "not ready"
    };
    let _ = writeln!(
        out,
        "anyguard {}  router-id {}  AS {}{site}  up {}  config gen {} ({} ago)  {readiness}",
        d.version,
        d.router_id,
        d.local_asn,
        format_age(Duration::from_secs(d.uptime_seconds)),
        d.config_generation,
        since(&d.config_loaded_at, now),
    );
    if let Some(r) = &d.last_reload {
        let outcome = if r.ok {
            "ok".to_owned()
        } else {
            format!("FAILED: {}", truncate(&r.errors.join("; "), 100))
        };
        let _ = writeln!(out, "last reload {} ago: {outcome}", since(&r.at, now));
    }
    // Only when it matters: a drain that is not saved is lost at the next restart.
    if let Some(s) = &d.state_file {
        if let Some(w) = s.last_write.as_ref().filter(|w| !w.ok) {
            let _ = writeln!(
                out,
                "state file {}: last write FAILED {} ago: {} (drains since are lost at a restart)",
                s.path,
                since(&w.at, now),
                truncate(w.error.as_deref().unwrap_or(""), 100)
            );
        }
    }
    if let Some(warning) = fleet_warning(doc) {
        let _ = writeln!(out, "{warning}");
    }
    for line in store_lines(doc) {
        let _ = writeln!(out, "{line}");
    }
    for line in pending_removal_lines(doc, now) {
        let _ = writeln!(out, "{line}");
    }
    if let Some(reason) = &d.stop_reason {
        let _ = writeln!(
            out,
            "STOPPING WITHOUT WITHDRAWING: {}",
            truncate(reason, 200)
        );
    }
    out.push('\n');

    let services: Vec<Vec<Cell>> = doc
        .services
        .iter()
        .map(|s| {
            vec![
                Cell::plain(&s.name),
                Cell::state(&s.state),
                Cell::plain(since(&s.since, now)),
                Cell::state(&s.guard.decision),
                Cell::plain(announced_to(s)),
                Cell::plain(truncate(&s.reason, 60)),
            ]
        })
        .collect();
    table(
        &mut out,
        "SERVICES",
        &["NAME", "STATE", "SINCE", "GUARD", "ANNOUNCED TO", "REASON"],
        &services,
        color,
    );
    out.push('\n');

    let peers: Vec<Vec<Cell>> = doc
        .peers
        .iter()
        .map(|p| {
            vec![
                Cell::plain(&p.name),
                Cell::plain(&p.address),
                Cell::plain(p.remote_asn.to_string()),
                Cell::state(&p.state),
                Cell::plain(since(&p.since, now)),
                p.bfd
                    .as_ref()
                    .map_or_else(|| Cell::plain("-"), |b| Cell::state(&b.state)),
                Cell::plain(p.prefixes_sent.to_string()),
                Cell::plain(format!(
                    "{}/{}",
                    p.prefixes_received_ipv4, p.prefixes_received_ipv6
                )),
                Cell::plain(peer_error(p)),
            ]
        })
        .collect();
    table(
        &mut out,
        "PEERS",
        &[
            "NAME",
            "ADDRESS",
            "AS",
            "STATE",
            "SINCE",
            "BFD",
            "SENT",
            "RECV v4/v6",
            "LAST ERROR",
        ],
        &peers,
        color,
    );
    out.push('\n');

    let checks: Vec<Vec<Cell>> = doc
        .services
        .iter()
        .flat_map(|s| s.checks.iter().map(move |c| (s, c)))
        .map(|(s, c)| {
            let last = c.last_results.first();
            let latency = last
                .map(|r| format_latency(r.latency_ms))
                .unwrap_or_else(|| "-".to_owned());
            let error = last
                .filter(|r| !r.ok)
                .map(|r| truncate(&r.detail, 50))
                .unwrap_or_else(|| "-".to_owned());
            vec![
                Cell::plain(&s.name),
                Cell::plain(&c.name),
                Cell::plain(&c.kind),
                Cell::state(&c.state),
                Cell::plain(format!("{}/{}", c.rise_count, c.rise)),
                Cell::plain(format!("{}/{}", c.fall_count, c.fall)),
                Cell::plain(latency),
                Cell::plain(error),
            ]
        })
        .collect();
    table(
        &mut out,
        "CHECKS",
        &[
            "SERVICE",
            "CHECK",
            "KIND",
            "STATE",
            "RISE",
            "FALL",
            "LATENCY",
            "LAST ERROR",
        ],
        &checks,
        color,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_url_is_the_configs_default_status_listen_address() {
        let uri = status_uri(DEFAULT_URL).unwrap();
        assert_eq!(
            uri.authority().map(|a| a.as_str().to_string()),
            Some(crate::config::DEFAULT_STATUS_LISTEN.to_string())
        );
    }

    #[test]
    fn ages_are_compact() {
        assert_eq!(format_age(Duration::from_secs(42)), "42s");
        assert_eq!(format_age(Duration::from_secs(425)), "7m05s");
        assert_eq!(format_age(Duration::from_secs(3 * 3600 + 240)), "3h04m");
        assert_eq!(
            format_age(Duration::from_secs(2 * 86_400 + 3 * 3600)),
            "2d03h"
        );
    }

    #[test]
    fn base_urls_get_the_status_path() {
        let u = |s| status_uri(s).unwrap().to_string();
        assert_eq!(u("http://127.0.0.1:9179"), "http://127.0.0.1:9179/status");
        assert_eq!(u("http://127.0.0.1:9179/"), "http://127.0.0.1:9179/status");
        assert_eq!(u("127.0.0.1:9179"), "http://127.0.0.1:9179/status");
        assert_eq!(u("http://[::1]:9179/status"), "http://[::1]:9179/status");
        assert!(matches!(
            status_uri("https://127.0.0.1:9179"),
            Err(ClientError::BadUrl { .. })
        ));
    }

    #[test]
    fn long_text_is_cut_with_an_ellipsis_and_flattened() {
        assert_eq!(truncate("a\nb", 10), "a b");
        assert_eq!(truncate("abcdefghij", 5), "abcd…");
    }

    #[test]
    fn a_failed_state_file_write_is_shown_and_a_good_one_is_not() {
        use crate::status::model::{StateFileStatus, StateWriteStatus};
        let mut doc = StatusDocument::default();
        let write = |ok: bool| StateWriteStatus {
            at: "1970-01-01T00:00:00Z".into(),
            ok,
            error: (!ok)
                .then(|| "create directory /var/lib/anyguard: Read-only file system".into()),
        };
        doc.daemon.state_file = Some(StateFileStatus {
            path: "/var/lib/anyguard/state.json".into(),
            drains: vec!["web".into()],
            addresses: 0,
            last_write: Some(write(true)),
        });
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(5);
        assert!(!render(&doc, now, false).contains("state file"));
        if let Some(s) = doc.daemon.state_file.as_mut() {
            s.last_write = Some(write(false));
        }
        assert!(
            render(&doc, now, false).contains(
                "state file /var/lib/anyguard/state.json: last write FAILED 5s ago: create \
                 directory /var/lib/anyguard: Read-only file system (drains since are lost at a restart)"
            ),
            "{}",
            render(&doc, now, false)
        );
    }

    #[test]
    fn empty_document_renders_none_rows() {
        let text = render(&StatusDocument::default(), SystemTime::UNIX_EPOCH, false);
        assert_eq!(text.matches("(none)").count(), 3, "{text}");
    }

    #[test]
    fn a_stop_that_keeps_routes_is_said_under_the_summary() {
        let mut doc = StatusDocument::default();
        doc.daemon.stopping = true;
        doc.daemon.stop_reason = Some("not withdrawn, this site is needed".into());
        let text = render(&doc, SystemTime::UNIX_EPOCH, false);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with("stopping"), "{text}");
        assert_eq!(
            lines[1],
            "STOPPING WITHOUT WITHDRAWING: not withdrawn, this site is needed"
        );
    }

    #[tokio::test]
    async fn unreachable_endpoint_is_a_request_error() {
        // Bind then drop to get a loopback port with nothing listening.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let err = run(&format!("http://127.0.0.1:{port}"), false, false)
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Request { .. }), "{err}");
    }
}
