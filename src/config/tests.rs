//! Config loading tests: one per validation rule, asserting the message with its line.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyguard_proto::Community;

use super::*;

/// A valid config; line numbers below refer to it.
pub(super) const BASE: &str = r#"router_id = "198.18.0.2"
local_asn = 65010
[[peer]]
name = "edge1"
address = "198.18.0.1"
remote_asn = 65000
[[service]]
name = "web"
prefixes = ["203.0.113.0/24"]
[[service.check]]
type = "command"
argv = ["true"]
"#;

pub(super) fn errors(text: &str) -> Vec<String> {
    match load_str(text, "t.toml") {
        Ok(c) => panic!("expected errors, got {c:?}"),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

pub(super) fn ok(text: &str) -> Config {
    match load_str(text, "t.toml") {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

/// BASE with `line` inserted after line `after` (1-based).
pub(super) fn insert(after: usize, line: &str) -> String {
    let mut lines: Vec<&str> = BASE.lines().collect();
    lines.insert(after, line);
    lines.join("\n") + "\n"
}

#[test]
fn base_config_is_valid_and_gets_every_default() {
    let c = ok(BASE);
    assert_eq!(c.source, "t.toml");
    assert_eq!(c.router_id, Ipv4Addr::new(198, 18, 0, 2));
    assert_eq!(c.local_asn, 65010);
    assert_eq!(c.status.listen, DEFAULT_STATUS_LISTEN);
    assert_eq!(c.status.token_file, None);
    assert_eq!(c.bgp_listen, None);
    assert_eq!(c.fleet, None);
    assert_eq!(c.state_dir, None, "the daemon's default directory");
    let p = &c.peers[0];
    assert_eq!(p.port, 179);
    assert_eq!(p.mode, PeerMode::Active);
    assert_eq!(p.hold_time, Duration::from_secs(90));
    assert_eq!(p.connect_retry, Duration::from_secs(5));
    assert_eq!(p.md5_key, None);
    assert!(!p.ttl_security);
    assert_eq!(p.max_prefixes, None);
    assert_eq!(p.graceful_restart, None);
    assert!(p.ipv4, "ipv4 defaults on: the service has an IPv4 prefix");
    assert!(!p.ipv6, "ipv6 defaults off: no service has an IPv6 prefix");
    let s = &c.services[0];
    assert_eq!(s.next_hop, NextHop::SelfAddress);
    assert_eq!(s.on_down, OnDown::Withdraw);
    assert_eq!(s.as_path_prepend, 0);
    assert_eq!(s.deprefer_prepend, 3);
    assert_eq!(s.deprefer_communities, vec![Community::GRACEFUL_SHUTDOWN]);
    assert_eq!(s.drain_time, Duration::from_secs(5));
    assert_eq!(s.hold_down, Duration::from_secs(1));
    assert_eq!(s.combine, Combine::All);
    let ch = &s.checks[0];
    assert_eq!(ch.name, "command#0");
    assert_eq!(ch.interval, Duration::from_secs(1));
    assert_eq!(ch.timeout, Duration::from_millis(500));
    assert_eq!(ch.fast_interval, Duration::from_millis(500));
    assert_eq!((ch.rise, ch.fall), (2, 2));
    assert_eq!(
        ch.kind,
        CheckKind::Command {
            argv: vec!["true".into()]
        }
    );
}

#[test]
fn fast_interval_defaults_to_a_quarter_of_the_interval_but_not_below_the_timeout() {
    let c = ok(&insert(12, "interval = \"4s\"\ntimeout = \"200ms\""));
    assert_eq!(
        c.services[0].checks[0].fast_interval,
        Duration::from_secs(1)
    );
    let c = ok(&insert(12, "interval = \"4s\"\ntimeout = \"3s\""));
    assert_eq!(
        c.services[0].checks[0].fast_interval,
        Duration::from_secs(3)
    );
}

#[test]
fn integer_durations_are_seconds() {
    let c = ok(&insert(6, "hold_time = 9\nconnect_retry = 2"));
    assert_eq!(c.peers[0].hold_time, Duration::from_secs(9));
    assert_eq!(c.peers[0].connect_retry, Duration::from_secs(2));
}

#[test]
fn hold_time_of_two_seconds_is_rejected_with_line_and_key() {
    let text = format!(
        "{BASE}[[peer]]\nname = \"edge2\"\naddress = \"198.18.0.3\"\nremote_asn = 65000\nhold_time = \"2s\"\n"
    );
    assert_eq!(
        errors(&text),
        ["t.toml:17:13: peer[1].hold_time: must be 0 or at least 3s"]
    );
}

#[test]
fn hold_time_zero_is_accepted_and_fractions_and_huge_values_are_not() {
    assert_eq!(
        ok(&insert(6, "hold_time = 0")).peers[0].hold_time,
        Duration::ZERO
    );
    assert_eq!(
        errors(&insert(6, "hold_time = \"3500ms\"")),
        ["t.toml:7:13: peer[0].hold_time: must be a whole number of seconds"]
    );
    assert_eq!(
        errors(&insert(6, "hold_time = 70000")),
        ["t.toml:7:13: peer[0].hold_time: must be at most 65535s"]
    );
}

#[test]
fn every_validation_error_is_reported_not_just_the_first() {
    let text = BASE
        .replace("198.18.0.2\"", "198.18.0.256\"")
        .replace("remote_asn = 65000", "remote_asn = 0")
        .replace("203.0.113.0/24", "203.0.113.1/24");
    assert_eq!(
        errors(&text),
        [
            "t.toml:1:13: router_id: \"198.18.0.256\" is not a valid IPv4 address",
            "t.toml:6:14: peer[0].remote_asn: must not be 0 (RFC 7607)",
            "t.toml:9:13: service[0].prefixes[0]: 203.0.113.1/24 has host bits set; did you mean \
             203.0.113.0/24?",
        ]
    );
}

#[test]
fn router_id_zero_is_rejected() {
    assert_eq!(
        errors(&BASE.replace("198.18.0.2\"", "0.0.0.0\"")),
        ["t.toml:1:13: router_id: must not be 0.0.0.0 (RFC 6286 §2.1)"]
    );
}

#[test]
fn local_asn_zero_as_trans_and_out_of_range_are_rejected() {
    let e = |asn: &str| errors(&BASE.replace("65010", asn));
    assert_eq!(e("0"), ["t.toml:2:13: local_asn: must not be 0 (RFC 7607)"]);
    assert_eq!(
        e("23456"),
        ["t.toml:2:13: local_asn: 23456 is AS_TRANS (RFC 6793), not a usable ASN"]
    );
    assert_eq!(
        e("4294967296"),
        ["t.toml:2:13: local_asn: must be between 1 and 4294967295, not 4294967296"]
    );
    assert_eq!(
        ok(&BASE.replace("65010", "4200000000")).local_asn,
        4_200_000_000
    );
}

#[test]
fn missing_required_keys_are_reported_at_their_table() {
    let text = BASE
        .replace("router_id = \"198.18.0.2\"\n", "")
        .replace("remote_asn = 65000\n", "");
    assert_eq!(
        errors(&text),
        [
            "t.toml:1:1: router_id: missing required key `router_id`",
            "t.toml:2:1: peer[0].remote_asn: missing required key `remote_asn`",
        ]
    );
}

#[test]
fn duplicate_peer_service_and_check_names_are_rejected() {
    let text = format!(
        "{BASE}[[service.check]]\nname = \"command#0\"\ntype = \"file\"\npath = \"/\"\n\
         [[peer]]\nname = \"edge1\"\naddress = \"198.18.0.3\"\nremote_asn = 65000\n\
         [[service]]\nname = \"web\"\nprefixes = [\"198.51.100.0/24\"]\n\
         [[service.check]]\ntype = \"file\"\npath = \"/\"\n"
    );
    assert_eq!(
        errors(&text),
        [
            "t.toml:14:8: service[0].check[1].name: duplicate check name \"command#0\" (first \
             used on line 10)",
            "t.toml:18:8: peer[1].name: duplicate peer name \"edge1\" (first used on line 4)",
            "t.toml:22:8: service[1].name: duplicate service name \"web\" (first used on line 8)",
        ]
    );
}

#[test]
fn duplicate_peer_address_and_prefix_are_rejected() {
    let text = format!(
        "{BASE}[[peer]]\nname = \"edge2\"\naddress = \"198.18.0.1\"\nremote_asn = 65000\n\
         [[service]]\nname = \"web2\"\nprefixes = [\"203.0.113.0/24\"]\n\
         [[service.check]]\ntype = \"file\"\npath = \"/\"\n"
    );
    assert_eq!(
        errors(&text),
        [
            "t.toml:15:11: peer[1].address: another peer already uses 198.18.0.1 port 179 (line 5)",
            "t.toml:19:13: service[1].prefixes[0]: 203.0.113.0/24 is already listed by service \
             \"web\"",
        ]
    );
}

#[test]
fn invalid_prefix_text_is_rejected() {
    assert_eq!(
        errors(&BASE.replace("203.0.113.0/24", "203.0.113.0/33")),
        [
            "t.toml:9:13: service[0].prefixes[0]: \"203.0.113.0/33\" is not a prefix (expected \
             e.g. \"203.0.113.0/24\")"
        ]
    );
}

#[test]
fn ipv6_prefix_needs_an_ipv6_capable_peer() {
    let text = insert(6, "ipv6 = false").replace(
        "[\"203.0.113.0/24\"]",
        "[\"203.0.113.0/24\", \"2001:db8:100::/48\"]",
    );
    assert_eq!(
        errors(&text),
        [
            "t.toml:10:31: service[0].prefixes[1]: 2001:db8:100::/48 needs a peer with ipv6 \
             enabled, and every peer has ipv6 = false"
        ]
    );
}

#[test]
fn ipv6_routes_over_an_ipv4_session_may_name_their_next_hop_or_leave_it_to_the_session() {
    let both = |text: &str| {
        text.replace(
            "[\"203.0.113.0/24\"]",
            "[\"203.0.113.0/24\", \"2001:db8:100::/48\"]",
        )
    };
    // Without next_hop_v6 the session takes an IPv6 address of its interface
    // (session/next_hop.rs), so the config is valid and negotiates both families.
    let c = ok(&both(BASE));
    assert!(c.peers[0].ipv4 && c.peers[0].ipv6);
    assert_eq!(c.peers[0].next_hop_v6, None);
    let c = ok(&both(&insert(6, "next_hop_v6 = \"2001:db8::2\"")));
    assert_eq!(
        c.peers[0].next_hop_v6,
        Some("2001:db8::2".parse().unwrap_or_else(|e| panic!("{e}")))
    );
}

#[test]
fn passive_peer_needs_a_bgp_listener() {
    assert_eq!(
        errors(&insert(6, "mode = \"passive\"")),
        ["t.toml:7:8: peer[0].mode: mode \"passive\" needs `[bgp] listen` to accept connections"]
    );
    let c = ok(&format!(
        "{}[bgp]\nlisten = \"127.0.0.1:1179\"\n",
        insert(6, "mode = \"both\"")
    ));
    assert_eq!(c.bgp_listen, Some(SocketAddr::from(([127, 0, 0, 1], 1179))));
    assert_eq!(c.peers[0].mode, PeerMode::Both);
}

#[test]
fn rise_and_fall_of_zero_are_rejected() {
    assert_eq!(
        errors(&insert(12, "rise = 0\nfall = 0")),
        [
            "t.toml:13:8: service[0].check[0].rise: must be between 1 and 1000, not 0",
            "t.toml:14:8: service[0].check[0].fall: must be between 1 and 1000, not 0",
        ]
    );
}

#[test]
fn timeout_must_be_less_than_interval() {
    assert_eq!(
        errors(&insert(12, "interval = \"1s\"\ntimeout = \"1s\"")),
        ["t.toml:14:11: service[0].check[0].timeout: must be less than interval (1s)"]
    );
}

#[test]
fn fast_interval_above_interval_is_rejected() {
    assert_eq!(
        errors(&insert(12, "fast_interval = \"2s\"")),
        ["t.toml:13:17: service[0].check[0].fast_interval: must be at most interval (1s)"]
    );
}

#[test]
fn durations_beyond_thirty_days_are_refused_where_they_would_overflow_a_deadline() {
    // Accepted before, then `Instant + duration` panicked at run time: in the check's
    // task (interval), or in the coordinator itself at the first drain (drain_time) or
    // withdrawal (hold_down), taking every session and route down with it.
    assert_eq!(
        errors(&insert(12, "interval = 9223372036854775807")),
        ["t.toml:13:12: service[0].check[0].interval: must be at most 30days"]
    );
    assert_eq!(
        errors(&insert(
            9,
            "drain_time = \"1000000000years\"\nhold_down = \"31days\""
        )),
        [
            "t.toml:10:14: service[0].drain_time: must be at most 30days",
            "t.toml:11:13: service[0].hold_down: must be at most 30days",
        ]
    );
    let c = ok(&insert(9, "drain_time = \"30days\""));
    assert_eq!(c.services[0].drain_time, Duration::from_secs(30 * 86_400));
}

#[test]
fn bad_duration_text_is_reported() {
    assert_eq!(
        errors(&insert(12, "interval = \"1 fortnight\"")),
        [
            "t.toml:13:12: service[0].check[0].interval: invalid duration \"1 fortnight\": \
             unknown time unit \"fortnight\", supported units: ns, us/µs, ms, sec, min, hours, \
             days, weeks, months, years (and few variations)"
        ]
    );
}

#[test]
fn command_argv_must_not_be_empty() {
    assert_eq!(
        errors(&BASE.replace("[\"true\"]", "[]")),
        ["t.toml:12:8: service[0].check[0].argv: must name a program (argv[0] is empty)"]
    );
}

/// BASE with its command check replaced by an http check of `url` and `extra` lines.
pub(super) fn http_check(url: &str, extra: &str) -> String {
    BASE.replace(
        "type = \"command\"\nargv = [\"true\"]",
        &format!("type = \"http\"\nurl = \"{url}\"{extra}"),
    )
}

#[test]
fn http_url_must_be_http_or_https_with_a_host() {
    let http = |url: &str| http_check(url, "");
    assert_eq!(
        errors(&http("127.0.0.1:8080")),
        [
            "t.toml:12:7: service[0].check[0].url: \"127.0.0.1:8080\" must be an http:// or \
          https://host:port/path URL"
        ]
    );
    let c = ok(&http("http://127.0.0.1:8080/healthz"));
    assert_eq!(
        c.services[0].checks[0].kind,
        CheckKind::Http {
            url: "http://127.0.0.1:8080/healthz".into(),
            status: (200, 299),
            body_contains: None,
            tls: None,
            reuse_connection: false,
        }
    );
}

#[test]
fn keys_of_another_check_type_are_rejected() {
    assert_eq!(
        errors(&insert(12, "url = \"http://127.0.0.1/\"")),
        ["t.toml:13:7: service[0].check[0].url: `url` does not apply to a command check"]
    );
}

#[test]
fn a_service_without_checks_is_rejected() {
    let text = BASE.replace(
        "[[service.check]]\ntype = \"command\"\nargv = [\"true\"]\n",
        "",
    );
    assert_eq!(
        errors(&text),
        [
            "t.toml:7:1: service[0].check: at least one [[service.check]] is required (a service \
             without checks would be announced unconditionally)"
        ]
    );
}

#[test]
fn combine_forms_are_parsed_and_bounded_by_the_number_of_checks() {
    let with = |c: &str| insert(9, &format!("combine = {c}"));
    assert_eq!(ok(&with("\"any\"")).services[0].combine, Combine::Any);
    assert_eq!(
        ok(&with("{ at_least = 1 }")).services[0].combine,
        Combine::AtLeast(1)
    );
    assert_eq!(
        ok(&with("{ at_least_percent = 50 }")).services[0].combine,
        Combine::AtLeastPercent(50.0)
    );
    assert_eq!(
        errors(&with("{ at_least = 2 }")),
        ["t.toml:10:24: service[0].combine.at_least: must be between 1 and 1, not 2"]
    );
    assert_eq!(
        errors(&with("\"most\"")),
        [
            "t.toml:10:11: service[0].combine: \"most\" is not one of \"all\", \"any\", { \
             at_least = N }, { at_least_percent = P }"
        ]
    );
}

#[test]
fn md5_key_file_is_read_trimmed_and_bounded() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let good = dir.path().join("good.key");
    let long = dir.path().join("long.key");
    std::fs::write(&good, "s3cret\r\n").unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&long, "x".repeat(81)).unwrap_or_else(|e| panic!("{e}"));
    let with = |p: &std::path::Path| insert(6, &format!("md5_key_file = \"{}\"", p.display()));
    assert_eq!(ok(&with(&good)).peers[0].md5_key, Some(b"s3cret".to_vec()));
    assert_eq!(
        errors(&with(&long)),
        [format!(
            "t.toml:7:16: peer[0].md5_key_file: md5 key in {} must be 1 to 80 bytes, found 81",
            long.display()
        )]
    );
    let huge = dir.path().join("huge.key");
    std::fs::write(&huge, "x".repeat(2000)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        errors(&with(&huge)),
        [format!(
            "t.toml:7:16: peer[0].md5_key_file: {} is 2000 bytes, not a key file (a key is 1 to \
             80 bytes)",
            huge.display()
        )]
    );
    let missing = dir.path().join("missing.key");
    let e = errors(&with(&missing));
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with(&format!(
            "t.toml:7:16: peer[0].md5_key_file: cannot read md5 key file {}: ",
            missing.display()
        )),
        "{e:?}"
    );
}

#[test]
fn dns_check_resolves_defaults_and_checks_expected_families() {
    let dns = |extra: &str| {
        BASE.replace(
            "type = \"command\"\nargv = [\"true\"]",
            &format!(
                "type = \"dns\"\nserver = \"127.0.0.1\"\nquery = \"health.example.test.\"{extra}"
            ),
        )
    };
    assert_eq!(
        ok(&dns("")).services[0].checks[0].kind,
        CheckKind::Dns {
            server: SocketAddr::from(([127, 0, 0, 1], 53)),
            name: "health.example.test".into(),
            record_type: "A".into(),
            expect: vec![]
        }
    );
    assert_eq!(
        errors(&dns("\nexpect = [\"2001:db8::53\"]")),
        ["t.toml:14:11: service[0].check[0].expect[0]: 2001:db8::53 cannot be in an answer of type A"]
    );
}

#[test]
fn communities_and_large_communities_are_parsed_with_per_element_errors() {
    let c = ok(&insert(
        9,
        "communities = [\"65010:100\"]\nlarge_communities = [\"65010:1:2\"]",
    ));
    assert_eq!(c.services[0].communities, vec![Community::new(65010, 100)]);
    assert_eq!(c.services[0].large_communities[0].local2, 2);
    assert_eq!(
        errors(&insert(9, "communities = [\"65010:100\", \"70000:1\"]")),
        [
            "t.toml:10:29: service[0].communities[1]: \"70000:1\" is not a community \
             (\"asn:value\", both 0..=65535)"
        ]
    );
}

#[test]
fn toml_syntax_errors_have_a_line() {
    let e = errors(&insert(6, "hold_time = = 3"));
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("t.toml:7:13: "), "{e:?}");
}

