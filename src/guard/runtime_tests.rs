//! Table tests for [`decide`]: one per decision path, asserting the reason text.

use std::time::{Duration, Instant};

use super::*;
use crate::guard::report::{ServiceReport, SiteReport, REPORT_VERSION};
use crate::guard::view::{PeerSiteView, PollOutcome};

/// The hand-over is off in the tables of the intent protocol (their views are made by
/// hand, without the runs a poller records); it has tables of its own below.
const TIMING: GuardTiming = GuardTiming {
    stale_after: Duration::from_secs(5),
    intent_wait: Duration::from_secs(3),
    hand_over: Duration::ZERO,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A site's report with one service `web` in the given state.
fn report(site: &str, announcing: bool, intent: Intent) -> SiteReport {
    SiteReport {
        version: REPORT_VERSION,
        site: site.into(),
        generation: 1,
        fleet_digest: None,
        services: vec![ServiceReport {
            name: "web".into(),
            prefixes: vec!["203.0.113.0/24".parse().unwrap()],
            healthy: intent == Intent::None && announcing,
            announcing,
            intent,
        }],
    }
}

fn polled(
    name: &str,
    rank: usize,
    at: Instant,
    result: Result<SiteReport, PollFailure>,
) -> PeerSiteView {
    PeerSiteView {
        name: name.into(),
        rank,
        last_poll: Some(PollOutcome {
            requested_at: at,
            result,
        }),
        failures: Default::default(),
        announcing: Default::default(),
    }
}

fn ok(name: &str, rank: usize, at: Instant, announcing: bool, intent: Intent) -> PeerSiteView {
    polled(name, rank, at, Ok(report(name, announcing, intent)))
}

fn local(healthy: bool, drain: Drain, intent: LocalIntent) -> LocalService {
    LocalService {
        healthy,
        drain,
        announcing: true,
        intent,
    }
}

fn input<'a>(
    local: LocalService,
    min_sites: usize,
    local_rank: usize,
    view: &'a FleetView,
) -> GuardInput<'a> {
    GuardInput {
        service: "web",
        prefixes: &[],
        min_sites,
        local_site: "a",
        local_rank,
        local,
        view,
        timing: TIMING,
    }
}

#[test]
fn healthy_service_is_announced_even_when_every_other_site_is_down() {
    let t0 = Instant::now();
    let view = FleetView {
        sites: vec![polled("b", 1, t0, Err(PollFailure::Status(503)))],
    };
    let d = decide(
        &input(local(true, Drain::None, LocalIntent::None), 1, 0, &view),
        t0,
    );
    assert_eq!(d, Decision::Announce);
    assert_eq!(d.to_string(), "announce");
}

#[test]
fn failing_service_that_is_not_announced_stays_withdrawn() {
    let t0 = Instant::now();
    let view = FleetView::default();
    let mut l = local(false, Drain::None, LocalIntent::None);
    l.announcing = false;
    let d = decide(&input(l, 1, 0, &view), t0);
    assert_eq!(
        d.to_string(),
        "withdraw: health failing; web is not announced here"
    );
}

#[test]
fn failing_service_publishes_intent_when_enough_sites_announce() {
    let t0 = Instant::now();
    let view = FleetView {
        sites: vec![
            ok("b", 1, t0, true, Intent::None),
            ok("c", 2, t0, true, Intent::None),
        ],
    };
    let i = input(local(false, Drain::None, LocalIntent::None), 1, 0, &view);
    let d = decide(&i, t0 + ms(100));
    assert_eq!(
        d.to_string(),
        "withdraw pending: health failing; intent to withdraw web published, awaiting reports \
         requested after it; b: announcing, c: announcing"
    );
    assert_eq!(sites_announcing(&i, t0 + ms(100)), ["b", "c"]);
    // Waiting keeps the routes like a hold.
    assert!(matches!(d.verdict(), GuardVerdict::Hold { .. }));
    let status = guard_status(&i, &d, t0 + ms(100));
    assert_eq!(
        (
            status.decision.as_str(),
            status.intent.as_str(),
            status.min_sites
        ),
        ("pending", "withdrawing", 1)
    );
    assert_eq!(status.sites_announcing, ["b", "c"]);
    assert_eq!(d.intent(), Intent::Withdrawing);
    assert!(d.announces());
}

