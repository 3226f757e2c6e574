//! Rise/fall hysteresis for one check: a pure state machine.
//!
//! A check starts [`CheckStatus::Unknown`], which counts as not up: nothing is announced at
//! start until the check has passed `rise` times in a row. It goes up after `rise`
//! consecutive passes and down after `fall` consecutive failures; any result of the other
//! kind resets the count, so a check alternating pass/fail never flaps.
//!
//! ```text
//!             rise passes              fall failures
//!   Unknown ───────────────▶ Up ◀──────────────────▶ Down
//!      │                          rise passes          ▲
//!      └───────────────────────────────────────────────┘
//!                        fall failures
//! ```

use std::fmt;

/// Where a check stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckStatus {
    /// Not yet passed `rise` or failed `fall` times in a row since start; not up.
    Unknown,
    /// Passing.
    Up,
    /// Failing.
    Down,
}

impl fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CheckStatus::Unknown => "unknown",
            CheckStatus::Up => "up",
            CheckStatus::Down => "down",
        })
    }
}

/// A change of [`CheckStatus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// Before.
    pub from: CheckStatus,
    /// After.
    pub to: CheckStatus,
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.from, self.to)
    }
}

/// A check's state with its counters, as shown in status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckState {
    /// Current status.
    pub status: CheckStatus,
    /// Consecutive passes up to now (0 after a failure).
    pub passes: u32,
    /// Consecutive failures up to now (0 after a pass).
    pub failures: u32,
    /// Passes needed to go up.
    pub rise: u32,
    /// Failures needed to go down.
    pub fall: u32,
}

impl CheckState {
    /// Whether the check is between states: still unknown, or counting towards the
    /// other state. The runner probes at the fast interval meanwhile.
    pub fn changing(&self) -> bool {
        match self.status {
            CheckStatus::Unknown => true,
            CheckStatus::Up => self.failures > 0,
            CheckStatus::Down => self.passes > 0,
        }
    }
}

/// The rise/fall state machine of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hysteresis {
    state: CheckState,
}

impl Hysteresis {
    /// A check in [`CheckStatus::Unknown`]; `rise` and `fall` below 1 are taken as 1.
    pub fn new(rise: u32, fall: u32) -> Self {
        Hysteresis {
            state: CheckState {
                status: CheckStatus::Unknown,
                passes: 0,
                failures: 0,
                rise: rise.max(1),
                fall: fall.max(1),
            },
        }
    }

    /// Continues from a previous state (after a configuration reload) with possibly new
    /// `rise` and `fall`: the status and counters carry over, so a reload does not send an
    /// up check back to [`CheckStatus::Unknown`] (which would withdraw its service).
    pub fn resume(rise: u32, fall: u32, previous: CheckState) -> Self {
        Hysteresis {
            state: CheckState {
                rise: rise.max(1),
                fall: fall.max(1),
                ..previous
            },
        }
    }

    /// Feeds one probe result; returns the transition it caused, if any.
    pub fn observe(&mut self, ok: bool) -> Option<Transition> {
        let s = &mut self.state;
        let from = s.status;
        if ok {
            s.passes = s.passes.saturating_add(1);
            s.failures = 0;
            if from != CheckStatus::Up && s.passes >= s.rise {
                s.status = CheckStatus::Up;
            }
        } else {
            s.failures = s.failures.saturating_add(1);
            s.passes = 0;
            if from != CheckStatus::Down && s.failures >= s.fall {
                s.status = CheckStatus::Down;
            }
        }
        (s.status != from).then_some(Transition { from, to: s.status })
    }

    /// The state and counters.
    pub fn state(&self) -> CheckState {
        self.state
    }

    /// Shorthand for `state().status`.
    pub fn status(&self) -> CheckStatus {
        self.state.status
    }
}

#[cfg(test)]
mod tests {
    use super::CheckStatus::{Down, Unknown, Up};
    use super::*;

    /// Runs `results` through a fresh machine; returns the transitions and the final state.
    fn run(rise: u32, fall: u32, results: &[bool]) -> (Vec<Option<Transition>>, CheckState) {
        let mut h = Hysteresis::new(rise, fall);
        let t = results.iter().map(|ok| h.observe(*ok)).collect();
        (t, h.state())
    }

