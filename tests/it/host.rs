//! The host side of the tests that build network namespaces of their own: `ip` and "are
//! we root". Tests that need root skip loudly without it.

use std::process::Command;

/// Runs `ip ARGS`; its standard output when it succeeded.
pub(crate) fn ip(args: &[&str]) -> Option<String> {
    let out = Command::new("ip").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The effective user is root (from /proc: no libc call needed).
pub(crate) fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}
