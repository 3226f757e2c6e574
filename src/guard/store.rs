//! The etcd backend's logic, sans-IO: the key layout, the snapshot of the fleet's keys a
//! site holds, what it publishes, the withdrawal transaction and the guard's decision.
//!
//! The I/O (connection, lease keep-alive, watch, transactions) is the thin driver in
//! [`super::etcd`]; everything it decides goes through the pure functions here, which the
//! property test drives against an in-memory model of etcd's transaction semantics
//! (`store_tests.rs`). The layout and the argument are in `docs/guard.md` ("The etcd
//! backend").
//!
//! Key layout under the fleet's `key_prefix` `P` (service names and prefixes are escaped
//! so that `/` separates path elements only):
//!
//! | key | lease | value |
//! |---|---|---|
//! | `P/v1/site/<site>` | the site's | [`SiteRecord`]: the site is alive, with its fleet digest |
//! | `P/v1/svc/<service>/<prefix>/site/<site>` | the site's | [`Record`]: its state for that prefix |
//! | `P/v1/svc/<service>/<prefix>/epoch` | none | a counter, rewritten by every change of a record of the prefix |
//!
//! A site counts for a prefix while its record exists (its lease is alive), says
//! `announcing` and is not `withdrawing`, and this site has followed it announcing on the
//! watch for the hand-over time ([`super::hand_over`], [`Snapshot::announcing`]). A site stops counting only through a
//! transaction that rewrites its own record to `withdrawing` ([`plan_withdrawal`]), which
//! commits only if the records of the `min_sites` sites it relies on still have the
//! `mod_revision` the site read. Two sites relying on each other therefore cannot both
//! commit: the first one's write changes the record the second one compares. The epoch
//! is bumped by every change (when a prefix's set last changed, for operators); it is not
//! compared (see [`plan_withdrawal`] for why). A transaction that fails a compare reads,
//! in its else branch, the keys it compared ([`TxnPlan::on_conflict`]), and the next try
//! plans on them ([`apply_conflict`]), not on a snapshot the watch has not brought up to
//! the change that failed it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::hand_over::{self, Clock, Continuity, Wait};
use super::report::{Intent, SiteReport};
use super::runtime::{
    hand_over_wait, not_announced_here, withdrawal_cause, Cause, Decision, GuardInput,
};
use super::view::{FleetView, PeerSiteView, PollFailure, PollOutcome, POLL_FAILURE_REASONS};

/// Version of the key layout, the first path element under the key prefix.
pub const LAYOUT_VERSION: &str = "v1";

/// Escape a path element: `%` and `/` (prefixes contain `/`).
fn escape(element: &str) -> String {
    element.replace('%', "%25").replace('/', "%2F")
}

/// Appends `element` escaped to `buf` (without allocating when there is nothing to escape:
/// keys are made for every other site at every decision).
fn push_escaped(buf: &mut String, element: &str) {
    if element.contains(['%', '/']) {
        buf.push_str(&escape(element));
    } else {
        buf.push_str(element);
    }
}

fn unescape(element: &str) -> String {
    element.replace("%2F", "/").replace("%25", "%")
}

/// The keys of one fleet (`key_prefix` of `[etcd]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: String,
}

/// What a key of the layout names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// `…/site/<site>`.
    Site(String),
    /// `…/svc/<service>/<prefix>/site/<site>`.
    Record {
        /// Service.
        service: String,
        /// Prefix.
        prefix: IpNet,
        /// Site.
        site: String,
    },
    /// `…/svc/<service>/<prefix>/epoch`.
    Epoch {
        /// Service.
        service: String,
        /// Prefix.
        prefix: IpNet,
    },
}

impl Layout {
    /// The layout under `key_prefix` (validated by the fleet loader: starts with `/`,
    /// does not end with one).
    pub fn new(key_prefix: &str) -> Self {
        Layout {
            root: format!("{key_prefix}/{LAYOUT_VERSION}/"),
        }
    }

    /// Everything of the fleet (what the driver reads and watches).
    pub fn root(&self) -> &str {
        &self.root
    }

    /// `P/v1/site/<site>`.
    pub fn site(&self, site: &str) -> String {
        let mut key = String::new();
        self.site_into(&mut key, site);
        key
    }

    /// `P/v1/site/<site>` into `buf` (cleared first).
    fn site_into(&self, buf: &mut String, site: &str) {
        buf.clear();
        buf.push_str(&self.root);
        buf.push_str("site/");
        push_escaped(buf, site);
    }

    /// `P/v1/svc/<service>/<prefix>/site/<site>`.
    pub fn record(&self, service: &str, prefix: &IpNet, site: &str) -> String {
        let dir = self.record_dir(service, prefix);
        let mut key = String::new();
        record_into(&mut key, &dir, site);
        key
    }

    /// `P/v1/svc/<service>/<prefix>/site/`: the records of a prefix are this and a site.
    fn record_dir(&self, service: &str, prefix: &IpNet) -> String {
        format!(
            "{}svc/{}/{}/site/",
            self.root,
            escape(service),
            escape(&prefix.to_string())
        )
    }

    /// `P/v1/svc/<service>/<prefix>/epoch`.
    pub fn epoch(&self, service: &str, prefix: &IpNet) -> String {
        format!(
            "{}svc/{}/{}/epoch",
            self.root,
            escape(service),
            escape(&prefix.to_string())
        )
    }

    /// What `key` names, if it is one of the layout's keys.
    pub fn parse(&self, key: &str) -> Option<Key> {
        let rest = key.strip_prefix(&self.root)?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            ["site", site] => Some(Key::Site(unescape(site))),
            ["svc", service, prefix, "epoch"] => Some(Key::Epoch {
                service: unescape(service),
                prefix: unescape(prefix).parse().ok()?,
            }),
            ["svc", service, prefix, "site", site] => Some(Key::Record {
                service: unescape(service),
                prefix: unescape(prefix).parse().ok()?,
                site: unescape(site),
            }),
            _ => None,
        }
    }
}

