//! The config guard: candidate configs checked against the fleet before they are used.
//!
//! Two entry points, both pure apart from the [`Environment`] they are given (drain files
//! and commands are looked up through it):
//! - [`check_rollout`]: every site's config is known (`anyguard check --fleet F
//!   --site-config a=A.toml …`). Strict: per service and prefix, fewer than `min_sites`
//!   sites able to announce is rejected, and so are prefixes that differ between sites,
//!   services and fleet-declared prefixes configured nowhere, and checks that cannot
//!   succeed.
//! - [`check_reload`]: one site's candidate, with the other sites known only through their
//!   [reports](super::report::SiteReport) in the [`FleetView`] (load, reload, and
//!   `anyguard check --config NEW.toml --fleet F` after one poll round). A service/prefix
//!   is rejected when, with the candidate, fewer than `min_sites` sites would announce it
//!   *and the candidate is part of the problem*: it cannot announce what the running config
//!   could (or, without a running config, cannot announce a service it configures). Prefix sets may
//!   differ during a site-by-site rollout; only the per-prefix count matters here.
//!
//! "Able to announce" is a property of the config: the service is configured with the
//! prefix, not disabled, not drained, has a peer carrying the prefix's address family,
//! and its checks can succeed. Live health is the runtime guard's business.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use hyper::Uri;
use ipnet::IpNet;

use super::fleet::Fleet;
use super::report::Intent;
use super::view::{FleetView, PeerSiteView};
use crate::config::{CheckConfig, CheckKind, Combine, Config, ServiceConfig};

/// What the check needs from the host it runs on.
pub trait Environment {
    /// Whether `path` exists (drain files).
    fn path_exists(&self, path: &Path) -> bool;
    /// Whether a check command's `argv[0]` can be run.
    fn command(&self, program: &str) -> CommandLookup;
}

/// The result of looking a command up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandLookup {
    /// Found and executable.
    Found,
    /// Not found (as a path, or on `PATH`).
    NotFound,
    /// Found but not executable.
    NotExecutable,
}

/// The real host: the file system and `PATH`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalSystem;

impl Environment for LocalSystem {
    fn path_exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn command(&self, program: &str) -> CommandLookup {
        let lookup = |p: &Path| match std::fs::metadata(p) {
            Ok(m) if m.is_file() && is_executable(&m) => CommandLookup::Found,
            Ok(_) => CommandLookup::NotExecutable,
            Err(_) => CommandLookup::NotFound,
        };
        if program.contains('/') {
            return lookup(Path::new(program));
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut best = CommandLookup::NotFound;
        for dir in std::env::split_paths(&path) {
            match lookup(&dir.join(program)) {
                CommandLookup::Found => return CommandLookup::Found,
                CommandLookup::NotExecutable => best = CommandLookup::NotExecutable,
                CommandLookup::NotFound => {}
            }
        }
        best
    }
}

#[cfg(unix)]
fn is_executable(m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    m.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_: &std::fs::Metadata) -> bool {
    true
}

/// Why a check can never pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckDefect {
    /// `argv` is empty.
    EmptyCommand,
    /// `argv[0]` does not exist.
    CommandNotFound(String),
    /// `argv[0]` is not executable.
    CommandNotExecutable(String),
    /// The URL does not parse as `http://host[:port]/path`.
    BadUrl {
        /// As configured.
        url: String,
        /// Why.
        why: String,
    },
    /// The accepted status range is empty.
    EmptyStatusRange(u16, u16),
    /// Port 0 cannot be connected to.
    PortZero(String),
}

impl fmt::Display for CheckDefect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckDefect::EmptyCommand => f.write_str("empty command"),
            CheckDefect::CommandNotFound(p) => write!(f, "command {p:?} not found"),
            CheckDefect::CommandNotExecutable(p) => write!(f, "command {p:?} is not executable"),
            CheckDefect::BadUrl { url, why } => write!(f, "unparsable URL {url:?} ({why})"),
            CheckDefect::EmptyStatusRange(lo, hi) => {
                write!(f, "status range {lo}-{hi} accepts no status")
            }
            CheckDefect::PortZero(a) => write!(f, "address {a} has port 0"),
        }
    }
}

