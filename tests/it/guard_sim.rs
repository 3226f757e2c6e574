//! Discrete-event simulation of the runtime guard (issue #6).
//!
//! 3–7 sites each run [`decide`] for one or two services while a seeded RNG drives
//! health failures and recoveries (independent ones, and bursts where every site fails
//! within the same second), drains, poll delays, lost polls and stalled pollers (stale
//! reports). Time is virtual (milliseconds after an `Instant` base); a poll is three
//! events — request, serve (the target's report is copied at that moment), delivery — so
//! reports are as old as the network makes them.
//!
//! Sites also lose every BGP session for a while (their routes are then on no wire, and
//! their truthful report says `announcing: false`), and some runs partition the fleet into
//! two sides whose polls fail for a few seconds. In some runs an attacker on the path to
//! one site answers part of its polls with a report that says it announces everything:
//! unsigned, signed with another key, or a genuine signed answer recorded earlier and
//! replayed; every answer then goes through the poller's own `accept_answer` with the fleet
//! key, and a forged answer that verified would fail the run.
//!
//! Config pushes (scripted): a config without a service, or with its prefix changed,
//! reaches every site within one poll interval; each prefix a reload takes away becomes a
//! pending removal decided like a drain and confirmed per prefix (a site announcing the
//! service under its new prefix confirms nobody's old one), until the service is retired
//! in the fleet file.
//!
//! Asserted after every event: every service is announced by at least `min_sites` sites,
//! the routes are on the wire at `min_sites` sites but for those whose sessions are down
//! (only a lost session, never the guard, takes a path away below `min_sites`), and no
//! healthy site is held or withdrawn. After a calm phase (no loss, short delays,
//! fixed health): healthy sites announce, failing sites withdraw as soon as enough others
//! announce, and exactly `max(min_sites, healthy)` sites announce.
//!
//! `GUARD_SIM_RUNS=N` changes the number of runs (default 2000); a failure prints the seed
//! and the last events.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use anyguard::guard::auth::{FleetKey, Nonce, NONCE_LEN};
use anyguard::guard::poller::accept_answer;
use anyguard::guard::report::{Intent, ServiceReport, SiteReport, StatusEnvelope, REPORT_VERSION};
use anyguard::guard::runtime::{
    decide, Decision, Drain, GuardInput, GuardTiming, LocalIntent, LocalService,
};
use anyguard::guard::view::{FleetView, PollFailure, PollOutcome};
use ipnet::IpNet;
use rand::{Rng, RngCore};

/// The prefix every service starts with.
fn p0() -> IpNet {
    "203.0.113.0/24".parse().expect("prefix")
}

/// The prefix a config push moves a service to.
fn p1() -> IpNet {
    "198.51.100.0/24".parse().expect("prefix")
}

const INTERVAL_MS: u64 = 1_000;
const TIMEOUT_MS: u64 = 500;
const TICK_MS: u64 = 1_000;
const CHAOS_END_MS: u64 = 12_000;
const CALM_END_MS: u64 = 22_000;
const TIMING: GuardTiming = GuardTiming {
    stale_after: Duration::from_millis(3 * INTERVAL_MS + TIMEOUT_MS),
    intent_wait: Duration::from_millis(2 * (INTERVAL_MS + TIMEOUT_MS)),
    // Per run: `Sim::hand_over`.
    hand_over: Duration::ZERO,
};

/// SplitMix64 (Steele, Lea, Flood 2014): deterministic, and cheap in debug builds where
/// ChaCha dominated the run time.
struct SplitMix64(u64);

impl RngCore for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

#[derive(Debug, Clone)]
enum Ev {
    /// Health of (site, service): `None` = healthy, `Some(drain)` = down for that reason.
    Health {
        site: usize,
        svc: usize,
        down: Option<Drain>,
    },
    PollStart {
        from: usize,
        to: usize,
    },
    Serve {
        from: usize,
        to: usize,
        requested_at: u64,
        deliver_at: u64,
        nonce: [u8; NONCE_LEN],
    },
    Deliver {
        from: usize,
        to: usize,
        requested_at: u64,
        nonce: [u8; NONCE_LEN],
        // Boxed: the queue moves events around a lot.
        result: Box<Result<Answer, PollFailure>>,
    },
    Tick {
        site: usize,
    },
    /// Every BGP session of `site` goes down (`up == false`) or comes back: its routes are
    /// on no wire meanwhile, whatever its guard decides (issue 11 item 2).
    Sessions {
        site: usize,
        up: bool,
    },
    /// Polls between the sites of `side` and the others fail until `until`.
    Partition {
        side: Vec<bool>,
        until: u64,
    },
    /// A config push reaches `site`: the service's prefix becomes `to`, or the service is
    /// removed (`None`), and SIGHUP.
    Push {
        site: usize,
        svc: usize,
        to: Option<IpNet>,
    },
    /// The service is retired in the fleet file everywhere: its pending removals go.
    Retire {
        svc: usize,
    },
    Calm,
}

/// What comes back from a poll that was answered.
#[derive(Debug, Clone)]
enum Answer {
    /// The report itself (runs without an attacker: nothing to verify).
    Plain(SiteReport),
    /// What the wire carries with fleet authentication: the body and the signature header,
    /// checked by the poller's own `accept_answer`.
    Signed {
        body: Vec<u8>,
        signature: Option<Vec<u8>>,
        /// The attacker made it.
        forged: bool,
    },
}