#[test]
fn failing_service_is_held_when_the_others_are_unreachable_or_withdrawing() {
    let t0 = Instant::now();
    let view = FleetView {
        sites: vec![
            polled("b", 1, t0, Err(PollFailure::Timeout(ms(500)))),
            ok("c", 2, t0, true, Intent::Withdrawing),
        ],
    };
    let d = decide(
        &input(local(false, Drain::None, LocalIntent::None), 1, 0, &view),
        t0 + ms(100),
    );
    assert_eq!(
        d.to_string(),
        "held: health failing; withdrawing web would leave 0 of 3 sites announcing (min_sites 1); \
         b: unreachable (timed out after 500ms), c: withdrawing"
    );
    assert_eq!(d.intent(), Intent::Held);
}

#[test]
fn withdrawing_intent_waits_for_reports_requested_after_it() {
    let t0 = Instant::now();
    let published_at = t0 + ms(10);
    let view = FleetView {
        sites: vec![
            ok("b", 1, t0, true, Intent::None),
            ok("c", 2, t0 + ms(20), true, Intent::None),
        ],
    };
    let d = decide(
        &input(
            local(
                false,
                Drain::None,
                LocalIntent::Withdrawing { published_at },
            ),
            2,
            0,
            &view,
        ),
        t0 + ms(100),
    );
    assert_eq!(
        d.to_string(),
        "withdraw pending: health failing; intent to withdraw web published, awaiting reports \
         requested after it; b: awaiting a report requested after our intent, c: announcing"
    );
}

#[test]
fn withdrawing_intent_withdraws_once_reports_after_it_confirm_min_sites() {
    let t0 = Instant::now();
    let published_at = t0 + ms(10);
    let view = FleetView {
        sites: vec![
            ok("b", 1, t0 + ms(11), true, Intent::None),
            ok("c", 2, t0, true, Intent::None),
        ],
    };
    let d = decide(
        &input(
            local(
                false,
                Drain::None,
                LocalIntent::Withdrawing { published_at },
            ),
            1,
            0,
            &view,
        ),
        t0 + ms(100),
    );
    assert_eq!(
        d.to_string(),
        "withdraw: health failing; withdrawing web leaves 1 of 3 sites announcing (min_sites 1); \
         b: announcing, c: awaiting a report requested after our intent"
    );
    assert_eq!(d.intent(), Intent::None);
}

#[test]
fn simultaneous_failures_hold_when_reports_after_the_intent_show_the_others_withdrawing() {
    let t0 = Instant::now();
    let published_at = t0 + ms(10);
    let view = FleetView {
        sites: vec![
            ok("b", 1, t0 + ms(20), true, Intent::Withdrawing),
            ok("c", 2, t0 + ms(30), true, Intent::Withdrawing),
        ],
    };
    let d = decide(
        &input(
            local(
                false,
                Drain::None,
                LocalIntent::Withdrawing { published_at },
            ),
            1,
            0,
            &view,
        ),
        t0 + ms(100),
    );
    assert_eq!(
        d.to_string(),
        "held: health failing; withdrawing web would leave 0 of 3 sites announcing (min_sites 1); \
         b: withdrawing, c: withdrawing"
    );
}

