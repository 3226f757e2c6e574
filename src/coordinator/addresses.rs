//! Service addresses on a local interface (`loopback_addresses`): added before a service's
//! prefixes are announced, removed only after the withdrawal has been written to every
//! peer (operators' pain point: removing the address first resets in-flight connections
//! that routers are still sending here).
//!
//! The coordinator calls [`Addresses::reconcile`] after every loop turn. The order is
//! enforced through the [`Core`]: a service whose addresses are not confirmed present is
//! left out of the desired routes (`Core::set_addresses_present`), and removal waits for
//! every peer to confirm the routes without the service. Changes run as `ip addr replace`
//! / `ip addr del` (iproute2) in a task per change, bounded by [`IP_TIMEOUT`], and report
//! back to the coordinator through a channel; a failed addition is retried after
//! [`RETRY_AFTER`] and nothing is announced meanwhile. A dry run only logs.
//!
//! Left out: addresses of a service removed by a reload stay until exit; netlink (the
//! `ip` command keeps this free of `unsafe` and of a netlink dependency).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::core::Core;
use crate::announcer::RibOut;
use crate::config::LoopbackConfig;
use crate::health::probe::command::run_bounded;

/// Longest run of one `ip` command.
pub(super) const IP_TIMEOUT: Duration = Duration::from_secs(5);
/// Wait before trying a failed addition again.
pub(super) const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Add or remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Add,
    Remove,
}

/// A finished change, back to the coordinator.
#[derive(Debug)]
pub(super) struct Done {
    service: String,
    op: Op,
    config: LoopbackConfig,
    result: Result<(), String>,
}

#[derive(Debug, Default)]
struct Slot {
    /// What may be on the interface because we added it (removed when unwanted).
    on_interface: Option<LoopbackConfig>,
    /// The last addition of `on_interface` succeeded.
    confirmed: bool,
    busy: bool,
    retry_at: Option<Instant>,
}

/// The address state of every service with `loopback_addresses`.
#[derive(Debug)]
pub(super) struct Addresses {
    slots: HashMap<String, Slot>,
    done: mpsc::UnboundedSender<Done>,
    jobs: Vec<JoinHandle<()>>,
    dry_run: bool,
}

impl Addresses {
    pub(super) fn new(done: mpsc::UnboundedSender<Done>, dry_run: bool) -> Self {
        Addresses {
            slots: HashMap::new(),
            done,
            jobs: Vec::new(),
            dry_run,
        }
    }

    /// Starts whatever change the services need. `on_wire`: the routes published last, if
    /// every peer has confirmed them as written; a service whose prefixes are missing from
    /// them is withdrawn on the wire and may lose its addresses.
    pub(super) fn reconcile(&mut self, core: &mut Core, on_wire: Option<&RibOut>, now: Instant) {
        self.jobs.retain(|j| !j.is_finished());
        let config = std::sync::Arc::clone(core.config());
        for (i, service) in config.services.iter().enumerate() {
            let wanted = core.wants_announcement(i);
            let slot = self.slots.entry(service.name.clone()).or_default();
            if slot.busy {
                continue;
            }
            let action = match (&service.loopback, wanted) {
                (Some(lb), true) => {
                    if slot.confirmed && slot.on_interface.as_ref() == Some(lb) {
                        core.set_addresses_present(i, true);
                        None
                    } else if slot.retry_at.is_none_or(|t| now >= t) {
                        Some((Op::Add, lb.clone()))
                    } else {
                        None
                    }
                }
                _ => {
                    core.set_addresses_present(i, false);
                    let withdrawn = on_wire
                        .is_some_and(|r| !service.prefixes.iter().any(|p| r.contains_key(p)));
                    slot.on_interface
                        .clone()
                        .filter(|_| withdrawn)
                        .map(|lb| (Op::Remove, lb))
                }
            };
            if let Some((op, lb)) = action {
                self.start(&service.name, op, lb);
            }
        }
    }

