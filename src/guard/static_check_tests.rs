//! Table tests for the config guard: one per rejection reason, asserting the message.

use std::net::SocketAddr;
use std::time::Duration;

use super::*;
use crate::config::testing::service_config;
use crate::config::{Combine, PeerConfig, PeerMode, ServiceConfig, StatusConfig};
use crate::guard::report::{ServiceReport, SiteReport, REPORT_VERSION};
use crate::guard::view::{PollFailure, PollOutcome};

/// Drain files that exist and commands that resolve, by fiat.
#[derive(Default)]
struct FakeEnv {
    existing: Vec<PathBuf>,
    commands: Vec<(&'static str, CommandLookup)>,
}

impl Environment for FakeEnv {
    fn path_exists(&self, path: &Path) -> bool {
        self.existing.iter().any(|p| p == path)
    }
    fn command(&self, program: &str) -> CommandLookup {
        self.commands
            .iter()
            .find(|(p, _)| *p == program)
            .map_or(CommandLookup::NotFound, |(_, l)| *l)
    }
}

const WEB: &str = "203.0.113.0/24";
const WEB2: &str = "198.51.100.0/24";

fn fleet(min_sites: usize, prefixes: Option<&str>) -> Fleet {
    let prefixes = prefixes.map_or(String::new(), |p| format!("prefixes = {p}\n"));
    Fleet::parse(
        &format!(
            "[[site]]\nname = \"a\"\nstatus_url = \"http://198.18.1.2:9180/status\"\n\
             [[site]]\nname = \"b\"\nstatus_url = \"http://198.18.2.2:9180/status\"\n\
             [[site]]\nname = \"c\"\nstatus_url = \"http://198.18.3.2:9180/status\"\n\
             [[service]]\nname = \"web\"\nmin_sites = {min_sites}\n{prefixes}"
        ),
        "fleet.toml",
    )
    .unwrap()
}

fn check(name: &str, kind: CheckKind) -> CheckConfig {
    CheckConfig {
        name: name.into(),
        kind,
        interval: Duration::from_secs(1),
        fast_interval: Duration::from_secs(1),
        timeout: Duration::from_millis(500),
        rise: 2,
        fall: 2,
    }
}

fn tcp_check() -> CheckConfig {
    check(
        "tcp#0",
        CheckKind::Tcp {
            address: "127.0.0.1:8080".parse().unwrap(),
        },
    )
}

fn service(prefixes: &[&str]) -> ServiceConfig {
    ServiceConfig {
        drain_file: Some(PathBuf::from("/run/anyguard/web.drain")),
        checks: vec![tcp_check()],
        ..service_config("web", prefixes)
    }
}

fn peer() -> PeerConfig {
    PeerConfig {
        name: "up1".into(),
        address: "198.18.0.1".parse().unwrap(),
        port: 179,
        local_address: None,
        remote_asn: 64_500,
        mode: PeerMode::Active,
        hold_time: Duration::from_secs(9),
        connect_retry: Duration::from_secs(5),
        md5_key: None,
        ttl_security: false,
        max_prefixes: None,
        graceful_restart: None,
        bfd: None,
        ipv4: true,
        ipv6: false,
        next_hop_v4: None,
        next_hop_v6: None,
        reconnect: None,
    }
}

/// A site config announcing `web` with the given prefixes over one IPv4 peer.
fn site(name: &str, prefixes: &[&str]) -> Config {
    Config {
        source: format!("{name}.toml"),
        router_id: "198.18.0.2".parse().unwrap(),
        local_asn: 64_510,
        status: StatusConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9180)),
            token_file: None,
            fleet_listen: None,
        },
        peers: vec![peer()],
        services: if prefixes.is_empty() {
            Vec::new()
        } else {
            vec![service(prefixes)]
        },
        fleet: Some(crate::config::FleetRef {
            path: "fleet.toml".into(),
            site: name.into(),
            hand_over: crate::guard::hand_over::DEFAULT_HAND_OVER,
        }),
        bgp_listen: None,
        state_dir: None,
    }
}