/// Someone on the path to one site who answers some of the polls for it instead
/// (`docs/guard.md`, "Authenticated reports"): a well-formed report that says the site
/// announces every service — unsigned, signed with a key of its own, or a genuine signed
/// answer of that site recorded earlier and replayed.
#[derive(Debug, Clone, Copy)]
struct Attack {
    target: usize,
    /// Share of the polls of `target` it answers.
    share: f64,
}

struct Queued {
    at: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    // Reversed: BinaryHeap is a max-heap and we want the earliest event first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

struct SvcState {
    down: Option<Drain>,
    announcing: bool,
    intent: LocalIntent,
    last: Decision,
    /// The prefix the site's config gives the service; `None` once a config push removed
    /// the service at this site.
    prefix: Option<IpNet>,
    /// The routes a config push took away, announced until the guard lets them go
    /// (`coordinator::removals`).
    removal: Option<Removal>,
}

/// A pending removal: a prefix a reload took away, decided like a drain ("removed from the
/// config", `Drain::Removed`) and confirmed per prefix.
struct Removal {
    prefix: IpNet,
    announcing: bool,
    intent: LocalIntent,
    last: Decision,
}

impl SvcState {
    /// This site keeps `prefix` of the service announced, configured or pending removal.
    fn keeps(&self, prefix: IpNet) -> bool {
        (self.prefix == Some(prefix) && self.announcing)
            || self
                .removal
                .as_ref()
                .is_some_and(|r| r.prefix == prefix && r.announcing)
    }
}

struct Site {
    name: String,
    /// At least one BGP session is established (and has been sent the routes).
    sessions_up: bool,
    svcs: Vec<SvcState>,
    view: FleetView,
    report: SiteReport,
}

struct Sim {
    base: Instant,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Queued>,
    rng: SplitMix64,
    sites: Vec<Site>,
    services: Vec<(String, usize)>,
    loss: f64,
    stall: f64,
    /// A site's report says `announcing` only while its sessions carry the routes (what
    /// `fleet_guard::report` does). `false` models the old, lying report, for the test that
    /// shows why the rule is needed.
    truthful: bool,
    /// Longest one-way delay of a poll leg outside the calm phase, milliseconds.
    max_leg: u64,
    /// `[fleet] hand_over` of every site: the daemon's default unless a run says otherwise.
    hand_over: Duration,
    /// The fleet key; with an attacker every answer is signed and verified by the poller.
    key: FleetKey,
    /// The poller checks signatures (`false`: the unsigned fleet, for the test that shows
    /// what the signatures are for).
    verify: bool,
    attack: Option<Attack>,
    /// Per site, the last genuine signed answer (the attacker's recording).
    recorded: Vec<Option<(Vec<u8>, Vec<u8>)>>,
    /// The partition in force: which side each site is on, and until when.
    partition: Option<(Vec<bool>, u64)>,
    /// Per service: retired in the fleet file (its removals are no longer guarded).
    retired: Vec<bool>,
    calm: bool,
    trace: VecDeque<String>,
    stats: Stats,
    /// Since when the calm-phase goal holds (reset when it stops holding).
    converged_at: Option<u64>,
}

#[derive(Default)]
struct Stats {
    events: u64,
    decisions: u64,
    holds: u64,
    withdrawals: u64,
    min_margin_hits: u64,
    /// Calm phase start to lasting convergence, milliseconds of virtual time.
    convergence_ms: u64,
    /// Answers an attacker made instead of the site polled.
    forged: u64,
}

impl Sim {
    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Queued {
            at,
            seq: self.seq,
            ev,
        });
    }

    fn instant(&self, ms: u64) -> Instant {
        self.base + Duration::from_millis(ms)
    }

    fn log(&mut self, line: String) {
        if self.trace.len() == 300 {
            self.trace.pop_front();
        }
        self.trace.push_back(format!("{:>6} {line}", self.now));
    }

    fn fail(&self, seed: u64, what: &str) -> ! {
        for l in &self.trace {
            eprintln!("{l}");
        }
        panic!("seed {seed} at {} ms: {what}", self.now);
    }

    fn run_decisions(&mut self, site: usize) {
        let now = self.instant(self.now);
        for svc in 0..self.services.len() {
            self.decide_configured(site, svc, now);
            self.decide_removal(site, svc, now);
        }
        // The report, as `fleet_guard::report` builds it: one entry per configured service,
        // then one per pending removal; `announcing` only for what is on the wire.
        let s = &mut self.sites[site];
        let wire = s.sessions_up || !self.truthful;
        let mut services = Vec::new();
        for (svc, st) in s.svcs.iter().enumerate() {
            let name = &self.services[svc].0;
            if let Some(prefix) = st.prefix {
                services.push(ServiceReport {
                    name: name.clone(),
                    prefixes: vec![prefix],
                    healthy: st.down.is_none(),
                    announcing: st.announcing && wire,
                    intent: st.last.intent(),
                });
            }
        }
        for (svc, st) in s.svcs.iter().enumerate() {
            if let Some(r) = &st.removal {
                services.push(ServiceReport {
                    name: self.services[svc].0.clone(),
                    prefixes: vec![r.prefix],
                    healthy: false,
                    announcing: r.announcing && wire,
                    intent: r.last.intent(),
                });
            }
        }
        if s.report.services != services {
            s.report.services = services;
            s.report.generation += 1;
        }
    }

    fn note(&mut self, site: usize, what: &str, old: &Decision, new: &Decision) {
        self.stats.decisions += 1;
        if std::mem::discriminant(new) != std::mem::discriminant(old) {
            match new {
                Decision::Hold { .. } => self.stats.holds += 1,
                Decision::Withdraw { .. } => self.stats.withdrawals += 1,
                _ => {}
            }
            let line = format!("{} {what}: {new}", self.sites[site].name);
            self.log(line);
        }
    }

    /// The guard's decision for the configured service.
    fn decide_configured(&mut self, site: usize, svc: usize, now: Instant) {
        let Some(prefix) = self.sites[site].svcs[svc].prefix else {
            return;
        };
        let decision = {
            let s = &self.sites[site];
            let st = &s.svcs[svc];
            let (healthy, drain) = match st.down {
                None => (true, Drain::None),
                Some(Drain::Requested) => (true, Drain::Requested),
                Some(_) => (false, Drain::None),
            };
            decide(
                &GuardInput {
                    prefixes: &[prefix],
                    service: &self.services[svc].0,
                    min_sites: self.services[svc].1,
                    local_site: &s.name,
                    local_rank: site,
                    local: LocalService {
                        healthy,
                        drain,
                        announcing: st.announcing,
                        intent: st.intent,
                    },
                    view: &s.view,
                    timing: GuardTiming {
                        hand_over: self.hand_over,
                        ..TIMING
                    },
                },
                now,
            )
        };
        let old = self.sites[site].svcs[svc].last.clone();
        self.note(site, &format!("{svc}"), &old, &decision);
        let st = &mut self.sites[site].svcs[svc];
        st.announcing = decision.announces();
        // The report is visible to the next Serve the moment it is written, so the
        // publication time is `now` (a request started at the same millisecond does not
        // count: the protocol compares strictly).
        st.intent = st.intent.advance(&decision, now);
        st.last = decision;
    }

    /// The guard's decision for the service's pending removal, if any: guarded like a
    /// drain, confirmed per prefix; forced once the service is retired.
    fn decide_removal(&mut self, site: usize, svc: usize, now: Instant) {
        let decision = {
            let s = &self.sites[site];
            let Some(r) = &s.svcs[svc].removal else {
                return;
            };
            decide(
                &GuardInput {
                    prefixes: &[r.prefix],
                    service: &self.services[svc].0,
                    min_sites: self.services[svc].1,
                    local_site: &s.name,
                    local_rank: site,
                    local: LocalService {
                        healthy: false,
                        drain: if self.retired[svc] {
                            Drain::Forced
                        } else {
                            Drain::Removed
                        },
                        announcing: r.announcing,
                        intent: r.intent,
                    },
                    view: &s.view,
                    timing: GuardTiming {
                        hand_over: self.hand_over,
                        ..TIMING
                    },
                },
                now,
            )
        };
        let old = self.sites[site].svcs[svc]
            .removal
            .as_ref()
            .map_or(Decision::Announce, |r| r.last.clone());
        self.note(site, &format!("{svc} removal"), &old, &decision);
        let st = &mut self.sites[site].svcs[svc];
        if let Some(r) = st.removal.as_mut() {
            if decision.announces() {
                r.announcing = true;
                r.intent = r.intent.advance(&decision, now);
                r.last = decision;
            } else {
                // `Core::complete_removal`: the routes go, and so does the entry.
                st.removal = None;
            }
        }
    }

    fn check_safety(&mut self, seed: u64) {
        let sessions_down = self.sites.iter().filter(|s| !s.sessions_up).count();
        for (svc, (name, min)) in self.services.iter().enumerate() {
            // The service's first prefix: a config push may move the service elsewhere,
            // but the old prefix keeps its min_sites until it is retired.
            if self.retired[svc] {
                continue;
            }
            let announcing = self
                .sites
                .iter()
                .filter(|s| s.svcs[svc].keeps(p0()))
                .count();
            if announcing < *min {
                let what = format!("{name} announced by {announcing} sites < min_sites {min}");
                self.fail(seed, &what);
            }
            // What the routers see: the guard never takes the prefix off the wire below
            // min_sites; only sessions lost underneath it (at most one site each) can.
            let on_wire = self
                .sites
                .iter()
                .filter(|s| s.sessions_up && s.svcs[svc].keeps(p0()))
                .count();
            if on_wire + sessions_down < *min {
                let what = format!(
                    "{name} on the wire at {on_wire} sites with {sessions_down} sites' \
                     sessions down < min_sites {min}"
                );
                self.fail(seed, &what);
            }
            if announcing == *min {
                self.stats.min_margin_hits += 1;
            }
            for s in &self.sites {
                let st = &s.svcs[svc];
                if st.prefix.is_some() && st.down.is_none() && st.last != Decision::Announce {
                    let what = format!("healthy {} {name} decided {}", s.name, st.last);
                    self.fail(seed, &what);
                }
            }
        }
    }

    /// The calm-phase goal: exactly `max(min_sites, healthy)` announce, nothing held when
    /// enough healthy sites announce.
    fn converged(&self) -> bool {
        self.services.iter().enumerate().all(|(svc, (_, min))| {
            let healthy = self
                .sites
                .iter()
                .filter(|s| s.svcs[svc].down.is_none())
                .count();
            let announcing = self.sites.iter().filter(|s| s.svcs[svc].announcing).count();
            let held = self
                .sites
                .iter()
                .any(|s| matches!(s.svcs[svc].last, Decision::Hold { .. }));
            announcing == healthy.max(*min) && !(healthy >= *min && held)
        })
    }

    fn check_liveness(&mut self, seed: u64) {
        for (svc, (name, min)) in self.services.clone().iter().enumerate() {
            let healthy = self
                .sites
                .iter()
                .filter(|s| s.svcs[svc].down.is_none())
                .count();
            let announcing = self.sites.iter().filter(|s| s.svcs[svc].announcing).count();
            let expected = healthy.max(*min);
            if announcing != expected {
                let states: Vec<String> = self
                    .sites
                    .iter()
                    .map(|s| format!("{}: {}", s.name, s.svcs[svc].last))
                    .collect();
                let what = format!(
                    "after calm phase {name} announced by {announcing} sites, expected \
                     {expected} ({healthy} healthy, min_sites {min}): {states:?}"
                );
                self.fail(seed, &what);
            }
            for s in &self.sites {
                let held = matches!(s.svcs[svc].last, Decision::Hold { .. });
                if healthy >= *min && held {
                    let what = format!("{} {name} still held with {healthy} healthy", s.name);
                    self.fail(seed, &what);
                }
            }
        }
    }

    /// Runs every queued event (bounded: `budget` events at most); `before(sim, at)` is
    /// called ahead of each event, with its time.
    fn run_out(&mut self, seed: u64, budget: u32, mut before: impl FnMut(&Sim, u64)) {
        for _ in 0..budget {
            let Some(q) = self.queue.pop() else {
                return;
            };
            before(self, q.at);
            self.step(seed, q);
        }
        panic!("seed {seed}: event budget exhausted");
    }

    /// The sites whose routes for `web` (service 0) are on the wire.
    fn on_wire(&self) -> Vec<String> {
        self.sites
            .iter()
            .filter(|s| s.sessions_up && s.svcs[0].announcing)
            .map(|s| s.name.clone())
            .collect()
    }

    /// What site `to` answers a poll with `nonce` — or the attacker instead of it.
    fn serve(&mut self, to: usize, nonce: &[u8; NONCE_LEN]) -> Answer {
        let report = self.sites[to].report.clone();
        let Some(attack) = self.attack else {
            return Answer::Plain(report);
        };
        let name = report.site.clone();
        if attack.target == to && !self.calm && self.rng.gen_bool(attack.share) {
            // A well-formed report of the target that announces everything.
            let mut forged = report;
            for s in &mut forged.services {
                (s.healthy, s.announcing, s.intent) = (true, true, Intent::None);
            }
            let body = serde_json::to_vec(&StatusEnvelope { guard: forged }).expect("json");
            let attacker_key = FleetKey::from_file_bytes(&[b'x'; 32], "attacker").expect("key");
            let (body, signature) = match self.rng.gen_range(0..3) {
                0 => (body, None),
                1 => {
                    let sig = attacker_key.sign(&name, nonce, &body).into_bytes();
                    (body, Some(sig))
                }
                _ => match self.recorded[to].clone() {
                    Some((old_body, old_sig)) => (old_body, Some(old_sig)),
                    None => (body, None),
                },
            };
            self.stats.forged += 1;
            return Answer::Signed {
                body,
                signature,
                forged: true,
            };
        }
        let body = serde_json::to_vec(&StatusEnvelope { guard: report }).expect("json");
        let signature = self.key.sign(&name, nonce, &body).into_bytes();
        self.recorded[to] = Some((body.clone(), signature.clone()));
        Answer::Signed {
            body,
            signature: Some(signature),
            forged: false,
        }
    }

    fn step(&mut self, seed: u64, q: Queued) {
        self.now = q.at;
        self.stats.events += 1;
        match q.ev {
            Ev::Health { site, svc, down } => {
                if !self.calm {
                    self.log(format!(
                        "{} {svc} health down={down:?}",
                        self.sites[site].name
                    ));
                    self.sites[site].svcs[svc].down = down;
                    self.run_decisions(site);
                }
            }
            Ev::Sessions { site, up } => {
                if !self.calm {
                    self.log(format!("{} sessions up={up}", self.sites[site].name));
                    self.sites[site].sessions_up = up;
                    self.run_decisions(site);
                }
            }
            Ev::Partition { side, until } => {
                if !self.calm {
                    self.log(format!("partition {side:?} until {until}"));
                    self.partition = Some((side, until));
                }
            }
            Ev::Push { site, svc, to } => {
                self.log(format!(
                    "{} {svc} config push: {to:?}",
                    self.sites[site].name
                ));
                let st = &mut self.sites[site].svcs[svc];
                // What `Core::reconfigure` + `removed_by_reload` do: an announced prefix the
                // new config drops becomes a pending removal; a new prefix is announced at
                // once by a service that is up.
                if let Some(old) = st.prefix.filter(|old| Some(*old) != to) {
                    if st.announcing {
                        st.removal = Some(Removal {
                            prefix: old,
                            announcing: true,
                            intent: LocalIntent::None,
                            last: Decision::Announce,
                        });
                    }
                }
                st.prefix = to;
                if to.is_none() {
                    (st.announcing, st.intent) = (false, LocalIntent::None);
                }
                self.run_decisions(site);
            }
            Ev::Retire { svc } => {
                self.log(format!("{svc} retired in the fleet file"));
                self.retired[svc] = true;
                for site in 0..self.sites.len() {
                    self.run_decisions(site);
                }
            }
            Ev::Calm => {
                self.calm = true;
                self.partition = None;
                for site in 0..self.sites.len() {
                    self.sites[site].sessions_up = true;
                    for svc in 0..self.services.len() {
                        let down = if self.rng.gen_bool(0.5) {
                            None
                        } else if self.rng.gen_bool(0.2) {
                            Some(Drain::Requested)
                        } else {
                            Some(Drain::None)
                        };
                        self.sites[site].svcs[svc].down = down;
                    }
                    self.run_decisions(site);
                }
                self.log("calm phase".into());
            }
            Ev::PollStart { from, to } => {
                let requested_at = self.now;
                let (loss, stall) = if self.calm {
                    (0.0, 0.0)
                } else {
                    (self.loss, self.stall)
                };
                let cut = self
                    .partition
                    .as_ref()
                    .is_some_and(|(side, until)| requested_at < *until && side[from] != side[to]);
                if cut {
                    let result =
                        Box::new(Err(PollFailure::Timeout(Duration::from_millis(TIMEOUT_MS))));
                    self.push(
                        requested_at + TIMEOUT_MS,
                        Ev::Deliver {
                            from,
                            to,
                            requested_at,
                            nonce: [0; NONCE_LEN],
                            result,
                        },
                    );
                } else if self.rng.gen_bool(loss) {
                    let at = requested_at + self.rng.gen_range(0..=TIMEOUT_MS);
                    let result = Box::new(Err(PollFailure::Request("lost".into())));
                    self.push(
                        at,
                        Ev::Deliver {
                            from,
                            to,
                            requested_at,
                            nonce: [0; NONCE_LEN],
                            result,
                        },
                    );
                } else {
                    let mut nonce = [0u8; NONCE_LEN];
                    self.rng.fill_bytes(&mut nonce);
                    let max_leg = if self.calm { 50 } else { self.max_leg };
                    let d1 = self.rng.gen_range(0..=max_leg);
                    let d2 = self.rng.gen_range(0..=max_leg);
                    if d1 + d2 > TIMEOUT_MS {
                        let result =
                            Box::new(Err(PollFailure::Timeout(Duration::from_millis(TIMEOUT_MS))));
                        self.push(
                            requested_at + TIMEOUT_MS,
                            Ev::Deliver {
                                from,
                                to,
                                requested_at,
                                nonce: [0; NONCE_LEN],
                                result,
                            },
                        );
                    } else {
                        self.push(
                            requested_at + d1,
                            Ev::Serve {
                                from,
                                to,
                                requested_at,
                                deliver_at: requested_at + d1 + d2,
                                nonce,
                            },
                        );
                    }
                }
                let extra = if self.rng.gen_bool(stall) {
                    self.rng.gen_range(0..=4 * INTERVAL_MS)
                } else {
                    0
                };
                let next = requested_at + INTERVAL_MS + extra;
                if next < CALM_END_MS {
                    self.push(next, Ev::PollStart { from, to });
                }
            }
            Ev::Serve {
                from,
                to,
                requested_at,
                deliver_at,
                nonce,
            } => {
                let answer = self.serve(to, &nonce);
                self.push(
                    deliver_at,
                    Ev::Deliver {
                        from,
                        to,
                        requested_at,
                        nonce,
                        result: Box::new(Ok(answer)),
                    },
                );
            }
            Ev::Deliver {
                from,
                to,
                requested_at,
                nonce,
                result,
            } => {
                let name = self.sites[to].name.clone();
                let key = self.verify.then_some(&self.key);
                let result = match *result {
                    Ok(Answer::Plain(report)) => Ok(report),
                    Ok(Answer::Signed {
                        body,
                        signature,
                        forged,
                    }) => {
                        let r =
                            accept_answer(key, &name, &Nonce(nonce), &body, signature.as_deref());
                        if forged && self.verify && r.is_ok() {
                            self.fail(seed, &format!("a forged answer for {name} was accepted"));
                        }
                        r
                    }
                    Err(e) => Err(e),
                };
                let outcome = PollOutcome {
                    requested_at: self.instant(requested_at),
                    result,
                };
                let seen_at = self.instant(self.now);
                self.sites[from].view.record(&name, outcome, seen_at);
                self.run_decisions(from);
            }
            Ev::Tick { site } => {
                self.run_decisions(site);
                let next = self.now + TICK_MS;
                if next < CALM_END_MS {
                    self.push(next, Ev::Tick { site });
                }
            }
        }
        self.check_safety(seed);
        if self.calm {
            match (self.converged(), self.converged_at) {
                (true, None) => self.converged_at = Some(self.now),
                (false, Some(_)) => self.converged_at = None,
                _ => {}
            }
        }
    }
}

