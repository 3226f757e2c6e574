//! The coordinator's side of the all-sites guard: runs the poller, asks
//! [`guard::runtime::decide`] about every service before each evaluation, publishes this
//! site's [`SiteReport`] and advances the local intent only once that report is visible
//! (the ordering the race argument of `docs/guard.md` relies on).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use ipnet::IpNet;

use super::core::Core;
use crate::announcer::{Presentation, RibOut};
use crate::config::Config;
use crate::guard::backend::FleetBackend;
use crate::guard::digest::fleet_digest;
use crate::guard::fleet::Fleet;
use crate::guard::report::{ServiceReport, SiteReport, REPORT_VERSION};
use crate::guard::runtime::{held_log_due, Decision, Drain, GuardInput, LocalIntent, LocalService};
use crate::guard::view::FleetView;
use crate::service::{DrainSource, Health};
use crate::status::model::{GuardStatus, PendingRemovalStatus};

/// The guard for one site, while a fleet is configured.
pub(crate) struct FleetGuard {
    fleet: Fleet,
    site: String,
    rank: usize,
    /// The poll mesh or etcd (`guard::backend`): the view of the other sites and the
    /// decisions.
    backend: FleetBackend,
    /// Per service name: intent in force, last decision and its status entry.
    state: HashMap<String, ServiceGuard>,
    /// Per pending removal (`PendingRemoval::key`): the same, for the routes a reload
    /// took away.
    removals: HashMap<String, ServiceGuard>,
    generation: u64,
    last_report: Option<Arc<SiteReport>>,
    /// What `last_report` was built from ([`ReportInputs`]): the same inputs give the
    /// same report, shared instead of rebuilt after every probe result (issue 13).
    report_inputs: Option<ReportInputs>,
    /// Bumped whenever a decision changed (services or pending removals).
    decisions: u64,
    /// [`fleet_digest`] of `fleet`, published in every report.
    digest: String,
    /// The sites last seen running another fleet file (logged when it changes).
    mismatch_logged: Vec<String>,
    /// The view changed since [`FleetGuard::decide_all`] last decided for every service
    /// (or it never did): it decides for every service once more.
    view_dirty: bool,
    /// The config the service entries of `state` were last pruned for.
    pruned_for: Option<Arc<Config>>,
    /// The services (indices into `pruned_for`'s services) whose decision is anything
    /// but "announce" with no intent: decided for at every turn, since their decision may
    /// move with time or with the local intent. The others are decided for only when
    /// their inputs changed ([`Core::take_guard_dirty`]) or the view did.
    unsteady: BTreeSet<usize>,
}

/// Everything [`FleetGuard::report`] reads, by version or by identity (the `Arc`s are
/// held, so that an address cannot be reused by another value meanwhile).
struct ReportInputs {
    core: (u64, u64),
    config: Arc<Config>,
    desired: Arc<RibOut>,
    on_the_wire: Vec<Arc<RibOut>>,
    decisions: u64,
}

impl ReportInputs {
    fn same(&self, other: &ReportInputs) -> bool {
        self.core == other.core
            && self.decisions == other.decisions
            && Arc::ptr_eq(&self.config, &other.config)
            && Arc::ptr_eq(&self.desired, &other.desired)
            && self.on_the_wire.len() == other.on_the_wire.len()
            && self
                .on_the_wire
                .iter()
                .zip(&other.on_the_wire)
                .all(|(a, b)| Arc::ptr_eq(a, b))
    }
}

struct ServiceGuard {
    intent: LocalIntent,
    decision: Decision,
    status: GuardStatus,
    held_logged: Option<Instant>,
}

impl ServiceGuard {
    fn new(intent: LocalIntent) -> Self {
        ServiceGuard {
            intent,
            decision: Decision::Announce,
            status: GuardStatus::default(),
            held_logged: None,
        }
    }

