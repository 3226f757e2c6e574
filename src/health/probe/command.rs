//! Command probe: run a program; exit status 0 is up.
//!
//! The command runs without a shell, in its own process group (`process_group(0)`), with
//! stdin from `/dev/null` and stdout/stderr captured (the first [`MAX_OUTPUT`] bytes of
//! each go into the detail; the rest is read and discarded so the command never blocks on
//! a full pipe). At the timeout the whole group gets SIGKILL — helpers the command
//! started die with it — and the child is awaited, so no zombie is left behind. If the
//! probe itself is cancelled (shutdown), the group is killed on drop and tokio reaps the
//! child in the background.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::task::JoinHandle;

use super::{truncate, Probe, ProbeOutcome};

/// Bytes of stdout and of stderr kept for the detail.
pub(crate) const MAX_OUTPUT: usize = 4096;

/// How long to wait for the output pipes to close once the command is gone; a grandchild
/// that left the process group could keep them open forever.
const PIPE_DRAIN: Duration = Duration::from_millis(200);

/// `type = "command"`.
#[derive(Debug, Clone)]
pub struct CommandProbe {
    argv: Vec<String>,
    timeout: Duration,
}

impl CommandProbe {
    /// Runs `argv` (non-empty) with `timeout`.
    pub fn new(argv: Vec<String>, timeout: Duration) -> Self {
        CommandProbe { argv, timeout }
    }

    async fn check(&self) -> Result<String, String> {
        run_bounded(&self.argv, &[], self.timeout).await
    }
}

/// Runs `argv` (no shell) with `env` added to the daemon's environment, in its own process
/// group, for at most `timeout`; the group is killed at the timeout (and after a normal
/// exit, for helpers left behind). `Ok` with the exit status and output on exit status 0,
/// `Err` with the reason otherwise. Shared by the command probe and the state-change hooks.
pub(crate) async fn run_bounded(
    argv: &[String],
    env: &[(&str, String)],
    timeout: Duration,
) -> Result<String, String> {
    let (program, args) = argv.split_first().ok_or("empty argv")?;
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    // With process_group(0) the group id is the child's pid.
    let group = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(|pid| GroupGuard(Pid::from_raw(pid)));
    let stdout = child.stdout.take().map(read_bounded);
    let stderr = child.stderr.take().map(read_bounded);

    let status: Option<std::io::Result<ExitStatus>> = tokio::select! {
        s = child.wait() => Some(s),
        () = tokio::time::sleep(timeout) => None,
    };
    // Kill what is left of the group either way: on timeout the command itself, after
    // a normal exit any helper it left running.
    if let Some(g) = &group {
        g.kill();
    }
    let end = match status {
        Some(Ok(s)) => End::Exited(s),
        Some(Err(e)) => End::WaitFailed(e),
        None => {
            // Reap the killed child: no zombie.
            let _ = child.wait().await;
            End::TimedOut
        }
    };
    drop(group);
    let out = collect(stdout).await;
    let err = collect(stderr).await;
    let output = describe_output(&out, &err);
    match end {
        End::Exited(s) if s.success() => Ok(format!("exit status 0{output}")),
        End::Exited(s) => Err(format!("{}{output}", describe_status(s))),
        End::TimedOut => Err(format!(
            "timed out after {}, process group killed{output}",
            humantime::format_duration(timeout)
        )),
        End::WaitFailed(e) => Err(format!("waiting for {program}: {e}{output}")),
    }
}

/// How the command ended.
enum End {
    Exited(ExitStatus),
    TimedOut,
    WaitFailed(std::io::Error),
}

impl Probe for CommandProbe {
    async fn probe(&self) -> ProbeOutcome {
        ProbeOutcome::timed(self.check()).await
    }

    fn enforces_timeout(&self) -> bool {
        true
    }
}

/// Kills the process group when dropped (probe cancelled) or asked to.
struct GroupGuard(Pid);

