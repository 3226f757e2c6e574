//! The etcd backend's thin tokio driver: one connection to one member at a time, this
//! site's lease kept alive, the fleet's keys read once and then watched, this site's
//! records published from each new report, and the withdrawals the report asks for tried
//! as transactions. Every decision is in [`super::store`]; this file only moves bytes.
//!
//! Gaps of the client covered here (checked against etcd 3.4): the keep-alive stream
//! does not reconnect after an error, and with several endpoints the client keeps sending
//! requests to a dead member. So any error ends the *session* (connection, lease
//! keep-alive, watch): the store is marked not usable at once (the guard holds), and a new
//! session starts with the next endpoint, a new lease and a fresh read. The previous
//! lease is not reused: it may have expired meanwhile, and a new one republishes every
//! record anyway.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity,
    PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use tokio::sync::watch;

use super::fleet::{EtcdSettings, Fleet};
use super::hand_over::Clock;
use super::report::{SiteReport, REPORT_VERSION};
use super::store::{
    apply_committed, apply_conflict, fleet_view, granted, publication, refresh_grants,
    withdrawal_for, Change, Kv, Layout, Op, Read, SiteRecord, Snapshot, StoreState, TxnPlan,
    TxnRecord, WITHDRAWAL_TRIES,
};
use super::view::FleetView;

/// Longest pause between two sessions.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How a transaction ended.
enum TxnOutcome {
    /// Committed at this revision.
    Committed(i64),
    /// A compare failed: the answer's revision and what beat it (its else branch's read,
    /// already merged into the snapshot).
    Conflict { revision: i64, changed: Vec<String> },
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// The client could not be built or connected.
    #[error("cannot connect to {endpoint}: {error}")]
    Connect {
        /// The member.
        endpoint: String,
        /// Why.
        error: String,
    },
    /// A request failed.
    #[error("{what} at {endpoint}: {error}")]
    Request {
        /// What was asked.
        what: &'static str,
        /// The member.
        endpoint: String,
        /// Why.
        error: String,
    },
    /// A request got no answer in time.
    #[error("{what} at {endpoint}: no answer within {}", humantime::format_duration(*timeout))]
    Timeout {
        /// What was asked.
        what: &'static str,
        /// The member.
        endpoint: String,
        /// The limit.
        timeout: Duration,
    },
    /// The lease is gone (expired at the server, or keep-alives unanswered for its TTL).
    #[error("lease {id:x} lost: {why}")]
    LeaseLost {
        /// Lease id.
        id: i64,
        /// Why.
        why: String,
    },
    /// A stream ended or was cancelled by the server.
    #[error("{what} ended at {endpoint}: {why}")]
    StreamEnded {
        /// Which stream.
        what: &'static str,
        /// The member.
        endpoint: String,
        /// Why.
        why: String,
    },
}

/// What the driver needs.
#[derive(Debug, Clone)]
pub struct EtcdDriverConfig {
    /// `[etcd]`.
    pub settings: EtcdSettings,
    /// This site.
    pub site: String,
    /// The other sites with their fleet ranks.
    pub others: Vec<(usize, String)>,
    /// The fleet (for `min_sites`).
    pub fleet: Fleet,
    /// The fleet digest published in this site's key.
    pub digest: String,
    /// The hand-over in force (`[fleet] hand_over` of the site config, as the coordinator
    /// last decided with it): a withdrawal relies only on sites followed announcing for
    /// that long, as the coordinator's decision does ([`super::hand_over`]).
    pub hand_over: watch::Receiver<Duration>,
}

impl EtcdDriverConfig {
    /// The layout of the fleet's keys.
    pub fn layout(&self) -> Layout {
        Layout::new(&self.settings.key_prefix)
    }
}

/// The channels the driver publishes on.
#[derive(Debug)]
pub struct EtcdOutputs {
    /// The store as last seen.
    pub state: watch::Sender<StoreState>,
    /// The view made from it.
    pub view: watch::Sender<FleetView>,
}

struct Session<'a> {
    cfg: &'a EtcdDriverConfig,
    layout: Layout,
    endpoint: String,
    client: Client,
    lease: i64,
    out: &'a EtcdOutputs,
}

/// Changes the store state in place, in the channel the coordinator reads, without waking
/// it ([`publish`] does, once per event). The state is not copied per event: a copy is
/// O(fleet), and every event reaches every site (the 200-site scale run of
/// `benches/etcd_fleet.rs` spent its time cloning snapshots).
fn update(out: &EtcdOutputs, f: impl FnOnce(&mut StoreState)) {
    out.state.send_if_modified(|state| {
        f(state);
        false
    });
}

