//! `anyguard completions SHELL` and `anyguard man` through the real binary: the scripts
//! name every subcommand and option, bash accepts the script, and the man pages render
//! with `man -l` (when man is installed; otherwise the roff is checked).
//!
//! Every child process is bounded by `bounded` (killed by PID after [`WAIT`]).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_anyguard");
const WAIT: Duration = Duration::from_secs(30);

/// Runs `cmd` to completion, killing it (by PID) if it runs past [`WAIT`].
pub(crate) fn bounded(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let start = Instant::now();
    while child.try_wait().ok().flatten().is_none() {
        if start.elapsed() > WAIT {
            let _ = child.kill();
            panic!("{cmd:?} ran past {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait {cmd:?}: {e}"))
}

fn anyguard(args: &[&str]) -> String {
    let out = bounded(Command::new(BIN).args(args));
    assert!(
        out.status.success(),
        "anyguard {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap_or_else(|e| panic!("not UTF-8: {e}"))
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

#[test]
fn completions_for_every_shell_name_the_subcommands_and_their_options() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = anyguard(&["completions", shell]);
        // (fish names long options without their dashes: `-l site-config`.)
        for word in [
            "run",
            "check",
            "status",
            "completions",
            "config",
            "site-config",
        ] {
            assert!(script.contains(word), "{shell} completions lack {word:?}");
        }
        // The hidden generator of the man pages is not offered.
        assert!(
            !script.contains("man page") && !script.contains("dir"),
            "{shell} completions offer the hidden man subcommand"
        );
    }
}

#[test]
fn bash_accepts_the_completion_script_and_completes_the_subcommands() {
    if !on_path("bash") {
        eprintln!("SKIP: bash is not installed");
        return;
    }
    let script = anyguard(&["completions", "bash"]);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("anyguard.bash");
    std::fs::write(&file, script).unwrap_or_else(|e| panic!("{e}"));
    // Source it and ask bash for the completions of `anyguard ` and `anyguard check --`.
    let probe = format!(
        "set -e; source {f}; complete -p anyguard; \
         COMP_WORDS=(anyguard ''); COMP_CWORD=1; COMP_LINE='anyguard '; COMP_POINT=9; \
         _anyguard anyguard '' anyguard; echo \"top: ${{COMPREPLY[*]}}\"; \
         COMP_WORDS=(anyguard check --); COMP_CWORD=2; COMP_LINE='anyguard check --'; \
         COMP_POINT=17; _anyguard anyguard -- check; echo \"check: ${{COMPREPLY[*]}}\"",
        f = file.display()
    );
    let out = bounded(Command::new("bash").args(["--norc", "-c", &probe]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bash: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let top = text.lines().find(|l| l.starts_with("top: ")).unwrap_or("");
    for sub in ["run", "check", "status", "completions"] {
        assert!(top.split_whitespace().any(|w| w == sub), "{text}");
    }
    let check = text
        .lines()
        .find(|l| l.starts_with("check: "))
        .unwrap_or("");
    for opt in ["--config", "--fleet", "--no-fleet", "--site-config"] {
        assert!(check.split_whitespace().any(|w| w == opt), "{text}");
    }
}

/// Pages `anyguard man --dir` writes: the command's and one per visible subcommand.
const PAGES: [&str; 5] = [
    "anyguard.1",
    "anyguard-run.1",
    "anyguard-check.1",
    "anyguard-status.1",
    "anyguard-completions.1",
];

#[test]
fn man_pages_render_with_their_sections_and_options() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let listed = anyguard(&["man", "--dir", &dir.path().to_string_lossy()]);
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    // These at least (a subcommand added later brings its own page), and only pages.
    for page in PAGES {
        assert!(names.iter().any(|n| n == page), "no {page} in {names:?}");
    }
    for name in &names {
        assert!(
            name.starts_with("anyguard") && name.ends_with(".1") && listed.contains(name.as_str()),
            "{name} in {names:?}; anyguard man --dir printed:\n{listed}"
        );
    }
    assert!(
        !names
            .iter()
            .any(|n| n.contains("help") || n.contains("-man")),
        "{names:?}"
    );
    // `anyguard man` alone prints the command's page.
    let stdout_page = anyguard(&["man"]);
    let main_roff =
        std::fs::read_to_string(dir.path().join("anyguard.1")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stdout_page, main_roff);
    assert!(main_roff.contains("\n.TH anyguard 1 "), "{main_roff}");
    // anyguard(1) names every other page twice: under SUBCOMMANDS and SEE ALSO.
    for name in names.iter().filter(|n| *n != "anyguard.1") {
        let reference = format!("{}(1)", name.trim_end_matches(".1").replace('-', "\\-"));
        assert_eq!(
            main_roff.matches(&reference).count(),
            2,
            "{reference}: {main_roff}"
        );
    }

    let expect: [(&str, &[&str]); 3] = [
        (
            "anyguard.1",
            &[
                "SYNOPSIS",
                "SUBCOMMANDS",
                "anyguard-check(1)",
                "FILES",
                "/etc/anyguard/anyguard.toml",
                "SIGHUP",
            ],
        ),
        ("anyguard-check.1", &["--site-config", "--no-fleet"]),
        ("anyguard-run.1", &["--dry-run", "--config"]),
    ];
    for (page, words) in expect {
        let text = render(&dir.path().join(page));
        for w in words {
            assert!(text.contains(w), "{page} lacks {w:?}:\n{text}");
        }
    }
}

/// The page as a reader sees it: `man -l` (groff warnings fail the test), or the roff
/// itself when man is not installed.
fn render(page: &Path) -> String {
    if !on_path("man") {
        eprintln!("SKIP man -l: man is not installed; checking the roff only");
        let roff = std::fs::read_to_string(page).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            roff.contains("\n.TH ") && roff.contains("\n.SH SYNOPSIS\n"),
            "{roff}"
        );
        return roff.replace("\\-", "-");
    }
    let out = bounded(
        Command::new("man")
            .args(["--warnings", "-l"])
            .arg(page)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .env("MAN_KEEP_FORMATTING", "0"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "man -l {}: {}\n{stderr}",
        page.display(),
        out.status
    );
    // Plain text: drop overstrike bold/underline (x\bx, _\bx) if the pager kept any.
    let raw = String::from_utf8_lossy(&out.stdout);
    let mut text = String::with_capacity(raw.len());
    for c in raw.chars() {
        if c == '\u{8}' {
            text.pop();
        } else {
            text.push(c);
        }
    }
    text.replace(['\u{2010}', '\u{2212}'], "-")
}