/// The record key of `site` under `dir` ([`Layout::record_dir`]) into `buf` (cleared first).
fn record_into(buf: &mut String, dir: &str, site: &str) {
    buf.clear();
    buf.push_str(dir);
    push_escaped(buf, site);
}

/// A site's state for one prefix of one service (the value of its record key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Local health (checks and drains), for humans.
    pub healthy: bool,
    /// On the wire (as the poll mesh's report defines it), and not being withdrawn.
    pub announcing: bool,
    /// `none`, `held` (it wants to withdraw and keeps announcing: it still counts), or
    /// `withdrawing` — written only by a committed withdrawal transaction: from that
    /// revision on the others do not count it.
    pub intent: Intent,
}

impl Record {
    /// Whether the record makes its site count as keeping the prefix announced.
    pub fn counts(&self) -> bool {
        self.announcing && self.intent != Intent::Withdrawing
    }
}

/// The value of `P/v1/site/<site>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteRecord {
    /// [`super::report::REPORT_VERSION`].
    pub version: u32,
    /// The fleet digest the site runs.
    pub fleet_digest: String,
}

/// One key as last read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    /// Value bytes.
    pub value: Vec<u8>,
    /// Revision of its last change (what transactions compare).
    pub mod_revision: i64,
    /// Lease it is attached to (0: none).
    pub lease: i64,
    /// The value read as a [`Record`], once, when it arrived (every decision of every site
    /// reads the records of the whole fleet: parsing them each time made a 200-site fleet
    /// spend its time in JSON).
    pub record: Option<Record>,
}

impl Kv {
    /// A key's value as read or written.
    pub fn new(value: Vec<u8>, mod_revision: i64, lease: i64) -> Self {
        Kv {
            record: serde_json::from_slice(&value).ok(),
            value,
            mod_revision,
            lease,
        }
    }
}

/// A change seen on the watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Created or rewritten.
    Put {
        /// Key.
        key: String,
        /// The new value.
        kv: Kv,
    },
    /// Deleted (by a transaction or a lease expiry).
    Delete {
        /// Key.
        key: String,
        /// Revision of the delete.
        revision: i64,
    },
}

/// The fleet's keys at a revision, as one site knows them.
///
/// Mostly as the watch delivered them, but not only: a site's own committed writes are
/// applied at once ([`apply_committed`]), and a conflicted withdrawal brings the current
/// value of the keys it compared ([`apply_conflict`]), both ahead of the watch. So a key
/// is only ever replaced by a *newer* version (by `mod_revision`), and a key known absent
/// at a revision (`tombstones`) is not brought back by an older put still on its way on
/// the watch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The revision everything here is as of.
    pub revision: i64,
    /// Every key under the layout's root.
    pub kvs: BTreeMap<String, Kv>,
    /// Keys read as absent ahead of the watch, with the revision of that read: a watched
    /// put of the key at or before it is older than what we know. Dropped once the watch
    /// has passed that revision ([`Snapshot::watched`]) or a newer change of the key came.
    pub tombstones: BTreeMap<String, i64>,
    /// Per record key, since when it has said `announcing` without a break, as this site
    /// followed it on the watch ([`Snapshot::apply_watched`]), which brings every version
    /// in order; the version it was last seen in is its `mod_revision`, so a version read
    /// ahead of the watch (a conflict read) does not carry the run on until the watch has
    /// brought the versions in between. For the hand-over ([`super::hand_over`]).
    pub announcing: Continuity<String>,
}

impl Snapshot {
    /// Apply one change (watched, or one of our own commits): ignored when the snapshot
    /// already holds the key at the same or a later revision (read ahead of the watch).
    pub fn apply(&mut self, change: Change) {
        match change {
            Change::Put { key, kv } => {
                self.revision = self.revision.max(kv.mod_revision);
                if self.known_at(&key) >= kv.mod_revision {
                    return;
                }
                self.tombstones.remove(&key);
                self.kvs.insert(key, kv);
            }
            Change::Delete { key, revision } => {
                self.revision = self.revision.max(revision);
                if self.known_at(&key) >= revision {
                    return;
                }
                self.tombstones.remove(&key);
                self.kvs.remove(&key);
            }
        }
    }

    /// A change the watch delivered, at `at` (local clock): applied as [`Snapshot::apply`],
    /// and followed by the hand-over runs: a record's run goes on across versions that all
    /// say announcing, ends with one that does not or with its deletion.
    pub fn apply_watched(&mut self, change: Change, at: Instant) {
        match &change {
            Change::Put { key, kv } => match kv.record {
                Some(r) => self
                    .announcing
                    .observe(key.clone(), r.announcing, kv.mod_revision, at),
                None => self.announcing.forget(key),
            },
            Change::Delete { key, .. } => self.announcing.forget(key),
        }
        self.apply(change);
    }

    /// A fresh read (a new session) replaces the snapshot: a record still at the version
    /// `previous` followed keeps its run (etcd says it did not change meanwhile), any
    /// other record that announces starts one at `at`.
    pub fn follow_from(&mut self, previous: &Continuity<String>, at: Instant) {
        let mut runs = Continuity::default();
        for (key, kv) in &self.kvs {
            let Some(record) = kv.record else { continue };
            if !record.announcing {
                continue;
            }
            let since = previous.since(key, kv.mod_revision).unwrap_or(at);
            runs.observe(key.clone(), true, kv.mod_revision, since);
        }
        self.announcing = runs;
    }

