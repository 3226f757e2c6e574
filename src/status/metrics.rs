//! Prometheus metrics for `GET /metrics` (text exposition format 0.0.4).
//!
//! Three sources:
//! - **Per-service gauges** (service state, guard, dampening, announcements, checks) kept
//!   in place in the registry's families and set, at a scrape, from the status entries of
//!   the services that changed since the previous scrape ([`service_series`]): the
//!   coordinator shares unchanged entries by `Arc` between documents, so a scrape costs
//!   one pointer comparison per service plus the encoding of what it returns, with no
//!   rebuild of the document (issue 13). They show the same snapshot as `/status`.
//! - **Daemon-wide, peer, BFD and fleet gauges derived from the latest
//!   [`StatusDocument`]** at scrape time, by a [`Collector`] reading the coordinator's
//!   `watch` channel (a handful of entries, whatever the number of services).
//! - **Counters and histograms of events** the snapshot does not keep (probe latencies,
//!   UPDATEs sent, flaps, reloads, the coordinator loop's wake-ups), which the coordinator
//!   updates through the cheap, cloneable [`Metrics`] handle; the probe histograms are
//!   updated by the check tasks themselves through a per-check [`CheckMetrics`], which
//!   allocates nothing once the check has its series (issue 13).
//!
//! Names follow the Prometheus conventions: `anyguard_` prefix, base units (`_seconds`),
//! `_total` on counters, one-hot state gauges with a `state` label.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `anyguard_info` | gauge (1) | `version`, `router_id`, `site` |
//! | `anyguard_ready` | gauge | |
//! | `anyguard_uptime_seconds` | gauge | |
//! | `anyguard_config_generation` | gauge | |
//! | `anyguard_config_last_reload_successful` | gauge (only after a reload) | |
//! | `anyguard_state_file_last_write_successful` | gauge (only after a write) | |
//! | `anyguard_service_up` | gauge | `service` |
//! | `anyguard_service_state` | gauge, one-hot | `service`, `state` |
//! | `anyguard_guard_held` | gauge | `service` |
//! | `anyguard_guard_sites_announcing` | gauge | `service` |
//! | `anyguard_guard_reports_signed` | gauge (with a fleet) | |
//! | `anyguard_guard_poll_failures_total` | counter (with a fleet) | `site`, `reason` |
//! | `anyguard_guard_fleet_info` | gauge (1) | `source`, `digest` |
//! | `anyguard_guard_fleet_digest_mismatch` | gauge | `site` |
//! | `anyguard_guard_pending_removals` | gauge (prefixes, while any) | `service`, `decision` |
//! | `anyguard_guard_fleet_backend` | gauge (1, with a fleet) | `backend` |
//! | `anyguard_guard_store_connected` | gauge (etcd backend) | |
//! | `anyguard_guard_store_lease_ttl_seconds` | gauge (etcd backend) | |
//! | `anyguard_guard_store_revision` | gauge (etcd backend) | |
//! | `anyguard_guard_store_transactions_total` | counter (etcd backend) | `kind`, `result` |
//! | `anyguard_guard_store_sites_announcing` | gauge (etcd backend) | `service`, `prefix` |
//! | `anyguard_service_suppressed` | gauge | `service` |
//! | `anyguard_service_flaps` | gauge (current dampening window) | `service` |
//! | `anyguard_announced_prefixes` | gauge | `peer`, `service` |
//! | `anyguard_check_up` | gauge | `service`, `check` |
//! | `anyguard_peer_state` | gauge, one-hot | `peer`, `state` |
//! | `anyguard_bgp_session_up` | gauge | `peer` |
//! | `anyguard_bgp_prefixes_sent` | gauge | `peer` |
//! | `anyguard_bgp_prefixes_received` | gauge | `peer`, `afi` |
//! | `anyguard_bgp_messages_sent_total` | counter | `peer`, `type` |
//! | `anyguard_bgp_messages_received_total` | counter | `peer`, `type` |
//! | `anyguard_bgp_established_total` | counter | `peer` |
//! | `anyguard_bfd_state` | gauge, one-hot | `peer`, `state` |
//! | `anyguard_bfd_session_up` | gauge | `peer` |
//! | `anyguard_bfd_tx_interval_seconds` | gauge | `peer` |
//! | `anyguard_bfd_detection_time_seconds` | gauge (once the peer is heard) | `peer` |
//! | `anyguard_bfd_diagnostic` | gauge (RFC 5880 code) | `peer` |
//! | `anyguard_bfd_packets_received_total` | counter | `peer` |
//! | `anyguard_bfd_packets_sent_total` | counter | `peer` |
//! | `anyguard_bfd_bad_packets_total` | counter | `peer` |
//! | `anyguard_bfd_failures_total` | counter | `peer` |
//! | `anyguard_bfd_dropped_packets_total` | counter (while BFD runs) | `reason` |
//! | `anyguard_probe_duration_seconds` | histogram | `service`, `check`, `result` |
//! | `anyguard_probe_start_delay_seconds` | histogram (every check) | |
//! | `anyguard_bgp_updates_sent_total` | counter | `peer` |
//! | `anyguard_service_flaps_total` | counter | `service` |
//! | `anyguard_reloads_total` | counter | `result` |
//! | `anyguard_coordinator_wakeups_total` | counter | `cause` |