fn connect_options(settings: &EtcdSettings) -> ConnectOptions {
    // Keep-alive pings notice a frozen member in about two seconds; no per-request
    // timeout on the channel (it would end the watch stream), unary calls are bounded
    // one by one instead.
    let mut opts = ConnectOptions::new()
        .with_keep_alive(Duration::from_secs(1), Duration::from_secs(1))
        .with_connect_timeout(settings.timeout)
        .with_require_leader(true);
    if let Some(auth) = &settings.auth {
        opts = opts.with_user(auth.user.clone(), auth.password.clone());
    }
    if let Some(tls) = &settings.tls {
        let mut t = TlsOptions::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
        if let Some(id) = &tls.identity {
            t = t.identity(Identity::from_pem(&id.cert_pem, &id.key_pem));
        }
        if let Some(name) = &tls.server_name {
            t = t.domain_name(name.clone());
        }
        opts = opts.with_tls(t);
    }
    opts
}

async fn bounded<T>(
    what: &'static str,
    endpoint: &str,
    timeout: Duration,
    fut: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, EtcdError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(EtcdError::Request {
            what,
            endpoint: endpoint.to_owned(),
            error: e.to_string(),
        }),
        Err(_) => Err(EtcdError::Timeout {
            what,
            endpoint: endpoint.to_owned(),
            timeout,
        }),
    }
}

fn txn_of(plan: &TxnPlan, lease: i64) -> Txn {
    let compares: Vec<Compare> = plan
        .compares
        .iter()
        .map(|(k, r)| Compare::mod_revision(k.as_str(), CompareOp::Equal, *r))
        .collect();
    let ops: Vec<TxnOp> = plan
        .ops
        .iter()
        .map(|op| match op {
            Op::Put { key, value, leased } => TxnOp::put(
                key.as_str(),
                value.clone(),
                leased.then(|| PutOptions::new().with_lease(lease)),
            ),
            Op::Delete { key } => TxnOp::delete(key.as_str(), None),
        })
        .collect();
    let reads: Vec<TxnOp> = plan
        .on_conflict
        .iter()
        .map(|read| match read {
            Read::Key(key) => TxnOp::get(key.as_str(), None),
            Read::Prefix(prefix) => {
                TxnOp::get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            }
        })
        .collect();
    Txn::new().when(compares).and_then(ops).or_else(reads)
}