#[test]
fn type_errors_name_the_key_path_and_line() {
    assert_eq!(
        errors(&BASE.replace("remote_asn = 65000", "remote_asn = \"65000\"")),
        ["t.toml:6:14: peer[0].remote_asn: invalid type: string \"65000\", expected i64"]
    );
}

#[test]
fn unknown_keys_are_rejected_by_name_with_their_path() {
    assert_eq!(
        errors(&insert(6, "hold_tme = 3")),
        [
            "t.toml:7:1: peer[0].hold_tme: unknown field `hold_tme`, expected one of `name`, \
             `address`, `port`, `local_address`, `remote_asn`, `mode`, `hold_time`, \
             `connect_retry`, `md5_key_file`, `ttl_security`, `max_prefixes`, \
             `graceful_restart`, `bfd`, `reconnect`, `ipv4`, `ipv6`, `next_hop_v4`, `next_hop_v6`"
        ]
    );
}

#[test]
fn errors_display_one_per_line() {
    let text = BASE
        .replace("198.18.0.2\"", "x\"")
        .replace("remote_asn = 65000", "remote_asn = 0");
    let Err(e) = load_str(&text, "t.toml") else {
        panic!("expected errors")
    };
    assert_eq!(
        e.to_string(),
        "t.toml:1:13: router_id: \"x\" is not a valid IPv4 address\n\
         t.toml:6:14: peer[0].remote_asn: must not be 0 (RFC 7607)"
    );
}