    /// Records `decision`; a hold is logged through `log_hold` (given its reason) when it
    /// starts and then at most once per `held_log_due` interval, so that a withdrawal held
    /// for hours is not one line per probe result. A hold that only waits for the
    /// hand-over goes through `log_hand_over` instead, and a hold that turns from one kind
    /// to the other is logged again at once. True when the decision changed.
    fn record(
        &mut self,
        decision: Decision,
        now: Instant,
        log_hold: impl FnOnce(&str),
        log_hand_over: impl FnOnce(&str),
    ) -> bool {
        if let Decision::Hold {
            reason,
            hand_over_until,
        } = &decision
        {
            let kind_changed = matches!(&self.decision, Decision::Hold { hand_over_until: before, .. } if before.is_some() != hand_over_until.is_some());
            if kind_changed || held_log_due(self.held_logged, now) {
                if hand_over_until.is_some() {
                    log_hand_over(reason);
                } else {
                    log_hold(reason);
                }
                self.held_logged = Some(now);
            }
        } else {
            self.held_logged = None;
        }
        let changed = self.decision != decision;
        self.decision = decision;
        changed
    }
}

/// Loading the fleet failed.
#[derive(Debug, thiserror::Error)]
pub enum FleetGuardError {
    /// The fleet file is invalid.
    #[error("{0}")]
    Fleet(String),
    /// This site is not in the fleet.
    #[error("site {site:?} is not listed in the fleet {fleet}")]
    UnknownSite {
        /// Site name from the config.
        site: String,
        /// Fleet file.
        fleet: String,
    },
}

/// Whether every one of `prefixes` is on the wire as desired now: in `desired` (so its
/// service addresses are in place: `Core::desired` leaves a service out until they are)
/// and, with the same attributes, in the Adj-RIB-Out of at least one established session
/// that confirmed writing it. With every session down, or before the first UPDATE is
/// written, nothing is. A prefix a session cannot carry (no peer of its family) is not
/// on the wire either: the site does not announce it, whatever its config says.
fn announced_on_the_wire(
    prefixes: &[IpNet],
    desired: &RibOut,
    on_the_wire: &[Arc<RibOut>],
) -> bool {
    prefixes.iter().all(|p| {
        desired
            .get(p)
            .is_some_and(|want| on_the_wire.iter().any(|sent| sent.get(p) == Some(want)))
    })
}

/// `[fleet] hand_over` of `config` (the default without `[fleet]`, which has no guard).
fn hand_over(config: &Config) -> std::time::Duration {
    config
        .fleet
        .as_ref()
        .map_or(crate::guard::hand_over::DEFAULT_HAND_OVER, |f| f.hand_over)
}

/// The daemon is stopping through the guard: whatever it decides, this site's routes
/// will at best be kept as stale by graceful restart for the restart time, so no other
/// site may count on it any more (a sick site that withdrew on its word would leave the
/// fleet short if this one does not come back). Its report says not announcing.
fn stopping(core: &Core, i: usize) -> bool {
    matches!(core.drain_source(i), Some(DrainSource::Stop))
}

/// The local facts the guard decides on for service `i`.
fn local_service(core: &Core, i: usize, drain: Drain, intent: LocalIntent) -> LocalService {
    LocalService {
        // Unknown health (checks a reload added, still rising) is no failure: the service
        // machine keeps an announced service announced meanwhile, so the guard must not
        // publish an intent to withdraw it, nor hold it, on no evidence.
        healthy: core.health(i) != Health::Down && drain == Drain::None,
        drain,
        announcing: core.presentation(i) == Presentation::Normal,
        intent,
    }
}

impl FleetGuard {
    /// Loads the fleet named by the config and starts polling the other sites.
    pub(crate) fn start(config: &Config) -> Result<Option<Self>, FleetGuardError> {
        let Some(fleet_ref) = &config.fleet else {
            return Ok(None);
        };
        let fleet =
            Fleet::load(&fleet_ref.path).map_err(|e| FleetGuardError::Fleet(e.to_string()))?;
        let rank = fleet
            .rank(&fleet_ref.site)
            .ok_or_else(|| FleetGuardError::UnknownSite {
                site: fleet_ref.site.clone(),
                fleet: fleet.source.clone(),
            })?;
        Ok(Some(Self::launch(fleet, fleet_ref.site.clone(), rank)))
    }

