"""Small shared helpers: running commands, bounded polls, the run directory, and the
Fail/Skip outcomes of scenarios."""

import os
import subprocess
import sys
import time
from pathlib import Path

LAB_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = LAB_DIR.parent
# Every namespace the lab creates starts with this. Two labs on one machine need two
# prefixes (and two LAB_RUN_DIRs): the node names are the same in both.
NS_PREFIX = os.environ.get("LAB_NS_PREFIX", "ag-")


class Fail(Exception):
    """A scenario's check did not hold."""


class Skip(Exception):
    """A scenario cannot run here (not root, a daemon missing); never counted as passed."""


def run_dir() -> Path:
    d = Path(os.environ.get("LAB_RUN_DIR", "/tmp/anyguard-lab"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def log(msg: str) -> None:
    if os.environ.get("LAB_QUIET") != "1":
        print(f"  .. {msg}", file=sys.stderr, flush=True)


def sh(argv, ns=None, check=True, timeout=30, input=None):
    """Runs a command (inside namespace `ns` when given) and returns its CompletedProcess;
    every call is bounded by `timeout`."""
    if isinstance(argv, str):
        argv = ["sh", "-c", argv]
    full = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
    p = subprocess.run(
        full, capture_output=True, text=True, timeout=timeout, input=input
    )
    if check and p.returncode != 0:
        raise Fail(
            f"`{' '.join(full)}` exited {p.returncode}: {(p.stderr or p.stdout).strip()[:400]}"
        )
    return p


def out(argv, ns=None, timeout=30) -> str:
    """stdout of a command, empty when it fails (for polls that look at CLI output)."""
    try:
        p = sh(argv, ns=ns, check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        return ""
    return p.stdout if p.returncode == 0 else ""


def poll(what: str, fn, timeout: float, interval: float = 0.2):
    """Calls fn until it returns a truthy value, at most `timeout` seconds (and a bounded
    number of tries); returns that value or raises Fail naming `what`."""
    deadline = time.monotonic() + timeout
    tries = int(timeout / interval) + 2
    last = None
    for _ in range(tries):
        last = fn()
        if last:
            return last
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise Fail(f"timed out after {timeout:g}s waiting for {what}")


def which(binary: str):
    for d in os.environ.get("PATH", "").split(":") + ["/usr/sbin", "/usr/lib/frr", "/sbin"]:
        p = Path(d) / binary
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return None


def anyguard_binary() -> str:
    """$LAB_ANYGUARD when set, else the daemon built by cargo (CARGO_TARGET_DIR honoured);
    builds it when missing."""
    if os.environ.get("LAB_ANYGUARD"):
        return os.environ["LAB_ANYGUARD"]
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO_DIR / "target"))
    binary = target / "debug" / "anyguard"
    if not binary.is_file():
        log(f"building anyguard ({binary} missing)")
        subprocess.run(["cargo", "build", "--bin", "anyguard"], cwd=REPO_DIR, check=True, timeout=1800)
    return str(binary)
