//! `TryFrom<Raw>`: from the file as written to the validated [`Config`].
//!
//! Every check pushes its error into a [`Ctx`] and carries on, so one run reports every
//! problem; the `Config` is only built when there were none. Defaults live in
//! [`super`] as constants with units and are applied here.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::error::{line_column, ConfigError, ConfigErrors};
use super::raw::{
    RawBfd, RawConfig, RawDuration, RawFleet, RawGracefulRestart, RawMaxPrefixes, RawPeer,
    RawReconnect, RawStatus,
};
use super::{
    BfdConfig, Config, FleetRef, GracefulRestartConfig, MaxPrefixes, PeerConfig, PeerMode,
    Reconnect, ServiceConfig, StatusConfig, DEFAULT_BFD_INTERVAL, DEFAULT_BFD_MULTIPLIER,
    DEFAULT_CONNECT_RETRY, DEFAULT_GR_RESTART_TIME, DEFAULT_HOLD_TIME, DEFAULT_PEER_PORT,
    DEFAULT_RECONNECT, DEFAULT_STATUS_LISTEN, MAX_BFD_INTERVAL, MAX_RECONNECT, MIN_BFD_INTERVAL,
    MIN_RECONNECT,
};

/// A raw configuration with what validation needs to report and resolve: the text (for
/// line numbers), the name of the source and the directory relative paths start from.
#[derive(Debug)]
pub struct SourcedRaw<'a> {
    /// The parsed file.
    pub raw: RawConfig,
    /// Its text.
    pub text: &'a str,
    /// Its name in messages.
    pub source: &'a str,
    /// Base for relative paths (the file's directory).
    pub base_dir: PathBuf,
}

impl TryFrom<SourcedRaw<'_>> for Config {
    type Error = ConfigErrors;

    fn try_from(s: SourcedRaw<'_>) -> Result<Config, ConfigErrors> {
        let mut ctx = Ctx {
            text: s.text,
            line_starts: line_starts(s.text),
            source: s.source,
            base_dir: s.base_dir,
            errors: Vec::new(),
        };
        let config = validate(s.raw, &mut ctx);
        match config {
            Some(c) if ctx.errors.is_empty() => Ok(c),
            _ => {
                ctx.errors.sort_by_key(|(offset, _)| *offset);
                Err(ConfigErrors {
                    errors: ctx.errors.into_iter().map(|(_, e)| e).collect(),
                })
            }
        }
    }
}

/// Offsets where each line starts: 0, then one past every newline.
fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

/// Collects errors with their positions.
pub(crate) struct Ctx<'a> {
    text: &'a str,
    /// Byte offset of every line's start, built once: [`Ctx::line_of`] runs for every
    /// name and peer address (thousands with a thousand services), and counting the
    /// newlines before each from the top made a reload of 1,000 services spend ~0.3 s
    /// of CPU here (issue 15's scale bench).
    line_starts: Vec<usize>,
    source: &'a str,
    base_dir: PathBuf,
    errors: Vec<(usize, ConfigError)>,
}