/// Why one site will not announce a service prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    /// Rollout: no config was given for this fleet site.
    NoConfig,
    /// The service is not in the site's config (or report).
    ServiceMissing,
    /// The service lacks this prefix.
    PrefixMissing,
    /// `disabled = true`.
    Disabled,
    /// The drain file exists.
    Drained(PathBuf),
    /// No peer can carry the prefix.
    NoUsablePeer(String),
    /// The combined checks can never pass.
    ChecksCannotSucceed(String),
    /// Reload: the site did not answer its last poll.
    Unreachable(String),
    /// Reload: the site was not polled yet, or its report is too old.
    NoFreshReport,
    /// Reload: the site reports the service as not announced.
    NotAnnouncing,
    /// Reload: the site is about to withdraw.
    Withdrawing,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::NoConfig => f.write_str("no config given"),
            Unavailable::ServiceMissing => f.write_str("service not configured"),
            Unavailable::PrefixMissing => f.write_str("prefix not configured"),
            Unavailable::Disabled => f.write_str("service disabled"),
            Unavailable::Drained(p) => write!(f, "drained (drain file {} exists)", p.display()),
            Unavailable::NoUsablePeer(why) => write!(f, "no usable peer ({why})"),
            Unavailable::ChecksCannotSucceed(why) => write!(f, "checks cannot succeed ({why})"),
            Unavailable::Unreachable(why) => write!(f, "unreachable ({why})"),
            Unavailable::NoFreshReport => f.write_str("no recent report"),
            Unavailable::NotAnnouncing => f.write_str("not announcing"),
            Unavailable::Withdrawing => f.write_str("withdrawing"),
        }
    }
}

/// Why a candidate config (or rollout) is rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The config names a site the fleet does not have.
    UnknownSite {
        /// The site name.
        site: String,
        /// The fleet file.
        fleet: String,
        /// The fleet's sites.
        known: Vec<String>,
    },
    /// A service listed in the fleet is configured at no site.
    ServiceRemovedEverywhere {
        /// Service.
        service: String,
        /// Its `min_sites`.
        min_sites: usize,
    },
    /// A prefix declared in the fleet for a service is configured at no site.
    PrefixRemovedEverywhere {
        /// Service.
        service: String,
        /// Prefix.
        prefix: IpNet,
    },
    /// Rollout: a service's prefix is configured at some sites only.
    PrefixesDiffer {
        /// Service.
        service: String,
        /// Prefix.
        prefix: IpNet,
        /// Sites configuring the service with the prefix.
        present: Vec<String>,
        /// Sites configuring the service without it.
        missing: Vec<String>,
    },
    /// Fewer than `min_sites` sites would announce these prefixes of the service.
    TooFewSites {
        /// Service.
        service: String,
        /// The prefixes concerned (all with the same sites and reasons).
        prefixes: Vec<IpNet>,
        /// The fleet's `min_sites`.
        min_sites: usize,
        /// Number of sites in the fleet.
        total_sites: usize,
        /// Sites that would announce.
        announcing: Vec<String>,
        /// Every other site, with why.
        unavailable: Vec<(String, Unavailable)>,
    },
    /// A check can never pass.
    CheckCannotSucceed {
        /// Site.
        site: String,
        /// Service.
        service: String,
        /// Check name.
        check: String,
        /// Why.
        defect: CheckDefect,
    },
}

fn join(items: &[String]) -> String {
    items.join(", ")
}

