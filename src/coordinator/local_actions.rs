//! What the coordinator does on the host besides BGP: state-change hooks and service
//! addresses (`docs/config.md`, "Local actions"). The ordering rules live in
//! [`crate::local_addr`]; this is the glue that runs them from the shell's loop.
//!
//! The `ip` calls run in an address task of their own, one after the other, fed by a
//! channel of [`AddressAction`]s; each outcome comes back as an [`AddressDone`] that the
//! loop records. The loop itself never waits for `ip` (up to `IP_TIMEOUT` per call), so a
//! service that turns sick meanwhile is withdrawn at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::core::Core;
use crate::announcer::{Presentation, RibOut};
use crate::config::ServiceConfig;
use crate::hooks::Hooks;
use crate::local_addr::{AddressAction, IpCommand, Ledger, Slot, Wish};
use crate::service::Change;
use crate::state::file::StateFile;
use crate::state::SavedAddress;

/// How long a stopping daemon waits for queued hooks (e.g. the last `drained`).
const HOOK_FINISH_WAIT: Duration = Duration::from_secs(5);

/// Hooks and addresses of the running config.
#[derive(Debug)]
pub(super) struct LocalActions {
    hooks: Hooks,
    ledger: Ledger,
    /// To the address task.
    jobs: mpsc::UnboundedSender<AddressAction>,
    task: JoinHandle<()>,
    /// The bound on one `ip` call, which bounds the waits at a stop.
    ip_timeout: Duration,
    dry_run: bool,
    /// Addresses an earlier run recorded in the state file, not looked at yet: once the
    /// initial routes are decided, those of services not announced are removed.
    stale: Vec<SavedAddress>,
    /// The config of the last [`LocalActions::sync`] that found no service address
    /// anywhere (then the next ones with the same config have nothing to do).
    synced_idle: Option<Arc<crate::config::Config>>,
}

/// An action the address task has carried out.
#[derive(Debug)]
pub(super) struct AddressDone {
    action: AddressAction,
    ok: bool,
}

/// What the established peers have confirmed as written: one entry per established peer,
/// `None` when it has not confirmed anything yet.
pub(super) type Confirmed = Vec<Option<Arc<RibOut>>>;

/// Whether every established peer has been sent a withdrawal of all of `prefixes` (or
/// never had them).
pub(super) fn withdrawn_everywhere(confirmed: &Confirmed, prefixes: &[IpNet]) -> bool {
    confirmed.iter().all(|rib| {
        rib.as_ref()
            .is_some_and(|r| prefixes.iter().all(|p| !r.contains_key(p)))
    })
}

/// Per peer, the last desired routes its *current session* confirmed as written.
///
/// A confirmation belongs to one session: once the session goes down or a new one is
/// established, the new session re-sends the whole desired set, so an entry of the old
/// session (say, without a prefix the new one is announcing) says nothing about what is
/// on the wire now, and must not let a service address go. Entries carry the session
/// number, and count only for the established session of that number: the peer status
/// (which says which session is established) and the event channel (which brings the
/// confirmations and the Down/Established events) are read at different times, so an
/// entry of the old session may still be here when the status already shows the new one.
#[derive(Debug, Default)]
pub(super) struct Flushes {
    /// Per peer: session number, the desired routes confirmed, and what that session's
    /// Adj-RIB-Out holds with them (`PeerEvent::Flushed::sent`).
    by_peer: HashMap<String, Confirmation>,
}

#[derive(Debug)]
struct Confirmation {
    session: u64,
    routes: Arc<RibOut>,
    sent: Arc<RibOut>,
}

impl Flushes {
    /// `peer`'s session number `session` confirmed `routes` as written
    /// (`PeerEvent::Flushed`).
    pub(super) fn flushed(
        &mut self,
        peer: String,
        session: u64,
        routes: Arc<RibOut>,
        sent: Arc<RibOut>,
    ) {
        self.by_peer.insert(
            peer,
            Confirmation {
                session,
                routes,
                sent,
            },
        );
    }

    /// What `peer`'s session number `session` confirmed.
    fn of(&self, peer: &str, session: u64) -> Option<&Confirmation> {
        self.by_peer.get(peer).filter(|c| c.session == session)
    }

    /// `peer`'s session went down or was (re-)established: what it confirmed before is
    /// forgotten.
    pub(super) fn session_changed(&mut self, peer: &str) {
        self.by_peer.remove(peer);
    }