impl Ctx<'_> {
    pub(crate) fn err(&mut self, span: Range<usize>, key: &str, message: impl Into<String>) {
        let (line, column) = line_column(self.text, span.start);
        self.errors.push((
            span.start,
            ConfigError {
                file: self.source.to_owned(),
                line,
                column,
                key: key.to_owned(),
                message: message.into(),
            },
        ));
    }

    /// 1-based line of the span's start (as [`line_column`] counts it).
    pub(crate) fn line_of(&self, span: &Range<usize>) -> usize {
        self.line_starts
            .partition_point(|&start| start <= span.start)
            .max(1)
    }

    /// A required value, or an error at the enclosing table.
    pub(crate) fn required<'v, T>(
        &mut self,
        value: &'v Option<Spanned<T>>,
        table: &Range<usize>,
        table_key: &str,
        name: &str,
    ) -> Option<&'v Spanned<T>> {
        if value.is_none() {
            let key = if table_key.is_empty() {
                name.to_owned()
            } else {
                format!("{table_key}.{name}")
            };
            self.err(
                table.clone(),
                &key,
                format!("missing required key `{name}`"),
            );
        }
        value.as_ref()
    }

    pub(crate) fn duration(&mut self, v: &Spanned<RawDuration>, key: &str) -> Option<Duration> {
        let d = match v.get_ref() {
            RawDuration::Text(s) => match humantime::parse_duration(s.trim()) {
                Ok(d) => Some(d),
                Err(e) => {
                    self.err(v.span(), key, format!("invalid duration \"{s}\": {e}"));
                    None
                }
            },
            RawDuration::Seconds(n) => match u64::try_from(*n) {
                Ok(n) => Some(Duration::from_secs(n)),
                Err(_) => {
                    self.err(v.span(), key, "must not be negative");
                    None
                }
            },
        }?;
        if d > super::MAX_DURATION {
            let msg = format!("must be at most {}", fmt_duration(super::MAX_DURATION));
            self.err(v.span(), key, msg);
            return None;
        }
        Some(d)
    }

    /// An optional duration with a default and a lower bound.
    pub(crate) fn duration_or(
        &mut self,
        v: &Option<Spanned<RawDuration>>,
        key: &str,
        default: Duration,
        min: Duration,
    ) -> Option<Duration> {
        let Some(v) = v else { return Some(default) };
        let d = self.duration(v, key)?;
        if d < min {
            self.err(
                v.span(),
                key,
                format!("must be at least {}", fmt_duration(min)),
            );
            return None;
        }
        Some(d)
    }

    /// An integer in `min..=max`, converted.
    pub(crate) fn int<T: TryFrom<i64>>(
        &mut self,
        v: &Spanned<i64>,
        key: &str,
        min: i64,
        max: i64,
    ) -> Option<T> {
        let n = *v.get_ref();
        if n < min || n > max {
            self.err(
                v.span(),
                key,
                format!("must be between {min} and {max}, not {n}"),
            );
            return None;
        }
        match T::try_from(n) {
            Ok(t) => Some(t),
            Err(_) => {
                self.err(v.span(), key, format!("{n} is out of range"));
                None
            }
        }
    }

    pub(crate) fn ip(&mut self, v: &Spanned<String>, key: &str) -> Option<IpAddr> {
        match v.get_ref().trim().parse::<IpAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                let msg = format!("\"{}\" is not a valid IP address", v.get_ref());
                self.err(v.span(), key, msg);
                None
            }
        }
    }

    pub(crate) fn socket_addr(&mut self, v: &Spanned<String>, key: &str) -> Option<SocketAddr> {
        match v.get_ref().trim().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                let msg = format!(
                    "\"{}\" is not a valid socket address (\"ip:port\", \"[ipv6]:port\")",
                    v.get_ref()
                );
                self.err(v.span(), key, msg);
                None
            }
        }
    }

    /// A path, relative ones resolved against the config file's directory.
    pub(crate) fn path(&mut self, v: &Spanned<String>, key: &str) -> Option<PathBuf> {
        if v.get_ref().is_empty() {
            self.err(v.span(), key, "must not be empty");
            return None;
        }
        let p = Path::new(v.get_ref());
        Some(if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        })
    }

    /// A non-empty name, unique among `seen` (name → line of first use).
    pub(crate) fn unique_name(
        &mut self,
        v: &Spanned<String>,
        key: &str,
        what: &str,
        seen: &mut HashMap<String, usize>,
    ) -> Option<String> {
        let name = v.get_ref().trim();
        if name.is_empty() {
            self.err(v.span(), key, "must not be empty");
            return None;
        }
        if let Some(line) = seen.get(name) {
            self.err(
                v.span(),
                key,
                format!("duplicate {what} name \"{name}\" (first used on line {line})"),
            );
            return None;
        }
        seen.insert(name.to_owned(), self.line_of(&v.span()));
        Some(name.to_owned())
    }
}

/// Validates an optional value: `Some(None)` when absent, `None` when present but invalid
/// (the error is already reported), so later checks still run.
pub(crate) fn optional<'v, S, T>(
    value: Option<&'v S>,
    validate: impl FnOnce(&'v S) -> Option<T>,
) -> Option<Option<T>> {
    match value {
        None => Some(None),
        Some(v) => validate(v).map(Some),
    }
}