/// A fleet of `n` sites (named a, b, c, … in rank order), every service healthy and
/// announced, pollers and ticks started at random phases.
fn fleet_sim(
    rng: SplitMix64,
    n: usize,
    services: Vec<(String, usize)>,
    loss: f64,
    stall: f64,
) -> Sim {
    let n_svc = services.len();
    let names: Vec<String> = (b'a'..=b'z')
        .take(n)
        .map(|c| char::from(c).to_string())
        .collect();
    let sites = (0..n)
        .map(|i| Site {
            name: names[i].clone(),
            sessions_up: true,
            svcs: (0..n_svc)
                .map(|_| SvcState {
                    down: None,
                    announcing: true,
                    intent: LocalIntent::None,
                    last: Decision::Announce,
                    prefix: Some(p0()),
                    removal: None,
                })
                .collect(),
            view: FleetView::unpolled(
                names
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(j, name)| (j, name.as_str())),
            ),
            report: SiteReport {
                version: REPORT_VERSION,
                site: names[i].clone(),
                generation: 1,
                fleet_digest: None,
                services: services
                    .iter()
                    .map(|(name, _)| ServiceReport {
                        name: name.clone(),
                        prefixes: vec![p0()],
                        healthy: true,
                        announcing: true,
                        intent: Intent::None,
                    })
                    .collect(),
            },
        })
        .collect();
    let mut sim = Sim {
        base: Instant::now(),
        now: 0,
        seq: 0,
        queue: BinaryHeap::new(),
        rng,
        sites,
        services,
        loss,
        stall,
        truthful: true,
        max_leg: 400,
        hand_over: anyguard::guard::hand_over::DEFAULT_HAND_OVER,
        retired: vec![false; n_svc],
        key: FleetKey::from_file_bytes(&[b'k'; 32], "sim").expect("key"),
        verify: true,
        attack: None,
        recorded: vec![None; n],
        partition: None,
        calm: false,
        trace: VecDeque::new(),
        stats: Stats::default(),
        converged_at: None,
    };
    for from in 0..n {
        for to in 0..n {
            if from != to {
                let at = sim.rng.gen_range(0..INTERVAL_MS);
                sim.push(at, Ev::PollStart { from, to });
            }
        }
        let at = sim.rng.gen_range(0..TICK_MS);
        sim.push(at, Ev::Tick { site: from });
    }
    sim
}

