//! The `/status` document: typed, serialisable, and the one source for the JSON the
//! endpoint serves, the `anyguard status` client, and the other sites' guard pollers.
//!
//! The coordinator builds a [`StatusDocument`] after every change and publishes it through
//! a `tokio::sync::watch` channel; the HTTP server only reads the latest snapshot. Each
//! service's entry is shared by `Arc` between snapshots and rebuilt only when that service
//! changed, so that publishing after a probe result costs the same with ten services or a
//! thousand (issue 13). A check's counters and recent results, which change with every
//! probe result, are not part of that entry's identity: the check's own task records them
//! in the check's [`LiveCheck`] (`status::record`), and the endpoint copies them into the
//! document it serves ([`ServiceStatus::fill_live`]), so a result that changes nothing
//! else rebuilds nothing and does not even wake the coordinator.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::health::ProbeOutcome;

/// The whole status document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusDocument {
    /// The daemon itself.
    pub daemon: DaemonStatus,
    /// One entry per configured service, in config order (shared between snapshots).
    pub services: Vec<Arc<ServiceStatus>>,
    /// One entry per configured peer, in config order.
    pub peers: Vec<PeerStatus>,
    /// The daemon's BFD task, shared by the peers with `bfd` (null while none has it).
    #[serde(default)]
    pub bfd: Option<BfdDaemonStatus>,
    /// This site's report for the other sites' all-sites guards (only when a fleet is
    /// configured); see `docs/guard.md`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<Arc<crate::guard::report::SiteReport>>,
    /// Routes a reload removed that stay announced until the all-sites guard lets them
    /// go (empty without a fleet); see `docs/guard.md`, "Pending removals".
    #[serde(default)]
    pub pending_removals: Vec<PendingRemovalStatus>,
    /// The fleet file in force, whether the other sites run the same one, whether reports
    /// are signed, and per other site the latest poll and the failed polls by reason (only
    /// when a fleet is configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetStatus>,
}

/// The fleet file in force (`"fleet"` in `/status`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetStatus {
    /// The fleet file.
    pub source: String,
    /// SHA-256 of its canonical form (comments, whitespace and spelling do not count),
    /// as this site publishes it in its report.
    pub digest: String,
    /// `[poll] interval`, milliseconds.
    pub poll_interval_ms: u64,
    /// `[poll] timeout`, milliseconds.
    pub poll_timeout_ms: u64,
    /// `hmac-sha256` (the fleet file has `[auth]`) or `none` (unsigned reports).
    pub auth: String,
    /// What an operator must know, e.g. that reports are neither signed nor checked.
    pub warning: Option<String>,
    /// The other sites, in fleet order.
    pub sites: Vec<FleetSiteStatus>,
    /// The other sites whose latest report carries another digest: they run another
    /// fleet file (a rollout in progress, or a forgotten site).
    pub mismatch: Vec<String>,
    /// The fleet backend: `poll` (the sites poll each other) or `etcd`. Absent in
    /// documents of daemons from before backends (read as `poll`).
    #[serde(default = "poll_backend")]
    pub backend: String,
    /// With the etcd backend: its health and what the store says (`None` for `poll`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreStatus>,
}

fn poll_backend() -> String {
    "poll".to_owned()
}

/// The etcd backend (`"fleet"."store"` in `/status`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoreStatus {
    /// `[etcd] endpoints`.
    pub endpoints: Vec<String>,
    /// `[etcd] key_prefix`.
    pub key_prefix: String,
    /// A session is up and this site holds a live lease. While false every withdrawal
    /// (but a forced one) is held: the alarm.
    pub connected: bool,
    /// The latest error, while not connected (or `connecting`).
    pub error: Option<String>,
    /// Milliseconds since `connected` took its current value.
    pub since_ms: Option<u64>,
    /// Milliseconds since the latest answer from etcd.
    pub last_contact_ms: Option<u64>,
    /// This site's lease id (hex), while it has one.
    pub lease_id: Option<String>,
    /// The lease's remaining TTL at the latest keep-alive, milliseconds (0: no lease).
    pub lease_ttl_ms: u64,
    /// `[etcd] lease_ttl`, milliseconds.
    pub lease_ttl_configured_ms: u64,
    /// The store revision the site's view is at.
    pub revision: i64,
    /// The latest transaction of this site.
    pub last_txn: Option<StoreTxnStatus>,
    /// The latest withdrawal of this site that conflicted, with what beat it.
    pub last_conflict: Option<StoreTxnStatus>,
    /// Withdrawal transactions committed.
    pub withdrawals_committed: u64,
    /// Withdrawal transactions refused because the set changed since the read.
    pub withdrawals_conflicted: u64,
    /// Publications of this site's records committed.
    pub publications: u64,
    /// Transactions that got no answer.
    pub txn_errors: u64,
    /// Per service prefix, the sites whose records say they announce it (this one
    /// included).
    pub prefixes: Vec<StorePrefixStatus>,
}

