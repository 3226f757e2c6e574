//! The configuration file as written: serde structs mirroring the TOML.
//!
//! These types are the user's reference for the file format: every field below is a TOML
//! key, and its `///` doc says what it means and what the default is. Every struct denies
//! unknown keys, so a typo is an error with its line, never a silently ignored setting.
//!
//! Values are kept close to the text ([`toml::Spanned`] strings and integers) so that the
//! validation step (`TryFrom`, in `validate.rs`) can report *every* problem with its file,
//! line, column and key path instead of stopping at the first one. Required keys are
//! `Option`s here for the same reason: a missing key is a validation error pointing at
//! its table.
//!
//! Durations are humantime strings (`"100ms"`, `"1s"`, `"1m 30s"`) or integers counting
//! seconds. Relative paths are relative to the directory of the config file.

use std::fmt;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Our BGP identifier, an IPv4 address (RFC 4271 §4.2), e.g. `"198.18.0.2"`. Required.
    pub router_id: Option<Spanned<String>>,
    /// Our AS number, 1..=4294967295 (4-octet ASNs allowed, RFC 6793; 23456 is reserved).
    /// Required.
    pub local_asn: Option<Spanned<i64>>,
    /// `[status]`: the status/metrics/control HTTP endpoint.
    pub status: Option<Spanned<RawStatus>>,
    /// `[bgp]`: daemon-wide BGP settings.
    pub bgp: Option<Spanned<RawBgp>>,
    /// `[fleet]`: the fleet description used by the all-sites guard.
    pub fleet: Option<Spanned<RawFleet>>,
    /// Directory of the state file (`state.json`: operator drains and the service
    /// addresses the daemon added, kept across restarts; `docs/guard.md`). Default:
    /// `$STATE_DIRECTORY` (systemd's `StateDirectory=`), else `/var/lib/anyguard`; the
    /// embedded default config (`anyguard run` without `--config`) keeps no state file.
    pub state_dir: Option<Spanned<String>>,
    /// `[[peer]]`: BGP neighbours, usually the site's edge routers.
    #[serde(default)]
    pub peer: Vec<Spanned<RawPeer>>,
    /// `[[service]]`: anycast services, each a set of prefixes announced while its health
    /// checks pass.
    #[serde(default)]
    pub service: Vec<Spanned<RawService>>,
}

/// `[status]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStatus {
    /// Listen address of the status endpoint, `"ip:port"`. Default `"127.0.0.1:9180"`.
    /// Keep it on loopback or a management network: it exposes the service state.
    pub listen: Option<Spanned<String>>,
    /// File holding the bearer token required by the control endpoints (drain, check now).
    /// Control endpoints are disabled when this is not set. Default: unset.
    pub token_file: Option<Spanned<String>>,
    /// Listen address of a second endpoint serving only the fleet report
    /// (`/fleet/report`) to the other sites' pollers, with its own connection slots and
    /// short deadlines, so slow clients of `listen` cannot starve the polls. Point the
    /// fleet file's `report_url` at it. Default: unset (the report is served on `listen`).
    pub fleet_listen: Option<Spanned<String>>,
}

/// `[bgp]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBgp {
    /// Address on which we accept BGP connections from `passive` and `both` peers, e.g.
    /// `"127.0.0.1:1179"` or `"[::]:179"`. Default: no listener (then every peer must be
    /// `active`). Port 179 needs root or `CAP_NET_BIND_SERVICE`.
    pub listen: Option<Spanned<String>>,
}

/// `[fleet]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFleet {
    /// Path of the fleet file shared by every site. Required in `[fleet]`.
    pub path: Option<Spanned<String>>,
    /// This site's name in the fleet file. Required in `[fleet]`.
    pub site: Option<Spanned<String>>,
    /// Make-before-break: another site counts toward `min_sites` for a withdrawal only
    /// once this site has seen it announcing the prefixes without a break for this long
    /// (its router must have passed the route on before ours leaves). `"0s"` turns it
    /// off; at most 30s. Default `"1s"`.
    pub hand_over: Option<Spanned<RawDuration>>,
}

