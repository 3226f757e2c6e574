//! `anyguard demo`: three sites, a router and the all-sites guard in one process, on
//! loopback, without root or a router installed — the first thing a newcomer runs.
//!
//! ```text
//!  health target a ◀─probe─ site a (coordinator::run) ─BGP─▶ ┐
//!  health target b ◀─probe─ site b (coordinator::run) ─BGP─▶ ├ router (session tasks,
//!  health target c ◀─probe─ site c (coordinator::run) ─BGP─▶ ┘  table of 203.0.113.0/24)
//!                     sites poll each other's /fleet/report (fleet.toml, min_sites 2)
//!  this driver: flips the targets, pushes configs (reload), reads each /status,
//!               prints the router's table whenever it changes
//! ```
//!
//! Each site is a real daemon core started as `anyguard run --config` starts it, with a
//! config file of its own in a temporary directory; the router ([`router`]) is built on
//! the project's own session tasks, FSM and codec. The scripted story ([`story`], pure)
//! flips the health targets and pushes a bad config; `--interactive` hands the targets
//! to the keyboard ([`interactive`]). Only this driver does I/O; every port is on
//! 127.0.0.1 and chosen by the OS unless `--port-base` fixes the status endpoints.

pub mod interactive;
pub mod output;
pub mod router;
pub mod site;
pub mod story;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use rand::RngCore;
use tokio::task::JoinHandle;

use self::interactive::{key_action, KeyAction, TerminalMode, KEYS};
use self::output::{Kind, Style};
use self::router::{render_table, Router, RouterTable};
use self::site::{HealthTarget, Site, SitePlan, MIN_SITES, PREFIX, SERVICE, SITES, SITE_ASN};
use self::story::{explain, site_changes, Observation, Progress, SiteView, Tick};
use crate::status::client;
use crate::status::model::ReloadStatus;

/// The daemons' log level inside the demo unless `--log-level` says otherwise: none.
/// Their lines would drown the story, which prints what matters from `/status` (even a
/// rejected reload, an error in a daemon's log, is a step of the story), and a daemon that
/// cannot start ends the demo with its error.
pub const LOG_LEVEL: &str = "off";

/// How often the sites' `/status` is read.
const OBSERVE_EVERY: Duration = Duration::from_millis(150);

/// `anyguard demo`'s options.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Flip the sites' health by key instead of the scripted story (keys shown on screen;
    /// q, ctrl-c or end of input quit).
    #[arg(long)]
    pub interactive: bool,
    /// The sites' status endpoints listen on PORT, PORT+1 and PORT+2 of 127.0.0.1
    /// (default: free ports the OS picks).
    #[arg(long, value_name = "PORT")]
    pub port_base: Option<u16>,
}

