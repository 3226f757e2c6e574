//! Validated daemon configuration.
//!
//! "Parse, don't validate": [`raw`] mirrors the TOML file with serde
//! (`deny_unknown_fields` everywhere); `TryFrom<raw::…>` builds these types and collects
//! every error with its file, line and key path. Nothing downstream sees an unchecked value.
//!
//! Entry points: [`load`], [`load_str`], [`embedded_default`] ([`EMBEDDED_DEFAULT`] is the
//! config `anyguard run` uses without `--config`). Defaults are the `DEFAULT_*` constants
//! below; the file format is documented on the [`raw`] types and in `config/*.toml`.

mod error;
mod load;
mod parse;
pub mod raw;
mod validate;
mod validate_local;
mod validate_service;

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_bfd;
#[cfg(test)]
mod tests_https;
#[cfg(test)]
mod tests_local_actions;
#[cfg(test)]
mod tests_reuse;

pub(crate) use error::render_located;
pub use error::{ConfigError, ConfigErrors};
pub use load::{embedded_default, load, load_str, EMBEDDED_DEFAULT, EMBEDDED_SOURCE};
pub use validate::SourcedRaw;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyguard_proto::{Community, LargeCommunity};
use ipnet::IpNet;

/// The whole daemon configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where it was loaded from (for messages), or `<embedded>`.
    pub source: String,
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// Our ASN (non-zero).
    pub local_asn: u32,
    /// The status/metrics/control HTTP endpoint.
    pub status: StatusConfig,
    /// `[bgp] listen`: where we accept connections from `passive`/`both` peers; `None` =
    /// no listener (every peer is `active`).
    pub bgp_listen: Option<SocketAddr>,
    /// BGP peers.
    pub peers: Vec<PeerConfig>,
    /// Services to announce.
    pub services: Vec<ServiceConfig>,
    /// Fleet description for the all-sites guard, if any.
    pub fleet: Option<FleetRef>,
    /// `state_dir`: where the state file goes; `None`: the daemon's default
    /// (`RunOptions::default_state_dir`).
    pub state_dir: Option<PathBuf>,
}

/// `[status] listen` default: loopback only.
pub const DEFAULT_STATUS_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9180);
/// BGP port (RFC 4271 §8.2.1).
pub const DEFAULT_PEER_PORT: u16 = 179;
/// Proposed hold time (RFC 4271 §10 suggests 90 s). Operators should set a short one
/// (e.g. 9 s) towards their own edge routers when there is no BFD.
pub const DEFAULT_HOLD_TIME: Duration = Duration::from_secs(90);
/// ConnectRetryTime; RFC 4271 §10 suggests 120 s, but our peers are our own edge routers
/// and a site should come back quickly after a router restart.
pub const DEFAULT_CONNECT_RETRY: Duration = Duration::from_secs(5);
/// Graceful restart Restart Time when enabled: short, because for anycast a long one keeps
/// a dead site attracting traffic.
pub const DEFAULT_GR_RESTART_TIME: Duration = Duration::from_secs(10);
/// Default BFD transmit and receive interval (FRR's default too).
pub const DEFAULT_BFD_INTERVAL: Duration = Duration::from_millis(300);
/// Default BFD detection multiplier.
pub const DEFAULT_BFD_MULTIPLIER: u8 = 3;
/// Shortest BFD interval accepted in the configuration.
pub const MIN_BFD_INTERVAL: Duration = Duration::from_millis(10);
/// Longest BFD interval accepted in the configuration.
pub const MAX_BFD_INTERVAL: Duration = Duration::from_secs(60);
/// Extra prepends while de-preferred.
pub const DEFAULT_DEPREFER_PREPEND: u8 = 3;
/// LOCAL_PREF sent to internal peers when the service sets none (the customary default
/// of BGP implementations, RFC 4271 §5.1.5 makes it mandatory towards internal peers).
pub const DEFAULT_LOCAL_PREF: u32 = 100;
/// How long a drained service keeps GRACEFUL_SHUTDOWN before the withdrawal.
pub const DEFAULT_DRAIN_TIME: Duration = Duration::from_secs(5);
/// Minimum time between a withdrawal and the next announcement.
pub const DEFAULT_HOLD_DOWN: Duration = Duration::from_secs(1);
/// Check interval.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Lower bound for `interval` and `fast_interval`, against busy loops.
pub const MIN_CHECK_INTERVAL: Duration = Duration::from_millis(10);
/// Upper bound of every duration in the config files: far beyond any sensible setting,
/// and small enough that a deadline `now + duration` (or a multiple of it) can never
/// overflow an `Instant` or a `Duration` at run time.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);
/// Consecutive passes to go up (anycast-healthchecker's default).
pub const DEFAULT_RISE: u32 = 2;
/// Consecutive failures to go down.
pub const DEFAULT_FALL: u32 = 2;
/// Accepted HTTP status codes.
pub const DEFAULT_HTTP_STATUS: (u16, u16) = (200, 299);
/// Time limit of one state-change hook run.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// Interface that receives a service's `local_addresses`.
pub const DEFAULT_LOCAL_INTERFACE: &str = "lo";