    /// Starts polling the other sites of `fleet` for this site, `site` at `rank`.
    pub(crate) fn launch(fleet: Fleet, site: String, rank: usize) -> Self {
        let digest = fleet_digest(&fleet);
        let backend = FleetBackend::start(&fleet, &site, &digest, fleet.view_for(&site));
        tracing::info!(backend = backend.name(), site = %site, "all-sites guard: fleet backend started");
        FleetGuard {
            digest,
            fleet,
            site,
            rank,
            backend,
            state: HashMap::new(),
            removals: HashMap::new(),
            generation: 0,
            last_report: None,
            report_inputs: None,
            decisions: 0,
            mismatch_logged: Vec::new(),
            view_dirty: true,
            pruned_for: None,
            unsteady: BTreeSet::new(),
        }
    }

    /// The fleet in force.
    pub(crate) fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    /// The latest view of the other sites.
    pub(crate) fn view(&self) -> FleetView {
        self.backend.view()
    }

    /// Resolves when the view of the other sites changed.
    pub(crate) async fn view_changed(&mut self) {
        self.backend.changed().await;
        self.view_dirty = true;
    }

    /// Decides for every service whose decision may have changed and hands the verdicts
    /// to the core (before it evaluates). After a change of the view or of the config
    /// every service is decided; otherwise only those whose inputs changed
    /// ([`Core::take_guard_dirty`]) and those whose decision is anything but "announce"
    /// with no intent (`unsteady`): a healthy undrained service is announced whatever the
    /// time (`runtime::decide`), every other decision may move with time or with the
    /// local intent. No step walks every service after a probe result (issue 13).
    pub(crate) fn decide_all(&mut self, core: &mut Core, now: Instant) {
        let mut all = std::mem::take(&mut self.view_dirty) || self.backend.has_changed();
        let view = self.backend.take_view();
        let config = Arc::clone(core.config());
        if self
            .pruned_for
            .as_ref()
            .is_none_or(|c| !Arc::ptr_eq(c, &config))
        {
            let names: std::collections::HashSet<&str> =
                config.services.iter().map(|s| s.name.as_str()).collect();
            self.state.retain(|name, _| names.contains(name.as_str()));
            self.pruned_for = Some(Arc::clone(&config));
            // The indices are the new config's.
            self.unsteady.clear();
            all = true;
        }
        let dirty = core.take_guard_dirty();
        let which: Vec<usize> = if all {
            (0..config.services.len()).collect()
        } else {
            let mut which: Vec<usize> = self.unsteady.iter().copied().collect();
            which.extend(dirty);
            which.sort_unstable();
            which.dedup();
            which
        };
        for i in which {
            self.decide_one(core, &config, &view, i, now);
        }
        self.decide_removals(core, &view, now);
    }

    /// Decides for service `i` of `config` and records whether its decision is steady.
    fn decide_one(
        &mut self,
        core: &mut Core,
        config: &Config,
        view: &FleetView,
        i: usize,
        now: Instant,
    ) {
        let Some(svc) = config.services.get(i) else {
            return;
        };
        let (name, prefixes) = (&svc.name, &svc.prefixes);
        let drain = match core.drain_source(i) {
            None => Drain::None,
            Some(DrainSource::Operator { force: true, .. } | DrainSource::Shutdown) => {
                Drain::Forced
            }
            Some(DrainSource::Stop) => Drain::Stopping,
            Some(
                DrainSource::File
                | DrainSource::Disabled
                | DrainSource::Operator { force: false, .. },
            ) => Drain::Requested,
        };
        let intent = self.state.get(name).map_or(LocalIntent::None, |s| s.intent);
        let input = GuardInput {
            service: name,
            prefixes,
            min_sites: self.fleet.min_sites(name),
            local_site: &self.site,
            local_rank: self.rank,
            local: local_service(core, i, drain, intent),
            view,
            timing: self.fleet.timing(hand_over(config)),
        };
        let decision = self.backend.decide(&input, now);
        let status = self.backend.guard_status(&input, &decision, now);
        core.set_guard(i, decision.verdict());
        if matches!(intent, LocalIntent::None) && matches!(decision, Decision::Announce) {
            self.unsteady.remove(&i);
        } else {
            self.unsteady.insert(i);
        }
        let entry = self
            .state
            .entry(name.clone())
            .or_insert_with(|| ServiceGuard::new(intent));
        if entry.record(
            decision,
            now,
            |reason| {
                tracing::warn!(service = %name, %reason, "ALL-SITES GUARD: withdrawal held; the service stays announced");
            },
            |reason| {
                tracing::info!(service = %name, %reason, "all-sites guard: withdrawal waits for the hand-over; the service stays announced until then");
            },
        ) {
            self.decisions += 1;
        }
        if entry.status != status {
            entry.status = status;
            core.touch_status(i);
        }
    }

