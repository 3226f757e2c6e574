//! The runtime guard: a pure decision per service from (local health, local intent,
//! fleet view, now).
//!
//! The protocol (full argument in `docs/guard.md`):
//! 1. A healthy, undrained service is announced ([`Decision::Announce`]).
//! 2. A site that wants to withdraw (failing health or a drain without `force`) first
//!    checks its current view; if the other sites that would keep announcing are fewer
//!    than `min_sites` it holds ([`Decision::Hold`]) without publishing anything new.
//! 3. Otherwise it publishes [`Intent::Withdrawing`] in its report and keeps announcing
//!    ([`Decision::PublishIntentAndWait`]). From then on it only counts reports whose
//!    request was *started after* the intent was published. Sites in the `withdrawing`
//!    position count as not announcing; `held` sites count only when they rank before
//!    this site in the fleet file (they will stay; later-ranked held sites will yield).
//! 4. It withdraws once at least `min_sites` other sites are confirmed that way; it holds
//!    as soon as that cannot happen, or when `intent_wait` passes without the reports.
//! 5. A held site re-evaluates on every view change and starts again at step 3 with a
//!    *new* publication time.
//!
//! A forced operator drain bypasses the guard (and says so in the reason). A daemon stop
//! with a fleet is guarded like a drain ([`Drain::Stopping`]); a hold keeps the routes and
//! the coordinator closes the sessions for graceful restart (`coordinator::stop`). Nothing here
//! reads a clock or does I/O: `now` is a parameter and the view is a value.

use std::fmt;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use super::hand_over::{self, Clock, Wait};
use super::report::Intent;
use super::view::{FleetView, PeerSiteView, PollFailure};
use crate::service::GuardVerdict;
use crate::status::model::GuardStatus;

/// How often a held service must be logged again (the coordinator's loud log line).
pub const HELD_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Is a "still held" log line due? (`last` is when the previous one was written.)
pub fn held_log_due(last: Option<Instant>, now: Instant) -> bool {
    last.is_none_or(|t| now.saturating_duration_since(t) >= HELD_LOG_INTERVAL)
}

/// Operator drain of the service at this site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// Not drained.
    None,
    /// Drained (drain file present, or control endpoint without force): guarded like a
    /// health failure.
    Requested,
    /// Drained with `force`: the guard is overridden.
    Forced,
    /// Taken out of the config by a reload (a pending removal, `coordinator::removals`):
    /// guarded like a drain.
    Removed,
    /// The daemon is stopping: guarded like [`Drain::Requested`]; a hold keeps the routes
    /// (the sessions then close for graceful restart instead of withdrawing).
    Stopping,
}

/// The local site's intent for one service, with the local times the protocol needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalIntent {
    /// Nothing pending.
    None,
    /// [`Intent::Withdrawing`] is published; `published_at` was taken *after* the report
    /// carrying it became visible to the status server.
    Withdrawing {
        /// When the intent became visible (local clock).
        published_at: Instant,
    },
    /// [`Intent::Held`] is published.
    Held {
        /// When the hold started.
        since: Instant,
    },
}

impl LocalIntent {
    /// The value published in the site report.
    pub fn wire(self) -> Intent {
        match self {
            LocalIntent::None => Intent::None,
            LocalIntent::Withdrawing { .. } => Intent::Withdrawing,
            LocalIntent::Held { .. } => Intent::Held,
        }
    }

    /// The local intent after acting on `decision`. `visible_at` must be taken after the
    /// report carrying [`Decision::intent`] was handed to the status server (for a watch
    /// channel: after `send` returned); it becomes the publication time of a new
    /// withdrawing intent. An intent already in place keeps its time.
    pub fn advance(self, decision: &Decision, visible_at: Instant) -> LocalIntent {
        match (decision, self) {
            (Decision::Announce | Decision::Withdraw { .. }, _) => LocalIntent::None,
            (Decision::Hold { .. }, LocalIntent::Held { since }) => LocalIntent::Held { since },
            (Decision::Hold { .. }, _) => LocalIntent::Held { since: visible_at },
            (Decision::PublishIntentAndWait { .. }, LocalIntent::Withdrawing { published_at }) => {
                LocalIntent::Withdrawing { published_at }
            }
            (Decision::PublishIntentAndWait { .. }, _) => LocalIntent::Withdrawing {
                published_at: visible_at,
            },
        }
    }
}

