//! The coordinator's pure core: every input the daemon gets, as a method; the desired
//! Adj-RIB-Out, the service changes and the status of services and checks, as results.
//!
//! No channels, no clock: the shell in [`super`] owns the I/O and passes `now`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::removals::{carries, removed_by_reload, PendingRemoval, PendingRemovals};
use ipnet::IpNet;

mod checks;

pub use checks::CheckFork;

use crate::announcer::{self, Presentation, RibOut, RouteAttrs};
use crate::config::{CheckKind, Config, ServiceConfig};
use crate::health::{combine, same_check, CheckEvent, CheckStatus, ServiceHealth};
use crate::service::{Change, DrainSource, GuardVerdict, Health, Inputs, Service};
use crate::status::model::{self, AnnouncementStatus, DampeningStatus, GuardStatus, ServiceStatus};

/// Whether no two services of `config` share a prefix ([`Core::take_routes_update`]).
fn prefixes_unique(config: &Config) -> bool {
    let mut seen = std::collections::HashSet::new();
    config
        .services
        .iter()
        .flat_map(|s| &s.prefixes)
        .all(|p| seen.insert(*p))
}

/// Probe results kept per check for status.
pub const RESULTS_KEPT: usize = 10;

#[derive(Debug, Clone)]
struct CheckSlot {
    /// The check's state as the core last took it in (a result that changes it is one
    /// the check's task sends).
    state: CheckStatus,
    /// Counters and latest results, shared with the check's task, which records them in
    /// the daemon, and with the `/status` entry (issue 13: a result that changes nothing
    /// else reaches neither the core nor the entry's identity).
    live: model::LiveCheck,
    /// [`CheckEvent::seq`] of the latest result taken in.
    last_seq: u64,
}

#[derive(Debug, Clone)]
struct ServiceSlot {
    machine: Service,
    checks: Vec<CheckSlot>,
    drain_file: bool,
    operator_drain: Option<DrainSource>,
    /// An unforced operator drain read back from the state file that had not withdrawn
    /// the service before the restart (the all-sites guard held it, or it was still in
    /// its graceful-shutdown phase): it becomes the operator drain once the service is
    /// announced again, so that it goes through the guard as before the restart instead
    /// of withdrawing a site the fleet may need.
    restored_pending: Option<DrainSource>,
    guard: GuardVerdict,
    since_wall: SystemTime,
    /// The service's `local_addresses` are all on their interface (always true without
    /// any): until then its routes stay out of the desired Adj-RIB-Out (crate::local_addr).
    addresses_ready: bool,
    /// An input of the state machine changed since the last [`Core::evaluate`] looked at
    /// it: only these (and those with a due deadline) are evaluated, so that a probe
    /// result costs the same with ten services or a thousand (issue 13).
    eval_dirty: bool,
    /// What the all-sites guard decides from changed since it last looked
    /// ([`Core::guard_dirty`]).
    guard_dirty: bool,
    /// The service's `/status` entry is stale ([`Core::take_stale_statuses`]).
    status_stale: bool,
    /// The deadline this service has in [`Core`]'s `deadlines` queue.
    queued_deadline: Option<Instant>,
}

impl ServiceSlot {
    /// What the peers are told: the state machine's presentation, or nothing while the
    /// service addresses are not in place (routers must not send traffic to a host that
    /// would refuse it).
    fn effective(&self) -> Presentation {
        if self.addresses_ready {
            self.machine.presentation()
        } else {
            Presentation::Withdrawn
        }
    }
}

/// The pure coordinator state.
#[derive(Debug, Clone)]
pub struct Core {
    config: Arc<Config>,
    services: Vec<ServiceSlot>,
    stopping: bool,
    /// Routes a reload took away, still announced until the guard lets them go.
    removals: PendingRemovals,
    /// A fleet guard decides about removals ([`Core::guard_removals`]); without one a
    /// reload withdraws what it removes at once, as before.
    removals_guarded: bool,
    /// The stop goes through the all-sites guard ([`Core::stop_guarded`]).
    stop_guarded: bool,
    /// When the last [`Core::evaluate`] armed a restored drain: the next evaluation is
    /// due at once (after the guard has seen the drain).
    armed_at: Option<Instant>,
    /// Bumped whenever something [`Core::desired`] is made of may have changed: the
    /// shell rebuilds and compares the routes only then.
    routes_version: u64,
    /// The services with `eval_dirty` set, in the order they were marked.
    eval_queue: Vec<usize>,
    /// The services with `status_stale` set.
    status_queue: Vec<usize>,
    /// The services with `guard_dirty` set ([`Core::take_guard_dirty`]).
    guard_queue: Vec<usize>,
    /// The state machines' deadlines, earliest first (entries of deadlines that moved
    /// stay until they are due and are then skipped): neither [`Core::evaluate`] nor
    /// [`Core::next_deadline`] walks every service.
    deadlines: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Bumped whenever a service's health, drain, guard verdict or presentation may have
    /// changed ([`Core::epoch`]).
    epoch: u64,
    /// The services whose routes may have moved since the last
    /// [`Core::take_routes_update`] (possibly more than once each).
    routes_queue: Vec<usize>,
    /// Something besides a service's presentation changed since the last
    /// [`Core::take_routes_update`] (config, pending removals, stop): the next one is a
    /// full rebuild.
    routes_rebuild: bool,
    /// No two services of the running config share a prefix (the loader rejects it), so
    /// a prefix's route is its own service's alone and can be patched in place.
    prefixes_unique: bool,
}

/// What changed in the desired routes since the last [`Core::take_routes_update`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutesUpdate {
    /// Every route, built again ([`Core::desired`]).
    Full(RibOut),
    /// Only these prefixes may have changed; each with its route now (`None`: not
    /// announced). Applied to the routes of the previous update they give
    /// [`Core::desired`] without building it: a state change costs the same with ten
    /// services or a thousand (issue 13).
    Patch(Vec<(IpNet, Option<RouteAttrs>)>),
}

/// Result of an operator request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlOutcome {
    /// Done; a message for the operator.
    Done(String),
    /// No such service.
    UnknownService(String),
}

impl Core {
    /// A core for a freshly loaded config: every service `Starting`.
    pub fn new(config: Arc<Config>, now: Instant, wall: SystemTime) -> Self {
        let services = config
            .services
            .iter()
            .map(|s| new_slot(s, now, wall))
            .collect();
        Core {
            services,
            stopping: false,
            removals: PendingRemovals::default(),
            removals_guarded: false,
            stop_guarded: false,
            armed_at: None,
            routes_version: 0,
            epoch: 0,
            eval_queue: Vec::new(),
            status_queue: Vec::new(),
            guard_queue: Vec::new(),
            deadlines: BinaryHeap::new(),
            routes_queue: Vec::new(),
            routes_rebuild: true,
            prefixes_unique: prefixes_unique(&config),
            config,
        }
        .all_marked()
    }

    fn all_marked(mut self) -> Self {
        self.mark_all();
        self
    }

    /// Service `i` is to be evaluated.
    fn dirty_eval(&mut self, i: usize) {
        if let Some(s) = self.services.get_mut(i) {
            if !s.eval_dirty {
                s.eval_dirty = true;
                self.eval_queue.push(i);
            }
        }
    }

    /// Service `i`'s status entry is to be rebuilt.
    fn dirty_status(&mut self, i: usize) {
        if let Some(s) = self.services.get_mut(i) {
            if !s.status_stale {
                s.status_stale = true;
                self.status_queue.push(i);
            }
        }
    }

    /// What the all-sites guard decides about service `i` from changed.
    fn dirty_guard(&mut self, i: usize) {
        if let Some(s) = self.services.get_mut(i) {
            if !s.guard_dirty {
                s.guard_dirty = true;
                self.guard_queue.push(i);
            }
        }
    }

    /// Service `i`'s inputs changed: evaluate it, let the guard look at it, rebuild its
    /// status entry.
    fn mark(&mut self, i: usize) {
        self.epoch += 1;
        self.dirty_guard(i);
        self.dirty_eval(i);
        self.dirty_status(i);
    }

    fn mark_all(&mut self) {
        for i in 0..self.services.len() {
            self.mark(i);
        }
        self.routes_rebuilt();
    }