    /// Decides for every pending removal of a reload: the same handshake as a health
    /// withdrawal, for the removal's own prefixes; a service retired in the fleet file
    /// goes at once. A removal allowed to go leaves the core here, before the core
    /// evaluates, so the report published next no longer lists it.
    fn decide_removals(&mut self, core: &mut Core, view: &FleetView, now: Instant) {
        let timing = self.fleet.timing(hand_over(core.config()));
        let pending: Vec<(String, String, Vec<IpNet>)> = core
            .pending_removals()
            .iter()
            .map(|r| (r.key(), r.service.clone(), r.prefixes()))
            .collect();
        self.removals
            .retain(|key, _| pending.iter().any(|(k, _, _)| k == key));
        for (key, service, prefixes) in pending {
            let intent = self
                .removals
                .get(&key)
                .map_or(LocalIntent::None, |s| s.intent);
            let input = GuardInput {
                service: &service,
                prefixes: &prefixes,
                min_sites: self.fleet.min_sites(&service),
                local_site: &self.site,
                local_rank: self.rank,
                local: LocalService {
                    healthy: false,
                    drain: Drain::Removed,
                    // Kept in the desired routes until the decision below lets it go.
                    announcing: true,
                    intent,
                },
                view,
                timing,
            };
            let decision = if self.fleet.retired(&service) {
                Decision::Withdraw {
                    reason: format!(
                        "removed from the config; {service} is retired in the fleet file {}: withdrawn without the guard",
                        self.fleet.source
                    ),
                    forced: true,
                }
            } else {
                self.backend.decide(&input, now)
            };
            if let Decision::Withdraw { reason, .. } = &decision {
                tracing::info!(service = %service, prefixes = %key, %reason, "pending removal done: withdrawing the routes the reload removed");
                core.complete_removal(&key);
                self.removals.remove(&key);
                continue;
            }
            let status = self.backend.guard_status(&input, &decision, now);
            let entry = self
                .removals
                .entry(key.clone())
                .or_insert_with(|| ServiceGuard::new(intent));
            if entry.record(
                decision,
                now,
                |reason| {
                    tracing::warn!(service = %service, prefixes = %key, %reason, "ALL-SITES GUARD: removal by reload held; the routes stay announced until enough other sites announce them (or retire the service in the fleet file)");
                },
                |reason| {
                    tracing::info!(service = %service, prefixes = %key, %reason, "all-sites guard: removal by reload waits for the hand-over; the routes stay announced until then");
                },
            ) {
                self.decisions += 1;
            }
            entry.status = status;
        }
    }

    /// The status document's `pending_removals`.
    pub(crate) fn removal_status(&self, core: &Core) -> Vec<PendingRemovalStatus> {
        core.pending_removals()
            .iter()
            .map(|r| {
                let status = self.removals.get(&r.key()).map(|s| &s.status);
                PendingRemovalStatus {
                    service: r.service.clone(),
                    prefixes: r.prefixes(),
                    decision: status.map_or_else(|| "pending".to_string(), |s| s.decision.clone()),
                    reason: status
                        .map_or_else(|| "not evaluated yet".to_string(), |s| s.reason.clone()),
                    intent: status.map_or_else(|| "none".to_string(), |s| s.intent.clone()),
                    sites_announcing: status
                        .map(|s| s.sites_announcing.clone())
                        .unwrap_or_default(),
                    min_sites: u32::try_from(self.fleet.min_sites(&r.service)).unwrap_or(u32::MAX),
                    since: super::core::rfc3339(r.since),
                }
            })
            .collect()
    }