    /// For each established peer (by name and session number), what it confirmed
    /// (`None`: nothing yet).
    pub(super) fn confirmed<'a>(
        &self,
        established: impl Iterator<Item = (&'a str, u64)>,
    ) -> Confirmed {
        established
            .map(|(name, session)| self.of(name, session).map(|c| Arc::clone(&c.routes)))
            .collect()
    }

    /// For each established peer (by name and session number) that confirmed a write,
    /// what its Adj-RIB-Out holds: the routes that are on the wire.
    pub(super) fn on_the_wire<'a>(
        &self,
        established: impl Iterator<Item = (&'a str, u64)>,
    ) -> Vec<Arc<RibOut>> {
        established
            .filter_map(|(name, session)| self.of(name, session).map(|c| Arc::clone(&c.sent)))
            .collect()
    }

    /// Whether every established peer confirmed `current`. A peer that is not established
    /// holds none of our routes, so there is nothing to wait for.
    pub(super) fn all_flushed<'a>(
        &self,
        mut established: impl Iterator<Item = (&'a str, u64)>,
        current: &Arc<RibOut>,
    ) -> bool {
        established.all(|(name, session)| {
            self.of(name, session)
                .is_some_and(|c| Arc::ptr_eq(&c.routes, current))
        })
    }
}

impl LocalActions {
    /// `ip`: what runs the address changes. The receiver yields the outcomes of the
    /// address task, for [`LocalActions::done`].
    /// `stale`: the addresses an earlier run recorded (the state file).
    pub(super) fn start(
        services: &[ServiceConfig],
        dry_run: bool,
        ip: IpCommand,
        stale: Vec<SavedAddress>,
    ) -> (Self, mpsc::UnboundedReceiver<AddressDone>) {
        let ip_timeout = ip.timeout();
        let (jobs, jobs_rx) = mpsc::unbounded_channel();
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(address_task(ip, dry_run, jobs_rx, done_tx));
        let local = LocalActions {
            hooks: Hooks::start(services),
            ledger: Ledger::default(),
            jobs,
            task,
            ip_timeout,
            dry_run,
            stale,
            synced_idle: None,
        };
        (local, done_rx)
    }

    pub(super) fn on_change(&self, service: &ServiceConfig, change: &Change) {
        if self.dry_run {
            if let Some(hook) = &service.hook {
                tracing::info!(
                    service = %service.name,
                    hook = %hook.argv.join(" "),
                    to = change.to.as_str(),
                    "dry run: would run the state-change hook"
                );
            }
            return;
        }
        self.hooks.on_change(service, change);
    }

    pub(super) fn reconfigure(&mut self, services: &[ServiceConfig]) {
        self.hooks.reconfigure(services);
    }

    /// When a failed address add is due to be tried again ([`Ledger::next_retry`]).
    pub(super) fn next_retry(&self, now: Instant) -> Option<Instant> {
        self.ledger.next_retry(now)
    }

