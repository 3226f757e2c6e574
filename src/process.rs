//! Running an external program with a hard time bound: command checks, state-change hooks
//! and the `ip` calls that manage service addresses all go through [`BoundedCommand`].
//!
//! The program runs without a shell, in its own process group (`process_group(0)`), with
//! stdin from `/dev/null` and stdout/stderr captured (the first [`MAX_OUTPUT`] bytes of
//! each are kept; the rest is read and discarded so the program never blocks on a full
//! pipe). At the timeout the whole group gets SIGKILL — helpers the program started die
//! with it — and the child is awaited, so no zombie is left behind. If the caller's future
//! is dropped (shutdown), the group is killed on drop, the pipe readers stop and tokio
//! reaps the child in the background. A program that hangs can therefore never hold up
//! the daemon.

use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::task::JoinHandle;

/// Bytes of stdout and of stderr kept for the result text.
pub const MAX_OUTPUT: usize = 4096;

/// How long to wait for the output pipes to close once the program is gone; a grandchild
/// that left the process group could keep them open forever.
const PIPE_DRAIN: Duration = Duration::from_millis(200);

/// A program with its arguments, extra environment and time limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundedCommand {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    timeout: Duration,
}

impl BoundedCommand {
    /// `argv[0]` is the program (looked up in `PATH` when it has no `/`).
    pub fn new(argv: Vec<String>, timeout: Duration) -> Self {
        BoundedCommand {
            argv,
            env: Vec::new(),
            timeout,
        }
    }

    /// Adds variables to the inherited environment.
    pub fn with_env(mut self, env: Vec<(String, String)>) -> Self {
        self.env = env;
        self
    }

    /// The command line, for logs.
    pub fn display(&self) -> String {
        self.argv.join(" ")
    }

    /// Runs the program to its end or its timeout. `Ok` on exit status 0, else `Err`; both
    /// carry a one-line description with the captured output
    /// (`exit status 3; stdout: …; stderr: …`).
    pub async fn run(&self) -> Result<String, String> {
        let (program, args) = self.argv.split_first().ok_or("empty argv")?;
        let mut child = Command::new(program)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
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
            () = tokio::time::sleep(self.timeout) => None,
        };
        // Kill what is left of the group either way: on timeout the program itself, after
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
                humantime::format_duration(self.timeout)
            )),
            End::WaitFailed(e) => Err(format!("waiting for {program}: {e}{output}")),
        }
    }
}

/// How the program ended.
enum End {
    Exited(ExitStatus),
    TimedOut,
    WaitFailed(std::io::Error),
}

/// Kills the process group when dropped (caller cancelled) or asked to.
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

/// A task reading one pipe, and the bytes it kept so far. Dropping it stops the task
/// (and closes the pipe): when the caller's future is cancelled, a helper that left the
/// process group but holds the pipe open must not keep a task alive.
struct Reader {
    kept: Arc<Mutex<Vec<u8>>>,
    task: JoinHandle<()>,
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads a pipe to its end, keeping the first [`MAX_OUTPUT`] bytes.
fn read_bounded<R: AsyncRead + Unpin + Send + 'static>(mut pipe: R) -> Reader {
    let kept = Arc::new(Mutex::new(Vec::new()));
    let shared = Arc::clone(&kept);
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 1024];
        loop {
            match pipe.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut kept = shared.lock().unwrap_or_else(PoisonError::into_inner);
                    let room = MAX_OUTPUT.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
    });
    Reader { kept, task }
}

/// The bytes read from the pipe: once it closes, or what was read within [`PIPE_DRAIN`]
/// if something outside the process group keeps it open.
async fn collect(reader: Option<Reader>) -> Vec<u8> {
    let Some(mut reader) = reader else {
        return Vec::new();
    };
    let _ = tokio::time::timeout(PIPE_DRAIN, &mut reader.task).await;
    reader.task.abort();
    let mut kept = reader.kept.lock().unwrap_or_else(PoisonError::into_inner);
    std::mem::take(&mut *kept)
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

/// `text` cut to at most `max` bytes at a character boundary, with `…` when cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn extra_environment_reaches_the_program() {
        let c = BoundedCommand::new(
            vec!["sh".into(), "-c".into(), "echo \"$SERVICE=$STATE\"".into()],
            Duration::from_secs(5),
        )
        .with_env(vec![
            ("SERVICE".into(), "web".into()),
            ("STATE".into(), "down".into()),
        ]);
        assert_eq!(c.run().await, Ok("exit status 0; stdout: web=down".into()));
    }

    /// Polls (bounded, 5 s) until `path` has content.
    async fn wait_for_file(path: &std::path::Path) -> String {
        for _ in 0..250 {
            match std::fs::read_to_string(path) {
                Ok(s) if !s.is_empty() => return s,
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        panic!("{} never written", path.display());
    }

    #[tokio::test]
    async fn output_read_before_a_helper_that_keeps_the_pipe_open_is_kept() {
        // The helper leaves the process group (setsid), so it survives the group kill and
        // keeps stdout open past the pipe drain wait; the program ends once it has left.
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let escaped = dir.path().join("escaped");
        let script = format!(
            "echo early; setsid sh -c 'echo > {f}; sleep 2' & \
             i=0; while [ ! -e {f} ] && [ $i -lt 250 ]; do sleep 0.02; i=$((i+1)); done",
            f = escaped.display()
        );
        let c = BoundedCommand::new(
            vec!["sh".into(), "-c".into(), script],
            Duration::from_secs(10),
        );
        assert_eq!(c.run().await, Ok("exit status 0; stdout: early".into()));
    }

    #[tokio::test]
    async fn a_cancelled_run_stops_reading_the_pipes_of_a_helper_that_escaped() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (started, verdict) = (dir.path().join("started"), dir.path().join("verdict"));
        // The helper (own session, ignoring SIGPIPE) writes to the inherited stdout once
        // the run was cancelled: that write fails only if nobody reads the pipe any more.
        let helper = format!(
            "trap '' PIPE; echo up > {s}; sleep 0.5; \
             if echo x && echo x; then echo read > {v}; else echo closed > {v}; fi",
            s = started.display(),
            v = verdict.display(),
        );
        let c = BoundedCommand::new(
            vec![
                "sh".into(),
                "-c".into(),
                format!("setsid sh -c \"{helper}\" & wait"),
            ],
            Duration::from_secs(10),
        );
        tokio::select! {
            out = c.run() => panic!("the command ended on its own: {out:?}"),
            _ = wait_for_file(&started) => {}
        }
        assert_eq!(wait_for_file(&verdict).await.trim(), "closed");
    }

    #[test]
    fn truncate_cuts_at_a_character_boundary() {
        assert_eq!(truncate("héllo", 2), "h…");
        assert_eq!(truncate("hello", 5), "hello");
    }
}
