//! `anyguard completions SHELL` and `anyguard man`: shell completion scripts and man pages
//! generated from the command's own clap definition, so they cannot drift from the options
//! the binary really takes. The Debian package ships both (contrib/deb/build generates them
//! from the binary it packages).
//!
//! The man pages follow git's model: `anyguard(1)` for the command, its files, signals and
//! environment, and one `anyguard-SUBCOMMAND(1)` page per visible subcommand with its
//! options.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Command, Subcommand};
use clap_complete::Shell;
use clap_mangen::roff::{bold, roman, Roff};
use clap_mangen::Man;

/// The subcommands this module owns; main.rs flattens them into its own.
#[derive(Debug, Subcommand)]
pub enum DocsCommand {
    /// Print a shell completion script for SHELL (bash, zsh, fish, elvish, powershell).
    ///
    /// bash: `anyguard completions bash > /etc/bash_completion.d/anyguard` (or source it);
    /// zsh: write it as `_anyguard` into a directory of `$fpath`; fish: into
    /// `~/.config/fish/completions/anyguard.fish`.
    Completions {
        /// The shell to complete for.
        shell: Shell,
    },
    /// Print the man page anyguard(1) (roff), or write every page into --dir.
    #[command(hide = true)]
    Man {
        /// Write anyguard.1 and one anyguard-SUBCOMMAND.1 per subcommand into this directory.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

impl DocsCommand {
    /// Runs the subcommand for `cli`, the binary's full clap definition.
    pub fn run(self, cli: Command) -> ExitCode {
        let result = match self {
            DocsCommand::Completions { shell } => completions(cli, shell, &mut io::stdout()),
            DocsCommand::Man { dir: None } => main_page(cli, &mut io::stdout()),
            DocsCommand::Man { dir: Some(dir) } => write_pages(cli, &dir).map(|written| {
                for path in written {
                    println!("{}", path.display());
                }
            }),
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("anyguard: {e}");
                ExitCode::FAILURE
            }
        }
    }
}

/// Writes the completion script of `shell` for `cli`, without its hidden subcommands
/// (some generators list them anyway).
fn completions(cli: Command, shell: Shell, out: &mut dyn Write) -> io::Result<()> {
    let name = cli.get_name().to_owned();
    let mut visible = Command::new(name.clone())
        .version(cli.get_version().unwrap_or_default().to_owned())
        .about(cli.get_about().cloned().unwrap_or_default())
        .args(cli.get_arguments().cloned())
        .groups(cli.get_groups().cloned())
        .subcommands(cli.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    clap_complete::generate(shell, &mut visible, name, out);
    out.flush()
}

/// Writes anyguard(1): the generated NAME, SYNOPSIS, OPTIONS and SUBCOMMANDS sections, a
/// DESCRIPTION, then what clap does not know (files, signals, environment, exit status).
fn main_page(cli: Command, out: &mut dyn Write) -> io::Result<()> {
    let extra = extra_sections(&cli);
    // clap's own `help` subcommand has no page of its own: not listed.
    let man = Man::new(cli.disable_help_subcommand(true));
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    description().to_writer(out)?;
    man.render_options_section(out)?;
    man.render_subcommands_section(out)?;
    extra.to_writer(out)?;
    man.render_version_section(out)?;
    out.flush()
}

/// Writes anyguard.1 and anyguard-SUBCOMMAND.1 for every visible subcommand into `dir`
/// (created if missing); returns the paths written.
fn write_pages(cli: Command, dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut built = cli.clone();
    built.build();
    let name = built.get_name().to_owned();
    let mut written = Vec::new();
    for sub in built
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        // The page's title and synopsis name the whole command line, as git's pages do.
        let full = format!("{name}-{}", sub.get_name());
        let sub = sub
            .clone()
            .name(full.clone())
            .display_name(full.clone())
            .bin_name(format!("{name} {}", sub.get_name()))
            .version(built.get_version().unwrap_or_default().to_owned());
        written.push(Man::new(sub).generate_to(dir)?);
    }
    let path = dir.join(format!("{name}.1"));
    let mut file = std::fs::File::create(&path)?;
    main_page(cli, &mut file)?;
    written.push(path);
    Ok(written)
}

/// DESCRIPTION of anyguard(1): what the daemon does, longer than the clap `about`.
fn description() -> Roff {
    let mut r = Roff::default();
    r.control("SH", ["DESCRIPTION"]);
    r.text([roman(
        "anyguard runs beside a site's edge routers, probes the local service (HTTP, \
         HTTPS, TCP, DNS, file and command checks) and announces, de-prefers or \
         withdraws the service's anycast prefixes over BGP from what the probes say, \
         with BFD towards the routers. Its all-sites guard refuses to be the tool that \
         withdraws a service from every site at once.",
    )]);
    r.control("PP", []);
    r.text([roman(
        "anyguard run starts the daemon; anyguard check validates a config (alone, \
         against the fleet, or a whole rollout) before it is deployed; anyguard status \
         shows a running daemon's decisions and why. The configuration is described in \
         docs/config.md, the status document in docs/status.md.",
    )]);
    r
}

/// The sections of anyguard(1) that are not in the clap definition.
fn extra_sections(cli: &Command) -> Roff {
    let mut r = Roff::default();
    let item = |r: &mut Roff, tag: &str, text: &str| {
        r.control("TP", []);
        r.text([bold(tag)]);
        r.text([roman(text)]);
    };
    r.control("SH", ["FILES"]);
    item(
        &mut r,
        "/etc/anyguard/anyguard.toml",
        "The configuration the packaged systemd unit runs with. As shipped it has no \
         peer and no service, so it announces nothing until edited (docs/config.md).",
    );
    item(
        &mut r,
        "/var/lib/anyguard",
        "State directory (systemd StateDirectory=): the state file, with the \
         operator's drains and the service addresses the daemon added, kept across \
         restarts.",
    );
    r.control("SH", ["SIGNALS"]);
    item(
        &mut r,
        "SIGHUP",
        "Reload the configuration. A rejected config changes nothing (see \
         daemon.last_reload in the status document).",
    );
    item(
        &mut r,
        "SIGTERM, SIGINT",
        "Stop gracefully: drain and withdraw first (asking the all-sites guard when a \
         fleet is configured), then close every session with a Cease.",
    );
    r.control("SH", ["ENVIRONMENT"]);
    item(
        &mut r,
        "NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID",
        "Set by systemd for Type=notify: READY=1, STATUS=, WATCHDOG=1, RELOADING=1 and \
         STOPPING=1 are sent there.",
    );
    item(
        &mut r,
        "STATE_DIRECTORY",
        "Set by systemd's StateDirectory=; the state file goes there when the config \
         names no state_dir.",
    );
    item(
        &mut r,
        "RUST_LOG",
        "Log filter when --log-level is not given.",
    );
    r.control("SH", ["EXIT STATUS"]);
    r.text([roman(
        "0 on success; 1 when a config is invalid or rejected, the daemon fails, the \
         status endpoint cannot be read, or a step of the demo's story was not seen; 2 on a \
         usage error; 130 when the demo's story is interrupted (ctrl-c).",
    )]);
    r.control("SH", ["SEE ALSO"]);
    let pages: Vec<String> = cli
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .map(|s| format!("{}-{}(1), ", cli.get_name(), s.get_name()))
        .collect();
    r.text([roman(format!(
        "{}systemd.service(5); docs/config.md, docs/guard.md and docs/status.md in the \
         source.",
        pages.concat()
    ))]);
    r
}