    fn t(from: CheckStatus, to: CheckStatus) -> Option<Transition> {
        Some(Transition { from, to })
    }

    #[test]
    fn starts_unknown_and_not_up() {
        let h = Hysteresis::new(2, 2);
        assert_eq!(h.status(), Unknown);
        assert_ne!(h.state().status, Up);
        assert!(h.state().changing());
    }

    #[test]
    fn unknown_goes_up_after_rise_passes_not_before() {
        let (tr, s) = run(3, 2, &[true, true, true]);
        assert_eq!(tr, [None, None, t(Unknown, Up)]);
        assert_eq!((s.status, s.passes, s.failures), (Up, 3, 0));
        assert!(!s.changing());
    }

    #[test]
    fn unknown_goes_down_after_fall_failures() {
        let (tr, s) = run(2, 3, &[false, false, false]);
        assert_eq!(tr, [None, None, t(Unknown, Down)]);
        assert_eq!((s.status, s.failures), (Down, 3));
    }

    #[test]
    fn up_goes_down_after_fall_failures() {
        let (tr, s) = run(1, 2, &[true, false, false]);
        assert_eq!(tr, [t(Unknown, Up), None, t(Up, Down)]);
        assert_eq!(s.status, Down);
    }

    #[test]
    fn down_goes_up_after_rise_passes() {
        let (tr, s) = run(2, 1, &[false, true, true]);
        assert_eq!(tr, [t(Unknown, Down), None, t(Down, Up)]);
        assert_eq!(s.status, Up);
    }

    #[test]
    fn rise_and_fall_of_one_follow_every_result() {
        let (tr, _) = run(1, 1, &[true, false, true]);
        assert_eq!(tr, [t(Unknown, Up), t(Up, Down), t(Down, Up)]);
    }

    #[test]
    fn alternating_results_never_flap_on_the_boundary() {
        // One short of rise, then a failure resets; one short of fall, then a pass resets.
        let (tr, s) = run(2, 2, &[true, true, false, true, false, true, false, true]);
        assert_eq!(tr[1], t(Unknown, Up));
        assert!(tr[2..].iter().all(Option::is_none), "{tr:?}");
        assert_eq!(s.status, Up);
        let (tr, s) = run(3, 2, &[false, false, true, true, false, true, true, false]);
        assert_eq!(tr[1], t(Unknown, Down));
        assert!(tr[2..].iter().all(Option::is_none), "{tr:?}");
        assert_eq!(s.status, Down);
    }

    #[test]
    fn a_failure_while_rising_restarts_the_count() {
        let (tr, s) = run(3, 5, &[true, true, false, true, true]);
        assert!(tr.iter().all(Option::is_none));
        assert_eq!((s.status, s.passes), (Unknown, 2));
    }

    #[test]
    fn staying_up_reports_no_transition_and_keeps_counting() {
        let (tr, s) = run(1, 1, &[true, true, true]);
        assert_eq!(tr, [t(Unknown, Up), None, None]);
        assert_eq!(s.passes, 3);
    }

    #[test]
    fn changing_is_true_only_while_counting_towards_the_other_state() {
        let mut h = Hysteresis::new(2, 2);
        h.observe(true);
        h.observe(true);
        assert!(!h.state().changing(), "stable up");
        h.observe(false);
        assert!(h.state().changing(), "up, one failure");
        h.observe(false);
        assert!(!h.state().changing(), "stable down");
        h.observe(true);
        assert!(h.state().changing(), "down, one pass");
    }

    #[test]
    fn resume_keeps_status_and_counters_with_new_thresholds() {
        let (_, up) = run(1, 3, &[true, false]);
        let mut h = Hysteresis::resume(2, 2, up);
        assert_eq!((h.status(), h.state().failures, h.state().fall), (Up, 1, 2));
        assert_eq!(
            h.observe(false),
            t(Up, Down),
            "second failure reaches the new fall"
        );
    }

    #[test]
    fn zero_rise_or_fall_is_taken_as_one() {
        let (tr, s) = run(0, 0, &[true, false]);
        assert_eq!(tr, [t(Unknown, Up), t(Up, Down)]);
        assert_eq!((s.rise, s.fall), (1, 1));
    }
}