    /// This site's report after the core evaluated (the status document carries it).
    /// `desired` is the Adj-RIB-Out published to the peers, `on_the_wire` what each
    /// established session confirmed its Adj-RIB-Out holds (see [`announced_on_the_wire`]).
    pub(crate) fn report(
        &mut self,
        core: &Core,
        desired: &Arc<RibOut>,
        on_the_wire: &[Arc<RibOut>],
    ) -> Arc<SiteReport> {
        let inputs = ReportInputs {
            core: (core.epoch(), core.routes_version()),
            config: Arc::clone(core.config()),
            desired: Arc::clone(desired),
            on_the_wire: on_the_wire.to_vec(),
            decisions: self.decisions,
        };
        if let (Some(last), Some(seen)) = (&self.last_report, &self.report_inputs) {
            if seen.same(&inputs) {
                return Arc::clone(last);
            }
        }
        let config = core.config();
        // A prefix pending removal is reported in the removal's own entry only: the
        // service's entry must not make other sites count this site for it.
        let pending: Vec<IpNet> = core
            .pending_removals()
            .iter()
            .flat_map(|r| r.prefixes())
            .collect();
        let services = config
            .services
            .iter()
            .enumerate()
            .map(|(i, svc)| {
                let decision = self.state.get(&svc.name).map(|s| &s.decision);
                let prefixes: Vec<IpNet> = svc
                    .prefixes
                    .iter()
                    .filter(|p| !pending.contains(p))
                    .copied()
                    .collect();
                ServiceReport {
                    name: svc.name.clone(),
                    healthy: core.health(i) == Health::Up && core.drain_source(i).is_none(),
                    // Normal presentation only: hold-down, graceful shutdown and
                    // de-preference do not count as announcing for the other sites. And
                    // only what a session really carries (issue 11 item 2): other sites
                    // withdraw on this word.
                    announcing: core.presentation(i) == Presentation::Normal
                        && decision.is_none_or(Decision::announces)
                        && (svc.prefixes.is_empty() || !prefixes.is_empty())
                        && announced_on_the_wire(&prefixes, desired, on_the_wire)
                        && !stopping(core, i),
                    prefixes,
                    intent: decision.map_or(crate::guard::report::Intent::None, Decision::intent),
                }
            })
            .chain(core.pending_removals().iter().map(|r| {
                let decision = self.removals.get(&r.key()).map(|s| &s.decision);
                let prefixes = r.prefixes();
                ServiceReport {
                    name: r.service.clone(),
                    // Still announced (a removal the guard let go has left the core), as
                    // far as a session really carries it.
                    announcing: decision.is_none_or(Decision::announces)
                        && announced_on_the_wire(&prefixes, desired, on_the_wire),
                    prefixes,
                    healthy: false,
                    intent: decision.map_or(crate::guard::report::Intent::None, Decision::intent),
                }
            }))
            .collect();
        let mut report = SiteReport {
            version: REPORT_VERSION,
            site: self.site.clone(),
            generation: self.generation,
            fleet_digest: Some(self.digest.clone()),
            services,
        };
        let changed = self
            .last_report
            .as_ref()
            .is_none_or(|r| r.services != report.services || r.fleet_digest != report.fleet_digest);
        if changed {
            self.generation += 1;
            report.generation = self.generation;
        }
        let report = Arc::new(report);
        self.last_report = Some(Arc::clone(&report));
        self.report_inputs = Some(inputs);
        report
    }

