//! Make-before-break: the hand-over time.
//!
//! Another site's report (poll mesh) or record (etcd) says "announcing" once its UPDATE is
//! written to an established session (`docs/guard.md`, guarantee 4); its router still has
//! to process it and pass it on. A site that withdraws the moment another one starts
//! announcing may therefore reach the core first, and for a moment no site is left. So
//! another site counts toward `min_sites` for a withdrawal only once *this* site has seen
//! it announcing the prefixes continuously for at least `hand_over` (this site's monotonic
//! clock, from the first report or record in its own view that said announcing; a report
//! saying not announcing, a failed poll, or a deleted or not-announcing record starts it
//! again). A site not handed over yet counts as not announcing: the rule only ever makes
//! the guard more conservative.
//!
//! One rule for both fleet backends: [`Continuity`] is what each backend's view keeps
//! (`view::PeerSiteView::announcing` for the poll mesh, `store::Snapshot::announcing` for
//! etcd), [`judge`] is the pure decision both assessments (`runtime::decide`,
//! `store::assess_ranked`) apply, and [`release_at`] is when a hold that only waits for
//! the hand-over ends by itself (the coordinator wakes for it: `FleetGuard::next_deadline`).

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The default hand-over time (`[fleet] hand_over`): routers without a route advertisement
/// timer pass a new route on in milliseconds (70–190 ms between the other site's
/// announcement and the held site's withdrawal kept the lab core's path every time), so
/// one second is a wide margin that costs only a second's delay, and only when the other
/// site's announcement is new (see `docs/guard.md`, "Hand-over").
pub const DEFAULT_HAND_OVER: Duration = Duration::from_secs(1);

/// The largest `hand_over` accepted: a hold that waits for the hand-over also delays a
/// stop (the unit's `TimeoutStopSec=60s` must cover it with `intent_wait` and `drain_time`).
pub const MAX_HAND_OVER: Duration = Duration::from_secs(30);

/// One continuous run of "announcing" seen for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// When this site first saw it announcing, without a break since (local clock).
    pub since: Instant,
    /// The version last seen (etcd: the record's `mod_revision`; the poll mesh: 0, every
    /// poll is a whole new observation).
    pub version: i64,
}

/// Per key (a polled site's `(service, prefix)`, or an etcd record key): since when it has
/// been seen announcing without a break. Cloned with the view at every decision, so the
/// map is shared until it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Continuity<K: Eq + Hash> {
    seen: Arc<HashMap<K, Seen>>,
}

impl<K: Eq + Hash> Default for Continuity<K> {
    fn default() -> Self {
        Continuity {
            seen: Arc::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone> Continuity<K> {
    /// `key` was seen at `at`, in `version`, announcing or not. Announcing keeps the run
    /// going (or starts one at `at`); not announcing ends it.
    pub fn observe(&mut self, key: K, announcing: bool, version: i64, at: Instant) {
        if announcing {
            let seen = Arc::make_mut(&mut self.seen);
            seen.entry(key)
                .and_modify(|s| s.version = version)
                .or_insert(Seen { since: at, version });
        } else {
            self.forget(&key);
        }
    }

    /// The run of `key` ends (deleted, unreachable).
    pub fn forget(&mut self, key: &K) {
        if self.seen.contains_key(key) {
            Arc::make_mut(&mut self.seen).remove(key);
        }
    }

    /// Keeps only the runs `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &Seen) -> bool) {
        if self.seen.iter().any(|(k, s)| !keep(k, s)) {
            Arc::make_mut(&mut self.seen).retain(|k, s| keep(k, s));
        }
    }

    /// Every run ends.
    pub fn clear(&mut self) {
        if !self.seen.is_empty() {
            self.seen = Arc::new(HashMap::new());
        }
    }

    /// The run of `key`, as last seen.
    pub fn get(&self, key: &K) -> Option<Seen> {
        self.seen.get(key).copied()
    }

    /// Since when `key` has been announcing, if it was last seen announcing in `version`
    /// (a newer version this site has not followed, e.g. read ahead of the etcd watch,
    /// says nothing about what happened in between).
    pub fn since<Q>(&self, key: &Q, version: i64) -> Option<Instant>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.seen
            .get(key)
            .filter(|s| s.version == version)
            .map(|s| s.since)
    }
}

/// The time a decision is taken at and the hand-over in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// Now (local clock).
    pub now: Instant,
    /// `[fleet] hand_over` (zero: off).
    pub hand_over: Duration,
}

/// A site that would count, but is not handed over yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    /// How long this site has seen it announcing.
    pub announcing_for: Duration,
    /// The hand-over time in force.
    pub hand_over: Duration,
    /// When it will have been announcing for `hand_over`.
    pub ends: Instant,
}

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "announcing for {} of hand_over {}",
            humantime::format_duration(millis(self.announcing_for)),
            humantime::format_duration(self.hand_over)
        )
    }
}

fn millis(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Whether a site that otherwise counts (announcing, fresh, not withdrawing) counts at
/// `clock.now`, given since when this site has seen it announcing (`None`: not seen
/// announcing in the version it counts by — it counts as seen just now). `Ok(())`: it
/// counts; `Err(wait)`: not yet.
pub fn judge(since: Option<Instant>, clock: Clock) -> Result<(), Wait> {
    if clock.hand_over.is_zero() {
        return Ok(());
    }
    let since = since.unwrap_or(clock.now);
    let announcing_for = clock.now.saturating_duration_since(since);
    if announcing_for >= clock.hand_over {
        Ok(())
    } else {
        Err(Wait {
            announcing_for,
            hand_over: clock.hand_over,
            ends: since + clock.hand_over,
        })
    }
}

/// When a withdrawal that only waits for the hand-over can go: `counted` sites count now,
/// `min_sites` are needed, and the sites not handed over yet end their waits at `ends`.
/// `None` when it does not wait for the hand-over (enough count already, or too few
/// would count even after every wait).
pub fn release_at(counted: usize, min_sites: usize, ends: &[Instant]) -> Option<Instant> {
    let needed = min_sites.checked_sub(counted).filter(|n| *n > 0)?;
    if ends.len() < needed {
        return None;
    }
    let mut ends = ends.to_vec();
    ends.sort_unstable();
    ends.get(needed - 1).copied()
}

#[cfg(test)]
#[path = "hand_over_tests.rs"]
mod tests;