/// One `[[peer]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPeer {
    /// Unique name used in logs, status and metrics. Required.
    pub name: Option<Spanned<String>>,
    /// The peer's IP address. Required.
    pub address: Option<Spanned<String>>,
    /// The peer's TCP port. Default 179.
    pub port: Option<Spanned<i64>>,
    /// Local address to bind outgoing connections to (same family as `address`). Default:
    /// chosen by the kernel.
    pub local_address: Option<Spanned<String>>,
    /// The peer's AS number (non-zero, 4-octet allowed). Equal to `local_asn` means iBGP.
    /// Required.
    pub remote_asn: Option<Spanned<i64>>,
    /// `"active"` (we connect), `"passive"` (we only accept, needs `[bgp] listen`) or
    /// `"both"` (collisions resolved per RFC 4271 §6.8). Default `"active"`.
    pub mode: Option<Spanned<String>>,
    /// Hold time we propose (RFC 4271 §4.2): `0` (no keepalives) or at least 3 s, at most
    /// 65535 s, whole seconds. Default 90 s. Operator advice: the hold timer is how long a
    /// dead site keeps attracting traffic; towards your own edge routers use a short one
    /// (e.g. `"9s"`) if you have no BFD.
    pub hold_time: Option<Spanned<RawDuration>>,
    /// Time between connection attempts for `active`/`both` peers (RFC 4271 §8.2.2),
    /// at least 1 s. Default 5 s (a short value: our peers are our own routers).
    pub connect_retry: Option<Spanned<RawDuration>>,
    /// File holding the TCP-MD5 key (RFC 2385), read at load; a trailing newline is
    /// ignored; 1 to 80 bytes. Default: no MD5.
    pub md5_key_file: Option<Spanned<String>>,
    /// GTSM (RFC 5082): send with TTL 255 and require at least 254. Default `false`.
    pub ttl_security: Option<bool>,
    /// Maximum number of prefixes the peer may send us before we close the session with
    /// Cease/1 (RFC 4486): an integer, or `{ limit = N, restart = "5m" }` to reconnect
    /// after a pause. Default: no limit.
    pub max_prefixes: Option<Spanned<RawMaxPrefixes>>,
    /// Graceful restart (RFC 4724) as a restarting speaker: `true`, or
    /// `{ restart_time = "10s" }` (at most 4095 s). Default off; when on, restart time
    /// defaults to 10 s: for anycast keep it short, a long one keeps a dead site
    /// attracting traffic.
    pub graceful_restart: Option<Spanned<RawGracefulRestart>>,
    /// BFD (RFC 5880, single hop RFC 5881) with the peer: `true` for the defaults, or
    /// `{ min_tx = "300ms", min_rx = "300ms", multiplier = 3 }`. When a BFD session that
    /// was Up goes Down, the BGP session is closed at once (Cease/BFD Down, RFC 9384) and
    /// reconnects as usual; a BFD session that never came up does not hold BGP back.
    /// Intervals from 10 ms to 60 s, multiplier 1 to 255; defaults 300 ms, 300 ms, 3.
    /// Default off.
    pub bfd: Option<Spanned<RawBfd>>,
    /// Reconnect back-off after a failure: `{ min = "1s", max = "60s" }`. The first
    /// reconnect waits `min`, every further failure doubles the wait up to `max`, and 5
    /// minutes Established reset it (RFC 4271 §8.1.1 DampPeerOscillations). Default 1 s
    /// and 60 s.
    pub reconnect: Option<Spanned<RawReconnect>>,
    /// Negotiate IPv4 unicast. Default: true if any service has an IPv4 prefix.
    pub ipv4: Option<Spanned<bool>>,
    /// Negotiate IPv6 unicast (RFC 4760). Default: true if any service has an IPv6 prefix.
    pub ipv6: Option<Spanned<bool>>,
    /// IPv4 next hop for services with `next_hop = "self"` on this session. Default: the
    /// session's local address; required when IPv4 routes go over an IPv6 session.
    pub next_hop_v4: Option<Spanned<String>>,
    /// IPv6 next hop for services with `next_hop = "self"` on this session. Default: the
    /// session's local address; required when IPv6 routes go over an IPv4 session.
    pub next_hop_v6: Option<Spanned<String>>,
}

