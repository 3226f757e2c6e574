//! Test support: service configs for unit tests elsewhere, either built from TOML text
//! (every default exactly as the loader sets it) or as a plain value with the loader's
//! defaults that a test adjusts with struct-update syntax.

use ipnet::IpNet;

use super::{
    load_str, Combine, NextHop, OnDown, ServiceConfig, DEFAULT_DEPREFER_PREPEND,
    DEFAULT_DRAIN_TIME, DEFAULT_HOLD_DOWN,
};

/// Service `name` announcing `prefixes` with no checks, no communities, withdraw on
/// down and the loader's defaults for everything else.
pub(crate) fn service_config(name: &str, prefixes: &[&str]) -> ServiceConfig {
    ServiceConfig {
        name: name.into(),
        prefixes: prefixes
            .iter()
            .map(|p| p.parse::<IpNet>().unwrap_or_else(|e| panic!("{p}: {e}")))
            .collect(),
        next_hop: NextHop::SelfAddress,
        communities: Vec::new(),
        large_communities: Vec::new(),
        med: None,
        local_pref: None,
        as_path_prepend: 0,
        on_down: OnDown::Withdraw,
        deprefer_prepend: DEFAULT_DEPREFER_PREPEND,
        deprefer_local_pref: None,
        deprefer_communities: Vec::new(),
        drain_file: None,
        disabled: false,
        local_addresses: None,
        hook: None,
        drain_time: DEFAULT_DRAIN_TIME,
        hold_down: DEFAULT_HOLD_DOWN,
        combine: Combine::All,
        checks: Vec::new(),
    }
}

/// Service `name` announcing 203.0.113.0/24 and 2001:db8:100::/48 (one command check),
/// from a config with one IPv4 peer that has an IPv6 next hop.
pub(crate) fn dual_stack_service(name: &str) -> ServiceConfig {
    let text = format!(
        r#"router_id = "198.18.0.2"
local_asn = 65010
[[peer]]
name = "edge1"
address = "198.18.0.1"
remote_asn = 65000
next_hop_v6 = "2001:db8::2"
[[service]]
name = "{name}"
prefixes = ["203.0.113.0/24", "2001:db8:100::/48"]
[[service.check]]
type = "command"
argv = ["true"]
"#
    );
    load_str(&text, "t.toml")
        .unwrap_or_else(|e| panic!("{e}"))
        .services
        .remove(0)
}