impl GroupGuard {
    fn kill(&self) {
        // ESRCH (the group is already gone) is the normal case after a clean exit.
        let _ = killpg(self.0, Signal::SIGKILL);
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads a pipe to its end, keeping the first [`MAX_OUTPUT`] bytes.
fn read_bounded<R: AsyncRead + Unpin + Send + 'static>(mut pipe: R) -> JoinHandle<Vec<u8>> {
    tokio::spawn(async move {
        let mut kept = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match pipe.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = MAX_OUTPUT.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
        kept
    })
}

async fn collect(reader: Option<JoinHandle<Vec<u8>>>) -> Vec<u8> {
    let Some(mut handle) = reader else {
        return Vec::new();
    };
    match tokio::time::timeout(PIPE_DRAIN, &mut handle).await {
        Ok(Ok(bytes)) => bytes,
        _ => {
            handle.abort();
            Vec::new()
        }
    }
}

fn describe_output(out: &[u8], err: &[u8]) -> String {
    let mut s = String::new();
    for (name, bytes) in [("stdout", out), ("stderr", err)] {
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim();
        if !text.is_empty() {
            s.push_str(&format!("; {name}: {}", truncate(text, MAX_OUTPUT)));
        }
    }
    s
}

fn describe_status(s: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => format!("{s}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(script: &str, timeout_ms: u64) -> CommandProbe {
        CommandProbe::new(
            vec!["sh".into(), "-c".into(), script.into()],
            Duration::from_millis(timeout_ms),
        )
    }

    /// Whether a pid no longer runs: gone, or a zombie waiting for a reaper that is not us.
    fn is_dead(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            // The state is the field after the parenthesised command name.
            Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| {
                matches!(rest.trim_start().chars().next(), Some('Z' | 'X'))
            }),
        }
    }

    fn is_gone(pid: u32) -> bool {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    }

    #[tokio::test]
    async fn command_exit_zero_passes_and_captures_output() {
        let out = probe("echo hello; echo oops >&2", 5000).probe().await;
        assert!(out.ok, "{out:?}");
        assert_eq!(out.detail, "exit status 0; stdout: hello; stderr: oops");
    }

    #[tokio::test]
    async fn command_non_zero_exit_fails_with_its_status() {
        let out = probe("echo bad; exit 3", 5000).probe().await;
        assert!(!out.ok);
        assert_eq!(out.detail, "exit status 3; stdout: bad");
    }

    #[tokio::test]
    async fn missing_program_fails_with_the_reason() {
        let p = CommandProbe::new(
            vec!["/nonexistent/anyguard-check".into()],
            Duration::from_secs(1),
        );
        let out = p.probe().await;
        assert!(!out.ok);
        assert!(
            out.detail
                .starts_with("cannot run /nonexistent/anyguard-check: "),
            "{out:?}"
        );
    }

    #[tokio::test]
    async fn output_is_bounded() {
        let out = probe("head -c 100000 /dev/zero | tr '\\0' x", 5000)
            .probe()
            .await;
        assert!(out.ok, "{out:?}");
        assert!(out.detail.len() < MAX_OUTPUT + 100, "{}", out.detail.len());
    }

    #[tokio::test]
    async fn command_timeout_kills_the_whole_process_group_and_reaps_the_child() {
        // The shell prints its own pid and a background sleep's pid, then waits.
        let out = probe("sleep 30 & echo $$ $!; wait", 300).probe().await;
        assert!(!out.ok);
        assert!(
            out.detail
                .starts_with("timed out after 300ms, process group killed; stdout: "),
            "{out:?}"
        );
        let pids: Vec<u32> = out
            .detail
            .rsplit("stdout: ")
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        assert_eq!(pids.len(), 2, "{out:?}");
        let (shell, sleeper) = (pids[0], pids[1]);
        // The shell was our child and was awaited: it is gone, not a zombie.
        assert!(is_gone(shell), "shell {shell} still exists");
        // The grandchild was killed with the group; its reaper is init, so allow a short,
        // bounded wait for it to disappear or at least be dead.
        let mut dead = false;
        for _ in 0..50 {
            if is_dead(sleeper) {
                dead = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(dead, "sleep {sleeper} survived the process group kill");
    }

    #[tokio::test]
    async fn a_cancelled_probe_kills_the_process_group() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let pids_file = dir.path().join("pids");
        let script = format!(
            "echo $$ > {0}; sleep 30 & echo $! >> {0}; wait",
            pids_file.display()
        );
        let p = probe(&script, 10_000);
        let read_pids = || -> Vec<u32> {
            std::fs::read_to_string(&pids_file)
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        };
        // Cancel (drop) the probe once both processes run, long before its own timeout, as
        // a shutdown would. Waiting for the pid file is bounded (5 s).
        let started = async {
            for _ in 0..250 {
                if read_pids().len() == 2 {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            false
        };
        tokio::select! {
            out = p.probe() => panic!("the probe ended on its own: {out:?}"),
            ok = started => assert!(ok, "the command did not start within 5 s"),
        }
        let pids = read_pids();
        assert_eq!(pids.len(), 2, "{pids:?}");
        for pid in pids {
            let mut dead = false;
            for _ in 0..50 {
                if is_dead(pid) {
                    dead = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(dead, "{pid} survived the cancelled probe");
        }
    }
}