mod service_series;

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use super::model::{MessageCounts, StatusDocument};
use service_series::{ProbeSeries, ServiceFamilies, ServiceTable};

/// `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The service states `anyguard_service_state` always reports (one-hot).
pub const SERVICE_STATES: [&str; 6] = ["starting", "up", "down", "draining", "drained", "held"];

/// The RFC 4271 §8.2.2 states `anyguard_peer_state` always reports (one-hot).
pub const PEER_STATES: [&str; 6] = [
    "idle",
    "connect",
    "active",
    "opensent",
    "openconfirm",
    "established",
];

/// Probe latency buckets, seconds: 1 ms … 10 s.
const PROBE_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Probe start delay buckets, seconds: 100 µs … 1 s.
const START_DELAY_BUCKETS: [f64; 11] = [
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

type Labels = Vec<(&'static str, String)>;

/// The metrics registry plus the event counters; clone freely (shared inside).
///
/// The check tasks record into their [`CheckMetrics`] ([`runner`](Self::runner)); the
/// coordinator calls [`update_sent`](Self::update_sent),
/// [`service_flap`](Self::service_flap), [`reload`](Self::reload) and
/// [`coordinator_wakeup`](Self::coordinator_wakeup); the server calls
/// [`encode`](Self::encode).
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    status: watch::Receiver<StatusDocument>,
    probe_duration: Family<Labels, Histogram>,
    /// Handles to `probe_duration`'s series by check, so that a result allocates nothing
    /// and a reload can drop the series of checks that are gone.
    probe_series: Mutex<ProbeSeries>,
    services: ServiceFamilies,
    /// The per-service series and the entries they show.
    service_table: Mutex<ServiceTable>,
    probe_start_delay: Histogram,
    updates_sent: Family<Labels, Counter>,
    service_flaps: Family<Labels, Counter>,
    reloads: Family<Labels, Counter>,
    /// `anyguard_coordinator_wakeups_total`, by [`Wakeup`] (every cause from the start).
    wakeups: [Counter; Wakeup::ALL.len()],
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn probe_histogram() -> Histogram {
    Histogram::new(PROBE_BUCKETS)
}

impl Metrics {
    /// A registry whose snapshot gauges read `status` at every scrape.
    pub fn new(status: watch::Receiver<StatusDocument>) -> Self {
        let mut registry = Registry::default();
        let probe_duration =
            Family::<Labels, Histogram>::new_with_constructor(probe_histogram as fn() -> _);
        // The registry appends `_total` to counters itself.
        let updates_sent = Family::<Labels, Counter>::default();
        let service_flaps = Family::<Labels, Counter>::default();
        let reloads = Family::<Labels, Counter>::default();
        registry.register(
            "anyguard_probe_duration_seconds",
            "Health probe latency by result",
            probe_duration.clone(),
        );
        let probe_start_delay = Histogram::new(START_DELAY_BUCKETS);
        registry.register(
            "anyguard_probe_start_delay_seconds",
            "Delay between a scheduled probe's due time and its start, every check",
            probe_start_delay.clone(),
        );
        registry.register(
            "anyguard_bgp_updates_sent",
            "UPDATE messages sent by the announcer",
            updates_sent.clone(),
        );
        registry.register(
            "anyguard_service_flaps",
            "Service state changes between up and not up",
            service_flaps.clone(),
        );
        registry.register(
            "anyguard_reloads",
            "Configuration reload attempts by result",
            reloads.clone(),
        );
        let wakeup_family = Family::<Labels, Counter>::default();
        registry.register(
            "anyguard_coordinator_wakeups",
            "Turns of the coordinator loop by what woke it",
            wakeup_family.clone(),
        );
        let wakeups = Wakeup::ALL.map(|w| {
            wakeup_family
                .get_or_create(&vec![("cause", w.as_str().to_owned())])
                .clone()
        });
        let services = ServiceFamilies::register(&mut registry);
        registry.register_collector(Box::new(SnapshotCollector {
            status: status.clone(),
        }));
        Self {
            inner: Arc::new(Inner {
                registry,
                status,
                probe_duration,
                probe_series: Mutex::default(),
                services,
                service_table: Mutex::default(),
                probe_start_delay,
                updates_sent,
                service_flaps,
                reloads,
                wakeups,
            }),
        }
    }

    /// The probe metrics of the checks of a health runner about to start, until it is
    /// stopped ([`RunnerMetrics::retire`]).
    pub fn runner(&self) -> RunnerMetrics {
        RunnerMetrics {
            metrics: self.clone(),
            retired: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The `anyguard_probe_duration_seconds` series of `check` of `service` for results
    /// `ok`, created the first time (and dropped by [`Metrics::retain_checks`] once the
    /// check is gone); for a check of a runner that is `retired`, a histogram of its own
    /// that no scrape shows.
    fn probe_series(
        &self,
        retired: &AtomicBool,
        service: &str,
        check: &str,
        ok: bool,
    ) -> Histogram {
        let mut series = self
            .inner
            .probe_series
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Read under the lock `RunnerMetrics::retire` and `retain_checks` take: a
        // result of a stopped runner either came before its retirement, and then before
        // the reload's `retain_checks`, which drops its series if its check is gone, or
        // after it and creates nothing.
        if retired.load(Ordering::Relaxed) {
            return probe_histogram();
        }
        series
            .get(&self.inner.probe_duration, service, check, ok)
            .cloned()
            .unwrap_or_else(probe_histogram)
    }

    /// Counts one turn of the coordinator loop, by what woke it.
    pub fn coordinator_wakeup(&self, cause: Wakeup) {
        self.inner.wakeups[cause as usize].inc();
    }

    /// Counts one UPDATE message sent to `peer`.
    pub fn update_sent(&self, peer: &str) {
        self.inner
            .updates_sent
            .get_or_create(&vec![("peer", peer.to_owned())])
            .inc();
    }

    /// Counts one flap (up ↔ not up) of `service`.
    pub fn service_flap(&self, service: &str) {
        self.inner
            .service_flaps
            .get_or_create(&vec![("service", service.to_owned())])
            .inc();
    }

    /// Counts one reload attempt.
    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.inner
            .reloads
            .get_or_create(&vec![("result", result.to_owned())])
            .inc();
    }

    /// Drops the probe series of every check not in `current` (`(service, check)` names),
    /// e.g. after a reload removed or renamed checks.
    pub fn retain_checks<'a>(&self, current: impl IntoIterator<Item = (&'a str, &'a str)>) {
        let current: HashSet<(&str, &str)> = current.into_iter().collect();
        self.inner
            .probe_series
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(&self.inner.probe_duration, &current);
    }

    /// The Prometheus text exposition (version 0.0.4) of everything.
    pub fn encode(&self) -> Result<String, fmt::Error> {
        // The entries only (a vector of `Arc`s), out of the watch lock at once.
        let entries = self.inner.status.borrow().services.clone();
        self.inner
            .service_table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sync(&self.inner.services, &entries);
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.inner.registry)?;
        Ok(out)
    }
}

/// The probe metrics of one health runner's checks ([`Metrics::runner`]).
///
/// A reload that restarts the runner aborts the old one's check tasks, but a task that is
/// finishing a probe on its probe thread at that moment still records that result
/// (an abort takes effect at the task's next await), maybe after the reload dropped the
/// series of the checks it removed ([`Metrics::retain_checks`]): a check's first result
/// of a kind would then create its series again, for a check that no longer exists. So
/// the runner's metrics are retired when the runner is stopped, before the reload drops
/// series, and a retired runner's checks create none.
#[derive(Debug, Clone)]
pub struct RunnerMetrics {
    metrics: Metrics,
    retired: Arc<AtomicBool>,
}

impl RunnerMetrics {
    /// The probe metrics of `check` of `service`, for its task to record its results
    /// into ([`CheckMetrics::observe`]).
    pub fn check(&self, service: &str, check: &str) -> CheckMetrics {
        CheckMetrics {
            metrics: self.metrics.clone(),
            retired: Arc::clone(&self.retired),
            service: service.to_owned(),
            check: check.to_owned(),
            durations: [OnceLock::new(), OnceLock::new()],
        }
    }

    /// The runner is stopped: its checks create no series from now on (a series they
    /// already have is left to [`Metrics::retain_checks`]).
    pub fn retire(&self) {
        // Under the lock the series are created under (`Metrics::probe_series`).
        let _series = self
            .metrics
            .inner
            .probe_series
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.retired.store(true, Ordering::Relaxed);
    }

    /// Whether [`RunnerMetrics::retire`] was called.
    pub fn retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }
}