/// A transaction of this site.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoreTxnStatus {
    /// `publish` or `withdraw <service> <prefixes>`.
    pub what: String,
    /// `committed` or `conflict`.
    pub outcome: String,
    /// Revision of the answer.
    pub revision: i64,
    /// When (RFC 3339).
    pub at: String,
    /// A conflict: the compared keys that had changed, as the transaction's else branch
    /// read them (`b: held at revision 42`, `b: gone`); empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
}

/// One service prefix in the store.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StorePrefixStatus {
    /// Service.
    pub service: String,
    /// Prefix.
    pub prefix: String,
    /// Sites with a live lease whose record says announcing (not withdrawing).
    pub sites_announcing: Vec<String>,
}

/// One other site of the fleet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetSiteStatus {
    /// Name.
    pub name: String,
    /// Hold rank (position in the fleet file, 0 = first).
    pub rank: usize,
    /// Its status URL (for humans).
    pub status_url: String,
    /// Where its fleet report is polled.
    pub report_url: String,
    /// The fleet digest of its latest report, if any.
    pub digest: Option<String>,
    /// `same`, `different`, or `unknown` (no report, or no digest in it).
    pub fleet: String,
    /// `ok`, the latest poll's failure, or `not polled yet`.
    pub last_poll: String,
    /// Failed polls since start by reason (`timeout`, `request`, `status`, `body`,
    /// `wrong_site`, `unsupported_version`, `unsigned`, `bad_signature`); every reason is
    /// listed, 0 included.
    pub poll_failures: std::collections::BTreeMap<String, u64>,
}

/// One pending removal: routes a reload took away, still announced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PendingRemovalStatus {
    /// The service the routes belonged to.
    pub service: String,
    /// The prefixes being removed.
    pub prefixes: Vec<ipnet::IpNet>,
    /// `pending` (intent published, awaiting reports) or `held`.
    pub decision: String,
    /// Why, with every other site's state.
    pub reason: String,
    /// The intent published for them: `withdrawing` or `held`.
    pub intent: String,
    /// Other sites seen announcing these prefixes of the service.
    pub sites_announcing: Vec<String>,
    /// `min_sites` of the service.
    pub min_sites: u32,
    /// When the reload removed them, RFC 3339 UTC.
    pub since: String,
}

/// Daemon-wide facts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DaemonStatus {
    /// Crate version.
    pub version: String,
    /// Our BGP identifier.
    pub router_id: String,
    /// Our ASN.
    pub local_asn: u32,
    /// Site name in the fleet, if any.
    pub site: Option<String>,
    /// Seconds since start.
    pub uptime_seconds: u64,
    /// Start time, RFC 3339 UTC.
    pub started_at: String,
    /// Config generation: 1 at start, +1 per accepted reload.
    pub config_generation: u64,
    /// Where the config came from.
    pub config_source: String,
    /// When the running config was loaded, RFC 3339 UTC.
    pub config_loaded_at: String,
    /// Result of the last reload attempt, if any.
    pub last_reload: Option<ReloadStatus>,
    /// True once the config is loaded and sessions are started.
    pub ready: bool,
    /// True while the daemon is shutting down (draining before Cease).
    pub stopping: bool,
    /// While stopping with a fleet: what the stop does about the services the all-sites
    /// guard holds (kept announced; sessions closed for graceful restart).
    #[serde(default)]
    pub stop_reason: Option<String>,
    /// The state file (operator drains and service addresses kept across restarts);
    /// `null` when the daemon keeps that state in memory only.
    #[serde(default)]
    pub state_file: Option<StateFileStatus>,
}