fn texts(rejections: &[Rejection]) -> Vec<String> {
    rejections.iter().map(ToString::to_string).collect()
}

fn rollout(fleet: &Fleet, configs: &[(&str, &Config)], env: &FakeEnv) -> Vec<String> {
    texts(&check_rollout(fleet, configs, env))
}

#[test]
fn consistent_rollout_is_accepted() {
    let (a, b, c) = (site("a", &[WEB]), site("b", &[WEB]), site("c", &[WEB]));
    let f = fleet(3, Some(&format!("[\"{WEB}\"]")));
    assert_eq!(
        rollout(&f, &[("a", &a), ("b", &b), ("c", &c)], &FakeEnv::default()),
        Vec::<String>::new()
    );
}

#[test]
fn rollout_with_every_site_drained_or_disabled_is_rejected() {
    let (a, mut b, c) = (site("a", &[WEB]), site("b", &[WEB]), site("c", &[WEB]));
    b.services[0].disabled = true;
    let env = FakeEnv {
        existing: vec!["/run/anyguard/web.drain".into()],
        ..FakeEnv::default()
    };
    assert_eq!(
        rollout(&fleet(1, None), &[("a", &a), ("b", &b), ("c", &c)], &env),
        [
            "service web prefix 203.0.113.0/24 would be announced by 0 of 3 sites (min_sites 1): \
          no site announces; a: drained (drain file /run/anyguard/web.drain exists), \
          b: service disabled, c: drained (drain file /run/anyguard/web.drain exists)"
        ]
    );
}

#[test]
fn rollout_removing_a_service_everywhere_is_rejected() {
    let (a, b, c) = (site("a", &[]), site("b", &[]), site("c", &[]));
    assert_eq!(
        rollout(
            &fleet(1, None),
            &[("a", &a), ("b", &b), ("c", &c)],
            &FakeEnv::default()
        ),
        ["service web (min_sites 1) would be configured at no site: removed everywhere"]
    );
}

#[test]
fn rollout_removing_a_fleet_prefix_everywhere_is_rejected() {
    let (a, b, c) = (site("a", &[WEB]), site("b", &[WEB]), site("c", &[WEB]));
    let f = fleet(1, Some(&format!("[\"{WEB}\", \"{WEB2}\"]")));
    assert_eq!(
        rollout(&f, &[("a", &a), ("b", &b), ("c", &c)], &FakeEnv::default()),
        [
            "service web: prefix 198.51.100.0/24 (declared in the fleet) would be configured at \
          no site: removed everywhere"
        ]
    );
}

#[test]
fn rollout_with_prefixes_that_differ_between_sites_is_rejected() {
    let (a, b, c) = (
        site("a", &[WEB, WEB2]),
        site("b", &[WEB]),
        site("c", &[WEB]),
    );
    assert_eq!(
        rollout(
            &fleet(2, None),
            &[("a", &a), ("b", &b), ("c", &c)],
            &FakeEnv::default()
        ),
        [
            "service web: prefix 198.51.100.0/24 is configured at a but not at b, c: prefixes \
             must be the same at every site",
            "service web prefix 198.51.100.0/24 would be announced by 1 of 3 sites \
             (min_sites 2): announced by a; b: prefix not configured, c: prefix not configured",
        ]
    );
}

#[test]
fn rollout_without_a_usable_peer_is_rejected() {
    let (a, mut b, mut c) = (site("a", &[WEB]), site("b", &[WEB]), site("c", &[WEB]));
    b.peers.clear();
    c.peers[0].ipv4 = false;
    c.peers[0].ipv6 = true;
    assert_eq!(
        rollout(
            &fleet(2, None),
            &[("a", &a), ("b", &b), ("c", &c)],
            &FakeEnv::default()
        ),
        [
            "service web prefix 203.0.113.0/24 would be announced by 1 of 3 sites (min_sites 2): \
          announced by a; b: no usable peer (no peers configured), c: no usable peer (no peer \
          carries IPv4)"
        ]
    );
}

