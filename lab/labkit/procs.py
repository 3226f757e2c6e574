"""Processes started inside namespaces, each recorded in a pid file so that `lab down`
(or a failing test, or Ctrl-C) stops exactly what the lab started and nothing else."""

import os
import signal
import subprocess
import time
from pathlib import Path

from .util import log, run_dir

PIDS = "pids"


def _pid_dir() -> Path:
    d = run_dir() / PIDS
    d.mkdir(parents=True, exist_ok=True)
    return d


def start(ns: str, name: str, argv, logfile: Path, env=None, cwd=None) -> int:
    """Starts argv in the foreground inside `ns` (`ip netns exec` execs it, so the pid is
    the daemon's own) in a new session, logs to `logfile`, writes pids/<ns>.<name>.pid."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    full_env.update(env or {})
    with open(logfile, "ab") as lf:
        p = subprocess.Popen(
            ["ip", "netns", "exec", ns] + [str(a) for a in argv],
            stdout=lf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=full_env, cwd=cwd,
        )
    exe = Path(str(argv[0])).name
    (_pid_dir() / f"{ns}.{name}.pid").write_text(f"{p.pid} {exe}\n")
    return p.pid


def pid_of(ns: str, name: str):
    f = _pid_dir() / f"{ns}.{name}.pid"
    if not f.exists():
        return None
    pid, _, exe = f.read_text().strip().partition(" ")
    return int(pid) if _is(int(pid), exe) else None


def _is(pid: int, exe: str) -> bool:
    """The pid is alive and still runs what we started (pids get reused)."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[1].split()[0] == "Z":
        return False
    return any(Path(c.decode(errors="replace")).name == exe or exe in c.decode(errors="replace")
               for c in cmd[:3] if c)


def stop(ns: str, name: str, sig=signal.SIGTERM, wait: float = 5.0) -> bool:
    """Signals one process and waits (bounded) for it to exit; SIGKILL after `wait`.
    Returns True when something was stopped."""
    f = _pid_dir() / f"{ns}.{name}.pid"
    if not f.exists():
        return False
    pid, _, exe = f.read_text().strip().partition(" ")
    pid = int(pid)
    stopped = False
    if _is(pid, exe):
        stopped = True
        _signal(pid, sig)
        if not _wait_gone(pid, exe, wait):
            log(f"{ns}/{name} (pid {pid}) ignored {sig.name}; SIGKILL")
            _signal(pid, signal.SIGKILL)
            _wait_gone(pid, exe, 2.0)
    f.unlink(missing_ok=True)
    return stopped


def _signal(pid: int, sig) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait_gone(pid: int, exe: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    for _ in range(int(seconds / 0.05) + 1):
        try:
            # Reap it if it is our child (the lab test keeps them as children).
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        if not _is(pid, exe):
            return True
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return not _is(pid, exe)


def stop_all(ns_filter=None) -> int:
    """Stops every recorded process (of namespaces matching ns_filter, when given);
    anyguard first so that its routers see a clean Cease. Returns how many were running."""
    files = sorted(_pid_dir().glob("*.pid"), key=lambda f: (".anyguard" not in f.name, f.name))
    n = 0
    for f in files:
        ns, _, name = f.name[: -len(".pid")].partition(".")
        if ns_filter and not ns_filter(ns):
            continue
        # anyguard drains (GRACEFUL_SHUTDOWN, drain_time) before its Cease.
        n += stop(ns, name, wait=10.0 if name == "anyguard" else 3.0)
    return n