/// The state file, as `/status` shows it (`docs/status.md`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateFileStatus {
    /// Where it is.
    pub path: String,
    /// Services with an operator drain in the file (configured or not).
    pub drains: Vec<String>,
    /// Service addresses recorded as possibly on an interface.
    pub addresses: usize,
    /// The last write since start; `null` before the first.
    pub last_write: Option<StateWriteStatus>,
}

/// The outcome of a state file write.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateWriteStatus {
    /// RFC 3339 UTC.
    pub at: String,
    /// Written and synced.
    pub ok: bool,
    /// Why not.
    pub error: Option<String>,
}

/// The outcome of a reload.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReloadStatus {
    /// RFC 3339 UTC.
    pub at: String,
    /// Accepted or not.
    pub ok: bool,
    /// Every error, one per entry (file:line:col: key: message), empty when ok.
    pub errors: Vec<String>,
}

/// A service and what is done with its prefixes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// Name.
    pub name: String,
    /// `up`, `down`, `draining`, `drained`, `held` (guard), `starting`.
    pub state: String,
    /// When the state was entered, RFC 3339 UTC.
    pub since: String,
    /// Why it is in this state (human text).
    pub reason: String,
    /// Configured prefixes.
    pub prefixes: Vec<String>,
    /// What is announced to each peer right now.
    pub announcements: Vec<AnnouncementStatus>,
    /// Checks, in config order.
    pub checks: Vec<CheckStatus>,
    /// The all-sites guard's view for this service.
    pub guard: GuardStatus,
    /// Flap dampening of our own announcements.
    pub dampening: DampeningStatus,
}

/// Per-peer announcement of one service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AnnouncementStatus {
    /// Peer name.
    pub peer: String,
    /// `announced`, `depreferred`, `graceful-shutdown`, `withdrawn`, `pending` (session down).
    pub state: String,
    /// Prefixes currently in that peer's Adj-RIB-Out for this service.
    pub prefixes: Vec<String>,
}

/// Guard decision for one service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GuardStatus {
    /// `allow`, `held`, `disabled` (no fleet configured), `forced` (operator drain with force).
    pub decision: String,
    /// Why (e.g. which sites count as announcing).
    pub reason: String,
    /// This site's published intent for the other sites: `announce`, `withdraw`, `withdrawn`.
    pub intent: String,
    /// Other sites seen announcing this service.
    pub sites_announcing: Vec<String>,
    /// `min_sites` for this service.
    pub min_sites: u32,
}

/// Flap dampening state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DampeningStatus {
    /// State changes counted in the current window.
    pub flaps: u32,
    /// Current hold-down before the next re-announcement, milliseconds.
    pub hold_down_ms: u64,
    /// Re-announcement suppressed until (RFC 3339 UTC), if suppressed.
    pub suppressed_until: Option<String>,
}

/// A check of a service. Serialised with the counters and newest results of its
/// [`LiveCheck`] when it has one (see [`CheckStatus::fill_live`]).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct CheckStatus {
    /// Name.
    pub name: String,
    /// `http`, `tcp`, `command`, `dns`, `file`.
    pub kind: String,
    /// Target (URL, address, argv, …) for humans.
    pub target: String,
    /// `up`, `down`, `unknown`.
    pub state: String,
    /// Consecutive passes so far / rise.
    pub rise_count: u32,
    /// `rise`.
    pub rise: u32,
    /// Consecutive failures so far / fall.
    pub fall_count: u32,
    /// `fall`.
    pub fall: u32,
    /// Most recent results, newest first: the [`RESULTS_IN_DOCUMENT`] newest in the whole
    /// document, every one kept (`core::RESULTS_KEPT`) when one service is asked for
    /// (`/status?service=NAME`), the newest only in the summary.
    pub last_results: Vec<ProbeResultStatus>,
    /// The kept results older than `last_results`, newest first, which the whole document
    /// leaves out (it would be mostly history: 2.5 MB at 1,000 services with all ten);
    /// `/status?service=NAME` appends them to `last_results`.
    #[serde(skip)]
    pub older_results: Vec<ProbeResultStatus>,
    /// Where the check's task records its counters and results as they come
    /// (not serialised; [`CheckStatus::fill_live`] copies them into the fields above).
    #[serde(skip)]
    pub live: LiveCheck,
}