    /// Since when the record at `key` has been followed announcing, if the snapshot holds
    /// the version the watch last brought.
    fn announcing_since(&self, key: &str) -> Option<Instant> {
        let version = self.kvs.get(key)?.mod_revision;
        self.announcing.since(key, version)
    }

    /// The revision as of which the snapshot knows `key` (its `mod_revision`, or the read
    /// that found it absent; 0: not known ahead of the watch).
    fn known_at(&self, key: &str) -> i64 {
        self.kvs
            .get(key)
            .map(|kv| kv.mod_revision)
            .or_else(|| self.tombstones.get(key).copied())
            .unwrap_or(0)
    }

    /// The watch has delivered every change up to `revision` (a watch response's header
    /// revision): absences read before it are now the watch's to tell.
    pub fn watched(&mut self, revision: i64) {
        self.revision = self.revision.max(revision);
        self.tombstones.retain(|_, at| *at > revision);
    }

    /// Merge what a transaction's else branch read at `revision` (every key the `reads`
    /// cover, as they were at that revision): newer versions replace older ones, and a key
    /// the reads cover but did not return is gone (its tombstone keeps an older watched put
    /// from bringing it back). The other keys stay as the watch left them.
    pub fn merge_read(&mut self, reads: &[Read], revision: i64, read: Vec<(String, Kv)>) {
        let present: BTreeSet<&str> = read.iter().map(|(k, _)| k.as_str()).collect();
        let gone: Vec<String> = self
            .kvs
            .keys()
            .filter(|k| !present.contains(k.as_str()) && reads.iter().any(|r| r.covers(k)))
            .cloned()
            .collect();
        for key in gone {
            if self.known_at(&key) <= revision {
                self.kvs.remove(&key);
                self.tombstones.insert(key, revision);
            }
        }
        for (key, kv) in read {
            if reads.iter().any(|r| r.covers(&key)) && self.known_at(&key) < kv.mod_revision {
                self.tombstones.remove(&key);
                self.kvs.insert(key, kv);
            }
        }
    }

    /// The record at `key`, if present and readable (an unreadable one counts as absent).
    pub fn record(&self, key: &str) -> Option<Record> {
        self.kvs.get(key).and_then(|kv| kv.record)
    }

    /// `mod_revision` of `key`; 0 when absent (etcd compares a missing key's as 0).
    pub fn mod_revision(&self, key: &str) -> i64 {
        self.kvs.get(key).map_or(0, |kv| kv.mod_revision)
    }

    /// The epoch counter of a prefix (0 when absent).
    pub fn epoch(&self, key: &str) -> u64 {
        self.kvs
            .get(key)
            .and_then(|kv| std::str::from_utf8(&kv.value).ok()?.parse().ok())
            .unwrap_or(0)
    }
}

/// How another site stands for a service's prefixes in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSiteState {
    /// Every prefix announced (a `held` site too: it keeps announcing until its own
    /// withdrawal commits).
    Announcing,
    /// It would count, but this site has not followed it announcing for the hand-over
    /// time yet ([`super::hand_over`]): counts as not announcing.
    HandingOver(Wait),
    /// `held` for a prefix, and ranked after the deciding site: it keeps announcing, but
    /// it will yield (the first-ranked sites are the ones left), so a withdrawal does not
    /// rely on it ([`plan_withdrawal`]).
    HeldAfter(IpNet),
    /// It has no live lease (down, frozen, or cut off from etcd).
    NoLease,
    /// No record for a prefix (not configured there).
    NoRecord(IpNet),
    /// A record says not announcing.
    NotAnnouncing(IpNet),
    /// Its withdrawal of a prefix is committed.
    Withdrawing(IpNet),
}

/// The other sites' standing for one service's prefixes, in fleet order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreAssessment {
    /// `(site, state)` for every other site.
    pub entries: Vec<(String, StoreSiteState)>,
}

impl StoreAssessment {
    /// When each site not handed over yet will be.
    pub fn hand_over_ends(&self) -> Vec<Instant> {
        self.entries
            .iter()
            .filter_map(|(_, s)| match s {
                StoreSiteState::HandingOver(w) => Some(w.ends),
                _ => None,
            })
            .collect()
    }

    /// The sites that count.
    pub fn counted(&self) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|(_, s)| *s == StoreSiteState::Announcing)
            .map(|(n, _)| n.as_str())
            .collect()
    }
}

impl std::fmt::Display for StoreAssessment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.entries.is_empty() {
            return f.write_str("no other site");
        }
        for (i, (site, state)) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            match state {
                StoreSiteState::Announcing => write!(f, "{site}: announcing")?,
                StoreSiteState::HandingOver(wait) => write!(f, "{site}: {wait}")?,
                StoreSiteState::NoLease => {
                    write!(f, "{site}: no lease in etcd (down or cut off from etcd)")?;
                }
                StoreSiteState::NoRecord(p) => write!(f, "{site}: no record for {p}")?,
                StoreSiteState::NotAnnouncing(p) => write!(f, "{site}: not announcing {p}")?,
                StoreSiteState::HeldAfter(p) => {
                    write!(f, "{site}: held {p}, ranked after us")?;
                }
                StoreSiteState::Withdrawing(p) => write!(f, "{site}: withdrawing {p}")?,
            }
        }
        Ok(())
    }
}

/// How every site of `others` stands for `service`'s `prefixes` in `snapshot` at `clock`
/// (a `held` site counts: it keeps announcing; what `/status` shows).
pub fn assess(
    snapshot: &Snapshot,
    layout: &Layout,
    others: &[&str],
    service: &str,
    prefixes: &[IpNet],
    clock: Clock,
) -> StoreAssessment {
    assess_ranked(
        snapshot,
        layout,
        others,
        others.len(),
        service,
        prefixes,
        clock,
    )
}