fn join_prefixes(prefixes: &[IpNet]) -> String {
    prefixes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::UnknownSite { site, fleet, known } => write!(
                f,
                "site {site:?} is not in the fleet {fleet} (sites: {})",
                join(known)
            ),
            Rejection::ServiceRemovedEverywhere { service, min_sites } => write!(
                f,
                "service {service} (min_sites {min_sites}) would be configured at no site: removed everywhere"
            ),
            Rejection::PrefixRemovedEverywhere { service, prefix } => write!(
                f,
                "service {service}: prefix {prefix} (declared in the fleet) would be configured at no site: removed everywhere"
            ),
            Rejection::PrefixesDiffer {
                service,
                prefix,
                present,
                missing,
            } => write!(
                f,
                "service {service}: prefix {prefix} is configured at {} but not at {}: prefixes must be the same at every site",
                join(present),
                join(missing)
            ),
            Rejection::TooFewSites {
                service,
                prefixes,
                min_sites,
                total_sites,
                announcing,
                unavailable,
            } => {
                let noun = if prefixes.len() == 1 { "prefix" } else { "prefixes" };
                write!(
                    f,
                    "service {service} {noun} {} would be announced by {} of {total_sites} sites (min_sites {min_sites}): ",
                    join_prefixes(prefixes),
                    announcing.len()
                )?;
                if announcing.is_empty() {
                    f.write_str("no site announces")?;
                } else {
                    write!(f, "announced by {}", join(announcing))?;
                }
                for (i, (site, why)) in unavailable.iter().enumerate() {
                    f.write_str(if i == 0 { "; " } else { ", " })?;
                    write!(f, "{site}: {why}")?;
                }
                Ok(())
            }
            Rejection::CheckCannotSucceed {
                site,
                service,
                check,
                defect,
            } => write!(
                f,
                "site {site}, service {service}: check {check} cannot succeed: {defect}"
            ),
        }
    }
}

/// The defect of one check, if it can never pass.
pub fn check_defect(check: &CheckConfig, env: &dyn Environment) -> Option<CheckDefect> {
    match &check.kind {
        CheckKind::Command { argv } => {
            let Some(program) = argv.first().filter(|p| !p.is_empty()) else {
                return Some(CheckDefect::EmptyCommand);
            };
            match env.command(program) {
                CommandLookup::Found => None,
                CommandLookup::NotFound => Some(CheckDefect::CommandNotFound(program.clone())),
                CommandLookup::NotExecutable => {
                    Some(CheckDefect::CommandNotExecutable(program.clone()))
                }
            }
        }
        CheckKind::Http { url, status, .. } => {
            if let Err(why) = parse_check_url(url) {
                return Some(CheckDefect::BadUrl {
                    url: url.clone(),
                    why,
                });
            }
            (status.0 > status.1).then_some(CheckDefect::EmptyStatusRange(status.0, status.1))
        }
        CheckKind::Tcp { address }
        | CheckKind::Dns {
            server: address, ..
        } => (address.port() == 0).then(|| CheckDefect::PortZero(address.to_string())),
        CheckKind::File { .. } => None,
    }
}

