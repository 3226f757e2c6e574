//! The checks' live records and the health runners that write them (issue 13): each
//! check task records its results itself into its check's [`LiveCheck`]
//! (`status::record`), so a record belongs to one runner. A reload that restarts the
//! runner gives the new one copies ([`Core::fork_checks`]) and the core takes them once it
//! runs the new config ([`Core::adopt_checks`]): a result of the old runner still on its
//! way then lands in a record nobody reads any more, never in the new one or in the record
//! of whatever check now has its index (and once the old runner is stopped, its recorder
//! is retired and records nothing at all, nor creates a metrics series: `status::record`).

use std::sync::Arc;

use crate::config::{CheckConfig, Config};
use crate::health::{same_check, CheckState};
use crate::status::model::LiveCheck;

use super::{CheckSlot, Core, RESULTS_KEPT};

/// The records and resumed states of a health runner started for a new config, before
/// the core takes that config.
#[derive(Debug)]
pub struct CheckFork {
    config: Arc<Config>,
    /// Per service, per check of `config`: its record, and the state it continues from
    /// (`None`: a new check, which starts unknown).
    checks: Vec<Vec<(LiveCheck, Option<CheckState>)>>,
}

impl CheckFork {
    /// The state the check `check` of service `service` of the new config continues
    /// from, for [`HealthRunner::start_built`](crate::health::HealthRunner::start_built):
    /// a reload must not send checks back to unknown (their services' guard would then
    /// see them as failing). The same as its record's copy says.
    pub fn state(&self, service: &str, check: &CheckConfig) -> Option<CheckState> {
        let i = self
            .config
            .services
            .iter()
            .position(|s| s.name == service)?;
        let k = self.config.services[i]
            .checks
            .iter()
            .position(|c| same_check(c, check))?;
        self.checks.get(i)?.get(k)?.1
    }

    /// The records, per service and check, for the new runner's recorder.
    pub fn lives(&self) -> Vec<Vec<LiveCheck>> {
        self.checks
            .iter()
            .map(|s| s.iter().map(|(live, _)| live.clone()).collect())
            .collect()
    }
}

impl Core {
    /// The checks' records, per service and check, for the recorder of the health
    /// runner started with the core's config.
    pub fn live_checks(&self) -> Vec<Vec<LiveCheck>> {
        self.services
            .iter()
            .map(|s| s.checks.iter().map(|c| c.live.clone()).collect())
            .collect()
    }

    /// Records for a health runner started for `config`, before the core takes it
    /// ([`Core::reconfigure`]): a check that continues one of the running config (same
    /// service name, same check name and target, [`same_check`], as `reconfigure` keeps
    /// it) gets a copy of its record and continues from the core's state with the
    /// record's counters, read together; any other starts empty.
    pub fn fork_checks(&self, config: &Arc<Config>) -> CheckFork {
        let checks = config
            .services
            .iter()
            .map(|svc| {
                svc.checks
                    .iter()
                    .map(|c| match self.running_check(&svc.name, c) {
                        Some((slot, old)) => {
                            let (live, (passes, failures)) = slot.live.fork(RESULTS_KEPT);
                            let state = CheckState {
                                status: slot.state,
                                passes,
                                failures,
                                rise: old.rise,
                                fall: old.fall,
                            };
                            (live, Some(state))
                        }
                        None => (LiveCheck::new(RESULTS_KEPT), None),
                    })
                    .collect()
            })
            .collect();
        CheckFork {
            config: Arc::clone(config),
            checks,
        }
    }

    /// After [`Core::reconfigure`] took the config `fork` was made for, and its runner
    /// started: the checks' records are the fork's from now on. A fork for another
    /// config changes nothing (false).
    pub fn adopt_checks(&mut self, fork: CheckFork) -> bool {
        if !Arc::ptr_eq(&fork.config, &self.config) {
            return false;
        }
        for (i, checks) in fork.checks.into_iter().enumerate() {
            let Some(service) = self.services.get_mut(i) else {
                break;
            };
            for (slot, (live, _)) in service.checks.iter_mut().zip(checks) {
                slot.live = live;
            }
            // Its entry is built again with the new records.
            self.dirty_status(i);
        }
        true
    }

    /// The running check that `check` of service `service` continues, with its config.
    fn running_check(
        &self,
        service: &str,
        check: &CheckConfig,
    ) -> Option<(&CheckSlot, &CheckConfig)> {
        let i = self.index_of(service)?;
        let old = &self.config.services[i];
        let k = old.checks.iter().position(|o| same_check(o, check))?;
        Some((self.services.get(i)?.checks.get(k)?, &old.checks[k]))
    }
}