/// How every site of `others` stands for a withdrawal by the site ranked `local_rank`
/// (`others` is the fleet in order without that site, so its first `local_rank` sites rank
/// before it): as [`assess`], but a `held` site ranked after it does not count
/// ([`StoreSiteState::HeldAfter`]). As the poll mesh's ranks (`docs/guard.md`, Ties): when
/// several sites want to withdraw at once and see each other held, the first-ranked keep
/// announcing and the others withdraw relying on them, on records that no longer change,
/// so those transactions do not fail each other (relying on any held site, the first to
/// commit failed every other transaction on the snapshot). Sites that do not see each
/// other held yet still race (`docs/guard.md`, "Scale run"). A site that would count but
/// has not been followed announcing for `clock.hand_over` is
/// [`StoreSiteState::HandingOver`] (the same rule as the poll mesh's,
/// [`hand_over::judge`]).
pub fn assess_ranked(
    snapshot: &Snapshot,
    layout: &Layout,
    others: &[&str],
    local_rank: usize,
    service: &str,
    prefixes: &[IpNet],
    clock: Clock,
) -> StoreAssessment {
    // Every decision of a failing site looks at every other site: the keys are made in two
    // buffers, not allocated per site and prefix.
    let dirs: Vec<(IpNet, String)> = prefixes
        .iter()
        .map(|p| (*p, layout.record_dir(service, p)))
        .collect();
    let (mut site_key, mut record_key) = (String::new(), String::new());
    let mut entries = Vec::with_capacity(others.len());
    for (i, site) in others.iter().enumerate() {
        let yields = i >= local_rank;
        layout.site_into(&mut site_key, site);
        let state = if !snapshot.kvs.contains_key(&site_key) {
            StoreSiteState::NoLease
        } else {
            dirs.iter()
                .find_map(|(p, dir)| {
                    record_into(&mut record_key, dir, site);
                    match snapshot.record(&record_key) {
                        None => Some(StoreSiteState::NoRecord(*p)),
                        Some(r) if r.intent == Intent::Withdrawing => {
                            Some(StoreSiteState::Withdrawing(*p))
                        }
                        Some(r) if !r.announcing => Some(StoreSiteState::NotAnnouncing(*p)),
                        Some(r) if yields && r.intent == Intent::Held => {
                            Some(StoreSiteState::HeldAfter(*p))
                        }
                        Some(_) => None,
                    }
                })
                .unwrap_or_else(|| {
                    // Every prefix counts: the latest start of their runs decides.
                    let since = dirs
                        .iter()
                        .map(|(_, dir)| {
                            record_into(&mut record_key, dir, site);
                            snapshot.announcing_since(&record_key)
                        })
                        .try_fold(None, |latest: Option<Instant>, s| {
                            s.map(|s| Some(latest.map_or(s, |l| l.max(s))))
                        })
                        .flatten();
                    match hand_over::judge(since, clock) {
                        Ok(()) => StoreSiteState::Announcing,
                        Err(wait) => StoreSiteState::HandingOver(wait),
                    }
                })
        };
        entries.push(((*site).to_owned(), state));
    }
    StoreAssessment { entries }
}

/// One operation of a transaction's success branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Put `value` at `key`; `leased`: attached to the site's lease.
    Put {
        /// Key.
        key: String,
        /// Value.
        value: Vec<u8>,
        /// Attach the site's lease.
        leased: bool,
    },
    /// Delete `key`.
    Delete {
        /// Key.
        key: String,
    },
}

/// A transaction: `if every compare holds then ops else read`. Compares are
/// `mod_revision(key) == revision` (0 for "absent").
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TxnPlan {
    /// `(key, mod_revision)`.
    pub compares: Vec<(String, i64)>,
    /// What to write when they hold.
    pub ops: Vec<Op>,
    /// What to read when one does not (the else branch): the compared keys' current
    /// state, in the same round trip, so that the next try starts from what beat this one
    /// ([`apply_conflict`]) instead of a snapshot the watch has not brought up to it yet.
    pub on_conflict: Vec<Read>,
}

/// Tries of one withdrawal in a row by the driver, each planned on what the previous
/// one's conflict read ([`apply_conflict`]): past this the set keeps changing faster than
/// a round trip, and the next watch event or report tries again.
pub const WITHDRAWAL_TRIES: usize = 4;

/// A read of a transaction's else branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// One key.
    Key(String),
    /// Every key that starts with this (a directory of the layout, ending in `/`).
    Prefix(String),
}

impl Read {
    /// Whether `key` is one this read returns when it exists.
    pub fn covers(&self, key: &str) -> bool {
        match self {
            Read::Key(k) => k == key,
            Read::Prefix(p) => key.starts_with(p.as_str()),
        }
    }
}

/// Why a withdrawal cannot be asked for now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    /// How many other sites count.
    pub counted: usize,
    /// The standing of every other site.
    pub assessment: StoreAssessment,
}

/// The record the site writes for a prefix, with the epoch bump that goes with every
/// change of a record.
fn record_ops(
    snapshot: &Snapshot,
    layout: &Layout,
    service: &str,
    prefix: &IpNet,
    site: &str,
    record: Record,
) -> [Op; 2] {
    let epoch = layout.epoch(service, prefix);
    [
        Op::Put {
            key: layout.record(service, prefix, site),
            value: serde_json::to_vec(&record).unwrap_or_default(),
            leased: true,
        },
        Op::Put {
            value: (snapshot.epoch(&epoch) + 1).to_string().into_bytes(),
            key: epoch,
            leased: false,
        },
    ]
}