/// One `[[service]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    /// Unique name used in logs, status, metrics and the control endpoints. Required.
    pub name: Option<Spanned<String>>,
    /// Prefixes announced while the service is healthy, canonical (no host bits), IPv4
    /// and/or IPv6. Required, at least one.
    pub prefixes: Option<Vec<Spanned<String>>>,
    /// `true`: configured but administratively shut down, never announced (the all-sites
    /// guard counts the site as not announcing the service). Default `false`.
    pub disabled: Option<Spanned<bool>>,
    /// `"self"` (the session's local address or the peer's `next_hop_v4/v6`) or a fixed
    /// address of the same family as every prefix. Default `"self"`.
    pub next_hop: Option<Spanned<String>>,
    /// Communities (RFC 1997) on every announcement, `"asn:value"` with 16-bit parts.
    /// Default none.
    pub communities: Option<Vec<Spanned<String>>>,
    /// Large communities (RFC 8092), `"global:local1:local2"` with 32-bit parts.
    /// Default none.
    pub large_communities: Option<Vec<Spanned<String>>>,
    /// MULTI_EXIT_DISC to send. Default: none.
    pub med: Option<Spanned<i64>>,
    /// LOCAL_PREF to send to internal (iBGP) peers. Default 100.
    pub local_pref: Option<Spanned<i64>>,
    /// Extra copies of our ASN prepended in the normal state, 0..=10. Default 0.
    pub as_path_prepend: Option<Spanned<i64>>,
    /// What to do when the checks fail: `"withdraw"` the prefixes, or `"deprefer"`: keep
    /// announcing them with `deprefer_prepend` extra prepends and `deprefer_communities`,
    /// so that traffic moves elsewhere but still has a path here. Default `"withdraw"`.
    pub on_down: Option<Spanned<String>>,
    /// Extra prepends while de-preferred, 1..=10, on eBGP sessions. Default 3.
    pub deprefer_prepend: Option<Spanned<i64>>,
    /// LOCAL_PREF to internal peers while de-preferred; lower than `local_pref`.
    /// Default: half of `local_pref`.
    pub deprefer_local_pref: Option<Spanned<i64>>,
    /// Communities added while de-preferred. Default `["65535:0"]`, GRACEFUL_SHUTDOWN
    /// (RFC 8326), which routers commonly honour by setting LOCAL_PREF to 0.
    pub deprefer_communities: Option<Vec<Spanned<String>>>,
    /// Drain file: while it exists the service is drained (announced with
    /// GRACEFUL_SHUTDOWN, then withdrawn after `drain_time`), even while its checks pass;
    /// checks that fail during the drain withdraw it at once. Default: none.
    pub drain_file: Option<Spanned<String>>,
    /// How long a draining service stays announced with GRACEFUL_SHUTDOWN before it is
    /// withdrawn, so that routers move traffic before the route disappears. Default 5 s.
    pub drain_time: Option<Spanned<RawDuration>>,
    /// Minimum time between a withdrawal and the next announcement, against flapping
    /// (and route flap damping upstream). Default 1 s.
    pub hold_down: Option<Spanned<RawDuration>>,
    /// How the checks combine: `"all"` must be up, `"any"` one up, `{ at_least = N }`,
    /// or `{ at_least_percent = P }` (0 < P <= 100). Default `"all"`.
    pub combine: Option<Spanned<RawCombine>>,
    /// Service addresses (IPv4 and/or IPv6, each inside one of `prefixes`) added to
    /// `local_interface` before the service is first announced and removed only after its
    /// withdrawal has been sent to every established peer, so the host answers on them
    /// exactly while it attracts their traffic. Needs CAP_NET_ADMIN. Default none.
    pub local_addresses: Option<Vec<Spanned<String>>>,
    /// Interface for `local_addresses`. Default `"lo"`.
    pub local_interface: Option<Spanned<String>>,
    /// State-change hook: a program (argv list, no shell) run on every change of the
    /// service's state, with `SERVICE`, `STATE`, `PREVIOUS_STATE`, `REASON` and
    /// `PREFIXES` (space-separated) in its environment. Runs in order per service, killed
    /// with its process group after `hook_timeout`. Default none.
    pub hook: Option<Spanned<Vec<String>>>,
    /// Time limit of one hook run. Default 5 s.
    pub hook_timeout: Option<Spanned<RawDuration>>,
    /// `[[service.check]]`: the health checks. At least one is required: a service without
    /// checks would be announced unconditionally.
    #[serde(default)]
    pub check: Vec<Spanned<RawCheck>>,
}