    /// Call once the report is visible on the status endpoint: moves each service's
    /// intent forward, and asks for an immediate poll when an intent was just published.
    /// Only the services with an unsteady decision can move (a steady one stays without
    /// intent), so only those are looked at.
    pub(crate) fn published(&mut self, visible_at: Instant) {
        let mut newly_withdrawing = false;
        let mut advance = |s: &mut ServiceGuard| {
            let next = s.intent.advance(&s.decision, visible_at);
            if matches!(next, LocalIntent::Withdrawing { .. })
                && !matches!(s.intent, LocalIntent::Withdrawing { .. })
            {
                newly_withdrawing = true;
            }
            s.intent = next;
        };
        if let Some(config) = &self.pruned_for {
            for &i in &self.unsteady {
                if let Some(s) = config
                    .services
                    .get(i)
                    .and_then(|svc| self.state.get_mut(&svc.name))
                {
                    advance(s);
                }
            }
        }
        for s in self.removals.values_mut() {
            advance(s);
        }
        self.backend
            .published(self.last_report.as_ref(), newly_withdrawing);
    }

    /// When the coordinator must decide again although nothing else happens: the end of
    /// the earliest hold that only waits for the hand-over ([`Decision::Hold`]'s
    /// `hand_over_until`; no report or record may arrive to re-decide it).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.state
            .values()
            .chain(self.removals.values())
            .filter_map(|s| s.decision.hand_over_until())
            .min()
    }

    /// The services whose withdrawal the guard holds right now (a final hold, not an
    /// intent still awaiting reports nor a hold that only waits for the hand-over: a stop
    /// waits for those to end and withdraws), with the reason: at a stop these stay
    /// announced.
    pub(crate) fn held(&self) -> Vec<(String, String)> {
        let mut held: Vec<(String, String)> = self
            .state
            .iter()
            .filter_map(|(name, s)| match &s.decision {
                Decision::Hold {
                    reason,
                    hand_over_until: None,
                } => Some((name.clone(), reason.clone())),
                _ => None,
            })
            // A held removal by reload keeps its routes through a stop too; its entry
            // names the removal (`web 203.0.113.0/24`).
            .chain(
                self.removals
                    .iter()
                    .filter_map(|(key, s)| match &s.decision {
                        Decision::Hold {
                            reason,
                            hand_over_until: None,
                        } => Some((key.clone(), reason.clone())),
                        _ => None,
                    }),
            )
            .collect();
        held.sort();
        held
    }

    /// The status entry of a service.
    pub(crate) fn status(&self, name: &str) -> GuardStatus {
        self.state
            .get(name)
            .map(|s| s.status.clone())
            .unwrap_or_else(|| GuardStatus {
                decision: "pending".to_string(),
                reason: "not evaluated yet".to_string(),
                intent: "none".to_string(),
                sites_announcing: Vec::new(),
                min_sites: u32::try_from(self.fleet.min_sites(name)).unwrap_or(u32::MAX),
            })
    }

    /// Stops the backend (the poller, or the etcd driver, which revokes its lease).
    pub(crate) async fn stop(self) {
        self.backend.stop().await;
    }
}