/// `[status]`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusConfig {
    /// Listen address; loopback by default.
    pub listen: SocketAddr,
    /// File holding the bearer token for control endpoints; control is disabled without it.
    pub token_file: Option<PathBuf>,
    /// A second listener that serves only the fleet report (`/fleet/report`), with slots
    /// and deadlines of its own, so that the other sites' polls are answered while slow
    /// clients hold every slot of `listen`. `None`: the report is served on `listen`.
    pub fleet_listen: Option<SocketAddr>,
}

/// `fleet = …` in a site config.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetRef {
    /// Path of the fleet file.
    pub path: PathBuf,
    /// This site's name in the fleet.
    pub site: String,
    /// `hand_over`: how long another site must have been seen announcing before it
    /// counts for a withdrawal here ([`crate::guard::hand_over`]; zero: off).
    pub hand_over: Duration,
}

/// How the session's TCP connection is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerMode {
    /// We connect.
    Active,
    /// We only accept.
    Passive,
    /// Both; collisions resolved per RFC 4271 §6.8.
    Both,
}

/// One `[[peer]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerConfig {
    /// Unique name.
    pub name: String,
    /// Peer address.
    pub address: IpAddr,
    /// Peer TCP port (179 by default; tests use high ports).
    pub port: u16,
    /// Local address to bind, if any.
    pub local_address: Option<IpAddr>,
    /// Peer ASN.
    pub remote_asn: u32,
    /// Connection mode.
    pub mode: PeerMode,
    /// Proposed hold time: zero or at least 3 s.
    pub hold_time: Duration,
    /// Connect retry time.
    pub connect_retry: Duration,
    /// TCP MD5 key (RFC 2385), read from `md5_key_file` at load time.
    pub md5_key: Option<Vec<u8>>,
    /// GTSM (RFC 5082): send TTL 255, require at least 254.
    pub ttl_security: bool,
    /// Maximum prefixes the peer may send before Cease/1 (RFC 4486).
    pub max_prefixes: Option<MaxPrefixes>,
    /// Graceful restart as a restarting speaker (RFC 4724); off by default.
    pub graceful_restart: Option<GracefulRestartConfig>,
    /// BFD with the peer (RFC 5880/5881); off by default.
    pub bfd: Option<BfdConfig>,
    /// Address families to negotiate (from the services' prefixes if not given).
    pub ipv4: bool,
    /// See `ipv4`.
    pub ipv6: bool,
    /// Next hop for IPv4 routes when the service says "self" (default: local socket address).
    pub next_hop_v4: Option<Ipv4Addr>,
    /// Next hop for IPv6 routes when the service says "self" (default: local socket address).
    pub next_hop_v6: Option<std::net::Ipv6Addr>,
    /// Reconnect back-off; `None` for the daemon's defaults (1 s doubling to 60 s).
    pub reconnect: Option<Reconnect>,
}

/// Max-prefix limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPrefixes {
    /// Limit.
    pub limit: u64,
    /// Reconnect after this long; stay down until an operator acts if `None`.
    pub restart: Option<Duration>,
}

/// Reconnect back-off of a peer (`reconnect`): the first wait after a failure, doubled
/// per further failure up to the cap (RFC 4271 §8.1.1 DampPeerOscillations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconnect {
    /// First wait after a failure (default 1 s).
    pub min: Duration,
    /// Cap of the doubling wait (default 60 s).
    pub max: Duration,
}

/// The reconnect back-off of a peer without `reconnect`.
pub const DEFAULT_RECONNECT: Reconnect = Reconnect {
    min: Duration::from_secs(1),
    max: Duration::from_secs(60),
};

/// Shortest `reconnect.min`: a reconnect loop faster than this only loads the router.
pub const MIN_RECONNECT: Duration = Duration::from_millis(100);
/// Longest `reconnect.max`.
pub const MAX_RECONNECT: Duration = Duration::from_secs(3600);

/// Graceful restart parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GracefulRestartConfig {
    /// Restart Time advertised (default 10 s).
    pub restart_time: Duration,
}

/// BFD parameters of a peer (RFC 5880 §6.8.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BfdConfig {
    /// bfd.DesiredMinTxInterval once Up.
    pub min_tx: Duration,
    /// bfd.RequiredMinRxInterval.
    pub min_rx: Duration,
    /// bfd.DetectMult.
    pub multiplier: u8,
}

impl Default for BfdConfig {
    fn default() -> Self {
        BfdConfig {
            min_tx: DEFAULT_BFD_INTERVAL,
            min_rx: DEFAULT_BFD_INTERVAL,
            multiplier: DEFAULT_BFD_MULTIPLIER,
        }
    }
}

/// What to do with a service's routes when it goes down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDown {
    /// Withdraw the prefixes.
    Withdraw,
    /// Keep them, de-preferred with prepends and a community.
    Deprefer,
}