#[test]
fn unreadable_file_is_one_whole_file_error() {
    let Err(e) = load(std::path::Path::new("/nonexistent/anyguard.toml")) else {
        panic!("expected an error")
    };
    assert_eq!(e.len(), 1);
    assert!(
        e.to_string()
            .starts_with("/nonexistent/anyguard.toml: cannot read: "),
        "{e}"
    );
}

#[test]
fn embedded_default_loads_and_is_a_demo() {
    let c = match embedded_default() {
        Ok(c) => c,
        Err(e) => panic!("embedded default is invalid:\n{e}"),
    };
    assert_eq!(c.source, EMBEDDED_SOURCE);
    assert_eq!(c.router_id, Ipv4Addr::new(198, 18, 0, 2));
    assert_eq!(c.local_asn, 65010);
    assert_eq!(c.status.listen, SocketAddr::from(([127, 0, 0, 1], 9180)));
    assert_eq!(c.bgp_listen, Some(SocketAddr::from(([127, 0, 0, 1], 1179))));
    assert_eq!(c.peers.len(), 1);
    assert_eq!(c.peers[0].address, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(c.peers[0].remote_asn, 65000);
    assert_eq!(c.peers[0].mode, PeerMode::Passive);
    assert_eq!(c.services.len(), 1);
    assert_eq!(c.services[0].name, "demo");
    assert_eq!(
        c.services[0].prefixes,
        vec!["203.0.113.0/24".parse().unwrap_or_else(|e| panic!("{e}"))]
    );
    assert_eq!(
        c.services[0].checks[0].kind,
        CheckKind::Command {
            argv: vec!["true".into()]
        }
    );
}

#[test]
fn the_documented_example_shape_loads_as_written() {
    let text = r#"router_id = "198.18.0.2"
local_asn = 65010
[status]
listen = "127.0.0.1:9180"
# token_file = "/etc/anyguard/token"
[bgp]
listen = "127.0.0.1:1179"
[[peer]]
name = "edge1"
address = "198.18.0.1"
remote_asn = 65000
[[service]]
name = "web"
prefixes = ["203.0.113.0/24", "2001:db8:100::/48"]
[[service.check]]
type = "http"            # also "tcp", "command", "dns", "file"
url = "http://127.0.0.1:8080/healthz"
interval = "1s"
timeout = "500ms"
rise = 2
fall = 2
"#;
    // The IPv6 routes' next hop over this IPv4 session comes from the session's interface.
    let c = ok(text);
    assert_eq!(c.bgp_listen, Some(SocketAddr::from(([127, 0, 0, 1], 1179))));
    assert_eq!(c.services[0].prefixes.len(), 2);
    assert_eq!(c.services[0].checks[0].name, "http#0");
}

#[test]
fn type_errors_inside_inline_tables_and_arrays_name_the_element() {
    assert_eq!(
        errors(&insert(6, "max_prefixes = { limit = \"many\" }")),
        ["t.toml:7:26: peer[0].max_prefixes.limit: invalid type: string \"many\", expected i64"]
    );
    assert_eq!(
        errors(&BASE.replace("[\"203.0.113.0/24\"]", "[\"203.0.113.0/24\", 7]")),
        ["t.toml:9:31: service[0].prefixes[1]: invalid type: integer `7`, expected a string"]
    );
    assert_eq!(
        errors(&insert(6, "graceful_restart = \"yes\"")),
        [
            "t.toml:7:20: peer[0].graceful_restart: invalid type: string \"yes\", expected a \
             boolean or a table { restart_time }"
        ]
    );
}

#[test]
fn max_prefixes_and_graceful_restart_accept_both_forms() {
    let c = ok(&insert(6, "max_prefixes = 100\ngraceful_restart = true"));
    assert_eq!(
        c.peers[0].max_prefixes,
        Some(MaxPrefixes {
            limit: 100,
            restart: None
        })
    );
    assert_eq!(
        c.peers[0].graceful_restart,
        Some(GracefulRestartConfig {
            restart_time: Duration::from_secs(10)
        })
    );
    let c = ok(&insert(
        6,
        "max_prefixes = { limit = 5, restart = \"5m\" }\ngraceful_restart = { restart_time = 30 }",
    ));
    assert_eq!(
        c.peers[0].max_prefixes,
        Some(MaxPrefixes {
            limit: 5,
            restart: Some(Duration::from_secs(300))
        })
    );
    assert_eq!(
        c.peers[0].graceful_restart,
        Some(GracefulRestartConfig {
            restart_time: Duration::from_secs(30)
        })
    );
    assert_eq!(
        errors(&insert(6, "graceful_restart = { restart_time = \"2h\" }")),
        [
            "t.toml:7:37: peer[0].graceful_restart.restart_time: must be a whole number of \
             seconds from 1s to 4095s"
        ]
    );
}

#[test]
fn deprefer_settings_and_route_attributes_are_validated() {
    let c = ok(&insert(
        9,
        "on_down = \"deprefer\"\ndeprefer_prepend = 5\ndeprefer_communities = [\"65010:666\"]\n\
         med = 10\nlocal_pref = 200\nas_path_prepend = 2\nnext_hop = \"198.18.0.9\"",
    ));
    let s = &c.services[0];
    assert_eq!(s.on_down, OnDown::Deprefer);
    assert_eq!(s.deprefer_prepend, 5);
    assert_eq!(s.deprefer_communities, vec![Community::new(65010, 666)]);
    assert_eq!(
        (s.med, s.local_pref, s.as_path_prepend),
        (Some(10), Some(200), 2)
    );
    assert_eq!(
        s.next_hop,
        NextHop::Address(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 9)))
    );
    assert_eq!(
        errors(&insert(
            9,
            "on_down = \"ignore\"\nas_path_prepend = 11\nnext_hop = \"2001:db8::9\""
        )),
        [
            "t.toml:10:11: service[0].on_down: \"ignore\" is not one of \"withdraw\", \"deprefer\"",
            "t.toml:11:19: service[0].as_path_prepend: must be between 0 and 10, not 11",
            "t.toml:12:12: service[0].next_hop: 2001:db8::9 cannot be the next hop of \
             203.0.113.0/24 (different address family); use \"self\"",
        ]
    );
}

