//! What health does to the announcement: rise before the first UPDATE, fall to the
//! withdrawal (a hung target is a failing one), recovery and its hold-down, de-preference,
//! no UPDATE while nothing changes, and the IPv6 encoding (RFC 4760, RFC 2545).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

#[tokio::test]
async fn nothing_is_announced_until_the_target_has_passed_rise_times() {
    // One pass, then failures: rise = 2 is never reached, so nothing may be announced
    // however long we watch.
    let target = Target::start(Answer::Fail).await;
    target.script(Answer::Pass, 1, Answer::Fail);
    let mut d = Daemon::start(&Setup::default(), &target).await;
    target
        .wait_served("one pass and six failures", |p, f| p == 1 && f >= 6)
        .await;
    d.quiet_for(2 * INTERVAL, "one pass is below rise = 2")
        .await;

    // Healthy from now on: the UPDATE comes, and only after two more passes.
    let (passes_before, _) = target.served();
    target.set(Answer::Pass);
    let u = d.update().await;
    let (passes, _) = target.served();
    assert!(
        passes >= passes_before + 2,
        "announced after {} consecutive passes",
        passes - passes_before
    );
    assert_v4_announcement(&u, 0);
    d.shutdown().await;
}

#[tokio::test]
async fn failing_fall_times_withdraws_and_one_failure_does_not() {
    let (target, mut d) = announced(&Setup::default()).await;

    // fall - 1 = 1 failure between passes: no flap on the boundary.
    target.script(Answer::Fail, 1, Answer::Pass);
    target
        .wait_served("the single failure and passes after it", |_, f| f >= 1)
        .await;
    let (p0, _) = target.served();
    target.wait_served("three passes", |p, _| p >= p0 + 3).await;
    d.quiet_for(2 * INTERVAL, "one failure is below fall = 2")
        .await;

    // Failing for good: withdrawn after the second failure.
    let (_, f0) = target.served();
    target.set(Answer::Fail);
    let u = d.update().await;
    let (_, f) = target.served();
    assert!(f >= f0 + 2, "withdrawn after {} failures", f - f0);
    assert_v4_withdrawal(&u);
    d.quiet_for(3 * INTERVAL, "a withdrawn service stays quiet")
        .await;
    d.shutdown().await;
}

#[tokio::test]
async fn a_hung_target_is_withdrawn_like_a_failing_one() {
    let (target, mut d) = announced(&Setup::default()).await;
    target.set(Answer::Hang);
    let u = d.update().await;
    assert_v4_withdrawal(&u);
    d.shutdown().await;
}

#[tokio::test]
async fn recovery_reannounces_the_prefix() {
    let (target, mut d) = announced(&Setup::default()).await;
    target.set(Answer::Fail);
    assert_v4_withdrawal(&d.update().await);
    target.set(Answer::Pass);
    assert_v4_announcement(&d.update().await, 0);
    d.quiet_for(3 * INTERVAL, "re-announced once").await;
    d.shutdown().await;
}

#[tokio::test]
async fn recovery_inside_the_hold_down_is_held_until_it_ends() {
    // A hold-down far longer than rise × fast interval (2 × 50 ms) makes it observable:
    // health is back well before the re-announcement may go out.
    let setup = Setup {
        hold_down: "1s",
        ..Setup::default()
    };
    let (target, mut d) = announced(&setup).await;
    target.set(Answer::Fail);
    assert_v4_withdrawal(&d.update().await);

    target.set(Answer::Pass);
    // Healthy but held down: the status and the routes are published in the same loop
    // turn, so while the status says so, nothing may have been sent.
    d.wait_state("hold-down").await;
    d.quiet_for(Duration::ZERO, "held down").await;
    assert_v4_announcement(&d.update().await, 0);
    d.wait_state("up").await;
    d.shutdown().await;
}