/// One `[[service.check]]`. Keys other than the common ones are only valid for their
/// `type`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    /// `"http"`, `"tcp"`, `"command"`, `"dns"` or `"file"`. Required.
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
    /// Name, unique in the service. Default `"<type>#<index>"`, e.g. `"http#0"`.
    pub name: Option<Spanned<String>>,
    /// Time between probes when the check is stable. Default 1 s.
    pub interval: Option<Spanned<RawDuration>>,
    /// Time between probes while the check is changing state (rise/fall counting in
    /// progress, or still unknown at start). At most `interval`. Default
    /// `max(interval / 4, timeout)`, capped at `interval`.
    pub fast_interval: Option<Spanned<RawDuration>>,
    /// A probe that has not answered after this long has failed. Must be less than
    /// `interval`. Default: half the interval.
    pub timeout: Option<Spanned<RawDuration>>,
    /// Consecutive passes before the check goes up (from unknown or down), 1..=1000.
    /// Default 2.
    pub rise: Option<Spanned<i64>>,
    /// Consecutive failures before the check goes down, 1..=1000. Default 2.
    pub fall: Option<Spanned<i64>>,
    /// http: the URL, `http://host:port/path` or `https://host:port/path`.
    pub url: Option<Spanned<String>>,
    /// http: accepted status codes, a code (`200`) or an inclusive range (`[200, 399]`).
    /// Default `[200, 299]`.
    pub status: Option<Spanned<RawStatusRange>>,
    /// http: a substring the body must contain (only the first 64 KiB are read).
    pub body_contains: Option<Spanned<String>>,
    /// https: PEM file of the CA certificates to trust instead of the system store.
    pub ca_file: Option<Spanned<String>>,
    /// https: the name to verify in the certificate (and send as SNI) instead of the
    /// URL's host, e.g. when the URL names an address.
    pub tls_server_name: Option<Spanned<String>>,
    /// https: `false` accepts any certificate (self-signed local endpoints). Default true.
    pub tls_verify: Option<Spanned<bool>>,
    /// http, https: `true` keeps one connection per check between probes (HTTP/1.1
    /// persistence, a TLS session too) instead of a new one per probe. Cheaper for the
    /// prober and the target, but a kept connection no longer proves that a new client
    /// can connect (nor, for https, that a new handshake and the certificate would pass).
    /// Default false.
    pub reuse_connection: Option<Spanned<bool>>,
    /// tcp: the address to connect to, `"ip:port"`.
    pub address: Option<Spanned<String>>,
    /// command: the argument vector, run without a shell; exit status 0 is up. The command
    /// runs in its own process group, which is killed at the timeout.
    pub argv: Option<Spanned<Vec<String>>>,
    /// dns: the resolver to query over UDP, `"ip"` (port 53) or `"ip:port"`.
    pub server: Option<Spanned<String>>,
    /// dns: the name to resolve.
    pub query: Option<Spanned<String>>,
    /// dns: `"A"` or `"AAAA"`. Default `"A"`.
    pub record_type: Option<Spanned<String>>,
    /// dns: addresses that must all be in the answer. Default: any non-empty answer.
    pub expect: Option<Vec<Spanned<String>>>,
    /// file: the path to test.
    pub path: Option<Spanned<String>>,
    /// file: `false` (default): up while the file exists; `true`: up while it does not
    /// (a maintenance file).
    pub invert: Option<Spanned<bool>>,
}

/// A duration: a humantime string (`"500ms"`, `"1m 30s"`) or an integer number of seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawDuration {
    /// As written, e.g. `"500ms"`.
    Text(String),
    /// Seconds.
    Seconds(i64),
}

/// `max_prefixes`: an integer or `{ limit, restart }`.
#[derive(Debug)]
pub enum RawMaxPrefixes {
    /// Just the limit.
    Limit(i64),
    /// The table form.
    Table(RawMaxPrefixesTable),
}

/// `max_prefixes = { limit = N, restart = "5m" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMaxPrefixesTable {
    /// Maximum number of prefixes, at least 1. Required.
    pub limit: Option<Spanned<i64>>,
    /// Reconnect after this long, at least 1 s. Default: stay down until an operator acts.
    pub restart: Option<Spanned<RawDuration>>,
}

/// `graceful_restart`: a boolean or `{ restart_time }`.
#[derive(Debug)]
pub enum RawGracefulRestart {
    /// `true` / `false`.
    Enabled(bool),
    /// The table form (enabled).
    Table(RawGracefulRestartTable),
}

/// `graceful_restart = { restart_time = "10s" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGracefulRestartTable {
    /// Restart Time advertised (RFC 4724 §3), 1..=4095 s. Default 10 s.
    pub restart_time: Option<Spanned<RawDuration>>,
}