#[test]
fn rollout_with_checks_that_cannot_succeed_is_rejected() {
    let (mut a, mut b, c) = (site("a", &[WEB]), site("b", &[WEB]), site("c", &[WEB]));
    a.services[0].checks = vec![check(
        "command#0",
        CheckKind::Command {
            argv: vec!["/usr/local/bin/check-web".into()],
        },
    )];
    b.services[0].checks = vec![check(
        "http#0",
        CheckKind::Http {
            url: "http//198.18.2.10/health".into(),
            status: (200, 299),
            body_contains: None,
            tls: None,
            reuse_connection: false,
        },
    )];
    assert_eq!(
        rollout(
            &fleet(2, None),
            &[("a", &a), ("b", &b), ("c", &c)],
            &FakeEnv::default()
        ),
        [
            "site a, service web: check command#0 cannot succeed: command \
             \"/usr/local/bin/check-web\" not found",
            "site b, service web: check http#0 cannot succeed: unparsable URL \
             \"http//198.18.2.10/health\" (invalid format)",
            "service web prefix 203.0.113.0/24 would be announced by 1 of 3 sites (min_sites 2): \
             announced by c; a: checks cannot succeed (command#0: command \
             \"/usr/local/bin/check-web\" not found), b: checks cannot succeed (http#0: \
             unparsable URL \"http//198.18.2.10/health\" (invalid format))",
        ]
    );
}

#[test]
fn one_broken_check_out_of_two_with_combine_any_is_reported_but_the_site_still_counts() {
    let (mut a, b, c) = (site("a", &[WEB]), site("b", &[WEB]), site("c", &[WEB]));
    a.services[0].combine = Combine::Any;
    a.services[0].checks.push(check(
        "command#1",
        CheckKind::Command {
            argv: vec!["check-web".into()],
        },
    ));
    let env = FakeEnv {
        commands: vec![("check-web", CommandLookup::NotExecutable)],
        ..FakeEnv::default()
    };
    assert_eq!(
        rollout(&fleet(3, None), &[("a", &a), ("b", &b), ("c", &c)], &env),
        [
            "site a, service web: check command#1 cannot succeed: command \"check-web\" is not \
          executable"
        ]
    );
    a.services[0].combine = Combine::AtLeast(3);
    assert_eq!(
        rollout(&fleet(3, None), &[("a", &a), ("b", &b), ("c", &c)], &env)[1],
        "service web prefix 203.0.113.0/24 would be announced by 2 of 3 sites (min_sites 3): \
         announced by b, c; a: checks cannot succeed (command#1: command \"check-web\" is not \
         executable)"
    );
}

#[test]
fn rollout_naming_a_site_outside_the_fleet_is_rejected_and_missing_sites_do_not_count() {
    let (a, d) = (site("a", &[WEB, WEB2]), site("d", &[WEB, WEB2]));
    assert_eq!(
        rollout(
            &fleet(2, None),
            &[("a", &a), ("d", &d)],
            &FakeEnv::default()
        ),
        [
            "site \"d\" is not in the fleet fleet.toml (sites: a, b, c)",
            "service web prefixes 203.0.113.0/24, 198.51.100.0/24 would be announced by 1 of 3 \
             sites (min_sites 2): announced by a; b: no config given, c: no config given",
        ]
    );
}

// ---- reload (one site, others through their reports) ----

fn report(site: &str, prefixes: &[&str], announcing: bool, intent: Intent) -> SiteReport {
    SiteReport {
        version: REPORT_VERSION,
        site: site.into(),
        generation: 1,
        fleet_digest: None,
        services: vec![ServiceReport {
            name: "web".into(),
            prefixes: prefixes.iter().map(|p| p.parse().unwrap()).collect(),
            healthy: announcing,
            announcing,
            intent,
        }],
    }
}