    /// Service `i`'s routes may have moved.
    fn routes_moved(&mut self, i: usize) {
        self.routes_version += 1;
        // Bounded when nobody takes the updates (a core without a shell): past one entry
        // per service a rebuild costs no more than the patch.
        if self.routes_queue.len() >= self.services.len() {
            self.routes_rebuilt();
        } else {
            self.routes_queue.push(i);
        }
    }

    /// The desired routes may have changed beyond single services' presentations.
    fn routes_rebuilt(&mut self) {
        self.routes_version += 1;
        self.routes_rebuild = true;
        self.routes_queue.clear();
    }

    /// What changed in the desired routes since the last call: a patch of the services
    /// whose presentation moved, or everything when more than that changed (or pending
    /// removals, which may share prefixes with the services, are in the routes).
    pub fn take_routes_update(&mut self) -> RoutesUpdate {
        let mut moved = std::mem::take(&mut self.routes_queue);
        let rebuild = std::mem::take(&mut self.routes_rebuild);
        if rebuild || !self.prefixes_unique || !self.removals.list().is_empty() {
            return RoutesUpdate::Full(self.desired());
        }
        moved.sort_unstable();
        moved.dedup();
        let mut patch = Vec::new();
        for i in moved {
            let (Some(cfg), Some(slot)) = (self.config.services.get(i), self.services.get(i))
            else {
                continue;
            };
            // As `carried_live` builds it: the service's presentation, on the families
            // some configured peer carries.
            let attrs = announcer::route_attrs(cfg, slot.effective());
            for prefix in &cfg.prefixes {
                let carried = self.config.peers.iter().any(|p| carries(p, prefix));
                patch.push((*prefix, attrs.clone().filter(|_| carried)));
            }
        }
        RoutesUpdate::Patch(patch)
    }

    /// A counter that changes whenever the desired routes may have changed; equal
    /// counters mean [`Core::desired`] would return the same routes.
    pub fn routes_version(&self) -> u64 {
        self.routes_version
    }

    /// A counter that changes whenever any service's health, drain, guard verdict or
    /// presentation may have changed (with [`Core::routes_version`]: whatever the guard's
    /// site report is made of).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The services whose status entry ([`Core::service_status_of`]) may have changed
    /// since the last call, in index order; the shell rebuilds these entries only.
    pub fn take_stale_statuses(&mut self) -> Vec<usize> {
        take_marked(&mut self.status_queue, &mut self.services, |s| {
            &mut s.status_stale
        })
    }

    /// Something outside the core that service `i`'s status entry shows changed (its
    /// guard status).
    pub fn touch_status(&mut self, i: usize) {
        self.dirty_status(i);
    }

    /// The services whose inputs to the all-sites guard (health, drains, presentation)
    /// changed since the last call, in index order; the guard decides again for these and
    /// for those whose decision depends on time or on the other sites, without a walk
    /// over every service (issue 13).
    pub fn take_guard_dirty(&mut self) -> Vec<usize> {
        take_marked(&mut self.guard_queue, &mut self.services, |s| {
            &mut s.guard_dirty
        })
    }

    /// With `true` (a fleet guard runs), the routes a reload takes away become pending
    /// removals that the guard decides about ([`Core::pending_removals`]) instead of
    /// leaving at once.
    pub fn guard_removals(&mut self, on: bool) {
        self.removals_guarded = on;
    }

    /// The routes a reload removed that are still announced, waiting for the guard.
    pub fn pending_removals(&self) -> &[PendingRemoval] {
        self.removals.list()
    }

    /// Takes pending removals in (from a reload, or saved before a restart): their
    /// routes are announced again with their saved attributes until the guard lets them
    /// go. Prefixes the running config configures, or already pending, are skipped.
    pub fn add_pending_removals(&mut self, removals: Vec<PendingRemoval>) {
        let live = self.carried_live();
        self.removals.add(&live, removals);
        self.routes_rebuilt();
    }

    /// The guard let the pending removal `key` ([`PendingRemoval::key`]) go: its routes
    /// leave the desired Adj-RIB-Out.
    pub fn complete_removal(&mut self, key: &str) -> Option<PendingRemoval> {
        self.routes_rebuilt();
        self.removals.complete(key)
    }

    /// The running config.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// Takes a new config: services kept by name keep their state and history (and each
    /// check with the same name and target keeps its own), new ones start, removed ones go.
    pub fn reconfigure(&mut self, config: Arc<Config>, now: Instant, wall: SystemTime) {
        // What the peers have been told until now: the routes this reload takes away are
        // kept from it, with the same attributes, as pending removals (issue #11).
        let announced = self.desired();
        let mut old: Vec<Option<ServiceSlot>> = std::mem::take(&mut self.services)
            .into_iter()
            .map(Some)
            .collect();
        let old_config = Arc::clone(&self.config);
        self.services = config
            .services
            .iter()
            .map(|svc| {
                let found = old_config
                    .services
                    .iter()
                    .position(|o| o.name == svc.name)
                    .and_then(|i| old.get_mut(i).and_then(Option::take).map(|s| (i, s)));
                match found {
                    Some((i, mut slot)) => {
                        slot.machine.reconfigure(svc);
                        // The presence seen belongs to the old file: with the key removed
                        // nothing may keep the service drained, and a new path is looked at
                        // by the shell right after this.
                        if old_config.services[i].drain_file != svc.drain_file {
                            slot.drain_file = false;
                        }
                        let old_checks = &old_config.services[i].checks;
                        if *old_checks != svc.checks {
                            // The same check (name and target) keeps its state and history,
                            // as the health runner resumes it (`Core::fork_checks`).
                            let mut kept: Vec<Option<CheckSlot>> = std::mem::take(&mut slot.checks)
                                .into_iter()
                                .map(Some)
                                .collect();
                            slot.checks = svc
                                .checks
                                .iter()
                                .map(|c| {
                                    old_checks
                                        .iter()
                                        .position(|o| same_check(o, c))
                                        .and_then(|k| kept.get_mut(k).and_then(Option::take))
                                        .unwrap_or_else(new_check)
                                })
                                .collect();
                        }
                        slot
                    }
                    None => new_slot(svc, now, wall),
                }
            })
            .collect();
        self.prefixes_unique = prefixes_unique(&config);
        self.config = config;
        let live = self.carried_live();
        self.removals.settle(&live);
        if self.removals_guarded {
            let removed = removed_by_reload(&old_config, &announced, &live, wall);
            self.add_pending_removals(removed);
        }
        // The indices changed: every queue starts again from every service.
        self.eval_queue.clear();
        self.status_queue.clear();
        self.guard_queue.clear();
        self.deadlines.clear();
        for s in &mut self.services {
            s.eval_dirty = false;
            s.status_stale = false;
            s.guard_dirty = false;
            s.queued_deadline = None;
        }
        self.mark_all();
    }

    /// A probe result from the health runner, observed at wall-clock time `at`: the
    /// check's new state, and its counters and history unless its task recorded them
    /// already (`status::record`; in the daemon only state changes come here).
    pub fn on_probe(&mut self, event: &CheckEvent, at: SystemTime) {
        let Some(service) = self.services.get_mut(event.service) else {
            return; // from a config that was just replaced
        };
        let Some(slot) = service.checks.get_mut(event.check) else {
            return;
        };
        if event.seq < slot.last_seq {
            // Older than a result of this check taken in already: history. (One channel
            // keeps a check's results in order; kept as a guard.)
            return;
        }
        slot.last_seq = event.seq;
        let health_may_change = slot.state != event.state.status;
        slot.state = event.state.status;
        crate::status::record::record_in(&slot.live, event, at);
        if health_may_change {
            // The service's health may change; a result that confirms the state changes
            // only the check's counters and history, which the status entry reads live.
            self.mark(event.service);
        }
    }

    /// Whether each service's drain file exists (polled by the shell).
    pub fn set_drain_file(&mut self, service: usize, present: bool) {
        if let Some(s) = self.services.get_mut(service) {
            if s.drain_file != present {
                s.drain_file = present;
                self.mark(service);
            }
        }
    }

