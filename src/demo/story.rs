//! The demo's scripted story, sans-IO: the steps, what each expects to see (from the
//! router's table and the sites' `/status`), and a [`Progress`] machine clocked from
//! outside (`now` is a parameter) that says when to start a step, when it is met, when it
//! timed out, and whether the router ever had fewer than `min_sites` paths.
//!
//! The driver (`demo::run`) applies each step's health and config, feeds observations in,
//! and prints what [`explain`] and [`site_changes`] return.

use std::time::{Duration, Instant};

use crate::status::model::{ReloadStatus, StatusDocument};

/// How long a step may take to reach what it expects before the demo gives up.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// What a step expects to see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Every site up and the router has a path from each.
    AllUp,
    /// Site `site` down and withdrawn; every other site up with a path.
    Withdrawn {
        /// Index of the failed site.
        site: usize,
    },
    /// Every site's health fails: the router keeps exactly `min_sites` paths, each from a
    /// site the guard holds; the others are down and withdrawn.
    HealthHeld,
    /// A config without the service reached every site: the router keeps exactly
    /// `min_sites` paths, each from a site that holds the removal (or refused the
    /// reload); the others have withdrawn.
    RemovalHeld,
    /// The good config is back everywhere (every site reloaded) and every site is up
    /// with a path.
    Recovered,
}

/// One step of the story.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Headline.
    pub title: &'static str,
    /// What happens and what to watch, one sentence.
    pub what: &'static str,
    /// Health of each site's target during the step.
    pub health: [bool; 3],
    /// A config push at the start of the step: `Some(true)` the good config, `Some(false)`
    /// the config without the service; `None` no push.
    pub push: Option<bool>,
    /// What must be seen before the step is over.
    pub expect: Expect,
    /// How long the step goes on once met, so that a reader sees it stay.
    pub linger: Duration,
}

/// The story `anyguard demo` tells.
pub fn steps() -> Vec<Step> {
    let short = Duration::from_secs(3);
    let long = Duration::from_secs(5);
    vec![
        Step {
            title: "all three sites are healthy",
            what: "each site's check passes, so each announces the prefix to the router",
            health: [true; 3],
            push: None,
            expect: Expect::AllUp,
            linger: short,
        },
        Step {
            title: "site c's health target fails",
            what: "c's check fails; a and b still announce, so the guard lets c withdraw",
            health: [true, true, false],
            push: None,
            expect: Expect::Withdrawn { site: 2 },
            linger: short,
        },
        Step {
            title: "every site's health target fails",
            what: "a shared dependency breaks: withdrawing everywhere would take the service \
                   off the Internet, so the guard holds min_sites sites",
            health: [false; 3],
            push: None,
            expect: Expect::HealthHeld,
            linger: long,
        },
        Step {
            title: "the health targets recover",
            what: "every check passes again and every site announces",
            health: [true; 3],
            push: None,
            expect: Expect::AllUp,
            linger: short,
        },
        Step {
            title: "a bad config (the service removed) is pushed to every site",
            what: "each site reloads a config without the service: the guard keeps its \
                   route at min_sites sites instead of withdrawing it everywhere",
            health: [true; 3],
            push: Some(false),
            expect: Expect::RemovalHeld,
            linger: long,
        },
        Step {
            title: "the good config is pushed back",
            what: "each site reloads its config with the service: everything recovers",
            health: [true; 3],
            push: Some(true),
            expect: Expect::Recovered,
            linger: short,
        },
    ]
}

/// What the story needs to know about one site, from its `/status`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SiteView {
    /// The service's state (`up`, `down`, `held`, …); `None` when it is not configured
    /// (or the status endpoint did not answer).
    pub state: Option<String>,
    /// Why it is in that state.
    pub reason: String,
    /// The pending removal of the service's routes (`pending` or `held`), if any.
    pub removal: Option<String>,
    /// Its reason.
    pub removal_reason: String,
    /// The last reload's outcome.
    pub last_reload: Option<ReloadStatus>,
}

impl SiteView {
    /// The view of `service` in `doc`.
    pub fn from_doc(doc: &StatusDocument, service: &str) -> Self {
        let svc = doc.services.iter().find(|s| s.name == service);
        let removal = doc.pending_removals.iter().find(|r| r.service == service);
        SiteView {
            state: svc.map(|s| s.state.clone()),
            reason: svc.map(|s| s.reason.clone()).unwrap_or_default(),
            removal: removal.map(|r| r.decision.clone()),
            removal_reason: removal.map(|r| r.reason.clone()).unwrap_or_default(),
            last_reload: doc.daemon.last_reload.clone(),
        }
    }

