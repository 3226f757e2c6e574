//! Validation of `[[service]]` and `[[service.check]]`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyguard_proto::{Community, LargeCommunity};
use ipnet::IpNet;
use toml::Spanned;

use super::raw::{RawCheck, RawCombine, RawService, RawStatusRange};
use super::validate::{fmt_duration, optional, Ctx};
use super::validate_local::{hook, local_addresses};
use super::{
    CheckConfig, CheckKind, Combine, HttpTls, NextHop, OnDown, ServiceConfig,
    DEFAULT_CHECK_INTERVAL, DEFAULT_DEPREFER_PREPEND, DEFAULT_DRAIN_TIME, DEFAULT_FALL,
    DEFAULT_HOLD_DOWN, DEFAULT_HTTP_STATUS, DEFAULT_LOCAL_PREF, DEFAULT_RISE, MIN_CHECK_INTERVAL,
};

/// More prepends than this are commonly filtered by upstreams.
const MAX_PREPEND: i64 = 10;

/// Upper bound for rise and fall.
const MAX_RISE_FALL: i64 = 1000;

pub(crate) fn service(
    ctx: &mut Ctx<'_>,
    i: usize,
    raw: &Spanned<RawService>,
    names: &mut HashMap<String, usize>,
    prefix_owner: &mut HashMap<IpNet, String>,
) -> Option<ServiceConfig> {
    let k = format!("service[{i}]");
    let key = |name: &str| format!("{k}.{name}");
    let span = raw.span();
    let s = raw.get_ref();

    let name = ctx
        .required(&s.name, &span, &k, "name")
        .and_then(|n| ctx.unique_name(n, &key("name"), "service", names));
    let prefixes = match &s.prefixes {
        None => {
            ctx.err(
                span.clone(),
                &key("prefixes"),
                "missing required key `prefixes`",
            );
            None
        }
        Some(list) if list.is_empty() => {
            ctx.err(
                span.clone(),
                &key("prefixes"),
                "must list at least one prefix",
            );
            None
        }
        Some(list) => {
            let owner = name.clone().unwrap_or_else(|| k.clone());
            let parsed: Vec<Option<IpNet>> = list
                .iter()
                .enumerate()
                .map(|(j, p)| prefix(ctx, p, &format!("{k}.prefixes[{j}]"), &owner, prefix_owner))
                .collect();
            parsed.into_iter().collect::<Option<Vec<_>>>()
        }
    };
    let next_hop = match &s.next_hop {
        None => Some(NextHop::SelfAddress),
        Some(v) if v.get_ref() == "self" => Some(NextHop::SelfAddress),
        Some(v) => ctx.ip(v, &key("next_hop")).and_then(|a| {
            let mismatch = prefixes
                .iter()
                .flatten()
                .find(|n| n.addr().is_ipv4() != a.is_ipv4());
            if let Some(n) = mismatch {
                let msg = format!(
                    "{a} cannot be the next hop of {n} (different address family); use \"self\""
                );
                ctx.err(v.span(), &key("next_hop"), msg);
                None
            } else {
                Some(NextHop::Address(a))
            }
        }),
    };
    let communities = list(ctx, &s.communities, &key("communities"), community);
    let large_communities = list(ctx, &s.large_communities, &key("large_communities"), large);
    let med = optional(s.med.as_ref(), |v| {
        ctx.int::<u32>(v, &key("med"), 0, i64::from(u32::MAX))
    });
    let local_pref = optional(s.local_pref.as_ref(), |v| {
        ctx.int::<u32>(v, &key("local_pref"), 0, i64::from(u32::MAX))
    });
    let as_path_prepend = match &s.as_path_prepend {
        Some(v) => ctx.int::<u8>(v, &key("as_path_prepend"), 0, MAX_PREPEND),
        None => Some(0),
    };
    let on_down = match &s.on_down {
        None => Some(OnDown::Withdraw),
        Some(v) => match v.get_ref().as_str() {
            "withdraw" => Some(OnDown::Withdraw),
            "deprefer" => Some(OnDown::Deprefer),
            other => {
                let msg = format!("\"{other}\" is not one of \"withdraw\", \"deprefer\"");
                ctx.err(v.span(), &key("on_down"), msg);
                None
            }
        },
    };
    let deprefer_prepend = match &s.deprefer_prepend {
        Some(v) => ctx.int::<u8>(v, &key("deprefer_prepend"), 1, MAX_PREPEND),
        None => Some(DEFAULT_DEPREFER_PREPEND),
    };
    let deprefer_local_pref = optional(s.deprefer_local_pref.as_ref(), |v| {
        let lp = ctx.int::<u32>(v, &key("deprefer_local_pref"), 0, i64::from(u32::MAX))?;
        let normal = local_pref.flatten().unwrap_or(DEFAULT_LOCAL_PREF);
        if lp >= normal {
            ctx.err(
                v.span(),
                &key("deprefer_local_pref"),
                format!(
                    "{lp} is not lower than the normal LOCAL_PREF {normal} (`local_pref`): a \
                     de-preferred route must lose to the normal ones"
                ),
            );
            return None;
        }
        Some(lp)
    });
    let deprefer_communities = match &s.deprefer_communities {
        Some(_) => list(
            ctx,
            &s.deprefer_communities,
            &key("deprefer_communities"),
            community,
        ),
        None => Some(vec![Community::GRACEFUL_SHUTDOWN]),
    };
    let drain_file = optional(s.drain_file.as_ref(), |v| ctx.path(v, &key("drain_file")));
    let drain_time = ctx.duration_or(
        &s.drain_time,
        &key("drain_time"),
        DEFAULT_DRAIN_TIME,
        Duration::ZERO,
    );
    let hold_down = ctx.duration_or(
        &s.hold_down,
        &key("hold_down"),
        DEFAULT_HOLD_DOWN,
        Duration::ZERO,
    );

    let local_addresses = local_addresses(ctx, s, &k, &span, prefixes.as_deref());
    let hook = hook(ctx, s, &k);

    if s.check.is_empty() {
        ctx.err(
            span.clone(),
            &key("check"),
            "at least one [[service.check]] is required (a service without checks would be \
             announced unconditionally)",
        );
    }
    let mut check_names = HashMap::new();
    let checks: Vec<Option<CheckConfig>> = s
        .check
        .iter()
        .enumerate()
        .map(|(j, c)| check(ctx, &format!("{k}.check[{j}]"), j, c, &mut check_names))
        .collect();
    let combine = combine(ctx, s.combine.as_ref(), &key("combine"), s.check.len());

    Some(ServiceConfig {
        name: name?,
        prefixes: prefixes?,
        next_hop: next_hop?,
        communities: communities?,
        large_communities: large_communities?,
        med: med?,
        local_pref: local_pref?,
        as_path_prepend: as_path_prepend?,
        on_down: on_down?,
        deprefer_prepend: deprefer_prepend?,
        deprefer_local_pref: deprefer_local_pref?,
        deprefer_communities: deprefer_communities?,
        drain_file: drain_file?,
        drain_time: drain_time?,
        hold_down: hold_down?,
        combine: combine?,
        checks: checks.into_iter().collect::<Option<Vec<_>>>()?,
        disabled: s.disabled.as_ref().is_some_and(|d| *d.get_ref()),
        local_addresses: local_addresses?,
        hook: hook?,
    })
}

