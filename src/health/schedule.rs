//! When probes start: probe wake coalescing (issue 13, CPU per probe result at 10 as at
//! 1,000 services). Pure arithmetic of (ideal deadline, now, period, probe rate): no
//! timers, no I/O; the runner ([`super::runner`]) sleeps until what this returns.
//!
//! Every check keeps its *ideal* schedule as before — the first probe at a random offset
//! within the interval (splay), each period scaled by a factor in [0.9, 1.1] (jitter),
//! each ideal deadline the previous one plus the period (no drift) — but starts a probe at
//! the point of a slot grid nearest to its ideal deadline, its **due time**. Checks whose
//! ideal deadlines fall in one slot are due at the same instant, so a single timer expiry
//! of the probe thread starts all of them in one turn of its runtime, and their sockets'
//! answers tend to arrive together too. At a low probe rate every probe used to wake an
//! idle CPU on its own (the benchmark's floor row: 206 µs per connection at 20 a second,
//! 63 µs at 2,000), so sharing wakes is what brings the cost per result at 10 services
//! near the one at 1,000.
//!
//! - The grid's slot is a power of two of milliseconds (tokio's timer resolution is one
//!   millisecond), so grids of different widths nest: every point of a coarser grid is a
//!   point of the finer ones, and checks on different grids still meet there.
//! - Its width follows the probe rate of the thread ([`base_slot`]): about
//!   [`CHECKS_PER_WAKE`] checks per slot, so a low rate gets wide slots (several checks per
//!   wake at 20 checks a second) and a high one narrow slots (a few milliseconds at 2,000
//!   a second, where the wakes are full anyway).
//! - It never exceeds a third of the period being scheduled nor [`MAX_SLOT`]
//!   ([`slot_for`]): rounding to the nearest point moves a probe by at most half a slot,
//!   so by at most a sixth of its period (at 1 s: a 256 ms slot, ±128 ms at most, at 20
//!   checks a second; a 4 ms slot, ±2 ms, at 2,000). Measured at 10 services, a slot of
//!   an eighth of the period (64 ms at 1 s) cost 1.3–1.6× the CPU per result of a third
//!   (256 ms), a quarter (128 ms) 1.25× (docs/benchmarks.md, "wake13, round 6"). Because the next ideal deadline is computed from the previous *ideal* deadline, not
//!   from the rounded one, the rounding never accumulates: on average a check is probed
//!   exactly at its interval, and the ±10 % jitter still spreads checks over slots.
//! - The due time is what the start delay (`anyguard_probe_start_delay_seconds`) is
//!   measured from: the instant the schedule chose, so the histogram shows real lateness,
//!   not the rounding.
//! - A due time never lies in the past ([`due`]): a probe whose ideal deadline has already
//!   passed (it overran, or the thread was late) starts at once, as before.
//!
//! The probe threads are chosen the same way ([`probe_threads_for`]): as few as the
//! configured load needs, since every thread wakes for its own checks only, and one
//! thread waking for all of them shares more wakes than four each waking for a quarter.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::{CheckConfig, CheckKind};

/// The number of checks the grid aims to start per wake of a probe thread.
pub(crate) const CHECKS_PER_WAKE: f64 = 8.0;

/// The widest slot, whatever the rate.
pub(crate) const MAX_SLOT: Duration = Duration::from_millis(1024);

/// A slot is at most this fraction of the period being scheduled (half of it is the most
/// a probe moves from its ideal deadline).
const MAX_SLOT_PER_PERIOD: u32 = 3;

/// The load one probe thread carries before another is used, in plain probes a second
/// (a plain HTTP or TCP probe over loopback costs ~50–90 µs of CPU: ~20–35 % of a core).
pub(crate) const THREAD_LOAD: f64 = 4000.0;

/// What a probe that does a TLS handshake or starts a process costs, in plain probes
/// (a TLS handshake costs about a millisecond of CPU, as does a fork and exec).
const HEAVY_PROBE: f64 = 20.0;

/// The largest power of two of milliseconds not above `limit`; zero below a millisecond.
fn pow2_millis_at_most(limit: Duration) -> Duration {
    let ms = limit.as_millis();
    if ms == 0 {
        return Duration::ZERO;
    }
    let ms = u64::try_from(ms).unwrap_or(u64::MAX);
    Duration::from_millis(1u64 << (63 - ms.leading_zeros()))
}