impl ServiceStatus {
    /// Copies every check's latest counters and results from its [`LiveCheck`] into the
    /// document fields (what the endpoint does before serving the entry).
    pub fn fill_live(&mut self) {
        for c in &mut self.checks {
            c.fill_live();
        }
    }
}

impl Serialize for CheckStatus {
    /// The derived layout, with `rise_count`, `fall_count` and `last_results` (the newest
    /// [`RESULTS_IN_DOCUMENT`]) read from the live record at serialisation time: serving
    /// the whole document copies no entry (issue 13).
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let live = self
            .live
            .0
            .as_ref()
            .map(|l| l.lock().unwrap_or_else(PoisonError::into_inner));
        let mut st = serializer.serialize_struct("CheckStatus", 9)?;
        st.serialize_field("name", &self.name)?;
        st.serialize_field("kind", &self.kind)?;
        st.serialize_field("target", &self.target)?;
        st.serialize_field("state", &self.state)?;
        st.serialize_field(
            "rise_count",
            &live.as_ref().map_or(self.rise_count, |l| l.rise_count),
        )?;
        st.serialize_field("rise", &self.rise)?;
        st.serialize_field(
            "fall_count",
            &live.as_ref().map_or(self.fall_count, |l| l.fall_count),
        )?;
        st.serialize_field("fall", &self.fall)?;
        match &live {
            Some(l) => st.serialize_field(
                "last_results",
                &LatestResults(&l.results, RESULTS_IN_DOCUMENT),
            )?,
            None => st.serialize_field("last_results", &self.last_results)?,
        }
        st.end()
    }
}

/// The first `.1` results of `.0`, serialised as a list.
struct LatestResults<'a>(&'a VecDeque<ProbeResultStatus>, usize);

impl Serialize for LatestResults<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().take(self.1))
    }
}

impl CheckStatus {
    /// Copies the latest counters and results from [`CheckStatus::live`] (the newest
    /// [`RESULTS_IN_DOCUMENT`] into `last_results`, the rest into `older_results`) and
    /// detaches it, so that the fields are what is serialised; an entry without one keeps
    /// its fields.
    pub fn fill_live(&mut self) {
        self.copy_live();
        // From now on the fields are what is shown (a view may edit them).
        self.live = LiveCheck::default();
    }

    /// Copies the latest counters and results from [`CheckStatus::live`] as
    /// [`CheckStatus::fill_live`] does, keeping the live record.
    pub fn copy_live(&mut self) {
        let Some(live) = &self.live.0 else {
            return;
        };
        let live = live.lock().unwrap_or_else(PoisonError::into_inner);
        self.rise_count = live.rise_count;
        self.fall_count = live.fall_count;
        self.last_results = live
            .results
            .iter()
            .take(RESULTS_IN_DOCUMENT)
            .cloned()
            .collect();
        self.older_results = live
            .results
            .iter()
            .skip(RESULTS_IN_DOCUMENT)
            .cloned()
            .collect();
    }
}

/// A check's consecutive passes and failures and its latest results (newest first),
/// recorded at every probe result: in the daemon by the check's task itself
/// (`status::record`), so that a result that changes nothing wakes nobody (issue 13).
/// Shared between that task, the coordinator's check slot and the `/status` entries built
/// from it; entries compare equal when they share the same one. One record belongs to one
/// health runner: a reload that restarts the runner gives the new one a copy
/// ([`LiveCheck::fork`]), so that a result of the old runner still on its way cannot land
/// in it.
#[derive(Debug, Clone, Default)]
pub struct LiveCheck(Option<Arc<Mutex<LiveCheckData>>>);

/// What a [`LiveCheck`] holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveCheckData {
    /// Consecutive passes so far.
    pub rise_count: u32,
    /// Consecutive failures so far.
    pub fall_count: u32,
    /// The latest results, newest first.
    pub results: VecDeque<ProbeResultStatus>,
    /// `CheckEvent::seq` of the newest result recorded (0: none yet): a result is
    /// recorded once, and never after a newer one.
    pub seq: u64,
    /// Entries made with the record, taken while fewer than `keep` results are kept.
    spare: Vec<ProbeResultStatus>,
}