impl Session<'_> {
    fn timeout(&self) -> Duration {
        self.cfg.settings.timeout
    }

    async fn txn(&mut self, plan: &TxnPlan) -> Result<TxnOutcome, EtcdError> {
        let (endpoint, timeout, lease) = (self.endpoint.clone(), self.timeout(), self.lease);
        let resp = bounded(
            "transaction",
            &endpoint,
            timeout,
            self.client.txn(txn_of(plan, lease)),
        )
        .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                update(self.out, |s| s.txns.errors += 1);
                return Err(e);
            }
        };
        let revision = resp.header().map_or(0, |h| h.revision());
        if resp.succeeded() {
            update(self.out, |s| {
                s.last_contact = Some(Instant::now());
                apply_committed(&mut s.snapshot, plan, revision, lease);
            });
            return Ok(TxnOutcome::Committed(revision));
        }
        // The else branch: the compared keys as they are at `revision`.
        let mut read = Vec::new();
        for op in resp.op_responses() {
            if let TxnOpResponse::Get(get) = op {
                for kv in get.kvs() {
                    if let Ok(key) = kv.key_str() {
                        read.push((
                            key.to_owned(),
                            Kv::new(kv.value().to_vec(), kv.mod_revision(), kv.lease()),
                        ));
                    }
                }
            }
        }
        let mut changed = Vec::new();
        update(self.out, |s| {
            s.last_contact = Some(Instant::now());
            changed = apply_conflict(&mut s.snapshot, &self.layout, plan, revision, read);
        });
        Ok(TxnOutcome::Conflict { revision, changed })
    }

    /// Publish this site's records for `report`, then try every withdrawal it asks for.
    /// `asked_at` was taken before `report` was read (see [`refresh_grants`]).
    async fn step(&mut self, report: &SiteReport, asked_at: Instant) -> Result<(), EtcdError> {
        update(self.out, |s| refresh_grants(s, report, asked_at));
        let site = SiteRecord {
            version: REPORT_VERSION,
            fleet_digest: self.cfg.digest.clone(),
        };
        let plan = publication(
            &self.out.state.borrow(),
            &self.layout,
            &self.cfg.site,
            &site,
            report,
            self.lease,
        );
        if let Some(plan) = plan {
            // A publication compares nothing: it always commits.
            let outcome = self.txn(&plan).await?;
            update(self.out, |s| {
                let (outcome, revision) = match &outcome {
                    TxnOutcome::Committed(r) => {
                        s.txns.publish_committed += 1;
                        ("committed", *r)
                    }
                    TxnOutcome::Conflict { revision, .. } => ("conflict", *revision),
                };
                s.last_txn = Some(TxnRecord {
                    what: "publish".into(),
                    outcome: outcome.into(),
                    revision,
                    at: SystemTime::now(),
                    changed: Vec::new(),
                });
            });
            // Withdrawals are planned once the watch has brought our own publication
            // (and so everything before it): the next step runs on that event.
            return Ok(());
        }
        let others: Vec<&str> = self.cfg.others.iter().map(|(_, n)| n.as_str()).collect();
        let local_rank = self.cfg.fleet.rank(&self.cfg.site).unwrap_or(others.len());
        for entry in &report.services {
            let min_sites = self.cfg.fleet.min_sites(&entry.name);
            // A conflict brought the state that beat it (`apply_conflict`): the next try
            // plans on that at once, relying on the sites that count in it now.
            for _ in 0..WITHDRAWAL_TRIES {
                let clock = Clock {
                    now: Instant::now(),
                    hand_over: *self.cfg.hand_over.borrow(),
                };
                let plan = withdrawal_for(
                    &self.out.state.borrow(),
                    &self.layout,
                    &others,
                    &self.cfg.site,
                    local_rank,
                    entry,
                    min_sites,
                    clock,
                );
                let Some(plan) = plan else {
                    // Not asking, already granted, or too few others: the coordinator
                    // holds on its next decision in the last case.
                    break;
                };
                let what = format!(
                    "withdraw {} {}",
                    entry.name,
                    entry
                        .prefixes
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                );
                let outcome = self.txn(&plan).await?;
                update(self.out, |s| {
                    let (result, revision, changed) = match &outcome {
                        TxnOutcome::Committed(revision) => {
                            s.txns.withdraw_committed += 1;
                            granted(s, entry, asked_at, *revision);
                            ("committed", *revision, Vec::new())
                        }
                        TxnOutcome::Conflict { revision, changed } => {
                            s.txns.withdraw_conflict += 1;
                            ("conflict", *revision, changed.clone())
                        }
                    };
                    let record = TxnRecord {
                        what,
                        outcome: result.into(),
                        revision,
                        at: SystemTime::now(),
                        changed,
                    };
                    if result == "conflict" {
                        s.last_conflict = Some(record.clone());
                    }
                    s.last_txn = Some(record);
                });
                match outcome {
                    TxnOutcome::Committed(revision) => {
                        tracing::info!(service = %entry.name, revision, "all-sites guard: withdrawal committed in etcd");
                        break;
                    }
                    TxnOutcome::Conflict { revision, changed } => {
                        tracing::debug!(service = %entry.name, revision, changed = %changed.join(", "), "all-sites guard: withdrawal conflicted; trying again on what beat it");
                    }
                }
            }
        }
        Ok(())
    }
}

fn publish(out: &EtcdOutputs) {
    // The state is already in its channel ([`update`]): the coordinator wakes on the view
    // channel and reads it. The view itself is made from the state when it is read
    // (`FleetBackend::view`), not here at every event of every site.
    out.state.send_modify(|_| {});
    out.view.send_modify(|_| {});
}