fn setup(seed: u64) -> Sim {
    let mut rng = SplitMix64(seed);
    let n = rng.gen_range(3..=7);
    let n_svc = rng.gen_range(1..=2);
    let services: Vec<(String, usize)> = (0..n_svc)
        .map(|i| {
            // Mostly 1..n-1 (withdrawals possible); sometimes n (every failing site holds).
            let min = if rng.gen_bool(0.1) {
                n
            } else {
                rng.gen_range(1..n)
            };
            (format!("svc{i}"), min)
        })
        .collect();
    let loss = rng.gen_range(0.0..0.3);
    let stall = rng.gen_range(0.0..0.1);
    let mut sim = fleet_sim(rng, n, services, loss, stall);
    // Health: independent failures/recoveries, plus (in most runs) a burst where every
    // site fails within the same second.
    let down_reason = |rng: &mut SplitMix64| {
        if rng.gen_bool(0.2) {
            Drain::Requested
        } else {
            Drain::None
        }
    };
    for site in 0..n {
        for svc in 0..n_svc {
            let mut t = sim.rng.gen_range(0..3_000);
            let mut down = false;
            while t < CHAOS_END_MS {
                down = !down;
                let ev = Ev::Health {
                    site,
                    svc,
                    down: down.then(|| down_reason(&mut sim.rng)),
                };
                sim.push(t, ev);
                t += sim.rng.gen_range(100..6_000);
            }
        }
    }
    // Sessions lost under the guard at some sites (a link or router failure), and in some
    // runs a partition of the fleet into two sides for a few seconds.
    for site in 0..n {
        if sim.rng.gen_bool(0.3) {
            let mut t = sim.rng.gen_range(0..6_000);
            let mut up = true;
            while t < CHAOS_END_MS {
                up = !up;
                sim.push(t, Ev::Sessions { site, up });
                t += sim.rng.gen_range(200..4_000);
            }
        }
    }
    // In some runs an attacker answers part of one site's polls with forged, wrongly signed
    // or replayed reports that say it announces everything.
    if sim.rng.gen_bool(0.3) {
        sim.attack = Some(Attack {
            target: sim.rng.gen_range(0..n),
            share: sim.rng.gen_range(0.2..0.9),
        });
    }
    if sim.rng.gen_bool(0.3) {
        let side: Vec<bool> = (0..n).map(|_| sim.rng.gen_bool(0.5)).collect();
        let at = sim.rng.gen_range(0..8_000);
        let until = at + sim.rng.gen_range(1_000..5_000);
        sim.push(at, Ev::Partition { side, until });
    }
    if sim.rng.gen_bool(0.7) {
        let burst = sim.rng.gen_range(1_000..10_000);
        for site in 0..n {
            for svc in 0..n_svc {
                let at = burst + sim.rng.gen_range(0..1_000);
                let down = Some(down_reason(&mut sim.rng));
                sim.push(at, Ev::Health { site, svc, down });
            }
        }
    }
    sim.push(CHAOS_END_MS, Ev::Calm);
    sim
}