/// One check's probe metrics, which its task updates in place at every result (issue 13:
/// a routine result reaches no other thread). The series are looked up once, at the
/// check's first result of each kind (no series before one, as before).
#[derive(Debug)]
pub struct CheckMetrics {
    metrics: Metrics,
    /// Its runner's ([`RunnerMetrics`]).
    retired: Arc<AtomicBool>,
    service: String,
    check: String,
    /// `anyguard_probe_duration_seconds`, `result="ok"` then `result="fail"`.
    durations: [OnceLock<Histogram>; 2],
}

impl CheckMetrics {
    /// Records one probe result: its latency by result and, for a scheduled probe, how
    /// late it started after its due time (`start_delay`).
    pub fn observe(&self, latency: Duration, ok: bool, start_delay: Option<Duration>) {
        let series = self.durations[usize::from(!ok)].get_or_init(|| {
            self.metrics
                .probe_series(&self.retired, &self.service, &self.check, ok)
        });
        series.observe(latency.as_secs_f64());
        if let Some(delay) = start_delay {
            self.metrics
                .inner
                .probe_start_delay
                .observe(delay.as_secs_f64());
        }
    }
}

/// What woke the coordinator loop (`anyguard_coordinator_wakeups_total{cause}`): with
/// probe results recorded by the checks' own tasks, only a check's state change is a
/// `check` wake-up (issue 13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wakeup {
    /// A check's state changed (a batch of them counts once).
    Check,
    /// SIGHUP / SIGTERM / SIGINT.
    Signal,
    /// A control request from the status endpoint (`POST /reload`, drains, checks).
    Control,
    /// A peer task's event (a batch of them counts once).
    Peer,
    /// A peer's published status changed.
    PeerStatus,
    /// The all-sites guard's view of the other sites changed.
    Guard,
    /// An `ip` call of the address task ended.
    Address,
    /// A reload's config read ended.
    Reload,
    /// A deadline: a service's timer, the stop's flush wait, the systemd watchdog.
    Timer,
    /// The drain file poll.
    DrainPoll,
}

