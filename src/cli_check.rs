//! `anyguard check`: the config guard from the command line (issue #6).
//!
//! Three forms, all ending in a [`CheckReport`] that `main` prints (ok lines on stdout,
//! problems on stderr) and turns into the exit status (0 ok, 1 any problem):
//! - `--config NEW.toml`: validate the file; when it has a `[fleet]` table, also check it
//!   against the fleet as below (`--no-fleet`: validation only, for start-up pre-checks).
//! - `--config NEW.toml --fleet FLEET.toml`: one poll round over the other sites' status
//!   endpoints ([`poller::poll_round`], unreachable = not announcing) — with the etcd
//!   backend one read of the store instead ([`crate::guard::etcd::read_view`]) — then
//!   [`check_reload`] with no running config — the CLI has no daemon to compare with, so it
//!   takes what `check_reload` documents for start-up: this site answers for every service
//!   it configures.
//! - `--fleet FLEET.toml --site-config SITE=PATH …`: [`check_rollout`] over every site's
//!   next config, before the rollout is pushed anywhere.
//!
//! Every file is loaded before anything is judged, and every load error is reported with
//! file, line and key; a rollout with a broken file is not judged at all (its verdict would
//! be meaningless).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use crate::config::{self, Config, ConfigErrors};
use crate::guard::fleet::{Fleet, FleetErrors};
use crate::guard::poller;
use crate::guard::static_check::{
    check_reload, check_rollout, config_ability, Environment, Rejection,
};
use crate::guard::view::FleetView;

/// One `--site-config SITE=PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteConfigArg {
    /// The site's name in the fleet.
    pub site: String,
    /// Its next config file.
    pub path: PathBuf,
}

/// `--site-config` was not `SITE=PATH`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected SITE=PATH, e.g. a=/etc/anyguard/site-a.toml, got {0:?}")]
pub struct SiteConfigArgError(String);

impl FromStr for SiteConfigArg {
    type Err = SiteConfigArgError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some((site, path)) if !site.is_empty() && !path.is_empty() => Ok(SiteConfigArg {
                site: site.to_owned(),
                path: PathBuf::from(path),
            }),
            _ => Err(SiteConfigArgError(s.to_owned())),
        }
    }
}

/// One reason `check` fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// A site config does not load (every error, each with file:line:column: key).
    #[error("{0}")]
    Config(ConfigErrors),
    /// The fleet file does not load (every error, each with file:line:column: key).
    #[error("{0}")]
    Fleet(FleetErrors),
    /// `--fleet` was given for a config without `[fleet]`, so its site is unknown.
    #[error(
        "{config}: no [fleet] table: add `[fleet]` with `path` and `site = \"<name>\"` \
         so the config can be checked against the fleet"
    )]
    NoSiteName {
        /// The config file.
        config: String,
    },
    /// A rollout gives a config to a site other than the one its `[fleet]` names.
    #[error(
        "{config}: fleet.site is {configured:?} but the file was given for site {given:?} \
         (--site-config {given}={config})"
    )]
    SiteMismatch {
        /// The config file.
        config: String,
        /// The site on the command line.
        given: String,
        /// `fleet.site` in the file.
        configured: String,
    },
    /// A rollout names a site twice.
    #[error("site {0:?} is given more than once (--site-config)")]
    DuplicateSite(String),
    /// The config guard rejects the candidate or the rollout.
    #[error("{}all-sites guard: {rejection}", context.as_ref().map(|c| format!("{c}: ")).unwrap_or_default())]
    Rejected {
        /// The candidate file (single-site check), none for a rollout.
        context: Option<String>,
        /// Why.
        rejection: Rejection,
    },
}

/// What `check` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// One line per thing that is fine (printed on stdout).
    pub ok: Vec<String>,
    /// Every problem (printed on stderr).
    pub problems: Vec<Problem>,
}