/// Room made for a kept result's `at` (RFC 3339 with milliseconds is 24 bytes) and
/// `detail` (`status 200`, `connected to 127.0.0.1:8080`; a longer one grows it).
const KEPT_AT_BYTES: usize = 24;
const KEPT_DETAIL_BYTES: usize = 48;

impl LiveCheck {
    /// An empty record keeping at most `keep` results, with the memory for them: the
    /// check's task, which records in the daemon, then allocates nothing that lives on
    /// among its probes' short-lived buffers in its thread's malloc arena.
    pub fn new(keep: usize) -> Self {
        let spare = (0..keep)
            .map(|_| ProbeResultStatus {
                at: String::with_capacity(KEPT_AT_BYTES),
                detail: String::with_capacity(KEPT_DETAIL_BYTES),
                ..ProbeResultStatus::default()
            })
            .collect();
        LiveCheck(Some(Arc::new(Mutex::new(LiveCheckData {
            results: VecDeque::with_capacity(keep),
            spare,
            ..LiveCheckData::default()
        }))))
    }

    /// Records result `seq` (`outcome`, observed at `at`) and the counters after it,
    /// keeping the newest `keep`, unless a result as new is recorded already (the
    /// check's task recorded it, or overtook it with a newer one). Whether recorded.
    pub fn record(
        &self,
        seq: u64,
        rise_count: u32,
        fall_count: u32,
        at: SystemTime,
        outcome: &ProbeOutcome,
        keep: usize,
    ) -> bool {
        let Some(live) = &self.0 else {
            return false;
        };
        let mut live = live.lock().unwrap_or_else(PoisonError::into_inner);
        if seq <= live.seq {
            return false;
        }
        live.seq = seq;
        live.rise_count = rise_count;
        live.fall_count = fall_count;
        // A spare entry made with the record, or once `keep` are kept the oldest, written
        // over: their strings keep their memory, so a result allocates nothing (issue 13).
        let mut entry = if live.results.len() >= keep.max(1) {
            live.results.pop_back().unwrap_or_default()
        } else {
            live.spare.pop().unwrap_or_default()
        };
        entry.set(at, outcome);
        live.results.push_front(entry);
        live.results.truncate(keep);
        true
    }

    /// The consecutive passes and failures recorded last (0, 0 for no record).
    pub fn counters(&self) -> (u32, u32) {
        self.0.as_ref().map_or((0, 0), |l| {
            let l = l.lock().unwrap_or_else(PoisonError::into_inner);
            (l.rise_count, l.fall_count)
        })
    }

    /// A new record holding a copy of this one (keeping at most `keep` results), for a
    /// health runner that continues the check, and the counters of that copy.
    pub fn fork(&self, keep: usize) -> (LiveCheck, (u32, u32)) {
        let Some(live) = &self.0 else {
            return (LiveCheck::new(keep), (0, 0));
        };
        let mut copy = live.lock().unwrap_or_else(PoisonError::into_inner).clone();
        copy.results.truncate(keep);
        let counters = (copy.rise_count, copy.fall_count);
        (LiveCheck(Some(Arc::new(Mutex::new(copy)))), counters)
    }
}

impl PartialEq for LiveCheck {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

/// Results per check in the whole `/status` document ([`CheckStatus::last_results`]).
pub const RESULTS_IN_DOCUMENT: usize = 3;

/// One probe result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeResultStatus {
    /// RFC 3339 UTC.
    pub at: String,
    /// Passed.
    pub ok: bool,
    /// Milliseconds, fractional.
    pub latency_ms: f64,
    /// Error text or captured output.
    pub detail: String,
}

impl ProbeResultStatus {
    /// Becomes `outcome` as shown, observed at `at`, reusing its strings' memory.
    pub fn set(&mut self, at: SystemTime, outcome: &ProbeOutcome) {
        self.at.clear();
        push_rfc3339_millis(&mut self.at, at);
        self.ok = outcome.ok;
        self.latency_ms = outcome.latency.as_secs_f64() * 1000.0;
        self.detail.clear();
        self.detail.push_str(&outcome.detail);
    }
}

