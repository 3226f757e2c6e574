//! Reloading the fleet file with the site config (`SIGHUP`, `POST /reload`), and the fleet
//! part of `/status`.
//!
//! [`read`] reads (off the coordinator loop) and [`prepare`] validates the fleet file the
//! *candidate* config names, before anything is applied: every error (`file:line:column: key: message`) rejects the whole
//! reload, and the candidate is then checked by `check_reload` against the new fleet and
//! the view carried over to it ([`carry_view`]). [`apply`] (only once the whole reload is
//! accepted) hands the new fleet to the running guard: the per-service intents stay as
//! they are (a pending withdrawal stays pending, a held service stays held, both now judged
//! with the new `min_sites` and timing), the poller is restarted only when its targets,
//! timing or the ranks change, and every report of a site that stays is kept.
//!
//! A candidate without `[fleet]` while a guard runs is refused: it would turn the guard
//! off by a config push, the very failure the guard exists to stop. Turning the guard off
//! takes a restart. Adding `[fleet]` by reload starts the guard (the safe direction), and
//! another `[fleet] path` or `site` is accepted when the new fleet lists the site.

use super::{FleetGuard, FleetGuardError};
use crate::config::Config;
use crate::guard::digest::{digest_agreement, fleet_digest, DigestAgreement};
use crate::guard::fleet::Fleet;
use crate::guard::fleet_change::{carry_view, short, FleetChange};
use crate::guard::view::{auth_status, FleetView};
use crate::status::model::{FleetSiteStatus, FleetStatus};

/// The message a reload that drops `[fleet]` is refused with.
pub(crate) const FLEET_REMOVAL_REFUSED: &str = "[fleet] cannot be removed by reload: that would \
     turn the all-sites guard off while services are announced; restart the daemon with the \
     new config to run without the guard";

/// A validated fleet for a candidate config, with the view it would start from.
#[derive(Debug)]
pub(crate) struct PreparedFleet {
    /// The new fleet.
    pub(crate) fleet: Fleet,
    /// This site's name in it.
    pub(crate) site: String,
    /// This site's rank in it.
    pub(crate) rank: usize,
    /// The current view carried over to the new fleet (what `check_reload` judges with).
    pub(crate) view: FleetView,
}

/// Reads and validates the fleet file `candidate` names. `Ok(None)`: no fleet, and none
/// running. Every problem is one entry of the error.
/// `read`: the fleet file `candidate` names, as [`read`] gave it.
pub(crate) fn prepare(
    guard: Option<&FleetGuard>,
    candidate: &Config,
    read: Option<Result<Fleet, Vec<String>>>,
) -> Result<Option<PreparedFleet>, Vec<String>> {
    let Some(fleet_ref) = &candidate.fleet else {
        return match guard {
            Some(_) => Err(vec![FLEET_REMOVAL_REFUSED.to_owned()]),
            None => Ok(None),
        };
    };
    let Some(fleet) = read else {
        return Err(vec![format!("{}: not read", fleet_ref.path.display())]);
    };
    let fleet = fleet?;
    let Some(rank) = fleet.rank(&fleet_ref.site) else {
        let known: Vec<&str> = fleet.sites.iter().map(|s| s.name.as_str()).collect();
        let unknown = FleetGuardError::UnknownSite {
            site: fleet_ref.site.clone(),
            fleet: fleet.source.clone(),
        };
        return Err(vec![format!("{unknown} (sites: {})", known.join(", "))]);
    };
    let current = guard.map(FleetGuard::view).unwrap_or_default();
    let view = carry_view(&current, &fleet, &fleet_ref.site);
    Ok(Some(PreparedFleet {
        fleet,
        site: fleet_ref.site.clone(),
        rank,
        view,
    }))
}

/// Reads the fleet file `candidate` names (`None`: it names none), every problem one entry
/// of the error. It blocks on the file: a reload runs it off the coordinator loop, with
/// the config's own read (`config_read`).
pub(crate) fn read(candidate: &Config) -> Option<Result<Fleet, Vec<String>>> {
    let fleet_ref = candidate.fleet.as_ref()?;
    Some(Fleet::load(&fleet_ref.path).map_err(|e| e.0.iter().map(ToString::to_string).collect()))
}