#[test]
fn withdrawing_intent_holds_when_no_report_arrives_within_intent_wait() {
    let t0 = Instant::now();
    let published_at = t0 + ms(10);
    let view = FleetView {
        sites: vec![
            ok("b", 1, t0, true, Intent::None),
            PeerSiteView {
                name: "c".into(),
                rank: 2,
                last_poll: None,
                failures: Default::default(),
                announcing: Default::default(),
            },
        ],
    };
    let d = decide(
        &input(
            local(
                false,
                Drain::None,
                LocalIntent::Withdrawing { published_at },
            ),
            1,
            0,
            &view,
        ),
        published_at + TIMING.intent_wait,
    );
    assert_eq!(
        d.to_string(),
        "held: health failing; withdrawing web would leave 0 of 3 sites announcing (min_sites 1); \
         b: no report since our intent, c: no report since our intent"
    );
}

#[test]
fn held_site_counts_held_sites_ranked_before_it_and_retries() {
    let t0 = Instant::now();
    let view = FleetView {
        sites: vec![
            ok("a", 0, t0, true, Intent::Held),
            ok("c", 2, t0, true, Intent::Held),
        ],
    };
    let mut i = input(
        local(false, Drain::None, LocalIntent::Held { since: t0 }),
        1,
        1,
        &view,
    );
    i.local_site = "b";
    let d = decide(&i, t0 + ms(100));
    assert_eq!(
        d.to_string(),
        "withdraw pending: health failing; intent to withdraw web published, awaiting reports \
         requested after it; a: held, ranked before us, c: held, ranked after us"
    );
}

#[test]
fn held_site_ranked_first_stays_held_while_the_others_are_held() {
    let t0 = Instant::now();
    let view = FleetView {
        sites: vec![
            ok("b", 1, t0, true, Intent::Held),
            ok("c", 2, t0, true, Intent::Held),
        ],
    };
    let d = decide(
        &input(
            local(false, Drain::None, LocalIntent::Held { since: t0 }),
            1,
            0,
            &view,
        ),
        t0 + ms(100),
    );
    assert_eq!(
        d.to_string(),
        "held: health failing; withdrawing web would leave 0 of 3 sites announcing (min_sites 1); \
         b: held, ranked after us, c: held, ranked after us"
    );
}

#[test]
fn stale_reports_and_unconfigured_or_withdrawn_services_do_not_count() {
    let t0 = Instant::now();
    let mut other = report("d", true, Intent::None);
    other.services.clear();
    let view = FleetView {
        sites: vec![
            ok("b", 1, t0, true, Intent::None),
            ok("c", 2, t0 + ms(6_000), false, Intent::None),
            polled("d", 3, t0 + ms(6_000), Ok(other)),
            PeerSiteView {
                name: "e".into(),
                rank: 4,
                last_poll: None,
                failures: Default::default(),
                announcing: Default::default(),
            },
        ],
    };
    let d = decide(
        &input(local(false, Drain::None, LocalIntent::None), 1, 0, &view),
        t0 + ms(6_500),
    );
    assert_eq!(
        d.to_string(),
        "held: health failing; withdrawing web would leave 0 of 5 sites announcing (min_sites 1); \
         b: unreachable (last report 6s 500ms old), c: not announcing, d: service not configured, \
         e: not polled yet"
    );
}

#[test]
fn drain_without_force_is_guarded_like_failing_health() {
    let t0 = Instant::now();
    let view = FleetView {
        sites: vec![ok("b", 1, t0, false, Intent::None)],
    };
    let d = decide(
        &input(
            local(true, Drain::Requested, LocalIntent::None),
            1,
            0,
            &view,
        ),
        t0,
    );
    assert_eq!(
        d.to_string(),
        "held: drained; withdrawing web would leave 0 of 2 sites announcing (min_sites 1); \
         b: not announcing"
    );
}