impl Wakeup {
    /// Every cause, in the order of `Wakeup as usize`.
    const ALL: [Wakeup; 10] = [
        Wakeup::Check,
        Wakeup::Signal,
        Wakeup::Control,
        Wakeup::Peer,
        Wakeup::PeerStatus,
        Wakeup::Guard,
        Wakeup::Address,
        Wakeup::Reload,
        Wakeup::Timer,
        Wakeup::DrainPoll,
    ];

    /// The `cause` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Wakeup::Check => "check",
            Wakeup::Signal => "signal",
            Wakeup::Control => "control",
            Wakeup::Peer => "peer",
            Wakeup::PeerStatus => "peer_status",
            Wakeup::Guard => "guard",
            Wakeup::Address => "address",
            Wakeup::Reload => "reload",
            Wakeup::Timer => "timer",
            Wakeup::DrainPoll => "drain_poll",
        }
    }
}

/// Gauges computed from the latest status snapshot at each scrape.
#[derive(Debug)]
struct SnapshotCollector {
    status: watch::Receiver<StatusDocument>,
}

/// A sample value: integers stay exact, flags and ratios are floats.
#[derive(Debug, Clone, Copy)]
enum Value {
    Int(u64),
    Float(f64),
}

impl From<u64> for Value {
    fn from(n: u64) -> Self {
        Self::Int(n)
    }
}