impl CheckReport {
    /// Whether nothing is wrong (exit status 0).
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// `N peers, M services`, the summary both forms print for a file that loads.
fn shape(config: &Config) -> String {
    format!(
        "{} peers, {} services",
        config.peers.len(),
        config.services.len()
    )
}

/// Which fleet `--config` is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgainstFleet {
    /// The one named by the config's `[fleet]` table, if any.
    FromConfig,
    /// `--fleet FILE`: this one (the operator may check against a copy of the fleet file
    /// that is not installed yet).
    File(PathBuf),
    /// `--no-fleet`: validation only. A start-up pre-check wants this: refusing to start
    /// a daemon never keeps a service announced, and at a cold start of the whole fleet
    /// every other site is unreachable.
    Never,
}

/// `--config PATH [--fleet FLEET | --no-fleet]`: validate, then check against the fleet
/// chosen by `against`.
pub async fn check_config(
    path: &Path,
    against: AgainstFleet,
    env: &dyn Environment,
) -> CheckReport {
    let mut report = CheckReport::default();
    let config = match config::load(path) {
        Ok(c) => c,
        Err(e) => {
            report.problems.push(Problem::Config(e));
            return report;
        }
    };
    let file = path.display().to_string();
    let valid = format!("{file}: ok ({})", shape(&config));
    let fleet_path = match (against, &config.fleet) {
        (AgainstFleet::File(p), _) => p,
        (AgainstFleet::FromConfig, Some(r)) => r.path.clone(),
        (AgainstFleet::Never, _) | (AgainstFleet::FromConfig, None) => {
            report.ok.push(valid);
            return report;
        }
    };
    let Some(site) = config.fleet.as_ref().map(|r| r.site.clone()) else {
        report.problems.push(Problem::NoSiteName { config: file });
        return report;
    };
    let fleet = match Fleet::load(&fleet_path) {
        Ok(f) => f,
        Err(e) => {
            report.problems.push(Problem::Fleet(e));
            return report;
        }
    };
    let view = match &fleet.backend {
        crate::guard::fleet::BackendSettings::Poll => poller::poll_round(&fleet, &site).await,
        // The store, not the status endpoints: with etcd the sites need not reach each other.
        crate::guard::fleet::BackendSettings::Etcd(etcd) => {
            let others: Vec<(usize, &str)> = fleet
                .sites
                .iter()
                .enumerate()
                .filter(|(_, s)| s.name != site)
                .map(|(rank, s)| (rank, s.name.as_str()))
                .collect();
            crate::guard::etcd::read_view(etcd, &others).await
        }
    };
    let rejections = check_reload(&fleet, &site, None, &config, &view, Instant::now(), env);
    if rejections.is_empty() {
        report.ok.push(valid);
        report.ok.push(format!(
            "{file}: all-sites guard ok: site {site} of fleet {} ({})",
            fleet.source,
            PolledSites(&view)
        ));
    }
    report
        .problems
        .extend(rejections.into_iter().map(|rejection| Problem::Rejected {
            context: Some(file.clone()),
            rejection,
        }));
    report
}

/// What one poll round saw, for the ok line: `b: announcing web, dns; c: unreachable (…)`.
struct PolledSites<'a>(&'a FleetView);