#[path = "fleet_reload.rs"]
mod reload;
pub(crate) use reload::{apply as apply_fleet, prepare as prepare_fleet, read as read_fleet};

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant, SystemTime};

    use super::*;
    use crate::config::testing::service_config;
    use crate::config::{CheckConfig, CheckKind, StatusConfig};
    use crate::guard::runtime::{decide, GuardTiming};
    use crate::guard::view::FleetView;
    use crate::health::{CheckEvent, CheckState, CheckStatus, ProbeOutcome};

    fn check(name: &str) -> CheckConfig {
        CheckConfig {
            name: name.into(),
            kind: CheckKind::Command {
                argv: vec![name.into()],
            },
            interval: Duration::from_secs(1),
            fast_interval: Duration::from_millis(250),
            timeout: Duration::from_millis(500),
            rise: 2,
            fall: 2,
        }
    }

    fn config(checks: &[&str]) -> Arc<Config> {
        Arc::new(Config {
            source: "<test>".into(),
            router_id: std::net::Ipv4Addr::new(198, 18, 0, 2),
            local_asn: 65010,
            status: StatusConfig {
                listen: std::net::SocketAddr::from(([127, 0, 0, 1], 9180)),
                token_file: None,
                fleet_listen: None,
            },
            peers: Vec::new(),
            services: vec![crate::config::ServiceConfig {
                checks: checks.iter().map(|c| check(c)).collect(),
                ..service_config("web", &["203.0.113.0/24"])
            }],
            fleet: None,
            bgp_listen: None,
            state_dir: None,
        })
    }

    #[test]
    fn a_check_added_by_reload_is_no_failure_for_the_guard_while_it_rises() {
        let (t0, w) = (Instant::now(), SystemTime::UNIX_EPOCH);
        let mut core = Core::new(config(&["a"]), t0, w);
        core.on_probe(
            &CheckEvent {
                service: 0,
                check: 0,
                outcome: ProbeOutcome {
                    ok: true,
                    latency: Duration::ZERO,
                    detail: String::new(),
                },
                state: CheckState {
                    status: CheckStatus::Up,
                    passes: 2,
                    failures: 0,
                    rise: 2,
                    fall: 2,
                },
                transition: None,
                start_delay: None,
                seq: crate::health::next_seq(),
            },
            w,
        );
        core.evaluate(t0, w);
        assert_eq!(core.presentation(0), Presentation::Normal);
        core.reconfigure(config(&["a", "b"]), t0, w);
        assert_eq!(core.health(0), Health::Unknown, "b has not risen yet");
        let local = local_service(&core, 0, Drain::None, LocalIntent::None);
        // Another site announcing, so a failing site would publish an intent to withdraw.
        let view = FleetView::unpolled([(1, "b")]);
        let input = GuardInput {
            service: "web",
            prefixes: &[],
            min_sites: 1,
            local_site: "a",
            local_rank: 0,
            local,
            view: &view,
            timing: GuardTiming {
                stale_after: Duration::from_secs(3),
                intent_wait: Duration::from_secs(3),
                hand_over: Duration::from_secs(1),
            },
        };
        assert_eq!(decide(&input, t0), Decision::Announce);
        core.evaluate(t0, w);
        assert_eq!(
            core.presentation(0),
            Presentation::Normal,
            "still announced"
        );
    }

    #[test]
    fn a_prefix_is_announced_only_when_an_established_session_holds_it_as_desired() {
        use crate::announcer::RouteAttrs;
        let v4: IpNet = "203.0.113.0/24".parse().unwrap_or_else(|e| panic!("{e}"));
        let v6: IpNet = "2001:db8:100::/48"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let normal = RouteAttrs::plain();
        let gshut = RouteAttrs {
            communities: vec![anyguard_proto::Community::GRACEFUL_SHUTDOWN],
            ..RouteAttrs::plain()
        };
        let rib = |routes: &[(IpNet, &RouteAttrs)]| -> RibOut {
            routes.iter().map(|(p, a)| (*p, (*a).clone())).collect()
        };
        let desired = rib(&[(v4, &normal), (v6, &normal)]);
        // No established session confirmed anything: nothing is on the wire.
        assert!(!announced_on_the_wire(&[v4], &desired, &[]));
        // An IPv4-only session carries the IPv4 prefix, not the IPv6 one.
        let v4_session = Arc::new(rib(&[(v4, &normal)]));
        let wire = [Arc::clone(&v4_session)];
        assert!(announced_on_the_wire(&[v4], &desired, &wire));
        assert!(!announced_on_the_wire(&[v4, v6], &desired, &wire));
        // A second session carrying IPv6 completes the service.
        let wire = [v4_session, Arc::new(rib(&[(v6, &normal)]))];
        assert!(announced_on_the_wire(&[v4, v6], &desired, &wire));
        // What is on the wire is the draining form, not the desired one (not confirmed
        // yet): not announced as desired.
        let wire = [Arc::new(rib(&[(v4, &gshut)]))];
        assert!(!announced_on_the_wire(&[v4], &desired, &wire));
        // Not desired (e.g. its addresses are not in place): not announced, whatever
        // a session still holds.
        let wire = [Arc::new(rib(&[(v4, &normal)]))];
        assert!(!announced_on_the_wire(&[v4], &RibOut::new(), &wire));
    }
}