#[test]
fn a_stop_is_held_while_this_site_is_needed_and_withdraws_through_the_intent_otherwise() {
    let t0 = Instant::now();
    let stopping = |intent| local(false, Drain::Stopping, intent);
    let unreachable = FleetView {
        sites: vec![polled("b", 1, t0, Err(PollFailure::Status(503)))],
    };
    let d = decide(&input(stopping(LocalIntent::None), 1, 0, &unreachable), t0);
    assert_eq!(
        d.to_string(),
        "held: daemon stopping; withdrawing web would leave 0 of 2 sites announcing (min_sites 1); b: unreachable (HTTP status 503)"
    );
    // Enough sites: the same handshake as any drain, then the withdrawal.
    let announcing = FleetView {
        sites: vec![ok("b", 1, t0, true, Intent::None)],
    };
    let d = decide(&input(stopping(LocalIntent::None), 1, 0, &announcing), t0);
    assert!(matches!(d, Decision::PublishIntentAndWait { .. }), "{d}");
    let after = FleetView {
        sites: vec![ok("b", 1, t0 + ms(10), true, Intent::None)],
    };
    let published = LocalIntent::Withdrawing { published_at: t0 };
    let d = decide(&input(stopping(published), 1, 0, &after), t0 + ms(20));
    assert_eq!(
        d,
        Decision::Withdraw {
            reason: "daemon stopping; withdrawing web leaves 1 of 2 sites announcing (min_sites 1); b: announcing"
                .into(),
            forced: false,
        }
    );
}

#[test]
fn forced_drain_overrides_the_guard_and_says_so() {
    let t0 = Instant::now();
    let view = FleetView {
        sites: vec![ok("b", 1, t0, false, Intent::None)],
    };
    let d = decide(
        &input(local(true, Drain::Forced, LocalIntent::None), 1, 0, &view),
        t0,
    );
    assert_eq!(
        d.to_string(),
        "withdraw: forced drain overrides the guard: withdrawing web leaves 0 of 2 sites \
         announcing (min_sites 1); b: not announcing"
    );
    assert_eq!(d.status_word(), "forced");
    assert_eq!(d.verdict(), GuardVerdict::Allow);
}

#[test]
fn single_site_fleet_holds_a_failing_service() {
    let t0 = Instant::now();
    let view = FleetView::default();
    let d = decide(
        &input(local(false, Drain::None, LocalIntent::None), 1, 0, &view),
        t0,
    );
    assert_eq!(
        d.to_string(),
        "held: health failing; withdrawing web would leave 0 of 1 sites announcing (min_sites 1); \
         a is the only site"
    );
}

#[test]
fn recovered_site_announces_and_clears_its_intent() {
    let t0 = Instant::now();
    let view = FleetView::default();
    let l = local(
        true,
        Drain::None,
        LocalIntent::Withdrawing { published_at: t0 },
    );
    let d = decide(&input(l, 1, 0, &view), t0 + ms(5));
    assert_eq!(d, Decision::Announce);
    assert_eq!(l.intent.advance(&d, t0 + ms(6)), LocalIntent::None);
}

#[test]
fn local_intent_advances_keeping_the_first_publication_time() {
    let t0 = Instant::now();
    let t1 = t0 + ms(100);
    let wait = Decision::PublishIntentAndWait { reason: "r".into() };
    let hold = Decision::Hold {
        reason: "r".into(),
        hand_over_until: None,
    };
    let withdraw = Decision::Withdraw {
        reason: "r".into(),
        forced: false,
    };
    let cases = [
        (
            LocalIntent::None,
            &wait,
            LocalIntent::Withdrawing { published_at: t1 },
        ),
        (
            LocalIntent::Withdrawing { published_at: t0 },
            &wait,
            LocalIntent::Withdrawing { published_at: t0 },
        ),
        (
            LocalIntent::Held { since: t0 },
            &wait,
            LocalIntent::Withdrawing { published_at: t1 },
        ),
        (
            LocalIntent::Withdrawing { published_at: t0 },
            &hold,
            LocalIntent::Held { since: t1 },
        ),
        (
            LocalIntent::Held { since: t0 },
            &hold,
            LocalIntent::Held { since: t0 },
        ),
        (
            LocalIntent::Withdrawing { published_at: t0 },
            &withdraw,
            LocalIntent::None,
        ),
        (
            LocalIntent::Held { since: t0 },
            &Decision::Announce,
            LocalIntent::None,
        ),
    ];
    for (before, decision, after) in cases {
        assert_eq!(
            before.advance(decision, t1),
            after,
            "{before:?} + {decision}"
        );
        assert_eq!(after.wire(), decision.intent());
    }
}

