//! Config tests for the per-service local actions: `local_addresses` and `hook`.

use std::net::IpAddr;
use std::time::Duration;

use super::tests::{errors, insert, ok};
use super::*;

/// BASE with `lines` added to its service, after `prefixes` (line 9): they are lines 10…
fn service_with(lines: &[&str]) -> String {
    insert(9, &lines.join("\n"))
}

#[test]
fn local_addresses_default_to_the_loopback_interface() {
    let c = ok(&service_with(&[r#"local_addresses = ["203.0.113.10"]"#]));
    assert_eq!(
        c.services[0].local_addresses,
        Some(LocalAddresses {
            interface: "lo".into(),
            addresses: vec!["203.0.113.10".parse::<IpAddr>().unwrap()],
        })
    );
    assert_eq!(ok(super::tests::BASE).services[0].local_addresses, None);
}

#[test]
fn local_address_outside_the_service_prefixes_is_rejected() {
    let e = errors(&service_with(&[
        r#"local_addresses = ["203.0.113.10", "198.51.100.1"]"#,
    ]));
    assert_eq!(
        e,
        vec![
            "t.toml:10:36: service[0].local_addresses[1]: 198.51.100.1 is not inside any of the \
             service's prefixes (203.0.113.0/24)"
        ]
    );
}

#[test]
fn local_addresses_must_be_addresses_listed_once_on_a_valid_interface() {
    let e = errors(&service_with(&[
        r#"local_addresses = ["203.0.113.10/32", "203.0.113.11", "203.0.113.11"]"#,
        r#"local_interface = "lo/0""#,
    ]));
    assert_eq!(
        e,
        vec![
            "t.toml:10:20: service[0].local_addresses[0]: \"203.0.113.10/32\" is not a valid IP \
             address",
            "t.toml:10:55: service[0].local_addresses[2]: 203.0.113.11 is listed twice",
            "t.toml:11:19: service[0].local_interface: \"lo/0\" is not a valid interface name \
             (1..=15 printable characters, no '/' or ':')",
        ]
    );
}

#[test]
fn local_interface_alone_is_rejected() {
    let e = errors(&service_with(&[r#"local_interface = "dummy0""#]));
    assert_eq!(
        e,
        vec!["t.toml:10:19: service[0].local_interface: has no effect without `local_addresses`"]
    );
}

#[test]
fn hook_gets_a_default_timeout() {
    let c = ok(&service_with(&[
        r#"hook = ["/usr/local/bin/notify", "--quiet"]"#,
    ]));
    assert_eq!(
        c.services[0].hook,
        Some(HookConfig {
            argv: vec!["/usr/local/bin/notify".into(), "--quiet".into()],
            timeout: Duration::from_secs(5),
        })
    );
}

#[test]
fn hook_needs_a_program_and_its_timeout_needs_a_hook() {
    assert_eq!(
        errors(&service_with(&[r#"hook = []"#, r#"hook_timeout = "1s""#])),
        vec!["t.toml:10:8: service[0].hook: must name a program (argv[0] is empty)"]
    );
    assert_eq!(
        errors(&service_with(&[r#"hook_timeout = "1s""#])),
        vec!["t.toml:10:16: service[0].hook_timeout: has no effect without `hook`"]
    );
}