/// The transaction that withdraws `local`'s `prefixes` of `service`, if `snapshot` shows at
/// least `min_sites` other sites counting ([`assess_ranked`]: `others` is the fleet in
/// order without `local`, ranked `local_rank`). It relies on exactly `min_sites` of them, the
/// first in fleet order, and compares their records, and
/// `local`'s own record and site key, with what `snapshot` holds; it rewrites `local`'s
/// records to `withdrawing` (bumping the epochs). It commits only if none of that changed
/// since — no withdrawal of a site it relies on, no lease expiry of one — so the
/// `min_sites` it relied on still announce at the commit revision.
///
/// Why not every counted site, or the epoch: each would make every commit on the prefix
/// fail every other transaction in flight, so that every site failing at once takes one
/// etcd round per site and N² transactions (measured with the epoch compared: 50 sites,
/// 4918 conflicts and 38 s to settle). Relying on the first `min_sites` in fleet order,
/// sites that rely on the same ones withdraw side by side, and the first-ranked sites are
/// the ones left announcing (as with the poll mesh's ranks).
#[allow(clippy::too_many_arguments)]
pub fn plan_withdrawal(
    snapshot: &Snapshot,
    layout: &Layout,
    others: &[&str],
    local: &str,
    local_rank: usize,
    service: &str,
    prefixes: &[IpNet],
    min_sites: usize,
    healthy: bool,
    clock: Clock,
) -> Result<TxnPlan, Shortfall> {
    let assessment = assess_ranked(
        snapshot, layout, others, local_rank, service, prefixes, clock,
    );
    let counted = assessment.counted();
    if counted.len() < min_sites {
        return Err(Shortfall {
            counted: counted.len(),
            assessment,
        });
    }
    let mut plan = TxnPlan::default();
    let own_site = layout.site(local);
    // Our own lease must still be alive (our site key present as we read it): a site whose
    // lease expired is not counted by anyone, and its new lease republishes first.
    plan.compares
        .push((own_site.clone(), snapshot.mod_revision(&own_site)));
    plan.on_conflict.push(Read::Key(own_site));
    for p in prefixes {
        // The else branch reads every record of the prefix (the relied-on ones and ours
        // among them): a conflict at a large fleet is mostly a site that changed since our
        // read (held, withdrawing, its lease gone), and the next try must see it, and the
        // others that changed with it, at once.
        plan.on_conflict
            .push(Read::Prefix(layout.record_dir(service, p)));
        let own = layout.record(service, p, local);
        plan.compares
            .push((own.clone(), snapshot.mod_revision(&own)));
        for site in counted.iter().take(min_sites) {
            let key = layout.record(service, p, site);
            plan.compares
                .push((key.clone(), snapshot.mod_revision(&key)));
        }
        plan.ops.extend(record_ops(
            snapshot,
            layout,
            service,
            p,
            local,
            Record {
                healthy,
                announcing: false,
                intent: Intent::Withdrawing,
            },
        ));
    }
    Ok(plan)
}

/// What `local` must publish for its `report`: its site key, and per (service, prefix) of
/// the report a [`Record`]. A prefix whose withdrawal is granted (in `granted`) is
/// published `withdrawing` until the report stops asking; a report entry that asks
/// (intent `withdrawing`, i.e. `PublishIntentAndWait`) is published `held`: the site
/// keeps announcing and keeps counting until its transaction commits.
pub fn desired_records(
    report: &SiteReport,
    granted: &BTreeSet<(String, IpNet)>,
) -> BTreeMap<(String, IpNet), Record> {
    let mut out = BTreeMap::new();
    for entry in &report.services {
        for p in &entry.prefixes {
            let is_granted = granted.contains(&(entry.name.clone(), *p));
            let record = if is_granted {
                Record {
                    healthy: entry.healthy,
                    announcing: false,
                    intent: Intent::Withdrawing,
                }
            } else {
                Record {
                    healthy: entry.healthy,
                    announcing: entry.announcing,
                    intent: match entry.intent {
                        Intent::Withdrawing => Intent::Held,
                        other => other,
                    },
                }
            };
            out.insert((entry.name.clone(), *p), record);
        }
    }
    out
}

/// The transaction that brings `local`'s keys in `snapshot` to `desired` (and its site key
/// to `site`): a put (with the epoch bump) for every record that differs, a delete (with
/// the bump) for every record of `local` that is no longer desired. `None` when nothing
/// differs. A key still attached to another lease than `lease` (an earlier session's, which
/// nobody keeps alive any more) differs too: written again, it lives as long as this
/// session's lease instead of expiring under a healthy site.
/// No compares: a publication states facts (what is on this site's wire) that nobody
/// could refuse, and what it changes can only make the others count this site *more*
/// (announcing again) or remove a count the site has already lost on the wire. Safety
/// rests on the withdrawal's compares ([`plan_withdrawal`]), which fail on any change of a
/// relied-on site. (Comparing the epoch here made every simultaneous publication but one
/// conflict: 200 sites publishing at start did not converge in two minutes.) Its epoch
/// bumps are not applied to the site's own snapshot ([`apply_committed`]), and the driver
/// plans withdrawals only once the watch has brought its own publication.
pub fn plan_publication(
    snapshot: &Snapshot,
    layout: &Layout,
    local: &str,
    site: &SiteRecord,
    desired: &BTreeMap<(String, IpNet), Record>,
    lease: i64,
) -> Option<TxnPlan> {
    let current = |key: &str| snapshot.kvs.get(key).is_some_and(|kv| kv.lease == lease);
    let mut plan = TxnPlan::default();
    let site_key = layout.site(local);
    let site_value = serde_json::to_vec(site).unwrap_or_default();
    if snapshot.kvs.get(&site_key).map(|kv| &kv.value) != Some(&site_value) || !current(&site_key) {
        plan.ops.push(Op::Put {
            key: site_key,
            value: site_value,
            leased: true,
        });
    }
    for ((service, prefix), record) in desired {
        let key = layout.record(service, prefix, local);
        if snapshot.record(&key) != Some(*record) || !current(&key) {
            plan.ops.extend(record_ops(
                snapshot, layout, service, prefix, local, *record,
            ));
        }
    }
    // Only this site's records can be deleted: a suffix test first, not a parse of every
    // key of the fleet at every publication.
    let mut own = String::from("/site/");
    push_escaped(&mut own, local);
    for key in snapshot.kvs.keys().filter(|k| k.ends_with(own.as_str())) {
        if let Some(Key::Record {
            service,
            prefix,
            site,
        }) = layout.parse(key)
        {
            if site == local && !desired.contains_key(&(service.clone(), prefix)) {
                let [_, bump] = record_ops(
                    snapshot,
                    layout,
                    &service,
                    &prefix,
                    local,
                    Record {
                        healthy: false,
                        announcing: false,
                        intent: Intent::None,
                    },
                );
                plan.ops.push(Op::Delete { key: key.clone() });
                plan.ops.push(bump);
            }
        }
    }
    (!plan.ops.is_empty()).then_some(plan)
}