/// Formats a duration the way it is written in the file (`3s`, `500ms`).
pub(crate) fn fmt_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn validate(raw: RawConfig, ctx: &mut Ctx<'_>) -> Option<Config> {
    let whole = 0..0;
    let router_id = ctx
        .required(&raw.router_id, &whole, "", "router_id")
        .and_then(|v| router_id(ctx, v));
    let local_asn = ctx
        .required(&raw.local_asn, &whole, "", "local_asn")
        .and_then(|v| asn(ctx, v, "local_asn"));
    let status = status(ctx, raw.status.as_ref());
    let bgp_listen = raw
        .bgp
        .as_ref()
        .and_then(|b| b.get_ref().listen.as_ref())
        .map(|l| ctx.socket_addr(l, "bgp.listen"));
    let fleet = raw.fleet.as_ref().map(|f| fleet(ctx, f));
    let state_dir = raw.state_dir.as_ref().map(|d| ctx.path(d, "state_dir"));
    // Outer `None`: an error was reported; `Some(None)`: no listener configured.
    let bgp_listen: Option<Option<SocketAddr>> = match bgp_listen {
        None => Some(None),
        Some(parsed) => parsed.map(Some),
    };

    let mut service_names = HashMap::new();
    let mut prefix_owner = HashMap::new();
    let services: Vec<Option<ServiceConfig>> = raw
        .service
        .iter()
        .enumerate()
        .map(|(i, s)| {
            super::validate_service::service(ctx, i, s, &mut service_names, &mut prefix_owner)
        })
        .collect();
    let valid_services: Vec<&ServiceConfig> = services.iter().flatten().collect();

    let mut peer_names = HashMap::new();
    let mut peer_addrs = HashMap::new();
    let listener = matches!(bgp_listen, Some(Some(_)));
    let peers: Vec<Option<PeerConfig>> = raw
        .peer
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut seen = Seen {
                names: &mut peer_names,
                addrs: &mut peer_addrs,
            };
            peer(ctx, i, p, &valid_services, listener, &mut seen)
        })
        .collect();
    let valid_peers: Vec<&PeerConfig> = peers.iter().flatten().collect();
    families_have_peers(ctx, &raw, &services, &valid_peers);

    Some(Config {
        source: ctx.source.to_owned(),
        router_id: router_id?,
        local_asn: local_asn?,
        status: status?,
        bgp_listen: bgp_listen?,
        peers: peers.into_iter().collect::<Option<Vec<_>>>()?,
        services: services.into_iter().collect::<Option<Vec<_>>>()?,
        fleet: fleet.map_or(Some(None), |f| f.map(Some))?,
        state_dir: state_dir.map_or(Some(None), |d| d.map(Some))?,
    })
}

fn router_id(ctx: &mut Ctx<'_>, v: &Spanned<String>) -> Option<Ipv4Addr> {
    match v.get_ref().trim().parse::<Ipv4Addr>() {
        Ok(a) if a.is_unspecified() => {
            ctx.err(v.span(), "router_id", "must not be 0.0.0.0 (RFC 6286 §2.1)");
            None
        }
        Ok(a) => Some(a),
        Err(_) => {
            let msg = format!("\"{}\" is not a valid IPv4 address", v.get_ref());
            ctx.err(v.span(), "router_id", msg);
            None
        }
    }
}

/// AS_TRANS (RFC 6793 §9) may not be configured as a real ASN.
const AS_TRANS: i64 = 23456;

fn asn(ctx: &mut Ctx<'_>, v: &Spanned<i64>, key: &str) -> Option<u32> {
    let n = *v.get_ref();
    if n == 0 {
        ctx.err(v.span(), key, "must not be 0 (RFC 7607)");
        return None;
    }
    if n == AS_TRANS {
        ctx.err(
            v.span(),
            key,
            "23456 is AS_TRANS (RFC 6793), not a usable ASN",
        );
        return None;
    }
    ctx.int(v, key, 1, i64::from(u32::MAX))
}