fn view(
    t: Instant,
    b: Result<SiteReport, PollFailure>,
    c: Result<SiteReport, PollFailure>,
) -> FleetView {
    let mut v = fleet(1, None).view_for("a");
    v.record(
        "b",
        PollOutcome {
            requested_at: t,
            result: b,
        },
        t,
    );
    v.record(
        "c",
        PollOutcome {
            requested_at: t,
            result: c,
        },
        t,
    );
    v
}

#[test]
fn reload_that_disables_the_last_announcing_site_is_rejected() {
    let t = Instant::now();
    let running = site("a", &[WEB]);
    let mut candidate = site("a", &[WEB]);
    candidate.services[0].disabled = true;
    let v = view(
        t,
        Err(PollFailure::Request("connection refused".into())),
        Ok(report("c", &[WEB], true, Intent::Withdrawing)),
    );
    let r = check_reload(
        &fleet(1, None),
        "a",
        Some(&running),
        &candidate,
        &v,
        t,
        &FakeEnv::default(),
    );
    assert_eq!(
        texts(&r),
        [
            "service web prefix 203.0.113.0/24 would be announced by 0 of 3 sites (min_sites 1): \
          no site announces; a: service disabled, b: unreachable (request failed: connection \
          refused), c: withdrawing"
        ]
    );
}

#[test]
fn reload_that_does_not_worsen_a_short_service_is_accepted() {
    let t = Instant::now();
    let running = site("a", &[WEB]);
    let v = view(
        t,
        Err(PollFailure::Status(503)),
        Ok(report("c", &[WEB], false, Intent::None)),
    );
    let r = check_reload(
        &fleet(2, None),
        "a",
        Some(&running),
        &running.clone(),
        &v,
        t,
        &FakeEnv::default(),
    );
    assert_eq!(texts(&r), Vec::<String>::new());
}

#[test]
fn reload_removing_a_prefix_that_enough_other_sites_announce_is_accepted() {
    let t = Instant::now();
    let running = site("a", &[WEB, WEB2]);
    let candidate = site("a", &[WEB]);
    let v = view(
        t,
        Ok(report("b", &[WEB, WEB2], true, Intent::None)),
        Ok(report("c", &[WEB, WEB2], true, Intent::Held)),
    );
    let r = check_reload(
        &fleet(2, None),
        "a",
        Some(&running),
        &candidate,
        &v,
        t,
        &FakeEnv::default(),
    );
    assert_eq!(texts(&r), Vec::<String>::new());
}

#[test]
fn reload_removing_a_prefix_that_others_do_not_announce_is_rejected_with_stale_reports_not_counting(
) {
    let t = Instant::now();
    let running = site("a", &[WEB, WEB2]);
    let candidate = site("a", &[WEB]);
    let v = view(
        t,
        Ok(report("b", &[WEB], true, Intent::None)),
        Ok(report("c", &[WEB, WEB2], true, Intent::None)),
    );
    let later = t + Duration::from_secs(10);
    let r = check_reload(
        &fleet(1, None),
        "a",
        Some(&running),
        &candidate,
        &v,
        later,
        &FakeEnv::default(),
    );
    assert_eq!(
        texts(&r),
        [
            "service web prefix 198.51.100.0/24 would be announced by 0 of 3 sites (min_sites 1): \
          no site announces; a: prefix not configured, b: no recent report, c: no recent report"
        ]
    );
}

#[test]
fn reload_removing_a_service_no_other_site_reports_is_rejected() {
    let t = Instant::now();
    let running = site("a", &[WEB]);
    let candidate = site("a", &[]);
    let mut b = report("b", &[], true, Intent::None);
    b.services.clear();
    let v = view(
        t,
        Ok(b),
        Err(PollFailure::Timeout(Duration::from_millis(500))),
    );
    let r = check_reload(
        &fleet(1, None),
        "a",
        Some(&running),
        &candidate,
        &v,
        t,
        &FakeEnv::default(),
    );
    assert_eq!(
        texts(&r),
        ["service web (min_sites 1) would be configured at no site: removed everywhere"]
    );
}