/// The driver's bookkeeping when it reads `report` at `asked_at`: a grant lasts while the
/// report still asks for its prefix (once the coordinator withdrew, or recovered, the
/// report says so and the records follow it), and a grant that lasts is refreshed to
/// `asked_at`. The refresh is what lets an intent published *after* the commit use it:
/// while the grant lasts the record has said `withdrawing` without a break since the
/// commit (the publication keeps it so), so nobody has counted this site since then and a
/// withdrawal at any later moment leaves what the commit left. A grant the driver dropped
/// (the report stopped asking: the record may say announcing again) is never refreshed,
/// so a coordinator still seeing it in an older state judges it by its old `asked_at`,
/// which is before its new intent.
pub fn refresh_grants(state: &mut StoreState, report: &SiteReport, asked_at: Instant) {
    state.grants.retain(|(svc, p), grant| {
        let asks = report
            .services
            .iter()
            .any(|e| e.name == *svc && e.prefixes.contains(p) && e.intent == Intent::Withdrawing);
        if asks {
            grant.asked_at = grant.asked_at.max(asked_at);
        }
        asks
    });
}

/// The publication for `report` under the grants in force, with this session's `lease`
/// (see [`plan_publication`]).
pub fn publication(
    state: &StoreState,
    layout: &Layout,
    local: &str,
    site: &SiteRecord,
    report: &SiteReport,
    lease: i64,
) -> Option<TxnPlan> {
    let granted: BTreeSet<(String, IpNet)> = state.grants.keys().cloned().collect();
    plan_publication(
        &state.snapshot,
        layout,
        local,
        site,
        &desired_records(report, &granted),
        lease,
    )
}

/// The withdrawal transaction for one entry of the report, if it asks for one (intent
/// `withdrawing`, some prefix not granted yet) and the snapshot counts enough others
/// (`others` and `local_rank` as for [`plan_withdrawal`], with the hand-over at `clock`).
#[allow(clippy::too_many_arguments)]
pub fn withdrawal_for(
    state: &StoreState,
    layout: &Layout,
    others: &[&str],
    local: &str,
    local_rank: usize,
    entry: &super::report::ServiceReport,
    min_sites: usize,
    clock: Clock,
) -> Option<TxnPlan> {
    let asks = entry.intent == Intent::Withdrawing
        && entry
            .prefixes
            .iter()
            .any(|p| !state.grants.contains_key(&(entry.name.clone(), *p)));
    if !asks {
        return None;
    }
    plan_withdrawal(
        &state.snapshot,
        layout,
        others,
        local,
        local_rank,
        &entry.name,
        &entry.prefixes,
        min_sites,
        entry.healthy,
        clock,
    )
    .ok()
}

/// Record the grants of a committed withdrawal of `entry`.
pub fn granted(
    state: &mut StoreState,
    entry: &super::report::ServiceReport,
    asked_at: Instant,
    revision: i64,
) {
    for p in &entry.prefixes {
        state
            .grants
            .insert((entry.name.clone(), *p), Grant { asked_at, revision });
    }
}

/// A withdrawal refused by a compare, with what its else branch read at `revision` (the
/// keys of `plan.on_conflict` as they were then): merged into the snapshot
/// ([`Snapshot::merge_read`]), so that the next decision and the next plan start from the
/// state that beat this one, not from a snapshot the watch has not brought up to it yet
/// (retrying on that made every site failing at once at 200 sites take ~160 conflicts a
/// site). Returns what beat it: each compared key that changed since the read, as the
/// status shows it (`b: held at revision 42`, `b: gone`).
pub fn apply_conflict(
    snapshot: &mut Snapshot,
    layout: &Layout,
    plan: &TxnPlan,
    revision: i64,
    read: Vec<(String, Kv)>,
) -> Vec<String> {
    snapshot.merge_read(&plan.on_conflict, revision, read);
    plan.compares
        .iter()
        .filter(|(key, r)| snapshot.mod_revision(key) != *r)
        .map(|(key, _)| {
            let who = match layout.parse(key) {
                Some(Key::Site(site)) => format!("{site} (site key)"),
                Some(Key::Record { site, .. }) => site,
                _ => key.clone(),
            };
            match (snapshot.kvs.get(key), snapshot.record(key)) {
                (None, _) => format!("{who}: gone"),
                (Some(kv), Some(r)) => {
                    let state = match r.intent {
                        Intent::Withdrawing => "withdrawing",
                        Intent::Held => "held",
                        Intent::None if r.announcing => "announcing",
                        Intent::None => "not announcing",
                    };
                    format!("{who}: {state} at revision {}", kv.mod_revision)
                }
                (Some(kv), None) => format!("{who}: rewritten at revision {}", kv.mod_revision),
            }
        })
        .collect()
}

