//! Service addresses on a local interface (`local_addresses`): present exactly while the
//! service attracts traffic.
//!
//! Two rules, both about ordering against BGP:
//! - an address is added *before* the first announcement of its service — the coordinator
//!   keeps the service's routes out of the desired Adj-RIB-Out (and out of the guard's site
//!   report) until [`Ledger::ready`] says every address is in place, since announcing first
//!   would black-hole the traffic that arrives;
//! - an address is removed only *after* the withdrawal of its service has been sent to
//!   every established peer (the shell knows from the peers' flush confirmations), since
//!   removing first would refuse the traffic still on its way.
//!
//! [`Ledger`] is the pure part: what is installed, which actions are in flight, and from
//! the services' wishes the [`AddressAction`]s that bring the interface there.
//! [`IpCommand`] is the thin executor (`ip address replace|del`, each run bounded as a
//! [`BoundedCommand`]); the coordinator runs it in a task of its own and records each
//! outcome when it comes back, so no `ip` call ever holds up a withdrawal.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use crate::config::ServiceConfig;
use crate::process::BoundedCommand;

/// Time limit of one `ip` call.
pub const IP_TIMEOUT: Duration = Duration::from_secs(2);

/// A failed add is retried after this long (the routes stay held back meanwhile).
pub const ADD_RETRY: Duration = Duration::from_secs(1);

/// One address on one interface.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot {
    /// Interface name.
    pub interface: String,
    /// Host address (installed as /32 or /128).
    pub address: IpAddr,
}

/// What to do to the interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressAction {
    /// Add (idempotently) an address for `service`.
    Add {
        /// Owning service.
        service: String,
        /// Where.
        slot: Slot,
    },
    /// Remove an address `service` had added.
    Remove {
        /// Owning service.
        service: String,
        /// Where.
        slot: Slot,
    },
}

/// One service as the planner sees it.
#[derive(Debug, Clone, Copy)]
pub struct Wish<'a> {
    /// The service's config.
    pub config: &'a ServiceConfig,
    /// The desired Adj-RIB-Out announces the service (in any form).
    pub announce: bool,
}

#[derive(Debug, Clone, Default)]
struct Installed {
    slots: BTreeSet<Slot>,
    /// The service's prefixes when its addresses were added: after a reload removed the
    /// service, this is what must be seen withdrawn before the addresses go.
    prefixes: Vec<IpNet>,
    last_add_failure: Option<Instant>,
}

/// What anyguard has installed, by service name, and what it is changing.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    services: BTreeMap<String, Installed>,
    /// Actions handed to the executor ([`Ledger::started`]) and not recorded yet.
    in_flight: Vec<AddressAction>,
}