    fn start(&mut self, service: &str, op: Op, config: LoopbackConfig) {
        let Some(slot) = self.slots.get_mut(service) else {
            return;
        };
        if op == Op::Add {
            // From now on the addresses may be there, whatever the outcome.
            slot.on_interface = Some(config.clone());
            slot.confirmed = false;
        }
        slot.busy = true;
        let done = Done {
            service: service.to_string(),
            op,
            config,
            result: Ok(()),
        };
        if self.dry_run {
            tracing::info!(
                service = %done.service,
                addresses = %list(&done.config),
                interface = %done.config.interface,
                "dry run: would {} the service addresses",
                if op == Op::Add { "add" } else { "remove" }
            );
            let _ = self.done.send(done);
            return;
        }
        let tx = self.done.clone();
        self.jobs.push(tokio::spawn(async move {
            let result = apply(op, &done.config).await;
            let _ = tx.send(Done { result, ..done });
        }));
    }

    /// A change finished.
    pub(super) fn on_done(&mut self, core: &mut Core, done: Done, now: Instant) {
        let Some(slot) = self.slots.get_mut(&done.service) else {
            return;
        };
        slot.busy = false;
        let index = core.index_of(&done.service);
        match (done.op, done.result) {
            (Op::Add, Ok(())) => {
                tracing::info!(
                    service = %done.service,
                    addresses = %list(&done.config),
                    interface = %done.config.interface,
                    "service addresses added"
                );
                slot.confirmed = true;
                slot.retry_at = None;
                if let Some(i) = index {
                    let still = core.config().services[i].loopback.as_ref() == Some(&done.config);
                    core.set_addresses_present(i, still && core.wants_announcement(i));
                }
            }
            (Op::Add, Err(e)) => {
                tracing::error!(
                    service = %done.service,
                    interface = %done.config.interface,
                    error = %e,
                    "cannot add the service addresses; not announcing, retrying in {}",
                    humantime::format_duration(RETRY_AFTER)
                );
                slot.retry_at = Some(now + RETRY_AFTER);
            }
            (Op::Remove, result) => {
                if let Err(e) = result {
                    tracing::warn!(service = %done.service, error = %e, "removing the service addresses");
                } else {
                    tracing::info!(
                        service = %done.service,
                        addresses = %list(&done.config),
                        interface = %done.config.interface,
                        "service addresses removed after the withdrawal"
                    );
                }
                if slot.on_interface.as_ref() == Some(&done.config) {
                    slot.on_interface = None;
                    slot.confirmed = false;
                }
            }
        }
    }

    /// When a failed addition is due again.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.slots
            .values()
            .filter(|s| !s.busy)
            .filter_map(|s| s.retry_at)
            .min()
    }

    /// At exit, once the sessions are closed: waits for running changes, then removes
    /// every address still on an interface, all bounded by `wait`.
    pub(super) async fn remove_all(
        &mut self,
        done: &mut mpsc::UnboundedReceiver<Done>,
        wait: Duration,
    ) {
        let deadline = tokio::time::Instant::now() + wait;
        for job in std::mem::take(&mut self.jobs) {
            if tokio::time::timeout_at(deadline, job).await.is_err() {
                break;
            }
        }
        // Removals that finished after the coordinator's last turn.
        while let Ok(d) = done.try_recv() {
            if let Some(slot) = self.slots.get_mut(&d.service) {
                if d.op == Op::Remove && slot.on_interface.as_ref() == Some(&d.config) {
                    slot.on_interface = None;
                }
            }
        }
        for (name, slot) in &mut self.slots {
            let Some(lb) = slot.on_interface.take() else {
                continue;
            };
            if self.dry_run {
                tracing::info!(service = %name, addresses = %list(&lb), "dry run: would remove the service addresses");
                continue;
            }
            match tokio::time::timeout_at(deadline, apply(Op::Remove, &lb)).await {
                Ok(Ok(())) => {
                    tracing::info!(service = %name, addresses = %list(&lb), "service addresses removed")
                }
                Ok(Err(e)) => {
                    tracing::warn!(service = %name, error = %e, "removing the service addresses")
                }
                Err(_) => {
                    tracing::warn!(service = %name, "removing the service addresses timed out")
                }
            }
        }
    }
}