impl From<u32> for Value {
    fn from(n: u32) -> Self {
        Self::Int(u64::from(n))
    }
}

impl From<usize> for Value {
    fn from(n: usize) -> Self {
        Self::Int(u64::try_from(n).unwrap_or(u64::MAX))
    }
}

impl From<f64> for Value {
    fn from(x: f64) -> Self {
        Self::Float(x)
    }
}

/// One metric family with its samples, gathered before encoding.
struct FamilySamples {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    samples: Vec<(Labels, Value)>,
}

impl FamilySamples {
    fn gauge(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            kind: MetricType::Gauge,
            samples: Vec::new(),
        }
    }

    fn counter(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            kind: MetricType::Counter,
            samples: Vec::new(),
        }
    }

    fn push(&mut self, labels: Labels, value: impl Into<Value>) {
        self.samples.push((labels, value.into()));
    }

    fn encode(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        // The text encoder appends `_total` to counter names; pass the base name.
        let name = match self.kind {
            MetricType::Counter => self.name.strip_suffix("_total").unwrap_or(self.name),
            _ => self.name,
        };
        let mut metric = encoder.encode_descriptor(name, self.help, None, self.kind)?;
        for (labels, value) in &self.samples {
            let family = metric.encode_family(labels)?;
            match (self.kind, *value) {
                (MetricType::Counter, Value::Int(n)) => ConstCounter::new(n).encode(family)?,
                (MetricType::Counter, Value::Float(x)) => ConstCounter::new(x).encode(family)?,
                (_, Value::Int(n)) => ConstGauge::new(n).encode(family)?,
                (_, Value::Float(x)) => ConstGauge::new(x).encode(family)?,
            }
        }
        Ok(())
    }
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

fn push_messages(fam: &mut FamilySamples, peer: &str, counts: &MessageCounts) {
    for (kind, n) in [
        ("open", counts.open),
        ("update", counts.update),
        ("notification", counts.notification),
        ("keepalive", counts.keepalive),
        ("route_refresh", counts.route_refresh),
    ] {
        fam.push(
            vec![("peer", peer.to_owned()), ("type", kind.to_owned())],
            n,
        );
    }
}

/// The RFC 5880 states `anyguard_bfd_state` always reports (one-hot).
const BFD_STATES: [&str; 4] = ["admin_down", "down", "init", "up"];

/// Per-peer BFD families, for the peers with `bfd` configured.
fn bfd_families(doc: &StatusDocument) -> Vec<FamilySamples> {
    let mut state = FamilySamples::gauge(
        "anyguard_bfd_state",
        "BFD session state (RFC 5880 6.2), one-hot over the state label",
    );
    let mut up = FamilySamples::gauge("anyguard_bfd_session_up", "1 while the BFD session is Up");
    let mut tx = FamilySamples::gauge(
        "anyguard_bfd_tx_interval_seconds",
        "Interval between our BFD packets before jitter",
    );
    let mut detect = FamilySamples::gauge(
        "anyguard_bfd_detection_time_seconds",
        "BFD detection time: the peer's multiplier times the agreed interval",
    );
    let mut diag = FamilySamples::gauge(
        "anyguard_bfd_diagnostic",
        "Our last BFD diagnostic code (RFC 5880 4.1)",
    );
    let mut rx_total = FamilySamples::counter(
        "anyguard_bfd_packets_received_total",
        "BFD Control packets received and accepted",
    );
    let mut tx_total = FamilySamples::counter(
        "anyguard_bfd_packets_sent_total",
        "BFD Control packets sent",
    );
    let mut bad = FamilySamples::counter(
        "anyguard_bfd_bad_packets_total",
        "BFD packets from the peer dropped: malformed, TTL not 255, authentication",
    );
    let mut failures = FamilySamples::counter(
        "anyguard_bfd_failures_total",
        "Up BFD sessions that failed, each closing the BGP session",
    );
    let secs = |ms: u64| Duration::from_millis(ms).as_secs_f64();
    for p in &doc.peers {
        let Some(b) = &p.bfd else { continue };
        let peer = || ("peer", p.name.clone());
        for s in BFD_STATES {
            state.push(vec![peer(), ("state", s.to_owned())], flag(b.state == s));
        }
        up.push(vec![peer()], flag(b.state == "up"));
        tx.push(vec![peer()], secs(b.tx_interval_ms));
        if let Some(d) = b.detection_time_ms {
            detect.push(vec![peer()], secs(d));
        }
        diag.push(vec![peer()], u64::from(b.diag));
        rx_total.push(vec![peer()], b.packets_in);
        tx_total.push(vec![peer()], b.packets_out);
        bad.push(vec![peer()], b.bad_packets);
        failures.push(vec![peer()], b.failures);
    }
    let mut dropped = FamilySamples::counter(
        "anyguard_bfd_dropped_packets_total",
        "BFD datagrams dropped before reaching a session, by reason",
    );
    if let Some(b) = &doc.bfd {
        let d = &b.dropped;
        // A fixed set of reasons: no label per sender, however many send.
        for (reason, n) in [
            ("ttl", d.ttl),
            ("malformed", d.malformed),
            ("no_session", d.no_session),
            ("unknown_discriminator", d.unknown_discriminator),
            ("wrong_source", d.wrong_source),
        ] {
            dropped.push(vec![("reason", reason.to_owned())], n);
        }
    }
    vec![
        state, up, tx, detect, diag, rx_total, tx_total, bad, failures, dropped,
    ]
}