impl Ledger {
    /// The actions that follow from `wishes` (every configured service) at `now`.
    /// `withdrawn(prefixes)` tells whether every established peer has been sent a
    /// withdrawal of all of `prefixes` (or never had them).
    pub fn plan(
        &self,
        wishes: &[Wish<'_>],
        now: Instant,
        withdrawn: &dyn Fn(&[IpNet]) -> bool,
    ) -> Vec<AddressAction> {
        let mut actions = Vec::new();
        for w in wishes {
            let name = &w.config.name;
            let installed = self.services.get(name);
            let have = installed.map(|i| &i.slots);
            let want: BTreeSet<Slot> = match &w.config.local_addresses {
                Some(la) if w.announce => la
                    .addresses
                    .iter()
                    .map(|&address| Slot {
                        interface: la.interface.clone(),
                        address,
                    })
                    .collect(),
                // Not announced any more: keep until the withdrawal is out.
                _ if !w.announce && !withdrawn(&w.config.prefixes) => {
                    have.cloned().unwrap_or_default()
                }
                _ => BTreeSet::new(),
            };
            let retry_ok = installed
                .and_then(|i| i.last_add_failure)
                .is_none_or(|t| now.duration_since(t) >= ADD_RETRY);
            if retry_ok {
                for slot in want.iter().filter(|s| have.is_none_or(|h| !h.contains(s))) {
                    actions.push(AddressAction::Add {
                        service: name.clone(),
                        slot: slot.clone(),
                    });
                }
            }
            for slot in have.into_iter().flatten().filter(|s| !want.contains(s)) {
                actions.push(AddressAction::Remove {
                    service: name.clone(),
                    slot: slot.clone(),
                });
            }
        }
        // Services a reload removed: their addresses go once their prefixes are withdrawn.
        for (name, installed) in &self.services {
            if wishes.iter().any(|w| &w.config.name == name) {
                continue;
            }
            if withdrawn(&installed.prefixes) {
                for slot in &installed.slots {
                    actions.push(AddressAction::Remove {
                        service: name.clone(),
                        slot: slot.clone(),
                    });
                }
            }
        }
        // An action in flight is not asked for twice; its outcome is recorded first.
        actions.retain(|a| !self.in_flight.contains(a));
        actions
    }

    /// When [`Ledger::plan`] may try a failed add again ([`ADD_RETRY`] after the
    /// failure): the earliest such time after `now`, if any. The coordinator wakes then:
    /// nothing else may (a probe result that changes nothing does not).
    pub fn next_retry(&self, now: Instant) -> Option<Instant> {
        self.services
            .values()
            .filter_map(|i| i.last_add_failure)
            .map(|t| t + ADD_RETRY)
            .filter(|&due| due > now)
            .min()
    }

    /// `action` was handed to the executor: [`Ledger::plan`] leaves it out until
    /// [`Ledger::record`]ed.
    pub fn started(&mut self, action: AddressAction) {
        self.in_flight.push(action);
    }

    /// Whether some action is in flight.
    pub fn busy(&self) -> bool {
        !self.in_flight.is_empty()
    }

    /// How many actions are in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Records the outcome of an action the executor ran.
    pub fn record(
        &mut self,
        action: &AddressAction,
        config: Option<&ServiceConfig>,
        ok: bool,
        now: Instant,
    ) {
        if let Some(i) = self.in_flight.iter().position(|a| a == action) {
            self.in_flight.remove(i);
        }
        match action {
            AddressAction::Add { service, slot } => {
                let entry = self.services.entry(service.clone()).or_default();
                if ok {
                    entry.slots.insert(slot.clone());
                    if let Some(c) = config {
                        entry.prefixes.clone_from(&c.prefixes);
                    }
                    entry.last_add_failure = None;
                } else {
                    entry.last_add_failure = Some(now);
                }
            }
            AddressAction::Remove { service, slot } => {
                // A failed removal is forgotten too: retrying would fail the same way,
                // and the log line says which address the operator must remove.
                let _ = ok;
                if let Some(entry) = self.services.get_mut(service) {
                    entry.slots.remove(slot);
                    if entry.slots.is_empty() && entry.last_add_failure.is_none() {
                        self.services.remove(service);
                    }
                }
            }
        }
    }

    /// Whether every configured address of `config` is installed, so its routes may go
    /// out. True for services without `local_addresses`.
    pub fn ready(&self, config: &ServiceConfig) -> bool {
        let Some(la) = &config.local_addresses else {
            return true;
        };
        let Some(installed) = self.services.get(&config.name) else {
            return false;
        };
        la.addresses.iter().all(|&address| {
            installed.slots.contains(&Slot {
                interface: la.interface.clone(),
                address,
            })
        })
    }

    /// Whether `config`'s routes may be announced while actions are in flight;
    /// `was_ready` is what the previous answer was.
    /// - an address of the service is being removed: no, the address is going away;
    /// - one is being added: unchanged — a service not announced yet waits for it, an
    ///   announced one (a reload gave it another address) is not withdrawn for it;
    /// - otherwise [`Ledger::ready`].
    pub fn may_announce(&self, config: &ServiceConfig, was_ready: bool) -> bool {
        let configured = |slot: &Slot| {
            config.local_addresses.as_ref().is_some_and(|la| {
                la.interface == slot.interface && la.addresses.contains(&slot.address)
            })
        };
        let mut adding = false;
        for action in &self.in_flight {
            match action {
                AddressAction::Remove { service, slot }
                    if *service == config.name && configured(slot) =>
                {
                    return false;
                }
                AddressAction::Add { service, .. } if *service == config.name => adding = true,
                _ => {}
            }
        }
        if adding {
            was_ready
        } else {
            self.ready(config)
        }
    }

    /// Whether the ledger has anything to do with service `name`: addresses installed or
    /// an action in flight. A service without `local_addresses` that it does not involve
    /// has nothing to plan and may always be announced ([`Ledger::plan`] and
    /// [`Ledger::may_announce`] would say so), so the coordinator skips it: its per-event
    /// work must not grow with the number of services (issue 13).
    pub fn involves(&self, name: &str) -> bool {
        self.services.contains_key(name)
            || self.in_flight.iter().any(|a| {
                let (AddressAction::Add { service, .. } | AddressAction::Remove { service, .. }) =
                    a;
                service == name
            })
    }

    /// Nothing installed and nothing in flight.
    pub fn is_idle(&self) -> bool {
        self.services.is_empty() && self.in_flight.is_empty()
    }

    /// Every installed address, for the final clean-up of a stopping daemon.
    pub fn remove_all(&self) -> Vec<AddressAction> {
        self.services
            .iter()
            .flat_map(|(name, i)| {
                i.slots.iter().map(move |slot| AddressAction::Remove {
                    service: name.clone(),
                    slot: slot.clone(),
                })
            })
            .collect()
    }
}

/// Runs `ip address …` for [`AddressAction`]s.
#[derive(Debug, Clone)]
pub struct IpCommand {
    /// The command and any leading arguments: `["ip"]`, or `["ip", "-n", "NS"]` in tests.
    prefix: Vec<String>,
    /// The bound on one call (`IP_TIMEOUT` unless a test widens it).
    timeout: Duration,
}

impl Default for IpCommand {
    fn default() -> Self {
        IpCommand::with_prefix(vec!["ip".to_string()])
    }
}

impl IpCommand {
    /// `ip` with leading arguments (e.g. `-n NETNS`).
    pub fn with_prefix(prefix: Vec<String>) -> Self {
        IpCommand {
            prefix,
            timeout: IP_TIMEOUT,
        }
    }

