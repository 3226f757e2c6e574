//! What the coordinator does on the host besides BGP: state-change hooks and service
//! addresses (`docs/config.md`, "Local actions"). The ordering rules live in
//! [`crate::local_addr`]; this is the glue that runs them from the shell's loop.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use super::core::Core;
use crate::announcer::{Presentation, RibOut};
use crate::config::ServiceConfig;
use crate::hooks::Hooks;
use crate::local_addr::{AddressAction, IpCommand, Ledger, Wish};
use crate::service::Change;

/// How long a stopping daemon waits for queued hooks (e.g. the last `drained`).
const HOOK_FINISH_WAIT: Duration = Duration::from_secs(5);

/// Hooks and addresses of the running config.
#[derive(Debug)]
pub(super) struct LocalActions {
    hooks: Hooks,
    ledger: Ledger,
    ip: IpCommand,
    dry_run: bool,
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
/// on the wire now, and must not let a service address go.
#[derive(Debug, Default)]
pub(super) struct Flushes {
    by_peer: HashMap<String, Arc<RibOut>>,
}

impl Flushes {
    /// `peer` confirmed `routes` as written (`PeerEvent::Flushed`).
    pub(super) fn flushed(&mut self, peer: String, routes: Arc<RibOut>) {
        self.by_peer.insert(peer, routes);
    }

    /// `peer`'s session went down or was (re-)established: what it confirmed before is
    /// forgotten.
    pub(super) fn session_changed(&mut self, peer: &str) {
        self.by_peer.remove(peer);
    }

    /// For each established peer (by name), what it confirmed (`None`: nothing yet).
    pub(super) fn confirmed<'a>(&self, established: impl Iterator<Item = &'a str>) -> Confirmed {
        established
            .map(|name| self.by_peer.get(name).cloned())
            .collect()
    }

    /// Whether every established peer confirmed `current`. A peer that is not established
    /// holds none of our routes, so there is nothing to wait for.
    pub(super) fn all_flushed<'a>(
        &self,
        mut established: impl Iterator<Item = &'a str>,
        current: &Arc<RibOut>,
    ) -> bool {
        established.all(|name| {
            self.by_peer
                .get(name)
                .is_some_and(|r| Arc::ptr_eq(r, current))
        })
    }
}

impl LocalActions {
    /// `ip_command`: the `ip` program and leading arguments; `None` for `ip` from `PATH`.
    pub(super) fn start(
        services: &[ServiceConfig],
        dry_run: bool,
        ip_command: Option<Vec<String>>,
    ) -> Self {
        LocalActions {
            hooks: Hooks::start(services),
            ledger: Ledger::default(),
            ip: ip_command.map_or_else(IpCommand::default, IpCommand::with_prefix),
            dry_run,
        }
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

    /// Brings the service addresses in line with what `core` announces and tells `core`
    /// which services have theirs in place (the others' routes are held back).
    pub(super) async fn sync(&mut self, core: &mut Core, confirmed: &Confirmed) {
        let config = Arc::clone(core.config());
        let wishes: Vec<Wish<'_>> = config
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| Wish {
                config: s,
                announce: core.presentation(i) != Presentation::Withdrawn,
            })
            .collect();
        let withdrawn = |p: &[IpNet]| withdrawn_everywhere(confirmed, p);
        let actions = self.ledger.plan(&wishes, Instant::now(), &withdrawn);
        for action in actions {
            let service = config.services.iter().find(|s| match &action {
                AddressAction::Add { service, .. } | AddressAction::Remove { service, .. } => {
                    &s.name == service
                }
            });
            let ok = self.apply(&action).await;
            self.ledger.record(&action, service, ok, Instant::now());
        }
        for (i, s) in config.services.iter().enumerate() {
            core.set_addresses_ready(i, self.ledger.ready(s));
        }
    }

    async fn apply(&self, action: &AddressAction) -> bool {
        let argv = self.ip.argv(action).join(" ");
        let (AddressAction::Add { service, .. } | AddressAction::Remove { service, .. }) = action;
        if self.dry_run {
            tracing::info!(%service, command = %argv, "dry run: would change a service address");
            return true;
        }
        match self.ip.apply(action).await {
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

    /// At the end of a stop: every address left goes (the sessions are closed, so the
    /// withdrawals are out), and queued hooks get a bounded time to finish.
    pub(super) async fn finish(mut self) {
        for action in self.ledger.remove_all() {
            let ok = self.apply(&action).await;
            self.ledger.record(&action, None, ok, Instant::now());
        }
        self.hooks.finish(HOOK_FINISH_WAIT).await;
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
        flushes.flushed("edge".into(), rib(&[]).unwrap_or_default());
        assert!(withdrawn_everywhere(
            &flushes.confirmed(["edge"].into_iter()),
            &web
        ));
        // ... then went down and came back: the new session may be sending the prefix.
        flushes.session_changed("edge"); // PeerEvent::Down
        flushes.session_changed("edge"); // PeerEvent::Established
        assert_eq!(flushes.confirmed(["edge"].into_iter()), vec![None]);
        assert!(
            !withdrawn_everywhere(&flushes.confirmed(["edge"].into_iter()), &web),
            "the web address could go before the withdrawal is written"
        );
        // The new session's own confirmation counts.
        flushes.flushed("edge".into(), rib(&[]).unwrap_or_default());
        assert!(withdrawn_everywhere(
            &flushes.confirmed(["edge"].into_iter()),
            &web
        ));
    }

    #[test]
    fn a_peer_that_is_down_does_not_hold_up_the_stop() {
        let current = rib(&[]).unwrap_or_default();
        let mut flushes = Flushes::default();
        flushes.flushed("edge".into(), Arc::clone(&current));
        flushes.flushed("core".into(), Arc::clone(&current));
        flushes.session_changed("core"); // down: confirmation forgotten
        assert!(flushes.all_flushed(["edge"].into_iter(), &current));
        assert!(
            !flushes.all_flushed(["edge", "core"].into_iter(), &current),
            "an established peer without a confirmation of the current routes"
        );
        let older = rib(&[]).unwrap_or_default();
        assert!(!flushes.all_flushed(["edge"].into_iter(), &older));
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