#[test]
fn several_errors_in_one_peer_are_all_reported() {
    let text = insert(
        6,
        "local_address = \"2001:db8::2\"\nmd5_key_file = \"/nonexistent/key\"\n\
         next_hop_v4 = \"2001:db8::3\"\nport = 0",
    );
    let e = errors(&text);
    assert_eq!(e.len(), 4, "{e:#?}");
    assert_eq!(
        e[0],
        "t.toml:7:17: peer[0].local_address: 2001:db8::2 is not of the same address family as \
         198.18.0.1"
    );
    assert!(e[1].starts_with("t.toml:8:16: peer[0].md5_key_file: cannot read md5 key file"));
    assert_eq!(
        e[2],
        "t.toml:9:15: peer[0].next_hop_v4: 2001:db8::3 is not an IPv4 address"
    );
    assert_eq!(
        e[3],
        "t.toml:10:8: peer[0].port: must be between 1 and 65535, not 0"
    );
}

#[test]
fn every_unknown_key_and_type_error_is_reported_in_one_run() {
    let text = insert(6, "hold_tme = 3\nport = \"179\"")
        .replace(
            "prefixes = [\"203.0.113.0/24\"]",
            "prefixes = [\"203.0.113.0/24\", 1]\ncolour = \"red\"",
        )
        .replace("argv = [\"true\"]", "argv = [\"true\"]\ninterval = true");
    assert_eq!(
        errors(&text),
        [
            "t.toml:7:1: peer[0].hold_tme: unknown field `hold_tme`, expected one of `name`, \
             `address`, `port`, `local_address`, `remote_asn`, `mode`, `hold_time`, \
             `connect_retry`, `md5_key_file`, `ttl_security`, `max_prefixes`, \
             `graceful_restart`, `bfd`, `reconnect`, `ipv4`, `ipv6`, `next_hop_v4`, `next_hop_v6`",
            "t.toml:8:8: peer[0].port: invalid type: string \"179\", expected i64",
            "t.toml:11:31: service[0].prefixes[1]: invalid type: integer `1`, expected a string",
            "t.toml:12:1: service[0].colour: unknown field `colour`, expected one of `name`, \
             `prefixes`, `disabled`, `next_hop`, `communities`, `large_communities`, `med`, `local_pref`, \
             `as_path_prepend`, `on_down`, `deprefer_prepend`, `deprefer_local_pref`, \
             `deprefer_communities`, \
             `drain_file`, `drain_time`, `hold_down`, `combine`, `local_addresses`, \
             `local_interface`, `hook`, `hook_timeout`, `check`",
            "t.toml:16:12: service[0].check[0].interval: invalid type: boolean `true`, expected \
             a duration such as \"500ms\" or \"2s\", or an integer of seconds",
        ]
    );
}