/// Puts an accepted reload's fleet in force; returns what changed, for the reload message.
pub(crate) fn apply(guard: &mut Option<FleetGuard>, next: Option<PreparedFleet>) -> Option<String> {
    let next = next?;
    match guard {
        Some(g) => {
            let change = g.reconfigure(next);
            if !change.is_empty() {
                tracing::warn!(fleet = %g.fleet().source, change = %change.describe(), "fleet file reloaded");
            }
            Some(change.describe())
        }
        None => {
            let digest = fleet_digest(&next.fleet);
            let text = format!(
                "all-sites guard started: site {} of fleet {} ({})",
                next.site,
                next.fleet.source,
                short(&digest)
            );
            tracing::warn!("{text}");
            *guard = Some(FleetGuard::launch(next.fleet, next.site, next.rank));
            Some(text)
        }
    }
}

impl FleetGuard {
    /// Puts `next` in force (see the module doc): intents and decisions stay, the poller
    /// restarts only when it must, with the latest view carried over.
    pub(crate) fn reconfigure(&mut self, next: PreparedFleet) -> FleetChange {
        let mut change = FleetChange::between(&self.fleet, &self.site, &next.fleet, &next.site);
        // Another backend, or other etcd settings: the backend starts again too.
        change.restarts_poller |= self.fleet.backend != next.fleet.backend;
        let digest = fleet_digest(&next.fleet);
        if change.restarts_poller {
            // Its polls in flight are dropped with it; the view below is the latest
            // recorded one, so at most a poll that was about to land is lost, and the new
            // poller polls every site at once.
            let view = carry_view(&self.backend.view(), &next.fleet, &next.site);
            self.backend.restart(&next.fleet, &next.site, &digest, view);
        }
        self.digest = digest;
        self.fleet = next.fleet;
        self.site = next.site;
        self.rank = next.rank;
        // Another fleet (min_sites, sites, digest): every service is decided and the
        // report built again.
        self.view_dirty = true;
        self.report_inputs = None;
        change
    }

    /// The `"fleet"` part of `/status`; logs when the set of sites running another fleet
    /// file changes.
    pub(crate) fn fleet_status(&mut self) -> FleetStatus {
        let status = self.fleet_status_now();
        if status.mismatch != self.mismatch_logged {
            if status.mismatch.is_empty() {
                tracing::info!(digest = %short(&status.digest), "every reachable site runs the same fleet file again");
            } else {
                let theirs: Vec<String> = status
                    .sites
                    .iter()
                    .filter(|s| status.mismatch.contains(&s.name))
                    .map(|s| format!("{} {}", s.name, short(s.digest.as_deref().unwrap_or("?"))))
                    .collect();
                tracing::warn!(
                    digest = %short(&status.digest),
                    sites = %theirs.join(", "),
                    "sites run a different fleet file"
                );
            }
            self.mismatch_logged.clone_from(&status.mismatch);
        }
        status
    }