    /// `POST /services/{name}/drain`.
    pub fn drain(&mut self, name: &str, force: bool, reason: String) -> ControlOutcome {
        match self.index_of(name) {
            Some(i) => {
                self.services[i].operator_drain = Some(DrainSource::Operator {
                    force,
                    reason,
                    restored: None,
                });
                self.services[i].restored_pending = None;
                self.mark(i);
                ControlOutcome::Done(format!("service {name}: drain requested"))
            }
            None => ControlOutcome::UnknownService(name.to_string()),
        }
    }

    /// An operator drain read back from the state file (`restored` says from where, for
    /// the reason shown), for service `name` unless it has an operator drain of its own
    /// already. Whether the service is configured.
    ///
    /// A drain that was forced, or had withdrawn the service before the restart
    /// (`withdrawn`), or of a daemon without a fleet is in force from the next evaluation
    /// on: the service is never announced. An unforced one that had not withdrawn the
    /// service, at a site of a fleet, takes effect once the service is announced again
    /// and goes through the all-sites guard (`ServiceSlot::restored_pending`): restored
    /// as drained, a drain the guard held at every site would withdraw the service
    /// everywhere when the whole fleet restarts (a package upgrade).
    pub fn restore_drain(
        &mut self,
        name: &str,
        force: bool,
        withdrawn: bool,
        reason: String,
        restored: String,
    ) -> bool {
        let Some(i) = self.index_of(name) else {
            return false;
        };
        let guarded = !force && !withdrawn && self.config.fleet.is_some();
        let slot = &mut self.services[i];
        if slot.operator_drain.is_none() && slot.restored_pending.is_none() {
            let drain = DrainSource::Operator {
                force,
                reason,
                restored: Some(restored),
            };
            if guarded {
                slot.restored_pending = Some(drain);
            } else {
                slot.operator_drain = Some(drain);
            }
        }
        self.mark(i);
        true
    }

    /// Whether the operator drain of service `i` has withdrawn it (`None` without an
    /// operator drain in force, and while stopping: a stop withdraws everything, which
    /// says nothing about the drain).
    pub fn operator_drain_withdrawn(&self, i: usize) -> Option<bool> {
        let slot = self.services.get(i)?;
        if self.stopping || slot.operator_drain.is_none() {
            return None;
        }
        Some(slot.machine.presentation() == Presentation::Withdrawn)
    }

    /// `POST /services/{name}/undrain`. A drain file, if present, still drains.
    pub fn undrain(&mut self, name: &str) -> ControlOutcome {
        match self.index_of(name) {
            Some(i) => {
                self.services[i].operator_drain = None;
                self.services[i].restored_pending = None;
                self.mark(i);
                let note = if self.services[i].drain_file {
                    " (its drain file is still present and keeps it drained)"
                } else {
                    ""
                };
                ControlOutcome::Done(format!("service {name}: undrained{note}"))
            }
            None => ControlOutcome::UnknownService(name.to_string()),
        }
    }

    /// The guard's verdict for a service (the shell asks the guard before evaluating).
    pub fn set_guard(&mut self, service: usize, verdict: GuardVerdict) {
        if let Some(s) = self.services.get_mut(service) {
            if s.guard != verdict {
                s.guard = verdict;
                self.epoch += 1;
                self.dirty_eval(service);
                self.dirty_status(service);
            }
        }
    }

    /// The daemon is stopping: drain every service (RFC 8326), then withdraw.
    pub fn stop(&mut self) {
        self.stopping = true;
        self.mark_all();
    }

    /// The daemon is stopping with a fleet: each service's withdrawal is asked of the
    /// all-sites guard like a drain file ([`DrainSource::Stop`]); a held service stays
    /// announced, and the shell ends the stop once every service is withdrawn or held.
    pub fn stop_guarded(&mut self) {
        self.stopping = true;
        self.stop_guarded = true;
        self.mark_all();
    }

    /// True once stopping and every service is either withdrawn or named in `held` (the
    /// services the all-sites guard holds: they stay announced through the stop).
    pub fn stop_settled(&self, held: &[&str]) -> bool {
        self.stopping
            && self
                .config
                .services
                .iter()
                .zip(&self.services)
                .all(|(cfg, s)| {
                    s.machine.presentation() == Presentation::Withdrawn
                        || held.contains(&cfg.name.as_str())
                })
    }