    fn state_is(&self, s: &str) -> bool {
        self.state.as_deref() == Some(s)
    }
}

/// Everything a step is judged on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    /// Which sites the router has a path from (by index).
    pub paths: [bool; 3],
    /// Each site's view.
    pub sites: [SiteView; 3],
    /// Each site's last reload before the step's config push (to see the push applied).
    pub reload_before: [Option<ReloadStatus>; 3],
}

impl Observation {
    fn path_count(&self) -> usize {
        self.paths.iter().filter(|p| **p).count()
    }

    fn reloaded(&self, i: usize) -> bool {
        self.sites[i].last_reload.is_some() && self.sites[i].last_reload != self.reload_before[i]
    }
}

impl Expect {
    /// Whether `obs` shows what is expected, with `min_sites` of the service.
    pub fn met(&self, obs: &Observation, min_sites: usize) -> bool {
        let all_up = |obs: &Observation| {
            obs.paths.iter().all(|p| *p)
                && obs
                    .sites
                    .iter()
                    .all(|s| s.state_is("up") && s.removal.is_none())
        };
        match *self {
            Expect::AllUp => all_up(obs),
            Expect::Withdrawn { site } => (0..3).all(|i| {
                if i == site {
                    !obs.paths[i] && obs.sites[i].state_is("down")
                } else {
                    obs.paths[i] && obs.sites[i].state_is("up")
                }
            }),
            Expect::HealthHeld => {
                obs.path_count() == min_sites
                    && (0..3).all(|i| {
                        let s = &obs.sites[i];
                        if obs.paths[i] {
                            s.state_is("held")
                        } else {
                            s.state_is("down")
                        }
                    })
            }
            Expect::RemovalHeld => {
                obs.path_count() == min_sites
                    && (0..3).all(|i| {
                        let s = &obs.sites[i];
                        let refused = s.last_reload.as_ref().is_some_and(|r| !r.ok);
                        obs.reloaded(i)
                            && if obs.paths[i] {
                                refused
                                    || (s.state.is_none() && s.removal.as_deref() == Some("held"))
                            } else {
                                !refused && s.state.is_none() && s.removal.is_none()
                            }
                    })
            }
            Expect::Recovered => (0..3).all(|i| obs.reloaded(i)) && all_up(obs),
        }
    }
}

/// What the driver must do next, from [`Progress::poll`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tick {
    /// Start step `n`: apply its health and config push, then observe.
    Begin(usize),
    /// Step `n` shows what it expects (print why, then let it linger).
    Met(usize),
    /// Keep observing.
    Wait,
    /// Step `n` did not get there within [`STEP_TIMEOUT`].
    TimedOut(usize),
    /// Every step is done.
    Finished,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    NotStarted,
    Waiting { since: Instant },
    Lingering { until: Instant },
    Over,
}

/// The story's progress through its steps.
#[derive(Debug, Clone)]
pub struct Progress {
    steps: Vec<Step>,
    min_sites: usize,
    step: usize,
    phase: Phase,
    /// The fewest paths the router had since every site was first up.
    fewest: Option<usize>,
}

impl Progress {
    /// At the start of `steps`, for a service with `min_sites`.
    pub fn new(steps: Vec<Step>, min_sites: usize) -> Self {
        Progress {
            steps,
            min_sites,
            step: 0,
            phase: Phase::NotStarted,
            fewest: None,
        }
    }

    /// The steps.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The step under way.
    pub fn current(&self) -> Option<&Step> {
        self.steps.get(self.step)
    }

    /// The fewest paths the router had since the first step was met (`None` before).
    pub fn fewest_paths(&self) -> Option<usize> {
        self.fewest
    }

    /// The router's path count changed (every change, not only those seen at a poll).
    pub fn on_paths(&mut self, count: usize) {
        if let Some(f) = &mut self.fewest {
            *f = (*f).min(count);
        }
    }