fn list(lb: &LoopbackConfig) -> String {
    lb.addresses
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `ip addr replace|del ADDR dev IFACE` for every address: an addition stops at the
/// first failure, a removal tries them all.
async fn apply(op: Op, lb: &LoopbackConfig) -> Result<(), String> {
    let verb = match op {
        Op::Add => "replace",
        Op::Remove => "del",
    };
    let mut errors = Vec::new();
    for addr in &lb.addresses {
        let argv: Vec<String> = ["ip", "addr", verb, &addr.to_string(), "dev", &lb.interface]
            .iter()
            .map(|s| (*s).to_string())
            .collect();
        if let Err(e) = run_bounded(&argv, &[], IP_TIMEOUT).await {
            errors.push(format!("ip addr {verb} {addr} dev {}: {e}", lb.interface));
            if op == Op::Add {
                break;
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::SystemTime;

    use super::*;
    use crate::config::load_str;
    use crate::health::{CheckEvent, CheckState, CheckStatus, ProbeOutcome};

    fn core() -> Core {
        let text = r#"router_id = "198.18.0.2"
local_asn = 65010
[[service]]
name = "web"
prefixes = ["203.0.113.0/24"]
loopback_addresses = ["203.0.113.10"]
[[service.check]]
type = "command"
argv = ["true"]
"#;
        let config = load_str(text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
        Core::new(Arc::new(config), Instant::now(), SystemTime::UNIX_EPOCH)
    }

    fn health(core: &mut Core, up: bool) {
        let status = if up {
            CheckStatus::Up
        } else {
            CheckStatus::Down
        };
        core.on_probe(
            &CheckEvent {
                service: 0,
                check: 0,
                outcome: ProbeOutcome {
                    ok: up,
                    latency: Duration::ZERO,
                    detail: String::new(),
                },
                state: CheckState {
                    status,
                    passes: 0,
                    failures: 0,
                    rise: 2,
                    fall: 2,
                },
                transition: None,
            },
            SystemTime::UNIX_EPOCH,
        );
        core.evaluate(Instant::now(), SystemTime::UNIX_EPOCH);
    }

    /// One reconcile step in dry-run mode (no command runs); the finished changes.
    fn step(
        a: &mut Addresses,
        rx: &mut mpsc::UnboundedReceiver<Done>,
        core: &mut Core,
        on_wire: Option<&RibOut>,
    ) -> Vec<Op> {
        a.reconcile(core, on_wire, Instant::now());
        let mut ops = Vec::new();
        while let Ok(d) = rx.try_recv() {
            ops.push(d.op);
            a.on_done(core, d, Instant::now());
        }
        ops
    }

    #[test]
    fn addresses_come_before_the_announcement_and_go_only_once_the_withdrawal_is_on_the_wire() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut a = Addresses::new(tx, true);
        let mut core = core();
        assert_eq!(
            step(&mut a, &mut rx, &mut core, None),
            vec![],
            "starting: nothing wanted"
        );

        health(&mut core, true);
        assert!(core.desired().is_empty(), "not before the addresses");
        assert_eq!(step(&mut a, &mut rx, &mut core, None), vec![Op::Add]);
        assert_eq!(step(&mut a, &mut rx, &mut core, None), vec![]);
        let announced = core.desired();
        assert_eq!(announced.len(), 1);

        health(&mut core, false);
        assert!(core.desired().is_empty());
        // The peers have not confirmed anything, or still have the route: keep them.
        assert_eq!(step(&mut a, &mut rx, &mut core, None), vec![]);
        assert_eq!(step(&mut a, &mut rx, &mut core, Some(&announced)), vec![]);
        // Every peer wrote the routes without the service: now they go, once.
        let empty = RibOut::new();
        assert_eq!(
            step(&mut a, &mut rx, &mut core, Some(&empty)),
            vec![Op::Remove]
        );
        assert_eq!(step(&mut a, &mut rx, &mut core, Some(&empty)), vec![]);
    }

    #[test]
    fn a_failed_addition_keeps_the_service_unannounced_until_a_retry_succeeds() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut a = Addresses::new(tx, false);
        let mut core = core();
        health(&mut core, true);
        let now = Instant::now();
        a.slots.insert(
            "web".into(),
            Slot {
                busy: true,
                ..Slot::default()
            },
        );
        a.on_done(
            &mut core,
            Done {
                service: "web".into(),
                op: Op::Add,
                config: LoopbackConfig {
                    interface: "lo".into(),
                    addresses: vec!["203.0.113.10/32".parse().unwrap()],
                },
                result: Err("no such device".into()),
            },
            now,
        );
        assert!(core.desired().is_empty());
        assert_eq!(a.next_deadline(), Some(now + RETRY_AFTER));
        // Not retried before the deadline.
        a.reconcile(&mut core, None, now);
        assert!(rx.try_recv().is_err());
        assert!(core.desired().is_empty());
    }
}
