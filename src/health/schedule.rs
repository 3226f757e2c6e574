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
//! - It never exceeds a third of the interval being scheduled (`interval`, or
//!   `fast_interval` while the check's state changes) nor [`MAX_SLOT`] ([`slot_for`]):
//!   rounding to the nearest point moves a probe by at most half a slot, so by at most a
//!   sixth of its interval (at 1 s: a 256 ms slot, ±128 ms at most, at 20
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
//!
//! **A service's phase** ([`CheckSchedule`]). The checks of a service at one interval
//! share their ideal deadlines: the first at the same splay offset, each next one the same
//! jittered interval later, every draw made from the service's seed *by the deadline's
//! index* (not from a generator each check advances on its own), so that the due times
//! of a service's checks fall in one slot and one wake starts them all. A check leaves
//! that phase when it runs at its fast interval (its state is changing), when a probe is
//! run on request, or when a probe overran its next deadline. Back at its interval it
//! rejoins the phase: each period it then takes stays within the jitter's own range,
//! `[1 - JITTER, 1 + JITTER] × interval`, so a check never probes sooner (or later) than
//! its interval allows; it is the distance to the phase's point nearest one interval
//! ahead when that lies in the range (the check is back on the phase), else the end of
//! the range towards that point (it closes in by up to a fifth of the interval a probe,
//! about a tenth on average: a handful of probes). Without jitter (tests) the range is
//! one interval wide, and a check that left its phase keeps its offset. The slot a due
//! time is rounded on is the one of the check's nominal interval, not of the jittered
//! period, so that checks on one ideal deadline always share its due time.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::{CheckConfig, CheckKind};

/// Jitter: every period is scaled by a factor in `[1 - JITTER, 1 + JITTER]`.
pub(crate) const JITTER: f64 = 0.1;

/// The draws made from a service's seed, by what they are for (a draw's key starts with
/// one of these, so no two purposes share a draw).
const SPLAY_DRAW: u64 = 1;
const PHASE_DRAW: u64 = 2;
const FAST_DRAW: u64 = 3;

/// The number of checks the grid aims to start per wake of a probe thread.
pub(crate) const CHECKS_PER_WAKE: f64 = 8.0;

/// The widest slot, whatever the rate.
pub(crate) const MAX_SLOT: Duration = Duration::from_millis(1024);

/// A slot is at most this fraction of the period being scheduled (half of it is the most
/// a probe moves from its ideal deadline).
const MAX_SLOT_PER_PERIOD: u32 = 3;

/// The load one probe thread carries before another is used, in plain probes a second
/// (a plain HTTP or TCP probe over loopback costs ~50–90 µs of CPU: ~20–35 % of a core).
const THREAD_LOAD: f64 = 4000.0;

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

