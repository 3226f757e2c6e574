//! Test support: validated configs built from TOML text, so unit tests elsewhere get a
//! `ServiceConfig` with every default exactly as the loader sets it.

use super::{load_str, ServiceConfig};

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
