//! Command probe: run a program; exit status 0 is up.
//!
//! The program runs as a [`BoundedCommand`]: no shell, its own process group killed as a
//! whole at the timeout or when the probe is cancelled, the first
//! [`MAX_OUTPUT`](crate::process::MAX_OUTPUT) bytes of stdout and stderr in the detail.

use std::time::Duration;

use super::{Probe, ProbeOutcome};
use crate::process::BoundedCommand;

/// `type = "command"`.
#[derive(Debug, Clone)]
pub struct CommandProbe {
    command: BoundedCommand,
}

impl CommandProbe {
    /// Runs `argv` (non-empty) with `timeout`.
    pub fn new(argv: Vec<String>, timeout: Duration) -> Self {
        CommandProbe {
            command: BoundedCommand::new(argv, timeout),
        }
    }
}

impl Probe for CommandProbe {
    async fn probe(&self) -> ProbeOutcome {
        ProbeOutcome::timed(self.command.run()).await
    }

    fn enforces_timeout(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::MAX_OUTPUT;

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
