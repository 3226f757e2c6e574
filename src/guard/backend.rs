//! The fleet backend: how this site learns about the others and how it gets leave to
//! withdraw. One interface, two backends of the same guarantees (`docs/guard.md`):
//!
//! - **poll** (default): the [poller](super::poller) fetches every other site's report;
//!   decisions by [`runtime::decide`] with the intent protocol;
//! - **etcd**: the [driver](super::etcd) keeps a lease, publishes this site's records and
//!   watches the others'; decisions by [`store::decide`], a withdrawal only after its
//!   transaction committed.
//!
//! Both publish a [`FleetView`] on a watch channel (the coordinator wakes on it; the
//! config guard and `/status` read it), both take this site's latest report after each
//! publication ([`FleetBackend::published`]), and both answer with the same
//! [`Decision`]s, so the coordinator, the service state machine, the report and `/status`
//! do not depend on the backend.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::etcd::{self, EtcdDriverConfig, EtcdOutputs};
use super::fleet::{BackendSettings, EtcdSettings, Fleet};
use super::poller::{self, PollerConfig};
use super::report::SiteReport;
use super::runtime::{self, Decision, GuardInput};
use super::store::{self, Layout, StoreState};
use super::view::FleetView;
use crate::status::model::{GuardStatus, StoreStatus};

/// The running backend of one site.
#[derive(Debug)]
pub struct FleetBackend {
    view: watch::Receiver<FleetView>,
    shutdown: watch::Sender<bool>,
    /// The hand-over of the latest decision, for the etcd driver's withdrawal plans
    /// (the poll mesh decides in the coordinator only).
    hand_over: watch::Sender<Duration>,
    task: JoinHandle<()>,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Poll {
        /// Bumped to ask for an immediate round (after publishing an intent).
        poll_now: watch::Sender<u64>,
    },
    Etcd {
        settings: Box<EtcdSettings>,
        layout: Layout,
        /// The other sites with their fleet ranks.
        others: Vec<(usize, String)>,
        state: watch::Receiver<StoreState>,
        reports: watch::Sender<Option<Arc<SiteReport>>>,
    },
}