#[test]
fn held_log_line_is_due_every_minute() {
    let t0 = Instant::now();
    assert!(held_log_due(None, t0));
    assert!(!held_log_due(Some(t0), t0 + ms(59_999)));
    assert!(held_log_due(Some(t0), t0 + HELD_LOG_INTERVAL));
}

const OLD: &str = "203.0.113.0/24";
const NEW: &str = "198.51.100.0/24";

fn entry(prefix: &str, announcing: bool, intent: Intent) -> ServiceReport {
    ServiceReport {
        name: "web".into(),
        prefixes: vec![prefix.parse().unwrap()],
        healthy: intent == Intent::None,
        announcing,
        intent,
    }
}

/// A site's report listing `web` once per entry (the live service, then pending removals).
fn listing(name: &str, rank: usize, at: Instant, services: Vec<ServiceReport>) -> PeerSiteView {
    polled(
        name,
        rank,
        at,
        Ok(SiteReport {
            version: REPORT_VERSION,
            site: name.into(),
            generation: 1,
            services,
            fleet_digest: None,
        }),
    )
}

/// A pending removal of `web`'s old prefix at site a.
fn removal<'a>(view: &'a FleetView, prefixes: &'a [IpNet], intent: LocalIntent) -> GuardInput<'a> {
    GuardInput {
        prefixes,
        ..input(local(false, Drain::Removed, intent), 2, 0, view)
    }
}

#[test]
fn a_site_announcing_only_the_new_prefix_does_not_count_for_the_old_one() {
    let t0 = Instant::now();
    let old = [OLD.parse().unwrap()];
    let view = FleetView {
        sites: vec![
            listing("b", 1, t0, vec![entry(NEW, true, Intent::None)]),
            listing("c", 2, t0, vec![entry(OLD, true, Intent::None)]),
        ],
    };
    let d = decide(&removal(&view, &old, LocalIntent::None), t0 + ms(10));
    assert_eq!(
        d.to_string(),
        "held: removed from the config; withdrawing web would leave 1 of 3 sites announcing \
         (min_sites 2); b: prefix not configured, c: announcing"
    );
}

#[test]
fn a_site_removing_the_old_prefix_too_counts_as_withdrawing_for_it_and_announcing_for_the_new() {
    let t0 = Instant::now();
    let old = [OLD.parse().unwrap()];
    let new = [NEW.parse().unwrap()];
    // b pushed the same prefix change: the new prefix announced, the old one pending.
    let b = vec![
        entry(NEW, true, Intent::None),
        entry(OLD, true, Intent::Withdrawing),
    ];
    let view = FleetView {
        sites: vec![
            listing("b", 1, t0, b),
            listing("c", 2, t0, vec![entry(OLD, true, Intent::None)]),
        ],
    };
    let d = decide(&removal(&view, &old, LocalIntent::None), t0 + ms(10));
    assert_eq!(
        d.to_string(),
        "held: removed from the config; withdrawing web would leave 1 of 3 sites announcing \
         (min_sites 2); b: withdrawing, c: announcing"
    );
    // The live service with the new prefix, failing at a, sees b announcing it.
    let live = GuardInput {
        prefixes: &new,
        ..input(local(false, Drain::None, LocalIntent::None), 1, 0, &view)
    };
    assert_eq!(sites_announcing(&live, t0 + ms(10)), ["b"]);
}