/// Our own committed writes, applied to the snapshot at once (the watch brings them again
/// with the same revision): the next plan must not write them a second time, and must
/// compare what they left. A plan without compares (a publication) leaves the epochs as
/// they were read: its bump was blind, and the epoch's new `mod_revision` must only be
/// compared once the watch has delivered every change before it.
pub fn apply_committed(snapshot: &mut Snapshot, plan: &TxnPlan, revision: i64, lease: i64) {
    let blind = plan.compares.is_empty();
    for op in &plan.ops {
        if blind && op_key(op).ends_with("/epoch") {
            continue;
        }
        snapshot.apply(match op {
            Op::Put { key, value, leased } => Change::Put {
                key: key.clone(),
                kv: Kv::new(value.clone(), revision, if *leased { lease } else { 0 }),
            },
            Op::Delete { key } => Change::Delete {
                key: key.clone(),
                revision,
            },
        });
    }
}

fn op_key(op: &Op) -> &str {
    match op {
        Op::Put { key, .. } | Op::Delete { key } => key,
    }
}

/// A committed withdrawal of `local`'s prefixes of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// When the driver read the report that asked for it (local clock): the grant answers
    /// an intent published before that moment, never a later one.
    pub asked_at: Instant,
    /// The commit revision.
    pub revision: i64,
}

/// The store as the driver last saw it: what the coordinator decides on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreState {
    /// The store answers and this site holds a live lease: decisions may use the snapshot.
    pub usable: bool,
    /// Why not (the latest error), or `None`.
    pub error: Option<String>,
    /// Since when `usable` has had its current value.
    pub since: Option<Instant>,
    /// The latest successful exchange with etcd (keep-alive, watch, transaction).
    pub last_contact: Option<Instant>,
    /// This site's lease id and its TTL as etcd last said (0 when none).
    pub lease_id: i64,
    /// Remaining TTL of the lease at the last keep-alive.
    pub lease_ttl: Duration,
    /// The fleet's keys.
    pub snapshot: Snapshot,
    /// Committed withdrawals of this site, per (service, prefix).
    pub grants: BTreeMap<(String, IpNet), Grant>,
    /// The latest transaction: what, its outcome and revision.
    pub last_txn: Option<TxnRecord>,
    /// The latest withdrawal that conflicted, with what beat it (kept when later
    /// transactions commit: why this site's withdrawal had to try again).
    pub last_conflict: Option<TxnRecord>,
    /// Withdrawal transactions committed / not committed (a compare failed) / failed.
    pub txns: TxnCounts,
}

/// The latest transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnRecord {
    /// e.g. `withdraw web 203.0.113.0/24` or `publish`.
    pub what: String,
    /// `committed`, `conflict` (a compare failed) or `error: …`.
    pub outcome: String,
    /// Revision of the answer (0 on error).
    pub revision: i64,
    /// When (wall clock).
    pub at: std::time::SystemTime,
    /// A conflict: what beat it, as its else branch read it ([`apply_conflict`]).
    pub changed: Vec<String>,
}

/// Transaction counters (the metric `anyguard_guard_store_txns_total{kind,result}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxnCounts {
    /// Withdrawals committed.
    pub withdraw_committed: u64,
    /// Withdrawals refused by a compare (someone changed the set since the read).
    pub withdraw_conflict: u64,
    /// Publications committed.
    pub publish_committed: u64,
    /// Transactions that got no answer (etcd unreachable, timeout, error).
    pub errors: u64,
}

impl StoreState {
    /// Whether the grant for every one of `prefixes` answers an intent published at
    /// `published_at`.
    pub fn granted(&self, service: &str, prefixes: &[IpNet], published_at: Instant) -> Option<i64> {
        let mut revision = 0;
        for p in prefixes {
            let g = self.grants.get(&(service.to_owned(), *p))?;
            if g.asked_at <= published_at {
                return None;
            }
            revision = revision.max(g.revision);
        }
        (!prefixes.is_empty()).then_some(revision)
    }
}