fn run(seed: u64) -> Stats {
    let mut sim = setup(seed);
    sim.run_out(seed, 200_000, |_, _| {});
    sim.check_liveness(seed);
    let converged_at = sim.converged_at.unwrap_or(CALM_END_MS);
    sim.stats.convergence_ms = converged_at.saturating_sub(CHAOS_END_MS);
    sim.stats
}

#[test]
fn runtime_guard_never_leaves_fewer_than_min_sites_announcing_and_releases_holds() {
    let runs: u64 = std::env::var("GUARD_SIM_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let mut total = Stats::default();
    let mut slowest = 0;
    for seed in 0..runs {
        let s = run(seed);
        slowest = slowest.max(s.convergence_ms);
        total.convergence_ms += s.convergence_ms;
        total.events += s.events;
        total.decisions += s.decisions;
        total.holds += s.holds;
        total.withdrawals += s.withdrawals;
        total.min_margin_hits += s.min_margin_hits;
        total.forged += s.forged;
    }
    eprintln!(
        "guard simulation: {runs} runs, {} events, {} decisions, {} holds, {} withdrawals, \
         {} steps at exactly min_sites, {} forged or replayed answers refused; after the \
         calm phase starts, convergence takes \
         {} ms on average and {slowest} ms at most (virtual time, {INTERVAL_MS} ms polls)",
        total.events,
        total.decisions,
        total.holds,
        total.withdrawals,
        total.min_margin_hits,
        total.forged,
        total.convergence_ms / runs.max(1)
    );
    // The runs must actually exercise the guard, not just healthy fleets.
    assert!(total.holds > runs);
    assert!(total.withdrawals > runs);
    assert!(total.min_margin_hits > 0);
    assert!(
        total.forged > runs,
        "the attacker must actually answer polls"
    );
}

/// Run a scripted scenario (no calm phase) and return which sites announce each service.
fn scripted(seed: u64, n: usize, min_sites: usize, health: &[(u64, usize, bool)]) -> Vec<String> {
    let mut sim = fleet_sim(
        SplitMix64(seed),
        n,
        vec![("web".to_owned(), min_sites)],
        0.0,
        0.0,
    );
    // These scripted runs check ranks and recovery over a network whose poll legs take up
    // to 400 ms each, so that a quarter of the polls time out: every timeout starts the
    // other site's hand-over again (unreachable is not announcing), and a 1 s hand-over is
    // rarely reached before the run ends. The hand-over is off here; the seeded runs keep
    // the default (their calm phase has 50 ms legs).
    sim.hand_over = Duration::ZERO;
    for &(at, site, healthy) in health {
        let down = (!healthy).then_some(Drain::None);
        sim.push(at, Ev::Health { site, svc: 0, down });
    }
    sim.run_out(seed, 100_000, |_, _| {});
    // Every session is up in these scenarios: on the wire is announced.
    sim.on_wire()
}

#[test]
fn every_site_failing_in_the_same_millisecond_keeps_the_first_ranked_sites_announcing() {
    for seed in 0..50 {
        let all_fail: Vec<_> = (0..5).map(|site| (3_000, site, false)).collect();
        assert_eq!(scripted(seed, 5, 2, &all_fail), ["a", "b"], "seed {seed}");
    }
}

#[test]
fn held_sites_withdraw_once_enough_others_recover() {
    for seed in 0..50 {
        let mut events: Vec<_> = (0..3).map(|site| (3_000, site, false)).collect();
        events.push((8_000, 2, true));
        assert_eq!(scripted(seed, 3, 1, &events), ["c"], "seed {seed}");
    }
}

/// Sites whose routes are on the wire (sessions up and announced) after a scripted run
/// of three sites, `web` at `min_sites = 2`: site c loses every BGP session at 2 s (its
/// service stays healthy), then site a's health fails at 3 s.
fn c_sessions_down_then_a_fails(seed: u64, truthful: bool) -> Vec<String> {
    let mut sim = fleet_sim(SplitMix64(seed), 3, vec![("web".to_owned(), 2)], 0.0, 0.0);
    sim.truthful = truthful;
    // Polls that never time out: what decides is what c reports, not the network.
    sim.max_leg = 50;
    sim.push(2_000, Ev::Sessions { site: 2, up: false });
    sim.push(
        3_000,
        Ev::Health {
            site: 0,
            svc: 0,
            down: Some(Drain::None),
        },
    );
    sim.run_out(seed, 100_000, |_, _| {});
    sim.on_wire()
}

#[test]
fn a_site_whose_sessions_are_down_is_not_counted_so_the_sick_site_holds() {
    for seed in 0..50 {
        // c reports what is on its wire (nothing): a holds, and two sites keep the route.
        assert_eq!(
            c_sessions_down_then_a_fails(seed, true),
            ["a", "b"],
            "seed {seed}"
        );
        // Had c reported its decision instead (the report before issue 11), a would have
        // counted it and withdrawn, leaving the routers one path.
        assert_eq!(
            c_sessions_down_then_a_fails(seed, false),
            ["b"],
            "seed {seed}"
        );
    }
}

/// Sites on the wire after three sites, `web` at `min_sites = 2`: site c's sessions go down
/// at 2 s (it reports so), while someone on the path answers every poll of c with a
/// well-formed report that says c announces; site a's health fails at 3 s.
fn c_impersonated_then_a_fails(seed: u64, verify: bool) -> Vec<String> {
    let mut sim = fleet_sim(SplitMix64(seed), 3, vec![("web".to_owned(), 2)], 0.0, 0.0);
    sim.verify = verify;
    sim.max_leg = 50;
    sim.attack = Some(Attack {
        target: 2,
        share: 1.0,
    });
    sim.push(2_000, Ev::Sessions { site: 2, up: false });
    sim.push(
        3_000,
        Ev::Health {
            site: 0,
            svc: 0,
            down: Some(Drain::None),
        },
    );
    sim.run_out(seed, 100_000, |_, _| {});
    assert!(sim.stats.forged > 0);
    sim.on_wire()
}

#[test]
fn forged_unsigned_and_replayed_reports_count_as_unreachable_so_the_sick_site_holds() {
    for seed in 0..50 {
        // Every forged answer fails verification (unsigned, another key, a replay for an
        // old nonce): c counts as unreachable, a holds, two sites keep the route.
        assert_eq!(
            c_impersonated_then_a_fails(seed, true),
            ["a", "b"],
            "seed {seed}"
        );
        // Unsigned fleet: a counts the impostor and withdraws, leaving one path.
        assert_eq!(
            c_impersonated_then_a_fails(seed, false),
            ["b"],
            "seed {seed}"
        );
    }
}

/// What a config push reaching every site within one poll interval leaves: `n` sites,
/// `web` at `min_sites`, each site gets the push (`to`: the new prefix, or `None` for a
/// config without `web`) at 3 s plus up to one poll interval; the service is retired in
/// the fleet file at 18 s. Returns the sites keeping the old prefix at 17.5 s, those
/// announcing the new one then, and those keeping the old prefix at the end.
fn config_push(
    seed: u64,
    n: usize,
    min_sites: usize,
    to: Option<IpNet>,
    loss: f64,
) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut sim = fleet_sim(
        SplitMix64(seed),
        n,
        vec![("web".to_owned(), min_sites)],
        loss,
        0.0,
    );
    if loss == 0.0 {
        sim.max_leg = 100;
    }
    for site in 0..n {
        let at = 3_000 + sim.rng.gen_range(0..INTERVAL_MS);
        sim.push(at, Ev::Push { site, svc: 0, to });
    }
    sim.push(18_000, Ev::Retire { svc: 0 });
    let keeping = |sim: &Sim, prefix: IpNet| -> Vec<String> {
        sim.sites
            .iter()
            .filter(|s| s.svcs[0].keeps(prefix))
            .map(|s| s.name.clone())
            .collect()
    };
    let mut before_retire = None;
    sim.run_out(seed, 200_000, |sim, at| {
        if at >= 17_500 && before_retire.is_none() {
            before_retire = Some((keeping(sim, p0()), keeping(sim, p1())));
        }
    });
    let (old, new) = before_retire.expect("ran past 17.5 s");
    (old, new, keeping(&sim, p0()))
}

