//! Validation of a service's local actions: `local_addresses` / `local_interface` and
//! `hook` / `hook_timeout` (docs/config.md, "Local actions").

use ipnet::IpNet;

use super::raw::RawService;
use super::validate::Ctx;
use super::{
    HookConfig, LocalAddresses, DEFAULT_HOOK_TIMEOUT, DEFAULT_LOCAL_INTERFACE, MIN_CHECK_INTERVAL,
};

/// Longest interface name Linux accepts (IFNAMSIZ less the NUL).
const MAX_INTERFACE_NAME: usize = 15;

/// `local_addresses` / `local_interface`: `Some(None)` when not configured, `None` on error.
pub(crate) fn local_addresses(
    ctx: &mut Ctx<'_>,
    s: &RawService,
    k: &str,
    span: &std::ops::Range<usize>,
    prefixes: Option<&[IpNet]>,
) -> Option<Option<LocalAddresses>> {
    let key = |name: &str| format!("{k}.{name}");
    let Some(list) = &s.local_addresses else {
        if let Some(v) = &s.local_interface {
            ctx.err(
                v.span(),
                &key("local_interface"),
                "has no effect without `local_addresses`",
            );
            return None;
        }
        return Some(None);
    };
    let mut ok = true;
    let mut addresses = Vec::with_capacity(list.len());
    for (j, v) in list.iter().enumerate() {
        let key = format!("{k}.local_addresses[{j}]");
        let Some(a) = ctx.ip(v, &key) else {
            ok = false;
            continue;
        };
        // An address outside the announced prefixes would receive no anycast traffic:
        // almost certainly a typo, and one that would go unnoticed.
        if let Some(prefixes) = prefixes {
            if !prefixes.iter().any(|p| p.contains(&a)) {
                let shown: Vec<String> = prefixes.iter().map(ToString::to_string).collect();
                let msg = format!(
                    "{a} is not inside any of the service's prefixes ({})",
                    shown.join(", ")
                );
                ctx.err(v.span(), &key, msg);
                ok = false;
            }
        }
        if addresses.contains(&a) {
            ctx.err(v.span(), &key, format!("{a} is listed twice"));
            ok = false;
        }
        addresses.push(a);
    }
    if list.is_empty() {
        ctx.err(
            span.clone(),
            &key("local_addresses"),
            "must list at least one address (or leave the key out)",
        );
        ok = false;
    }
    let interface = match &s.local_interface {
        None => DEFAULT_LOCAL_INTERFACE.to_string(),
        Some(v) => {
            let name = v.get_ref();
            let valid = !name.is_empty()
                && name.len() <= MAX_INTERFACE_NAME
                && name
                    .chars()
                    .all(|c| c.is_ascii_graphic() && c != '/' && c != ':');
            if !valid {
                let msg = format!(
                    "\"{name}\" is not a valid interface name (1..={MAX_INTERFACE_NAME} \
                     printable characters, no '/' or ':')"
                );
                ctx.err(v.span(), &key("local_interface"), msg);
                ok = false;
            }
            name.clone()
        }
    };
    ok.then_some(Some(LocalAddresses {
        interface,
        addresses,
    }))
}

/// `hook` / `hook_timeout`: `Some(None)` when not configured, `None` on error.
pub(crate) fn hook(ctx: &mut Ctx<'_>, s: &RawService, k: &str) -> Option<Option<HookConfig>> {
    let key = |name: &str| format!("{k}.{name}");
    let Some(argv) = &s.hook else {
        if let Some(v) = &s.hook_timeout {
            ctx.err(
                v.span(),
                &key("hook_timeout"),
                "has no effect without `hook`",
            );
            return None;
        }
        return Some(None);
    };
    let timeout = ctx.duration_or(
        &s.hook_timeout,
        &key("hook_timeout"),
        DEFAULT_HOOK_TIMEOUT,
        MIN_CHECK_INTERVAL,
    );
    if argv.get_ref().first().is_none_or(|a| a.is_empty()) {
        ctx.err(
            argv.span(),
            &key("hook"),
            "must name a program (argv[0] is empty)",
        );
        return None;
    }
    Some(Some(HookConfig {
        argv: argv.get_ref().clone(),
        timeout: timeout?,
    }))
}