/// A BGP peer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// Name.
    pub name: String,
    /// Address.
    pub address: String,
    /// Remote ASN.
    pub remote_asn: u32,
    /// RFC 4271 state: `idle`, `connect`, `active`, `opensent`, `openconfirm`, `established`.
    pub state: String,
    /// When that state was entered, RFC 3339 UTC.
    pub since: String,
    /// Negotiated hold time in seconds (when established).
    pub hold_time: Option<u16>,
    /// Negotiated capabilities, by name (e.g. `4-octet-as`, `mp-ipv6-unicast`).
    pub capabilities: Vec<String>,
    /// Messages sent, by type.
    pub messages_sent: MessageCounts,
    /// Messages received, by type.
    pub messages_received: MessageCounts,
    /// Prefixes we announce to the peer.
    pub prefixes_sent: u64,
    /// Prefixes the peer currently announces to us, IPv4.
    pub prefixes_received_ipv4: u64,
    /// Same for IPv6.
    pub prefixes_received_ipv6: u64,
    /// Service prefixes the peer sends back (other sites' announcements), as text.
    pub service_routes_received: Vec<String>,
    /// Last error (transport or protocol), human text.
    pub last_error: Option<String>,
    /// Last NOTIFICATION we sent.
    pub last_notification_sent: Option<NotificationStatus>,
    /// Last NOTIFICATION we received.
    pub last_notification_received: Option<NotificationStatus>,
    /// Sessions established since start (a session that moves to the other connection of
    /// a collision, `fsm::Action::SessionMoved`, is not counted again).
    pub established_count: u64,
    /// The current session's number (`PeerEvent::Flushed::session`) while `state` is
    /// `established`, else 0. Internal: not part of the status document.
    #[serde(skip)]
    pub session: u64,
    /// The BFD session protecting this peer (RFC 5880/5881), when `bfd` is configured.
    pub bfd: Option<BfdStatus>,
}

/// A BFD session, as the BFD driver last published it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BfdStatus {
    /// RFC 5880 state: `admin_down`, `down`, `init`, `up`.
    pub state: String,
    /// When that state was entered, RFC 3339 UTC.
    pub since: String,
    /// The peer's state as it last said.
    pub remote_state: String,
    /// Our discriminator (My Discriminator).
    pub local_discriminator: u32,
    /// The peer's (0 until heard, and after the detection time expires).
    pub remote_discriminator: u32,
    /// Interval between our packets before jitter, in ms (1000 while not Up).
    pub tx_interval_ms: u64,
    /// Detection time in ms: the peer's multiplier × the agreed interval; absent until the
    /// peer is heard.
    pub detection_time_ms: Option<u64>,
    /// Our last diagnostic code (RFC 5880 §4.1): why the session last changed state.
    pub diag: u8,
    /// Its name, e.g. `Control Detection Time Expired`.
    pub diag_name: String,
    /// The diagnostic code in the peer's last packet.
    pub remote_diag: u8,
    /// Times the session reached Up.
    pub up_count: u64,
    /// Times an Up session failed (detection time expired or the peer said Down); each
    /// one closed the BGP session with Cease/BFD Down.
    pub failures: u64,
    /// Control packets received and accepted.
    pub packets_in: u64,
    /// Control packets sent.
    pub packets_out: u64,
    /// Packets from the peer dropped: malformed, TTL other than 255, authentication.
    pub bad_packets: u64,
    /// What an operator should know, e.g. that the session never came up.
    pub note: Option<String>,
}

/// The daemon's BFD task: what belongs to no one session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BfdDaemonStatus {
    /// Datagrams received on the BFD port and dropped before they reached a session.
    pub dropped: BfdDropCounts,
}

/// Datagrams dropped before they reached a session, by reason. A fixed set of reasons
/// (no per-sender entry), so that a flood from many addresses cannot grow the status.
/// `ttl` and `malformed` also count packets from a peer with a session (its
/// `bad_packets` counts them too).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BfdDropCounts {
    /// TTL / hop limit other than 255 (RFC 5881 §5).
    pub ttl: u64,
    /// Not a valid Control packet (RFC 5880 §6.8.6), or longer than any.
    pub malformed: u64,
    /// Your Discriminator zero and no session with the source address (RFC 5881 §3).
    pub no_session: u64,
    /// Your Discriminator names no session of ours (RFC 5880 §6.8.6).
    pub unknown_discriminator: u64,
    /// Your Discriminator names a session with another address than the source.
    pub wrong_source: u64,
}