impl fmt::Display for PolledSites<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.sites.is_empty() {
            return f.write_str("no other site");
        }
        for (i, site) in self.0.sites.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: ", site.name)?;
            match site.last_poll.as_ref().map(|p| &p.result) {
                None => f.write_str("not polled")?,
                Some(Err(e)) => write!(f, "unreachable ({e})")?,
                Some(Ok(r)) => {
                    let announced: Vec<&str> = r
                        .services
                        .iter()
                        .filter(|s| s.announcing)
                        .map(|s| s.name.as_str())
                        .collect();
                    if announced.is_empty() {
                        f.write_str("announcing nothing")?;
                    } else {
                        write!(f, "announcing {}", announced.join(", "))?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// `--fleet FLEET --site-config SITE=PATH …`: load everything, then judge the rollout.
pub fn check_rollout_files(
    fleet: &Path,
    sites: &[SiteConfigArg],
    env: &dyn Environment,
) -> CheckReport {
    let mut report = CheckReport::default();
    let fleet = Fleet::load(fleet)
        .map_err(|e| report.problems.push(Problem::Fleet(e)))
        .ok();
    let mut loaded: Vec<(&SiteConfigArg, Config)> = Vec::new();
    for (i, arg) in sites.iter().enumerate() {
        if sites[..i].iter().any(|a| a.site == arg.site) {
            report
                .problems
                .push(Problem::DuplicateSite(arg.site.clone()));
            continue;
        }
        match config::load(&arg.path) {
            Ok(c) => {
                if let Some(r) = c.fleet.as_ref().filter(|r| r.site != arg.site) {
                    report.problems.push(Problem::SiteMismatch {
                        config: arg.path.display().to_string(),
                        given: arg.site.clone(),
                        configured: r.site.clone(),
                    });
                }
                loaded.push((arg, c));
            }
            Err(e) => report.problems.push(Problem::Config(e)),
        }
    }
    let Some(fleet) = fleet.filter(|_| report.problems.is_empty()) else {
        return report;
    };
    let pairs: Vec<(&str, &Config)> = loaded.iter().map(|(a, c)| (a.site.as_str(), c)).collect();
    let rejections = check_rollout(&fleet, &pairs, env);
    if !rejections.is_empty() {
        report
            .problems
            .extend(rejections.into_iter().map(|rejection| Problem::Rejected {
                context: None,
                rejection,
            }));
        return report;
    }
    for fleet_site in &fleet.sites {
        let line = match loaded.iter().find(|(a, _)| a.site == fleet_site.name) {
            Some((arg, config)) => format!(
                "site {} ({}): ok ({}): {}",
                fleet_site.name,
                arg.path.display(),
                shape(config),
                Announces(config, env)
            ),
            None => format!(
                "site {}: no config given (counts as not announcing)",
                fleet_site.name
            ),
        };
        report.ok.push(line);
    }
    report
}

/// What a site config would announce: `web 203.0.113.0/24 announced; dns … not announced
/// (service disabled)`.
struct Announces<'a>(&'a Config, &'a dyn Environment);

impl fmt::Display for Announces<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Announces(config, env) = *self;
        if config.services.is_empty() {
            return f.write_str("no services");
        }
        for (i, svc) in config.services.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}", svc.name)?;
            for prefix in &svc.prefixes {
                match config_ability(config, &svc.name, *prefix, env) {
                    Ok(()) => write!(f, " {prefix} announced")?,
                    Err(why) => write!(f, " {prefix} not announced ({why})")?,
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_config_argument_is_site_equals_path() {
        assert_eq!(
            "a=/etc/anyguard/a.toml".parse::<SiteConfigArg>(),
            Ok(SiteConfigArg {
                site: "a".into(),
                path: "/etc/anyguard/a.toml".into()
            })
        );
        // Only the first `=` separates: paths may contain one.
        assert_eq!(
            "b=dir=x/b.toml".parse::<SiteConfigArg>().map(|a| a.path),
            Ok(PathBuf::from("dir=x/b.toml"))
        );
    }

    #[test]
    fn site_config_argument_without_site_or_path_is_refused() {
        for bad in ["a.toml", "=a.toml", "a=", ""] {
            assert_eq!(
                bad.parse::<SiteConfigArg>(),
                Err(SiteConfigArgError(bad.to_owned())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn rejection_from_a_single_site_check_names_the_file() {
        let p = Problem::Rejected {
            context: Some("new.toml".into()),
            rejection: Rejection::ServiceRemovedEverywhere {
                service: "web".into(),
                min_sites: 2,
            },
        };
        assert_eq!(
            p.to_string(),
            "new.toml: all-sites guard: service web (min_sites 2) would be configured at no \
             site: removed everywhere"
        );
    }
}
