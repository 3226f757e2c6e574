use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use proptest::prelude::*;

use super::*;
use crate::guard::report::{ServiceReport, SiteReport, REPORT_VERSION};
use crate::guard::runtime::{Drain, GuardTiming, LocalIntent, LocalService};

fn net(s: &str) -> IpNet {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// The hand-over off (the tables of the transactions; the hand-over has its own).
fn off() -> Clock {
    Clock {
        now: Instant::now(),
        hand_over: Duration::ZERO,
    }
}

/// An in-memory etcd: one revision counter, keys with their `mod_revision` and lease,
/// transactions whose compares are `mod_revision(key) == r` (a missing key's is 0, as in
/// etcd) and whose else branch reads the plan's `on_conflict` keys, lease expiry deleting
/// every key of the lease in one revision, and the log of every change (what a watch
/// delivers, in revision order).
#[derive(Debug, Default)]
struct MemEtcd {
    revision: i64,
    kvs: BTreeMap<String, Kv>,
    live_leases: BTreeSet<i64>,
    next_lease: i64,
    up: bool,
    log: Vec<Change>,
}

#[derive(Debug, PartialEq, Eq)]
enum TxnResult {
    Committed(i64),
    /// The answer's revision and what the else branch read.
    Conflict(i64, Vec<(String, Kv)>),
    Unreachable,
}

fn change_revision(c: &Change) -> i64 {
    match c {
        Change::Put { kv, .. } => kv.mod_revision,
        Change::Delete { revision, .. } => *revision,
    }
}

impl MemEtcd {
    fn grant(&mut self) -> Option<i64> {
        if !self.up {
            return None;
        }
        self.next_lease += 1;
        self.live_leases.insert(self.next_lease);
        Some(self.next_lease)
    }

    fn txn(&mut self, lease: i64, plan: &TxnPlan) -> TxnResult {
        if !self.up {
            return TxnResult::Unreachable;
        }
        // etcd refuses a put with a lease that does not exist (the whole txn fails).
        let leased = plan
            .ops
            .iter()
            .any(|op| matches!(op, Op::Put { leased: true, .. }));
        if leased && !self.live_leases.contains(&lease) {
            return TxnResult::Unreachable;
        }
        let holds = plan
            .compares
            .iter()
            .all(|(k, r)| self.kvs.get(k).map_or(0, |kv| kv.mod_revision) == *r);
        if !holds {
            let read = self
                .kvs
                .iter()
                .filter(|(k, _)| plan.on_conflict.iter().any(|r| r.covers(k)))
                .map(|(k, kv)| (k.clone(), kv.clone()))
                .collect();
            return TxnResult::Conflict(self.revision, read);
        }
        if plan.ops.is_empty() {
            return TxnResult::Committed(self.revision);
        }
        self.revision += 1;
        for op in &plan.ops {
            match op {
                Op::Put { key, value, leased } => {
                    let kv = Kv::new(
                        value.clone(),
                        self.revision,
                        if *leased { lease } else { 0 },
                    );
                    self.kvs.insert(key.clone(), kv.clone());
                    self.log.push(Change::Put {
                        key: key.clone(),
                        kv,
                    });
                }
                Op::Delete { key } => {
                    self.kvs.remove(key);
                    self.log.push(Change::Delete {
                        key: key.clone(),
                        revision: self.revision,
                    });
                }
            }
        }
        TxnResult::Committed(self.revision)
    }

    fn expire(&mut self, lease: i64) {
        if self.live_leases.remove(&lease) {
            self.revision += 1;
            let gone: Vec<String> = self
                .kvs
                .iter()
                .filter(|(_, kv)| kv.lease == lease)
                .map(|(k, _)| k.clone())
                .collect();
            for key in gone {
                self.kvs.remove(&key);
                self.log.push(Change::Delete {
                    key,
                    revision: self.revision,
                });
            }
        }
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            revision: self.revision,
            kvs: self.kvs.clone(),
            ..Snapshot::default()
        }
    }

    /// The changes after `watched` up to `upto`, in order (what a watch delivers).
    fn changes(&self, watched: i64, upto: i64) -> Vec<Change> {
        self.log
            .iter()
            .filter(|c| (watched + 1..=upto).contains(&change_revision(c)))
            .cloned()
            .collect()
    }
}

const SITES: [&str; 5] = ["a", "b", "c", "d", "e"];

/// One simulated site: the real decision ([`decide`]), publication
/// ([`desired_records`], [`plan_publication`]) and withdrawal ([`plan_withdrawal`]) code,
/// with the driver's possibly stale snapshot.
#[derive(Debug)]
struct SimSite {
    name: &'static str,
    healthy: bool,
    removed: bool,
    alive: bool,
    /// Cut off from etcd.
    partitioned: bool,
    /// The prefix is on the wire here.
    wire: bool,
    /// Went off the wire without a guard decision (crash): the guard is not to blame.
    lost: bool,
    intent: LocalIntent,
    decision: Decision,
    lease: i64,
    store: StoreState,
    /// The revision up to which the watch has delivered the log.
    watched: i64,
    report: Option<(SiteReport, Instant)>,
    /// Since when the prefix has been on the wire here (the truth the hand-over is
    /// checked against).
    wire_since: Instant,
    /// The latest crash.
    crashed_at: Option<Instant>,
}

struct Sim {
    etcd: MemEtcd,
    sites: Vec<SimSite>,
    layout: Layout,
    min_sites: usize,
    prefix: IpNet,
    t0: Instant,
    step: u64,
    /// `[fleet] hand_over` of every site (1 ms a step).
    hand_over: Duration,
}

impl Sim {
    fn new(n: usize, min_sites: usize) -> Self {
        Self::with_hand_over(n, min_sites, Duration::ZERO)
    }