#[test]
fn load_is_answerable_only_for_services_the_candidate_configures() {
    let t = Instant::now();
    let v = view(
        t,
        Err(PollFailure::Status(503)),
        Ok(report("c", &[WEB], false, Intent::None)),
    );
    // No running config, `web` not configured here, nobody announces it: not this
    // site's doing.
    let without = site("a", &[]);
    let r = check_reload(
        &fleet(1, None),
        "a",
        None,
        &without,
        &v,
        t,
        &FakeEnv::default(),
    );
    assert_eq!(texts(&r), Vec::<String>::new());
    // Configured here but drained: this site is part of the problem.
    let drained = site("a", &[WEB]);
    let env = FakeEnv {
        existing: vec!["/run/anyguard/web.drain".into()],
        ..FakeEnv::default()
    };
    let r = check_reload(&fleet(1, None), "a", None, &drained, &v, t, &env);
    assert_eq!(
        texts(&r),
        [
            "service web prefix 203.0.113.0/24 would be announced by 0 of 3 sites (min_sites 1): \
          no site announces; a: drained (drain file /run/anyguard/web.drain exists), \
          b: unreachable (HTTP status 503), c: not announcing"
        ]
    );
}

#[test]
fn load_for_a_site_outside_the_fleet_is_rejected() {
    let t = Instant::now();
    let candidate = site("x", &[WEB]);
    let v = view(
        t,
        Ok(report("b", &[WEB], true, Intent::None)),
        Ok(report("c", &[WEB], true, Intent::None)),
    );
    let r = check_reload(
        &fleet(1, None),
        "x",
        None,
        &candidate,
        &v,
        t,
        &FakeEnv::default(),
    );
    assert_eq!(
        texts(&r),
        ["site \"x\" is not in the fleet fleet.toml (sites: a, b, c)"]
    );
}

#[test]
fn local_system_finds_commands_on_path_and_rejects_missing_or_non_executable_ones() {
    let env = LocalSystem;
    assert_eq!(env.command("sh"), CommandLookup::Found);
    assert_eq!(
        env.command("anyguard-no-such-command"),
        CommandLookup::NotFound
    );
    assert_eq!(
        env.command("/nonexistent/anyguard-check"),
        CommandLookup::NotFound
    );
    let file = std::env::temp_dir().join(format!("anyguard-guard-test-{}", std::process::id()));
    std::fs::write(&file, "#!/bin/sh\n").unwrap();
    let lookup = env.command(file.to_str().unwrap());
    std::fs::remove_file(&file).unwrap();
    assert_eq!(lookup, CommandLookup::NotExecutable);
}

fn retired_fleet() -> Fleet {
    // Through the file, as an operator writes it.
    fleet(2, Some(&format!("[\"{WEB}\"]\nretired = true")))
}

#[test]
fn a_retired_service_may_be_removed_everywhere_by_a_rollout_and_a_reload() {
    let f = retired_fleet();
    assert!(f.retired("web"));
    let (a, b, c) = (site("a", &[]), site("b", &[]), site("c", &[]));
    assert_eq!(
        rollout(&f, &[("a", &a), ("b", &b), ("c", &c)], &FakeEnv::default()),
        Vec::<String>::new()
    );
    let t = Instant::now();
    let v = view(
        t,
        Err(PollFailure::Status(503)),
        Err(PollFailure::Timeout(Duration::from_millis(500))),
    );
    let r = check_reload(
        &f,
        "a",
        Some(&site("a", &[WEB])),
        &a,
        &v,
        t,
        &FakeEnv::default(),
    );
    assert_eq!(texts(&r), Vec::<String>::new());
    // Not retired: the same reload is refused.
    let r = check_reload(
        &fleet(2, None),
        "a",
        Some(&site("a", &[WEB])),
        &a,
        &v,
        t,
        &FakeEnv::default(),
    );
    assert_eq!(texts(&r).len(), 1, "{r:?}");
}
