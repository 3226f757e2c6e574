"""Stops and restarts through the all-sites guard (issue 11 item 7) on the three-site lab.

The three anyguard nodes run with a fleet made for this scenario (`web` at `min_sites = 2`,
polls every 400 ms) and graceful restart (RFC 4724, 10 s restart time) on every peer,
negotiated with the three site routers (ra FRR and rb BIRD are helpers by default; rc GoBGP
has `graceful-restart` enabled toward its anyguard node). Then, as a package upgrade rolled
out everywhere would: SIGTERM to the three daemons at the same moment, each started again
as soon as it has exited. The core's RIB and each site router's route from its anyguard
node are sampled throughout (the Sampler of `guard.py`): the core never loses every path —
the sites the guard holds do not withdraw, they close their sessions without a
NOTIFICATION and their routers keep the routes as stale until the new process's
End-of-RIB. Each daemon's log says which services it held and why; at most
`3 - min_sites` sites may withdraw (the guard lets one go when it still sees two others).

Afterwards (also on failure) every node runs its normal config again."""

import os
import re
import signal
import threading
import time

from labkit import anyguard, procs
from labkit.util import Fail, log, poll, run_dir

from .guard import CORE_PEER, EDGE, PREFIX, SERVICE, SITES, GuardLab, Sampler  # noqa: F401

NAME = "stops"
NEEDS = ("curl",)
TOPOLOGY = True

MIN_SITES = 2
RESTART_TIME = "10s"


class StopsLab(GuardLab):
    """The guard scenario's set-up (fleet, rc's route to c's subnet, restarts), with
    `min_sites = 2` and graceful restart on every peer."""

    def __init__(self, topo):
        super().__init__(topo)
        self.dir = run_dir() / "stops"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.fleet = self.dir / "fleet.toml"
        self.token = self.dir / "token"
        self.configs = {s: self.dir / f"site-{s}.toml" for s in SITES}
        self.disabled = {s: self.dir / f"site-{s}-disabled.toml" for s in SITES}

    def write_files(self):
        super().write_files()
        text = self.fleet.read_text()
        text, n = re.subn(r"(?m)^min_sites = 1$", f"min_sites = {MIN_SITES}", text)
        if n != 1:
            raise Fail("cannot set min_sites in the generated fleet file")
        self.fleet.write_text(text)
        for s in SITES:
            cfg = self.configs[s].read_text()
            cfg, n = re.subn(r"(?m)^\[\[peer\]\]\n",
                             f'[[peer]]\ngraceful_restart = {{ restart_time = "{RESTART_TIME}" }}\n', cfg)
            if n == 0:
                raise Fail(f"site {s}'s config has no [[peer]]")
            self.configs[s].write_text(cfg)

    def gr_negotiated(self, s):
        """anyguard's /status says graceful restart was negotiated with every peer."""
        peers = self.status(s).get("peers", [])
        return bool(peers) and all("graceful-restart" in " ".join(p.get("capabilities", [])) for p in peers)


class StaleWatch:
    """Per site router with a stale mark to read (ra FRR, rb BIRD), in its own thread and
    until stopped (bounded in time and count): the times at which it kept the route from
    its anyguard node as stale."""

    SPACING, MAX_SECONDS = 0.005, 120.0

    def __init__(self, topo):
        self.seen = {s: [] for s in ("a", "b")}
        self._stop = threading.Event()
        self._threads = []
        for s in self.seen:
            router_name, neighbor = EDGE[s]
            router = topo.nodes[router_name].router()
            self._threads.append(threading.Thread(
                target=self._run, args=(s, router, neighbor), daemon=True))

    def _run(self, s, router, neighbor):
        deadline = time.monotonic() + self.MAX_SECONDS
        for _ in range(int(self.MAX_SECONDS / self.SPACING)):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            if router.keeping_stale(PREFIX, neighbor):
                self.seen[s].append(time.monotonic())
            time.sleep(self.SPACING)

    def start(self):
        for t in self._threads:
            t.start()

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)

    def first_stale(self, since):
        return {s: next((t for t in ts if t >= since), None) for s, ts in self.seen.items()}


def restart_all(g, sampler):
    """SIGTERM to the three daemons at the same moment; each is started again as soon as it
    has exited (what `systemctl restart` does). Returns the signal time, per site its exit
    and start time, and the log lines each stopping daemon wrote."""
    logs = {s: g.nodes[s].dir / "anyguard.log" for s in SITES}
    sizes = {s: logs[s].stat().st_size if logs[s].exists() else 0 for s in SITES}
    pids = {s: procs.pid_of(g.nodes[s].ns, "anyguard") for s in SITES}
    if not all(pids.values()):
        raise Fail(f"not every anyguard runs before the restart: {pids}")
    t0 = time.monotonic()
    for s in SITES:
        os.kill(pids[s], signal.SIGTERM)
    spread = time.monotonic() - t0
    exited, started, pending = {}, {}, set(SITES)
    deadline = time.monotonic() + 30
    for _ in range(3000):
        if not pending or time.monotonic() > deadline:
            break
        for s in sorted(pending):
            if not procs.pid_of(g.nodes[s].ns, "anyguard"):
                exited[s] = time.monotonic()
                anyguard.start(g.nodes[s].ns, g.configs[s], g.nodes[s].dir)
                started[s] = time.monotonic()
                pending.discard(s)
        time.sleep(0.01)
    if pending:
        raise Fail(f"anyguard at {sorted(pending)} did not exit within 30 s of SIGTERM")
    stop_lines = {}
    for s in SITES:
        with open(logs[s], "rb") as f:
            f.seek(sizes[s])
            text = f.read().decode("utf-8", "replace")
        # Only the stopping process's part: up to the new process's first line.
        text = text.split("status endpoint started", 1)[0]
        stop_lines[s] = [line for line in text.splitlines()
                         if "STOPPING WITHOUT WITHDRAWING" in line or "without NOTIFICATION" in line
                         or "graceful restart is not negotiated" in line or "stopping:" in line]
    return t0, spread, exited, started, stop_lines