fn prefix(
    ctx: &mut Ctx<'_>,
    v: &Spanned<String>,
    key: &str,
    owner: &str,
    prefix_owner: &mut HashMap<IpNet, String>,
) -> Option<IpNet> {
    let text = v.get_ref().trim();
    let net: IpNet = match text.parse() {
        Ok(n) => n,
        Err(_) => {
            let msg = format!("\"{text}\" is not a prefix (expected e.g. \"203.0.113.0/24\")");
            ctx.err(v.span(), key, msg);
            return None;
        }
    };
    if net.trunc() != net {
        let msg = format!("{net} has host bits set; did you mean {}?", net.trunc());
        ctx.err(v.span(), key, msg);
        return None;
    }
    if let Some(other) = prefix_owner.get(&net) {
        let msg = format!("{net} is already listed by service \"{other}\"");
        ctx.err(v.span(), key, msg);
        return None;
    }
    prefix_owner.insert(net, owner.to_owned());
    Some(net)
}

/// Parses every element of an optional list; `None` if any failed.
fn list<T>(
    ctx: &mut Ctx<'_>,
    raw: &Option<Vec<Spanned<String>>>,
    key: &str,
    parse: fn(&str) -> Result<T, String>,
) -> Option<Vec<T>> {
    let Some(items) = raw else {
        return Some(Vec::new());
    };
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (j, item) in items.iter().enumerate() {
        match parse(item.get_ref().trim()) {
            Ok(v) => out.push(v),
            Err(msg) => {
                ctx.err(item.span(), &format!("{key}[{j}]"), msg);
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

fn community(text: &str) -> Result<Community, String> {
    let bad = || format!("\"{text}\" is not a community (\"asn:value\", both 0..=65535)");
    let (a, v) = text.split_once(':').ok_or_else(bad)?;
    let a: u16 = a.parse().map_err(|_| bad())?;
    let v: u16 = v.parse().map_err(|_| bad())?;
    Ok(Community::new(a, v))
}

fn large(text: &str) -> Result<LargeCommunity, String> {
    let bad =
        || format!("\"{text}\" is not a large community (\"global:local1:local2\", 32-bit parts)");
    let mut parts = text.split(':').map(|p| p.parse::<u32>().map_err(|_| bad()));
    let (Some(global), Some(local1), Some(local2), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    Ok(LargeCommunity {
        global: global?,
        local1: local1?,
        local2: local2?,
    })
}

fn combine(
    ctx: &mut Ctx<'_>,
    raw: Option<&Spanned<RawCombine>>,
    key: &str,
    checks: usize,
) -> Option<Combine> {
    let Some(raw) = raw else {
        return Some(Combine::All);
    };
    match raw.get_ref() {
        RawCombine::Name(n) if n == "all" => Some(Combine::All),
        RawCombine::Name(n) if n == "any" => Some(Combine::Any),
        RawCombine::Name(n) => {
            let msg = format!(
                "\"{n}\" is not one of \"all\", \"any\", {{ at_least = N }}, \
                 {{ at_least_percent = P }}"
            );
            ctx.err(raw.span(), key, msg);
            None
        }
        RawCombine::Table(t) => match (&t.at_least, &t.at_least_percent) {
            (Some(n), None) => {
                let max = i64::try_from(checks).unwrap_or(i64::MAX).max(1);
                ctx.int::<usize>(n, &format!("{key}.at_least"), 1, max)
                    .map(Combine::AtLeast)
            }
            (None, Some(p)) => {
                let pct = *p.get_ref();
                if pct > 0.0 && pct <= 100.0 {
                    Some(Combine::AtLeastPercent(pct))
                } else {
                    let k = format!("{key}.at_least_percent");
                    ctx.err(
                        p.span(),
                        &k,
                        format!("must be more than 0 and at most 100, not {pct}"),
                    );
                    None
                }
            }
            _ => {
                let msg = "needs exactly one of `at_least` and `at_least_percent`";
                ctx.err(raw.span(), key, msg);
                None
            }
        },
    }
}

/// Check types and the type-specific keys they accept.
const KINDS: &[(&str, &[&str])] = &[
    (
        "http",
        &[
            "url",
            "status",
            "body_contains",
            "ca_file",
            "tls_server_name",
            "tls_verify",
            "reuse_connection",
        ],
    ),
    ("tcp", &["address"]),
    ("command", &["argv"]),
    ("dns", &["server", "query", "record_type", "expect"]),
    ("file", &["path", "invert"]),
];

fn check(
    ctx: &mut Ctx<'_>,
    k: &str,
    index: usize,
    raw: &Spanned<RawCheck>,
    names: &mut HashMap<String, usize>,
) -> Option<CheckConfig> {
    let key = |name: &str| format!("{k}.{name}");
    let span = raw.span();
    let c = raw.get_ref();
    let kind_name = ctx.required(&c.kind, &span, k, "type")?;
    let Some((kind, allowed)) = KINDS.iter().find(|(n, _)| *n == kind_name.get_ref()) else {
        let msg = format!(
            "\"{}\" is not one of \"http\", \"tcp\", \"command\", \"dns\", \"file\"",
            kind_name.get_ref()
        );
        ctx.err(kind_name.span(), &key("type"), msg);
        return None;
    };
    let mut misplaced = false;
    for (field, span) in specific_fields(c, &span) {
        if !allowed.contains(&field) {
            ctx.err(
                span,
                &key(field),
                format!("`{field}` does not apply to a {kind} check"),
            );
            misplaced = true;
        }
    }

    let name = match &c.name {
        Some(n) => ctx.unique_name(n, &key("name"), "check", names),
        None => {
            let default = format!("{kind}#{index}");
            let n = Spanned::new(span.clone(), default);
            ctx.unique_name(&n, &key("name"), "check", names)
        }
    };
    let interval = ctx.duration_or(
        &c.interval,
        &key("interval"),
        DEFAULT_CHECK_INTERVAL,
        MIN_CHECK_INTERVAL,
    );
    let timeout = match (&c.timeout, interval) {
        (None, Some(i)) => Some(i / 2),
        (None, None) => None,
        (Some(t), interval) => ctx
            .duration(t, &key("timeout"))
            .and_then(|d| match interval {
                _ if d.is_zero() => {
                    ctx.err(t.span(), &key("timeout"), "must be more than 0");
                    None
                }
                Some(i) if d >= i => {
                    let msg = format!("must be less than interval ({})", fmt_duration(i));
                    ctx.err(t.span(), &key("timeout"), msg);
                    None
                }
                _ => Some(d),
            }),
    };
    let fast_interval = match (&c.fast_interval, interval, timeout) {
        (None, Some(i), Some(t)) => Some((i / 4).max(t).min(i)),
        (None, _, _) => None,
        (Some(f), interval, _) => {
            ctx.duration(f, &key("fast_interval"))
                .and_then(|d| match interval {
                    _ if d < MIN_CHECK_INTERVAL => {
                        let msg = format!("must be at least {}", fmt_duration(MIN_CHECK_INTERVAL));
                        ctx.err(f.span(), &key("fast_interval"), msg);
                        None
                    }
                    Some(i) if d > i => {
                        let msg = format!("must be at most interval ({})", fmt_duration(i));
                        ctx.err(f.span(), &key("fast_interval"), msg);
                        None
                    }
                    _ => Some(d),
                })
        }
    };
    let rise = match &c.rise {
        Some(v) => ctx.int::<u32>(v, &key("rise"), 1, MAX_RISE_FALL),
        None => Some(DEFAULT_RISE),
    };
    let fall = match &c.fall {
        Some(v) => ctx.int::<u32>(v, &key("fall"), 1, MAX_RISE_FALL),
        None => Some(DEFAULT_FALL),
    };
    let kind = check_kind(ctx, k, kind, &span, c);
    if misplaced {
        return None;
    }
    Some(CheckConfig {
        name: name?,
        kind: kind?,
        interval: interval?,
        fast_interval: fast_interval?,
        timeout: timeout?,
        rise: rise?,
        fall: fall?,
    })
}

/// The type-specific keys present in a check, with their spans.
fn specific_fields(
    c: &RawCheck,
    table: &std::ops::Range<usize>,
) -> Vec<(&'static str, std::ops::Range<usize>)> {
    fn s<T>(v: &Option<Spanned<T>>) -> Option<std::ops::Range<usize>> {
        v.as_ref().map(Spanned::span)
    }
    let first = |v: &Option<Vec<Spanned<String>>>| {
        v.as_ref()
            .map(|l| l.first().map_or(table.clone(), Spanned::span))
    };
    let present = [
        ("url", s(&c.url)),
        ("status", s(&c.status)),
        ("body_contains", s(&c.body_contains)),
        ("ca_file", s(&c.ca_file)),
        ("tls_server_name", s(&c.tls_server_name)),
        ("tls_verify", s(&c.tls_verify)),
        ("reuse_connection", s(&c.reuse_connection)),
        ("address", s(&c.address)),
        ("argv", s(&c.argv)),
        ("server", s(&c.server)),
        ("query", s(&c.query)),
        ("record_type", s(&c.record_type)),
        ("expect", first(&c.expect)),
        ("path", s(&c.path)),
        ("invert", s(&c.invert)),
    ];
    present
        .into_iter()
        .filter_map(|(name, span)| span.map(|s| (name, s)))
        .collect()
}

fn check_kind(
    ctx: &mut Ctx<'_>,
    k: &str,
    kind: &str,
    span: &std::ops::Range<usize>,
    c: &RawCheck,
) -> Option<CheckKind> {
    let key = |name: &str| format!("{k}.{name}");
    match kind {
        "http" => {
            let url = ctx.required(&c.url, span, k, "url").and_then(|u| {
                let https = http_url(ctx, u, &key("url"))?;
                Some((u, https))
            });
            let status = match &c.status {
                None => Some(DEFAULT_HTTP_STATUS),
                Some(v) => http_status(ctx, v, &key("status")),
            };
            let (url, https) = url?;
            let tls = http_tls(ctx, k, c, https);
            Some(CheckKind::Http {
                url: url.get_ref().trim().to_owned(),
                status: status?,
                body_contains: c.body_contains.as_ref().map(|b| b.get_ref().clone()),
                tls: tls?,
                reuse_connection: c.reuse_connection.as_ref().is_some_and(|r| *r.get_ref()),
            })
        }
        "tcp" => {
            let a = ctx.required(&c.address, span, k, "address")?;
            Some(CheckKind::Tcp {
                address: ctx.socket_addr(a, &key("address"))?,
            })
        }
        "command" => {
            let argv = ctx.required(&c.argv, span, k, "argv")?;
            if argv.get_ref().first().is_none_or(|a| a.is_empty()) {
                ctx.err(
                    argv.span(),
                    &key("argv"),
                    "must name a program (argv[0] is empty)",
                );
                return None;
            }
            Some(CheckKind::Command {
                argv: argv.get_ref().clone(),
            })
        }
        "dns" => dns(ctx, k, span, c),
        _ => {
            let p = ctx.required(&c.path, span, k, "path")?;
            Some(CheckKind::File {
                path: ctx.path(p, &key("path"))?,
                invert: c.invert.as_ref().is_some_and(|i| *i.get_ref()),
            })
        }
    }
}

/// `http://host[:port][/path]` or `https://…`; `Some(true)` for https.
pub(crate) fn http_url(ctx: &mut Ctx<'_>, v: &Spanned<String>, key: &str) -> Option<bool> {
    let text = v.get_ref().trim();
    let uri: hyper::Uri = match text.parse() {
        Ok(u) => u,
        Err(e) => {
            ctx.err(v.span(), key, format!("\"{text}\" is not a valid URL: {e}"));
            return None;
        }
    };
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => {
            ctx.err(
                v.span(),
                key,
                format!("\"{text}\" must be an http:// or https://host:port/path URL"),
            );
            return None;
        }
    };
    if uri.host().is_none_or(str::is_empty) {
        ctx.err(v.span(), key, format!("\"{text}\" has no host"));
        return None;
    }
    Some(https)
}

/// The TLS keys of an http check: `Some(None)` for http://, `None` on error. The CA file
/// is read now, so a missing or unreadable bundle is a config error, not a failing check.
fn http_tls(ctx: &mut Ctx<'_>, k: &str, c: &RawCheck, https: bool) -> Option<Option<HttpTls>> {
    let key = |name: &str| format!("{k}.{name}");
    if !https {
        let mut ok = true;
        let keys = [
            ("ca_file", c.ca_file.as_ref().map(Spanned::span)),
            (
                "tls_server_name",
                c.tls_server_name.as_ref().map(Spanned::span),
            ),
            ("tls_verify", c.tls_verify.as_ref().map(Spanned::span)),
        ];
        for (name, span) in keys {
            if let Some(span) = span {
                ctx.err(span, &key(name), "applies to https:// URLs only");
                ok = false;
            }
        }
        return ok.then_some(None);
    }
    let ca_file =
        match &c.ca_file {
            None => Some(None),
            Some(v) => ctx.path(v, &key("ca_file")).and_then(|p| {
                match crate::health::probe::tls::load_ca_file(&p) {
                    Ok(_) => Some(Some(p)),
                    Err(e) => {
                        ctx.err(v.span(), &key("ca_file"), e);
                        None
                    }
                }
            }),
        };
    let server_name = match &c.tls_server_name {
        None => Some(None),
        Some(v) => {
            let name = v.get_ref().trim();
            if rustls_pki_types::ServerName::try_from(name).is_ok() {
                Some(Some(name.to_owned()))
            } else {
                let msg = format!("\"{name}\" is not a DNS name or IP address");
                ctx.err(v.span(), &key("tls_server_name"), msg);
                None
            }
        }
    };
    let verify = c.tls_verify.as_ref().is_none_or(|v| *v.get_ref());
    if !verify && (c.ca_file.is_some() || c.tls_server_name.is_some()) {
        if let Some(v) = &c.tls_verify {
            ctx.err(
                v.span(),
                &key("tls_verify"),
                "false verifies nothing, so ca_file and tls_server_name would be ignored",
            );
            return None;
        }
    }
    Some(Some(HttpTls {
        ca_file: ca_file?,
        server_name: server_name?,
        verify,
    }))
}

fn http_status(ctx: &mut Ctx<'_>, v: &Spanned<RawStatusRange>, key: &str) -> Option<(u16, u16)> {
    let valid = |c: i64| (100..=599).contains(&c);
    let range = match v.get_ref() {
        RawStatusRange::Code(c) => (*c, *c),
        RawStatusRange::Range(r) if r.len() == 2 => (r[0], r[1]),
        RawStatusRange::Range(_) => {
            ctx.err(v.span(), key, "a range is written [low, high]");
            return None;
        }
    };
    if !valid(range.0) || !valid(range.1) || range.0 > range.1 {
        let msg = format!(
            "[{}, {}] is not a range of HTTP status codes (100..=599)",
            range.0, range.1
        );
        ctx.err(v.span(), key, msg);
        return None;
    }
    Some((u16::try_from(range.0).ok()?, u16::try_from(range.1).ok()?))
}

/// DNS port when `server` has none.
const DNS_PORT: u16 = 53;

fn dns(
    ctx: &mut Ctx<'_>,
    k: &str,
    span: &std::ops::Range<usize>,
    c: &RawCheck,
) -> Option<CheckKind> {
    let key = |name: &str| format!("{k}.{name}");
    let server = ctx.required(&c.server, span, k, "server").and_then(|s| {
        let text = s.get_ref().trim();
        match text.parse::<IpAddr>() {
            Ok(ip) => Some(SocketAddr::new(ip, DNS_PORT)),
            Err(_) => ctx.socket_addr(s, &key("server")),
        }
    });
    let name = ctx.required(&c.query, span, k, "query").and_then(|q| {
        let name = q.get_ref().trim().trim_end_matches('.');
        let ok = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if ok {
            Some(name.to_owned())
        } else {
            ctx.err(
                q.span(),
                &key("query"),
                format!("\"{}\" is not a valid DNS name", q.get_ref()),
            );
            None
        }
    });
    let record_type = match &c.record_type {
        None => Some("A".to_owned()),
        Some(r) => {
            let t = r.get_ref().to_ascii_uppercase();
            if t == "A" || t == "AAAA" {
                Some(t)
            } else {
                let msg = format!("\"{}\" is not one of \"A\", \"AAAA\"", r.get_ref());
                ctx.err(r.span(), &key("record_type"), msg);
                None
            }
        }
    };
    let mut expect = Vec::new();
    let mut expect_ok = true;
    for (j, e) in c.expect.iter().flatten().enumerate() {
        let ek = format!("{k}.expect[{j}]");
        match ctx.ip(e, &ek) {
            Some(ip) => {
                if let Some(t) = &record_type {
                    if ip.is_ipv4() != (t == "A") {
                        ctx.err(
                            e.span(),
                            &ek,
                            format!("{ip} cannot be in an answer of type {t}"),
                        );
                        expect_ok = false;
                    }
                }
                expect.push(ip);
            }
            None => expect_ok = false,
        }
    }
    if !expect_ok {
        return None;
    }
    Some(CheckKind::Dns {
        server: server?,
        name: name?,
        record_type: record_type?,
        expect,
    })
}