/// The grid's slot for a probe thread running `checks_per_second` checks: wide enough for
/// about [`CHECKS_PER_WAKE`] checks a slot, from 1 ms up to [`MAX_SLOT`].
pub(crate) fn base_slot(checks_per_second: f64) -> Duration {
    // Also NaN: no rate to go by.
    if checks_per_second.is_nan() || checks_per_second <= 0.0 {
        return MAX_SLOT;
    }
    let wanted = CHECKS_PER_WAKE / checks_per_second;
    if wanted >= MAX_SLOT.as_secs_f64() {
        return MAX_SLOT;
    }
    pow2_millis_at_most(Duration::from_secs_f64(wanted)).max(Duration::from_millis(1))
}

/// The slot for a probe due after `period`: the thread's `base` slot, at most a third of
/// the period (a power of two of milliseconds, or zero — no rounding — below 3 ms).
pub(crate) fn slot_for(base: Duration, period: Duration) -> Duration {
    base.min(pow2_millis_at_most(period / MAX_SLOT_PER_PERIOD))
}

/// The due time of a probe whose ideal deadline is `ideal`: the point of the grid
/// `epoch + n × slot` nearest to it, or `now` if that has passed (and `ideal` itself with
/// a zero slot).
pub(crate) fn due(epoch: Instant, ideal: Instant, now: Instant, slot: Duration) -> Instant {
    if ideal <= now {
        return now;
    }
    let slot_ns = slot.as_nanos();
    if slot_ns == 0 {
        return ideal;
    }
    let since = ideal.saturating_duration_since(epoch).as_nanos();
    let n = (since + slot_ns / 2) / slot_ns;
    match u64::try_from(n * slot_ns) {
        Ok(ns) => (epoch + Duration::from_nanos(ns)).max(now),
        Err(_) => ideal,
    }
}

/// A check's share of a probe thread, in plain probes a second: its probes a second at
/// its interval, weighted by what one costs.
pub(crate) fn check_load(check: &CheckConfig) -> f64 {
    let weight = match &check.kind {
        CheckKind::Http { tls: Some(_), .. } | CheckKind::Command { .. } => HEAVY_PROBE,
        _ => 1.0,
    };
    weight * checks_per_second(check)
}

/// A check's probes a second at its (stable) interval.
pub(crate) fn checks_per_second(check: &CheckConfig) -> f64 {
    let secs = check.interval.as_secs_f64();
    if secs > 0.0 {
        1.0 / secs
    } else {
        0.0
    }
}