/// The next hop of announced routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextHop {
    /// The session's local address (or the peer's `next_hop_v4/v6`).
    SelfAddress,
    /// A fixed address.
    Address(IpAddr),
}

/// How several checks combine into a service's health.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Combine {
    /// Every check up.
    All,
    /// Any check up.
    Any,
    /// At least N up.
    AtLeast(usize),
    /// At least P percent up.
    AtLeastPercent(f64),
}

/// One `[[service]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    /// Unique name.
    pub name: String,
    /// Prefixes announced for this service.
    pub prefixes: Vec<IpNet>,
    /// Next hop.
    pub next_hop: NextHop,
    /// Communities on every announcement.
    pub communities: Vec<Community>,
    /// Large communities on every announcement.
    pub large_communities: Vec<LargeCommunity>,
    /// MED, if set.
    pub med: Option<u32>,
    /// LOCAL_PREF towards internal peers in the normal state; `None` is
    /// [`DEFAULT_LOCAL_PREF`]. Always sent to them (RFC 4271 §5.1.5), never to external ones.
    pub local_pref: Option<u32>,
    /// LOCAL_PREF towards internal peers while de-preferred; `None` is half the normal
    /// one. On iBGP de-preferring lowers LOCAL_PREF instead of prepending our own AS,
    /// which an internal peer would drop as a loop (RFC 4271 §9.1.2).
    pub deprefer_local_pref: Option<u32>,
    /// Prepends of our ASN in the normal state.
    pub as_path_prepend: u8,
    /// Down behaviour.
    pub on_down: OnDown,
    /// Extra prepends when de-preferred.
    pub deprefer_prepend: u8,
    /// Community added when de-preferred.
    pub deprefer_communities: Vec<Community>,
    /// Drain file: present means drain.
    pub drain_file: Option<PathBuf>,
    /// `disabled = true`: configured but administratively shut down (never announced).
    /// The config guard counts such a site as not announcing the service.
    pub disabled: bool,
    /// How long to keep the GRACEFUL_SHUTDOWN announcement before withdrawing.
    pub drain_time: Duration,
    /// Minimum time between a withdrawal and the next announcement.
    pub hold_down: Duration,
    /// Check combination.
    pub combine: Combine,
    /// Checks.
    pub checks: Vec<CheckConfig>,
    /// Addresses added to a local interface while the service is announced.
    pub local_addresses: Option<LocalAddresses>,
    /// State-change hook.
    pub hook: Option<HookConfig>,
}

/// `local_addresses` and `local_interface` of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAddresses {
    /// Interface name (`lo` by default).
    pub interface: String,
    /// Host addresses, each inside one of the service's prefixes.
    pub addresses: Vec<IpAddr>,
}

/// TLS settings of an `https://` check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTls {
    /// Trust only the certificates of this PEM file instead of the system store.
    pub ca_file: Option<PathBuf>,
    /// Name to verify (and send as SNI) instead of the URL's host.
    pub server_name: Option<String>,
    /// `false`: accept any certificate (self-signed local endpoints).
    pub verify: bool,
}

/// `hook` and `hook_timeout` of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookConfig {
    /// Program and arguments (no shell).
    pub argv: Vec<String>,
    /// Time limit of one run; the process group is killed then.
    pub timeout: Duration,
}

/// One `[[service.check]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckConfig {
    /// Name for status and logs (defaults to `<type>#<index>`).
    pub name: String,
    /// What to probe.
    pub kind: CheckKind,
    /// Normal interval.
    pub interval: Duration,
    /// Interval while between states (default `max(interval / 4, timeout)`, at most
    /// `interval`).
    pub fast_interval: Duration,
    /// Timeout for one probe.
    pub timeout: Duration,
    /// Consecutive passes to go up.
    pub rise: u32,
    /// Consecutive failures to go down.
    pub fall: u32,
}

/// The probe itself.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    /// HTTP GET.
    Http {
        /// URL (`http://` or `https://`).
        url: String,
        /// Accepted status codes, inclusive.
        status: (u16, u16),
        /// Substring the body must contain.
        body_contains: Option<String>,
        /// TLS settings; `Some` exactly for `https://` URLs.
        tls: Option<HttpTls>,
        /// `reuse_connection`: one connection kept between probes instead of a new one
        /// per probe.
        reuse_connection: bool,
    },
    /// TCP connect.
    Tcp {
        /// Target.
        address: SocketAddr,
    },
    /// Command; exit status 0 is up.
    Command {
        /// argv.
        argv: Vec<String>,
    },
    /// DNS query.
    Dns {
        /// Resolver.
        server: SocketAddr,
        /// Name to resolve (TOML key `query`), without the trailing dot.
        name: String,
        /// Record type, `"A"` or `"AAAA"` (upper case).
        record_type: String,
        /// Expected answers (any answer if empty).
        expect: Vec<IpAddr>,
    },
    /// Up while the file exists (or, with `invert`, while it does not).
    File {
        /// Path.
        path: PathBuf,
        /// Invert.
        invert: bool,
    },
}