#[test]
fn a_config_without_the_service_pushed_everywhere_keeps_min_sites_until_it_is_retired() {
    for seed in 0..60 {
        let n = 3 + usize::try_from(seed % 4).expect("small");
        let min = 1 + usize::try_from(seed % 2).expect("small");
        let (old, _, after) = config_push(seed, n, min, None, 0.0);
        // Every site wants the routes gone; the guard keeps exactly min_sites of them,
        // held (checked at every event: never fewer).
        assert_eq!(old.len(), min, "seed {seed}: {old:?}");
        // Retired in the fleet file: the explicit act removes it everywhere.
        assert!(after.is_empty(), "seed {seed}: {after:?}");
    }
}

#[test]
fn a_prefix_change_pushed_everywhere_keeps_the_old_prefix_at_min_sites_and_announces_the_new() {
    for seed in 0..60 {
        let n = 3 + usize::try_from(seed % 4).expect("small");
        let min = 1 + usize::try_from(seed % 2).expect("small");
        let (old, new, after) = config_push(seed, n, min, Some(p1()), 0.0);
        // A site announcing the new prefix does not confirm the old one: per-prefix
        // confirmations keep min_sites of the old prefix.
        assert_eq!(old.len(), min, "seed {seed}: {old:?}");
        assert_eq!(
            new.len(),
            n,
            "seed {seed}: the new prefix at every site: {new:?}"
        );
        assert!(after.is_empty(), "seed {seed}: {after:?}");
    }
}

#[test]
fn config_pushes_over_a_lossy_network_never_leave_fewer_than_min_sites() {
    // Safety only (checked after every event): polls lost, delayed past the timeout.
    for seed in 0..200 {
        let n = 3 + usize::try_from(seed % 5).expect("small");
        let min = 1 + usize::try_from(seed % 3).expect("small").min(n - 1);
        let to = (seed % 2 == 0).then(p1);
        let (old, _, _) = config_push(seed, n, min, to, 0.2);
        assert!(old.len() >= min, "seed {seed}: {old:?}");
    }
}
