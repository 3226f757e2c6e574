//! The `anyguard` command: a thin CLI over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyguard::cli_check::{self, AgainstFleet, SiteConfigArg};
use anyguard::config;
use anyguard::coordinator::{self, DaemonSignal, RunOptions};
use anyguard::guard::static_check::LocalSystem;
use anyguard::status::systemd::Notifier;
use anyguard::status::{client, logging};
use clap::{Parser, Subcommand};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

#[derive(Debug, Parser)]
#[command(
    name = "anyguard",
    version,
    about = "BGP anycast announcer with health checks and an all-sites guard"
)]
struct Cli {
    /// Log format: auto (human on a terminal), human or json.
    #[arg(long, global = true, default_value = "auto")]
    log_format: logging::LogFormat,
    /// Log level or tracing filter (e.g. `info`, `anyguard=debug`); default RUST_LOG, else info.
    #[arg(long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon (with the embedded demo config when --config is not given).
    Run {
        /// Config file (TOML).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Evaluate checks and log every decision and the routes it would send, without
        /// opening BGP sessions.
        #[arg(long)]
        dry_run: bool,
    },
    /// Validate a config, check it against the fleet, or check a whole rollout
    /// (exit status 0 ok, 1 rejected or invalid).
    ///
    /// `--config NEW.toml`: validate; with a `[fleet]` table (or `--fleet`), also poll the
    /// other sites once and reject the config if a service would be announced by fewer than
    /// `min_sites` sites. `--fleet FLEET.toml --site-config a=A.toml …`: check every site's
    /// next config at once, before the rollout is pushed anywhere.
    #[command(group(
        clap::ArgGroup::new("what").required(true).args(["config", "site_config"])
    ))]
    Check {
        /// Config file (TOML).
        #[arg(long, short, conflicts_with = "site_config")]
        config: Option<PathBuf>,
        /// Fleet file; with --config it replaces the path in the config's `[fleet]` table.
        #[arg(long)]
        fleet: Option<PathBuf>,
        /// With --config: only validate, do not check against the fleet (for start-up
        /// pre-checks: refusing to start a daemon never keeps a service announced).
        #[arg(long, requires = "config", conflicts_with = "fleet")]
        no_fleet: bool,
        /// A site's next config as SITE=PATH (repeat for every site of the rollout).
        #[arg(long, value_name = "SITE=PATH", requires = "fleet")]
        site_config: Vec<SiteConfigArg>,
    },
    /// Watch failover and the all-sites guard: three sites, a router and health targets in
    /// one process on 127.0.0.1 (no root, no router needed), with a scripted story.
    Demo(anyguard::demo::DemoArgs),
    /// Show a running daemon's status.
    Status {
        /// Status endpoint (base URL or the /status URL).
        #[arg(long, default_value = client::DEFAULT_URL)]
        url: String,
        /// Print the raw JSON document.
        #[arg(long)]
        json: bool,
    },
    #[command(flatten)]
    Docs(anyguard::cli_docs::DocsCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo's daemons do not log unless asked: the demo prints its own story.
    let level = match cli.command {
        Command::Demo(_) => Some(
            cli.log_level
                .as_deref()
                .unwrap_or(anyguard::demo::LOG_LEVEL),
        ),
        _ => cli.log_level.as_deref(),
    };
    if let Err(e) = logging::init(cli.log_format, level) {
        eprintln!("anyguard: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("anyguard: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async_main(cli.command));
    // A reload's config read may still hang on its file (coordinator::config_read): the
    // process exits without waiting for that thread.
    runtime.shutdown_background();
    code
}

async fn async_main(command: Command) -> ExitCode {
    match command {
        Command::Docs(docs) => docs.run(<Cli as clap::CommandFactory>::command()),
        Command::Run { config, dry_run } => run(config, dry_run).await,
        Command::Demo(args) => anyguard::demo::run(args).await,
        Command::Check {
            config,
            fleet,
            no_fleet,
            site_config,
        } => {
            let report = match (config, fleet) {
                (Some(c), fleet) => {
                    let against = match fleet {
                        Some(f) => AgainstFleet::File(f),
                        None if no_fleet => AgainstFleet::Never,
                        None => AgainstFleet::FromConfig,
                    };
                    cli_check::check_config(&c, against, &LocalSystem).await
                }
                // clap: --site-config requires --fleet, and one of --config/--site-config is given.
                (None, Some(f)) => cli_check::check_rollout_files(&f, &site_config, &LocalSystem),
                (None, None) => return ExitCode::from(2),
            };
            for line in &report.ok {
                println!("{line}");
            }
            for problem in &report.problems {
                eprintln!("{problem}");
            }
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Status { url, json } => {
            match client::run(&url, json, client::colour_wanted()).await {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("anyguard status: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn run(path: Option<PathBuf>, dry_run: bool) -> ExitCode {
    let loaded = match &path {
        Some(p) => config::load(p),
        None => config::embedded_default(),
    };
    let config = match loaded {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    // The check tasks on threads of their own (issue 13; health::probe_threads).
    let probe_threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(MAX_PROBE_THREADS);
    if let Err(e) = anyguard::health::probe_threads::install(probe_threads) {
        eprintln!("anyguard: {e}");
        return ExitCode::FAILURE;
    }
    let (tx, rx) = mpsc::channel(8);
    if let Err(e) = forward_signals(tx) {
        eprintln!("anyguard: cannot install signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    let options = RunOptions {
        default_state_dir: default_state_dir(path.is_some(), std::env::var_os("STATE_DIRECTORY")),
        config_path: path,
        dry_run,
        systemd: Notifier::from_env(),
        ..RunOptions::default()
    };
    match coordinator::run(config, options, rx).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("anyguard: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Where the state file goes when the config names no `state_dir`: systemd's
/// `StateDirectory=` (`$STATE_DIRECTORY`, the first of a colon-separated list), else
/// `/var/lib/anyguard`. None for the embedded default config: it is a demonstration
/// that must run for any user, and has nothing to drain that matters after a restart.
fn default_state_dir(
    config_file: bool,
    state_directory: Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    if !config_file {
        return None;
    }
    let from_systemd = state_directory
        .and_then(|v| {
            v.to_str()
                .and_then(|s| s.split(':').next())
                .map(PathBuf::from)
        })
        .filter(|p| !p.as_os_str().is_empty());
    Some(from_systemd.unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)))
}

/// Most probe threads of the daemon (one per core up to this are installed; the runner
/// uses as many of them as the configured probe rate asks for, one per ~4,000 plain probes
/// a second, a TLS or command check weighing 20: `health::schedule`). One `current_thread`
/// runtime carries 2,000 plain probes a second at ~10 % of a core (docs/benchmarks.md, "A
/// thousand services", round 5), but a TLS handshake costs about a millisecond of CPU: a
/// thousand `https` checks a second need more than one core, as they had on the
/// multi-thread runtime. A check stays on its thread, and few threads at a low rate let
/// checks due together share a wake (round 6).
const MAX_PROBE_THREADS: usize = 4;

/// The state directory without `state_dir` or `$STATE_DIRECTORY`.
const DEFAULT_STATE_DIR: &str = "/var/lib/anyguard";

/// SIGHUP reloads; SIGTERM and SIGINT stop gracefully; a second SIGTERM/SIGINT while
/// stopping is passed on too (the coordinator is already draining).
fn forward_signals(tx: mpsc::Sender<DaemonSignal>) -> std::io::Result<()> {
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        loop {
            let sig = tokio::select! {
                Some(()) = hup.recv() => DaemonSignal::Reload,
                Some(()) = term.recv() => DaemonSignal::Stop,
                Some(()) = int.recv() => DaemonSignal::Stop,
                else => break,
            };
            if tx.send(sig).await.is_err() {
                break;
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_directory_is_systemds_then_var_lib_and_none_for_the_embedded_config() {
        assert_eq!(
            default_state_dir(true, Some("/var/lib/anyguard-a:/var/lib/other".into())),
            Some(PathBuf::from("/var/lib/anyguard-a"))
        );
        assert_eq!(
            default_state_dir(true, None),
            Some(PathBuf::from("/var/lib/anyguard"))
        );
        assert_eq!(
            default_state_dir(true, Some("".into())),
            Some(PathBuf::from("/var/lib/anyguard"))
        );
        assert_eq!(
            default_state_dir(false, Some("/var/lib/anyguard".into())),
            None
        );
    }
}
