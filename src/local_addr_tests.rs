use std::time::{Duration, Instant};

use super::*;
use crate::config::{LocalAddresses, ServiceConfig};

fn service(name: &str, addresses: &[&str]) -> ServiceConfig {
    let mut s = crate::config::testing::dual_stack_service(name);
    s.local_addresses = (!addresses.is_empty()).then(|| LocalAddresses {
        interface: "lo".into(),
        addresses: addresses
            .iter()
            .map(|a| a.parse().unwrap_or_else(|e| panic!("{a}: {e}")))
            .collect(),
    });
    s
}

fn slot(a: &str) -> Slot {
    Slot {
        interface: "lo".into(),
        address: a.parse().unwrap_or_else(|e| panic!("{a}: {e}")),
    }
}

fn add(service: &str, a: &str) -> AddressAction {
    AddressAction::Add {
        service: service.into(),
        slot: slot(a),
    }
}

fn remove(service: &str, a: &str) -> AddressAction {
    AddressAction::Remove {
        service: service.into(),
        slot: slot(a),
    }
}

/// The one service `config`, announced or not.
fn wish(config: &ServiceConfig, announce: bool) -> [Wish<'_>; 1] {
    [Wish { config, announce }]
}

const SENT: &dyn Fn(&[IpNet]) -> bool = &|_| true;
const NOT_SENT: &dyn Fn(&[IpNet]) -> bool = &|_| false;