/// Every snapshot-derived family for `doc`, in exposition order (the per-service families
/// are kept in place instead: [`service_series`]; `doc.services` is not read).
fn snapshot_families(doc: &StatusDocument) -> Vec<FamilySamples> {
    let d = &doc.daemon;
    let mut info = FamilySamples::gauge("anyguard_info", "Daemon version and identity");
    info.push(
        vec![
            ("version", d.version.clone()),
            ("router_id", d.router_id.clone()),
            ("site", d.site.clone().unwrap_or_default()),
        ],
        1.0,
    );
    let mut ready = FamilySamples::gauge(
        "anyguard_ready",
        "1 once the config is loaded and sessions are started",
    );
    ready.push(Vec::new(), flag(d.ready && !d.stopping));
    let mut uptime = FamilySamples::gauge("anyguard_uptime_seconds", "Seconds since start");
    uptime.push(Vec::new(), d.uptime_seconds);
    let mut generation = FamilySamples::gauge(
        "anyguard_config_generation",
        "Config generation: 1 at start, +1 per accepted reload",
    );
    generation.push(Vec::new(), d.config_generation);
    let mut last_reload = FamilySamples::gauge(
        "anyguard_config_last_reload_successful",
        "1 if the last reload attempt was accepted",
    );
    if let Some(r) = &d.last_reload {
        last_reload.push(Vec::new(), flag(r.ok));
    }
    let mut state_write = FamilySamples::gauge(
        "anyguard_state_file_last_write_successful",
        "1 if the last write of the state file succeeded (operator drains survive a restart)",
    );
    if let Some(w) = d.state_file.as_ref().and_then(|s| s.last_write.as_ref()) {
        state_write.push(Vec::new(), flag(w.ok));
    }

    let mut peer_state = FamilySamples::gauge(
        "anyguard_peer_state",
        "BGP FSM state (RFC 4271 8.2.2), one-hot over the state label",
    );
    let mut session_up = FamilySamples::gauge(
        "anyguard_bgp_session_up",
        "1 while the BGP session is Established",
    );
    let mut prefixes_sent = FamilySamples::gauge(
        "anyguard_bgp_prefixes_sent",
        "Prefixes announced to the peer",
    );
    let mut prefixes_received = FamilySamples::gauge(
        "anyguard_bgp_prefixes_received",
        "Prefixes the peer currently announces to us",
    );
    let mut messages_sent = FamilySamples::counter(
        "anyguard_bgp_messages_sent_total",
        "BGP messages sent, by type",
    );
    let mut messages_received = FamilySamples::counter(
        "anyguard_bgp_messages_received_total",
        "BGP messages received, by type",
    );
    let mut established = FamilySamples::counter(
        "anyguard_bgp_established_total",
        "Transitions to Established since start",
    );
    for p in &doc.peers {
        let peer = || ("peer", p.name.clone());
        for state in PEER_STATES {
            peer_state.push(
                vec![peer(), ("state", state.to_owned())],
                flag(p.state == state),
            );
        }
        if !PEER_STATES.contains(&p.state.as_str()) {
            peer_state.push(vec![peer(), ("state", p.state.clone())], 1.0);
        }
        session_up.push(vec![peer()], flag(p.state == "established"));
        prefixes_sent.push(vec![peer()], p.prefixes_sent);
        prefixes_received.push(
            vec![peer(), ("afi", "ipv4".to_owned())],
            p.prefixes_received_ipv4,
        );
        prefixes_received.push(
            vec![peer(), ("afi", "ipv6".to_owned())],
            p.prefixes_received_ipv6,
        );
        push_messages(&mut messages_sent, &p.name, &p.messages_sent);
        push_messages(&mut messages_received, &p.name, &p.messages_received);
        established.push(vec![peer()], p.established_count);
    }

    let mut signed = FamilySamples::gauge(
        "anyguard_guard_reports_signed",
        "1 when the fleet's reports are signed and verified (HMAC-SHA256), 0 when unsigned",
    );
    let mut poll_failures = FamilySamples::counter(
        "anyguard_guard_poll_failures_total",
        "Failed polls of another site's report, by reason; each counts as unreachable",
    );
    if let Some(f) = &doc.fleet {
        signed.push(Vec::new(), flag(f.auth != "none"));
        for site in &f.sites {
            for (reason, n) in &site.poll_failures {
                poll_failures.push(
                    vec![("site", site.name.clone()), ("reason", reason.clone())],
                    *n,
                );
            }
        }
    }

    let mut families = vec![
        info,
        ready,
        uptime,
        generation,
        last_reload,
        state_write,
        signed,
        poll_failures,
        peer_state,
        session_up,
        prefixes_sent,
        prefixes_received,
        messages_sent,
        messages_received,
        established,
    ];
    families.extend(bfd_families(doc));
    families.extend(fleet_families(doc));
    families.extend(store_families(doc));
    families.push(pending_removals_family(doc));
    families
}