impl FleetBackend {
    /// Starts the backend `fleet` names for site `site`, from `view` (the view carried
    /// over a reload, or an unpolled one).
    pub fn start(fleet: &Fleet, site: &str, digest: &str, view: FleetView) -> Self {
        let (view_tx, view_rx) = watch::channel(view);
        let (shutdown, shutdown_rx) = watch::channel(false);
        // Set by every decision ([`FleetBackend::decide`]) before the report that asks
        // for a withdrawal is published.
        let (hand_over, hand_over_rx) = watch::channel(super::hand_over::DEFAULT_HAND_OVER);
        match &fleet.backend {
            BackendSettings::Poll => {
                let (poll_now, poll_now_rx) = watch::channel(0u64);
                let task = tokio::spawn(poller::run(
                    PollerConfig::from_fleet(fleet, site),
                    view_tx,
                    poll_now_rx,
                    shutdown_rx,
                ));
                FleetBackend {
                    view: view_rx,
                    shutdown,
                    hand_over,
                    task,
                    kind: Kind::Poll { poll_now },
                }
            }
            BackendSettings::Etcd(settings) => {
                let others: Vec<(usize, String)> = fleet
                    .sites
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.name != site)
                    .map(|(rank, s)| (rank, s.name.clone()))
                    .collect();
                let (state_tx, state_rx) = watch::channel(StoreState::default());
                let (reports, reports_rx) = watch::channel(None);
                let cfg = EtcdDriverConfig {
                    settings: (**settings).clone(),
                    site: site.to_owned(),
                    others: others.clone(),
                    fleet: fleet.clone(),
                    digest: digest.to_owned(),
                    hand_over: hand_over_rx,
                };
                let task = tokio::spawn(etcd::run(
                    cfg,
                    reports_rx,
                    EtcdOutputs {
                        state: state_tx,
                        view: view_tx,
                    },
                    shutdown_rx,
                ));
                FleetBackend {
                    view: view_rx,
                    shutdown,
                    hand_over,
                    task,
                    kind: Kind::Etcd {
                        settings: settings.clone(),
                        layout: Layout::new(&settings.key_prefix),
                        others,
                        state: state_rx,
                        reports,
                    },
                }
            }
        }
    }

    /// `poll` or `etcd`.
    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::Poll { .. } => "poll",
            Kind::Etcd { .. } => "etcd",
        }
    }

    /// The latest view of the other sites (with etcd: made from the store now, see
    /// [`store::fleet_view`]).
    pub fn view(&self) -> FleetView {
        match &self.kind {
            Kind::Poll { .. } => self.view.borrow().clone(),
            Kind::Etcd {
                layout,
                others,
                state,
                ..
            } => {
                let sites: Vec<(usize, &str)> =
                    others.iter().map(|(r, n)| (*r, n.as_str())).collect();
                store::fleet_view(&state.borrow(), layout, &sites, Instant::now())
            }
        }
    }

    /// The view the coordinator's decisions take, marked as seen (see
    /// [`FleetBackend::has_changed`]). With etcd the decisions read the store
    /// ([`store::decide`], [`store::sites_announcing`]), not a view, so they get an empty
    /// one: making the view from the store is O(fleet), and it was made at every event of
    /// every site (the 200-site scale run, `docs/guard.md`). `/status` and the config
    /// guard read [`FleetBackend::view`].
    pub fn take_view(&mut self) -> FleetView {
        self.view.borrow_and_update();
        match self.kind {
            Kind::Poll { .. } => self.view(),
            Kind::Etcd { .. } => FleetView::default(),
        }
    }

    /// Whether the view changed since it was last taken.
    pub fn has_changed(&self) -> bool {
        self.view.has_changed().unwrap_or(false)
    }

    /// Resolves when the view changed (never, once the backend task is gone).
    pub async fn changed(&mut self) {
        if self.view.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// The guard's decision for one service.
    pub fn decide(&self, input: &GuardInput<'_>, now: Instant) -> Decision {
        match &self.kind {
            Kind::Poll { .. } => runtime::decide(input, now),
            Kind::Etcd {
                layout,
                others,
                state,
                ..
            } => {
                let hand_over = input.timing.hand_over;
                self.hand_over.send_if_modified(|h| {
                    let changed = *h != hand_over;
                    *h = hand_over;
                    changed
                });
                let others: Vec<&str> = others.iter().map(|(_, n)| n.as_str()).collect();
                store::decide(input, layout, &others, &state.borrow(), now)
            }
        }
    }

    /// The status document's guard entry after `decision` was taken on `input`.
    pub fn guard_status(
        &self,
        input: &GuardInput<'_>,
        decision: &Decision,
        now: Instant,
    ) -> GuardStatus {
        let mut status = runtime::guard_status(input, decision, now);
        if let Kind::Etcd {
            layout,
            others,
            state,
            ..
        } = &self.kind
        {
            let others: Vec<&str> = others.iter().map(|(_, n)| n.as_str()).collect();
            status.sites_announcing = store::sites_announcing(
                &state.borrow(),
                layout,
                &others,
                input.service,
                input.prefixes,
                super::hand_over::Clock {
                    now,
                    hand_over: input.timing.hand_over,
                },
            );
        }
        status
    }

    /// Call after each publication of this site's report: the poll mesh polls at once
    /// when an intent to withdraw was just published; the etcd driver publishes the
    /// report's records and asks for the withdrawals it asks for.
    pub fn published(&self, report: Option<&Arc<SiteReport>>, newly_withdrawing: bool) {
        match &self.kind {
            Kind::Poll { poll_now } => {
                if newly_withdrawing {
                    poll_now.send_modify(|n| *n = n.wrapping_add(1));
                }
            }
            Kind::Etcd { reports, .. } => {
                let same = match (&*reports.borrow(), report) {
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                    (None, None) => true,
                    _ => false,
                };
                if !same {
                    reports.send_replace(report.cloned());
                }
            }
        }
    }

    /// Stops the task and starts the backend of `fleet` from `view` (a reload that
    /// changes targets, timing, ranks or the backend).
    pub fn restart(&mut self, fleet: &Fleet, site: &str, digest: &str, view: FleetView) {
        let _ = self.shutdown.send(true);
        // Its polls or requests in flight are dropped with it; the view given is the
        // latest recorded one.
        self.task.abort();
        let report = match &self.kind {
            Kind::Etcd { reports, .. } => reports.borrow().clone(),
            Kind::Poll { .. } => None,
        };
        let hand_over = *self.hand_over.borrow();
        *self = FleetBackend::start(fleet, site, digest, view);
        self.hand_over.send_replace(hand_over);
        self.published(report.as_ref(), false);
    }

    /// `fleet.store` of `/status`: the etcd backend's health and the per-prefix sites the
    /// store says announce; `None` for the poll mesh.
    pub fn store_status(&self, now: Instant) -> Option<StoreStatus> {
        let Kind::Etcd {
            settings,
            layout,
            state,
            ..
        } = &self.kind
        else {
            return None;
        };
        let state = state.borrow();
        Some(store_status(settings, layout, &state, now))
    }

    /// Stops the backend's task (the etcd driver revokes its lease first).
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.task).await;
    }

    /// Replaces the view channel (tests standing in for the poller).
    #[cfg(test)]
    pub(crate) fn replace_view(&mut self, view: watch::Receiver<FleetView>) {
        self.view = view;
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn store_status(
    settings: &EtcdSettings,
    layout: &Layout,
    state: &StoreState,
    now: Instant,
) -> StoreStatus {
    use crate::status::model::{StorePrefixStatus, StoreTxnStatus};
    use std::collections::BTreeMap;
    let mut prefixes: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for key in state.snapshot.kvs.keys() {
        if let Some(store::Key::Record {
            service,
            prefix,
            site,
        }) = layout.parse(key)
        {
            let entry = prefixes.entry((service, prefix.to_string())).or_default();
            let live = state.snapshot.kvs.contains_key(&layout.site(&site));
            if live && state.snapshot.record(key).is_some_and(|r| r.counts()) {
                entry.push(site);
            }
        }
    }
    StoreStatus {
        endpoints: settings.endpoints.clone(),
        key_prefix: settings.key_prefix.clone(),
        connected: state.usable,
        error: state.error.clone(),
        since_ms: state
            .since
            .map(|t| millis(now.saturating_duration_since(t))),
        last_contact_ms: state
            .last_contact
            .map(|t| millis(now.saturating_duration_since(t))),
        lease_id: (state.lease_id != 0).then(|| format!("{:x}", state.lease_id)),
        lease_ttl_ms: millis(state.lease_ttl),
        lease_ttl_configured_ms: millis(settings.lease_ttl),
        revision: state.snapshot.revision,
        last_txn: state.last_txn.as_ref().map(|t| StoreTxnStatus {
            what: t.what.clone(),
            outcome: t.outcome.clone(),
            revision: t.revision,
            at: crate::coordinator::core::rfc3339(t.at),
            changed: t.changed.clone(),
        }),
        last_conflict: state.last_conflict.as_ref().map(|t| StoreTxnStatus {
            what: t.what.clone(),
            outcome: t.outcome.clone(),
            revision: t.revision,
            at: crate::coordinator::core::rfc3339(t.at),
            changed: t.changed.clone(),
        }),
        withdrawals_committed: state.txns.withdraw_committed,
        withdrawals_conflicted: state.txns.withdraw_conflict,
        publications: state.txns.publish_committed,
        txn_errors: state.txns.errors,
        prefixes: prefixes
            .into_iter()
            .map(|((service, prefix), sites)| StorePrefixStatus {
                service,
                prefix,
                sites_announcing: sites,
            })
            .collect(),
    }
}