    /// Index of a service by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.config.services.iter().position(|s| s.name == name)
    }

    /// Combined health of service `i`.
    pub fn health(&self, i: usize) -> Health {
        let (Some(cfg), Some(slot)) = (self.config.services.get(i), self.services.get(i)) else {
            return Health::Unknown;
        };
        let states: Vec<CheckStatus> = slot.checks.iter().map(|c| c.state).collect();
        match combine(cfg.combine, &states) {
            ServiceHealth::Up => Health::Up,
            ServiceHealth::Down => Health::Down,
            ServiceHealth::Unknown => Health::Unknown,
        }
    }

    /// Re-evaluates the services whose inputs changed or whose deadline is due (the
    /// others would come out the same); returns the changes, by service index.
    pub fn evaluate(&mut self, now: Instant, wall: SystemTime) -> Vec<(usize, Change)> {
        let mut changes = Vec::new();
        let mut todo = std::mem::take(&mut self.eval_queue);
        while let Some(&Reverse((d, i))) = self.deadlines.peek() {
            if d > now {
                break;
            }
            self.deadlines.pop();
            if let Some(s) = self.services.get_mut(i) {
                if s.queued_deadline == Some(d) {
                    s.queued_deadline = None;
                }
            }
            todo.push(i);
        }
        todo.sort_unstable();
        todo.dedup();
        self.armed_at = None;
        for i in todo {
            let Some(slot) = self.services.get(i) else {
                continue;
            };
            let due = slot.machine.next_deadline().is_some_and(|d| d <= now);
            if !slot.eval_dirty && !due {
                continue;
            }
            let health = self.health(i);
            let drain = self.drain_source(i);
            let slot = &mut self.services[i];
            let inputs = Inputs {
                health,
                drain,
                guard: slot.guard.clone(),
            };
            let before = (slot.effective(), slot.machine.presentation());
            slot.eval_dirty = false;
            let change = slot.machine.evaluate(now, &inputs);
            let moved =
                (slot.effective(), slot.machine.presentation()) != before || change.is_some();
            if moved && !slot.guard_dirty {
                slot.guard_dirty = true;
                self.guard_queue.push(i);
            }
            if let Some(change) = change {
                slot.since_wall = wall;
                changes.push((i, change));
            }
            if let Some(d) = slot.machine.next_deadline() {
                if slot.queued_deadline != Some(d) {
                    slot.queued_deadline = Some(d);
                    self.deadlines.push(Reverse((d, i)));
                }
            }
            // Restored drains of services announced again take effect now; the guard
            // sees them before the next evaluation, which is due at once.
            let armed = slot.machine.presentation() != Presentation::Withdrawn
                && slot.restored_pending.is_some();
            if armed {
                slot.operator_drain = slot.restored_pending.take();
                self.armed_at = Some(now);
                self.mark(i);
            }
            if moved {
                self.routes_moved(i);
                self.epoch += 1;
            }
            // Reasons, flap counts and deadlines may move without a state change.
            self.dirty_status(i);
        }
        // A renamed service whose checks have risen announces the prefix itself now.
        if !self.removals.list().is_empty() {
            let live = self.carried_live();
            let count =
                |r: &PendingRemovals| r.list().iter().map(|p| p.routes.len()).sum::<usize>();
            let before = count(&self.removals);
            self.removals.settle(&live);
            if count(&self.removals) != before {
                self.routes_rebuilt();
            }
        }
        changes
    }

    /// Every service has been decided at least once (none is still `Starting`): the
    /// desired routes are the initial update that graceful restart's End-of-RIB follows.
    pub fn settled(&self) -> bool {
        self.services
            .iter()
            .all(|s| s.machine.state() != crate::service::State::Starting)
    }

    /// The earliest time [`Core::evaluate`] must run without new input.
    pub fn next_deadline(&self) -> Option<Instant> {
        // An entry whose deadline moved may wake the loop early once, never late: a
        // deadline is queued whenever an evaluation leaves one.
        self.deadlines
            .peek()
            .map(|Reverse((d, _))| *d)
            .into_iter()
            .chain(self.armed_at)
            .min()
    }

    /// The desired Adj-RIB-Out (the same for every peer; see [`announcer::diff`]): every
    /// service as its state machine presents it, less those whose addresses are not in
    /// place yet and those of a family no configured peer carries, plus the routes
    /// pending removal ([`Core::pending_removals`]).
    pub fn desired(&self) -> RibOut {
        // Routes of a family no configured peer carries are on no wire; leaving them out
        // lets a peer a reload removed but kept for a pending removal send the
        // withdrawal once the guard allows it.
        let mut rib = self.carried_live();
        // A stop without a fleet is a forced drain of everything, pending removals
        // included (they stay in the list for a state file); a guarded stop keeps them
        // under the guard like the services.
        if !self.stopping || self.stop_guarded {
            self.removals.extend_rib(&mut rib);
        }
        rib
    }

    /// What the configured services announce, without pending removals.
    fn live_desired(&self) -> RibOut {
        announcer::desired(
            self.config
                .services
                .iter()
                .zip(&self.services)
                .map(|(cfg, slot)| (cfg, slot.effective())),
        )
    }

    /// What the configured services announce over the configured peers: a route of a
    /// family no peer carries is on no wire (the last peer of that family was removed).
    fn carried_live(&self) -> RibOut {
        let mut live = self.live_desired();
        live.retain(|p, _| self.config.peers.iter().any(|peer| carries(peer, p)));
        live
    }

    /// Whether a pending removal needs `peer`'s family (it is the only way its routes
    /// stay on the wire while the guard decides): the shell keeps a peer the reload
    /// removed running until this is false.
    pub fn needs_peer(&self, peer: &crate::config::PeerConfig) -> bool {
        self.removals.list().iter().any(|r| {
            r.routes.iter().any(|route| {
                carries(peer, &route.prefix)
                    && !self.config.peers.iter().any(|p| carries(p, &route.prefix))
            })
        })
    }

    /// The shell tells whether service `i`'s `local_addresses` are all in place.
    pub fn set_addresses_ready(&mut self, i: usize, ready: bool) {
        if let Some(s) = self.services.get_mut(i) {
            if s.addresses_ready != ready {
                s.addresses_ready = ready;
                self.mark(i);
                self.routes_moved(i);
            }
        }
    }

    /// Whether service `i`'s routes may go out as far as its `local_addresses` go (the
    /// last [`Core::set_addresses_ready`]).
    pub fn addresses_ready(&self, i: usize) -> bool {
        self.services.get(i).is_some_and(|s| s.addresses_ready)
    }

    /// How service `i`'s state machine presents it (whatever its addresses: the shell
    /// adds them when this is announced).
    pub fn presentation(&self, i: usize) -> Presentation {
        self.services
            .get(i)
            .map_or(Presentation::Withdrawn, |s| s.machine.presentation())
    }

    /// The drain in force for service `i`, if any (daemon stop, operator, file).
    pub fn drain_source(&self, i: usize) -> Option<DrainSource> {
        let slot = self.services.get(i)?;
        if self.stopping && self.stop_guarded {
            // An operator's forced drain stays what it is: the deliberate way to take the
            // site out of service, withdrawn through the stop whatever the guard says.
            match &slot.operator_drain {
                Some(op @ DrainSource::Operator { force: true, .. }) => Some(op.clone()),
                _ => Some(DrainSource::Stop),
            }
        } else if self.stopping {
            Some(DrainSource::Shutdown)
        } else if let Some(op) = &slot.operator_drain {
            Some(op.clone())
        } else if self.config.services.get(i).is_some_and(|c| c.disabled) {
            // The config guard counts a disabled service as not announced; the daemon
            // must agree, or a rollout it accepted would announce what it did not count.
            Some(DrainSource::Disabled)
        } else if slot.drain_file {
            Some(DrainSource::File)
        } else {
            None
        }
    }

    /// Whether service `i` is announced in any form (for the guard's site report): not
    /// while its addresses are missing, since its routes are then held back.
    pub fn announcing(&self, i: usize) -> bool {
        self.services
            .get(i)
            .is_some_and(|s| s.effective() != Presentation::Withdrawn)
    }

    /// Whether service `i` wants to withdraw but is held.
    pub fn wants_withdrawal(&self, i: usize) -> bool {
        self.services
            .get(i)
            .is_some_and(|s| s.machine.wants_withdrawal())
    }

    /// Status of every service; `established` lists, per peer name, whether the session is
    /// up (announcements to a peer whose session is down are `pending`).
    pub fn service_status(
        &self,
        now: Instant,
        wall: SystemTime,
        peers: &[(String, bool)],
        guard: &dyn Fn(usize) -> GuardStatus,
    ) -> Vec<ServiceStatus> {
        (0..self.services.len())
            .filter_map(|i| self.service_status_of(i, now, wall, peers, guard(i)))
            .collect()
    }

    /// Status of service `i` (see [`Core::service_status`]); `guard` is its guard status.
    pub fn service_status_of(
        &self,
        i: usize,
        now: Instant,
        wall: SystemTime,
        peers: &[(String, bool)],
        guard: GuardStatus,
    ) -> Option<ServiceStatus> {
        let cfg = self.config.services.get(i)?;
        let slot = self.services.get(i)?;
        Some({
            {
                let m = &slot.machine;
                let presentation = slot.effective();
                let announcements = peers
                    .iter()
                    .map(|(peer, up)| AnnouncementStatus {
                        peer: peer.clone(),
                        state: match (up, presentation) {
                            (false, _) => "pending",
                            (true, Presentation::Normal) => "announced",
                            (true, Presentation::Depreferred) => "depreferred",
                            (
                                true,
                                Presentation::GracefulShutdown
                                | Presentation::DepreferredGracefulShutdown,
                            ) => "graceful-shutdown",
                            (true, Presentation::Withdrawn) => "withdrawn",
                        }
                        .to_string(),
                        prefixes: if *up && presentation != Presentation::Withdrawn {
                            cfg.prefixes.iter().map(ToString::to_string).collect()
                        } else {
                            Vec::new()
                        },
                    })
                    .collect();
                ServiceStatus {
                    name: cfg.name.clone(),
                    state: m.state().as_str().to_string(),
                    since: rfc3339(slot.since_wall),
                    reason: m.reason().to_string(),
                    prefixes: cfg.prefixes.iter().map(ToString::to_string).collect(),
                    announcements,
                    checks: cfg
                        .checks
                        .iter()
                        .zip(&slot.checks)
                        .map(|(c, s)| {
                            // The counters and results are copied from the live record.
                            let mut check = model::CheckStatus {
                                name: c.name.clone(),
                                kind: kind_name(&c.kind).to_string(),
                                target: target_text(&c.kind),
                                state: s.state.to_string(),
                                rise_count: 0,
                                rise: c.rise,
                                fall_count: 0,
                                fall: c.fall,
                                last_results: Vec::new(),
                                older_results: Vec::new(),
                                live: s.live.clone(),
                            };
                            check.copy_live();
                            check
                        })
                        .collect(),
                    guard,
                    dampening: DampeningStatus {
                        flaps: m.flaps(),
                        hold_down_ms: u64::try_from(m.hold_down().as_millis()).unwrap_or(u64::MAX),
                        suppressed_until: m
                            .suppressed_until()
                            .map(|t| rfc3339(wall + t.saturating_duration_since(now))),
                    },
                }
            }
        })
    }
}

/// Empties `queue` (indices of services marked through `flag`): the services still there,
/// in index order, each once, with their mark cleared.
fn take_marked(
    queue: &mut Vec<usize>,
    services: &mut [ServiceSlot],
    flag: fn(&mut ServiceSlot) -> &mut bool,
) -> Vec<usize> {
    let mut marked = std::mem::take(queue);
    marked.sort_unstable();
    marked.dedup();
    marked.retain(|&i| {
        services.get_mut(i).is_some_and(|s| {
            *flag(s) = false;
            true
        })
    });
    marked
}

fn new_check() -> CheckSlot {
    CheckSlot {
        state: CheckStatus::Unknown,
        live: model::LiveCheck::new(RESULTS_KEPT),
        last_seq: 0,
    }
}