    fn with_hand_over(n: usize, min_sites: usize, hand_over: Duration) -> Self {
        let t0 = Instant::now();
        let mut sim = Sim {
            etcd: MemEtcd {
                up: true,
                ..MemEtcd::default()
            },
            sites: SITES[..n]
                .iter()
                .map(|name| SimSite {
                    name,
                    healthy: true,
                    removed: false,
                    alive: true,
                    partitioned: false,
                    wire: true,
                    lost: false,
                    intent: LocalIntent::None,
                    decision: Decision::Announce,
                    lease: 0,
                    store: StoreState::default(),
                    watched: 0,
                    report: None,
                    wire_since: t0,
                    crashed_at: None,
                })
                .collect(),
            layout: Layout::new("/anyguard"),
            min_sites,
            prefix: net("203.0.113.0/24"),
            t0,
            step: 0,
            hand_over: Duration::ZERO,
        };
        sim.hand_over = hand_over;
        for i in 0..n {
            sim.coordinator(i);
            sim.driver(i);
        }
        for i in 0..n {
            sim.sync(i);
        }
        sim
    }

    fn now(&mut self) -> Instant {
        self.step += 1;
        self.t0 + Duration::from_millis(self.step)
    }

    fn others(&self, i: usize) -> Vec<&'static str> {
        self.sites
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, s)| s.name)
            .collect()
    }

    /// The watch delivers every change up to the store's revision, in order, applied as
    /// the driver applies them (over what its own commits and conflicts read ahead).
    fn sync(&mut self, i: usize) {
        let upto = self.etcd.revision;
        self.watch(i, upto);
    }

    /// A lagging watch: only the changes of the next revision.
    fn sync_one(&mut self, i: usize) {
        let upto = self.sites[i].watched + 1;
        self.watch(i, upto.min(self.etcd.revision));
    }

    fn watch(&mut self, i: usize, upto: i64) {
        let s = &mut self.sites[i];
        if !s.alive || s.partitioned || !self.etcd.up || upto <= s.watched {
            return;
        }
        let at = self.t0 + Duration::from_millis(self.step);
        for change in self.etcd.changes(s.watched, upto) {
            s.store.snapshot.apply_watched(change, at);
        }
        s.store.snapshot.watched(upto);
        s.watched = upto;
    }

    /// The coordinator's turn: decide on the driver's state, act, publish the report.
    fn coordinator(&mut self, i: usize) {
        if !self.sites[i].alive {
            return;
        }
        let now = self.now();
        let others = self.others(i);
        let prefixes = [self.prefix];
        let view = FleetView::default();
        let s = &self.sites[i];
        let input = GuardInput {
            service: "web",
            prefixes: &prefixes,
            min_sites: self.min_sites,
            local_site: s.name,
            local_rank: i,
            local: LocalService {
                healthy: s.healthy && !s.removed,
                drain: if s.removed {
                    Drain::Removed
                } else {
                    Drain::None
                },
                announcing: s.wire,
                intent: s.intent,
            },
            view: &view,
            timing: GuardTiming {
                stale_after: Duration::from_secs(3),
                intent_wait: Duration::from_secs(3),
                hand_over: self.hand_over,
            },
        };
        let decision = decide(&input, &self.layout, &others, &s.store, now);
        if matches!(decision, Decision::Withdraw { .. }) && s.wire {
            self.check_hand_over(i, now);
        }
        let s = &mut self.sites[i];
        match &decision {
            Decision::Withdraw { .. } => {
                if s.wire {
                    s.wire = false;
                }
            }
            // A healthy site (back) in the config announces; a restarted one too.
            Decision::Announce => {
                if !s.wire {
                    s.wire = true;
                    s.lost = false;
                    s.wire_since = now;
                }
            }
            Decision::Hold { .. } | Decision::PublishIntentAndWait { .. } => {}
        }
        let report = SiteReport {
            version: REPORT_VERSION,
            site: s.name.to_owned(),
            generation: self.step,
            services: vec![ServiceReport {
                name: "web".into(),
                prefixes: vec![self.prefix],
                healthy: s.healthy && !s.removed,
                announcing: s.wire && decision.announces(),
                intent: decision.intent(),
            }],
            fleet_digest: None,
        };
        // Visible to the driver from now on; the intent's time is taken after that.
        let visible_at = now;
        s.report = Some((report, visible_at));
        s.intent = s.intent.advance(&decision, visible_at);
        s.decision = decision;
    }

    /// The driver's turn: keep the lease (a new one if it expired), publish the records of
    /// the latest report, ask for the withdrawals the report asks for.
    fn driver(&mut self, i: usize) {
        let now = self.now();
        let others = self.others(i);
        let (layout, min_sites) = (self.layout.clone(), self.min_sites);
        let etcd = &mut self.etcd;
        let s = &mut self.sites[i];
        if !s.alive {
            return;
        }
        if s.partitioned || !etcd.up {
            s.store.usable = false;
            s.store.error = Some("unreachable".into());
            return;
        }
        if !etcd.live_leases.contains(&s.lease) {
            match etcd.grant() {
                Some(l) => s.lease = l,
                None => return,
            }
            let previous = std::mem::take(&mut s.store.snapshot.announcing);
            s.store.snapshot = etcd.snapshot();
            s.store.snapshot.follow_from(&previous, now);
            s.watched = etcd.revision;
        }
        s.store.usable = true;
        s.store.error = None;
        s.store.last_contact = Some(now);
        let Some((report, _)) = s.report.clone() else {
            return;
        };
        let asked_at = now;
        refresh_grants(&mut s.store, &report, asked_at);
        let site = SiteRecord {
            version: REPORT_VERSION,
            fleet_digest: String::new(),
        };
        if let Some(plan) = publication(&s.store, &layout, s.name, &site, &report, s.lease) {
            // As the driver: after a publication, the next step (on the watch's event)
            // plans the withdrawals.
            if let TxnResult::Committed(rev) = etcd.txn(s.lease, &plan) {
                apply_committed(&mut s.store.snapshot, &plan, rev, s.lease);
            }
            return;
        }
        // As the driver: a conflict brings what beat it, and the next try plans on that.
        let clock = Clock {
            now,
            hand_over: self.hand_over,
        };
        for entry in &report.services {
            for _ in 0..WITHDRAWAL_TRIES {
                let Some(plan) = withdrawal_for(
                    &s.store, &layout, &others, s.name, i, entry, min_sites, clock,
                ) else {
                    break;
                };
                match etcd.txn(s.lease, &plan) {
                    TxnResult::Committed(revision) => {
                        apply_committed(&mut s.store.snapshot, &plan, revision, s.lease);
                        granted(&mut s.store, entry, asked_at, revision);
                        break;
                    }
                    TxnResult::Conflict(revision, read) => {
                        apply_conflict(&mut s.store.snapshot, &layout, &plan, revision, read);
                    }
                    TxnResult::Unreachable => return,
                }
            }
        }
    }

    /// The sites holding a grant (a committed withdrawal), in fleet order.
    fn granted(&self) -> Vec<&'static str> {
        self.sites
            .iter()
            .filter(|s| !s.store.grants.is_empty())
            .map(|s| s.name)
            .collect()
    }

    /// The sites with the prefix on the wire, in fleet order.
    fn kept(&self) -> Vec<&'static str> {
        self.sites
            .iter()
            .filter(|s| s.wire)
            .map(|s| s.name)
            .collect()
    }

    fn on_wire(&self) -> usize {
        self.sites.iter().filter(|s| s.wire).count()
    }

    fn lost(&self) -> usize {
        self.sites.iter().filter(|s| s.lost && !s.wire).count()
    }

    /// Make-before-break: when site `i` withdraws through the guard, at least
    /// `min_sites` other sites have had the prefix on the wire for the hand-over (or lost
    /// it, or came back from a crash since: the guard cannot keep what it does not
    /// control).
    fn check_hand_over(&self, i: usize, now: Instant) {
        let covered = self
            .sites
            .iter()
            .enumerate()
            .filter(|(j, s)| {
                *j != i
                    && ((s.wire
                        && (now.saturating_duration_since(s.wire_since) >= self.hand_over
                            || s.crashed_at.is_some_and(|c| c <= s.wire_since)))
                        || s.lost)
            })
            .count();
        assert!(
            covered >= self.min_sites,
            "{} withdrew with {covered} other sites on the wire for hand_over {:?} (min_sites {}): {:#?}",
            self.sites[i].name,
            self.hand_over,
            self.min_sites,
            self.sites
                .iter()
                .map(|s| (s.name, s.wire, now.saturating_duration_since(s.wire_since), s.lost))
                .collect::<Vec<_>>()
        );
    }

    fn check(&self, what: &str) {
        assert!(
            self.on_wire() + self.lost() >= self.min_sites,
            "after {what}: {} on the wire + {} lost by crashes < min_sites {}: {:#?}",
            self.on_wire(),
            self.lost(),
            self.min_sites,
            self.sites
                .iter()
                .map(|s| (s.name, s.wire, s.lost, &s.decision))
                .collect::<Vec<_>>()
        );
    }

    fn apply(&mut self, ev: &Event) {
        let n = self.sites.len();
        match *ev {
            Event::Fail(i) => self.sites[i % n].healthy = false,
            Event::Recover(i) => self.sites[i % n].healthy = true,
            Event::RemoveByReload(i) => self.sites[i % n].removed = true,
            Event::AddByReload(i) => self.sites[i % n].removed = false,
            Event::Coordinator(i) => self.coordinator(i % n),
            Event::Driver(i) => self.driver(i % n),
            Event::Sync(i) => self.sync(i % n),
            Event::SyncOne(i) => self.sync_one(i % n),
            Event::Crash(i) => {
                let at = self.t0 + Duration::from_millis(self.step);
                let s = &mut self.sites[i % n];
                if s.alive {
                    s.crashed_at = Some(at);
                    s.alive = false;
                    if s.wire {
                        s.wire = false;
                        s.lost = true;
                    }
                }
            }
            Event::Restart(i) => {
                let s = &mut self.sites[i % n];
                if !s.alive {
                    // A new process: no intent, no grants, the last lease may still live.
                    s.alive = true;
                    s.intent = LocalIntent::None;
                    s.decision = Decision::Announce;
                    s.report = None;
                    s.store = StoreState::default();
                    // A new session reads every key: the watch from the start.
                    s.watched = 0;
                }
            }
            Event::Partition(i) => self.sites[i % n].partitioned = true,
            Event::Heal(i) => self.sites[i % n].partitioned = false,
            Event::LeaseExpiry(i) => {
                // Only a lease nobody keeps alive expires: a dead or cut-off site's.
                let s = &self.sites[i % n];
                if !s.alive || s.partitioned || !self.etcd.up {
                    let lease = s.lease;
                    self.etcd.expire(lease);
                }
            }
            Event::StoreDown => self.etcd.up = false,
            Event::StoreUp => self.etcd.up = true,
            // Every site's turn on the same snapshot: the simultaneous case.
            Event::AllCoordinators => (0..n).for_each(|i| self.coordinator(i)),
            Event::AllDrivers => (0..n).for_each(|i| self.driver(i)),
            Event::AllSync => (0..n).for_each(|i| self.sync(i)),
        }
    }

    /// Everything up and healed, every site restarted, then rounds of every site's turns.
    fn settle(&mut self) {
        self.etcd.up = true;
        for i in 0..self.sites.len() {
            self.apply(&Event::Restart(i));
            self.apply(&Event::Heal(i));
        }
        // The hand-over (1 ms a step) needs rounds of its own after the restarts.
        let hand_over_rounds = usize::try_from(self.hand_over.as_millis()).unwrap_or(0);
        for _ in 0..(4 * self.sites.len() + 4 + hand_over_rounds) {
            for i in 0..self.sites.len() {
                self.sync(i);
                self.coordinator(i);
                self.driver(i);
                self.check("a settling turn");
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Event {
    Fail(usize),
    Recover(usize),
    RemoveByReload(usize),
    AddByReload(usize),
    Coordinator(usize),
    Driver(usize),
    Sync(usize),
    SyncOne(usize),
    Crash(usize),
    Restart(usize),
    Partition(usize),
    Heal(usize),
    LeaseExpiry(usize),
    StoreDown,
    StoreUp,
    AllCoordinators,
    AllDrivers,
    AllSync,
}

fn event() -> impl Strategy<Value = Event> {
    let i = 0usize..5;
    prop_oneof![
        3 => i.clone().prop_map(Event::Fail),
        1 => i.clone().prop_map(Event::Recover),
        1 => i.clone().prop_map(Event::RemoveByReload),
        1 => i.clone().prop_map(Event::AddByReload),
        6 => i.clone().prop_map(Event::Coordinator),
        6 => i.clone().prop_map(Event::Driver),
        4 => i.clone().prop_map(Event::Sync),
        3 => i.clone().prop_map(Event::SyncOne),
        1 => i.clone().prop_map(Event::Crash),
        1 => i.clone().prop_map(Event::Restart),
        1 => i.clone().prop_map(Event::Partition),
        1 => i.clone().prop_map(Event::Heal),
        1 => i.prop_map(Event::LeaseExpiry),
        1 => Just(Event::StoreDown),
        1 => Just(Event::StoreUp),
        3 => Just(Event::AllCoordinators),
        3 => Just(Event::AllDrivers),
        3 => Just(Event::AllSync),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// The invariant of docs/guard.md ("The etcd backend"): with no forced drain and no
    /// retirement, at every step the sites announcing the prefix on the wire, plus those
    /// that lost it by crashing, are at least `min_sites`; and once everything is up again
    /// every healthy site announces and no sick site is held beyond what `min_sites` needs
    /// (at most max(min_sites, healthy sites) announce).
    #[test]
    fn etcd_guard_never_leaves_fewer_than_min_sites_announcing(
        n in 2usize..=5,
        min in 1usize..=3,
        hand_over in prop_oneof![Just(0u64), Just(5), Just(40)],
        events in proptest::collection::vec(event(), 1..150),
    ) {
        let min_sites = min.min(n);
        let mut sim = Sim::with_hand_over(n, min_sites, Duration::from_millis(hand_over));
        sim.check("the start");
        for ev in &events {
            sim.apply(ev);
            sim.check(&format!("{ev:?}"));
        }
        sim.settle();
        let healthy = sim.sites.iter().filter(|s| s.healthy && !s.removed).count();
        prop_assert!(sim.on_wire() <= healthy.max(min_sites), "settled: {:?}",
            sim.sites.iter().map(|s| (s.name, s.healthy && !s.removed, s.wire, &s.decision)).collect::<Vec<_>>());
        prop_assert!(sim.sites.iter().all(|s| !s.healthy || s.removed || s.wire));
    }
}

#[test]
fn every_site_failing_at_once_leaves_exactly_min_sites() {
    for (n, min_sites) in [(3, 1), (3, 2), (5, 2), (5, 3)] {
        let mut sim = Sim::new(n, min_sites);
        for i in 0..n {
            sim.apply(&Event::Fail(i));
        }
        // Every coordinator asks, every driver publishes `held`, the watch brings all of
        // it to everyone: then every driver tries on the same snapshot.
        for i in 0..n {
            sim.coordinator(i);
        }
        sim.apply(&Event::AllDrivers);
        sim.apply(&Event::AllSync);
        for i in 0..n {
            sim.driver(i);
            sim.check("a driver's transaction");
        }
        // The first-ranked `min_sites` do not ask (every other site is held and ranked
        // after them: it yields); every other site relies on them, whose records do not
        // change, so all of them commit on the one snapshot (no conflicts).
        let granted = sim.granted();
        assert_eq!(
            granted,
            SITES[min_sites..n],
            "{n} sites, min_sites {min_sites}"
        );
        sim.settle();
        let kept = sim.kept();
        assert_eq!(kept, SITES[..min_sites], "{n} sites, min_sites {min_sites}");
    }
}

/// An in-memory etcd where each of `sites` holds a lease and has published `web` `p` as
/// announcing; the leases by site.
fn announcing_sites(
    layout: &Layout,
    p: IpNet,
    sites: &[&'static str],
) -> (MemEtcd, BTreeMap<&'static str, i64>) {
    let mut etcd = MemEtcd {
        up: true,
        ..MemEtcd::default()
    };
    let mut leases = BTreeMap::new();
    for site in sites {
        let lease = etcd.grant().unwrap_or_default();
        leases.insert(*site, lease);
        let record = Record {
            healthy: true,
            announcing: true,
            intent: Intent::None,
        };
        publish(&mut etcd, layout, site, lease, p, record);
    }
    (etcd, leases)
}

/// `site` publishes `record` for `web` `p` (and its site key) under `lease`: the commit
/// revision.
fn publish(
    etcd: &mut MemEtcd,
    layout: &Layout,
    site: &str,
    lease: i64,
    p: IpNet,
    record: Record,
) -> i64 {
    let desired = BTreeMap::from([(("web".to_owned(), p), record)]);
    let site_record = SiteRecord {
        version: 1,
        fleet_digest: "d".into(),
    };
    let plan = plan_publication(
        &etcd.snapshot(),
        layout,
        site,
        &site_record,
        &desired,
        lease,
    )
    .unwrap_or_else(|| panic!("{site}: nothing to publish"));
    match etcd.txn(lease, &plan) {
        TxnResult::Committed(r) => r,
        other => panic!("{site}'s publication: {other:?}"),
    }
}

#[test]
fn two_sites_reading_the_same_snapshot_cannot_both_commit() {
    let layout = Layout::new("/anyguard");
    let p = net("203.0.113.0/24");
    let (mut etcd, leases) = announcing_sites(&layout, p, &["a", "b", "c"]);
    let snapshot = etcd.snapshot();
    // min_sites 2: a and b each see the two others announcing.
    let plan = |me: &str, others: &[&str]| {
        let rank = usize::from(me == "b");
        plan_withdrawal(
            &snapshot,
            &layout,
            others,
            me,
            rank,
            "web",
            &[p],
            2,
            false,
            off(),
        )
        .unwrap_or_else(|s| panic!("{me}: {}", s.assessment))
    };
    let (pa, pb) = (plan("a", &["b", "c"]), plan("b", &["a", "c"]));
    assert!(matches!(
        etcd.txn(leases["a"], &pa),
        TxnResult::Committed(_)
    ));
    assert!(matches!(
        etcd.txn(leases["b"], &pb),
        TxnResult::Conflict(..)
    ));
    // b reads again: a withdrawing, so only c counts.
    let fresh = etcd.snapshot();
    let shortfall = plan_withdrawal(
        &fresh,
        &layout,
        &["a", "c"],
        "b",
        1,
        "web",
        &[p],
        2,
        false,
        off(),
    )
    .expect_err("one other site left");
    assert_eq!(shortfall.counted, 1);
    assert_eq!(
        shortfall.assessment.to_string(),
        "a: withdrawing 203.0.113.0/24, c: announcing"
    );
}

#[test]
fn a_counted_site_whose_lease_expires_after_the_read_fails_the_transaction() {
    let layout = Layout::new("/anyguard");
    let p = net("203.0.113.0/24");
    let (mut etcd, leases) = announcing_sites(&layout, p, &["a", "b"]);
    let snapshot = etcd.snapshot();
    let plan = plan_withdrawal(
        &snapshot,
        &layout,
        &["b"],
        "a",
        0,
        "web",
        &[p],
        1,
        false,
        off(),
    )
    .unwrap_or_else(|s| panic!("{}", s.assessment));
    // b's lease expires (no epoch bump: nobody wrote): a's compare on b's record catches it.
    etcd.expire(leases["b"]);
    assert!(matches!(
        etcd.txn(leases["a"], &plan),
        TxnResult::Conflict(..)
    ));
    let after = etcd.snapshot();
    assert_eq!(
        assess(&after, &layout, &["b"], "web", &[p], off()).entries,
        [("b".to_owned(), StoreSiteState::NoLease)]
    );
}

#[test]
fn the_layout_escapes_prefixes_and_parses_back() {
    let layout = Layout::new("/anyguard/prod");
    let p = net("2001:db8:100::/48");
    let key = layout.record("we/b%", &p, "site-a");
    assert_eq!(
        key,
        "/anyguard/prod/v1/svc/we%2Fb%25/2001:db8:100::%2F48/site/site-a"
    );
    assert_eq!(
        layout.parse(&key),
        Some(Key::Record {
            service: "we/b%".into(),
            prefix: p,
            site: "site-a".into()
        })
    );
    assert_eq!(
        layout.parse(&layout.epoch("web", &p)),
        Some(Key::Epoch {
            service: "web".into(),
            prefix: p
        })
    );
    assert_eq!(layout.parse(&layout.site("b")), Some(Key::Site("b".into())));
    assert_eq!(layout.parse("/anyguard/prod/v2/site/b"), None);
    assert_eq!(layout.parse("/other/v1/site/b"), None);
}

#[test]
fn an_asking_site_is_published_held_and_a_granted_one_withdrawing() {
    let p = net("203.0.113.0/24");
    let report = SiteReport {
        version: REPORT_VERSION,
        site: "a".into(),
        generation: 1,
        services: vec![ServiceReport {
            name: "web".into(),
            prefixes: vec![p],
            healthy: false,
            announcing: true,
            intent: Intent::Withdrawing,
        }],
        fleet_digest: None,
    };
    let asking = desired_records(&report, &BTreeSet::new());
    assert_eq!(
        asking[&("web".to_owned(), p)],
        Record {
            healthy: false,
            announcing: true,
            intent: Intent::Held
        },
        "still announcing: it counts until its transaction commits"
    );
    let granted = desired_records(&report, &BTreeSet::from([("web".to_owned(), p)]));
    assert!(!granted[&("web".to_owned(), p)].counts());
}

#[test]
fn an_unusable_store_holds_loudly_and_a_grant_for_an_older_intent_does_not_count() {
    let p = net("203.0.113.0/24");
    let layout = Layout::new("/anyguard");
    let t0 = Instant::now();
    let view = FleetView::default();
    let mut store = StoreState {
        usable: false,
        error: Some("connection refused".into()),
        ..StoreState::default()
    };
    let input = |intent| GuardInput {
        service: "web",
        prefixes: std::slice::from_ref(&p),
        min_sites: 1,
        local_site: "a",
        local_rank: 0,
        local: LocalService {
            healthy: false,
            drain: Drain::None,
            announcing: true,
            intent,
        },
        view: &view,
        timing: GuardTiming {
            stale_after: Duration::from_secs(3),
            intent_wait: Duration::from_secs(3),
            hand_over: Duration::ZERO,
        },
    };
    let d = decide(&input(LocalIntent::None), &layout, &["b"], &store, t0);
    assert!(
        matches!(&d, Decision::Hold { reason, .. } if reason.contains("ETCD UNREACHABLE (connection refused)")),
        "{d:?}"
    );
    // A grant asked before the current intent was published answers an older intent.
    store.grants.insert(
        ("web".into(), p),
        Grant {
            asked_at: t0,
            revision: 7,
        },
    );
    let later = LocalIntent::Withdrawing {
        published_at: t0 + Duration::from_millis(1),
    };
    assert!(matches!(
        decide(&input(later), &layout, &["b"], &store, t0),
        Decision::Hold { .. }
    ));
    let earlier = LocalIntent::Withdrawing {
        published_at: t0 - Duration::from_millis(1),
    };
    assert!(
        matches!(decide(&input(earlier), &layout, &["b"], &store, t0), Decision::Withdraw { reason, .. } if reason.contains("revision 7")),
        "a committed withdrawal goes even while etcd is unreachable"
    );
}

#[test]
fn of_two_held_sites_only_the_later_ranked_asks_when_a_third_recovers() {
    // min_sites 2 of 3. Every site fails; c (ranked last) withdraws relying on a and b,
    // which hold. Then c recovers: b counts a (held, ranked before it) and c, asks and
    // withdraws; a does not count b (held, ranked after it: it yields), so a never asks on
    // the snapshot b asks on, and exactly two keep announcing (a and c).
    let mut sim = Sim::new(3, 2);
    for i in 0..3 {
        sim.apply(&Event::Fail(i));
    }
    sim.apply(&Event::AllCoordinators);
    sim.apply(&Event::Driver(2));
    sim.apply(&Event::Sync(2));
    sim.apply(&Event::Driver(2));
    assert!(
        !sim.sites[2].store.grants.is_empty(),
        "c's withdrawal commits"
    );
    sim.apply(&Event::AllSync);
    for ev in [
        Event::Coordinator(0),
        Event::Coordinator(1),
        Event::Driver(0),
        Event::Sync(1),
        Event::Driver(1),
    ] {
        sim.apply(&ev);
        sim.check(&format!("{ev:?}"));
    }
    assert!(matches!(sim.sites[0].decision, Decision::Hold { .. }));
    assert!(matches!(sim.sites[1].decision, Decision::Hold { .. }));
    sim.apply(&Event::Recover(2));
    sim.apply(&Event::Coordinator(2));
    sim.apply(&Event::Sync(2));
    sim.apply(&Event::Driver(2));
    sim.apply(&Event::AllSync);
    sim.apply(&Event::Coordinator(0));
    sim.apply(&Event::Coordinator(1));
    let Decision::Hold { reason, .. } = &sim.sites[0].decision else {
        panic!("a holds: {:?}", sim.sites[0].decision);
    };
    assert!(
        reason.contains("b: held 203.0.113.0/24, ranked after us"),
        "{reason}"
    );
    assert!(matches!(
        sim.sites[1].decision,
        Decision::PublishIntentAndWait { .. }
    ));
    sim.apply(&Event::Driver(0));
    sim.apply(&Event::Driver(1));
    let granted = sim.granted();
    assert_eq!(granted, ["b"]);
    sim.apply(&Event::AllCoordinators);
    sim.check("both decided");
    let kept = sim.kept();
    assert_eq!(kept, ["a", "c"]);
}

#[test]
fn a_new_session_rewrites_records_left_under_the_old_lease() {
    // A session ended while the old lease still lived: the new session reads its own
    // records, equal to what it wants, but attached to a lease nobody keeps alive. Left as
    // they are they would expire under a healthy site; they are written again.
    let layout = Layout::new("/anyguard");
    let p = net("203.0.113.0/24");
    let (mut etcd, leases) = announcing_sites(&layout, p, &["a"]);
    let new_lease = etcd.grant().unwrap_or_default();
    let desired = BTreeMap::from([(
        ("web".to_owned(), p),
        Record {
            healthy: true,
            announcing: true,
            intent: Intent::None,
        },
    )]);
    let site = SiteRecord {
        version: 1,
        fleet_digest: "d".into(),
    };
    let snapshot = etcd.snapshot();
    assert_eq!(
        plan_publication(&snapshot, &layout, "a", &site, &desired, leases["a"]),
        None,
        "same lease, same values: nothing to write"
    );
    let plan = plan_publication(&snapshot, &layout, "a", &site, &desired, new_lease)
        .unwrap_or_else(|| panic!("the old lease's keys must be written again"));
    assert!(matches!(
        etcd.txn(new_lease, &plan),
        TxnResult::Committed(_)
    ));
    etcd.expire(leases["a"]);
    assert_eq!(
        assess(&etcd.snapshot(), &layout, &["a"], "web", &[p], off()).counted(),
        ["a"]
    );
}

#[test]
fn a_publication_deletes_only_its_own_records_not_those_of_sites_whose_names_end_alike() {
    // The publication finds this site's records by the end of their key (`/site/<name>`)
    // before parsing them: sites named `ba` and `x/a` (escaped `x%2Fa`) end like `a` but
    // are not `a`, and only `a`'s record of a service it no longer has is deleted.
    let layout = Layout::new("/anyguard");
    let p = net("203.0.113.0/24");
    let (etcd, leases) = announcing_sites(&layout, p, &["a", "ba", "x/a"]);
    let site = SiteRecord {
        version: 1,
        fleet_digest: "d".into(),
    };
    let plan = plan_publication(
        &etcd.snapshot(),
        &layout,
        "a",
        &site,
        &BTreeMap::new(),
        leases["a"],
    )
    .unwrap_or_else(|| panic!("a's record of web is no longer desired"));
    let deleted: Vec<&str> = plan
        .ops
        .iter()
        .filter_map(|op| match op {
            Op::Delete { key } => Some(key.as_str()),
            Op::Put { .. } => None,
        })
        .collect();
    assert_eq!(deleted, [layout.record("web", &p, "a")]);
    // The keys made in reused buffers are the layout's keys.
    let snapshot = etcd.snapshot();
    assert_eq!(
        assess(
            &snapshot,
            &layout,
            &["ba", "x/a", "gone"],
            "web",
            &[p],
            off()
        )
        .entries,
        [
            ("ba".to_owned(), StoreSiteState::Announcing),
            ("x/a".to_owned(), StoreSiteState::Announcing),
            ("gone".to_owned(), StoreSiteState::NoLease),
        ]
    );
}

/// A site's withdrawal plan for `web` `p` at min_sites 1 on `snapshot`.
fn plan_of(
    snapshot: &Snapshot,
    layout: &Layout,
    me: &str,
    rank: usize,
    others: &[&str],
    p: IpNet,
) -> TxnPlan {
    plan_withdrawal(
        snapshot,
        layout,
        others,
        me,
        rank,
        "web",
        &[p],
        1,
        false,
        off(),
    )
    .unwrap_or_else(|s| panic!("{me}: {}", s.assessment))
}

#[test]
fn a_conflicted_withdrawal_reads_what_beat_it_and_the_next_try_relies_on_that_not_on_the_stale_snapshot(
) {
    // min_sites 1 of a, b, c. c read the store with a announcing; then a published `held`
    // (it fails too; ranked before c it still counts). c's transaction, relying on a's
    // record as read, conflicts; its else branch carries a's `held` record.
    let layout = Layout::new("/anyguard");
    let p = net("203.0.113.0/24");
    let (mut etcd, leases) = announcing_sites(&layout, p, &["a", "b", "c"]);
    let stale = etcd.snapshot();
    let mut snapshot = stale.clone();
    let first = plan_of(&snapshot, &layout, "c", 2, &["a", "b"], p);
    let a_key = layout.record("web", &p, "a");
    let held = Record {
        healthy: false,
        announcing: true,
        intent: Intent::Held,
    };
    let held_at = publish(&mut etcd, &layout, "a", leases["a"], p, held);
    let TxnResult::Conflict(revision, read) = etcd.txn(leases["c"], &first) else {
        panic!("a's record changed since c's read");
    };
    assert!(
        read.iter()
            .any(|(k, kv)| *k == a_key && kv.mod_revision == held_at),
        "the else branch read a's new record: {read:?}"
    );
    let changed = apply_conflict(&mut snapshot, &layout, &first, revision, read);
    assert_eq!(changed, [format!("a: held at revision {held_at}")]);
    assert_eq!(snapshot.mod_revision(&a_key), held_at);
    // The watch has not brought a's change yet; the stale snapshot's plan would compare
    // the same old revision and fail again.
    let again = plan_of(&stale, &layout, "c", 2, &["a", "b"], p);
    assert!(matches!(
        etcd.txn(leases["c"], &again),
        TxnResult::Conflict(..)
    ));
    // The next try plans on what the conflict read: it relies on a as it is now (held,
    // ranked before c: it counts) and commits.
    let next = plan_of(&snapshot, &layout, "c", 2, &["a", "b"], p);
    assert!(next.compares.contains(&(a_key.clone(), held_at)));
    assert!(matches!(
        etcd.txn(leases["c"], &next),
        TxnResult::Committed(_)
    ));
    // a's change still on its way on the watch, older than what c holds: not applied.
    for change in etcd.changes(0, held_at - 1) {
        snapshot.apply(change);
    }
    assert_eq!(snapshot.mod_revision(&a_key), held_at);
    assert_eq!(
        snapshot.record(&a_key).map(|r| r.intent),
        Some(Intent::Held)
    );
}

#[test]
fn a_relied_on_site_gone_in_the_conflict_read_stays_gone_and_the_decision_holds_on_the_fresh_state()
{
    // min_sites 1 of a, b. b read the store with a announcing; a's lease expires (its keys
    // deleted). b's transaction conflicts and reads a's record absent: b's next decision
    // holds, naming a as having no record, before the watch brings the expiry; an older
    // put of a's record still on the watch does not bring it back.
    let layout = Layout::new("/anyguard");
    let p = net("203.0.113.0/24");
    let (mut etcd, leases) = announcing_sites(&layout, p, &["a", "b"]);
    let mut store = StoreState {
        usable: true,
        snapshot: Snapshot::default(),
        ..StoreState::default()
    };
    // b's snapshot lags: it has the log up to a's first record only.
    let a_key = layout.record("web", &p, "a");
    for change in etcd.changes(0, etcd.revision) {
        store.snapshot.apply(change);
    }
    let watched = etcd.revision;
    let plan = plan_of(&store.snapshot, &layout, "b", 1, &["a"], p);
    etcd.expire(leases["a"]);
    let TxnResult::Conflict(revision, read) = etcd.txn(leases["b"], &plan) else {
        panic!("a's record is gone since b's read");
    };
    let changed = apply_conflict(&mut store.snapshot, &layout, &plan, revision, read);
    assert_eq!(changed, ["a: gone"]);
    assert_eq!(store.snapshot.kvs.get(&a_key), None);
    assert_eq!(store.snapshot.tombstones.get(&a_key), Some(&revision));
    let view = FleetView::default();
    let input = GuardInput {
        service: "web",
        prefixes: std::slice::from_ref(&p),
        min_sites: 1,
        local_site: "b",
        local_rank: 1,
        local: LocalService {
            healthy: false,
            drain: Drain::None,
            announcing: true,
            intent: LocalIntent::None,
        },
        view: &view,
        timing: GuardTiming {
            stale_after: Duration::from_secs(3),
            intent_wait: Duration::from_secs(3),
            hand_over: Duration::ZERO,
        },
    };
    let d = decide(&input, &layout, &["a"], &store, Instant::now());
    assert!(
        matches!(&d, Decision::Hold { reason, .. } if reason.contains("a: no record for 203.0.113.0/24")),
        "{d:?}"
    );
    assert!(
        withdrawal_for(
            &store,
            &layout,
            &["a"],
            "b",
            1,
            &ServiceReport {
                name: "web".into(),
                prefixes: vec![p],
                healthy: false,
                announcing: true,
                intent: Intent::Withdrawing,
            },
            1,
            off(),
        )
        .is_none(),
        "no try relying on a site the read found gone"
    );
    // An older put of a's record (replayed) is older than the read: ignored.
    for change in etcd.changes(0, watched) {
        store.snapshot.apply(change);
    }
    assert_eq!(store.snapshot.kvs.get(&a_key), None);
    // The watch reaches the expiry: the tombstone has done its work.
    for change in etcd.changes(watched, etcd.revision) {
        store.snapshot.apply(change);
    }
    store.snapshot.watched(etcd.revision);
    assert!(store.snapshot.tombstones.is_empty());
    assert_eq!(store.snapshot.kvs.get(&a_key), None);
}

#[test]
fn every_site_failing_at_once_with_lagging_watches_commits_on_the_conflict_reads() {
    // Every site fails and publishes `held`; nobody's watch has brought anything. Each
    // site's first try relies on a stale record and conflicts; the try after it, on what
    // the conflict read, commits or finds too few: no site needs the watch to get on, and
    // exactly min_sites keep announcing in the end.
    for (n, min_sites) in [(3, 1), (5, 2), (5, 3)] {
        let mut sim = Sim::new(n, min_sites);
        for i in 0..n {
            sim.apply(&Event::Fail(i));
        }
        sim.apply(&Event::AllCoordinators);
        sim.apply(&Event::AllDrivers);
        // Each driver sees only its own publication (the watch lags): it tries now.
        for i in 0..n {
            sim.driver(i);
            sim.check("a driver's transactions");
        }
        let granted = sim.granted().len();
        assert_eq!(granted, n - min_sites, "{n} sites, min_sites {min_sites}");
        sim.settle();
        let kept = sim.kept().len();
        assert_eq!(kept, min_sites, "{n} sites, min_sites {min_sites}");
    }
}

/// The snapshot `etcd`'s watch brings, change by change, each at `at`.
fn watched_at(etcd: &MemEtcd, from: i64, snapshot: &mut Snapshot, at: Instant) {
    for change in etcd.changes(from, etcd.revision) {
        snapshot.apply_watched(change, at);
    }
    snapshot.watched(etcd.revision);
}

#[test]
fn a_withdrawal_relies_only_on_sites_followed_announcing_for_the_hand_over() {
    let layout = Layout::new("/anyguard");
    let p = net("203.0.113.0/24");
    let t0 = Instant::now();
    let clock = |ms| Clock {
        now: t0 + Duration::from_millis(ms),
        hand_over: Duration::from_secs(1),
    };
    // c announces from the start; b, ranked first, only from 900 ms.
    let (mut etcd, leases) = announcing_sites(&layout, p, &["c"]);
    let mut snapshot = Snapshot::default();
    watched_at(&etcd, 0, &mut snapshot, t0);
    let before_b = etcd.revision;
    let lease_b = etcd.grant().unwrap_or_default();
    let announcing = Record {
        healthy: true,
        announcing: true,
        intent: Intent::None,
    };
    publish(&mut etcd, &layout, "b", lease_b, p, announcing);
    watched_at(
        &etcd,
        before_b,
        &mut snapshot,
        t0 + Duration::from_millis(900),
    );
    let plan = |snapshot: &Snapshot, ms| {
        plan_withdrawal(
            snapshot,
            &layout,
            &["b", "c"],
            "a",
            0,
            "web",
            &[p],
            1,
            false,
            clock(ms),
        )
    };
    // At 1000 ms: b is 100 ms in, so the plan relies on c, not on the first-ranked b.
    let relied: Vec<String> = plan(&snapshot, 1000)
        .unwrap_or_else(|s| panic!("{}", s.assessment))
        .compares
        .iter()
        .filter_map(|(k, _)| match layout.parse(k) {
            Some(Key::Record { site, .. }) if site != "a" => Some(site),
            _ => None,
        })
        .collect();
    assert_eq!(relied, ["c"]);
    // min_sites 2: c counts, b waits; the shortfall says how far b is.
    let shortfall = plan_withdrawal(
        &snapshot,
        &layout,
        &["b", "c"],
        "a",
        0,
        "web",
        &[p],
        2,
        false,
        clock(1000),
    )
    .expect_err("b not handed over");
    assert_eq!(
        shortfall.assessment.to_string(),
        "b: announcing for 100ms of hand_over 1s, c: announcing"
    );
    assert_eq!(
        hand_over::release_at(1, 2, &shortfall.assessment.hand_over_ends()),
        Some(t0 + Duration::from_millis(1900))
    );
    // c says not announcing, then announcing again: its run starts again.
    let before_c = etcd.revision;
    for announcing in [false, true] {
        let record = Record {
            announcing,
            ..announcing_record()
        };
        publish(&mut etcd, &layout, "c", leases["c"], p, record);
    }
    watched_at(
        &etcd,
        before_c,
        &mut snapshot,
        t0 + Duration::from_millis(1500),
    );
    assert_eq!(
        assess(&snapshot, &layout, &["b", "c"], "web", &[p], clock(2000)).to_string(),
        "b: announcing, c: announcing for 500ms of hand_over 1s"
    );
    // A version read ahead of the watch (a conflict read) does not carry c's run on: it
    // counts as seen just now until the watch brings the versions in between.
    let mut ahead = snapshot.clone();
    let before_held = etcd.revision;
    let held = Record {
        intent: Intent::Held,
        ..announcing_record()
    };
    publish(&mut etcd, &layout, "c", leases["c"], p, held);
    let key = layout.record("web", &p, "c");
    let kv = etcd.kvs[&key].clone();
    ahead.merge_read(&[Read::Key(key.clone())], etcd.revision, vec![(key, kv)]);
    assert_eq!(
        assess(&ahead, &layout, &["c"], "web", &[p], clock(3000)).to_string(),
        "c: announcing for 0s of hand_over 1s"
    );
    watched_at(
        &etcd,
        before_held,
        &mut ahead,
        t0 + Duration::from_millis(3000),
    );
    assert_eq!(
        assess(&ahead, &layout, &["c"], "web", &[p], clock(3000)).to_string(),
        "c: announcing",
        "held goes on announcing: the run goes on"
    );
    // A new session's read keeps the runs of records at the version followed.
    let mut fresh = etcd.snapshot();
    fresh.follow_from(&ahead.announcing, t0 + Duration::from_millis(3100));
    assert_eq!(
        assess(&fresh, &layout, &["b", "c"], "web", &[p], clock(3100)).to_string(),
        "b: announcing, c: announcing"
    );
    let mut unfollowed = etcd.snapshot();
    unfollowed.follow_from(&Continuity::default(), t0 + Duration::from_millis(3100));
    assert_eq!(
        assess(&unfollowed, &layout, &["c"], "web", &[p], clock(3600)).to_string(),
        "c: announcing for 500ms of hand_over 1s"
    );
}

fn announcing_record() -> Record {
    Record {
        healthy: true,
        announcing: true,
        intent: Intent::None,
    }
}