#[test]
fn a_pending_removal_goes_once_reports_after_its_intent_confirm_min_sites_for_its_prefix() {
    let t0 = Instant::now();
    let old = [OLD.parse().unwrap()];
    let announcing = |at| FleetView {
        sites: vec![
            listing(
                "b",
                1,
                at,
                vec![
                    entry(NEW, true, Intent::None),
                    entry(OLD, true, Intent::Held),
                ],
            ),
            listing("c", 2, at, vec![entry(OLD, true, Intent::None)]),
        ],
    };
    // b is held, but ranked after a: it does not count; c alone is not enough.
    let view = announcing(t0);
    let d = decide(&removal(&view, &old, LocalIntent::None), t0);
    assert!(matches!(d, Decision::Hold { .. }), "{d}");
    // With b announcing the old prefix as a live service, a publishes its intent…
    let view = FleetView {
        sites: vec![
            listing("b", 1, t0, vec![entry(OLD, true, Intent::None)]),
            listing("c", 2, t0, vec![entry(OLD, true, Intent::None)]),
        ],
    };
    let d = decide(&removal(&view, &old, LocalIntent::None), t0);
    assert_eq!(
        d.to_string(),
        "withdraw pending: removed from the config; intent to withdraw web published, awaiting \
         reports requested after it; b: announcing, c: announcing"
    );
    // …and goes only on reports requested after it.
    let published_at = t0 + ms(5);
    let intent = LocalIntent::Withdrawing { published_at };
    let d = decide(&removal(&view, &old, intent), t0 + ms(50));
    assert!(matches!(d, Decision::PublishIntentAndWait { .. }), "{d}");
    let view = FleetView {
        sites: vec![
            listing("b", 1, t0 + ms(6), vec![entry(OLD, true, Intent::None)]),
            listing("c", 2, t0 + ms(6), vec![entry(OLD, true, Intent::None)]),
        ],
    };
    let d = decide(&removal(&view, &old, intent), t0 + ms(50));
    assert_eq!(
        d.to_string(),
        "withdraw: removed from the config; withdrawing web leaves 2 of 3 sites announcing \
         (min_sites 2); b: announcing, c: announcing"
    );
}

// --- The hand-over (make-before-break): views made by `FleetView::record`, as the poller
// --- makes them, with `hand_over` 1 s.

const HAND_OVER: GuardTiming = GuardTiming {
    hand_over: Duration::from_secs(1),
    ..TIMING
};

/// `site`'s poll requested and seen at `at`: `web` announcing (intent none), not
/// announcing, or a failed poll.
fn seen(view: &mut FleetView, site: &str, at: Instant, announcing: Option<bool>) {
    let result = match announcing {
        Some(a) => Ok(report(site, a, Intent::None)),
        None => Err(PollFailure::Status(503)),
    };
    view.record(
        site,
        PollOutcome {
            requested_at: at,
            result,
        },
        at,
    );
}

fn failing<'a>(view: &'a FleetView, min_sites: usize, intent: LocalIntent) -> GuardInput<'a> {
    GuardInput {
        timing: HAND_OVER,
        ..input(local(false, Drain::None, intent), min_sites, 0, view)
    }
}