/// The local facts for one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalService {
    /// Checks combined say up.
    pub healthy: bool,
    /// Operator drain.
    pub drain: Drain,
    /// The prefixes are announced right now (normally or held).
    pub announcing: bool,
    /// The intent in force.
    pub intent: LocalIntent,
}

/// Protocol timing (from the fleet's `[poll]` table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardTiming {
    /// A report requested longer ago than this counts as unreachable.
    pub stale_after: Duration,
    /// Longest wait for post-intent reports before holding.
    pub intent_wait: Duration,
    /// Make-before-break ([`hand_over`]): another site counts only once this site has
    /// seen it announcing the prefixes without a break for this long (zero: off). From the
    /// site config's `[fleet] hand_over`.
    pub hand_over: Duration,
}

/// Everything [`decide`] looks at for one service.
#[derive(Debug, Clone, Copy)]
pub struct GuardInput<'a> {
    /// Service name.
    pub service: &'a str,
    /// The prefixes decided about: another site counts only when its report lists the
    /// service *with every one of them* (confirmations are per prefix: a site announcing
    /// the service under a new prefix keeps nobody's old prefix). Empty: any entry of the
    /// service counts.
    pub prefixes: &'a [IpNet],
    /// The fleet's `min_sites` for the service.
    pub min_sites: usize,
    /// This site's name.
    pub local_site: &'a str,
    /// This site's position in the fleet file.
    pub local_rank: usize,
    /// Local facts.
    pub local: LocalService,
    /// The other sites.
    pub view: &'a FleetView,
    /// Protocol timing.
    pub timing: GuardTiming,
}

/// What the coordinator must do with the service's routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Announce (clear any intent).
    Announce,
    /// Withdraw (or de-prefer, per `on_down`); clear the intent.
    Withdraw {
        /// Why, for logs and status.
        reason: String,
        /// A forced operator drain overrode the guard.
        forced: bool,
    },
    /// Keep announcing although the service should go down; publish `held`, log loudly
    /// every [`HELD_LOG_INTERVAL`], count it in the held metric.
    Hold {
        /// Why, e.g. `withdrawing web would leave 0 of 3 sites announcing (min_sites 1); b: unreachable (…), c: withdrawing`.
        reason: String,
        /// The hold only waits for the hand-over ([`hand_over`]): enough other sites
        /// announce, and enough of them will have been seen announcing for `hand_over` at
        /// this instant. The coordinator decides again then (nothing else may come to
        /// make it); `None` for a hold that waits for the fleet to change.
        hand_over_until: Option<Instant>,
    },
    /// Keep announcing; publish `withdrawing` (if not yet) and decide again when the view
    /// changes or `intent_wait` passes.
    PublishIntentAndWait {
        /// What is awaited.
        reason: String,
    },
}

impl Decision {
    /// When a hold that only waits for the hand-over ends (see [`Decision::Hold`]).
    pub fn hand_over_until(&self) -> Option<Instant> {
        match self {
            Decision::Hold {
                hand_over_until, ..
            } => *hand_over_until,
            _ => None,
        }
    }

    /// Whether the prefixes stay announced.
    pub fn announces(&self) -> bool {
        !matches!(self, Decision::Withdraw { .. })
    }

    /// The intent to publish in the site report after this decision.
    pub fn intent(&self) -> Intent {
        match self {
            Decision::Announce | Decision::Withdraw { .. } => Intent::None,
            Decision::Hold { .. } => Intent::Held,
            Decision::PublishIntentAndWait { .. } => Intent::Withdrawing,
        }
    }
}

impl Decision {
    /// The verdict for the service state machine: only `Withdraw` lets the routes go;
    /// waiting for post-intent reports keeps them like a hold.
    pub fn verdict(&self) -> GuardVerdict {
        match self {
            Decision::Announce | Decision::Withdraw { .. } => GuardVerdict::Allow,
            Decision::Hold { .. } | Decision::PublishIntentAndWait { .. } => GuardVerdict::Hold {
                reason: self.to_string(),
            },
        }
    }