/// Plans with `withdrawn`, records every action as succeeded, returns the actions.
fn step(
    ledger: &mut Ledger,
    wishes: &[Wish<'_>],
    withdrawn: &dyn Fn(&[IpNet]) -> bool,
) -> Vec<AddressAction> {
    let now = Instant::now();
    let actions = ledger.plan(wishes, now, withdrawn);
    for a in &actions {
        let config = wishes.first().map(|w| w.config);
        ledger.record(a, config, true, now);
    }
    actions
}

#[test]
fn addresses_are_added_before_the_routes_may_go_out() {
    let web = service("web", &["203.0.113.10", "2001:db8:100::10"]);
    let mut ledger = Ledger::default();
    assert!(
        !ledger.ready(&web),
        "nothing installed yet: routes held back"
    );
    let wish = wish(&web, true);
    assert_eq!(
        step(&mut ledger, &wish, NOT_SENT),
        vec![add("web", "203.0.113.10"), add("web", "2001:db8:100::10")]
    );
    assert!(ledger.ready(&web));
    assert_eq!(step(&mut ledger, &wish, NOT_SENT), vec![], "nothing twice");
}

#[test]
fn addresses_stay_until_the_withdrawal_has_been_sent() {
    let web = service("web", &["203.0.113.10"]);
    let mut ledger = Ledger::default();
    let up = wish(&web, true);
    let down = wish(&web, false);
    step(&mut ledger, &up, SENT);
    assert_eq!(
        step(&mut ledger, &down, NOT_SENT),
        vec![],
        "withdrawal not out yet"
    );
    assert_eq!(
        step(&mut ledger, &down, SENT),
        vec![remove("web", "203.0.113.10")]
    );
    assert!(!ledger.ready(&web));
    assert_eq!(step(&mut ledger, &down, SENT), vec![], "nothing twice");
}

#[test]
fn an_action_in_flight_is_not_planned_twice_and_holds_a_new_service_back() {
    let web = service("web", &["203.0.113.10"]);
    let mut ledger = Ledger::default();
    let up = wish(&web, true);
    let t0 = Instant::now();
    let actions = ledger.plan(&up, t0, NOT_SENT);
    assert_eq!(actions, vec![add("web", "203.0.113.10")]);
    ledger.started(actions[0].clone());
    assert!(ledger.busy());
    assert_eq!(ledger.plan(&up, t0, NOT_SENT), vec![], "already running");
    assert!(
        !ledger.may_announce(&web, false),
        "not announced until added"
    );
    ledger.record(&actions[0], Some(&web), true, t0);
    assert!(!ledger.busy());
    assert!(ledger.may_announce(&web, false));
}

#[test]
fn an_announced_service_stays_announced_while_a_reload_adds_an_address() {
    let web = service("web", &["203.0.113.10", "203.0.113.11"]);
    let mut ledger = Ledger::default();
    let t0 = Instant::now();
    ledger.record(&add("web", "203.0.113.10"), Some(&web), true, t0);
    ledger.started(add("web", "203.0.113.11"));
    assert!(
        ledger.may_announce(&web, true),
        "announced: not withdrawn for it"
    );
    // It failed: now the routes are held back (and the add retried).
    ledger.record(&add("web", "203.0.113.11"), Some(&web), false, t0);
    assert!(!ledger.may_announce(&web, true));
}

#[test]
fn a_service_is_not_announced_while_its_address_is_being_removed() {
    let web = service("web", &["203.0.113.10"]);
    let mut ledger = Ledger::default();
    step(&mut ledger, &wish(&web, true), SENT);
    let down = wish(&web, false);
    let actions = ledger.plan(&down, Instant::now(), SENT);
    assert_eq!(actions, vec![remove("web", "203.0.113.10")]);
    ledger.started(actions[0].clone());
    // Healthy again before the removal ends: the address is still listed as installed,
    // but it is going away; the add comes after the removal is recorded.
    assert!(!ledger.may_announce(&web, true));
    assert_eq!(ledger.plan(&wish(&web, true), Instant::now(), SENT), vec![]);
    ledger.record(&actions[0], Some(&web), true, Instant::now());
    assert_eq!(
        ledger.plan(&wish(&web, true), Instant::now(), SENT),
        vec![add("web", "203.0.113.10")]
    );
}

#[test]
fn a_failed_add_holds_the_routes_and_is_retried_after_a_second() {
    let web = service("web", &["203.0.113.10"]);
    let mut ledger = Ledger::default();
    let wish = wish(&web, true);
    let t0 = Instant::now();
    let actions = ledger.plan(&wish, t0, NOT_SENT);
    assert_eq!(actions, vec![add("web", "203.0.113.10")]);
    ledger.record(&actions[0], Some(&web), false, t0);
    assert!(!ledger.ready(&web));
    assert_eq!(
        ledger.plan(&wish, t0 + Duration::from_millis(500), NOT_SENT),
        vec![],
        "no retry storm"
    );
    assert_eq!(ledger.plan(&wish, t0 + ADD_RETRY, NOT_SENT), actions);
}

#[test]
fn a_service_removed_by_reload_loses_its_addresses_once_its_prefixes_are_withdrawn() {
    let web = service("web", &["203.0.113.10"]);
    let mut ledger = Ledger::default();
    step(&mut ledger, &wish(&web, true), SENT);
    let web_prefix: IpNet = "203.0.113.0/24".parse().unwrap_or_else(|e| panic!("{e}"));
    let still_there = move |p: &[IpNet]| !p.contains(&web_prefix);
    assert_eq!(ledger.plan(&[], Instant::now(), &still_there), vec![]);
    assert_eq!(
        ledger.plan(&[], Instant::now(), SENT),
        vec![remove("web", "203.0.113.10")]
    );
}

#[test]
fn changed_addresses_of_an_announced_service_are_swapped() {
    let old = service("web", &["203.0.113.10"]);
    let new = service("web", &["203.0.113.11"]);
    let mut ledger = Ledger::default();
    step(&mut ledger, &wish(&old, true), SENT);
    assert_eq!(
        step(&mut ledger, &wish(&new, true), NOT_SENT,),
        vec![add("web", "203.0.113.11"), remove("web", "203.0.113.10")]
    );
    assert!(ledger.ready(&new));
}

#[test]
fn services_without_addresses_are_always_ready_and_need_nothing() {
    let web = service("web", &[]);
    let ledger = Ledger::default();
    assert!(ledger.ready(&web));
    let wish = wish(&web, true);
    assert_eq!(ledger.plan(&wish, Instant::now(), SENT), vec![]);
}

#[test]
fn remove_all_lists_every_installed_address() {
    let web = service("web", &["203.0.113.10", "2001:db8:100::10"]);
    let mut ledger = Ledger::default();
    step(&mut ledger, &wish(&web, true), SENT);
    assert_eq!(
        ledger.remove_all(),
        vec![
            remove("web", "203.0.113.10"),
            remove("web", "2001:db8:100::10")
        ]
    );
}

#[test]
fn ip_argv_uses_host_prefixes_and_nodad_for_ipv6_adds() {
    let ip = IpCommand::default();
    assert_eq!(
        ip.argv(&add("web", "203.0.113.10")).join(" "),
        "ip address replace 203.0.113.10/32 dev lo"
    );
    assert_eq!(
        ip.argv(&add("web", "2001:db8:100::10")).join(" "),
        "ip address replace 2001:db8:100::10/128 dev lo nodad"
    );
    assert_eq!(
        IpCommand::with_prefix(vec!["ip".into(), "-n".into(), "ns1".into()])
            .argv(&remove("web", "2001:db8:100::10"))
            .join(" "),
        "ip -n ns1 address del 2001:db8:100::10/128 dev lo"
    );
}

/// Runs `ip` with `args`, returning stdout (test helper; bounded by the command's timeout).
fn ip(args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("ip").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Deletes the namespace when dropped, also when the test fails.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.0]);
    }
}