    /// What to do at `now` with the latest observation.
    pub fn poll(&mut self, now: Instant, obs: &Observation) -> Tick {
        match self.phase {
            Phase::NotStarted => {
                if self.steps.is_empty() {
                    self.phase = Phase::Over;
                    return Tick::Finished;
                }
                self.phase = Phase::Waiting { since: now };
                Tick::Begin(0)
            }
            Phase::Waiting { since } => {
                let step = &self.steps[self.step];
                if step.expect.met(obs, self.min_sites) {
                    if self.fewest.is_none() {
                        self.fewest = Some(obs.path_count());
                    }
                    self.phase = Phase::Lingering {
                        until: now + step.linger,
                    };
                    Tick::Met(self.step)
                } else if now.saturating_duration_since(since) >= STEP_TIMEOUT {
                    self.phase = Phase::Over;
                    Tick::TimedOut(self.step)
                } else {
                    Tick::Wait
                }
            }
            Phase::Lingering { until } => {
                if now < until {
                    return Tick::Wait;
                }
                self.step += 1;
                if self.step >= self.steps.len() {
                    self.phase = Phase::Over;
                    return Tick::Finished;
                }
                self.phase = Phase::Waiting { since: now };
                Tick::Begin(self.step)
            }
            Phase::Over => Tick::Finished,
        }
    }
}

/// What a met step shows, for the reader: the guard's reasons where it holds, what each
/// site did with a pushed config.
pub fn explain(expect: Expect, obs: &Observation, sites: &[&str], min_sites: usize) -> Vec<String> {
    let n = obs.path_count();
    let mut out = Vec::new();
    match expect {
        Expect::AllUp | Expect::Recovered => {
            out.push(format!("router has a path from every site ({n} paths)"));
        }
        Expect::Withdrawn { site } => out.push(format!(
            "{} withdrawn: the router has {n} paths (min_sites {min_sites})",
            sites[site]
        )),
        Expect::HealthHeld => {
            out.push(format!(
                "guard holds: the router keeps {n} paths (min_sites {min_sites}) though every check fails"
            ));
            for (i, s) in obs.sites.iter().enumerate() {
                if s.state_is("held") {
                    out.push(format!("{}: {}", sites[i], s.reason));
                }
            }
        }
        Expect::RemovalHeld => {
            out.push(format!(
                "guard holds: the router keeps {n} paths (min_sites {min_sites}) though no site's config has the service"
            ));
            for (i, s) in obs.sites.iter().enumerate() {
                let line = match (&s.last_reload, s.removal.as_deref()) {
                    (Some(r), _) if !r.ok => {
                        format!("{}: refused the config: {}", sites[i], r.errors.join("; "))
                    }
                    (_, Some(decision)) => {
                        format!("{}: removal {decision}: {}", sites[i], s.removal_reason)
                    }
                    _ => format!(
                        "{}: accepted the config and withdrew (the others confirmed announcing)",
                        sites[i]
                    ),
                };
                out.push(line);
            }
        }
    }
    out
}

/// One line per site whose last reload, service state or pending removal changed between
/// two rounds of `/status`, with the reason `/status` gives; `true` with the lines that
/// need attention (held, down, a removal waiting, a refused reload).
pub fn site_changes(
    before: &[SiteView],
    after: &[SiteView],
    sites: &[&str],
) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for ((b, a), name) in before.iter().zip(after).zip(sites) {
        if b.last_reload != a.last_reload {
            if let Some(r) = &a.last_reload {
                out.push(if r.ok {
                    (format!("{name}: config reloaded"), false)
                } else {
                    (
                        format!("{name}: reload refused: {}", r.errors.join("; ")),
                        true,
                    )
                });
            }
        }
        if b.state != a.state {
            let attention = a.state_is("held") || a.state_is("down");
            let line = match &a.state {
                Some(state) if a.reason.is_empty() => format!("{name}: service {state}"),
                Some(state) => format!("{name}: service {state} ({})", a.reason),
                None => format!("{name}: service not configured"),
            };
            out.push((line, attention));
        }
        if b.removal != a.removal {
            if let Some(decision) = &a.removal {
                out.push((
                    format!("{name}: removal {decision} ({})", a.removal_reason),
                    true,
                ));
            } else if b.removal.is_some() {
                out.push((
                    match a.state {
                        None => format!("{name}: removal done: withdrawn"),
                        Some(_) => format!("{name}: removal over: the service is configured again"),
                    },
                    false,
                ));
            }
        }
    }
    out
}