    /// Starts what brings the service addresses in line with what `core` announces and
    /// tells `core` which services may be announced (the others' routes are held back).
    /// Never waits: the `ip` calls run in the address task. `initial_done`: the initial
    /// routes are decided (graceful restart's End-of-RIB is due), so the addresses an
    /// earlier run left for services that are not announced now may go.
    pub(super) fn sync(
        &mut self,
        core: &mut Core,
        confirmed: &Confirmed,
        state: &mut StateFile,
        initial_done: bool,
    ) {
        if initial_done && !self.stale.is_empty() {
            self.remove_stale(core, confirmed, state);
        }
        let config = Arc::clone(core.config());
        // Without any service address configured, installed, in flight or left by an
        // earlier run, every service is ready and there is nothing to plan: once a full
        // pass has said so for this config, skip the pass (issue 13).
        let idle = |this: &Self| {
            this.ledger.is_idle()
                && this.stale.is_empty()
                && !config.services.iter().any(|s| s.local_addresses.is_some())
        };
        if self
            .synced_idle
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(c, &config))
            && self.ledger.is_idle()
            && self.stale.is_empty()
        {
            return;
        }
        // Only the services with addresses (configured, installed or in flight) are
        // planned: the others have nothing to add or remove and are always ready.
        let involved = |ledger: &Ledger, s: &ServiceConfig| {
            s.local_addresses.is_some() || ledger.involves(&s.name)
        };
        let wishes: Vec<Wish<'_>> = config
            .services
            .iter()
            .enumerate()
            .filter(|(_, s)| involved(&self.ledger, s))
            .map(|(i, s)| Wish {
                config: s,
                announce: core.presentation(i) != Presentation::Withdrawn,
            })
            .collect();
        let withdrawn = |p: &[IpNet]| withdrawn_everywhere(confirmed, p);
        for action in self.ledger.plan(&wishes, Instant::now(), &withdrawn) {
            self.dispatch(action, state);
        }
        for (i, s) in config.services.iter().enumerate() {
            let ready = if involved(&self.ledger, s) {
                self.ledger.may_announce(s, core.addresses_ready(i))
            } else {
                true
            };
            core.set_addresses_ready(i, ready);
        }
        self.synced_idle = idle(self).then(|| Arc::clone(&config));
    }

    /// The address task carried out an action: recorded; the caller syncs again.
    pub(super) fn done(&mut self, core: &Core, done: &AddressDone, state: &mut StateFile) {
        let (AddressAction::Add { service, .. } | AddressAction::Remove { service, .. }) =
            &done.action;
        let config = core.config().services.iter().find(|s| &s.name == service);
        self.ledger
            .record(&done.action, config, done.ok, Instant::now());
        forget_removed(done, state);
    }

    /// The addresses an earlier run recorded: those of a service announced now belong to
    /// the ledger (it added them again, idempotently, before announcing); every other one
    /// is removed — the service is not up, or no longer has that address, or is no longer
    /// configured. Only recorded addresses go, never one an operator put there, and only
    /// once every established peer has confirmed routes without the service's prefixes
    /// (the initial routes and End-of-RIB are on the wire, so no router forwards to the
    /// address on the previous run's routes any more).
    fn remove_stale(&mut self, core: &Core, confirmed: &Confirmed, state: &mut StateFile) {
        for saved in std::mem::take(&mut self.stale) {
            // A service announced now with this address configured: the ledger added it
            // again (idempotently) before announcing, and records it under its own name.
            let owner = core.config().services.iter().enumerate().find(|(i, s)| {
                core.presentation(*i) != Presentation::Withdrawn
                    && s.local_addresses.as_ref().is_some_and(|la| {
                        la.interface == saved.interface && la.addresses.contains(&saved.address)
                    })
            });
            if let Some((_, s)) = owner {
                if s.name != saved.service {
                    // Moved to another service by a config change between the runs.
                    if let Err(e) = state.update(std::time::SystemTime::now(), |d| {
                        d.forget_address(&saved);
                    }) {
                        tracing::error!(error = %e, "cannot update the state file");
                    }
                }
                continue;
            }
            let prefixes = core
                .config()
                .services
                .iter()
                .find(|s| s.name == saved.service)
                .map_or(&[][..], |s| &s.prefixes[..]);
            if !withdrawn_everywhere(confirmed, prefixes) {
                self.stale.push(saved);
                continue;
            }
            tracing::info!(
                service = %saved.service,
                interface = %saved.interface,
                address = %saved.address,
                "removing a service address an earlier run left: its service is not up"
            );
            // Through the ledger's in-flight list, so the service is not announced while
            // its address is being removed (it is added again after, in turn).
            self.dispatch(
                AddressAction::Remove {
                    service: saved.service,
                    slot: Slot {
                        interface: saved.interface,
                        address: saved.address,
                    },
                },
                state,
            );
        }
    }

    fn dispatch(&mut self, action: AddressAction, state: &mut StateFile) {
        if let AddressAction::Add { service, slot } = &action {
            // Recorded before the add: should the daemon be killed right after `ip`, the
            // next start still knows the address is ours to remove.
            if let Err(e) = state.update(std::time::SystemTime::now(), |d| {
                d.record_address(saved(service, slot));
            }) {
                tracing::error!(error = %e, "cannot record a service address in the state file");
            }
        }
        // The task ends only after `finish` dropped the sender; should it have died
        // (a panic), the action is not in flight and is planned again next time.
        if self.jobs.send(action.clone()).is_ok() {
            self.ledger.started(action);
        }
    }

    /// At the end of a stop: every address left goes (the sessions are closed, so the
    /// withdrawals are out) once the actions in flight have ended, and queued hooks get a
    /// bounded time to finish. Every wait is bounded: each `ip` call is (`IP_TIMEOUT`
    /// unless the daemon was started with another bound). The addresses of the services
    /// in `kept` stay: their routes were not withdrawn (graceful restart keeps them at
    /// the routers), so the traffic they attract must still find the service; the state
    /// file keeps them recorded, for the next start to decide.
    pub(super) async fn finish(
        mut self,
        mut results: mpsc::UnboundedReceiver<AddressDone>,
        kept: &[String],
        state: &mut StateFile,
    ) {
        self.wait_idle(&mut results, state).await;
        for action in self.ledger.remove_all() {
            let AddressAction::Remove { service, .. } = &action else {
                continue;
            };
            if kept.contains(service) {
                continue;
            }
            self.dispatch(action, state);
        }
        self.wait_idle(&mut results, state).await;
        let LocalActions {
            hooks,
            jobs,
            task,
            ip_timeout,
            ..
        } = self;
        drop(jobs);
        if tokio::time::timeout(ip_timeout, task).await.is_err() {
            tracing::warn!("the address task did not stop in time");
        }
        hooks.finish(HOOK_FINISH_WAIT).await;
    }

    /// Records outcomes until nothing is in flight, for at most one `ip` call's bound per action
    /// (plus one, for the task's own scheduling).
    async fn wait_idle(
        &mut self,
        results: &mut mpsc::UnboundedReceiver<AddressDone>,
        state: &mut StateFile,
    ) {
        let calls = u32::try_from(self.ledger.in_flight()).unwrap_or(u32::MAX);
        let deadline =
            tokio::time::Instant::now() + self.ip_timeout.saturating_mul(calls.saturating_add(1));
        while self.ledger.busy() {
            match tokio::time::timeout_at(deadline, results.recv()).await {
                Ok(Some(done)) => {
                    self.ledger
                        .record(&done.action, None, done.ok, Instant::now());
                    forget_removed(&done, state);
                }
                Ok(None) | Err(_) => {
                    tracing::warn!("stopping: a service address change did not end in time");
                    return;
                }
            }
        }
    }
}

