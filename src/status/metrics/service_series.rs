//! The per-service metric families (`anyguard_service_up`, `anyguard_service_state`,
//! `anyguard_guard_held`, `anyguard_guard_sites_announcing`, `anyguard_service_suppressed`,
//! `anyguard_service_flaps`, `anyguard_announced_prefixes`, `anyguard_check_up`) and the
//! probe histograms, kept in place between scrapes (issue 13).
//!
//! Each service's gauges are handles into the registry's families, set from its status
//! entry only when that entry is another one than the last seen (the coordinator shares
//! unchanged entries by `Arc` between documents, so identity says what changed): a scrape
//! compares one pointer per service and encodes what the families hold; it neither
//! rebuilds the document nor allocates a label for a service that did not change. The
//! probe histograms are looked up by name without allocating, so that recording a probe
//! result allocates nothing once the check has its series.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::{Labels, SERVICE_STATES};
use crate::status::model::ServiceStatus;

type GaugeFamily = Family<Labels, Gauge>;
type HistogramFamily = Family<Labels, Histogram>;

/// The families, registered once.
#[derive(Clone)]
pub(super) struct ServiceFamilies {
    up: GaugeFamily,
    state: GaugeFamily,
    held: GaugeFamily,
    sites: GaugeFamily,
    suppressed: GaugeFamily,
    flaps: GaugeFamily,
    announced: GaugeFamily,
    check_up: GaugeFamily,
}

impl ServiceFamilies {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let families = Self {
            up: GaugeFamily::default(),
            state: GaugeFamily::default(),
            held: GaugeFamily::default(),
            sites: GaugeFamily::default(),
            suppressed: GaugeFamily::default(),
            flaps: GaugeFamily::default(),
            announced: GaugeFamily::default(),
            check_up: GaugeFamily::default(),
        };
        for (name, help, family) in [
            (
                "anyguard_service_up",
                "1 while the service is up",
                &families.up,
            ),
            (
                "anyguard_service_state",
                "Service state, one-hot over the state label",
                &families.state,
            ),
            (
                "anyguard_guard_held",
                "1 while the all-sites guard holds the service's announcement",
                &families.held,
            ),
            (
                "anyguard_guard_sites_announcing",
                "Other sites the all-sites guard sees announcing the service",
                &families.sites,
            ),
            (
                "anyguard_service_suppressed",
                "1 while flap dampening suppresses the service's re-announcement",
                &families.suppressed,
            ),
            (
                "anyguard_service_flaps",
                "Flaps counted in the current dampening window",
                &families.flaps,
            ),
            (
                "anyguard_announced_prefixes",
                "Service prefixes announced to each peer",
                &families.announced,
            ),
            (
                "anyguard_check_up",
                "1 while the check is up",
                &families.check_up,
            ),
        ] {
            registry.register(name, help, family.clone());
        }
        families
    }
}

fn service_label(service: &str) -> Labels {
    vec![("service", service.to_owned())]
}

fn labels2(k1: &'static str, v1: &str, k2: &'static str, v2: &str) -> Labels {
    vec![(k1, v1.to_owned()), (k2, v2.to_owned())]
}

fn handle(family: &GaugeFamily, labels: &Labels) -> Gauge {
    family.get_or_create(labels).clone()
}