fn new_slot(cfg: &ServiceConfig, now: Instant, wall: SystemTime) -> ServiceSlot {
    ServiceSlot {
        machine: Service::new(cfg, now),
        checks: cfg.checks.iter().map(|_| new_check()).collect(),
        drain_file: false,
        operator_drain: None,
        restored_pending: None,
        guard: GuardVerdict::Allow,
        since_wall: wall,
        addresses_ready: cfg.local_addresses.is_none(),
        eval_dirty: false,
        guard_dirty: false,
        status_stale: false,
        queued_deadline: None,
    }
}

fn kind_name(k: &CheckKind) -> &'static str {
    match k {
        CheckKind::Http { .. } => "http",
        CheckKind::Tcp { .. } => "tcp",
        CheckKind::Command { .. } => "command",
        CheckKind::Dns { .. } => "dns",
        CheckKind::File { .. } => "file",
    }
}

fn target_text(k: &CheckKind) -> String {
    match k {
        CheckKind::Http { url, .. } => url.clone(),
        CheckKind::Tcp { address } => address.to_string(),
        CheckKind::Command { argv } => argv.join(" "),
        CheckKind::Dns {
            server,
            name,
            record_type,
            ..
        } => format!("{name} {record_type} @{server}"),
        CheckKind::File { path, invert } => {
            format!("{}{}", if *invert { "!" } else { "" }, path.display())
        }
    }
}