/// `reconnect = { min = "1s", max = "60s" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReconnect {
    /// First wait after a failure.
    pub min: Option<Spanned<RawDuration>>,
    /// Cap of the doubling wait.
    pub max: Option<Spanned<RawDuration>>,
}

/// `bfd`: a boolean or a table.
#[derive(Debug)]
pub enum RawBfd {
    /// `true` / `false`.
    Enabled(bool),
    /// The table form (enabled).
    Table(RawBfdTable),
}

/// `bfd = { min_tx = "300ms", min_rx = "300ms", multiplier = 3 }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBfdTable {
    /// Desired Min TX Interval once Up (RFC 5880 §6.8.1; 1 s until then, §6.8.3). 300 ms.
    pub min_tx: Option<Spanned<RawDuration>>,
    /// Required Min RX Interval: the fastest we accept packets. 300 ms.
    pub min_rx: Option<Spanned<RawDuration>>,
    /// Detect Mult: packets missed before the peer declares us down. 3.
    pub multiplier: Option<Spanned<i64>>,
}

/// `combine`: a word or a table.
#[derive(Debug)]
pub enum RawCombine {
    /// `"all"` or `"any"`.
    Name(String),
    /// `{ at_least = N }` or `{ at_least_percent = P }`.
    Table(RawCombineTable),
}

/// `combine = { at_least = N }` or `combine = { at_least_percent = P }` (exactly one).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCombineTable {
    /// At least this many checks up, 1..=number of checks.
    pub at_least: Option<Spanned<i64>>,
    /// At least this percentage of checks up, 0 < P <= 100.
    pub at_least_percent: Option<Spanned<f64>>,
}

/// `status`: one code or an inclusive `[low, high]` range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawStatusRange {
    /// One code.
    Code(i64),
    /// `[low, high]` as written (validated to have two elements).
    Range(Vec<i64>),
}

/// Deserializes an integer or a map into one of two representations; the map side goes
/// through the table struct's own `Deserialize`, so its `deny_unknown_fields` still applies.
macro_rules! scalar_or_table {
    ($ty:ident, $expecting:literal, $table:ident => $table_variant:ident,
     $($method:ident($arg:ty) => $body:expr),+ $(,)?) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    $(
                        fn $method<E: de::Error>(self, v: $arg) -> Result<$ty, E> {
                            #[allow(clippy::redundant_closure_call)]
                            Ok(($body)(v))
                        }
                    )+
                    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<$ty, A::Error> {
                        $table::deserialize(de::value::MapAccessDeserializer::new(map))
                            .map($ty::$table_variant)
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}

scalar_or_table!(RawMaxPrefixes, "an integer or a table { limit, restart }",
    RawMaxPrefixesTable => Table,
    visit_i64(i64) => RawMaxPrefixes::Limit,
    visit_u64(u64) => |v: u64| RawMaxPrefixes::Limit(i64::try_from(v).unwrap_or(i64::MAX)),
);

scalar_or_table!(RawGracefulRestart, "a boolean or a table { restart_time }",
    RawGracefulRestartTable => Table,
    visit_bool(bool) => RawGracefulRestart::Enabled,
);

scalar_or_table!(RawBfd, "a boolean or a table { min_tx, min_rx, multiplier }",
    RawBfdTable => Table,
    visit_bool(bool) => RawBfd::Enabled,
);

scalar_or_table!(RawCombine,
    "\"all\", \"any\", { at_least = N } or { at_least_percent = P }",
    RawCombineTable => Table,
    visit_str(&str) => |v: &str| RawCombine::Name(v.to_owned()),
);

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"500ms\" or \"2s\", or an integer of seconds")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawDuration, E> {
                Ok(RawDuration::Text(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawDuration, E> {
                Ok(RawDuration::Seconds(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawDuration, E> {
                Ok(RawDuration::Seconds(i64::try_from(v).unwrap_or(i64::MAX)))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for RawStatusRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawStatusRange;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a status code or a [low, high] range")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawStatusRange, E> {
                Ok(RawStatusRange::Code(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawStatusRange, E> {
                Ok(RawStatusRange::Code(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawStatusRange, A::Error> {
                let mut codes = Vec::new();
                while let Some(code) = seq.next_element::<i64>()? {
                    codes.push(code);
                }
                Ok(RawStatusRange::Range(codes))
            }
        }
        d.deserialize_any(V)
    }
}