#[tokio::test]
async fn deprefer_reannounces_with_prepends_and_community_instead_of_withdrawing() {
    let setup = Setup {
        service_extra: "on_down = \"deprefer\"",
        ..Setup::default()
    };
    let (target, mut d) = announced(&setup).await;

    target.set(Answer::Fail);
    let u = d.update().await;
    // Defaults: deprefer_prepend = 3, deprefer_communities = ["65535:0"].
    assert_v4_announcement(&u, 3);
    assert_eq!(communities(&u), vec![Community::GRACEFUL_SHUTDOWN], "{u:?}");
    d.quiet_for(3 * INTERVAL, "de-preferred, not withdrawn")
        .await;

    target.set(Answer::Pass);
    let u = d.update().await;
    assert_v4_announcement(&u, 0);
    assert!(communities(&u).is_empty(), "{u:?}");
    d.shutdown().await;
}

#[tokio::test]
async fn steady_health_sends_no_further_update() {
    let (target, mut d) = announced(&Setup::default()).await;
    let (p0, _) = target.served();
    // Ten intervals of passing probes: the Adj-RIB-Out does not change, so nothing is sent.
    d.quiet_for(10 * INTERVAL, "steady health").await;
    let (p, f) = target.served();
    assert!(p >= p0 + 5, "only {} probes while watching", p - p0);
    assert_eq!(f, 0);
    d.shutdown().await;
}

#[tokio::test]
async fn ipv6_prefix_goes_in_mp_reach_with_the_configured_global_next_hop_over_ipv4() {
    let setup = Setup {
        prefixes: &[SERVICE_V4, SERVICE_V6],
        peer_extra: "next_hop_v6 = \"2001:db8::2\"",
        ..Setup::default()
    };
    let target = Target::start(Answer::Pass).await;
    let mut d = Daemon::start(&setup, &target).await;
    let (v4u, v6u) = two_family_updates(&mut d).await;
    assert_v4_announcement(&v4u, 0);
    let mp = mp_reach(&v6u).unwrap();
    assert_eq!(mp.afi, anyguard_proto::Afi::Ipv6);
    assert_eq!(mp.safi, anyguard_proto::Safi::Unicast);
    assert_eq!(mp.nlri, vec![SERVICE_V6.parse::<IpNet>().unwrap()]);
    assert_eq!(mp.next_hop, "2001:db8::2".parse::<IpAddr>().unwrap());
    assert_eq!(mp.link_local_next_hop, None);
    // RFC 4760 §3: MP_REACH carries the next hop; no classic NEXT_HOP, no classic NLRI.
    assert!(v6u.nlri.is_empty() && next_hop(&v6u).is_none(), "{v6u:?}");
    assert_eq!(as_path(&v6u), vec![LOCAL_ASN]);

    // Both withdrawn on failure: IPv6 in MP_UNREACH_NLRI.
    target.set(Answer::Fail);
    let (w4, w6) = two_family_updates(&mut d).await;
    assert_v4_withdrawal(&w4);
    assert_eq!(mp_unreach(&w6), vec![SERVICE_V6.parse::<IpNet>().unwrap()]);
    d.shutdown().await;
}

/// The next two UPDATEs, sorted into (IPv4, IPv6).
async fn two_family_updates(d: &mut Daemon) -> (UpdateMessage, UpdateMessage) {
    let a = d.update().await;
    let b = d.update().await;
    let is_v6 = |u: &UpdateMessage| mp_reach(u).is_some() || !mp_unreach(u).is_empty();
    match (is_v6(&a), is_v6(&b)) {
        (false, true) => (a, b),
        (true, false) => (b, a),
        _ => panic!("expected one IPv4 and one IPv6 UPDATE, got {a:?} and {b:?}"),
    }
}

#[tokio::test]
async fn ipv6_prefix_over_an_ipv6_loopback_session() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("SKIPPED ipv6_prefix_over_an_ipv6_loopback_session: no IPv6 loopback here");
        return;
    }
    let setup = Setup {
        prefixes: &[SERVICE_V6],
        peer_extra: "next_hop_v6 = \"2001:db8::2\"",
        ipv6_session: true,
        ..Setup::default()
    };
    let target = Target::start(Answer::Pass).await;
    let mut d = Daemon::start(&setup, &target).await;
    let u = d.update().await;
    let mp = mp_reach(&u).unwrap();
    assert_eq!(mp.nlri, vec![SERVICE_V6.parse::<IpNet>().unwrap()]);
    assert_eq!(mp.next_hop, "2001:db8::2".parse::<IpAddr>().unwrap());
    d.shutdown().await;
}