#[test]
fn deprefer_local_pref_must_be_lower_than_the_normal_one() {
    let text = "router_id = \"198.18.0.2\"\nlocal_asn = 65010\n\n[[service]]\nname = \"web\"\n\
                prefixes = [\"203.0.113.0/24\"]\nlocal_pref = 200\ndeprefer_local_pref = 200\n\n\
                [[service.check]]\ntype = \"command\"\nargv = [\"true\"]\n";
    let errors: Vec<String> = load_str(text, "t.toml")
        .expect_err("accepted")
        .errors
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errors,
        [
            "t.toml:8:23: service[0].deprefer_local_pref: 200 is not lower than the normal \
          LOCAL_PREF 200 (`local_pref`): a de-preferred route must lose to the normal ones"
        ]
    );
    let ok = load_str(
        &text.replace("deprefer_local_pref = 200", "deprefer_local_pref = 20"),
        "t.toml",
    )
    .expect("loads");
    assert_eq!(ok.services[0].deprefer_local_pref, Some(20));
}

#[test]
fn state_dir_is_a_path_relative_to_the_config_file_and_not_empty() {
    let c = load_str(
        &insert(2, "state_dir = \"state\""),
        "/etc/anyguard/anyguard.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.state_dir.as_deref(),
        Some(std::path::Path::new("/etc/anyguard/state"))
    );
    assert_eq!(
        errors(&insert(2, "state_dir = \"\"")),
        vec!["t.toml:3:13: state_dir: must not be empty".to_string()]
    );
}