/// The slot for a probe of a check at `interval` (not the jittered period: the checks on
/// one ideal deadline must get one due time): the thread's `base` slot, at most a third
/// of the interval (a power of two of milliseconds, or zero — no rounding — below 3 ms).
pub(crate) fn slot_for(base: Duration, interval: Duration) -> Duration {
    base.min(pow2_millis_at_most(interval / MAX_SLOT_PER_PERIOD))
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

/// SplitMix64's output function (Steele, Lea, Flood, "Fast splittable pseudorandom number
/// generators", 2014): a well-mixed 64-bit value of `x`.
fn mix(x: u64) -> u64 {
    let x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A uniform draw in `[0, 1)` from a service's `seed` for the key (`purpose`, `a`, `b`):
/// the same for every check of the service that asks for it, whatever it drew before.
fn draw(seed: u64, purpose: u64, a: u64, b: u64) -> f64 {
    let x = mix(mix(mix(seed ^ purpose) ^ a) ^ b);
    // The top 53 bits: exact in an f64, and below 2^53, so the quotient is below 1.
    #[allow(clippy::cast_precision_loss)]
    let unit = (x >> 11) as f64 / (1u64 << 53) as f64;
    unit
}

/// `period` scaled by the factor `1 - jitter + 2 × jitter × unit` (`unit` in `[0, 1)`).
fn jittered(period: Duration, jitter: f64, unit: f64) -> Duration {
    period.mul_f64(1.0 - jitter + 2.0 * jitter * unit)
}

/// The ideal deadlines the checks of a service at one interval share: point 0 at the
/// splay offset, point k + 1 a jittered interval after point k (draw k), with a cursor.
#[derive(Debug, Clone)]
struct Phase {
    seed: u64,
    interval: Duration,
    /// [`JITTER`], or 0 without jitter.
    jitter: f64,
    /// The cursor: the index of `point`, and the point.
    k: u64,
    point: Instant,
}

impl Phase {
    /// The period from point `k` to point `k + 1`.
    fn period(&self, k: u64) -> Duration {
        jittered(
            self.interval,
            self.jitter,
            draw(self.seed, PHASE_DRAW, k, 0),
        )
    }

    /// Moves the cursor to the next point.
    fn forward(&mut self) {
        self.point += self.period(self.k);
        self.k += 1;
    }

    /// Moves the cursor to the point nearest `t` (the first one at the least).
    fn seek_nearest(&mut self, t: Instant) {
        if self.interval.is_zero() {
            return;
        }
        // Bounded: every step moves at least (1 - JITTER) × interval (the config's least
        // interval is 10 ms), and the cursor never goes back more than one point.
        while self.point < t {
            self.forward();
        }
        let Some(k) = self.k.checked_sub(1) else {
            return;
        };
        let Some(previous) = self.point.checked_sub(self.period(k)) else {
            return;
        };
        if t.saturating_duration_since(previous) < self.point.saturating_duration_since(t) {
            self.k = k;
            self.point = previous;
        }
    }
}

/// One check's ideal schedule (splay, jitter, no drift, fast interval) on its service's
/// phase (module doc): what the runner asks, after every probe, for the next deadline.
#[derive(Debug, Clone)]
pub(crate) struct CheckSchedule {
    phase: Phase,
    fast_interval: Duration,
    /// The check's ideal deadline: the phase's point under the cursor while `on_phase`.
    ideal: Instant,
    on_phase: bool,
    /// The key of the next fast period's draw: the phase index at which the check left
    /// its phase, and the fast periods since (so that the checks of a service that leave
    /// it together, as at the start, keep probing together at their fast interval).
    fast_draw: (u64, u64),
}

impl CheckSchedule {
    /// The schedule of a check at `interval` (and `fast_interval` while its state is
    /// changing) whose service drew `seed`, started at `start`: its first ideal deadline
    /// is at the service's splay offset within the interval (at `start` without splay).
    pub(crate) fn new(
        start: Instant,
        seed: u64,
        interval: Duration,
        fast_interval: Duration,
        splay: bool,
        jitter: bool,
    ) -> Self {
        let offset = if splay {
            interval.mul_f64(draw(seed, SPLAY_DRAW, 0, 0))
        } else {
            Duration::ZERO
        };
        let phase = Phase {
            seed,
            interval,
            jitter: if jitter { JITTER } else { 0.0 },
            k: 0,
            point: start + offset,
        };
        CheckSchedule {
            ideal: phase.point,
            phase,
            fast_interval,
            on_phase: true,
            fast_draw: (0, 0),
        }
    }

    /// The current ideal deadline.
    pub(crate) fn ideal(&self) -> Instant {
        self.ideal
    }

    /// Whether the current ideal deadline is the service's (module doc).
    #[cfg(test)]
    fn on_phase(&self) -> bool {
        self.on_phase
    }

    /// After a probe: the next ideal deadline, and the nominal interval it was scheduled
    /// at (the slot's measure, [`slot_for`]). `changing`: the check's state is changing,
    /// so it runs at its fast interval; `manual`: the probe ran on request, started then,
    /// and the schedule restarts from it; `now`: a deadline already past is now (the
    /// probe starts at once, with no burst of catch-up probes after an overrun).
    pub(crate) fn next(
        &mut self,
        changing: bool,
        manual: Option<Instant>,
        now: Instant,
    ) -> (Instant, Duration) {
        let anchor = match manual {
            Some(started) => {
                self.leave();
                started
            }
            None => self.ideal,
        };
        let interval = self.phase.interval;
        // A fast interval equal to the interval is no reason to leave the phase.
        let (next, nominal) = if changing && self.fast_interval < interval {
            self.leave();
            let (k, n) = self.fast_draw;
            self.fast_draw.1 += 1;
            let unit = draw(self.phase.seed, FAST_DRAW, k, n);
            let period = jittered(self.fast_interval, self.phase.jitter, unit);
            (anchor + period, self.fast_interval)
        } else if self.on_phase {
            self.phase.forward();
            (self.phase.point, interval)
        } else {
            (self.rejoin(anchor), interval)
        };
        if next < now {
            self.ideal = now;
            self.on_phase = false;
        } else {
            self.ideal = next;
        }
        (self.ideal, nominal)
    }

    /// Off the phase from now on; the fast draws are keyed from the phase index left.
    fn leave(&mut self) {
        if self.on_phase {
            self.on_phase = false;
            self.fast_draw = (self.phase.k, 0);
        }
    }

    /// The next ideal deadline of a check off its phase, at its interval, after `anchor`:
    /// a period within the jitter's range, onto the phase's point nearest one interval
    /// ahead, or as near to it as the range allows.
    fn rejoin(&mut self, anchor: Instant) -> Instant {
        let interval = self.phase.interval;
        let least = interval.mul_f64(1.0 - self.phase.jitter);
        let most = interval.mul_f64(1.0 + self.phase.jitter);
        self.phase.seek_nearest(anchor + interval);
        let to_phase = self.phase.point.saturating_duration_since(anchor);
        let next = anchor + to_phase.clamp(least, most);
        self.on_phase = next == self.phase.point;
        next
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

    /// The ideal deadlines of `schedule` over `n` probes, each probe's state changing
    /// when `changing(probe number)` says so.
    fn run(
        schedule: &mut CheckSchedule,
        n: usize,
        changing: impl Fn(usize) -> bool,
    ) -> Vec<Instant> {
        let mut ideals = vec![schedule.ideal()];
        for i in 0..n {
            // Every probe ends before its next deadline (no overrun).
            let now = schedule.ideal();
            let (ideal, _) = schedule.next(changing(i), None, now);
            ideals.push(ideal);
        }
        ideals
    }

    fn check(start: Instant, seed: u64, interval: u64, fast: u64) -> CheckSchedule {
        CheckSchedule::new(start, seed, ms(interval), ms(fast), true, true)
    }

    #[test]
    fn a_services_checks_at_their_interval_share_every_ideal_deadline() {
        let t0 = Instant::now();
        for seed in 0..50 {
            let a = run(&mut check(t0, seed, 1000, 250), 100, |_| false);
            let b = run(&mut check(t0, seed, 1000, 250), 100, |_| false);
            assert_eq!(a, b, "seed {seed}");
            // Splay within the interval, every period within the jitter's range.
            assert!(a[0] >= t0 && a[0] < t0 + ms(1000), "seed {seed}");
            for w in a.windows(2) {
                let period = w[1] - w[0];
                assert!(
                    period >= ms(900) && period <= ms(1100),
                    "seed {seed}: {period:?}"
                );
            }
        }
        // Another service, another phase.
        let other = run(&mut check(t0, 1, 1000, 250), 3, |_| false);
        assert_ne!(run(&mut check(t0, 2, 1000, 250), 3, |_| false), other);
    }

    #[test]
    fn checks_leaving_their_phase_together_stay_together_at_the_fast_interval() {
        // As at the start: every check unknown, on its fast interval until up.
        let t0 = Instant::now();
        let changing = |i: usize| i < 5;
        let a = run(&mut check(t0, 9, 1000, 250), 30, changing);
        let b = run(&mut check(t0, 9, 1000, 250), 30, changing);
        assert_eq!(a, b);
        let fast = a[1] - a[0];
        assert!(fast >= ms(225) && fast <= ms(275), "{fast:?}");
    }

    #[test]
    fn a_check_back_from_its_fast_interval_rejoins_its_services_phase_never_sooner_than_its_interval_allows(
    ) {
        // Check b stays on the service's phase; check a runs probes 10 to 13 at its fast
        // interval (its target failed, then recovered), then at its interval again.
        let t0 = Instant::now();
        let mut slowest = 0;
        for seed in 0..500 {
            let b = run(&mut check(t0, seed, 1000, 300), 60, |_| false);
            let mut a_schedule = check(t0, seed, 1000, 300);
            let a = run(&mut a_schedule, 40, |i| (10..14).contains(&i));
            // Off the phase at its fast interval...
            assert!(
                a[11..=14].iter().all(|t| !b.contains(t)),
                "seed {seed}: fast deadlines on the phase"
            );
            // ... never sooner nor later than the interval's jitter allows once back ...
            for (i, w) in a.windows(2).enumerate().skip(14) {
                let period = w[1] - w[0];
                assert!(
                    period >= ms(900) && period <= ms(1100),
                    "seed {seed}, probe {i}: {period:?}"
                );
            }
            // ... and back on it within a few probes, for good.
            let back = (14..a.len())
                .find(|&i| a[i..].iter().all(|t| b.contains(t)))
                .unwrap_or_else(|| panic!("seed {seed}: never back: {a:?} {b:?}"));
            slowest = slowest.max(back - 14);
            assert!(a_schedule.on_phase(), "seed {seed}");
        }
        // A fifth of an interval a probe at most, a tenth on average, from at most half an
        // interval away: 7 probes at the most over these 500 seeds (10 in 20,000 trials of
        // the same rule in a simulation).
        assert!(slowest <= 10, "{slowest} probes to rejoin");
    }

    #[test]
    fn without_jitter_a_check_rejoins_only_when_its_fast_periods_end_on_the_phase() {
        let t0 = Instant::now();
        let exact = |fast| CheckSchedule::new(t0, 1, ms(1000), ms(fast), false, false);
        let at = |v: Vec<Instant>| -> Vec<u64> {
            v.iter()
                .map(|t| u64::try_from((*t - t0).as_millis()).unwrap_or(0))
                .collect()
        };
        // Four fast periods of 250 ms end on the phase's point at 2 s.
        let mut s = exact(250);
        let ideals = run(&mut s, 8, |i| (1..5).contains(&i));
        assert_eq!(
            at(ideals),
            [0, 1000, 1250, 1500, 1750, 2000, 3000, 4000, 5000]
        );
        assert!(s.on_phase());
        // Three of 300 ms do not: the check keeps its offset (a period is the interval).
        let mut s = exact(300);
        let ideals = run(&mut s, 6, |i| (1..4).contains(&i));
        assert_eq!(at(ideals), [0, 1000, 1300, 1600, 1900, 2900, 3900]);
        assert!(!s.on_phase());
    }

    #[test]
    fn a_fast_interval_equal_to_the_interval_keeps_the_phase() {
        let t0 = Instant::now();
        let a = run(&mut check(t0, 4, 1000, 1000), 20, |i| i % 3 == 0);
        let b = run(&mut check(t0, 4, 1000, 1000), 20, |_| false);
        assert_eq!(a, b);
    }

    #[test]
    fn a_manual_probe_restarts_the_schedule_then_the_check_rejoins_its_phase() {
        let t0 = Instant::now();
        let b = run(&mut check(t0, 21, 1000, 250), 40, |_| false);
        let mut a = check(t0, 21, 1000, 250);
        run(&mut a, 5, |_| false);
        // Run on request 400 ms after its fifth deadline.
        let started = a.ideal() + ms(400);
        let (mut last, _) = a.next(false, Some(started), started);
        let first = last - started;
        assert!(first >= ms(900) && first <= ms(1100), "{first:?}");
        for _ in 0..20 {
            let (next, _) = a.next(false, None, last);
            let period = next - last;
            assert!(period >= ms(900) && period <= ms(1100), "{period:?}");
            last = next;
        }
        assert!(a.on_phase() && b.contains(&last), "not back on the phase");
    }

    #[test]
    fn an_overrun_probe_starts_at_once_without_catching_up_then_the_check_rejoins() {
        let t0 = Instant::now();
        let b = run(&mut check(t0, 5, 1000, 250), 40, |_| false);
        let mut a = check(t0, 5, 1000, 250);
        run(&mut a, 3, |_| false);
        // The probe ran 2.5 s past its deadline: the next one is now, not the missed ones.
        let now = a.ideal() + ms(2500);
        let (ideal, interval) = a.next(false, None, now);
        assert_eq!((ideal, interval), (now, ms(1000)));
        assert!(!a.on_phase());
        let mut last = ideal;
        for _ in 0..20 {
            let (next, _) = a.next(false, None, last);
            assert!(next - last >= ms(900), "{:?}", next - last);
            last = next;
        }
        assert!(a.on_phase() && b.contains(&last), "not back on the phase");
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