/// The fleet file in force and, per other site, whether it runs another one.
fn fleet_families(doc: &StatusDocument) -> Vec<FamilySamples> {
    let mut info = FamilySamples::gauge(
        "anyguard_guard_fleet_info",
        "The fleet file in force: its path and the digest of its canonical form",
    );
    let mut mismatch = FamilySamples::gauge(
        "anyguard_guard_fleet_digest_mismatch",
        "1 while the site's latest report carries another fleet digest than ours",
    );
    if let Some(f) = &doc.fleet {
        info.push(
            vec![("source", f.source.clone()), ("digest", f.digest.clone())],
            1.0,
        );
        for s in &f.sites {
            mismatch.push(
                vec![("site", s.name.clone())],
                flag(f.mismatch.contains(&s.name)),
            );
        }
    }
    vec![info, mismatch]
}

/// The fleet backend and, with etcd, its health: the alarm `anyguard_guard_store_connected
/// == 0` means every withdrawal is held (see `docs/guard.md`, "When etcd cannot be reached").
fn store_families(doc: &StatusDocument) -> Vec<FamilySamples> {
    let mut backend = FamilySamples::gauge(
        "anyguard_guard_fleet_backend",
        "The fleet backend in force: poll (the sites poll each other) or etcd",
    );
    let mut connected = FamilySamples::gauge(
        "anyguard_guard_store_connected",
        "1 while etcd answers and this site holds a live lease; 0 = every withdrawal is held",
    );
    let mut ttl = FamilySamples::gauge(
        "anyguard_guard_store_lease_ttl_seconds",
        "Remaining TTL of this site's etcd lease at the latest keep-alive (0: no lease)",
    );
    let mut revision = FamilySamples::gauge(
        "anyguard_guard_store_revision",
        "The etcd revision this site's view of the fleet is at",
    );
    let mut txns = FamilySamples::counter(
        "anyguard_guard_store_transactions",
        "etcd transactions of this site by kind (withdraw, publish) and result",
    );
    let mut sites = FamilySamples::gauge(
        "anyguard_guard_store_sites_announcing",
        "Sites whose records in etcd say they announce the service prefix (this one included)",
    );
    if let Some(f) = &doc.fleet {
        backend.push(vec![("backend", f.backend.clone())], 1.0);
        if let Some(s) = &f.store {
            connected.push(Vec::new(), flag(s.connected));
            ttl.push(Vec::new(), s.lease_ttl_ms as f64 / 1000.0);
            revision.push(Vec::new(), u64::try_from(s.revision).unwrap_or(0));
            for (kind, result, n) in [
                ("withdraw", "committed", s.withdrawals_committed),
                ("withdraw", "conflict", s.withdrawals_conflicted),
                ("publish", "committed", s.publications),
                ("any", "error", s.txn_errors),
            ] {
                txns.push(
                    vec![("kind", kind.to_owned()), ("result", result.to_owned())],
                    n,
                );
            }
            for p in &s.prefixes {
                sites.push(
                    vec![("service", p.service.clone()), ("prefix", p.prefix.clone())],
                    p.sites_announcing.len(),
                );
            }
        }
    }
    vec![backend, connected, ttl, revision, txns, sites]
}

