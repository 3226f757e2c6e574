use std::time::{Duration, Instant};

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn a_site_counts_only_once_seen_announcing_for_the_hand_over() {
    let t0 = Instant::now();
    let hand_over = Duration::from_secs(1);
    // (seen announcing since, now, hand_over) → counts, or how long it has announced.
    type Row = (Option<Duration>, Duration, Duration, Result<(), Duration>);
    let table: [Row; 7] = [
        // Seen 320 ms ago: not yet, and the wait says for how long it has announced.
        (Some(ms(0)), ms(320), hand_over, Err(ms(320))),
        // Exactly the hand-over: counts.
        (Some(ms(0)), ms(1000), hand_over, Ok(())),
        (Some(ms(0)), ms(5000), hand_over, Ok(())),
        // Not seen announcing in the version it counts by: as if seen just now.
        (None, ms(5000), hand_over, Err(ms(0))),
        // Seen "after" now (recorded by another task a moment later): 0, never negative.
        (Some(ms(900)), ms(800), hand_over, Err(ms(0))),
        // Off: counts at once, seen or not.
        (Some(ms(0)), ms(0), Duration::ZERO, Ok(())),
        (None, ms(0), Duration::ZERO, Ok(())),
    ];
    for (since, now, hand_over, want) in table {
        let clock = Clock {
            now: t0 + now,
            hand_over,
        };
        let got = judge(since.map(|s| t0 + s), clock).map_err(|w| w.announcing_for);
        assert_eq!(
            got, want,
            "since {since:?}, now {now:?}, hand_over {hand_over:?}"
        );
    }
}

#[test]
fn a_wait_ends_hand_over_after_the_run_began_and_says_how_far_it_is() {
    let t0 = Instant::now();
    let clock = Clock {
        now: t0 + ms(320),
        hand_over: Duration::from_secs(1),
    };
    let wait = judge(Some(t0), clock).unwrap_err();
    assert_eq!(wait.ends, t0 + Duration::from_secs(1));
    assert_eq!(wait.to_string(), "announcing for 320ms of hand_over 1s");
    // A run not seen yet waits the whole hand-over from now.
    let wait = judge(None, clock).unwrap_err();
    assert_eq!(wait.ends, t0 + ms(1320));
}

#[test]
fn a_hold_waits_for_the_hand_over_only_when_the_waits_would_make_up_min_sites() {
    let t0 = Instant::now();
    let at = |n| t0 + ms(n);
    // (counted, min_sites, ends of the waits) → when the withdrawal could go.
    let table: [(usize, usize, Vec<Instant>, Option<Instant>); 6] = [
        // Enough count already: nothing to wait for.
        (1, 1, vec![at(500)], None),
        // One more needed, one waiting: its end.
        (0, 1, vec![at(500)], Some(at(500))),
        // One more needed, two waiting: the earlier end.
        (1, 2, vec![at(900), at(400)], Some(at(400))),
        // Two more needed: the second end.
        (0, 2, vec![at(900), at(400), at(700)], Some(at(700))),
        // Too few even after every wait: a plain hold.
        (0, 2, vec![at(900)], None),
        (0, 1, vec![], None),
    ];
    for (counted, min_sites, ends, want) in table {
        assert_eq!(
            release_at(counted, min_sites, &ends),
            want,
            "counted {counted}, min_sites {min_sites}"
        );
    }
}

#[test]
fn a_run_goes_on_while_announcing_and_ends_with_anything_else() {
    let t0 = Instant::now();
    let mut runs: Continuity<&str> = Continuity::default();
    runs.observe("b", true, 4, t0);
    runs.observe("b", true, 5, t0 + ms(100));
    // Goes on, and follows the version.
    assert_eq!(runs.since(&"b", 5), Some(t0));
    // A version it has not followed says nothing.
    assert_eq!(runs.since(&"b", 6), None);
    // A clone shares the map until one of them changes.
    let before = runs.clone();
    runs.observe("b", false, 6, t0 + ms(200));
    assert_eq!(runs.since(&"b", 6), None);
    assert_eq!(before.since(&"b", 5), Some(t0));
    // A new run starts when it is seen announcing again.
    runs.observe("b", true, 7, t0 + ms(300));
    assert_eq!(runs.since(&"b", 7), Some(t0 + ms(300)));
    runs.forget(&"b");
    assert_eq!(runs.get(&"b"), None);
    runs.observe("c", true, 0, t0);
    runs.observe("d", true, 0, t0);
    runs.retain(|k, _| *k == "c");
    assert!(runs.get(&"c").is_some() && runs.get(&"d").is_none());
    runs.clear();
    assert_eq!(runs.get(&"c"), None);
}
