"""Failover (issue 7 scenario 2) on the three-site topology: the client's requests to the
anycast address are answered by site a (the core prefers it: LOCAL_PREF); a's health
target stops; anyguard at a withdraws, the core's best path moves and the answers come from
site b; a's target comes back; the answers come from a again. The client sends one request
every 20 ms (new TCP connection each, 250 ms timeout) throughout, and the scenario reports
the longest time it saw no answer. The IPv6 service address follows the same way (checked
with single requests). Routers' views are read through their own CLIs."""

import time

from labkit import anyguard, procs
from labkit.util import LAB_DIR, Fail, log, poll, read_jsonl, run_dir, sh

NAME = "failover"
NEEDS = ("curl",)
TOPOLOGY = True

URL = "http://203.0.113.10/"
URL6 = "http://[2001:db8:100::10]/"
SPACING, TIMEOUT = 0.02, 0.25
PROBE_SECONDS, PROBE_COUNT = 90, 4000
CONVERGE = 30.0


def curl(node, url=URL) -> str:
    p = sh(["curl", "-s", "--max-time", "1", "--globoff", url], ns=node.ns, check=False, timeout=5)
    return p.stdout.strip()


def best_peer(core, prefix="203.0.113.0/24"):
    """The core's best path for the prefix: the address of the router it came from."""
    doc = core.route_json(prefix)
    for path in doc.get("paths", []):
        if path.get("bestpath", {}).get("overall"):
            return path.get("peer", {}).get("peerId")
    return None


class Probe:
    def __init__(self, client):
        self.client = client
        self.out = run_dir() / "failover-probe.jsonl"
        self.stopfile = run_dir() / "failover-probe.stop"
        self.stopfile.unlink(missing_ok=True)
        self.out.unlink(missing_ok=True)
        procs.start(client.ns, "probe", ["/usr/bin/python3", LAB_DIR / "nodes" / "probe.py", URL,
                                         str(SPACING), str(TIMEOUT), str(PROBE_SECONDS),
                                         str(PROBE_COUNT), self.out, self.stopfile],
                    run_dir() / "nodes" / "client" / "probe.log")

    def samples(self):
        return read_jsonl(self.out)

    def first_after(self, t0, site):
        for r in self.samples():
            if r["t"] >= t0 and r["site"] == site:
                return r["t"]
        return None

    def stop(self):
        self.stopfile.touch()
        poll("the client's probe to stop", lambda: not procs.pid_of(self.client.ns, "probe"), 5, 0.05)
        procs.stop(self.client.ns, "probe")


def longest_gap(rows, t0, t1):
    """Longest time without an answer between t0 and t1: from the last answered request
    before a run of unanswered ones to the first answered one after it."""
    last_ok, worst = None, 0.0
    for r in rows:
        if r["t"] < t0 or r["t"] > t1:
            if r["site"]:
                last_ok = r["t"]
            continue
        if r["site"]:
            if last_ok is not None:
                worst = max(worst, r["t"] - last_ok - SPACING)
            last_ok = r["t"]
    return max(worst, 0.0)


def run(ctx):
    topo = ctx.topology()
    client, core = topo.nodes["client"], topo.nodes["core"].router()
    a = topo.anyguard_node("a")
    ra = topo.nodes["ra"].router()
    poll("the client to be answered by site a", lambda: curl(client) == "site a", CONVERGE, 0.2)
    poll("the client to be answered by site a over IPv6", lambda: curl(client, URL6) == "site a", CONVERGE, 0.2)
    # The data plane between sites too: each anyguard node reads the others' /status (what
    # the all-sites guard polls, config/fleet.toml).
    sites = [topo.anyguard_node(s) for s in ("a", "b", "c")]
    for src in sites:
        for dst in sites:
            if src is not dst and not anyguard.status(src.ns, dst.status_listen):
                raise Fail(f"site {src.site} cannot read site {dst.site}'s /status at {dst.status_listen}")
    if best_peer(core) != "198.18.0.1":
        raise Fail(f"core's best path is via {best_peer(core)}, expected ra (198.18.0.1)")

    probe = Probe(client)
    try:
        poll("the probe's first answers from site a",
             lambda: sum(1 for r in probe.samples() if r["site"] == "site a") >= 25, 10, 0.05)

        # Site a's health target dies (the service with it: requests routed to a fail too).
        t_fail = time.monotonic()
        topo.stop_http(a)
        t_b = poll("answers from site b after a failed", lambda: probe.first_after(t_fail, "site b"), 20, 0.05)
        svc = anyguard.service(anyguard.status(a.ns, a.status_listen), "web")
        if svc.get("state") != "down":
            raise Fail(f"anyguard at a says web is {svc.get('state')!r}, expected down")
        poll("ra to drop anyguard a's route", lambda: not ra.has_route("203.0.113.0/24", "198.18.1.2"), 10, 0.1)
        poll("the core's best path to move to rb", lambda: best_peer(core) == "198.18.0.3", 10, 0.1)
        poll("the IPv6 answers to come from site b", lambda: curl(client, URL6) == "site b", 10, 0.1)
        time.sleep(1.0)  # a stretch of steady state on b
        t_recover = time.monotonic()
        stray = [r for r in probe.samples() if t_b <= r["t"] <= t_recover and r["site"] not in ("site b", None)]
        if stray:
            raise Fail(f"while a was down, {len(stray)} answers came from {stray[0]['site']}")

        topo.start_http(a)
        t_a = poll("answers from site a again after recovery", lambda: probe.first_after(t_recover, "site a"),
                   20, 0.05)
        poll("the core's best path back to ra", lambda: best_peer(core) == "198.18.0.1", 10, 0.1)
        poll("the IPv6 answers to come from site a again", lambda: curl(client, URL6) == "site a", 10, 0.1)
        time.sleep(1.0)
        t_end = time.monotonic()
    finally:
        probe.stop()
    rows = probe.samples()
    gap_fail = longest_gap(rows, t_fail, t_recover)
    gap_back = longest_gap(rows, t_recover, t_end)
    lost = sum(1 for r in rows if r["site"] is None)
    log(f"failover: {len(rows)} requests, {lost} unanswered; samples in {probe.out}")
    return (f"a→b: first answer from b {1000 * (t_b - t_fail):.0f} ms after a's target stopped, "
            f"longest time without an answer {1000 * gap_fail:.0f} ms; back to a "
            f"{1000 * (t_a - t_recover):.0f} ms after it recovered, longest gap then "
            f"{1000 * gap_back:.0f} ms; {len(rows)} requests, {lost} unanswered")