fn status(ctx: &mut Ctx<'_>, raw: Option<&Spanned<RawStatus>>) -> Option<StatusConfig> {
    let Some(raw) = raw else {
        return Some(StatusConfig {
            listen: DEFAULT_STATUS_LISTEN,
            token_file: None,
            fleet_listen: None,
        });
    };
    let raw = raw.get_ref();
    let listen = match &raw.listen {
        Some(l) => ctx.socket_addr(l, "status.listen"),
        None => Some(DEFAULT_STATUS_LISTEN),
    };
    let token_file = optional(raw.token_file.as_ref(), |t| {
        ctx.path(t, "status.token_file")
    });
    let fleet_listen = optional(raw.fleet_listen.as_ref(), |l| {
        ctx.socket_addr(l, "status.fleet_listen")
    });
    Some(StatusConfig {
        listen: listen?,
        token_file: token_file?,
        fleet_listen: fleet_listen?,
    })
}

fn fleet(ctx: &mut Ctx<'_>, raw: &Spanned<RawFleet>) -> Option<FleetRef> {
    let span = raw.span();
    let f = raw.get_ref();
    let path = ctx
        .required(&f.path, &span, "fleet", "path")
        .and_then(|p| ctx.path(p, "fleet.path"));
    let site = ctx.required(&f.site, &span, "fleet", "site").and_then(|s| {
        let name = s.get_ref().trim();
        if name.is_empty() {
            ctx.err(s.span(), "fleet.site", "must not be empty");
            None
        } else {
            Some(name.to_owned())
        }
    });
    let hand_over =
        f.hand_over
            .as_ref()
            .map_or(Some(crate::guard::hand_over::DEFAULT_HAND_OVER), |v| {
                let d = ctx.duration(v, "fleet.hand_over")?;
                let max = crate::guard::hand_over::MAX_HAND_OVER;
                if d > max {
                    let msg = format!("must be at most {}", fmt_duration(max));
                    ctx.err(v.span(), "fleet.hand_over", msg);
                    return None;
                }
                Some(d)
            });
    Some(FleetRef {
        path: path?,
        site: site?,
        hand_over: hand_over?,
    })
}

struct Seen<'s> {
    names: &'s mut HashMap<String, usize>,
    addrs: &'s mut HashMap<(IpAddr, u16), usize>,
}