fn parse_check_url(url: &str) -> Result<(), String> {
    let uri: Uri = url.parse().map_err(|e| format!("{e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err("not an http:// or https:// URL".into());
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("missing host".into());
    }
    Ok(())
}

/// Why the service's combined checks can never pass, if so.
fn combine_defect(service: &ServiceConfig, env: &dyn Environment) -> Option<String> {
    let total = service.checks.len();
    let broken: Vec<String> = service
        .checks
        .iter()
        .filter_map(|c| check_defect(c, env).map(|d| format!("{}: {d}", c.name)))
        .collect();
    let possible = total - broken.len();
    let needed = match service.combine {
        Combine::All => total,
        Combine::Any => usize::from(total > 0),
        Combine::AtLeast(n) => n,
        Combine::AtLeastPercent(p) => {
            // Smallest count whose share reaches p percent, without float-to-int casts.
            (0..=total)
                .find(|n| (*n as f64) * 100.0 >= p * (total as f64))
                .unwrap_or(total + 1)
        }
    };
    if possible >= needed {
        return None;
    }
    if broken.is_empty() {
        Some(format!(
            "{needed} checks must pass but only {total} are configured"
        ))
    } else {
        Some(broken.join("; "))
    }
}

/// Whether the site with `config` can announce `prefix` of `service` ("able to announce"
/// in the module doc), and why not.
pub fn config_ability(
    config: &Config,
    service: &str,
    prefix: IpNet,
    env: &dyn Environment,
) -> Result<(), Unavailable> {
    let svc = config
        .services
        .iter()
        .find(|s| s.name == service)
        .ok_or(Unavailable::ServiceMissing)?;
    if svc.disabled {
        return Err(Unavailable::Disabled);
    }
    if let Some(path) = svc.drain_file.as_ref().filter(|p| env.path_exists(p)) {
        return Err(Unavailable::Drained(path.clone()));
    }
    if !svc.prefixes.contains(&prefix) {
        return Err(Unavailable::PrefixMissing);
    }
    if config.peers.is_empty() {
        return Err(Unavailable::NoUsablePeer("no peers configured".into()));
    }
    let (family, carries): (&str, fn(&crate::config::PeerConfig) -> bool) = match prefix {
        IpNet::V4(_) => ("IPv4", |p| p.ipv4),
        IpNet::V6(_) => ("IPv6", |p| p.ipv6),
    };
    if !config.peers.iter().any(carries) {
        return Err(Unavailable::NoUsablePeer(format!(
            "no peer carries {family}"
        )));
    }
    match combine_defect(svc, env) {
        Some(why) => Err(Unavailable::ChecksCannotSucceed(why)),
        None => Ok(()),
    }
}

/// Whether a polled site currently announces `prefix` of `service`.
fn report_ability(
    site: &PeerSiteView,
    service: &str,
    prefix: IpNet,
    fleet: &Fleet,
    now: Instant,
) -> Result<(), Unavailable> {
    let poll = site.last_poll.as_ref().ok_or(Unavailable::NoFreshReport)?;
    if now.saturating_duration_since(poll.requested_at) > fleet.poll.stale_after {
        return Err(Unavailable::NoFreshReport);
    }
    let report = poll
        .result
        .as_ref()
        .map_err(|e| Unavailable::Unreachable(e.to_string()))?;
    report.service(service).ok_or(Unavailable::ServiceMissing)?;
    let svc = report
        .service_with(service, &[prefix])
        .ok_or(Unavailable::PrefixMissing)?;
    if !svc.announcing {
        return Err(Unavailable::NotAnnouncing);
    }
    if svc.intent == Intent::Withdrawing {
        return Err(Unavailable::Withdrawing);
    }
    Ok(())
}

fn push_unique<T: PartialEq>(list: &mut Vec<T>, item: T) {
    if !list.contains(&item) {
        list.push(item);
    }
}

fn check_defects(site: &str, config: &Config, env: &dyn Environment, out: &mut Vec<Rejection>) {
    for svc in &config.services {
        for check in &svc.checks {
            if let Some(defect) = check_defect(check, env) {
                out.push(Rejection::CheckCannotSucceed {
                    site: site.to_owned(),
                    service: svc.name.clone(),
                    check: check.name.clone(),
                    defect,
                });
            }
        }
    }
}

/// Per-prefix outcome: who announces, who does not and why.
type Outcome = (Vec<String>, Vec<(String, Unavailable)>);

/// Group prefixes with the same outcome into one [`Rejection::TooFewSites`] each.
fn too_few(fleet: &Fleet, service: &str, failing: Vec<(IpNet, Outcome)>, out: &mut Vec<Rejection>) {
    let mut groups: Vec<(Vec<IpNet>, Outcome)> = Vec::new();
    for (prefix, outcome) in failing {
        match groups.iter_mut().find(|(_, o)| *o == outcome) {
            Some((prefixes, _)) => prefixes.push(prefix),
            None => groups.push((vec![prefix], outcome)),
        }
    }
    for (prefixes, (announcing, unavailable)) in groups {
        out.push(Rejection::TooFewSites {
            service: service.to_owned(),
            prefixes,
            min_sites: fleet.min_sites(service),
            total_sites: fleet.sites.len(),
            announcing,
            unavailable,
        });
    }
}

/// Check a whole rollout: `sites` pairs a fleet site name with the config it would run.
/// Fleet sites without a config count as not announcing ([`Unavailable::NoConfig`]).
pub fn check_rollout(
    fleet: &Fleet,
    sites: &[(&str, &Config)],
    env: &dyn Environment,
) -> Vec<Rejection> {
    let mut out = Vec::new();
    let known: Vec<String> = fleet.sites.iter().map(|s| s.name.clone()).collect();
    for (site, config) in sites {
        if fleet.site(site).is_none() {
            out.push(Rejection::UnknownSite {
                site: (*site).to_owned(),
                fleet: fleet.source.clone(),
                known: known.clone(),
            });
        }
        check_defects(site, config, env, &mut out);
    }
    let config_of = |site: &str| sites.iter().find(|(s, _)| *s == site).map(|(_, c)| *c);

    let mut services: Vec<&str> = fleet.services.iter().map(|s| s.name.as_str()).collect();
    for (_, config) in sites {
        for svc in &config.services {
            push_unique(&mut services, svc.name.as_str());
        }
    }
    for service in services {
        if fleet.retired(service) {
            // Retired in the fleet file: taking it away everywhere is the operator's
            // explicit wish, not a side effect of a config push.
            continue;
        }
        let configured: Vec<(&str, &ServiceConfig)> = sites
            .iter()
            .filter_map(|(site, c)| {
                c.services
                    .iter()
                    .find(|s| s.name == service)
                    .map(|s| (*site, s))
            })
            .collect();
        if configured.is_empty() {
            out.push(Rejection::ServiceRemovedEverywhere {
                service: service.to_owned(),
                min_sites: fleet.min_sites(service),
            });
            continue;
        }
        let mut prefixes: Vec<IpNet> = fleet
            .service(service)
            .and_then(|s| s.prefixes.clone())
            .unwrap_or_default();
        for (_, svc) in &configured {
            for p in &svc.prefixes {
                push_unique(&mut prefixes, *p);
            }
        }
        let mut failing = Vec::new();
        for prefix in prefixes {
            let (present, missing): (Vec<_>, Vec<_>) = configured
                .iter()
                .partition(|(_, svc)| svc.prefixes.contains(&prefix));
            if present.is_empty() {
                out.push(Rejection::PrefixRemovedEverywhere {
                    service: service.to_owned(),
                    prefix,
                });
                continue;
            }
            if !missing.is_empty() {
                out.push(Rejection::PrefixesDiffer {
                    service: service.to_owned(),
                    prefix,
                    present: present.iter().map(|(s, _)| (*s).to_owned()).collect(),
                    missing: missing.iter().map(|(s, _)| (*s).to_owned()).collect(),
                });
            }
            let mut outcome: Outcome = (Vec::new(), Vec::new());
            for site in &fleet.sites {
                let ability = match config_of(&site.name) {
                    Some(config) => config_ability(config, service, prefix, env),
                    None => Err(Unavailable::NoConfig),
                };
                match ability {
                    Ok(()) => outcome.0.push(site.name.clone()),
                    Err(why) => outcome.1.push((site.name.clone(), why)),
                }
            }
            if outcome.0.len() < fleet.min_sites(service) {
                failing.push((prefix, outcome));
            }
        }
        too_few(fleet, service, failing, &mut out);
    }
    out
}

/// Check one site's candidate config at load or reload, against the other sites' reports.
///
/// `running` is the config in force (`None` at start-up or from the CLI). A service prefix
/// is rejected when fewer than `min_sites` sites would announce it and the candidate cannot
/// announce it although the running config could (or, without one, although the candidate
/// configures the service). Reports older than the fleet's `stale_after` count as not
/// announcing.
pub fn check_reload(
    fleet: &Fleet,
    site: &str,
    running: Option<&Config>,
    candidate: &Config,
    view: &FleetView,
    now: Instant,
    env: &dyn Environment,
) -> Vec<Rejection> {
    let mut out = Vec::new();
    if fleet.site(site).is_none() {
        out.push(Rejection::UnknownSite {
            site: site.to_owned(),
            fleet: fleet.source.clone(),
            known: fleet.sites.iter().map(|s| s.name.clone()).collect(),
        });
    }
    check_defects(site, candidate, env, &mut out);

    // Every service and prefix anyone knows of.
    let mut services: Vec<&str> = fleet.services.iter().map(|s| s.name.as_str()).collect();
    let reports = view
        .sites
        .iter()
        .filter_map(|s| s.last_poll.as_ref()?.result.as_ref().ok());
    for config in running.into_iter().chain([candidate]) {
        for svc in &config.services {
            push_unique(&mut services, svc.name.as_str());
        }
    }
    for report in reports.clone() {
        for svc in &report.services {
            push_unique(&mut services, svc.name.as_str());
        }
    }
    for service in services {
        if fleet.retired(service) {
            // Retired in the fleet file: taking it away everywhere is the operator's
            // explicit wish, not a side effect of a config push.
            continue;
        }
        let mut prefixes: Vec<IpNet> = fleet
            .service(service)
            .and_then(|s| s.prefixes.clone())
            .unwrap_or_default();
        let configs = running.into_iter().chain([candidate]);
        for svc in configs.flat_map(|c| c.services.iter().filter(|s| s.name == service)) {
            for p in &svc.prefixes {
                push_unique(&mut prefixes, *p);
            }
        }
        for svc in reports.clone().filter_map(|r| r.service(service)) {
            for p in &svc.prefixes {
                push_unique(&mut prefixes, *p);
            }
        }
        let min_sites = fleet.min_sites(service);
        let running_had = running.is_some_and(|c| c.services.iter().any(|s| s.name == service));
        let candidate_has = candidate.services.iter().any(|s| s.name == service);
        let reported = view.sites.iter().any(|s| {
            s.last_poll
                .as_ref()
                .and_then(|p| p.result.as_ref().ok())
                .is_some_and(|r| r.service(service).is_some())
        });
        if running_had && !candidate_has && !reported && fleet.service(service).is_some() {
            out.push(Rejection::ServiceRemovedEverywhere {
                service: service.to_owned(),
                min_sites,
            });
            continue;
        }
        let mut failing = Vec::new();
        for prefix in prefixes {
            let after = config_ability(candidate, service, prefix, env);
            // Without a running config, a site is only answerable for the services it
            // configures; with one, only for what it could announce before.
            let answerable = match running {
                Some(r) => config_ability(r, service, prefix, env).is_ok(),
                None => after != Err(Unavailable::ServiceMissing),
            };
            if after.is_ok() || !answerable {
                continue;
            }
            let mut outcome: Outcome = (Vec::new(), Vec::new());
            for fleet_site in &fleet.sites {
                let ability = if fleet_site.name == site {
                    after.clone()
                } else {
                    match view.site(&fleet_site.name) {
                        Some(v) => report_ability(v, service, prefix, fleet, now),
                        None => Err(Unavailable::NoFreshReport),
                    }
                };
                match ability {
                    Ok(()) => outcome.0.push(fleet_site.name.clone()),
                    Err(why) => outcome.1.push((fleet_site.name.clone(), why)),
                }
            }
            if outcome.0.len() < min_sites {
                failing.push((prefix, outcome));
            }
        }
        too_few(fleet, service, failing, &mut out);
    }
    out
}

#[cfg(test)]
#[path = "static_check_tests.rs"]
mod tests;