    /// The `decision` word of the status document: `allow`, `held`, `pending` (intent
    /// published, awaiting reports) or `forced`.
    pub fn status_word(&self) -> &'static str {
        match self {
            Decision::Announce | Decision::Withdraw { forced: false, .. } => "allow",
            Decision::Withdraw { forced: true, .. } => "forced",
            Decision::Hold { .. } => "held",
            Decision::PublishIntentAndWait { .. } => "pending",
        }
    }
}

/// The status document's guard entry for a service after `decision` was taken on `input`.
pub fn guard_status(input: &GuardInput<'_>, decision: &Decision, now: Instant) -> GuardStatus {
    GuardStatus {
        decision: decision.status_word().to_owned(),
        reason: match decision {
            Decision::Announce => String::new(),
            Decision::Withdraw { reason, .. }
            | Decision::Hold { reason, .. }
            | Decision::PublishIntentAndWait { reason } => reason.clone(),
        },
        intent: decision.intent().as_str().to_owned(),
        sites_announcing: sites_announcing(input, now),
        min_sites: u32::try_from(input.min_sites).unwrap_or(u32::MAX),
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Announce => f.write_str("announce"),
            Decision::Withdraw { reason, .. } => write!(f, "withdraw: {reason}"),
            Decision::Hold { reason, .. } => write!(f, "held: {reason}"),
            Decision::PublishIntentAndWait { reason } => write!(f, "withdraw pending: {reason}"),
        }
    }
}

/// Which reports count.
#[derive(Clone, Copy)]
enum Basis {
    /// The latest report, unless older than `stale_after`.
    Current,
    /// Only reports requested after the intent was published; `expired` once
    /// `intent_wait` has passed.
    SinceIntent {
        published_at: Instant,
        expired: bool,
    },
}

/// How one other site counts.
enum SiteState<'a> {
    Announcing,
    HeldBefore,
    /// Would count (announcing, or held ranked before us), but has not been seen
    /// announcing for the hand-over time yet: counts as not announcing.
    HandingOver {
        held_before: bool,
        wait: Wait,
    },
    Pending,
    NoReportSinceIntent,
    NotPolled,
    Unreachable(&'a PollFailure),
    Stale(Duration),
    NotConfigured,
    PrefixNotConfigured,
    NotAnnouncing,
    Withdrawing,
    HeldAfter,
}

impl SiteState<'_> {
    fn counts(&self) -> bool {
        matches!(self, SiteState::Announcing | SiteState::HeldBefore)
    }
}

struct Entry<'a> {
    site: &'a str,
    state: SiteState<'a>,
}

struct Assessment<'a> {
    counted: usize,
    pending: usize,
    /// When each site not handed over yet will be.
    hand_over_ends: Vec<Instant>,
    entries: Vec<Entry<'a>>,
    local_site: &'a str,
}

impl fmt::Display for Entry<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.site)?;
        match &self.state {
            SiteState::Announcing => f.write_str("announcing"),
            SiteState::HeldBefore => f.write_str("held, ranked before us"),
            SiteState::HandingOver {
                held_before: false,
                wait,
            } => write!(f, "{wait}"),
            SiteState::HandingOver {
                held_before: true,
                wait,
            } => write!(f, "held, ranked before us, {wait}"),
            SiteState::Pending => f.write_str("awaiting a report requested after our intent"),
            SiteState::NoReportSinceIntent => f.write_str("no report since our intent"),
            SiteState::NotPolled => f.write_str("not polled yet"),
            SiteState::Unreachable(e) => write!(f, "unreachable ({e})"),
            SiteState::Stale(age) => write!(
                f,
                "unreachable (last report {} old)",
                humantime::format_duration(Duration::from_millis(
                    u64::try_from(age.as_millis()).unwrap_or(u64::MAX)
                ))
            ),
            SiteState::NotConfigured => f.write_str("service not configured"),
            SiteState::PrefixNotConfigured => f.write_str("prefix not configured"),
            SiteState::NotAnnouncing => f.write_str("not announcing"),
            SiteState::Withdrawing => f.write_str("withdrawing"),
            SiteState::HeldAfter => f.write_str("held, ranked after us"),
        }
    }
}