fn peer(
    ctx: &mut Ctx<'_>,
    i: usize,
    raw: &Spanned<RawPeer>,
    services: &[&ServiceConfig],
    listener: bool,
    seen: &mut Seen<'_>,
) -> Option<PeerConfig> {
    let k = format!("peer[{i}]");
    let key = |name: &str| format!("{k}.{name}");
    let span = raw.span();
    let p = raw.get_ref();

    let name = ctx
        .required(&p.name, &span, &k, "name")
        .and_then(|n| ctx.unique_name(n, &key("name"), "peer", seen.names));
    let address = ctx
        .required(&p.address, &span, &k, "address")
        .and_then(|a| ctx.ip(a, &key("address")));
    let port = match &p.port {
        Some(v) => ctx.int::<u16>(v, &key("port"), 1, 65535),
        None => Some(DEFAULT_PEER_PORT),
    };
    if let (Some(a), Some(port), Some(v)) = (address, port, &p.address) {
        if let Some(line) = seen.addrs.get(&(a, port)) {
            let msg = format!("another peer already uses {a} port {port} (line {line})");
            ctx.err(v.span(), &key("address"), msg);
        } else {
            seen.addrs.insert((a, port), ctx.line_of(&v.span()));
        }
    }
    let local_address = optional(p.local_address.as_ref(), |v| {
        let l = ctx.ip(v, &key("local_address"))?;
        match address {
            Some(a) if l.is_ipv4() != a.is_ipv4() => {
                let msg = format!("{l} is not of the same address family as {a}");
                ctx.err(v.span(), &key("local_address"), msg);
                None
            }
            _ => Some(l),
        }
    });
    let remote_asn = ctx
        .required(&p.remote_asn, &span, &k, "remote_asn")
        .and_then(|v| asn(ctx, v, &key("remote_asn")));
    let mode = match &p.mode {
        None => Some(PeerMode::Active),
        Some(m) => {
            let mode = match m.get_ref().as_str() {
                "active" => Some(PeerMode::Active),
                "passive" => Some(PeerMode::Passive),
                "both" => Some(PeerMode::Both),
                other => {
                    let msg =
                        format!("\"{other}\" is not one of \"active\", \"passive\", \"both\"");
                    ctx.err(m.span(), &key("mode"), msg);
                    None
                }
            };
            if mode.is_some_and(|m| m != PeerMode::Active) && !listener {
                let msg = format!(
                    "mode \"{}\" needs `[bgp] listen` to accept connections",
                    m.get_ref()
                );
                ctx.err(m.span(), &key("mode"), msg);
            }
            mode
        }
    };
    let hold_time = match &p.hold_time {
        None => Some(DEFAULT_HOLD_TIME),
        Some(v) => hold_time(ctx, v, &key("hold_time")),
    };
    let connect_retry = ctx.duration_or(
        &p.connect_retry,
        &key("connect_retry"),
        DEFAULT_CONNECT_RETRY,
        Duration::from_secs(1),
    );
    let md5_key = optional(p.md5_key_file.as_ref(), |v| {
        md5_key(ctx, v, &key("md5_key_file"))
    });
    let max_prefixes = optional(p.max_prefixes.as_ref(), |v| {
        max_prefixes(ctx, v, &key("max_prefixes"))
    });
    let graceful_restart = optional(p.graceful_restart.as_ref(), |v| {
        graceful_restart(ctx, v, &key("graceful_restart"))
    })
    .map(Option::flatten);
    let bfd = optional(p.bfd.as_ref(), |v| bfd(ctx, v, &key("bfd"))).map(Option::flatten);
    let reconnect = optional(p.reconnect.as_ref(), |v| {
        reconnect(ctx, v.get_ref(), &key("reconnect"), v.span())
    });
    let any_v4 = services
        .iter()
        .flat_map(|s| &s.prefixes)
        .any(|n| n.addr().is_ipv4());
    let any_v6 = services
        .iter()
        .flat_map(|s| &s.prefixes)
        .any(|n| n.addr().is_ipv6());
    // With no service at all, negotiate IPv4 so the session still comes up.
    let ipv4 = p.ipv4.as_ref().map_or(any_v4 || !any_v6, |v| *v.get_ref());
    let ipv6 = p.ipv6.as_ref().map_or(any_v6, |v| *v.get_ref());
    if !ipv4 && !ipv6 {
        ctx.err(
            span.clone(),
            &k,
            "at least one of `ipv4` and `ipv6` must be enabled",
        );
    }
    let next_hop_v4 = optional(p.next_hop_v4.as_ref(), |v| {
        match ctx.ip(v, &key("next_hop_v4"))? {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(a) => {
                let msg = format!("{a} is not an IPv4 address");
                ctx.err(v.span(), &key("next_hop_v4"), msg);
                None
            }
        }
    });
    let next_hop_v6 = optional(p.next_hop_v6.as_ref(), |v| {
        match ctx.ip(v, &key("next_hop_v6"))? {
            IpAddr::V6(a) => Some(a),
            IpAddr::V4(a) => {
                let msg = format!("{a} is not an IPv6 address");
                ctx.err(v.span(), &key("next_hop_v6"), msg);
                None
            }
        }
    });
    Some(PeerConfig {
        name: name?,
        address: address?,
        port: port?,
        local_address: local_address?,
        remote_asn: remote_asn?,
        mode: mode?,
        hold_time: hold_time?,
        connect_retry: connect_retry?,
        md5_key: md5_key?,
        ttl_security: p.ttl_security.unwrap_or(false),
        max_prefixes: max_prefixes?,
        graceful_restart: graceful_restart?,
        bfd: bfd?,
        ipv4,
        ipv6,
        next_hop_v4: next_hop_v4?,
        next_hop_v6: next_hop_v6?,
        reconnect: reconnect?,
    })
}

fn reconnect(
    ctx: &mut Ctx<'_>,
    t: &RawReconnect,
    key: &str,
    span: std::ops::Range<usize>,
) -> Option<Reconnect> {
    let min = ctx.duration_or(
        &t.min,
        &format!("{key}.min"),
        DEFAULT_RECONNECT.min,
        MIN_RECONNECT,
    )?;
    let max = ctx.duration_or(
        &t.max,
        &format!("{key}.max"),
        DEFAULT_RECONNECT.max,
        MIN_RECONNECT,
    )?;
    if max > MAX_RECONNECT {
        let at = t.max.as_ref().map_or(span.clone(), Spanned::span);
        ctx.err(at, &format!("{key}.max"), "must be at most 1h");
        return None;
    }
    if min > max {
        ctx.err(
            span,
            key,
            format!(
                "min {} is longer than max {}",
                fmt_duration(min),
                fmt_duration(max)
            ),
        );
        return None;
    }
    Some(Reconnect { min, max })
}

