//! What a reload of the fleet file changes, as pure functions of the old and new fleets:
//! the [`FleetChange`] summary (and whether the poller must be restarted), and
//! [`carry_view`], the view of the other sites carried over to the new fleet.
//!
//! The rule for the view: every report stays with its site. A site that stays in the
//! fleet keeps its latest poll (with its request time, so the freshness and
//! "requested after the intent" rules of `docs/guard.md` apply to it unchanged), whatever
//! its new rank or status URL; a site that leaves is forgotten; a new site starts
//! unpolled, which counts as not announcing until its first report. A reload therefore
//! never makes the guard forget a fresh report, and never invents one.

use super::digest::fleet_digest;
use super::fleet::Fleet;
use super::poller::PollerConfig;
use super::view::FleetView;

/// The difference between the fleet in force and the one a reload brings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetChange {
    /// Digest of the fleet in force.
    pub old_digest: String,
    /// Digest of the new fleet.
    pub new_digest: String,
    /// This site's name changes (`[fleet] site` in the site config).
    pub renamed: Option<(String, String)>,
    /// Other sites new in the fleet.
    pub sites_added: Vec<String>,
    /// Other sites no longer in the fleet.
    pub sites_removed: Vec<String>,
    /// Other sites that stay but with another status or report URL.
    pub urls_changed: Vec<String>,
    /// The order of the sites (hold ranks) changed.
    pub reordered: bool,
    /// `[poll]` timing changed.
    pub poll_changed: bool,
    /// Per service whose `min_sites` changed: name, old, new (1 for an unlisted service).
    pub min_sites_changed: Vec<(String, usize, usize)>,
    /// The poller must be restarted: other targets, URLs or timing, or other ranks (the
    /// ranks live in the view the poller owns). Otherwise it keeps running untouched.
    pub restarts_poller: bool,
}

impl FleetChange {
    /// The change from `old` (with this site named `old_site`) to `new` (`new_site`).
    pub fn between(old: &Fleet, old_site: &str, new: &Fleet, new_site: &str) -> Self {
        let others = |f: &'_ Fleet, local: &str| -> Vec<(String, String)> {
            f.sites
                .iter()
                .filter(|s| s.name != local)
                // Either URL: the report URL is where the poller goes.
                .map(|s| (s.name.clone(), format!("{} {}", s.status_url, s.report_url)))
                .collect()
        };
        let (before, after) = (others(old, old_site), others(new, new_site));
        let has = |list: &[(String, String)], name: &str| list.iter().any(|(n, _)| n == name);
        let sites_added = after
            .iter()
            .filter(|(n, _)| !has(&before, n))
            .map(|(n, _)| n.clone())
            .collect();
        let sites_removed = before
            .iter()
            .filter(|(n, _)| !has(&after, n))
            .map(|(n, _)| n.clone())
            .collect();
        let urls_changed = after
            .iter()
            .filter(|(n, url)| before.iter().any(|(m, old)| m == n && old != url))
            .map(|(n, _)| n.clone())
            .collect();
        let rank_order = |f: &Fleet| -> Vec<String> {
            let mut names: Vec<String> = f.sites.iter().map(|s| s.name.clone()).collect();
            names.retain(|n| old.site(n).is_some() && new.site(n).is_some());
            names
        };
        let mut services: Vec<&str> = old.services.iter().map(|s| s.name.as_str()).collect();
        for s in &new.services {
            if !services.contains(&s.name.as_str()) {
                services.push(&s.name);
            }
        }
        let min_sites_changed = services
            .into_iter()
            .filter_map(|s| {
                let (a, b) = (old.min_sites(s), new.min_sites(s));
                (a != b).then(|| (s.to_owned(), a, b))
            })
            .collect();
        let skeleton = |f: &Fleet, local: &str| {
            let view = f.view_for(local);
            let ranks: Vec<(String, usize)> =
                view.sites.into_iter().map(|s| (s.name, s.rank)).collect();
            (PollerConfig::from_fleet(f, local), ranks)
        };
        let restarts_poller = skeleton(old, old_site) != skeleton(new, new_site);
        FleetChange {
            restarts_poller,
            old_digest: fleet_digest(old),
            new_digest: fleet_digest(new),
            renamed: (old_site != new_site).then(|| (old_site.to_owned(), new_site.to_owned())),
            sites_added,
            sites_removed,
            urls_changed,
            reordered: rank_order(old) != rank_order(new),
            poll_changed: old.poll != new.poll,
            min_sites_changed,
        }
    }

    /// Nothing the guard acts on changed.
    pub fn is_empty(&self) -> bool {
        self.old_digest == self.new_digest && self.renamed.is_none()
    }

    /// One line for the reload message and the log.
    pub fn describe(&self) -> String {
        if self.is_empty() {
            return format!("fleet unchanged ({})", short(&self.new_digest));
        }
        let mut parts = Vec::new();
        if let Some((a, b)) = &self.renamed {
            parts.push(format!("this site renamed {a} → {b}"));
        }
        if !self.sites_added.is_empty() {
            parts.push(format!("sites added {}", self.sites_added.join(", ")));
        }
        if !self.sites_removed.is_empty() {
            parts.push(format!("sites removed {}", self.sites_removed.join(", ")));
        }
        if !self.urls_changed.is_empty() {
            parts.push(format!(
                "status or report URL of {}",
                self.urls_changed.join(", ")
            ));
        }
        if self.reordered {
            parts.push("site order (hold ranks)".to_owned());
        }
        if self.poll_changed {
            parts.push("poll timing".to_owned());
        }
        for (s, a, b) in &self.min_sites_changed {
            parts.push(format!("{s} min_sites {a} → {b}"));
        }
        if parts.is_empty() {
            parts.push("declared prefixes".to_owned());
        }
        format!(
            "fleet {} → {}: {}",
            short(&self.old_digest),
            short(&self.new_digest),
            parts.join("; ")
        )
    }
}

/// The first 12 hex digits of a digest, for humans.
pub fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

/// The view of the other sites for `new` (this site named `local`), keeping the latest
/// poll of every site that stays (see the module doc).
pub fn carry_view(old: &FleetView, new: &Fleet, local: &str) -> FleetView {
    let mut view = new.view_for(local);
    for entry in &mut view.sites {
        if let Some(before) = old.site(&entry.name) {
            entry.last_poll.clone_from(&before.last_poll);
        }
    }
    view
}

#[cfg(test)]
#[path = "fleet_change_tests.rs"]
mod tests;