/// Runs the demo; exit status 0 when the story was told to its end (or the user quit),
/// 1 when something did not happen as it should, 130 when the story was interrupted.
pub async fn run(args: DemoArgs) -> ExitCode {
    let style = Style {
        colour: client::colour_wanted(),
    };
    let mut demo = match Demo::start(&args, style).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("anyguard demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = if args.interactive {
        demo.interactive().await
    } else {
        demo.story().await
    };
    let stopped = demo.stop().await;
    match (code, stopped) {
        (code, Ok(())) => code,
        (_, Err(e)) => {
            eprintln!("anyguard demo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Sockets, the temporary directory, files.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A site could not start.
    #[error(transparent)]
    Site(#[from] site::SiteError),
    /// `--port-base` leaves no room for three ports.
    #[error("--port-base {0}: the three status ports must be below 65536")]
    PortBase(u16),
}

fn io(what: &str) -> impl FnOnce(std::io::Error) -> DemoError + '_ {
    move |source| DemoError::Io {
        what: what.to_owned(),
        source,
    }
}

/// A running demo.
struct Demo {
    style: Style,
    start: Instant,
    router: Router,
    table: RouterTable,
    sites: Vec<Site>,
    /// Each site's latest view (`None` until its `/status` first answered).
    views: [Option<SiteView>; 3],
    /// Each site's last reload before the latest config push.
    reload_before: [Option<ReloadStatus>; 3],
    /// Whether the sites run the config without the service (interactive `x`).
    bad_config: bool,
    /// The router's path count after each change since the last turn of the loop (the
    /// story checks every one against `min_sites`, not only those seen at a poll).
    paths_seen: Vec<usize>,
    // Removed (with the files in it) when the demo ends.
    _dir: tempfile::TempDir,
}

impl Demo {
    async fn start(args: &DemoArgs, style: Style) -> Result<Self, DemoError> {
        let start = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("anyguard-demo-")
            .tempdir()
            .map_err(io("temporary directory"))?;
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        std::fs::write(dir.path().join("fleet.key"), hex::encode(key)).map_err(io("fleet key"))?;
        let status_ports = status_ports(args.port_base)?;
        let router = Router::start(&SITES, SITE_ASN, PREFIX)
            .await
            .map_err(io("router listener"))?;
        let named: Vec<(&str, u16)> = SITES.iter().copied().zip(status_ports).collect();
        std::fs::write(dir.path().join("fleet.toml"), site::fleet_toml(&named))
            .map_err(io("fleet file"))?;
        let mut sites = Vec::new();
        for (i, (name, status_port)) in named.iter().enumerate() {
            let target = HealthTarget::start().await.map_err(io("health target"))?;
            let plan = SitePlan {
                name: (*name).to_owned(),
                status_port: *status_port,
                router_port: router.port(name).unwrap_or_default(),
                target_url: target.url(),
            };
            let index = u8::try_from(i).unwrap_or_default();
            sites.push(Site::start(plan, index, target, dir.path())?);
        }
        let demo = Demo {
            style,
            start,
            table: RouterTable::new(PREFIX, &SITES),
            router,
            sites,
            views: Default::default(),
            reload_before: Default::default(),
            bad_config: false,
            paths_seen: Vec::new(),
            _dir: dir,
        };
        demo.intro();
        Ok(demo)
    }

    fn print(&self, kind: Kind, text: &str) {
        println!("{}", self.style.line(self.start.elapsed(), kind, text));
    }

    fn intro(&self) {
        self.print(
            Kind::Step,
            &format!(
                "anyguard demo: three sites announce {PREFIX} ({SERVICE}) to one router, all on \
                 127.0.0.1; the fleet keeps {SERVICE} at min_sites {MIN_SITES} of 3"
            ),
        );
        for s in &self.sites {
            self.print(
                Kind::Note,
                &format!(
                    "site {}: status {}  health target {}  BGP to the router's port {}",
                    s.plan.name,
                    s.plan.status_url(),
                    s.plan.target_url,
                    s.plan.router_port
                ),
            );
        }
        self.print(
            Kind::Note,
            &format!(
                "router: AS {}, one session per site; its table for {PREFIX} is printed \
                 whenever it changes ([a b c] = a path from that site, . = none)",
                router::ROUTER_ASN
            ),
        );
        self.print(
            Kind::Note,
            "try `anyguard status --url URL` with a site's status URL while the demo runs",
        );
    }

    /// Folds a router event in and prints the table when it changed.
    fn on_router_event(&mut self, event: &crate::session::PeerEvent) {
        if let Some(change) = self.table.on_event(event) {
            let kind = Style::router_kind(change.paths.len(), SITES.len(), MIN_SITES);
            self.print(kind, &render_table(&self.table, &change));
            self.paths_seen.push(change.paths.len());
        }
    }

    /// Reads every site's `/status` (a site that does not answer keeps its last view)
    /// and prints what changed.
    async fn observe(&mut self) {
        let urls = [0, 1, 2].map(|i| self.sites[i].plan.status_url());
        let (a, b, c) = tokio::join!(
            client::document(&urls[0]),
            client::document(&urls[1]),
            client::document(&urls[2]),
        );
        let before: Vec<SiteView> = self
            .views
            .iter()
            .map(|v| v.clone().unwrap_or_default())
            .collect();
        for (i, doc) in [a, b, c].into_iter().enumerate() {
            if let Ok(doc) = doc {
                self.views[i] = Some(SiteView::from_doc(&doc, SERVICE));
            }
        }
        let after: Vec<SiteView> = self
            .views
            .iter()
            .map(|v| v.clone().unwrap_or_default())
            .collect();
        for (line, attention) in site_changes(&before, &after, &SITES) {
            self.print(if attention { Kind::Held } else { Kind::Note }, &line);
        }
    }

    fn observation(&self) -> Observation {
        let paths = self.table.paths();
        Observation {
            paths: SITES.map(|s| paths.iter().any(|p| p == s)),
            sites: [0, 1, 2].map(|i| self.views[i].clone().unwrap_or_default()),
            reload_before: self.reload_before.clone(),
        }
    }

    /// A site whose daemon ended on its own (e.g. its status port was taken).
    fn ended_site(&self) -> Option<&str> {
        self.sites
            .iter()
            .find(|s| s.ended())
            .map(|s| s.plan.name.as_str())
    }

    /// Sets the health targets.
    fn set_health(&self, health: [bool; 3]) {
        for (site, healthy) in self.sites.iter().zip(health) {
            if site.target.healthy() != healthy {
                self.print(
                    if healthy { Kind::Note } else { Kind::Held },
                    &format!(
                        "{}'s health target now answers {}",
                        site.plan.name,
                        if healthy { "200" } else { "503" }
                    ),
                );
            }
            site.target.set_healthy(healthy);
        }
    }

    /// Writes every site's config (with or without the service) and reloads all three
    /// back to back, as a careless rollout would.
    async fn push(&mut self, with_service: bool) -> Result<(), site::SiteError> {
        self.reload_before =
            [0, 1, 2].map(|i| self.views[i].as_ref().and_then(|v| v.last_reload.clone()));
        self.bad_config = !with_service;
        self.print(
            Kind::Held,
            &format!(
                "pushing the config {} {SERVICE} to a, b and c (reload)",
                if with_service { "with" } else { "WITHOUT" }
            ),
        );
        for s in &self.sites {
            s.push_config(with_service).await?;
        }
        Ok(())
    }

    /// The scripted story.
    async fn story(&mut self) -> ExitCode {
        let mut progress = Progress::new(story::steps(), MIN_SITES);
        let total = progress.steps().len();
        let mut timer = tokio::time::interval(OBSERVE_EVERY);
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        loop {
            tokio::select! {
                Some(event) = self.router.events.recv() => {
                    self.on_router_event(&event);
                    continue;
                }
                _ = &mut ctrl_c => {
                    self.print(Kind::Note, "ctrl-c: the story stops before its end");
                    return ExitCode::from(130);
                }
                _ = timer.tick() => {}
            }
            for n in self.paths_seen.drain(..) {
                progress.on_paths(n);
            }
            if let Some(name) = self.ended_site() {
                self.print(Kind::Bad, &format!("site {name}'s daemon ended"));
                return ExitCode::FAILURE;
            }
            self.observe().await;
            let obs = self.observation();
            match progress.poll(Instant::now(), &obs) {
                Tick::Wait => {}
                Tick::Begin(i) => {
                    let Some(step) = progress.current().cloned() else {
                        continue;
                    };
                    self.print(
                        Kind::Step,
                        &format!("step {}/{total}: {}", i + 1, step.title),
                    );
                    self.print(Kind::Note, step.what);
                    self.set_health(step.health);
                    if let Some(with_service) = step.push {
                        if let Err(e) = self.push(with_service).await {
                            self.print(Kind::Bad, &e.to_string());
                            return ExitCode::FAILURE;
                        }
                    }
                }
                Tick::Met(i) => {
                    let expect = progress.steps()[i].expect;
                    let lines = explain(expect, &obs, &SITES, MIN_SITES);
                    for (k, line) in lines.iter().enumerate() {
                        self.print(if k == 0 { Kind::Good } else { Kind::Held }, line);
                    }
                }
                Tick::TimedOut(i) => {
                    self.print(
                        Kind::Bad,
                        &format!(
                            "step {} not reached within {:?}: router paths {:?}, sites {:?}",
                            i + 1,
                            story::STEP_TIMEOUT,
                            self.table.paths(),
                            obs.sites
                                .iter()
                                .map(|s| s.state.as_deref().unwrap_or("-"))
                                .collect::<Vec<_>>()
                        ),
                    );
                    return ExitCode::FAILURE;
                }
                Tick::Finished => break,
            }
        }
        let fewest = progress.fewest_paths().unwrap_or(0);
        let secs = self.start.elapsed().as_secs_f64();
        if fewest < MIN_SITES {
            self.print(
                Kind::Bad,
                &format!(
                    "the router had only {fewest} path(s) at one point (min_sites {MIN_SITES})"
                ),
            );
            return ExitCode::FAILURE;
        }
        self.print(
            Kind::Step,
            &format!(
                "the story is over after {secs:.1}s: from the moment every site was up, the \
                 router never had fewer than {fewest} paths (min_sites {MIN_SITES})"
            ),
        );
        ExitCode::SUCCESS
    }

    /// The sites' health by key.
    async fn interactive(&mut self) -> ExitCode {
        let _terminal = TerminalMode::keys_at_once();
        let mut keys = interactive::spawn_stdin_reader();
        self.print(
            Kind::Step,
            "interactive: flip the sites' health and watch the router",
        );
        self.print(Kind::Note, KEYS);
        let mut timer = tokio::time::interval(OBSERVE_EVERY);
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        loop {
            tokio::select! {
                Some(event) = self.router.events.recv() => self.on_router_event(&event),
                key = keys.recv() => match key {
                    None => {
                        self.print(Kind::Note, "end of input: quitting");
                        break;
                    }
                    Some(byte) => match key_action(byte) {
                        Some(KeyAction::Quit) => break,
                        Some(action) => {
                            if let Err(e) = self.on_key(action).await {
                                self.print(Kind::Bad, &e.to_string());
                                return ExitCode::FAILURE;
                            }
                        }
                        None if byte.is_ascii_whitespace() => {}
                        None => self.print(Kind::Note, KEYS),
                    },
                },
                _ = &mut ctrl_c => {
                    self.print(Kind::Note, "ctrl-c: quitting");
                    break;
                }
                _ = timer.tick() => {
                    if let Some(name) = self.ended_site() {
                        self.print(Kind::Bad, &format!("site {name}'s daemon ended"));
                        return ExitCode::FAILURE;
                    }
                    self.observe().await;
                }
            }
            self.paths_seen.clear();
        }
        ExitCode::SUCCESS
    }

    async fn on_key(&mut self, action: KeyAction) -> Result<(), site::SiteError> {
        match action {
            KeyAction::Flip(i) => {
                let mut health = [0, 1, 2].map(|k| self.sites[k].target.healthy());
                health[i] = !health[i];
                self.set_health(health);
            }
            KeyAction::ToggleConfig => self.push(self.bad_config).await?,
            KeyAction::Show => {
                for (s, v) in self.sites.iter().zip(&self.views) {
                    let v = v.clone().unwrap_or_default();
                    let mut line = format!(
                        "{}: {}",
                        s.plan.name,
                        v.state.as_deref().unwrap_or("not configured")
                    );
                    if !v.reason.is_empty() {
                        line.push_str(&format!(" ({})", v.reason));
                    }
                    if let Some(d) = &v.removal {
                        line.push_str(&format!("; removal {d} ({})", v.removal_reason));
                    }
                    line.push_str(&format!("  {}", s.plan.status_url()));
                    self.print(Kind::Note, &line);
                }
            }
            KeyAction::Help => self.print(Kind::Note, KEYS),
            KeyAction::Quit => {}
        }
        Ok(())
    }

    /// Stops the three daemons at once (as SIGTERM would), then the router.
    async fn stop(self) -> Result<(), String> {
        self.print(Kind::Note, "stopping the sites and the router");
        let stops: Vec<(String, JoinHandle<Result<(), String>>)> = self
            .sites
            .into_iter()
            .map(|s| (s.plan.name.clone(), tokio::spawn(s.stop())))
            .collect();
        let mut errors = Vec::new();
        for (name, stop) in stops {
            match stop.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(format!("site {name}: {e}")),
                Err(e) => errors.push(format!("site {name}: {e}")),
            }
        }
        self.router.shutdown().await;
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

/// The sites' status ports: `base`, `base + 1`, `base + 2`, or three the OS picks (free
/// a moment ago: the daemons bind them themselves).
fn status_ports(base: Option<u16>) -> Result<[u16; 3], DemoError> {
    if let Some(base) = base {
        let last = base.checked_add(2).ok_or(DemoError::PortBase(base))?;
        return Ok([base, base + 1, last]);
    }
    // Held together so that the OS gives three different ports.
    let listeners = [0; 3].map(|_| std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)));
    let mut ports = [0u16; 3];
    for (port, l) in ports.iter_mut().zip(listeners) {
        *port = l
            .and_then(|l| l.local_addr())
            .map_err(io("status port"))?
            .port();
    }
    Ok(ports)
}

#[cfg(test)]
mod tests;