/// `anyguard_guard_pending_removals`: per service and decision (`pending`, `held`), the
/// prefixes a reload removed that the guard still keeps announced.
fn pending_removals_family(doc: &StatusDocument) -> FamilySamples {
    let mut family = FamilySamples::gauge(
        "anyguard_guard_pending_removals",
        "Prefixes removed by a reload and still announced until the all-sites guard lets them go",
    );
    let mut counts: std::collections::BTreeMap<(String, String), usize> = Default::default();
    for r in &doc.pending_removals {
        *counts
            .entry((r.service.clone(), r.decision.clone()))
            .or_default() += r.prefixes.len();
    }
    for ((service, decision), n) in counts {
        family.push(vec![("service", service), ("decision", decision)], n);
    }
    family
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        // Clone out of the watch lock so a slow scrape never blocks the coordinator; the
        // service entries stay behind (their families are kept in place).
        let doc = {
            let d = self.status.borrow();
            StatusDocument {
                daemon: d.daemon.clone(),
                services: Vec::new(),
                peers: d.peers.clone(),
                bfd: d.bfd.clone(),
                guard: None,
                pending_removals: d.pending_removals.clone(),
                fleet: d.fleet.clone(),
            }
        };
        for family in snapshot_families(&doc) {
            if !family.samples.is_empty() {
                family.encode(&mut encoder)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Metrics {
        Metrics::new(watch::channel(StatusDocument::default()).1)
    }

    fn probe_series(m: &Metrics) -> Vec<String> {
        let text = m.encode().unwrap_or_else(|e| panic!("{e}"));
        let mut series: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("anyguard_probe_duration_seconds_count"))
            .map(|l| l.split_whitespace().next().unwrap_or_default().to_owned())
            .collect();
        series.sort();
        series
    }

    #[test]
    fn probe_series_of_checks_removed_by_a_reload_go() {
        let m = metrics();
        let ms = Duration::from_millis(3);
        let runner = m.runner();
        let http = runner.check("web", "http");
        http.observe(ms, true, None);
        http.observe(ms, false, None);
        runner.check("web", "tcp").observe(ms, true, None);
        runner.check("dns", "udp").observe(ms, false, None);
        // Reload: web's "tcp" check is renamed "tls", service dns is removed.
        m.retain_checks([("web", "http"), ("web", "tls")]);
        assert_eq!(
            probe_series(&m),
            [
                r#"anyguard_probe_duration_seconds_count{service="web",check="http",result="fail"}"#,
                r#"anyguard_probe_duration_seconds_count{service="web",check="http",result="ok"}"#,
            ]
        );
        // A check that comes back starts a new series.
        runner.check("web", "tcp").observe(ms, true, None);
        assert_eq!(probe_series(&m).len(), 3);
    }

    #[test]
    fn a_stopped_runners_late_result_creates_no_series_for_a_removed_check() {
        let m = metrics();
        let ms = Duration::from_millis(3);
        let old = m.runner();
        let (http, tcp) = (old.check("web", "http"), old.check("web", "tcp"));
        http.observe(ms, true, None);
        // Reload: "tcp" removed; the new runner starts, the old one is stopped (retired),
        // then the series of the removed checks go.
        let new = m.runner();
        old.retire();
        m.retain_checks([("web", "http")]);
        // The old tcp task was finishing a probe: its first result comes now.
        tcp.observe(ms, false, None);
        // The old http task's late failure: no new series either.
        http.observe(ms, false, None);
        assert_eq!(
            probe_series(&m),
            [r#"anyguard_probe_duration_seconds_count{service="web",check="http",result="ok"}"#]
        );
        // The new runner's checks create theirs.
        new.check("web", "http").observe(ms, false, None);
        assert_eq!(probe_series(&m).len(), 2);
        assert!(old.retired() && !new.retired());
    }
}
