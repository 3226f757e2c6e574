//! The per-service state machine: health, drains, the guard and flap dampening in, one
//! [`Presentation`] of the service's prefixes out.
//!
//! Pure and clocked from outside (`now` is a parameter), like the FSM:
//!
//! ```text
//!            rise passes                 fall failures (on_down = withdraw)
//! Starting ─────────────▶ Up ───────────────────────────────────────▶ Down
//!                         │  ▲            guard refuses │               │
//!                         │  │                          ▼               │
//!                         │  └──────────────────────── Held ◀───────────┘ (never: Held is
//!                         │     health back                   entered instead of Down)
//!                         │ drain (file/API/stop/disabled)
//!                         ▼
//!                      Draining ──(drain_time)──▶ Drained ──(undrain)──▶ Up/Down
//! ```
//!
//! - Nothing is announced until the health has passed `rise` times (`Starting`).
//! - A sick site withdraws at once: no graceful-shutdown phase on health failure, because
//!   the point is to stop attracting traffic now.
//! - A drain (file, API, daemon stop, `disabled = true` by reload) follows RFC 8326:
//!   re-announce with GRACEFUL_SHUTDOWN, keep it for `drain_time`, then withdraw. The BGP
//!   session stays up. A service whose checks fail during a drain is withdrawn at once like
//!   any sick one, and a de-preferred service keeps its prepends while draining (never more
//!   attractive than before).
//! - Any withdrawal that is not a forced drain or a daemon stop first asks the all-sites
//!   guard; a refusal keeps the prefixes announced (`Held`) with the guard's reason.
//! - Flap dampening of our own announcements: after a withdrawal the service may not be
//!   re-announced for a hold-down, which doubles with every flap inside
//!   [`FLAP_WINDOW`] (capped at [`MAX_HOLD_DOWN`]) and resets after a quiet window.

use std::time::{Duration, Instant};

use crate::announcer::{down_presentation, Presentation};
use crate::config::ServiceConfig;

/// Withdrawals closer together than this count as flaps of the same episode.
pub const FLAP_WINDOW: Duration = Duration::from_secs(600);
/// Upper bound of the dampening hold-down.
pub const MAX_HOLD_DOWN: Duration = Duration::from_secs(300);

/// Combined health of a service's checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Not yet decided (no check has completed its first `rise`).
    Unknown,
    /// Healthy.
    Up,
    /// Sick.
    Down,
}

/// Who asked for a drain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrainSource {
    /// The service's drain file exists.
    File,
    /// `POST /services/{name}/drain`.
    Operator {
        /// Override the all-sites guard.
        force: bool,
        /// Free text from the operator.
        reason: String,
        /// Set when the drain was read from the state file at start (or when its service
        /// came back by reload): where from, for the reason operators see.
        restored: Option<String>,
    },
    /// The daemon is stopping (SIGTERM/SIGINT) without a fleet: drain and withdraw.
    Shutdown,
    /// The daemon is stopping with a fleet: the withdrawal goes through the all-sites
    /// guard like a drain file, and a held service stays announced while the sessions
    /// close in a way that lets graceful restart keep its routes (`docs/guard.md`).
    Stop,
    /// `disabled = true` in the service's config: never announced; disabling an
    /// announced service by reload drains it like a drain file (the guard is asked).
    Disabled,
}

/// What the all-sites guard says about withdrawing this service now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardVerdict {
    /// Withdrawing is fine (or no fleet is configured).
    Allow,
    /// Withdrawing would leave too few sites; keep announcing.
    Hold {
        /// Why, for status and logs.
        reason: String,
    },
}

/// The service's state as shown to operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for the first `rise` passes.
    Starting,
    /// Healthy and announced.
    Up,
    /// Sick: withdrawn or de-preferred.
    Down,
    /// Healthy, but re-announcement is suppressed by flap dampening.
    HoldDown,
    /// Sick, but the guard keeps it announced.
    Held,
    /// Announced with GRACEFUL_SHUTDOWN, waiting for `drain_time`.
    Draining,
    /// Withdrawn by a drain.
    Drained,
}