#[tokio::test]
async fn addresses_really_appear_and_disappear_in_a_namespace() {
    // The effective uid is the second field of /proc/self/status's `Uid:` line.
    let is_root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false);
    let name = format!("ag-addr-{}", std::process::id());
    if !is_root || ip(&["netns", "add", &name]).is_none() {
        eprintln!(
            "!!!! SKIPPED addresses_really_appear_and_disappear_in_a_namespace: needs root and \
             `ip netns` (root: {is_root})"
        );
        return;
    }
    let _ns = Netns(name.clone());
    let exec = IpCommand::with_prefix(vec!["ip".into(), "-n".into(), name.clone()]);
    let show = || ip(&["-n", &name, "address", "show", "dev", "lo"]).unwrap_or_default();
    let v4 = add("web", "203.0.113.10");
    let v6 = add("web", "2001:db8:100::10");
    for a in [&v4, &v6, &v4] {
        assert_eq!(exec.apply(a).await, Ok(()), "{a:?} (twice is fine)");
    }
    let text = show();
    assert!(text.contains("inet 203.0.113.10/32"), "{text}");
    assert!(text.contains("inet6 2001:db8:100::10/128"), "{text}");
    for r in [
        remove("web", "203.0.113.10"),
        remove("web", "2001:db8:100::10"),
        remove("web", "203.0.113.10"),
    ] {
        assert_eq!(exec.apply(&r).await, Ok(()), "{r:?} (already gone is fine)");
    }
    let text = show();
    assert!(!text.contains("203.0.113.10"), "{text}");
    assert!(!text.contains("2001:db8:100::10"), "{text}");
    let bad = AddressAction::Add {
        service: "web".into(),
        slot: Slot {
            interface: "nosuchif0".into(),
            address: "203.0.113.10".parse().unwrap_or_else(|e| panic!("{e}")),
        },
    };
    let err = exec.apply(&bad).await.expect_err("no such interface");
    assert!(
        err.contains("address replace 203.0.113.10/32 dev nosuchif0"),
        "{err}"
    );
}

#[test]
fn a_failed_add_is_due_again_after_the_retry_interval_and_not_before() {
    let web = service("web", &["203.0.113.10"]);
    let up = wish(&web, true);
    let mut ledger = Ledger::default();
    let t0 = Instant::now();
    assert_eq!(ledger.next_retry(t0), None, "nothing failed");
    let actions = ledger.plan(&up, t0, NOT_SENT);
    ledger.started(actions[0].clone());
    ledger.record(&actions[0], Some(&web), false, t0);
    // The coordinator sleeps until then (no other wake-up is promised).
    assert_eq!(ledger.next_retry(t0), Some(t0 + ADD_RETRY));
    assert_eq!(ledger.plan(&up, t0, NOT_SENT), vec![], "not yet");
    let due = t0 + ADD_RETRY;
    assert_eq!(ledger.plan(&up, due, NOT_SENT), actions, "due");
    // Once past, the deadline is not handed out again (the loop would spin on it).
    assert_eq!(ledger.next_retry(due), None);
    ledger.started(actions[0].clone());
    ledger.record(&actions[0], Some(&web), true, due);
    assert_eq!(ledger.next_retry(t0), None, "added");
}
