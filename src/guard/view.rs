//! The fleet view: what this site knows about the other sites, as filled in by the
//! [poller](super::poller) and read by the pure [runtime guard](super::runtime).
//!
//! Times are `std::time::Instant`s on the *local* clock: the protocol never compares
//! clocks of two sites, only the local time a request was started with the local time
//! an intent was published.

use std::time::{Duration, Instant};

use ipnet::IpNet;

use super::hand_over::Continuity;
use super::report::SiteReport;

/// What a polled site's [`Continuity`] is kept per: a service and one of its prefixes
/// (`None` for an entry without prefixes).
pub type ServicePrefix = (String, Option<IpNet>);

/// Everything known about the other sites (the local site is not in it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FleetView {
    /// One entry per other site, in fleet order.
    pub sites: Vec<PeerSiteView>,
}

/// One other site.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerSiteView {
    /// Site name in the fleet.
    pub name: String,
    /// Position in the fleet file (0 = first). When several sites are held, the ones with
    /// a lower rank keep announcing and the others withdraw (see `docs/guard.md`).
    pub rank: usize,
    /// The latest *completed* poll, successful or not.
    pub last_poll: Option<PollOutcome>,
    /// Failed polls since start, per [`PollFailure::reason`] (indexes of
    /// [`POLL_FAILURE_REASONS`]).
    pub failures: [u64; POLL_FAILURE_REASONS.len()],
    /// Since when each of its service prefixes has been reported announcing without a
    /// break (the hand-over, [`super::hand_over`]): from the first report that said so,
    /// ended by a report that does not, or by a failed poll.
    pub announcing: Continuity<ServicePrefix>,
}

/// The result of one poll of a site's status endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct PollOutcome {
    /// When the request was started (taken before connecting), local clock.
    pub requested_at: Instant,
    /// The report, or why there is none. A failure counts as "not announcing".
    pub result: Result<SiteReport, PollFailure>,
}

/// Why a poll brought no report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PollFailure {
    /// No complete answer within the poll timeout.
    #[error("timed out after {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// TCP connect or HTTP exchange failed.
    #[error("request failed: {0}")]
    Request(String),
    /// The endpoint answered with a non-success status.
    #[error("HTTP status {0}")]
    Status(u16),
    /// The body was too large, not JSON, or had no `guard` report.
    #[error("bad status document: {0}")]
    Body(String),
    /// The report names another site (wrong URL in the fleet file?).
    #[error("report is from site {found:?}, expected {expected:?}")]
    WrongSite {
        /// The site we polled.
        expected: String,
        /// The site named in the report.
        found: String,
    },
    /// The report is in a format version this build does not read (the other site runs
    /// an incompatible anyguard): its content cannot be trusted to mean what v1 means.
    #[error(
        "report format version {found} is not supported (this anyguard reads version {supported})"
    )]
    UnsupportedVersion {
        /// The version in the report.
        found: u32,
        /// [`REPORT_VERSION`](super::report::REPORT_VERSION).
        supported: u32,
    },
    /// The fleet has a key and the answer carries no signature (a site without the key,
    /// or someone else answering for it).
    #[error("report is not signed (the fleet requires signed reports)")]
    Unsigned,
    /// The signature does not verify for this site and this poll's nonce: another key, an
    /// altered body, another site's report, or a replay of an earlier answer.
    #[error("report signature is invalid ({0})")]
    BadSignature(String),
}

impl PollFailure {
    /// A fixed, short name of the failure (the `reason` label of
    /// `anyguard_guard_poll_failures_total`).
    pub fn reason(&self) -> &'static str {
        match self {
            PollFailure::Timeout(_) => "timeout",
            PollFailure::Request(_) => "request",
            PollFailure::Status(_) => "status",
            PollFailure::Body(_) => "body",
            PollFailure::WrongSite { .. } => "wrong_site",
            PollFailure::UnsupportedVersion { .. } => "unsupported_version",
            PollFailure::Unsigned => "unsigned",
            PollFailure::BadSignature(_) => "bad_signature",
        }
    }
}

/// Every [`PollFailure::reason`], in a fixed order (metrics report each, 0 included).
pub const POLL_FAILURE_REASONS: [&str; 8] = [
    "timeout",
    "request",
    "status",
    "body",
    "wrong_site",
    "unsupported_version",
    "unsigned",
    "bad_signature",
];