impl fmt::Display for Assessment<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.entries.is_empty() {
            return write!(f, "{} is the only site", self.local_site);
        }
        for (i, e) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

fn site_state<'a>(
    input: &GuardInput<'a>,
    site: &'a PeerSiteView,
    basis: Basis,
    now: Instant,
) -> SiteState<'a> {
    let Some(poll) = &site.last_poll else {
        return match basis {
            Basis::Current => SiteState::NotPolled,
            Basis::SinceIntent { expired: false, .. } => SiteState::Pending,
            Basis::SinceIntent { expired: true, .. } => SiteState::NoReportSinceIntent,
        };
    };
    match basis {
        Basis::Current => {
            let age = now.saturating_duration_since(poll.requested_at);
            if age > input.timing.stale_after {
                return SiteState::Stale(age);
            }
        }
        Basis::SinceIntent {
            published_at,
            expired,
        } => {
            if poll.requested_at <= published_at {
                return if expired {
                    SiteState::NoReportSinceIntent
                } else {
                    SiteState::Pending
                };
            }
        }
    }
    let report = match &poll.result {
        Ok(report) => report,
        Err(e) => return SiteState::Unreachable(e),
    };
    if report.service(input.service).is_none() {
        return SiteState::NotConfigured;
    }
    let Some(service) = report.service_with(input.service, input.prefixes) else {
        return SiteState::PrefixNotConfigured;
    };
    if !service.announcing {
        return SiteState::NotAnnouncing;
    }
    let held_before = match service.intent {
        Intent::None => false,
        Intent::Withdrawing => return SiteState::Withdrawing,
        Intent::Held if site.rank < input.local_rank => true,
        Intent::Held => return SiteState::HeldAfter,
    };
    let prefixes = if input.prefixes.is_empty() {
        &service.prefixes
    } else {
        input.prefixes
    };
    let since = site.announcing_since(input.service, prefixes);
    match hand_over::judge(since, clock(input, now)) {
        Ok(()) if held_before => SiteState::HeldBefore,
        Ok(()) => SiteState::Announcing,
        Err(wait) => SiteState::HandingOver { held_before, wait },
    }
}

fn clock(input: &GuardInput<'_>, now: Instant) -> Clock {
    Clock {
        now,
        hand_over: input.timing.hand_over,
    }
}

fn assess<'a>(input: &GuardInput<'a>, basis: Basis, now: Instant) -> Assessment<'a> {
    let mut counted = 0;
    let mut pending = 0;
    let mut hand_over_ends = Vec::new();
    let entries = input
        .view
        .sites
        .iter()
        .map(|site| {
            let state = site_state(input, site, basis, now);
            if state.counts() {
                counted += 1;
            }
            if matches!(state, SiteState::Pending) {
                pending += 1;
            }
            if let SiteState::HandingOver { wait, .. } = &state {
                hand_over_ends.push(wait.ends);
            }
            Entry {
                site: &site.name,
                state,
            }
        })
        .collect();
    Assessment {
        counted,
        pending,
        hand_over_ends,
        entries,
        local_site: input.local_site,
    }
}