/// Message counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageCounts {
    /// OPEN.
    pub open: u64,
    /// UPDATE.
    pub update: u64,
    /// NOTIFICATION.
    pub notification: u64,
    /// KEEPALIVE.
    pub keepalive: u64,
    /// ROUTE-REFRESH.
    pub route_refresh: u64,
}

/// A NOTIFICATION, for humans.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationStatus {
    /// RFC 3339 UTC.
    pub at: String,
    /// Error code.
    pub code: u8,
    /// Subcode.
    pub subcode: u8,
    /// Name, e.g. `Cease/Administrative Shutdown`.
    pub name: String,
    /// RFC 8203/9003 shutdown communication, if any.
    pub communication: Option<String>,
}

/// Appends `at` as RFC 3339 UTC with milliseconds (`2026-12-08T01:01:25.123Z`), exactly
/// as `humantime::format_rfc3339_millis` writes it. Every probe result is stamped so
/// (two thousand a second at 1,000 services, issue 13), and nearly all of them within the
/// same second as the thread's previous one: the calendar part down to the second is
/// formatted once per second and thread, and only the milliseconds for each result.
pub(crate) fn push_rfc3339_millis(out: &mut String, at: SystemTime) {
    use std::cell::RefCell;
    use std::fmt::Write as _;
    use std::time::{Duration, UNIX_EPOCH};

    thread_local! {
        /// The whole second last formatted on this thread, and its text without the `Z`.
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let Ok(since) = at.duration_since(UNIX_EPOCH) else {
        // Before 1970 (humantime's own rule applies): not worth a cache.
        let _ = write!(out, "{}", humantime::format_rfc3339_millis(at));
        return;
    };
    let secs = since.as_secs();
    SECOND.with(|cell| {
        let mut second = cell.borrow_mut();
        if second.0 != secs {
            second.1.clear();
            // Writing to a `String` cannot fail.
            let _ = write!(
                second.1,
                "{}",
                humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs))
            );
            // `…:25Z` → `…:25`: the milliseconds go before the zone.
            second.1.pop();
            second.0 = secs;
        }
        out.push_str(&second.1);
    });
    let ms = since.subsec_millis();
    let digit = |d: u32| char::from_digit(d % 10, 10).unwrap_or('0');
    out.push('.');
    out.push(digit(ms / 100));
    out.push(digit(ms / 10));
    out.push(digit(ms));
    out.push('Z');
}

#[cfg(test)]
mod rfc3339_tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use super::push_rfc3339_millis;

    fn ours(at: SystemTime) -> String {
        let mut s = String::new();
        push_rfc3339_millis(&mut s, at);
        s
    }

    #[test]
    fn the_cached_second_writes_what_humantime_writes() {
        let base = UNIX_EPOCH + Duration::from_secs(1_796_000_000);
        // Within one second (the cache hit), across seconds forwards and back (a miss
        // each), at both ends of a second, a leap day and the epoch itself.
        let offsets_ms: [u64; 12] = [0, 1, 9, 10, 99, 100, 999, 1000, 1001, 61_999, 999, 0];
        let mut times: Vec<SystemTime> = offsets_ms
            .iter()
            .map(|ms| base + Duration::from_millis(*ms))
            .collect();
        times.push(UNIX_EPOCH);
        times.push(UNIX_EPOCH + Duration::from_nanos(999_999_999));
        // 2028-02-29T23:59:59.5Z
        times.push(UNIX_EPOCH + Duration::from_millis(1_835_481_599_500));
        times.push(base + Duration::from_nanos(123_456_789));
        for at in times {
            assert_eq!(
                ours(at),
                humantime::format_rfc3339_millis(at).to_string(),
                "{at:?}"
            );
        }
    }

    #[test]
    fn it_appends() {
        let at = UNIX_EPOCH + Duration::from_millis(1_500);
        let mut s = String::from("at ");
        push_rfc3339_millis(&mut s, at);
        assert_eq!(s, "at 1970-01-01T00:00:01.500Z");
    }
}