/// One session: connect, lease, read, watch, and serve until an error or shutdown.
/// `Ok(())` only at shutdown (or when the coordinator is gone).
async fn session(
    cfg: &EtcdDriverConfig,
    endpoint: &str,
    reports: &mut watch::Receiver<Option<Arc<SiteReport>>>,
    out: &EtcdOutputs,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), EtcdError> {
    let timeout = cfg.settings.timeout;
    let ttl = cfg.settings.lease_ttl;
    let client = match tokio::time::timeout(
        timeout,
        Client::connect([endpoint], Some(connect_options(&cfg.settings))),
    )
    .await
    {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return Err(EtcdError::Connect {
                endpoint: endpoint.to_owned(),
                error: e.to_string(),
            })
        }
        Err(_) => {
            return Err(EtcdError::Timeout {
                what: "connect",
                endpoint: endpoint.to_owned(),
                timeout,
            })
        }
    };
    let mut s = Session {
        cfg,
        layout: cfg.layout(),
        endpoint: endpoint.to_owned(),
        client,
        lease: 0,
        out,
    };
    let ttl_secs = i64::try_from(ttl.as_secs()).unwrap_or(5);
    let grant = bounded(
        "lease grant",
        endpoint,
        timeout,
        s.client.lease_grant(ttl_secs, None),
    )
    .await?;
    s.lease = grant.id();
    let (mut keeper, mut keep_alive) = bounded(
        "lease keep-alive",
        endpoint,
        timeout,
        s.client.lease_keep_alive(s.lease),
    )
    .await?;
    let root = s.layout.root().to_owned();
    let read = bounded(
        "read",
        endpoint,
        timeout,
        s.client
            .get(root.as_str(), Some(GetOptions::new().with_prefix())),
    )
    .await?;
    let mut snapshot = snapshot_of(&read);
    let revision = snapshot.revision;
    let mut watch = bounded(
        "watch",
        endpoint,
        timeout,
        s.client.watch(
            root.as_str(),
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(revision + 1),
            ),
        ),
    )
    .await?;
    let now = Instant::now();
    let lease = s.lease;
    update(out, |state| {
        // The hand-over runs go on for records etcd says did not change meanwhile.
        snapshot.follow_from(&state.snapshot.announcing, now);
        state.snapshot = snapshot;
        state.usable = true;
        state.error = None;
        state.since = Some(now);
        state.last_contact = Some(now);
        state.lease_id = lease;
        state.lease_ttl = ttl;
    });
    tracing::info!(
        endpoint,
        lease = format!("{:x}", s.lease),
        revision,
        "all-sites guard: connected to etcd"
    );
    let asked_at = Instant::now();
    let report = reports.borrow_and_update().clone();
    if let Some(report) = report {
        s.step(&report, asked_at).await?;
    }
    publish(out);
    let mut tick = tokio::time::interval(ttl / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_answer = Instant::now();
    let result = loop {
        let mut changed = false;
        tokio::select! {
            _ = shutdown.changed() => break Ok(()),
            _ = tick.tick() => {
                if last_answer.elapsed() >= ttl {
                    break Err(EtcdError::LeaseLost { id: s.lease, why: format!("no keep-alive answer for {}", humantime::format_duration(ttl)) });
                }
                if let Err(e) = keeper.keep_alive().await {
                    break Err(EtcdError::Request { what: "lease keep-alive", endpoint: endpoint.to_owned(), error: e.to_string() });
                }
            }
            msg = keep_alive.message() => match msg {
                Ok(Some(resp)) if resp.ttl() > 0 => {
                    last_answer = Instant::now();
                    update(out, |state| {
                        state.last_contact = Some(last_answer);
                        state.lease_ttl = Duration::from_secs(u64::try_from(resp.ttl()).unwrap_or(0));
                    });
                    changed = true;
                }
                Ok(Some(_)) => break Err(EtcdError::LeaseLost { id: s.lease, why: "expired at the server".into() }),
                Ok(None) => break Err(EtcdError::StreamEnded { what: "lease keep-alive", endpoint: endpoint.to_owned(), why: "closed".into() }),
                Err(e) => break Err(EtcdError::StreamEnded { what: "lease keep-alive", endpoint: endpoint.to_owned(), why: e.to_string() }),
            },
            msg = watch.message() => match msg {
                Ok(Some(resp)) if resp.canceled() => break Err(EtcdError::StreamEnded { what: "watch", endpoint: endpoint.to_owned(), why: format!("cancelled: {} (compacted at {})", resp.cancel_reason(), resp.compact_revision()) }),
                Ok(Some(resp)) => {
                    let at = Instant::now();
                    update(out, |state| {
                        for ev in resp.events() {
                            let Some(kv) = ev.kv() else { continue };
                            let Ok(key) = kv.key_str() else { continue };
                            state.snapshot.apply_watched(match ev.event_type() {
                                EventType::Put => Change::Put { key: key.to_owned(), kv: Kv::new(kv.value().to_vec(), kv.mod_revision(), kv.lease()) },
                                EventType::Delete => Change::Delete { key: key.to_owned(), revision: kv.mod_revision() },
                            }, at);
                        }
                        // Events come in revision order: every change up to the last one's
                        // has come (not the header's revision, which a watcher catching up
                        // can be sent ahead of its events).
                        if let Some(kv) = resp.events().last().and_then(|ev| ev.kv()) {
                            state.snapshot.watched(kv.mod_revision());
                        }
                        state.last_contact = Some(at);
                    });
                    let asked_at = Instant::now();
                    let report = reports.borrow_and_update().clone();
                    if let Some(report) = report {
                        if let Err(e) = s.step(&report, asked_at).await { break Err(e); }
                    }
                    changed = true;
                }
                Ok(None) => break Err(EtcdError::StreamEnded { what: "watch", endpoint: endpoint.to_owned(), why: "closed".into() }),
                Err(e) => break Err(EtcdError::StreamEnded { what: "watch", endpoint: endpoint.to_owned(), why: e.to_string() }),
            },
            r = reports.changed() => {
                if r.is_err() {
                    break Ok(());
                }
                // Taken before the report is read (see `refresh_grants`).
                let asked_at = Instant::now();
                let report = reports.borrow_and_update().clone();
                if let Some(report) = report {
                    if let Err(e) = s.step(&report, asked_at).await { break Err(e); }
                }
                changed = true;
            }
        }
        if changed {
            publish(out);
        }
    };
    if result.is_ok() {
        // Stopping: the records go at once rather than at the lease's expiry (the stop
        // already went through the guard; a stopped site announces nothing to count).
        let _ = bounded(
            "lease revoke",
            endpoint,
            timeout,
            s.client.lease_revoke(s.lease),
        )
        .await;
    }
    result
}