impl State {
    /// The name used in status and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Up => "up",
            State::Down => "down",
            State::HoldDown => "hold-down",
            State::Held => "held",
            State::Draining => "draining",
            State::Drained => "drained",
        }
    }

    /// All states, for one-hot metrics.
    pub const ALL: [State; 7] = [
        State::Starting,
        State::Up,
        State::Down,
        State::HoldDown,
        State::Held,
        State::Draining,
        State::Drained,
    ];
}

/// Everything the machine looks at in one evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs {
    /// Combined health.
    pub health: Health,
    /// An active drain request, if any.
    pub drain: Option<DrainSource>,
    /// The guard's verdict on withdrawing now.
    pub guard: GuardVerdict,
}

/// A state change, to be logged once and shown in status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Previous state.
    pub from: State,
    /// New state.
    pub to: State,
    /// Why.
    pub reason: String,
}

/// One service's state machine.
#[derive(Debug, Clone)]
pub struct Service {
    state: State,
    since: Instant,
    reason: String,
    presentation: Presentation,
    drain_time: Duration,
    base_hold_down: Duration,
    on_down: Presentation,
    draining_until: Option<Instant>,
    last_withdrawal: Option<Instant>,
    flaps: u32,
    suppressed_until: Option<Instant>,
}

impl Service {
    /// A new service in `Starting`, announcing nothing.
    pub fn new(config: &ServiceConfig, now: Instant) -> Self {
        Service {
            state: State::Starting,
            since: now,
            reason: "waiting for checks to pass".to_string(),
            presentation: Presentation::Withdrawn,
            drain_time: config.drain_time,
            base_hold_down: config.hold_down,
            on_down: down_presentation(config),
            draining_until: None,
            last_withdrawal: None,
            flaps: 0,
            suppressed_until: None,
        }
    }