fn saved(service: &str, slot: &Slot) -> SavedAddress {
    SavedAddress {
        service: service.to_string(),
        interface: slot.interface.clone(),
        address: slot.address,
    }
}

/// A removal that succeeded is forgotten by the state file; a failed one stays, so the
/// next start tries again.
fn forget_removed(done: &AddressDone, state: &mut StateFile) {
    if let (AddressAction::Remove { service, slot }, true) = (&done.action, done.ok) {
        if let Err(e) = state.update(std::time::SystemTime::now(), |d| {
            d.forget_address(&saved(service, slot));
        }) {
            tracing::error!(error = %e, "cannot forget a removed service address in the state file");
        }
    }
}

/// The address task: runs each action in turn and reports it; ends when the coordinator
/// drops the sender (or stops listening).
async fn address_task(
    ip: IpCommand,
    dry_run: bool,
    mut jobs: mpsc::UnboundedReceiver<AddressAction>,
    done: mpsc::UnboundedSender<AddressDone>,
) {
    while let Some(action) = jobs.recv().await {
        let ok = apply(&ip, dry_run, &action).await;
        if done.send(AddressDone { action, ok }).is_err() {
            return;
        }
    }
}

async fn apply(ip: &IpCommand, dry_run: bool, action: &AddressAction) -> bool {
    let argv = ip.argv(action).join(" ");
    let (AddressAction::Add { service, .. } | AddressAction::Remove { service, .. }) = action;
    if dry_run {
        tracing::info!(%service, command = %argv, "dry run: would change a service address");
        return true;
    }
    match ip.apply(action).await {
        Ok(()) => {
            tracing::info!(%service, command = %argv, "service address changed");
            true
        }
        Err(e) => {
            match action {
                AddressAction::Add { .. } => tracing::error!(
                    %service, error = %e,
                    "cannot add a service address: its routes are held back (retrying)"
                ),
                AddressAction::Remove { .. } => tracing::error!(
                    %service, error = %e,
                    "cannot remove a service address: remove it by hand"
                ),
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::announcer::RouteAttrs;

    fn rib(prefixes: &[&str]) -> Option<Arc<RibOut>> {
        let attrs = RouteAttrs::plain();
        Some(Arc::new(
            prefixes
                .iter()
                .map(|p| (p.parse().unwrap_or_else(|e| panic!("{e}")), attrs.clone()))
                .collect(),
        ))
    }

    #[test]
    fn a_confirmation_of_a_previous_session_does_not_count_after_a_reset() {
        let web: Vec<IpNet> = vec!["203.0.113.0/24".parse().unwrap_or_else(|e| panic!("{e}"))];
        let mut flushes = Flushes::default();
        // The old session confirmed a set without the web prefix ...
        flushes.flushed(
            "edge".into(),
            1,
            rib(&[]).unwrap_or_default(),
            Arc::default(),
        );
        assert!(withdrawn_everywhere(
            &flushes.confirmed([("edge", 1)].into_iter()),
            &web
        ));
        // ... then went down and came back: the new session may be sending the prefix.
        flushes.session_changed("edge"); // PeerEvent::Down
        flushes.session_changed("edge"); // PeerEvent::Established
        assert_eq!(flushes.confirmed([("edge", 2)].into_iter()), vec![None]);
        assert!(
            !withdrawn_everywhere(&flushes.confirmed([("edge", 2)].into_iter()), &web),
            "the web address could go before the withdrawal is written"
        );
        // The new session's own confirmation counts.
        flushes.flushed(
            "edge".into(),
            2,
            rib(&[]).unwrap_or_default(),
            Arc::default(),
        );
        assert!(withdrawn_everywhere(
            &flushes.confirmed([("edge", 2)].into_iter()),
            &web
        ));
    }

    #[test]
    fn a_confirmation_counts_only_for_the_session_that_wrote_it() {
        let web: Vec<IpNet> = vec!["203.0.113.0/24".parse().unwrap_or_else(|e| panic!("{e}"))];
        let current = rib(&[]).unwrap_or_default();
        let mut flushes = Flushes::default();
        // Session 1 confirmed the withdrawal; the peer status already shows session 2
        // established, while its Down and Established events are still queued.
        flushes.flushed("edge".into(), 1, Arc::clone(&current), Arc::default());
        assert_eq!(flushes.confirmed([("edge", 2)].into_iter()), vec![None]);
        assert!(
            !withdrawn_everywhere(&flushes.confirmed([("edge", 2)].into_iter()), &web),
            "session 1's confirmation let the address go while session 2 may announce"
        );
        assert!(!flushes.all_flushed([("edge", 2)].into_iter(), &current));
        // Session 2's own confirmation counts.
        flushes.flushed("edge".into(), 2, Arc::clone(&current), Arc::default());
        assert!(flushes.all_flushed([("edge", 2)].into_iter(), &current));
        assert!(withdrawn_everywhere(
            &flushes.confirmed([("edge", 2)].into_iter()),
            &web
        ));
        // A confirmation sent while no session was up (0) never counts for one.
        flushes.flushed("edge".into(), 0, Arc::clone(&current), Arc::default());
        assert!(!flushes.all_flushed([("edge", 2)].into_iter(), &current));
    }

    #[test]
    fn a_peer_that_is_down_does_not_hold_up_the_stop() {
        let current = rib(&[]).unwrap_or_default();
        let mut flushes = Flushes::default();
        flushes.flushed("edge".into(), 1, Arc::clone(&current), Arc::default());
        flushes.flushed("core".into(), 2, Arc::clone(&current), Arc::default());
        flushes.session_changed("core"); // down: confirmation forgotten
        assert!(flushes.all_flushed([("edge", 1)].into_iter(), &current));
        assert!(
            !flushes.all_flushed([("edge", 1), ("core", 3)].into_iter(), &current),
            "an established peer without a confirmation of the current routes"
        );
        let older = rib(&[]).unwrap_or_default();
        assert!(!flushes.all_flushed([("edge", 1)].into_iter(), &older));
    }

    #[test]
    fn a_withdrawal_counts_as_sent_when_every_established_peer_confirmed_it() {
        let web: Vec<IpNet> = vec!["203.0.113.0/24".parse().unwrap_or_else(|e| panic!("{e}"))];
        assert!(withdrawn_everywhere(&vec![], &web), "no established peer");
        assert!(withdrawn_everywhere(
            &vec![rib(&[]), rib(&["198.51.100.0/24"])],
            &web
        ));
        assert!(!withdrawn_everywhere(
            &vec![rib(&[]), rib(&["203.0.113.0/24"])],
            &web
        ));
        assert!(
            !withdrawn_everywhere(&vec![rib(&[]), None], &web),
            "a peer that confirmed nothing yet may still be sending the announcement"
        );
    }
}