/// The view of the other sites from one read of the store (for `anyguard check --config
/// NEW --fleet F` with the etcd backend): each endpoint in turn until one answers; every
/// site unreachable when none does (which the config guard counts as not announcing).
pub async fn read_view(settings: &EtcdSettings, others: &[(usize, &str)]) -> FleetView {
    let layout = Layout::new(&settings.key_prefix);
    let mut state = StoreState::default();
    for endpoint in &settings.endpoints {
        let read = async {
            let mut client =
                Client::connect([endpoint.as_str()], Some(connect_options(settings))).await?;
            client
                .get(layout.root(), Some(GetOptions::new().with_prefix()))
                .await
        };
        match tokio::time::timeout(settings.timeout, read).await {
            Ok(Ok(resp)) => {
                state.snapshot = snapshot_of(&resp);
                state.usable = true;
                state.error = None;
                break;
            }
            Ok(Err(e)) => state.error = Some(format!("{endpoint}: {e}")),
            Err(_) => state.error = Some(format!("{endpoint}: no answer in time")),
        }
    }
    fleet_view(&state, &layout, others, Instant::now())
}

/// The keys of a read.
fn snapshot_of(read: &etcd_client::GetResponse) -> Snapshot {
    let mut snapshot = Snapshot {
        revision: read.header().map_or(0, |h| h.revision()),
        ..Snapshot::default()
    };
    for kv in read.kvs() {
        if let Ok(key) = kv.key_str() {
            snapshot.kvs.insert(
                key.to_owned(),
                Kv::new(kv.value().to_vec(), kv.mod_revision(), kv.lease()),
            );
        }
    }
    snapshot
}

/// Run sessions until `shutdown` (or the coordinator drops the report channel).
pub async fn run(
    cfg: EtcdDriverConfig,
    mut reports: watch::Receiver<Option<Arc<SiteReport>>>,
    out: EtcdOutputs,
    mut shutdown: watch::Receiver<bool>,
) {
    update(&out, |state| {
        state.error = Some("connecting".into());
        state.since = Some(Instant::now());
    });
    publish(&out);
    let mut backoff = Duration::from_millis(100);
    let mut logged: Option<String> = None;
    // Each site starts at its own member (a hash of its name), so that a fleet sharing one
    // endpoint list spreads over the cluster instead of loading the first member.
    let offset = cfg.site.bytes().fold(0usize, |h, b| {
        h.wrapping_mul(31).wrapping_add(usize::from(b))
    });
    for attempt in 0usize.. {
        if *shutdown.borrow() {
            return;
        }
        let endpoints = &cfg.settings.endpoints;
        let endpoint = &endpoints[offset.wrapping_add(attempt) % endpoints.len().max(1)];
        match session(&cfg, endpoint, &mut reports, &out, &mut shutdown).await {
            Ok(()) => return,
            Err(e) => {
                let text = e.to_string();
                let was_usable = out.state.borrow().usable;
                if was_usable || logged.as_deref() != Some(text.as_str()) {
                    tracing::error!(error = %text, "ALL-SITES GUARD: ETCD UNREACHABLE: withdrawals are held until it answers again");
                    logged = Some(text.clone());
                }
                if was_usable {
                    backoff = Duration::from_millis(100);
                }
                update(&out, |state| {
                    if state.usable {
                        state.since = Some(Instant::now());
                    }
                    state.usable = false;
                    state.error = Some(text);
                    state.lease_id = 0;
                    state.lease_ttl = Duration::ZERO;
                });
                publish(&out);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