fn flag(b: bool) -> i64 {
    i64::from(b)
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Handles to one service's series, and the entry they were last set from.
struct ServiceSeries {
    entry: Arc<ServiceStatus>,
    up: Gauge,
    held: Gauge,
    sites: Gauge,
    suppressed: Gauge,
    flaps: Gauge,
    /// One-hot: the documented states, then any other state while the service is in it.
    states: Vec<(String, Gauge)>,
    /// Per peer the service has an announcement entry for.
    announced: Vec<(String, Gauge)>,
    /// Per check, in config order.
    checks: Vec<(String, Gauge)>,
}

impl ServiceSeries {
    fn new(f: &ServiceFamilies, entry: &Arc<ServiceStatus>) -> Self {
        let svc = service_label(&entry.name);
        let mut series = Self {
            entry: Arc::clone(entry),
            up: handle(&f.up, &svc),
            held: handle(&f.held, &svc),
            sites: handle(&f.sites, &svc),
            suppressed: handle(&f.suppressed, &svc),
            flaps: handle(&f.flaps, &svc),
            states: SERVICE_STATES
                .iter()
                .map(|s| {
                    let labels = labels2("service", &entry.name, "state", s);
                    ((*s).to_owned(), handle(&f.state, &labels))
                })
                .collect(),
            announced: Vec::new(),
            checks: Vec::new(),
        };
        series.set(f, entry);
        series
    }

    /// Sets every gauge from `entry`; series of peers, checks and extra states the entry
    /// no longer has are removed.
    fn set(&mut self, f: &ServiceFamilies, entry: &Arc<ServiceStatus>) {
        self.entry = Arc::clone(entry);
        let s = &**entry;
        self.up.set(flag(s.state == "up"));
        self.held.set(flag(s.guard.decision == "held"));
        self.sites.set(count(s.guard.sites_announcing.len()));
        self.suppressed
            .set(flag(s.dampening.suppressed_until.is_some()));
        self.flaps.set(i64::from(s.dampening.flaps));
        if !self.states.iter().any(|(state, _)| *state == s.state) {
            let labels = labels2("service", &s.name, "state", &s.state);
            self.states
                .push((s.state.clone(), handle(&f.state, &labels)));
        }
        let name = &s.name;
        self.states.retain(|(state, gauge)| {
            let keep = SERVICE_STATES.contains(&state.as_str()) || *state == s.state;
            if !keep {
                f.state
                    .remove(&labels2("service", name, "state", state.as_str()));
            }
            gauge.set(flag(*state == s.state));
            keep
        });
        sync_list(
            &mut self.announced,
            s.announcements
                .iter()
                .map(|a| (a.peer.as_str(), count(a.prefixes.len()))),
            |peer| labels2("peer", peer, "service", name),
            &f.announced,
        );
        sync_list(
            &mut self.checks,
            s.checks
                .iter()
                .map(|c| (c.name.as_str(), flag(c.state == "up"))),
            |check| labels2("service", name, "check", check),
            &f.check_up,
        );
    }

    /// Removes every series of the service.
    fn remove(&self, f: &ServiceFamilies) {
        let name = &self.entry.name;
        let svc = service_label(name);
        for family in [&f.up, &f.held, &f.sites, &f.suppressed, &f.flaps] {
            family.remove(&svc);
        }
        for (state, _) in &self.states {
            f.state.remove(&labels2("service", name, "state", state));
        }
        for (peer, _) in &self.announced {
            f.announced.remove(&labels2("peer", peer, "service", name));
        }
        for (check, _) in &self.checks {
            f.check_up.remove(&labels2("service", name, "check", check));
        }
    }
}

/// Makes `series` hold one gauge per key of `wanted` (in its order) set to its value;
/// gauges of keys no longer wanted leave the family. Allocates only for new keys.
fn sync_list<'a>(
    series: &mut Vec<(String, Gauge)>,
    wanted: impl Iterator<Item = (&'a str, i64)> + Clone,
    labels: impl Fn(&str) -> Labels,
    family: &GaugeFamily,
) {
    let same_keys = series.len() == wanted.clone().count()
        && series
            .iter()
            .zip(wanted.clone())
            .all(|((have, _), (want, _))| have == want);
    if !same_keys {
        let mut old: Vec<(String, Gauge)> = std::mem::take(series);
        for (key, _) in wanted.clone() {
            let gauge = match old.iter().position(|(k, _)| k == key) {
                Some(i) => old.swap_remove(i).1,
                None => handle(family, &labels(key)),
            };
            series.push((key.to_owned(), gauge));
        }
        for (key, _) in old {
            family.remove(&labels(&key));
        }
    }
    for ((_, gauge), (_, value)) in series.iter().zip(wanted) {
        gauge.set(value);
    }
}

/// Every service's series, in document order.
#[derive(Default)]
pub(super) struct ServiceTable {
    series: Vec<ServiceSeries>,
}

impl ServiceTable {
    /// Brings the series up to date with `entries` (a document's services): the gauges
    /// of an entry seen last time (same `Arc`) are left alone; services that are gone
    /// lose their series.
    pub(super) fn sync(&mut self, f: &ServiceFamilies, entries: &[Arc<ServiceStatus>]) {
        let same_services = self.series.len() == entries.len()
            && self
                .series
                .iter()
                .zip(entries)
                .all(|(s, e)| s.entry.name == e.name);
        if !same_services {
            // A reload (or the first scrape): match by name.
            let mut old: HashMap<String, ServiceSeries> = std::mem::take(&mut self.series)
                .into_iter()
                .map(|s| (s.entry.name.clone(), s))
                .collect();
            for e in entries {
                let series = match old.remove(&e.name) {
                    Some(mut s) => {
                        s.set(f, e);
                        s
                    }
                    None => ServiceSeries::new(f, e),
                };
                self.series.push(series);
            }
            for gone in old.values() {
                gone.remove(f);
            }
            return;
        }
        for (series, entry) in self.series.iter_mut().zip(entries) {
            if !Arc::ptr_eq(&series.entry, entry) {
                series.set(f, entry);
            }
        }
    }
}

/// The probe latency histograms by service and check name: `[ok, fail]`, each created
/// with the first result of its kind.
#[derive(Default)]
pub(super) struct ProbeSeries {
    by_service: HashMap<String, HashMap<String, [Option<Histogram>; 2]>>,
}

fn probe_labels(service: &str, check: &str, ok: bool) -> Labels {
    vec![
        ("service", service.to_owned()),
        ("check", check.to_owned()),
        ("result", if ok { "ok" } else { "fail" }.to_owned()),
    ]
}

impl ProbeSeries {
    /// The histogram of `check` of `service` for results `ok`: created (labels allocated)
    /// the first time, looked up by name without allocating afterwards.
    pub(super) fn get(
        &mut self,
        family: &HistogramFamily,
        service: &str,
        check: &str,
        ok: bool,
    ) -> Option<&Histogram> {
        if !self.by_service.contains_key(service) {
            self.by_service.insert(service.to_owned(), HashMap::new());
        }
        let checks = self.by_service.get_mut(service)?;
        if !checks.contains_key(check) {
            checks.insert(check.to_owned(), [None, None]);
        }
        let slot = checks.get_mut(check)?.get_mut(usize::from(!ok))?;
        Some(slot.get_or_insert_with(|| {
            family
                .get_or_create(&probe_labels(service, check, ok))
                .clone()
        }))
    }

    /// Drops the series of every check not in `current` (`(service, check)` names).
    pub(super) fn retain(&mut self, family: &HistogramFamily, current: &HashSet<(&str, &str)>) {
        self.by_service.retain(|service, checks| {
            checks.retain(|check, _| {
                let keep = current.contains(&(service.as_str(), check.as_str()));
                if !keep {
                    for ok in [true, false] {
                        family.remove(&probe_labels(service, check, ok));
                    }
                }
                keep
            });
            !checks.is_empty()
        });
    }
}