def run(ctx):
    topo = ctx.topology()
    g = StopsLab(topo)
    sampler = stale_watch = None
    ok = False
    try:
        g.setup()
        poll("graceful restart negotiated by every anyguard with its router",
             lambda: all(g.gr_negotiated(s) for s in SITES), 30, 0.2)
        sampler = Sampler(topo)
        sampler.start()
        # The helpers at work: FRR marks the kept route stale, BIRD says "graceful restart
        # active" on the protocol, from the close until the new process's End-of-RIB (a
        # few hundred ms when the restart is quick): sampled in their own threads.
        stale_watch = StaleWatch(topo)
        stale_watch.start()
        time.sleep(0.5)  # some samples before the stop
        t0, spread, exited, started, stop_lines = restart_all(g, sampler)
        g.wait_all_announcing("the three restarted sites to announce web again")
        # Until no router keeps anything stale any more: the new sessions' End-of-RIB.
        poll("ra and rb to hold fresh (not stale) routes again",
             lambda: not any(topo.nodes[EDGE[s][0]].router().keeping_stale(PREFIX, EDGE[s][1])
                             for s in ("a", "b")), 30, 0.1)
        time.sleep(0.5)
        t_end = time.monotonic()
        sampler.stop()
        stale_watch.stop()
        stale = {s: (round(t - t0, 3) if t is not None else None) for s, t in stale_watch.first_stale(t0).items()}
        timeline = sampler.timeline(t0, t_end)
        if not timeline:
            raise Fail("no RIB samples during the restart")
        no_core = [round(t - t0, 3) for t, v in timeline if not v["core"]]
        if no_core:
            raise Fail(f"the core lost every path to {PREFIX} at t={no_core[:5]} s after the SIGTERMs")
        min_core = min(len(v["core"]) for _, v in timeline)
        held = sorted(s for s in SITES if any("STOPPING WITHOUT WITHDRAWING" in line for line in stop_lines[s]))
        withdrew = [s for s in SITES if s not in held]
        if len(held) < MIN_SITES:
            raise Fail(f"only {held} kept their routes through the stop (min_sites {MIN_SITES}); "
                       f"stop logs: {stop_lines}")
        lost = {s: round(sampler.first(s, t0, lambda v: not v) - t0, 3)
                for s in SITES if sampler.first(s, t0, lambda v: not v) is not None}
        lost_held = {s: t for s, t in lost.items() if s in held}
        if lost_held:
            raise Fail(f"routers lost the route of held site(s) {lost_held} (s after the SIGTERMs): "
                       f"graceful restart did not keep it")
        for s in held:
            if s in stale and stale[s] is None:
                raise Fail(f"{EDGE[s][0]} never showed anyguard {s}'s route as stale after the stop: "
                           f"no graceful restart?")
        if min_core < MIN_SITES:
            raise Fail(f"the core had only {min_core} path(s) at some moment (min_sites {MIN_SITES})")
        changes, last = [], None
        for t, v in timeline:
            now = ("".join(s for s in SITES if v[s]) or "-", "".join(v["core"]) or "-")
            if now != last:
                changes.append(f"+{1000 * (t - t0):.0f}ms routers {now[0]} core {now[1]}")
                last = now
        print("  stops: sampled from the SIGTERMs on: " + "; ".join(changes), flush=True)
        for s in held:
            line = next(line for line in stop_lines[s] if "STOPPING WITHOUT WITHDRAWING" in line)
            print(f"  stops: {s}: {line[line.find('STOPPING'):].strip()[:700]}", flush=True)
        counts, worst = sampler.spacing(t0, t_end)
        ok = True
    finally:
        if sampler is not None:
            sampler.stop()
        if stale_watch is not None:
            stale_watch.stop()
        try:
            g.restore()
        except Exception as e:  # noqa: BLE001 — never hide the scenario's own failure
            if ok:
                raise
            log(f"stops: restoring the normal configs failed too: {e}")
    down = {s: f"{1000 * (started[s] - exited[s]) + 1000 * (exited[s] - t0):.0f}" for s in SITES}
    return (f"SIGTERM to a, b, c within {1000 * spread:.1f} ms, each restarted on exit "
            f"(exited +{'/'.join(f'{1000 * (exited[s] - t0):.0f}' for s in SITES)} ms, started "
            f"+{'/'.join(down[s] for s in SITES)} ms); held (sessions closed for graceful restart): "
            f"{','.join(held) or '-'}; withdrew: {','.join(withdrew) or '-'}; site routers lost "
            f"{lost or 'nothing'}; stale at ra/rb seen +{stale.get('a')}/+{stale.get('b')} s; core kept at least {min_core} path(s) throughout; RIB samples "
            f"{'/'.join(f'{n} {c}' for n, c in counts.items())} (worst spacing {1000 * worst:.0f} ms)")