/// The guard's decision for one service with the etcd backend (the same [`Decision`]s as
/// [`super::runtime::decide`], so the coordinator, the report and `/status` are the
/// same): announce while healthy; a forced drain withdraws; otherwise withdraw only once
/// this site's withdrawal transaction committed for an intent published before it was
/// asked; ask (keep announcing, `PublishIntentAndWait`) while the store shows at least
/// `min_sites` other sites counting; hold otherwise — and hold, loudly, while the store
/// is not usable. Another site counts only once handed over ([`super::hand_over`]).
pub fn decide(
    input: &GuardInput<'_>,
    layout: &Layout,
    others: &[&str],
    store: &StoreState,
    now: Instant,
) -> Decision {
    let local = &input.local;
    let clock = Clock {
        now,
        hand_over: input.timing.hand_over,
    };
    // `others` is the fleet without this site, in order: the sites ranked before it are
    // the first `local_rank`.
    let assessment = || {
        assess_ranked(
            &store.snapshot,
            layout,
            others,
            input.local_rank,
            input.service,
            input.prefixes,
            clock,
        )
    };
    let cause = match withdrawal_cause(local) {
        Cause::Stay => return Decision::Announce,
        Cause::Forced => {
            let a = assessment();
            return Decision::Withdraw {
                reason: format!(
                    "forced drain overrides the guard: {}; {a}",
                    outcome(input, others, a.counted().len(), "leaves")
                ),
                forced: true,
            };
        }
        Cause::Guarded(cause) => cause,
    };
    if !local.announcing {
        return not_announced_here(cause, input.service);
    }
    if input.prefixes.is_empty() {
        return Decision::Withdraw {
            reason: format!("{cause}; {} has no prefixes to keep", input.service),
            forced: false,
        };
    }
    if let super::runtime::LocalIntent::Withdrawing { published_at } = local.intent {
        if let Some(revision) = store.granted(input.service, input.prefixes, published_at) {
            return Decision::Withdraw {
                reason: format!(
                    "{cause}; withdrawal committed in etcd at revision {revision} with at least {} other sites announcing",
                    input.min_sites
                ),
                forced: false,
            };
        }
    }
    if !store.usable {
        return Decision::Hold {
            reason: format!(
                "{cause}; ETCD UNREACHABLE ({}): no withdrawal can be confirmed, so {} stays announced here until etcd answers again",
                store.error.as_deref().unwrap_or("no lease yet"),
                input.service
            ),
            hand_over_until: None,
        };
    }
    let a = assessment();
    let counted = a.counted().len();
    if counted >= input.min_sites {
        Decision::PublishIntentAndWait {
            reason: format!(
                "{cause}; withdrawal of {} asked of etcd (transaction at revision {}); {a}",
                input.service, store.snapshot.revision
            ),
        }
    } else {
        let would_leave = outcome(input, others, counted, "would leave");
        match hand_over::release_at(counted, input.min_sites, &a.hand_over_ends()) {
            Some(until) => Decision::Hold {
                reason: format!(
                    "{cause}; {}; {a}",
                    hand_over_wait(input.service, until, now, &would_leave)
                ),
                hand_over_until: Some(until),
            },
            None => Decision::Hold {
                reason: format!("{cause}; {would_leave}; {a}"),
                hand_over_until: None,
            },
        }
    }
}

fn outcome(input: &GuardInput<'_>, others: &[&str], counted: usize, verb: &str) -> String {
    format!(
        "withdrawing {} {verb} {counted} of {} sites announcing (min_sites {})",
        input.service,
        others.len() + 1,
        input.min_sites
    )
}

/// The other sites that count for `service`'s `prefixes` in the store at `clock` (the
/// status document's `sites_announcing`).
pub fn sites_announcing(
    store: &StoreState,
    layout: &Layout,
    others: &[&str],
    service: &str,
    prefixes: &[IpNet],
    clock: Clock,
) -> Vec<String> {
    assess(&store.snapshot, layout, others, service, prefixes, clock)
        .counted()
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// The fleet view made from the store at `now`, for what reads a [`FleetView`] (the config
/// guard's `check_reload`, `/status`'s `fleet.sites`, the digest comparison): each other
/// site with a live lease as a report of its records, "requested" at `now` while the store
/// is usable (the watch keeps the snapshot current: there is no poll age), at the latest
/// contact otherwise; a site without a lease, or every site while etcd is not usable, as a
/// failed poll.
pub fn fleet_view(
    store: &StoreState,
    layout: &Layout,
    sites: &[(usize, &str)],
    now: Instant,
) -> FleetView {
    let requested_at = if store.usable {
        now
    } else {
        store.last_contact.unwrap_or(now)
    };
    let mut reports: BTreeMap<String, SiteReport> = BTreeMap::new();
    let mut services: BTreeMap<(String, String), Vec<(IpNet, Record)>> = BTreeMap::new();
    for (key, kv) in &store.snapshot.kvs {
        match layout.parse(key) {
            Some(Key::Site(site)) => {
                let digest = serde_json::from_slice::<SiteRecord>(&kv.value)
                    .ok()
                    .map(|r| r.fleet_digest);
                reports.insert(
                    site.clone(),
                    SiteReport {
                        version: super::report::REPORT_VERSION,
                        site,
                        generation: u64::try_from(kv.mod_revision).unwrap_or(0),
                        services: Vec::new(),
                        fleet_digest: digest,
                    },
                );
            }
            Some(Key::Record {
                service,
                prefix,
                site,
            }) => {
                if let Some(r) = store.snapshot.record(key) {
                    services
                        .entry((site, service))
                        .or_default()
                        .push((prefix, r));
                }
            }
            _ => {}
        }
    }
    for ((site, service), records) in services {
        let Some(report) = reports.get_mut(&site) else {
            continue;
        };
        // One entry per distinct state, so that per-prefix differences survive.
        let mut groups: Vec<(Record, Vec<IpNet>)> = Vec::new();
        for (p, r) in records {
            match groups.iter_mut().find(|(g, _)| *g == r) {
                Some((_, list)) => list.push(p),
                None => groups.push((r, vec![p])),
            }
        }
        for (r, prefixes) in groups {
            report.services.push(super::report::ServiceReport {
                name: service.clone(),
                prefixes,
                healthy: r.healthy,
                announcing: r.announcing && r.intent != Intent::Withdrawing,
                intent: r.intent,
            });
        }
    }
    FleetView {
        sites: sites
            .iter()
            .map(|(rank, name)| {
                let result = if !store.usable {
                    Err(PollFailure::Request(format!(
                        "etcd not usable: {}",
                        store.error.as_deref().unwrap_or("no lease yet")
                    )))
                } else {
                    reports.remove(*name).ok_or_else(|| {
                        PollFailure::Request(
                            "no lease in etcd (down or cut off from etcd)".to_owned(),
                        )
                    })
                };
                PeerSiteView {
                    name: (*name).to_owned(),
                    rank: *rank,
                    last_poll: Some(PollOutcome {
                        requested_at,
                        result,
                    }),
                    failures: [0; POLL_FAILURE_REASONS.len()],
                    announcing: super::hand_over::Continuity::default(),
                }
            })
            .collect(),
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
