//! What the coordinator does on the host besides BGP: state-change hooks and service
//! addresses (`docs/config.md`, "Local actions"). The ordering rules live in
//! [`crate::local_addr`]; this is the glue that runs them from the shell's loop.

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

impl LocalActions {
    pub(super) fn start(services: &[ServiceConfig], dry_run: bool) -> Self {
        LocalActions {
            hooks: Hooks::start(services),
            ledger: Ledger::default(),
            ip: IpCommand::default(),
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