    /// The same command with another bound on each call.
    pub fn with_timeout(self, timeout: Duration) -> Self {
        IpCommand { timeout, ..self }
    }

    /// The bound on one call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The argv that carries out `action`.
    pub fn argv(&self, action: &AddressAction) -> Vec<String> {
        let (verb, slot) = match action {
            // `replace` is idempotent: an address left by a crashed predecessor is fine.
            AddressAction::Add { slot, .. } => ("replace", slot),
            AddressAction::Remove { slot, .. } => ("del", slot),
        };
        let host = match slot.address {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        let mut argv = self.prefix.clone();
        argv.extend(
            [
                "address",
                verb,
                &format!("{}/{host}", slot.address),
                "dev",
                &slot.interface,
            ]
            .map(String::from),
        );
        // IPv6 duplicate address detection would leave the address tentative (unusable)
        // for about a second on a non-loopback interface; an anycast address is
        // duplicated by design.
        if slot.address.is_ipv6() && matches!(action, AddressAction::Add { .. }) {
            argv.push("nodad".to_string());
        }
        argv
    }

    /// Carries out `action`; a removal of an address that is already gone succeeds.
    pub async fn apply(&self, action: &AddressAction) -> Result<(), String> {
        let command = BoundedCommand::new(self.argv(action), self.timeout);
        match command.run().await {
            Ok(_) => Ok(()),
            // iproute2's answers when the address is not there (IPv4; EADDRNOTAVAIL).
            Err(e)
                if matches!(action, AddressAction::Remove { .. })
                    && (e.contains("Address not found")
                        || e.contains("Cannot assign requested address")) =>
            {
                Ok(())
            }
            Err(e) => Err(format!("{}: {e}", command.display())),
        }
    }
}

#[cfg(test)]
#[path = "local_addr_tests.rs"]
mod tests;