/// RFC 4271 §4.2: zero or at least three seconds, in a 16-bit field of seconds.
fn hold_time(ctx: &mut Ctx<'_>, v: &Spanned<RawDuration>, key: &str) -> Option<Duration> {
    let d = ctx.duration(v, key)?;
    if d.subsec_nanos() != 0 {
        ctx.err(v.span(), key, "must be a whole number of seconds");
        None
    } else if d != Duration::ZERO && d < Duration::from_secs(3) {
        ctx.err(v.span(), key, "must be 0 or at least 3s");
        None
    } else if d > Duration::from_secs(u64::from(u16::MAX)) {
        ctx.err(v.span(), key, "must be at most 65535s");
        None
    } else {
        Some(d)
    }
}

/// RFC 2385 keys are at most 80 bytes (the Linux `TCP_MD5SIG_MAXKEYLEN`).
const MD5_MAX_KEY_LEN: usize = 80;

/// Largest md5 key file read: the key plus generous room for line endings.
const MD5_MAX_FILE_LEN: u64 = 1024;

fn md5_key(ctx: &mut Ctx<'_>, v: &Spanned<String>, key: &str) -> Option<Vec<u8>> {
    let path = ctx.path(v, key)?;
    // A key file is tiny; refuse to read something else by mistake (e.g. a device or a log).
    if let Ok(meta) = std::fs::metadata(&path) {
        if meta.len() > MD5_MAX_FILE_LEN {
            let msg = format!(
                "{} is {} bytes, not a key file (a key is 1 to {MD5_MAX_KEY_LEN} bytes)",
                path.display(),
                meta.len()
            );
            ctx.err(v.span(), key, msg);
            return None;
        }
    }
    let mut bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            let msg = format!("cannot read md5 key file {}: {e}", path.display());
            ctx.err(v.span(), key, msg);
            return None;
        }
    };
    while matches!(bytes.last(), Some(b'\n' | b'\r')) {
        bytes.pop();
    }
    if bytes.is_empty() || bytes.len() > MD5_MAX_KEY_LEN {
        let msg = format!(
            "md5 key in {} must be 1 to {MD5_MAX_KEY_LEN} bytes, found {}",
            path.display(),
            bytes.len()
        );
        ctx.err(v.span(), key, msg);
        return None;
    }
    Some(bytes)
}

fn max_prefixes(ctx: &mut Ctx<'_>, v: &Spanned<RawMaxPrefixes>, key: &str) -> Option<MaxPrefixes> {
    match v.get_ref() {
        RawMaxPrefixes::Limit(n) => {
            let limit = ctx.int(&Spanned::new(v.span(), *n), key, 1, i64::MAX)?;
            Some(MaxPrefixes {
                limit,
                restart: None,
            })
        }
        RawMaxPrefixes::Table(t) => {
            let limit = ctx
                .required(&t.limit, &v.span(), key, "limit")
                .and_then(|l| ctx.int(l, &format!("{key}.limit"), 1, i64::MAX));
            let restart = match &t.restart {
                Some(r) => {
                    let k = format!("{key}.restart");
                    let d = ctx.duration(r, &k)?;
                    if d < Duration::from_secs(1) {
                        ctx.err(r.span(), &k, "must be at least 1s");
                        return None;
                    }
                    Some(d)
                }
                None => None,
            };
            Some(MaxPrefixes {
                limit: limit?,
                restart,
            })
        }
    }
}

/// RFC 4724 §3: Restart Time is a 12-bit number of seconds.
const GR_MAX_RESTART_TIME: Duration = Duration::from_secs(4095);

