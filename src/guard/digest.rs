//! The fleet digest: a SHA-256 of what a fleet file *means*, carried in every site report so
//! that sites running different fleet files show up in `/status` and the metrics.
//!
//! The digest is taken over a canonical form of the validated [`Fleet`], not over the
//! file's bytes: two files that differ only in comments, whitespace, key order, the spelling
//! of a duration (`"1s"` or `"1000ms"`), a default written out or left implicit, the order
//! of `[[service]]` tables or of a service's prefixes give the same digest. Operators edit
//! comments freely and config management re-renders files; a digest of raw bytes would
//! raise a mismatch for every such edit, and a warning that is always on is ignored. What
//! does count is everything the guard acts on: the poll timing in force, whether reports
//! are signed (`[auth]`; not the key), every site with its status and report URLs **in
//! file order** (the order is the hold rank, see `docs/guard.md`
//! "Ties"), and per service `min_sites` and the declared prefixes.
//!
//! The canonical form is a versioned JSON document (`{"canonical":2,…}`; 2 added `signed`
//! and `report_url`); a change of what
//! it covers changes every digest once, which is the honest outcome for a new meaning.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::fleet::Fleet;
use super::view::FleetView;

/// Version of the canonical form hashed by [`fleet_digest`].
const CANONICAL_VERSION: u32 = 2;

#[derive(Serialize)]
struct Canonical<'a> {
    canonical: u32,
    poll: CanonicalPoll,
    /// `[auth]` is set (reports signed); never the key itself.
    signed: bool,
    sites: Vec<CanonicalSite<'a>>,
    services: Vec<CanonicalService<'a>>,
    /// The etcd backend (absent for the poll mesh, so that poll fleets keep their digest):
    /// where the sites meet and how long a site counts without keep-alives. Not the
    /// credentials, which may differ per site.
    #[serde(skip_serializing_if = "Option::is_none")]
    etcd: Option<CanonicalEtcd<'a>>,
}

#[derive(Serialize)]
struct CanonicalEtcd<'a> {
    key_prefix: &'a str,
    lease_ttl_ns: u64,
}

#[derive(Serialize)]
struct CanonicalPoll {
    interval_ns: u64,
    timeout_ns: u64,
    stale_after_ns: u64,
    intent_wait_ns: u64,
}

#[derive(Serialize)]
struct CanonicalSite<'a> {
    name: &'a str,
    status_url: String,
    report_url: String,
}

#[derive(Serialize)]
struct CanonicalService<'a> {
    name: &'a str,
    min_sites: usize,
    prefixes: Option<Vec<String>>,
}

fn nanos(d: std::time::Duration) -> u64 {
    // Fleet durations are at most 30 days (`MAX_DURATION`), far below u64 nanoseconds.
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The canonical text of `fleet` that [`fleet_digest`] hashes.
pub fn canonical_form(fleet: &Fleet) -> String {
    let mut services: Vec<CanonicalService<'_>> = fleet
        .services
        .iter()
        .map(|s| CanonicalService {
            name: &s.name,
            min_sites: s.min_sites,
            prefixes: s.prefixes.as_ref().map(|list| {
                let mut list = list.clone();
                list.sort();
                list.dedup();
                list.iter().map(ToString::to_string).collect()
            }),
        })
        .collect();
    // Services are looked up by name: their order in the file means nothing.
    services.sort_by(|a, b| a.name.cmp(b.name));
    let canonical = Canonical {
        canonical: CANONICAL_VERSION,
        poll: CanonicalPoll {
            interval_ns: nanos(fleet.poll.interval),
            timeout_ns: nanos(fleet.poll.timeout),
            stale_after_ns: nanos(fleet.poll.stale_after),
            intent_wait_ns: nanos(fleet.poll.intent_wait),
        },
        signed: fleet.auth.is_some(),
        sites: fleet
            .sites
            .iter()
            .map(|s| CanonicalSite {
                name: &s.name,
                status_url: s.status_url.to_string(),
                report_url: s.report_url.to_string(),
            })
            .collect(),
        services,
        etcd: match &fleet.backend {
            super::fleet::BackendSettings::Poll => None,
            super::fleet::BackendSettings::Etcd(e) => Some(CanonicalEtcd {
                key_prefix: &e.key_prefix,
                lease_ttl_ns: nanos(e.lease_ttl),
            }),
        },
    };
    // Serialising plain strings and integers cannot fail.
    serde_json::to_string(&canonical).unwrap_or_default()
}

/// SHA-256 of [`canonical_form`], as 64 lower-case hex digits.
pub fn fleet_digest(fleet: &Fleet) -> String {
    format!("{:x}", Sha256::digest(canonical_form(fleet).as_bytes()))
}

/// What this site can say about another site's fleet file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAgreement {
    /// Its latest report carries the same digest.
    Same,
    /// Its latest report carries another digest: it runs another fleet file.
    Different,
    /// No report yet, the latest poll failed, or the report carries no digest (an
    /// anyguard from before digests).
    Unknown,
}

impl DigestAgreement {
    /// Lower-case name, as shown in `/status`.
    pub fn as_str(self) -> &'static str {
        match self {
            DigestAgreement::Same => "same",
            DigestAgreement::Different => "different",
            DigestAgreement::Unknown => "unknown",
        }
    }
}

/// Per other site of `view` (in fleet order): its name, the digest of its latest report
/// (if any) and whether it agrees with `local`.
pub fn digest_agreement<'a>(
    view: &'a FleetView,
    local: &str,
) -> Vec<(&'a str, Option<&'a str>, DigestAgreement)> {
    view.sites
        .iter()
        .map(|s| {
            let digest = s
                .last_poll
                .as_ref()
                .and_then(|p| p.result.as_ref().ok())
                .and_then(|r| r.fleet_digest.as_deref());
            let agreement = match digest {
                None => DigestAgreement::Unknown,
                Some(d) if d == local => DigestAgreement::Same,
                Some(_) => DigestAgreement::Different,
            };
            (s.name.as_str(), digest, agreement)
        })
        .collect()
}

#[cfg(test)]
#[path = "digest_tests.rs"]
mod tests;
