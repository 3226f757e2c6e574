//! What a site publishes about itself for the other sites' guards.
//!
//! The status endpoint embeds a [`SiteReport`] under the `"guard"` key of `/status`
//! ([`StatusEnvelope`] is the view the pollers parse; every other key is ignored). The
//! report is the *only* channel of the intent protocol described in `docs/guard.md`: a
//! site that wants to withdraw first publishes [`Intent::Withdrawing`] here, and the status
//! server must read the latest report at request time (never a cached copy), because the
//! race argument relies on "a request that arrives after the intent was published sees it".

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Version of the report format; bumped on incompatible changes.
pub const REPORT_VERSION: u32 = 1;

/// The part of `/status` that the other sites' pollers read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusEnvelope {
    /// This site's guard report.
    pub guard: SiteReport,
}

/// One site's report about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteReport {
    /// Format version ([`REPORT_VERSION`]).
    pub version: u32,
    /// The publishing site's name in the fleet.
    pub site: String,
    /// Increases by one on every change of the report (for humans and change detection;
    /// the protocol itself relies on request times, not on this number).
    pub generation: u64,
    /// One entry per configured service, in config order.
    pub services: Vec<ServiceReport>,
    /// SHA-256 of the canonical form of the fleet file this site runs
    /// ([`fleet_digest`](super::digest::fleet_digest)), so that sites running different
    /// fleet files show up in each other's `/status`. Added within version 1: a reader
    /// that ignores unknown keys (every anyguard) reads the report as before, and a report
    /// without it (an older anyguard) reads as `None`, "unknown".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet_digest: Option<String>,
}

/// One service as seen by the site that runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceReport {
    /// Service name (as in the fleet file).
    pub name: String,
    /// Prefixes configured for the service at this site.
    pub prefixes: Vec<IpNet>,
    /// Local health (checks combined, drain files considered: a drained service is not
    /// healthy for the guard).
    pub healthy: bool,
    /// The prefixes are announced normally right now (including while held) **and** the
    /// guard's latest decision keeps them (`Decision::announces`). False while in
    /// hold-down, draining with GRACEFUL_SHUTDOWN, de-preferred, or between a `Withdraw`
    /// decision and the routes leaving: other sites rely on this flag, so it must never
    /// be true for a site that is about to stop announcing without a `withdrawing` intent.
    /// And only while every prefix is in the Adj-RIB-Out of an established session that
    /// confirmed writing it, with the service addresses in place: all sessions down means
    /// not announcing.
    pub announcing: bool,
    /// The guard's published intent.
    pub intent: Intent,
}

/// A site's guard intent for one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Intent {
    /// Nothing pending: announcing while healthy, or withdrawn.
    None,
    /// About to withdraw: waiting for reports fetched after this intent was published.
    /// Other sites count this site as not announcing.
    Withdrawing,
    /// Unhealthy but held by the guard; keeps announcing.
    Held,
}

impl Intent {
    /// Lower-case name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Intent::None => "none",
            Intent::Withdrawing => "withdrawing",
            Intent::Held => "held",
        }
    }
}

impl SiteReport {
    /// The entry for `service`, if the site reports it.
    pub fn service(&self, service: &str) -> Option<&ServiceReport> {
        self.services.iter().find(|s| s.name == service)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_report_json_shape_is_stable() {
        let report = SiteReport {
            version: REPORT_VERSION,
            site: "a".into(),
            generation: 7,
            services: vec![ServiceReport {
                name: "web".into(),
                prefixes: vec!["203.0.113.0/24".parse().unwrap()],
                healthy: false,
                announcing: true,
                intent: Intent::Withdrawing,
            }],
            fleet_digest: Some("ab12".into()),
        };
        let json = serde_json::to_string(&StatusEnvelope {
            guard: report.clone(),
        })
        .unwrap();
        assert_eq!(
            json,
            r#"{"guard":{"version":1,"site":"a","generation":7,"services":[{"name":"web","prefixes":["203.0.113.0/24"],"healthy":false,"announcing":true,"intent":"withdrawing"}],"fleet_digest":"ab12"}}"#
        );
        let back: StatusEnvelope = serde_json::from_str(&json).unwrap();
        assert_eq!(back.guard, report);
    }

    #[test]
    fn a_report_without_a_fleet_digest_still_parses_as_unknown() {
        // What an anyguard from before fleet digests publishes.
        let json = r#"{"guard":{"version":1,"site":"b","generation":3,"services":[]}}"#;
        let env: StatusEnvelope = serde_json::from_str(json).unwrap();
        assert_eq!(env.guard.fleet_digest, None);
        // And the other way round: a reader that knows nothing of the digest (the
        // envelope of a version-1 anyguard before it, which ignores unknown keys).
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct OldReport {
            version: u32,
            site: String,
            generation: u64,
            services: Vec<ServiceReport>,
        }
        #[derive(serde::Deserialize)]
        struct OldEnvelope {
            guard: OldReport,
        }
        let new = r#"{"guard":{"version":1,"site":"b","generation":3,"services":[],"fleet_digest":"ab12"}}"#;
        let old: OldEnvelope = serde_json::from_str(new).unwrap();
        assert_eq!(old.guard.site, "b");
    }

    #[test]
    fn envelope_ignores_the_rest_of_the_status_document() {
        let json = r#"{"daemon":{"version":"0.1.0"},"services":[],"guard":{"version":1,"site":"b","generation":1,"services":[]}}"#;
        let env: StatusEnvelope = serde_json::from_str(json).unwrap();
        assert_eq!(env.guard.site, "b");
    }
}
