//! The `anyguard` command: a thin CLI over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyguard::config;
use anyguard::coordinator::{self, DaemonSignal, RunOptions};
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
    /// Validate a config file without running it (exit status 0 valid, 1 invalid).
    Check {
        /// Config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Show a running daemon's status.
    Status {
        /// Status endpoint (base URL or the /status URL).
        #[arg(long, default_value = "http://127.0.0.1:9180")]
        url: String,
        /// Print the raw JSON document.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = logging::init(cli.log_format, cli.log_level.as_deref()) {
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
    runtime.block_on(async_main(cli.command))
}

async fn async_main(command: Command) -> ExitCode {
    match command {
        Command::Run { config, dry_run } => run(config, dry_run).await,
        Command::Check { config } => match config::load(&config) {
            Ok(c) => {
                println!(
                    "{}: ok ({} peers, {} services)",
                    config.display(),
                    c.peers.len(),
                    c.services.len()
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::FAILURE
            }
        },
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
    let (tx, rx) = mpsc::channel(8);
    if let Err(e) = forward_signals(tx) {
        eprintln!("anyguard: cannot install signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    let options = RunOptions {
        config_path: path,
        dry_run,
    };
    match coordinator::run(config, options, rx).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("anyguard: {e}");
            ExitCode::FAILURE
        }
    }
}

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