#[test]
fn reconnect_back_off_is_checked_with_file_line_and_key() {
    let with = |table: &str| {
        format!(
            "router_id = \"198.18.0.2\"\nlocal_asn = 65010\n\n[[peer]]\nname = \"edge\"\n\
             address = \"198.18.0.1\"\nremote_asn = 65000\nreconnect = {table}\n"
        )
    };
    let errors = |table: &str| -> Vec<String> {
        load_str(&with(table), "t.toml")
            .expect_err("accepted")
            .errors
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    assert_eq!(
        errors("{ min = \"10s\", max = \"5s\" }"),
        ["t.toml:8:13: peer[0].reconnect: min 10s is longer than max 5s"]
    );
    assert_eq!(
        errors("{ max = \"2h\" }"),
        ["t.toml:8:21: peer[0].reconnect.max: must be at most 1h"]
    );
    assert_eq!(
        errors("{ min = \"10ms\" }"),
        ["t.toml:8:21: peer[0].reconnect.min: must be at least 100ms"]
    );
    assert!(errors("{ mni = \"1s\" }")[0].contains("unknown field `mni`"));
    let ok = load_str(&with("{ min = \"2s\", max = \"5m\" }"), "t.toml").expect("loads");
    assert_eq!(
        ok.peers[0].reconnect,
        Some(Reconnect {
            min: Duration::from_secs(2),
            max: Duration::from_secs(300)
        })
    );
    let default = load_str(&with("{}"), "t.toml").expect("loads");
    assert_eq!(default.peers[0].reconnect, Some(DEFAULT_RECONNECT));
}

#[test]
fn fleet_hand_over_defaults_to_one_second_and_bad_values_name_file_line_column_and_key() {
    let fleet =
        |hand_over: &str| format!("{BASE}[fleet]\npath = \"f.toml\"\nsite = \"a\"\n{hand_over}");
    let hand_over = |text: &str| ok(text).fleet.map(|f| f.hand_over);
    assert_eq!(hand_over(&fleet("")), Some(Duration::from_secs(1)));
    assert_eq!(
        hand_over(&fleet("hand_over = \"1500ms\"\n")),
        Some(Duration::from_millis(1500))
    );
    assert_eq!(
        hand_over(&fleet("hand_over = \"0s\"\n")),
        Some(Duration::ZERO)
    );
    assert_eq!(
        hand_over(&fleet("hand_over = 2\n")),
        Some(Duration::from_secs(2))
    );
    for (value, message) in [
        (
            "\"soon\"",
            "invalid duration \"soon\": expected number at 0",
        ),
        ("-1", "must not be negative"),
        ("\"31s\"", "must be at most 30s"),
    ] {
        assert_eq!(
            errors(&fleet(&format!("hand_over = {value}\n"))),
            [format!("t.toml:16:13: fleet.hand_over: {message}")],
            "{value}"
        );
    }
}