/// How many of the `installed` probe threads carry a load of `load` plain probes a
/// second: one per [`THREAD_LOAD`], at least one, at most `installed`.
pub(crate) fn probe_threads_for(load: f64, installed: usize) -> usize {
    let wanted = (load / THREAD_LOAD).ceil();
    let wanted = if wanted.is_finite() && wanted >= 1.0 {
        // Bounded by `installed` right after; the cast saturates.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let n = wanted as usize;
        n
    } else {
        1
    };
    wanted.clamp(1, installed.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_base_slot_widens_as_the_rate_falls() {
        let cases = [
            // (checks a second, slot in ms)
            (20.0, 256),   // 10 services × 2 checks at 1 s: 8/20 = 400 ms → 256
            (200.0, 32),   // 40 ms → 32
            (2000.0, 4),   // 4 ms
            (20_000.0, 1), // 0.4 ms → at least a millisecond
            (1.0, 1024),   // 8 s → capped
            (0.0, 1024),   // nothing to share a wake with
        ];
        for (rate, want) in cases {
            assert_eq!(base_slot(rate), ms(want), "{rate} checks/s");
        }
    }

    #[test]
    fn a_slot_is_at_most_a_third_of_the_period() {
        let cases = [
            // (base, period, slot), ms
            (256, 1000, 256),  // 333 → 256: a probe moves by 128 ms at most
            (1024, 1000, 256), // a lower rate: still at most a third
            (256, 500, 128),   // the fast interval of a 1 s check: 166 → 128
            (64, 1000, 64),    // a higher rate: the base
            (4, 1000, 4),
            (256, 50, 16), // a 50 ms check: ±8 ms
            (256, 10, 2),  // 10 ms interval (the least): 3 → 2 ms
            (256, 2, 0),   // below 3 ms: no rounding
            (1024, 60_000, 1024),
        ];
        for (base, period, want) in cases {
            assert_eq!(
                slot_for(ms(base), ms(period)),
                ms(want),
                "base {base} period {period}"
            );
        }
    }

    #[test]
    fn the_due_time_is_the_nearest_grid_point_and_never_in_the_past() {
        let epoch = Instant::now();
        let cases = [
            // (ideal, now, slot, due), ms after the epoch
            (1000, 0, 64, 1024),    // 1000 is nearer 1024 than 960
            (980, 0, 64, 960),      // rounded down: at most half a slot early
            (992, 0, 64, 1024),     // half way: up
            (1000, 990, 64, 1024),  // the point is still ahead
            (1000, 1000, 64, 1000), // due now: at once, not at the next point
            (1500, 1600, 64, 1600), // overran: at once
            (970, 965, 64, 965),    // the nearest point (960) has passed: now
            (1000, 0, 0, 1000),     // no grid
            (1234, 0, 1, 1234),     // 1 ms grid: already on it
        ];
        for (ideal, now, slot, want) in cases {
            assert_eq!(
                due(epoch, epoch + ms(ideal), epoch + ms(now), ms(slot)),
                epoch + ms(want),
                "ideal {ideal} now {now} slot {slot}"
            );
        }
    }

    #[test]
    fn rounding_never_accumulates_a_check_keeps_its_interval() {
        // Ideal deadlines 1000 ms apart (no jitter) on a 256 ms grid: every due time within
        // half a slot of its ideal deadline, the thousandth as close as the first.
        let epoch = Instant::now();
        let slot = slot_for(base_slot(20.0), ms(1000));
        let mut ideal = epoch + ms(337);
        let mut last = None;
        for _ in 0..1000 {
            let now = ideal - ms(900);
            let d = due(epoch, ideal, now, slot);
            let off = d.max(ideal) - d.min(ideal);
            assert!(off <= slot / 2, "{off:?} from the ideal deadline");
            last = Some(d);
            ideal += ms(1000);
        }
        let last = last.unwrap_or_else(|| panic!("no due time"));
        let total = last.saturating_duration_since(epoch);
        // 999 periods after the first ideal deadline (337 ms), within half a slot.
        let want = ms(337 + 999 * 1000);
        let diff = total.abs_diff(want);
        assert!(diff <= slot / 2, "{total:?} after the epoch, want {want:?}");
    }

    #[test]
    fn checks_due_in_one_slot_share_a_due_time() {
        let epoch = Instant::now();
        let slot = ms(64);
        let dues: Vec<Instant> = [1000, 1010, 1040, 1055]
            .iter()
            .map(|t| due(epoch, epoch + ms(*t), epoch, slot))
            .collect();
        assert!(dues.iter().all(|d| *d == epoch + ms(1024)), "{dues:?}");
    }

    #[test]
    fn probe_threads_follow_the_load() {
        let cases = [
            // (plain probes a second, installed, threads)
            (20.0, 4, 1),
            (2000.0, 4, 1),
            (4000.0, 4, 1),
            (4001.0, 4, 2),
            (20_000.0, 4, 4), // 1,000 https checks a second
            (20_000.0, 2, 2), // two cores
            (1e9, 4, 4),
            (0.0, 4, 1),
            (100.0, 0, 1),
            (f64::NAN, 4, 1),
        ];
        for (load, installed, want) in cases {
            assert_eq!(
                probe_threads_for(load, installed),
                want,
                "{load} on {installed}"
            );
        }
    }

    #[test]
    fn tls_and_command_checks_weigh_more() {
        let plain = crate::config::CheckConfig {
            name: "c".into(),
            kind: CheckKind::Tcp {
                address: std::net::SocketAddr::from(([127, 0, 0, 1], 80)),
            },
            interval: ms(500),
            fast_interval: ms(250),
            timeout: ms(250),
            rise: 1,
            fall: 1,
        };
        let command = CheckConfig {
            kind: CheckKind::Command {
                argv: vec!["true".into()],
            },
            ..plain.clone()
        };
        assert!((check_load(&plain) - 2.0).abs() < 1e-9);
        assert!((check_load(&command) - 40.0).abs() < 1e-9);
        assert!((checks_per_second(&command) - 2.0).abs() < 1e-9);
    }
}