/// RFC 3339 UTC with milliseconds, as every time in status.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::testing::service_config;
    use crate::config::{CheckConfig, FleetRef, StatusConfig};
    use crate::health::{CheckState as HealthCheckState, ProbeOutcome};
    use crate::service::State;

    fn check(name: &str) -> CheckConfig {
        CheckConfig {
            name: name.into(),
            kind: CheckKind::Command {
                argv: vec!["true".into()],
            },
            interval: Duration::from_secs(1),
            fast_interval: Duration::from_millis(200),
            timeout: Duration::from_millis(500),
            rise: 2,
            fall: 2,
        }
    }

    fn service(name: &str, prefix: &str, checks: usize) -> ServiceConfig {
        ServiceConfig {
            checks: (0..checks).map(|i| check(&format!("c{i}"))).collect(),
            ..service_config(name, &[prefix])
        }
    }

    fn config(services: Vec<ServiceConfig>) -> Arc<Config> {
        Arc::new(Config {
            source: "<test>".into(),
            router_id: "198.18.0.2".parse().unwrap(),
            local_asn: 65010,
            status: StatusConfig {
                listen: "127.0.0.1:9180".parse().unwrap(),
                token_file: None,
                fleet_listen: None,
            },
            peers: vec![crate::config::testing::peer_config("edge1", true, true)],
            services,
            fleet: None::<FleetRef>,
            bgp_listen: None,
            state_dir: None,
        })
    }

    /// A core whose one service, web (203.0.113.0/24, one check), has come up at `t0`.
    fn web_up() -> (Instant, SystemTime, Core) {
        let t0 = Instant::now();
        let w = SystemTime::UNIX_EPOCH;
        let mut core = Core::new(config(vec![service("web", "203.0.113.0/24", 1)]), t0, w);
        core.on_probe(&report(0, 0, CheckStatus::Up), w);
        core.evaluate(t0, w);
        (t0, w, core)
    }

    fn report(service: usize, check: usize, status: CheckStatus) -> CheckEvent {
        CheckEvent {
            service,
            check,
            outcome: ProbeOutcome {
                ok: status == CheckStatus::Up,
                latency: Duration::from_millis(3),
                detail: String::new(),
            },
            state: HealthCheckState {
                status,
                passes: 0,
                failures: 0,
                rise: 2,
                fall: 2,
            },
            transition: None,
            start_delay: None,
            seq: crate::health::next_seq(),
        }
    }

    #[test]
    fn a_result_that_confirms_the_state_rebuilds_no_status_entry_and_shows_in_its_own() {
        let t0 = Instant::now();
        let w = SystemTime::UNIX_EPOCH;
        let mut core = Core::new(
            config(vec![
                service("web", "203.0.113.0/24", 1),
                service("dns", "198.51.100.0/24", 1),
            ]),
            t0,
            w,
        );
        core.on_probe(&report(0, 0, CheckStatus::Up), w);
        core.on_probe(&report(1, 0, CheckStatus::Up), w);
        assert_eq!(core.evaluate(t0, w).len(), 2);
        assert_eq!(core.take_stale_statuses(), [0, 1]);
        assert_eq!(core.take_guard_dirty(), [0, 1]);
        let routes = core.routes_version();

        // A result that says what the check already said: no entry is stale (issue 13:
        // the result is recorded in the check's live record, which web's published entry
        // shares); no evaluation, no new routes, nothing for the guard.
        let guard = || GuardStatus::default();
        let published = core.service_status_of(0, t0, w, &[], guard()).expect("web");
        assert_eq!(published.checks[0].last_results.len(), 1);
        core.on_probe(&report(0, 0, CheckStatus::Up), w);
        assert!(core.take_guard_dirty().is_empty());
        assert!(core.evaluate(t0, w).is_empty());
        assert_eq!(core.routes_version(), routes);
        assert!(core.take_stale_statuses().is_empty());
        let mut served = published.clone();
        served.fill_live();
        assert_eq!(served.checks[0].last_results.len(), 2);
        let rebuilt = core.service_status_of(0, t0, w, &[], guard()).expect("web");
        assert_eq!(
            rebuilt.checks[0].live, published.checks[0].live,
            "one live record, shared by every entry built for the check"
        );

        // A failing check: web is evaluated and withdrawn, the routes change, the guard is
        // asked about web again; dns is left alone.
        core.on_probe(&report(0, 0, CheckStatus::Down), w);
        assert_eq!(core.take_guard_dirty(), [0]);
        let changes = core.evaluate(t0, w);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].0, 0);
        // Its presentation moved: the guard looks at web once more, at dns still not.
        assert_eq!(core.take_guard_dirty(), [0]);
        assert_ne!(core.routes_version(), routes);
        assert_eq!(core.take_stale_statuses(), [0]);
        assert_eq!(core.desired().len(), 1);
        // Its hold-down is a deadline of the queue, not of a walk over every service.
        let due = core.next_deadline().expect("web is held down");
        assert!(due > t0);
        assert!(core.evaluate(due, w).len() <= 1);
    }

    #[test]
    fn a_routine_result_overtaken_by_a_newer_state_change_of_its_check_is_left_out() {
        let (t0, w, mut core) = web_up();
        // Sent before the failure (seq taken first), handled after it: the failure went on
        // the channel of state changes, which the loop polls first.
        let older_up = report(0, 0, CheckStatus::Up);
        let down = report(0, 0, CheckStatus::Down);
        core.on_probe(&down, w);
        core.on_probe(&older_up, w);
        let changes = core.evaluate(t0, w);
        assert_eq!(changes.len(), 1);
        assert_ne!(changes[0].1.to, State::Up);
        // The older pass must not bring it back.
        assert!(core.evaluate(t0, w).is_empty());
        let mut status = core
            .service_status_of(0, t0, w, &[], GuardStatus::default())
            .expect("web");
        status.fill_live();
        assert_eq!(status.checks[0].state, "down");
        assert_eq!(
            status.checks[0].last_results.len(),
            2,
            "the older pass is not history"
        );
    }

    /// Applies `update` to `published` as the shell does.
    fn apply(published: &mut RibOut, update: RoutesUpdate) {
        match update {
            RoutesUpdate::Full(rib) => *published = rib,
            RoutesUpdate::Patch(patch) => {
                for (prefix, route) in patch {
                    match route {
                        Some(attrs) => published.insert(prefix, attrs),
                        None => published.remove(&prefix),
                    };
                }
            }
        }
    }

    #[test]
    fn a_state_change_updates_the_routes_with_a_patch_of_its_own_service_only() {
        let t0 = Instant::now();
        let w = SystemTime::UNIX_EPOCH;
        let three = || {
            config(vec![
                service("web", "203.0.113.0/24", 1),
                service("api", "198.51.100.0/24", 1),
                service("dns", "2001:db8:53::/48", 1),
            ])
        };
        let mut core = Core::new(three(), t0, w);
        let mut published = RibOut::new();
        for i in 0..3 {
            core.on_probe(&report(i, 0, CheckStatus::Up), w);
        }
        core.evaluate(t0, w);
        // The first update after the start is a full one.
        let first = core.take_routes_update();
        assert!(matches!(first, RoutesUpdate::Full(_)));
        apply(&mut published, first);
        assert_eq!(published.len(), 3);
        assert_eq!(published, core.desired());

        // api fails: a patch of api's prefix alone, withdrawn.
        core.on_probe(&report(1, 0, CheckStatus::Down), w);
        core.evaluate(t0, w);
        let update = core.take_routes_update();
        let api: IpNet = "198.51.100.0/24".parse().unwrap();
        assert_eq!(update, RoutesUpdate::Patch(vec![(api, None)]));
        apply(&mut published, update);
        assert_eq!(published, core.desired());
        assert_eq!(published.len(), 2);
        // Nothing moved since: an empty patch.
        assert_eq!(core.take_routes_update(), RoutesUpdate::Patch(Vec::new()));

        // A reload is a full update again.
        core.reconfigure(three(), t0, w);
        let update = core.take_routes_update();
        assert!(matches!(update, RoutesUpdate::Full(_)));
        apply(&mut published, update);
        assert_eq!(published, core.desired());
    }

    #[test]
    fn healthy_checks_announce_and_failing_ones_withdraw() {
        let t0 = Instant::now();
        let w = SystemTime::UNIX_EPOCH;
        let mut core = Core::new(config(vec![service("web", "203.0.113.0/24", 2)]), t0, w);
        assert!(core.evaluate(t0, w).is_empty());
        assert!(core.desired().is_empty());
        core.on_probe(&report(0, 0, CheckStatus::Up), w);
        assert!(core.evaluate(t0, w).is_empty(), "one of two checks up");
        core.on_probe(&report(0, 1, CheckStatus::Up), w);
        let changes = core.evaluate(t0, w);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].1.to, State::Up);
        assert_eq!(core.desired().len(), 1);
        core.on_probe(&report(0, 1, CheckStatus::Down), w);
        core.evaluate(t0, w);
        assert!(core.desired().is_empty());
    }

    #[test]
    fn a_service_with_local_addresses_is_announced_only_once_they_are_in_place() {
        let t0 = Instant::now();
        let w = SystemTime::UNIX_EPOCH;
        let mut web = service("web", "203.0.113.0/24", 1);
        web.local_addresses = Some(crate::config::LocalAddresses {
            interface: "lo".into(),
            addresses: vec!["203.0.113.10".parse().unwrap()],
        });
        let mut core = Core::new(config(vec![web]), t0, w);
        core.on_probe(&report(0, 0, CheckStatus::Up), w);
        core.evaluate(t0, w);
        let announcement = |core: &Core| {
            core.service_status(t0, w, &[("edge1".into(), true)], &|_| {
                GuardStatus::default()
            })[0]
                .announcements[0]
                .state
                .clone()
        };
        assert_eq!(
            core.presentation(0),
            Presentation::Normal,
            "the machine wants it"
        );
        assert!(core.desired().is_empty(), "addresses not in place yet");
        assert!(!core.announcing(0), "the guard report must not count it");
        assert_eq!(announcement(&core), "withdrawn");
        core.set_addresses_ready(0, true);
        assert_eq!(core.desired().len(), 1);
        assert!(core.announcing(0));
        assert_eq!(announcement(&core), "announced");
    }

    #[test]
    fn settled_once_every_service_has_risen_or_fallen() {
        let t0 = Instant::now();
        let w = SystemTime::UNIX_EPOCH;
        let mut core = Core::new(
            config(vec![
                service("web", "203.0.113.0/24", 1),
                service("dns", "198.51.100.0/24", 1),
            ]),
            t0,
            w,
        );
        assert!(!core.settled(), "nothing decided at start");
        core.on_probe(&report(0, 0, CheckStatus::Up), w);
        core.evaluate(t0, w);
        assert!(!core.settled(), "dns still starting");
        for _ in 0..2 {
            core.on_probe(&report(1, 0, CheckStatus::Down), w);
        }
        core.evaluate(t0, w);
        assert!(core.settled(), "web up and dns down are both decisions");
    }

    #[test]
    fn stop_drains_then_withdraws_everything() {
        let (t0, w, mut core) = web_up();
        assert!(!core.stop_settled(&[]));
        core.stop();
        core.evaluate(t0, w);
        assert!(!core.stop_settled(&[]), "draining first");
        assert_eq!(core.next_deadline(), Some(t0 + Duration::from_secs(5)));
        core.evaluate(t0 + Duration::from_secs(5), w);
        assert!(core.stop_settled(&[]));
    }

    #[test]
    fn reload_keeps_state_of_unchanged_services_and_starts_new_ones() {
        let (t0, w, mut core) = web_up();
        core.reconfigure(
            config(vec![
                service("dns", "198.51.100.0/24", 1),
                service("web", "203.0.113.0/24", 1),
            ]),
            t0,
            w,
        );
        let changes = core.evaluate(t0, w);
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!(core.index_of("web"), Some(1));
        assert!(core.announcing(1));
        assert!(!core.announcing(0));
    }

    #[test]
    fn removing_the_drain_file_key_by_reload_undrains_the_service() {
        let (t0, w, _) = web_up();
        let drained = ServiceConfig {
            drain_file: Some("/run/anyguard/web.drain".into()),
            ..service("web", "203.0.113.0/24", 1)
        };
        let mut core = Core::new(config(vec![drained]), t0, w);
        core.on_probe(&report(0, 0, CheckStatus::Up), w);
        core.set_drain_file(0, true);
        core.evaluate(t0, w);
        assert_eq!(core.drain_source(0), Some(DrainSource::File));
        // The operator takes `drain_file` out of the config: the shell polls only the
        // services that have one, so nothing else would ever clear the old presence.
        core.reconfigure(config(vec![service("web", "203.0.113.0/24", 1)]), t0, w);
        assert_eq!(core.drain_source(0), None);
        let t1 = t0 + Duration::from_secs(10);
        core.evaluate(t1, w);
        assert_eq!(core.services[0].machine.state(), State::Up);
        assert_eq!(core.desired().len(), 1);
    }

    #[test]
    fn a_reload_that_changes_a_checks_timing_keeps_its_state_and_history_for_the_resumed_runner() {
        let (t0, w, mut core) = web_up();
        let mut faster = service("web", "203.0.113.0/24", 1);
        faster.checks[0].interval = Duration::from_millis(500);
        faster.checks[0].timeout = Duration::from_millis(200);
        let mut added = check("c9");
        added.kind = CheckKind::File {
            path: "/run/ok".into(),
            invert: false,
        };
        faster.checks.push(added);
        let new = config(vec![faster]);
        // What the shell resumes the new runner from, and the records it writes, are
        // taken before the core takes the new config.
        let old_record = core.live_checks()[0][0].clone();
        let fork = core.fork_checks(&new);
        let resumed = fork.state("web", &new.services[0].checks[0]);
        assert_eq!(resumed.map(|s| s.status), Some(CheckStatus::Up));
        assert_eq!(
            fork.state("web", &new.services[0].checks[1]),
            None,
            "new check"
        );
        let records = fork.lives();
        core.reconfigure(Arc::clone(&new), t0, w);
        assert!(core.adopt_checks(fork));
        assert_eq!(core.live_checks(), records, "the new runner's records");
        assert!(
            !core.adopt_checks(core.fork_checks(&config(vec![]))),
            "a fork for another config"
        );
        // A result of the old runner still on its way lands in the old record only.
        let late = report(0, 0, CheckStatus::Down);
        assert!(old_record.record(late.seq, 0, 9, w, &late.outcome, RESULTS_KEPT));
        let st = core.service_status(t0, w, &[], &|_| GuardStatus::default());
        assert_eq!(st[0].checks[0].state, "up", "same name and target: kept");
        assert_eq!(
            (
                st[0].checks[0].last_results.len(),
                st[0].checks[0].fall_count
            ),
            (1, 0),
            "its history carried over, without the old runner's late result"
        );
        assert_eq!(st[0].checks[1].state, "unknown", "new check starts unknown");
        let again = core.fork_checks(core.config());
        assert_eq!(again.state("web", &new.services[0].checks[0]), resumed);
    }

    #[test]
    fn a_state_change_its_task_recorded_already_is_taken_in_without_a_second_entry() {
        let (t0, w, mut core) = web_up();
        let record = core.live_checks()[0][0].clone();
        let mut down = report(0, 0, CheckStatus::Down);
        down.state.failures = 2;
        down.transition = Some(crate::health::Transition {
            from: CheckStatus::Up,
            to: CheckStatus::Down,
        });
        // Its task recorded it, then one more failure after it, before the core took the
        // change in.
        let after = report(0, 0, CheckStatus::Down);
        for (event, failures) in [(&down, 2), (&after, 3)] {
            assert!(record.record(event.seq, 0, failures, w, &event.outcome, RESULTS_KEPT));
        }
        core.on_probe(&down, w);
        let changes = core.evaluate(t0, w);
        assert_eq!(changes.len(), 1);
        assert_ne!(changes[0].1.to, State::Up);
        let st = core.service_status(t0, w, &[], &|_| GuardStatus::default());
        assert_eq!(st[0].checks[0].state, "down");
        assert_eq!(
            (
                st[0].checks[0].last_results.len(),
                st[0].checks[0].fall_count
            ),
            (3, 3),
            "web_up's pass and the two failures, each once; the counters of the newest"
        );
    }

    #[test]
    fn operator_drain_and_undrain_by_name() {
        let (t0, w, mut core) = web_up();
        assert_eq!(
            core.drain("nope", false, String::new()),
            ControlOutcome::UnknownService("nope".into())
        );
        core.drain("web", false, "maintenance".into());
        core.evaluate(t0, w);
        let st = core.service_status(t0, w, &[("edge1".into(), true)], &|_| {
            GuardStatus::default()
        });
        assert_eq!(st[0].state, "draining");
        assert_eq!(st[0].announcements[0].state, "graceful-shutdown");
        core.undrain("web");
        core.evaluate(t0, w);
        assert_eq!(core.services[0].machine.state(), State::Up);
    }

    #[test]
    fn a_guarded_stop_keeps_a_held_service_and_a_forced_drain_stays_forced() {
        let (t0, w, mut core) = web_up();
        core.stop_guarded();
        assert_eq!(core.drain_source(0), Some(DrainSource::Stop));
        core.set_guard(
            0,
            GuardVerdict::Hold {
                reason: "needed".into(),
            },
        );
        core.evaluate(t0, w);
        assert_eq!(
            core.presentation(0),
            Presentation::Normal,
            "held: not drained"
        );
        assert!(
            !core.stop_settled(&[]),
            "announced and not held by the guard"
        );
        assert!(core.stop_settled(&["web"]));

        let (t0, w, mut core) = web_up();
        core.drain("web", true, "decommission".into());
        core.stop_guarded();
        assert!(matches!(
            core.drain_source(0),
            Some(DrainSource::Operator { force: true, .. })
        ));
        core.evaluate(t0, w);
        core.evaluate(t0 + Duration::from_secs(60), w);
        assert_eq!(core.presentation(0), Presentation::Withdrawn);
        assert!(core.stop_settled(&[]));
    }

    #[test]
    fn a_restored_drain_withdraws_before_the_first_announcement_and_never_replaces_a_new_one() {
        let t0 = Instant::now();
        let w = SystemTime::UNIX_EPOCH;
        let mut core = Core::new(config(vec![service("web", "203.0.113.0/24", 1)]), t0, w);
        assert!(!core.restore_drain("gone", false, true, String::new(), "restored".into()));
        assert!(core.restore_drain("web", false, true, "maint".into(), "restored".into()));
        // The checks pass before the first evaluation: nothing is announced all the same.
        core.on_probe(&report(0, 0, CheckStatus::Up), w);
        core.evaluate(t0, w);
        assert!(core.desired().is_empty());
        assert_eq!(
            core.services[0].machine.reason(),
            "drained by operator (restored): maint"
        );
        // A drain the operator made since is not overwritten by the saved one (a reload
        // re-applies the saved drains).
        core.drain("web", true, "newer".into());
        core.restore_drain("web", false, true, "maint".into(), "restored".into());
        assert_eq!(
            core.drain_source(0),
            Some(DrainSource::Operator {
                force: true,
                reason: "newer".into(),
                restored: None
            })
        );
    }

    /// `web` at a site of a fleet.
    fn fleet_core(t0: Instant, w: SystemTime) -> Core {
        let mut cfg = (*config(vec![service("web", "203.0.113.0/24", 1)])).clone();
        cfg.fleet = Some(FleetRef {
            path: "fleet.toml".into(),
            site: "a".into(),
            hand_over: crate::guard::hand_over::DEFAULT_HAND_OVER,
        });
        Core::new(Arc::new(cfg), t0, w)
    }

    #[test]
    fn a_restored_drain_the_guard_held_is_announced_again_and_goes_through_the_guard() {
        let (t0, w) = (Instant::now(), SystemTime::UNIX_EPOCH);
        let mut core = fleet_core(t0, w);
        // Unforced and not withdrawn before the restart: held by the guard then.
        core.restore_drain("web", false, false, "maint".into(), "restored".into());
        assert_eq!(core.drain_source(0), None, "not in force before announced");
        core.on_probe(&report(0, 0, CheckStatus::Up), w);
        core.evaluate(t0, w);
        assert!(
            !core.desired().is_empty(),
            "announced as before the restart"
        );
        // Armed: the guard sees the drain, and the next evaluation is due at once.
        assert!(matches!(
            core.drain_source(0),
            Some(DrainSource::Operator { force: false, .. })
        ));
        assert_eq!(core.next_deadline(), Some(t0));
        core.set_guard(
            0,
            GuardVerdict::Hold {
                reason: "0 of 3 sites".into(),
            },
        );
        core.evaluate(t0, w);
        assert_eq!(core.services[0].machine.state(), State::Held);
        assert!(!core.desired().is_empty(), "the guard holds it");
        assert_eq!(core.next_deadline(), None);
        assert_eq!(core.operator_drain_withdrawn(0), Some(false));
    }

    #[test]
    fn a_restored_drain_that_had_withdrawn_or_was_forced_is_never_announced_even_in_a_fleet() {
        let (t0, w) = (Instant::now(), SystemTime::UNIX_EPOCH);
        for (force, withdrawn) in [(false, true), (true, false)] {
            let mut core = fleet_core(t0, w);
            core.restore_drain("web", force, withdrawn, "m".into(), "restored".into());
            core.on_probe(&report(0, 0, CheckStatus::Up), w);
            core.evaluate(t0, w);
            assert!(
                core.desired().is_empty(),
                "force {force} withdrawn {withdrawn}"
            );
            assert_eq!(core.operator_drain_withdrawn(0), Some(true));
        }
    }

    #[test]
    fn a_stop_says_nothing_about_whether_an_operator_drain_withdrew() {
        let (t0, w, mut core) = web_up();
        core.drain("web", false, String::new());
        core.set_guard(0, GuardVerdict::Hold { reason: "x".into() });
        core.evaluate(t0, w);
        assert_eq!(core.operator_drain_withdrawn(0), Some(false));
        core.stop();
        core.evaluate(t0 + Duration::from_secs(60), w);
        assert_eq!(core.operator_drain_withdrawn(0), None);
    }

    fn disabled(mut svc: ServiceConfig) -> ServiceConfig {
        svc.disabled = true;
        svc
    }

    #[test]
    fn a_disabled_service_is_never_announced_even_when_its_checks_pass() {
        let t0 = Instant::now();
        let w = SystemTime::UNIX_EPOCH;
        let cfg = config(vec![disabled(service("web", "203.0.113.0/24", 1))]);
        let mut core = Core::new(cfg, t0, w);
        for _ in 0..2 {
            core.on_probe(&report(0, 0, CheckStatus::Up), w);
            core.evaluate(t0, w);
        }
        assert!(core.desired().is_empty(), "{:?}", core.desired());
        assert!(!core.announcing(0));
        assert_eq!(core.drain_source(0), Some(DrainSource::Disabled));
        let st = core.service_status(t0, w, &[("edge1".into(), true)], &|_| {
            GuardStatus::default()
        });
        assert_eq!(st[0].state, "drained");
        assert_eq!(st[0].reason, "service disabled in the config");
        assert_eq!(st[0].announcements[0].state, "withdrawn");
    }

    #[test]
    fn disabling_an_announced_service_by_reload_drains_it_then_withdraws_it() {
        let (t0, w, mut core) = web_up();
        assert!(core.announcing(0));
        core.reconfigure(
            config(vec![disabled(service("web", "203.0.113.0/24", 1))]),
            t0,
            w,
        );
        core.evaluate(t0, w);
        assert_eq!(core.presentation(0), Presentation::GracefulShutdown);
        core.evaluate(t0 + Duration::from_secs(5), w);
        assert!(core.desired().is_empty());
        assert_eq!(core.services[0].machine.state(), State::Drained);
        // Enabled again: announced as soon as the hold-down after the drain has passed.
        core.reconfigure(config(vec![service("web", "203.0.113.0/24", 1)]), t0, w);
        core.evaluate(t0 + Duration::from_secs(7), w);
        assert_eq!(core.services[0].machine.state(), State::Up);
        assert_eq!(core.desired().len(), 1);
    }

    #[test]
    fn disabling_the_last_announcing_site_by_reload_is_held_when_the_guard_refuses() {
        let (t0, w, mut core) = web_up();
        core.reconfigure(
            config(vec![disabled(service("web", "203.0.113.0/24", 1))]),
            t0,
            w,
        );
        core.set_guard(
            0,
            GuardVerdict::Hold {
                reason: "would leave 0 of 3 sites announcing".into(),
            },
        );
        core.evaluate(t0 + Duration::from_secs(10), w);
        assert_eq!(core.services[0].machine.state(), State::Held);
        assert_eq!(core.presentation(0), Presentation::Normal);
        assert_eq!(
            core.services[0].machine.reason(),
            "service disabled in the config, but would leave 0 of 3 sites announcing"
        );
    }

    fn prefixes(rib: &RibOut) -> Vec<String> {
        rib.keys().map(ToString::to_string).collect()
    }

    #[test]
    fn a_reload_removing_a_service_keeps_its_routes_as_a_pending_removal_until_the_guard_lets_go() {
        let (t0, w, mut core) = web_up();
        core.guard_removals(true);
        let before = core.desired();
        core.reconfigure(config(vec![service("dns", "198.51.100.0/24", 1)]), t0, w);
        core.evaluate(t0 + Duration::from_secs(60), w);
        assert_eq!(core.desired(), before, "held: same route, same attributes");
        let pending = core.pending_removals();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].service, "web");
        assert_eq!(pending[0].key(), "web 203.0.113.0/24");
        // The guard allows it: the route leaves.
        assert!(core.complete_removal("web 203.0.113.0/24").is_some());
        assert!(core.desired().is_empty(), "{:?}", core.desired());
        assert!(core.pending_removals().is_empty());
    }

    #[test]
    fn a_reload_changing_a_prefix_announces_the_new_one_at_once_and_keeps_the_old_pending() {
        let (t0, w, mut core) = web_up();
        core.guard_removals(true);
        core.reconfigure(config(vec![service("web", "198.51.100.0/24", 1)]), t0, w);
        core.evaluate(t0, w);
        assert_eq!(
            prefixes(&core.desired()),
            ["198.51.100.0/24", "203.0.113.0/24"]
        );
        assert_eq!(
            core.pending_removals()[0].prefixes(),
            ["203.0.113.0/24".parse::<ipnet::IpNet>().unwrap()]
        );
        core.complete_removal("web 203.0.113.0/24");
        assert_eq!(prefixes(&core.desired()), ["198.51.100.0/24"]);
    }

    #[test]
    fn a_removed_prefix_configured_again_is_no_longer_pending_once_announced_again() {
        let (t0, w, mut core) = web_up();
        core.guard_removals(true);
        core.reconfigure(config(vec![]), t0, w);
        assert_eq!(core.pending_removals().len(), 1);
        // Back in the config: a new service slot, starting; the pending route stays until
        // it announces the prefix itself.
        core.reconfigure(config(vec![service("web", "203.0.113.0/24", 1)]), t0, w);
        assert_eq!(core.pending_removals().len(), 1);
        assert_eq!(core.desired().len(), 1);
        core.on_probe(&report(0, 0, CheckStatus::Up), w);
        core.evaluate(t0, w);
        assert!(core.pending_removals().is_empty());
        assert_eq!(core.desired().len(), 1);
        // A prefix kept by a service that stays up is never pending.
        core.reconfigure(
            config(vec![
                service("web", "203.0.113.0/24", 1),
                service("dns", "198.51.100.0/24", 1),
            ]),
            t0,
            w,
        );
        assert!(core.pending_removals().is_empty());
    }

    #[test]
    fn without_a_guard_a_reload_withdraws_what_it_removes_at_once() {
        let (t0, w, mut core) = web_up();
        core.reconfigure(config(vec![]), t0, w);
        assert!(core.pending_removals().is_empty());
        assert!(core.desired().is_empty());
    }

    #[test]
    fn a_stop_withdraws_pending_removals_too() {
        let (t0, w, mut core) = web_up();
        core.guard_removals(true);
        core.reconfigure(config(vec![]), t0, w);
        core.stop();
        assert!(core.desired().is_empty());
        assert_eq!(core.pending_removals().len(), 1, "kept for a state file");
    }

    #[test]
    fn a_renamed_service_keeps_the_old_route_pending_until_the_new_one_announces_it() {
        let (t0, w, mut core) = web_up();
        core.guard_removals(true);
        let before = core.desired();
        core.reconfigure(config(vec![service("www", "203.0.113.0/24", 1)]), t0, w);
        core.evaluate(t0, w);
        assert_eq!(
            core.desired(),
            before,
            "www still starting: web's route stays"
        );
        assert_eq!(core.pending_removals()[0].service, "web");
        core.on_probe(&report(0, 0, CheckStatus::Up), w);
        core.evaluate(t0, w);
        assert!(core.pending_removals().is_empty(), "www announces it now");
        assert_eq!(prefixes(&core.desired()), ["203.0.113.0/24"]);
    }

    #[test]
    fn removing_the_last_peer_of_a_family_makes_its_routes_pending_and_needs_that_peer() {
        let t0 = Instant::now();
        let w = SystemTime::UNIX_EPOCH;
        let web = ServiceConfig {
            checks: vec![check("c0")],
            ..crate::config::testing::service_config(
                "web",
                &["203.0.113.0/24", "2001:db8:100::/48"],
            )
        };
        let up4 = crate::config::testing::peer_config("up4", true, false);
        let up6 = crate::config::testing::peer_config("up6", false, true);
        let with_peers = |peers: Vec<crate::config::PeerConfig>| {
            let mut c = (*config(vec![web.clone()])).clone();
            c.peers = peers;
            Arc::new(c)
        };
        let mut core = Core::new(with_peers(vec![up4.clone(), up6.clone()]), t0, w);
        core.guard_removals(true);
        core.on_probe(&report(0, 0, CheckStatus::Up), w);
        core.evaluate(t0, w);
        let before = core.desired();
        assert_eq!(before.len(), 2);
        core.reconfigure(with_peers(vec![up4.clone()]), t0, w);
        core.evaluate(t0, w);
        assert_eq!(core.desired(), before, "nothing changes on the wire yet");
        assert_eq!(core.pending_removals()[0].key(), "web 2001:db8:100::/48");
        assert!(
            core.needs_peer(&up6),
            "up6 is the only way the route stays announced"
        );
        assert!(!core.needs_peer(&up4));
        core.complete_removal("web 2001:db8:100::/48");
        assert!(!core.needs_peer(&up6));
        assert_eq!(prefixes(&core.desired()), ["203.0.113.0/24"]);
    }

    #[test]
    fn a_guarded_stop_keeps_pending_removals_under_the_guard() {
        let (t0, w, mut core) = web_up();
        core.guard_removals(true);
        core.reconfigure(config(vec![]), t0, w);
        core.stop_guarded();
        assert_eq!(prefixes(&core.desired()), ["203.0.113.0/24"]);
        core.complete_removal("web 203.0.113.0/24");
        assert!(core.desired().is_empty());
    }
}