/// Why a service would leave this site, from its local facts alone.
pub(crate) enum Cause {
    /// Healthy and not drained: announce.
    Stay,
    /// A forced drain: the guard is overridden.
    Forced,
    /// A guarded reason to withdraw (health, drain, removal, stop).
    Guarded(&'static str),
}

/// The [`Cause`] of `local` (shared by both fleet backends' decisions).
pub(crate) fn withdrawal_cause(local: &LocalService) -> Cause {
    match (local.drain, local.healthy) {
        (Drain::None, true) => Cause::Stay,
        (Drain::Forced, _) => Cause::Forced,
        (Drain::Requested, _) => Cause::Guarded("drained"),
        (Drain::Removed, _) => Cause::Guarded("removed from the config"),
        (Drain::Stopping, _) => Cause::Guarded("daemon stopping"),
        (Drain::None, false) => Cause::Guarded("health failing"),
    }
}

/// A service that is not announced here has nothing for the guard to protect.
pub(crate) fn not_announced_here(cause: &str, service: &str) -> Decision {
    Decision::Withdraw {
        reason: format!("{cause}; {service} is not announced here"),
        forced: false,
    }
}

/// The guard's decision for one service at `now`.
pub fn decide(input: &GuardInput<'_>, now: Instant) -> Decision {
    let local = &input.local;
    let cause = match withdrawal_cause(local) {
        Cause::Stay => return Decision::Announce,
        Cause::Forced => {
            let a = assess(input, Basis::Current, now);
            return Decision::Withdraw {
                reason: format!(
                    "forced drain overrides the guard: {}; {a}",
                    leaves(input, &a)
                ),
                forced: true,
            };
        }
        Cause::Guarded(cause) => cause,
    };
    if !local.announcing {
        return not_announced_here(cause, input.service);
    }
    match local.intent {
        LocalIntent::None | LocalIntent::Held { .. } => {
            let a = assess(input, Basis::Current, now);
            if a.counted >= input.min_sites {
                Decision::PublishIntentAndWait {
                    reason: format!(
                        "{cause}; intent to withdraw {} published, awaiting reports requested after it; {a}",
                        input.service
                    ),
                }
            } else {
                hold(input, cause, &a, now)
            }
        }
        LocalIntent::Withdrawing { published_at } => {
            let expired = now.saturating_duration_since(published_at) >= input.timing.intent_wait;
            let a = assess(
                input,
                Basis::SinceIntent {
                    published_at,
                    expired,
                },
                now,
            );
            if a.counted >= input.min_sites {
                Decision::Withdraw {
                    reason: format!("{cause}; {}; {a}", leaves(input, &a)),
                    forced: false,
                }
            } else if a.counted + a.pending < input.min_sites || expired {
                hold(input, cause, &a, now)
            } else {
                Decision::PublishIntentAndWait {
                    reason: format!(
                        "{cause}; intent to withdraw {} published, awaiting reports requested after it; {a}",
                        input.service
                    ),
                }
            }
        }
    }
}

/// The other sites that count as keeping `input.service` announced right now (latest
/// reports within `stale_after`; `withdrawing` sites and later-ranked `held` sites excluded),
/// for the status document's `sites_announcing`.
pub fn sites_announcing(input: &GuardInput<'_>, now: Instant) -> Vec<String> {
    assess(input, Basis::Current, now)
        .entries
        .into_iter()
        .filter(|e| e.state.counts())
        .map(|e| e.site.to_owned())
        .collect()
}

/// A hold; one that only waits for the hand-over says so and when it ends.
fn hold(input: &GuardInput<'_>, cause: &str, a: &Assessment<'_>, now: Instant) -> Decision {
    match hand_over::release_at(a.counted, input.min_sites, &a.hand_over_ends) {
        Some(until) => Decision::Hold {
            reason: format!(
                "{cause}; {}; {a}",
                hand_over_wait(input.service, until, now, &would_leave(input, a))
            ),
            hand_over_until: Some(until),
        },
        None => Decision::Hold {
            reason: format!("{cause}; {}; {a}", would_leave(input, a)),
            hand_over_until: None,
        },
    }
}

/// The reason of a hold that only waits for the hand-over (both backends).
pub(crate) fn hand_over_wait(
    service: &str,
    until: Instant,
    now: Instant,
    would_leave: &str,
) -> String {
    let left = until.saturating_duration_since(now);
    format!(
        "waiting {} for the hand-over (make-before-break: the other sites' routes must have been announced for hand_over before {service} leaves here); until then {would_leave}",
        humantime::format_duration(Duration::from_millis(
            u64::try_from(left.as_millis()).unwrap_or(u64::MAX)
        ))
    )
}

fn would_leave(input: &GuardInput<'_>, a: &Assessment<'_>) -> String {
    outcome(input, a, "would leave")
}

fn leaves(input: &GuardInput<'_>, a: &Assessment<'_>) -> String {
    outcome(input, a, "leaves")
}

fn outcome(input: &GuardInput<'_>, a: &Assessment<'_>, verb: &str) -> String {
    format!(
        "withdrawing {} {verb} {} of {} sites announcing (min_sites {})",
        input.service,
        a.counted,
        input.view.sites.len() + 1,
        input.min_sites
    )
}

#[cfg(test)]
#[path = "runtime_tests.rs"]
mod tests;
