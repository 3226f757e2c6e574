//! The fleet view: what this site knows about the other sites, as filled in by the
//! [poller](super::poller) and read by the pure [runtime guard](super::runtime).
//!
//! Times are `std::time::Instant`s on the *local* clock: the protocol never compares
//! clocks of two sites, only the local time a request was started with the local time
//! an intent was published.

use std::time::{Duration, Instant};

use super::report::SiteReport;

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
                })
                .collect(),
        }
    }

    /// The entry for `site`.
    pub fn site(&self, site: &str) -> Option<&PeerSiteView> {
        self.sites.iter().find(|s| s.name == site)
    }

    /// Record a completed poll of `site` (ignored if it is older than the one held, or if
    /// the site is unknown).
    pub fn record(&mut self, site: &str, outcome: PollOutcome) {
        if let Some(entry) = self.sites.iter_mut().find(|s| s.name == site) {
            let newer = entry
                .last_poll
                .as_ref()
                .is_none_or(|p| p.requested_at <= outcome.requested_at);
            if newer {
                entry.last_poll = Some(outcome);
            }
        }
    }
}