#[test]
fn a_site_announcing_for_less_than_the_hand_over_is_not_counted_and_the_hold_ends_when_it_is_up() {
    let t0 = Instant::now();
    let mut view = FleetView::unpolled([(1, "b"), (2, "c")]);
    seen(&mut view, "b", t0, Some(true));
    seen(&mut view, "c", t0, Some(false));
    seen(&mut view, "b", t0 + ms(300), Some(true));
    let d = decide(&failing(&view, 1, LocalIntent::None), t0 + ms(320));
    assert_eq!(
        d.to_string(),
        "held: health failing; waiting 680ms for the hand-over (make-before-break: the other \
         sites' routes must have been announced for hand_over before web leaves here); until \
         then withdrawing web would leave 0 of 3 sites announcing (min_sites 1); b: announcing \
         for 320ms of hand_over 1s, c: not announcing"
    );
    assert_eq!(d.hand_over_until(), Some(t0 + Duration::from_secs(1)));
    assert_eq!(d.status_word(), "held");
    // Nothing else happens: at the deadline b counts, and the intent protocol goes on.
    let d = decide(&failing(&view, 1, LocalIntent::None), t0 + ms(1000));
    assert!(matches!(d, Decision::PublishIntentAndWait { .. }), "{d}");
    assert_eq!(d.hand_over_until(), None);
    // Off: b counts at once.
    let off = GuardInput {
        timing: TIMING,
        ..failing(&view, 1, LocalIntent::None)
    };
    assert!(matches!(
        decide(&off, t0 + ms(320)),
        Decision::PublishIntentAndWait { .. }
    ));
}

#[test]
fn a_report_saying_not_announcing_or_a_failed_poll_starts_the_hand_over_again() {
    let t0 = Instant::now();
    // (what b's polls said at 0, 500 and 600 ms) → how long b has announced at 1200 ms.
    let table = [
        ([Some(true), Some(true), Some(true)], None),
        ([Some(true), Some(false), Some(true)], Some("600ms")),
        ([Some(true), None, Some(true)], Some("600ms")),
        ([None, Some(true), Some(true)], Some("700ms")),
    ];
    for (polls, waiting) in table {
        let mut view = FleetView::unpolled([(1, "b")]);
        for (at, said) in [0, 500, 600].into_iter().zip(polls) {
            seen(&mut view, "b", t0 + ms(at), said);
        }
        let d = decide(&failing(&view, 1, LocalIntent::None), t0 + ms(1200));
        match waiting {
            None => assert!(
                matches!(d, Decision::PublishIntentAndWait { .. }),
                "{polls:?}: {d}"
            ),
            Some(for_) => assert!(
                d.to_string()
                    .contains(&format!("b: announcing for {for_} of hand_over 1s")),
                "{polls:?}: {d}"
            ),
        }
    }
}

#[test]
fn a_hold_too_few_sites_would_lift_even_after_the_hand_over_is_a_plain_hold() {
    let t0 = Instant::now();
    let mut view = FleetView::unpolled([(1, "b"), (2, "c")]);
    seen(&mut view, "b", t0, Some(true));
    seen(&mut view, "c", t0, None);
    let d = decide(&failing(&view, 2, LocalIntent::None), t0 + ms(200));
    assert_eq!(
        d.to_string(),
        "held: health failing; withdrawing web would leave 0 of 3 sites announcing \
         (min_sites 2); b: announcing for 200ms of hand_over 1s, c: unreachable (HTTP status \
         503)"
    );
    assert_eq!(d.hand_over_until(), None);
}

#[test]
fn a_confirmation_after_the_intent_from_a_site_whose_run_began_again_holds_for_the_hand_over() {
    let t0 = Instant::now();
    let mut view = FleetView::unpolled([(1, "b")]);
    seen(&mut view, "b", t0, Some(true));
    let d = decide(&failing(&view, 1, LocalIntent::None), t0 + ms(1500));
    assert!(matches!(d, Decision::PublishIntentAndWait { .. }), "{d}");
    let intent = LocalIntent::Withdrawing {
        published_at: t0 + ms(1500),
    };
    // b went away and came back between our intent and its confirmation.
    seen(&mut view, "b", t0 + ms(1510), Some(false));
    seen(&mut view, "b", t0 + ms(1600), Some(true));
    let d = decide(&failing(&view, 1, intent), t0 + ms(1700));
    assert!(
        d.to_string()
            .contains("b: announcing for 100ms of hand_over 1s"),
        "{d}"
    );
    assert_eq!(d.hand_over_until(), Some(t0 + ms(2600)));
}