/// The warning shown at start and in `/status` for a fleet without `[auth]`.
pub const UNSIGNED_WARNING: &str = "the fleet file has no [auth] key_file: site reports are \
     neither signed nor verified, so anyone who can answer a poll can forge or replay them \
     (see docs/guard.md)";

/// `fleet.auth` and `fleet.warning` of `/status` for `fleet`.
pub fn auth_status(fleet: &super::fleet::Fleet) -> (String, Option<String>) {
    match fleet.auth {
        Some(_) => ("hmac-sha256".to_owned(), None),
        None => ("none".to_owned(), Some(UNSIGNED_WARNING.to_owned())),
    }
}

impl PeerSiteView {
    /// `last_poll` of `/status`: `ok`, the failure, or `not polled yet`.
    pub fn last_poll_text(&self) -> String {
        match self.last_poll.as_ref().map(|p| &p.result) {
            None => "not polled yet".to_owned(),
            Some(Ok(_)) => "ok".to_owned(),
            Some(Err(e)) => e.to_string(),
        }
    }

    /// `poll_failures` of `/status`: every reason, 0 included.
    pub fn failure_counts(&self) -> std::collections::BTreeMap<String, u64> {
        POLL_FAILURE_REASONS
            .iter()
            .zip(self.failures)
            .map(|(r, n)| ((*r).to_owned(), n))
            .collect()
    }
}

/// The hand-over runs of one site after a poll seen at `seen_at`: every service prefix the
/// report says announcing goes on (or starts at `seen_at`), every other one ends; a failed
/// poll ends them all (unreachable counts as not announcing).
fn observe(runs: &mut Continuity<ServicePrefix>, outcome: &PollOutcome, seen_at: Instant) {
    let Ok(report) = &outcome.result else {
        runs.clear();
        return;
    };
    let mut reported = std::collections::HashSet::new();
    for service in &report.services {
        let prefixes: Vec<Option<IpNet>> = if service.prefixes.is_empty() {
            vec![None]
        } else {
            service.prefixes.iter().copied().map(Some).collect()
        };
        for p in prefixes {
            let key = (service.name.clone(), p);
            runs.observe(key.clone(), service.announcing, 0, seen_at);
            reported.insert(key);
        }
    }
    runs.retain(|key, _| reported.contains(key));
}

impl PeerSiteView {
    /// Since when this site has been seen announcing every one of `prefixes` of `service`
    /// without a break (the latest start among them), `None` if one is not.
    pub fn announcing_since(&self, service: &str, prefixes: &[IpNet]) -> Option<Instant> {
        let since = |p: Option<IpNet>| self.announcing.since(&(service.to_owned(), p), 0);
        if prefixes.is_empty() {
            return since(None);
        }
        prefixes
            .iter()
            .map(|p| since(Some(*p)))
            .try_fold(None, |latest: Option<Instant>, s| {
                s.map(|s| Some(latest.map_or(s, |l| l.max(s))))
            })
            .flatten()
    }
}

impl FleetView {
    /// A view with every other site of `names` (in fleet order, local site excluded by the
    /// caller) not yet polled. `ranks` are the fleet positions.
    pub fn unpolled<'a>(sites: impl IntoIterator<Item = (usize, &'a str)>) -> Self {
        FleetView {
            sites: sites
                .into_iter()
                .map(|(rank, name)| PeerSiteView {
                    name: name.to_owned(),
                    rank,
                    last_poll: None,
                    failures: [0; POLL_FAILURE_REASONS.len()],
                    announcing: Continuity::default(),
                })
                .collect(),
        }
    }

    /// The entry for `site`.
    pub fn site(&self, site: &str) -> Option<&PeerSiteView> {
        self.sites.iter().find(|s| s.name == site)
    }

    /// Record a completed poll of `site`, which reached this site's view at `seen_at`
    /// (ignored if it is older than the one held, or if the site is unknown).
    pub fn record(&mut self, site: &str, outcome: PollOutcome, seen_at: Instant) {
        if let Some(entry) = self.sites.iter_mut().find(|s| s.name == site) {
            if let Err(failure) = &outcome.result {
                // Counted even when the outcome is older than the one held: it happened.
                if let Some(i) = POLL_FAILURE_REASONS
                    .iter()
                    .position(|r| *r == failure.reason())
                {
                    entry.failures[i] += 1;
                }
            }
            let newer = entry
                .last_poll
                .as_ref()
                .is_none_or(|p| p.requested_at <= outcome.requested_at);
            if newer {
                observe(&mut entry.announcing, &outcome, seen_at);
                entry.last_poll = Some(outcome);
            }
        }
    }
}