    fn fleet_status_now(&self) -> FleetStatus {
        let view = self.backend.view();
        let millis = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let sites: Vec<FleetSiteStatus> = view
            .sites
            .iter()
            .zip(digest_agreement(&view, &self.digest))
            .map(|(s, (_, digest, agreement))| FleetSiteStatus {
                name: s.name.clone(),
                rank: s.rank,
                status_url: self
                    .fleet
                    .site(&s.name)
                    .map(|f| f.status_url.to_string())
                    .unwrap_or_default(),
                report_url: self
                    .fleet
                    .site(&s.name)
                    .map(|f| f.report_url.to_string())
                    .unwrap_or_default(),
                digest: digest.map(str::to_owned),
                fleet: agreement.as_str().to_owned(),
                last_poll: s.last_poll_text(),
                poll_failures: s.failure_counts(),
            })
            .collect();
        let (auth, warning) = auth_status(&self.fleet);
        FleetStatus {
            source: self.fleet.source.clone(),
            digest: self.digest.clone(),
            poll_interval_ms: millis(self.fleet.poll.interval),
            poll_timeout_ms: millis(self.fleet.poll.timeout),
            auth,
            warning,
            mismatch: sites
                .iter()
                .filter(|s| s.fleet == DigestAgreement::Different.as_str())
                .map(|s| s.name.clone())
                .collect(),
            sites,
            backend: self.backend.name().to_owned(),
            store: self.backend.store_status(std::time::Instant::now()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::coordinator::fleet_guard::ServiceGuard;
    use crate::guard::runtime::{Decision, LocalIntent};
    use crate::guard::view::PollOutcome;
    use crate::status::model::GuardStatus;
    use tokio::sync::watch;

    fn fleet(sites: &[(&str, u16)], min_sites: usize) -> Fleet {
        let mut t = String::from("[poll]\ninterval = \"1s\"\ntimeout = \"500ms\"\n");
        for (name, port) in sites {
            // Closed loopback ports: the poller's requests fail at once.
            t.push_str(&format!(
                "[[site]]\nname = \"{name}\"\nstatus_url = \"http://127.0.0.1:{port}/status\"\n"
            ));
        }
        t.push_str(&format!(
            "[[service]]\nname = \"web\"\nmin_sites = {min_sites}\n"
        ));
        Fleet::parse(&t, "fleet.toml").unwrap()
    }

    fn prepared(fleet: Fleet, site: &str) -> PreparedFleet {
        PreparedFleet {
            rank: fleet.rank(site).unwrap(),
            view: fleet.view_for(site),
            site: site.to_owned(),
            fleet,
        }
    }

    #[tokio::test]
    async fn a_fleet_reload_keeps_pending_and_held_intents_and_the_reports_of_sites_that_stay() {
        let old = fleet(&[("a", 1), ("b", 2), ("c", 3)], 1);
        let mut guard = FleetGuard::launch(old.clone(), "a".into(), 0);
        let t0 = Instant::now();
        let entry = |intent| ServiceGuard {
            intent,
            decision: Decision::Announce,
            status: GuardStatus::default(),
            held_logged: None,
        };
        guard.state.insert(
            "web".into(),
            entry(LocalIntent::Withdrawing { published_at: t0 }),
        );
        guard
            .state
            .insert("dns".into(), entry(LocalIntent::Held { since: t0 }));
        // A fresh report of b, as if polled just now (the poller's own polls of closed
        // ports may land too; only b's newest poll matters).
        let report = crate::guard::report::SiteReport {
            version: crate::guard::report::REPORT_VERSION,
            site: "b".into(),
            generation: 1,
            fleet_digest: Some(fleet_digest(&old)),
            services: Vec::new(),
        };
        let mut view = guard.view();
        view.record(
            "b",
            PollOutcome {
                requested_at: Instant::now() + std::time::Duration::from_secs(3600),
                result: Ok(report),
            },
            Instant::now() + std::time::Duration::from_secs(3600),
        );
        // Stands in for the poller having recorded it.
        let (tx, rx) = watch::channel(view);
        guard.backend.replace_view(rx);

        // c leaves, d joins, b moves to the front, min_sites 2: the poller restarts.
        let new = fleet(&[("b", 2), ("a", 1), ("d", 4)], 2);
        let change = guard.reconfigure(prepared(new.clone(), "a"));
        drop(tx);
        assert!(change.restarts_poller);
        assert_eq!(guard.rank, 1);
        assert_eq!(guard.digest, fleet_digest(&new));
        assert_eq!(guard.fleet().min_sites("web"), 2);
        assert_eq!(
            guard.state.get("web").map(|s| s.intent),
            Some(LocalIntent::Withdrawing { published_at: t0 }),
            "a pending withdrawal stays pending (now judged with min_sites 2)"
        );
        assert_eq!(
            guard.state.get("dns").map(|s| s.intent),
            Some(LocalIntent::Held { since: t0 })
        );
        let view = guard.view();
        let names: Vec<(&str, usize)> = view
            .sites
            .iter()
            .map(|s| (s.name.as_str(), s.rank))
            .collect();
        assert_eq!(names, [("b", 0), ("d", 2)]);
        assert!(
            view.site("b")
                .and_then(|s| s.last_poll.as_ref())
                .is_some_and(|p| p.result.is_ok()),
            "b's report is kept: {view:?}"
        );
        let status = guard.fleet_status();
        assert_eq!(status.mismatch, ["b"], "b still publishes the old digest");
        guard.stop().await;
    }
}