    /// Takes new parameters from a reloaded config, keeping state and history.
    pub fn reconfigure(&mut self, config: &ServiceConfig) {
        self.drain_time = config.drain_time;
        self.base_hold_down = config.hold_down;
        self.on_down = down_presentation(config);
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// When the current state was entered.
    pub fn since(&self) -> Instant {
        self.since
    }

    /// Why it is in the current state.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// How the prefixes are presented now.
    pub fn presentation(&self) -> Presentation {
        self.presentation
    }

    /// Withdrawals counted in the current flap window.
    pub fn flaps(&self) -> u32 {
        self.flaps
    }

    /// The hold-down the next withdrawal would start (or the running one).
    pub fn hold_down(&self) -> Duration {
        hold_down_for(self.base_hold_down, self.flaps)
    }

    /// Until when re-announcement is suppressed, if it is.
    pub fn suppressed_until(&self) -> Option<Instant> {
        self.suppressed_until
    }

    /// True while the machine wants to withdraw but is not (yet) allowed to: the
    /// coordinator publishes this as the site's intent for the guard of other sites.
    pub fn wants_withdrawal(&self) -> bool {
        self.state == State::Held
    }

    /// The next time [`Service::evaluate`] must run even without new inputs.
    pub fn next_deadline(&self) -> Option<Instant> {
        match (self.draining_until, self.suppressed_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Re-evaluates with the current inputs; returns the state change, if any.
    pub fn evaluate(&mut self, now: Instant, inputs: &Inputs) -> Option<Change> {
        if self.suppressed_until.is_some_and(|t| now >= t) {
            self.suppressed_until = None;
        }
        if self.last_withdrawal.is_some_and(|t| now >= t + FLAP_WINDOW) {
            self.flaps = 0;
        }
        let (state, presentation, reason) = self.target(now, inputs);
        if presentation == Presentation::Withdrawn && self.presentation != Presentation::Withdrawn {
            // An operator's drain is not a flap: it gets the base hold-down only.
            self.on_withdrawal(now, state != State::Drained);
        }
        self.presentation = presentation;
        if state == self.state && reason == self.reason {
            return None;
        }
        let from = self.state;
        self.state = state;
        self.reason = reason.clone();
        if from == state {
            // Same state, new reason (e.g. the guard's count changed): no transition.
            return None;
        }
        self.since = now;
        Some(Change {
            from,
            to: state,
            reason,
        })
    }

    fn announced(&self) -> bool {
        self.presentation != Presentation::Withdrawn
    }

    fn on_withdrawal(&mut self, now: Instant, flap: bool) {
        if flap {
            self.flaps = self.flaps.saturating_add(1);
            self.last_withdrawal = Some(now);
        }
        self.suppressed_until = Some(now + hold_down_for(self.base_hold_down, self.flaps));
    }

    fn target(&mut self, now: Instant, inputs: &Inputs) -> (State, Presentation, String) {
        if let Some(drain) = &inputs.drain {
            return self.drain_target(now, drain, inputs);
        }
        self.draining_until = None;
        match inputs.health {
            // Checks restarted (e.g. by a reload) after the service was decided: keep what
            // is announced until they decide again, rather than withdraw on no evidence.
            Health::Unknown if !matches!(self.state, State::Starting | State::Draining) => {
                (self.state, self.presentation, self.reason.clone())
            }
            Health::Unknown => (
                State::Starting,
                Presentation::Withdrawn,
                "waiting for checks to pass".to_string(),
            ),
            Health::Up => match self.suppressed_until {
                Some(until) if !self.announced() => (
                    State::HoldDown,
                    Presentation::Withdrawn,
                    format!(
                        "healthy; re-announcement held down for {} after {} flap(s)",
                        humantime::format_duration(round_ms(until.saturating_duration_since(now))),
                        self.flaps
                    ),
                ),
                _ => (State::Up, Presentation::Normal, "checks pass".to_string()),
            },
            Health::Down => {
                let wanted = self.on_down;
                if wanted == Presentation::Withdrawn && self.announced() {
                    if let GuardVerdict::Hold { reason } = &inputs.guard {
                        return (State::Held, self.presentation, reason.clone());
                    }
                }
                let what = if wanted == Presentation::Withdrawn {
                    "withdrawn"
                } else {
                    "de-preferred"
                };
                (State::Down, wanted, format!("checks fail; {what}"))
            }
        }
    }

    fn drain_target(
        &mut self,
        now: Instant,
        drain: &DrainSource,
        inputs: &Inputs,
    ) -> (State, Presentation, String) {
        let guard = &inputs.guard;
        let sick = inputs.health == Health::Down;
        let who = match drain {
            DrainSource::File => "drain file present".to_string(),
            DrainSource::Operator {
                reason,
                force,
                restored,
            } => {
                let f = if *force { " (forced)" } else { "" };
                let r = restored
                    .as_ref()
                    .map_or_else(String::new, |r| format!(" ({r})"));
                if reason.is_empty() {
                    format!("drained by operator{f}{r}")
                } else {
                    format!("drained by operator{f}{r}: {reason}")
                }
            }
            DrainSource::Shutdown | DrainSource::Stop => "daemon stopping".to_string(),
            DrainSource::Disabled => "service disabled in the config".to_string(),
        };
        let guarded = !matches!(
            drain,
            DrainSource::Shutdown | DrainSource::Operator { force: true, .. }
        );
        if !self.announced() {
            self.draining_until = None;
            return (State::Drained, Presentation::Withdrawn, who);
        }
        if guarded {
            if let GuardVerdict::Hold { reason } = guard {
                self.draining_until = None;
                return (
                    State::Held,
                    self.presentation,
                    format!("{who}, but {reason}"),
                );
            }
        }
        if sick && self.on_down == Presentation::Withdrawn {
            // A sick site withdraws at once, drained or not: the graceful-shutdown phase
            // is for moving traffic off a site that can still serve it.
            self.draining_until = None;
            return (
                State::Drained,
                Presentation::Withdrawn,
                format!("{who}; checks fail, withdrawn at once"),
            );
        }
        let until = *self.draining_until.get_or_insert(now + self.drain_time);
        if now >= until {
            self.draining_until = None;
            (State::Drained, Presentation::Withdrawn, who)
        } else {
            let presentation = if sick {
                Presentation::DepreferredGracefulShutdown
            } else {
                Presentation::GracefulShutdown
            };
            (
                State::Draining,
                presentation,
                format!("{who}; graceful shutdown (RFC 8326) before withdrawal"),
            )
        }
    }
}

fn hold_down_for(base: Duration, flaps: u32) -> Duration {
    let doublings = flaps.saturating_sub(1).min(16);
    base.saturating_mul(1u32 << doublings)
        .min(MAX_HOLD_DOWN.max(base))
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::service_config;
    use crate::config::OnDown;

    fn config(on_down: OnDown) -> ServiceConfig {
        ServiceConfig {
            on_down,
            hold_down: Duration::from_secs(2),
            ..service_config("web", &["203.0.113.0/24"])
        }
    }

    fn inputs(health: Health) -> Inputs {
        Inputs {
            health,
            drain: None,
            guard: GuardVerdict::Allow,
        }
    }

    fn hold(reason: &str) -> GuardVerdict {
        GuardVerdict::Hold {
            reason: reason.to_string(),
        }
    }

    fn up_service(t0: Instant) -> Service {
        let mut s = Service::new(&config(OnDown::Withdraw), t0);
        s.evaluate(t0, &inputs(Health::Up));
        s
    }

    #[test]
    fn nothing_is_announced_before_health_is_known() {
        let t0 = Instant::now();
        let mut s = Service::new(&config(OnDown::Withdraw), t0);
        assert_eq!(s.evaluate(t0, &inputs(Health::Unknown)), None);
        assert_eq!(s.state(), State::Starting);
        assert_eq!(s.presentation(), Presentation::Withdrawn);
    }

    #[test]
    fn unknown_health_after_a_decision_keeps_the_announcement() {
        let t0 = Instant::now();
        let mut s = up_service(t0);
        assert_eq!(s.evaluate(t0, &inputs(Health::Unknown)), None);
        assert_eq!(s.state(), State::Up);
        assert_eq!(s.presentation(), Presentation::Normal);
    }

    #[test]
    fn starting_to_up_announces() {
        let t0 = Instant::now();
        let mut s = Service::new(&config(OnDown::Withdraw), t0);
        let c = s.evaluate(t0, &inputs(Health::Up)).unwrap();
        assert_eq!((c.from, c.to), (State::Starting, State::Up));
        assert_eq!(s.presentation(), Presentation::Normal);
    }

    #[test]
    fn starting_to_down_announces_nothing_and_is_no_flap() {
        let t0 = Instant::now();
        let mut s = Service::new(&config(OnDown::Withdraw), t0);
        s.evaluate(t0, &inputs(Health::Down));
        assert_eq!(s.state(), State::Down);
        assert_eq!(s.flaps(), 0);
        assert_eq!(s.suppressed_until(), None);
    }

    #[test]
    fn up_to_down_withdraws_at_once() {
        let t0 = Instant::now();
        let mut s = up_service(t0);
        let c = s.evaluate(t0, &inputs(Health::Down)).unwrap();
        assert_eq!((c.from, c.to), (State::Up, State::Down));
        assert_eq!(c.reason, "checks fail; withdrawn");
        assert_eq!(s.presentation(), Presentation::Withdrawn);
    }

    #[test]
    fn deprefer_keeps_the_route_with_depreferred_presentation() {
        let t0 = Instant::now();
        let mut s = Service::new(&config(OnDown::Deprefer), t0);
        s.evaluate(t0, &inputs(Health::Up));
        s.evaluate(t0, &inputs(Health::Down));
        assert_eq!(s.state(), State::Down);
        assert_eq!(s.presentation(), Presentation::Depreferred);
        assert_eq!(s.flaps(), 0, "a de-preferred route was never withdrawn");
    }

    #[test]
    fn guard_refusal_holds_the_announcement_with_its_reason() {
        let t0 = Instant::now();
        let mut s = up_service(t0);
        let mut i = inputs(Health::Down);
        i.guard = hold("withdrawing web would leave 0 of 3 sites announcing");
        let c = s.evaluate(t0, &i).unwrap();
        assert_eq!(c.to, State::Held);
        assert_eq!(
            s.reason(),
            "withdrawing web would leave 0 of 3 sites announcing"
        );
        assert_eq!(s.presentation(), Presentation::Normal);
        assert!(s.wants_withdrawal());
        // Enough other sites again: the withdrawal goes ahead.
        let c = s.evaluate(t0, &inputs(Health::Down)).unwrap();
        assert_eq!((c.from, c.to), (State::Held, State::Down));
        assert_eq!(s.presentation(), Presentation::Withdrawn);
    }

    #[test]
    fn held_service_recovers_to_up_without_withdrawing() {
        let t0 = Instant::now();
        let mut s = up_service(t0);
        let mut i = inputs(Health::Down);
        i.guard = hold("x");
        s.evaluate(t0, &i);
        s.evaluate(t0, &inputs(Health::Up));
        assert_eq!(s.state(), State::Up);
        assert_eq!(s.flaps(), 0);
    }

    #[test]
    fn recovery_is_held_down_then_announced_at_the_deadline() {
        let t0 = Instant::now();
        let mut s = up_service(t0);
        s.evaluate(t0, &inputs(Health::Down));
        let t1 = t0 + Duration::from_millis(500);
        let c = s.evaluate(t1, &inputs(Health::Up)).unwrap();
        assert_eq!(c.to, State::HoldDown);
        assert_eq!(s.presentation(), Presentation::Withdrawn);
        assert_eq!(s.next_deadline(), Some(t0 + Duration::from_secs(2)));
        let c = s
            .evaluate(t0 + Duration::from_secs(2), &inputs(Health::Up))
            .unwrap();
        assert_eq!((c.from, c.to), (State::HoldDown, State::Up));
        assert_eq!(s.presentation(), Presentation::Normal);
    }

    #[test]
    fn repeated_flaps_double_the_hold_down_and_a_quiet_window_resets_it() {
        let t0 = Instant::now();
        let mut s = up_service(t0);
        let mut t = t0;
        let mut holds = Vec::new();
        for _ in 0..4 {
            s.evaluate(t, &inputs(Health::Down));
            let until = s.suppressed_until().unwrap();
            holds.push(until - t);
            t = until;
            s.evaluate(t, &inputs(Health::Up));
            assert_eq!(s.state(), State::Up);
        }
        assert_eq!(
            holds,
            [2, 4, 8, 16].map(Duration::from_secs).to_vec(),
            "hold-down doubles per flap"
        );
        let later = t + FLAP_WINDOW;
        s.evaluate(later, &inputs(Health::Down));
        assert_eq!(s.flaps(), 1);
        assert_eq!(s.suppressed_until(), Some(later + Duration::from_secs(2)));
    }

    #[test]
    fn hold_down_is_capped() {
        assert_eq!(
            hold_down_for(Duration::from_secs(2), 30),
            MAX_HOLD_DOWN,
            "capped"
        );
        assert_eq!(
            hold_down_for(Duration::from_secs(2), 1),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn drain_announces_graceful_shutdown_then_withdraws_after_drain_time() {
        let t0 = Instant::now();
        let mut s = up_service(t0);
        let mut i = inputs(Health::Up);
        i.drain = Some(DrainSource::File);
        let c = s.evaluate(t0, &i).unwrap();
        assert_eq!(c.to, State::Draining);
        assert_eq!(s.presentation(), Presentation::GracefulShutdown);
        assert_eq!(s.next_deadline(), Some(t0 + Duration::from_secs(5)));
        assert_eq!(s.evaluate(t0 + Duration::from_secs(4), &i), None);
        let c = s.evaluate(t0 + Duration::from_secs(5), &i).unwrap();
        assert_eq!((c.from, c.to), (State::Draining, State::Drained));
        assert_eq!(c.reason, "drain file present");
        assert_eq!(s.presentation(), Presentation::Withdrawn);
        assert_eq!(s.flaps(), 0, "a drain is not a flap");
    }

    #[test]
    fn undrain_during_drain_returns_to_up_without_withdrawing() {
        let t0 = Instant::now();
        let mut s = up_service(t0);
        let mut i = inputs(Health::Up);
        i.drain = Some(DrainSource::File);
        s.evaluate(t0, &i);
        s.evaluate(t0 + Duration::from_secs(1), &inputs(Health::Up));
        assert_eq!(s.state(), State::Up);
        assert_eq!(s.presentation(), Presentation::Normal);
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn unforced_operator_drain_is_held_by_the_guard_and_forced_one_is_not() {
        let t0 = Instant::now();
        let mut s = up_service(t0);
        let mut i = inputs(Health::Up);
        i.guard = hold("withdrawing web would leave 0 of 3 sites announcing");
        i.drain = Some(DrainSource::Operator {
            force: false,
            reason: "maintenance".into(),
            restored: None,
        });
        s.evaluate(t0, &i);
        assert_eq!(s.state(), State::Held);
        assert_eq!(
            s.reason(),
            "drained by operator: maintenance, but withdrawing web would leave 0 of 3 sites announcing"
        );
        i.drain = Some(DrainSource::Operator {
            force: true,
            reason: "maintenance".into(),
            restored: None,
        });
        s.evaluate(t0, &i);
        assert_eq!(s.state(), State::Draining);
        assert_eq!(
            s.reason(),
            "drained by operator (forced): maintenance; graceful shutdown (RFC 8326) before withdrawal"
        );
    }

    #[test]
    fn a_drain_restored_from_the_state_file_says_so_and_withdraws_a_starting_service() {
        let t0 = Instant::now();
        let mut s = Service::new(&config(OnDown::Withdraw), t0);
        let mut i = inputs(Health::Unknown);
        i.drain = Some(DrainSource::Operator {
            force: false,
            reason: "maintenance".into(),
            restored: Some("restored from state file /var/lib/anyguard/state.json".into()),
        });
        let c = s.evaluate(t0, &i).unwrap_or_else(|| panic!("no change"));
        assert_eq!(c.to, State::Drained);
        assert_eq!(s.presentation(), Presentation::Withdrawn);
        assert_eq!(
            s.reason(),
            "drained by operator (restored from state file /var/lib/anyguard/state.json): maintenance"
        );
        // Healthy checks change nothing: the drain stands.
        i.health = Health::Up;
        assert_eq!(s.evaluate(t0, &i), None);
        assert_eq!(s.presentation(), Presentation::Withdrawn);
    }

    #[test]
    fn shutdown_drains_whatever_the_guard_says() {
        let t0 = Instant::now();
        let mut s = up_service(t0);
        let i = Inputs {
            health: Health::Up,
            drain: Some(DrainSource::Shutdown),
            guard: hold("x"),
        };
        s.evaluate(t0, &i);
        assert_eq!(s.state(), State::Draining);
        s.evaluate(t0 + Duration::from_secs(5), &i);
        assert_eq!(s.state(), State::Drained);
    }

    #[test]
    fn a_stop_with_a_fleet_is_guarded_and_keeps_the_routes_without_graceful_shutdown() {
        let t0 = Instant::now();
        let mut s = up_service(t0);
        let mut i = Inputs {
            health: Health::Up,
            drain: Some(DrainSource::Stop),
            guard: hold("needed for min_sites"),
        };
        s.evaluate(t0, &i);
        assert_eq!(s.state(), State::Held);
        // No GRACEFUL_SHUTDOWN community while held: the routers keep preferring us.
        assert_eq!(s.presentation(), Presentation::Normal);
        assert_eq!(s.reason(), "daemon stopping, but needed for min_sites");
        i.guard = GuardVerdict::Allow;
        s.evaluate(t0, &i);
        assert_eq!(s.state(), State::Draining);
        assert_eq!(s.presentation(), Presentation::GracefulShutdown);
        s.evaluate(t0 + Duration::from_secs(5), &i);
        assert_eq!(s.state(), State::Drained);
    }

    #[test]
    fn drain_of_a_withdrawn_service_is_immediately_drained() {
        let t0 = Instant::now();
        let mut s = Service::new(&config(OnDown::Withdraw), t0);
        let i = Inputs {
            health: Health::Down,
            drain: Some(DrainSource::File),
            guard: GuardVerdict::Allow,
        };
        s.evaluate(t0, &i);
        assert_eq!(s.state(), State::Drained);
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn health_failing_during_a_drain_withdraws_at_once() {
        let t0 = Instant::now();
        let mut s = up_service(t0);
        let mut i = inputs(Health::Up);
        i.drain = Some(DrainSource::File);
        s.evaluate(t0, &i);
        assert_eq!(s.presentation(), Presentation::GracefulShutdown);
        i.health = Health::Down;
        let c = s.evaluate(t0 + Duration::from_secs(1), &i).unwrap();
        assert_eq!((c.from, c.to), (State::Draining, State::Drained));
        assert_eq!(
            c.reason,
            "drain file present; checks fail, withdrawn at once"
        );
        assert_eq!(s.presentation(), Presentation::Withdrawn);
        assert_eq!(s.next_deadline(), Some(t0 + Duration::from_secs(3)));
    }

    #[test]
    fn a_sick_service_still_asks_the_guard_before_an_unforced_drain_withdraws_it() {
        let t0 = Instant::now();
        let mut s = up_service(t0);
        let i = Inputs {
            health: Health::Down,
            drain: Some(DrainSource::File),
            guard: hold("0 of 3"),
        };
        s.evaluate(t0, &i);
        assert_eq!(s.state(), State::Held);
        assert_eq!(s.presentation(), Presentation::Normal);
    }

    #[test]
    fn draining_a_depreferred_service_keeps_it_depreferred() {
        let t0 = Instant::now();
        let mut s = Service::new(&config(OnDown::Deprefer), t0);
        s.evaluate(t0, &inputs(Health::Up));
        s.evaluate(t0, &inputs(Health::Down));
        assert_eq!(s.presentation(), Presentation::Depreferred);
        let i = Inputs {
            health: Health::Down,
            drain: Some(DrainSource::Shutdown),
            guard: GuardVerdict::Allow,
        };
        let c = s.evaluate(t0, &i).unwrap();
        assert_eq!(c.to, State::Draining);
        assert_eq!(s.presentation(), Presentation::DepreferredGracefulShutdown);
        s.evaluate(t0 + Duration::from_secs(5), &i);
        assert_eq!(s.state(), State::Drained);
        assert_eq!(s.presentation(), Presentation::Withdrawn);
    }

    #[test]
    fn a_new_reason_in_the_same_state_is_not_a_change() {
        let t0 = Instant::now();
        let mut s = up_service(t0);
        let mut i = inputs(Health::Down);
        i.guard = hold("0 of 3");
        assert!(s.evaluate(t0, &i).is_some());
        i.guard = hold("1 of 3");
        assert_eq!(s.evaluate(t0, &i), None);
        assert_eq!(s.reason(), "1 of 3");
    }
}