fn graceful_restart(
    ctx: &mut Ctx<'_>,
    v: &Spanned<RawGracefulRestart>,
    key: &str,
) -> Option<Option<GracefulRestartConfig>> {
    match v.get_ref() {
        RawGracefulRestart::Enabled(false) => Some(None),
        RawGracefulRestart::Enabled(true) => Some(Some(GracefulRestartConfig {
            restart_time: DEFAULT_GR_RESTART_TIME,
        })),
        RawGracefulRestart::Table(t) => {
            let Some(r) = &t.restart_time else {
                return Some(Some(GracefulRestartConfig {
                    restart_time: DEFAULT_GR_RESTART_TIME,
                }));
            };
            let k = format!("{key}.restart_time");
            let d = ctx.duration(r, &k)?;
            if d.subsec_nanos() != 0 || d < Duration::from_secs(1) || d > GR_MAX_RESTART_TIME {
                ctx.err(
                    r.span(),
                    &k,
                    "must be a whole number of seconds from 1s to 4095s",
                );
                return None;
            }
            Some(Some(GracefulRestartConfig { restart_time: d }))
        }
    }
}

fn bfd(ctx: &mut Ctx<'_>, v: &Spanned<RawBfd>, key: &str) -> Option<Option<BfdConfig>> {
    let t = match v.get_ref() {
        RawBfd::Enabled(false) => return Some(None),
        RawBfd::Enabled(true) => return Some(Some(BfdConfig::default())),
        RawBfd::Table(t) => t,
    };
    let interval = |ctx: &mut Ctx<'_>, r: &Option<Spanned<RawDuration>>, name: &str| {
        let Some(r) = r else {
            return Some(DEFAULT_BFD_INTERVAL);
        };
        let k = format!("{key}.{name}");
        let d = ctx.duration(r, &k)?;
        if !(MIN_BFD_INTERVAL..=MAX_BFD_INTERVAL).contains(&d) {
            ctx.err(r.span(), &k, "must be from 10ms to 60s");
            return None;
        }
        Some(d)
    };
    let min_tx = interval(ctx, &t.min_tx, "min_tx");
    let min_rx = interval(ctx, &t.min_rx, "min_rx");
    let multiplier = match &t.multiplier {
        Some(m) => ctx.int::<u8>(m, &format!("{key}.multiplier"), 1, 255),
        None => Some(DEFAULT_BFD_MULTIPLIER),
    };
    Some(Some(BfdConfig {
        min_tx: min_tx?,
        min_rx: min_rx?,
        multiplier: multiplier?,
    }))
}

/// Every prefix needs at least one peer that negotiates its family.
fn families_have_peers(
    ctx: &mut Ctx<'_>,
    raw: &RawConfig,
    services: &[Option<ServiceConfig>],
    peers: &[&PeerConfig],
) {
    if peers.is_empty() || peers.len() != raw.peer.len() {
        // No peers (a check-only setup) or peers with errors already reported.
        return;
    }
    let v4 = peers.iter().any(|p| p.ipv4);
    let v6 = peers.iter().any(|p| p.ipv6);
    for (i, (s, svc)) in raw.service.iter().zip(services).enumerate() {
        let (Some(svc), Some(prefixes)) = (svc, &s.get_ref().prefixes) else {
            continue;
        };
        for (j, (text, net)) in prefixes.iter().zip(&svc.prefixes).enumerate() {
            let (ok, fam) = if net.addr().is_ipv4() {
                (v4, "ipv4")
            } else {
                (v6, "ipv6")
            };
            if !ok {
                let msg = format!(
                    "{net} needs a peer with {fam} enabled, and every peer has {fam} = false"
                );
                ctx.err(text.span(), &format!("service[{i}].prefixes[{j}]"), msg);
            }
        }
    }
}

#[cfg(test)]
mod line_tests {
    use super::*;

    #[test]
    fn line_of_counts_lines_as_line_column_does_at_every_offset() {
        let text = "a = 1\n\nbé = 2\n[[x]]\ny = \"z\"";
        let ctx = Ctx {
            text,
            line_starts: line_starts(text),
            source: "t.toml",
            base_dir: PathBuf::new(),
            errors: Vec::new(),
        };
        // Spans start on character boundaries (and may point past the end).
        let offsets = (0..=text.len() + 2).filter(|&o| o > text.len() || text.is_char_boundary(o));
        for offset in offsets {
            assert_eq!(
                ctx.line_of(&(offset..offset + 1)),
                line_column(text, offset).0,
                "offset {offset}"
            );
        }
    }
}
