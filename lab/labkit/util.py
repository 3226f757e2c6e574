"""Small shared helpers: running commands, bounded polls, the run directory, and the
Fail/Skip outcomes of scenarios."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

LAB_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = LAB_DIR.parent
# Every namespace the lab creates starts with this, so `down` deletes only its own.
# LAB_NS_PREFIX overrides it so that two labs (each with its own LAB_RUN_DIR) can run on
# one machine at once; it must not be a prefix of the other lab's names ("agg-" vs "ag-").
NS_PREFIX = os.environ.get("LAB_NS_PREFIX") or "ag-"
if not re.fullmatch(r"[a-z][a-z0-9]{0,5}-", NS_PREFIX):
    raise SystemExit(f"LAB_NS_PREFIX={NS_PREFIX!r}: want 1-6 lowercase letters/digits and a '-'")


class Fail(Exception):
    """A scenario's check did not hold."""


class Skip(Exception):
    """A scenario cannot run here (not root, a daemon missing); never counted as passed."""


def read_jsonl(path: Path) -> list:
    """The JSON lines of a log another process is still appending to (a missing file is
    empty; a line that does not parse is the one being written, and is left out)."""
    import json

    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                pass
    return rows


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


class shielded:
    """A `with` block that SIGINT/SIGTERM cannot cut short (a tear-down must not leave half
    a lab behind): a signal arriving inside is held and raised as KeyboardInterrupt once
    the block is done."""

    def __enter__(self):
        import signal
        self.held = []
        self.saved = {sig: signal.signal(sig, lambda signum, _f: self.held.append(signum))
                      for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc):
        import signal
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)
        if self.held and exc[0] is None:
            raise KeyboardInterrupt(f"signal {self.held[0]} during tear-down")
        return False


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
