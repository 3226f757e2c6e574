"""The all-sites guard (issue 6, issue 7 scenario 5) on the three-site topology.

The three anyguard nodes are restarted with a fleet made for this scenario (generated into
the run directory: `fleet.toml` with `web` at `min_sites = 1`, polls every 400 ms, and
per-site configs = the normal ones plus `[fleet]` and a control token), then:

1. one site's health target fails (c): c withdraws (GoBGP's adj-in from anyguard c loses
   the route), a and b keep announcing (FRR's and BIRD's adj-ins keep theirs);
2. every site's health target fails within the same second: exactly one site (a, first
   in the fleet) keeps announcing, its /status says `held` with the guard's reason, b and
   c withdraw; the core's RIB and the three site routers' adj-ins are sampled all along;
3. b's health target recovers: the held site a withdraws (its target still fails) once b
   has announced for the hand-over time (`[fleet] hand_over`, 1 s here): its /status says
   it waits for the hand-over meanwhile, its router loses its route no earlier than
   hand_over after b's router has b's (as far as the samples can tell), and the samples
   show no moment without an announcing site;
4. a config disabling `web` at every site is rejected by `anyguard check --fleet …
   --site-config a=… b=… c=…` (exit 1, naming service, prefix and sites), and rolled out
   live site by site: c and b accept it (another site still announces) and withdraw, a
   refuses it (`POST /reload` → 409; `daemon.last_reload.ok == false` with the guard's
   reason, `config_generation` unchanged, `web` still up and announced to ra).

Site c's subnet is not announced by GoBGP's config (it cannot originate from its file), so
the other sites could not poll c's status: the scenario adds 198.18.3.0/24 to rc's RIB
through its CLI and removes it again. Afterwards (also on failure) every node runs its
normal config again and every site's health target runs."""

import json
import os
import re
import signal
import threading
import time

from labkit import anyguard, procs
from labkit.util import Fail, anyguard_binary, log, poll, run_dir, sh

NAME = "guard"
NEEDS = ("curl",)
TOPOLOGY = True

SERVICE = "web"
PREFIX = "203.0.113.0/24"
SITES = ("a", "b", "c")
# Per site: its edge router node and the anyguard node's address (the router's neighbor).
EDGE = {"a": ("ra", "198.18.1.2"), "b": ("rb", "198.18.2.2"), "c": ("rc", "198.18.3.2")}
# The core's neighbors: which site's router a path came from.
CORE_PEER = {"198.18.0.1": "a", "198.18.0.3": "b", "198.18.0.5": "c"}
SITE_C_SUBNET = "198.18.3.0/24"
POLL_INTERVAL, POLL_TIMEOUT = "400ms", "200ms"
# Make-before-break: a site counts for another's withdrawal once seen announcing this long.
HAND_OVER_S = 1.0
TOKEN = "lab-guard-token"
CONVERGE = 30.0


class Sampler:
    """Samples, through the routers' own CLIs and until stopped (bounded in time and
    count), whether each site router has its anyguard node's route for PREFIX and which
    paths the core has. One thread per router so that each is sampled every few tens of
    milliseconds: `series[site]` holds (t, bool), `series["core"]` (t, [sites])."""

    SPACING, MAX_SECONDS = 0.01, 120.0

    def __init__(self, topo):
        self.series = {name: [] for name in (*SITES, "core")}
        # When each sample's CLI call started (series[name][i] is stamped when it returned):
        # the router's state was read at some moment between the two.
        self.starts = {name: [] for name in self.series}
        self._stop = threading.Event()
        probes = {s: self._edge_probe(topo.nodes[r].router(), addr) for s, (r, addr) in EDGE.items()}
        core = topo.nodes["core"].router()
        probes["core"] = lambda: sorted(CORE_PEER.get(p.get("peer", {}).get("peerId"), "?")
                                        for p in core.route_json(PREFIX).get("paths", []))
        self._threads = [threading.Thread(target=self._run, args=(n, f), daemon=True) for n, f in probes.items()]

    @staticmethod
    def _edge_probe(router, neighbor):
        if router.kind == "frr":
            return lambda: router.route_from(PREFIX, neighbor) is not None
        if router.kind == "bird":
            proto = router._protocol(neighbor)  # resolved once: one birdc call per sample
            if not proto:
                raise Fail(f"bird has no protocol for neighbor {neighbor}")
            return lambda: PREFIX in router.birdc("show", "route", PREFIX, "protocol", proto)
        return lambda: router.has_route(PREFIX, neighbor)

    def start(self):
        for t in self._threads:
            t.start()
        poll("the first RIB samples", lambda: all(self.series.values()), 5, 0.02)

    def _run(self, name, probe):
        deadline = time.monotonic() + self.MAX_SECONDS
        for _ in range(int(self.MAX_SECONDS / self.SPACING)):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            started = time.monotonic()
            value = probe()
            self.starts[name].append(started)
            self.series[name].append((time.monotonic(), value))
            time.sleep(self.SPACING)

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)

    def first(self, name, since, pred):
        return next((t for t, v in self.series[name] if t >= since and pred(v)), None)

    def became(self, name, since, pred):
        """Bounds (earliest, latest) of the moment `pred` became true after `since`: it was
        false when the sample before the first true one read the router, which was after
        that sample's CLI call started, and true by the time the first true one returned.
        None when no sample after `since` is true."""
        rows = self.series[name]
        for i, (t, v) in enumerate(rows):
            if t >= since and pred(v):
                return (self.starts[name][i - 1] if i > 0 else float("-inf")), t
        return None

    def certainly(self, name, pred, t0, t1):
        """Intervals within [t0, t1] in which `pred` held for sure: between two consecutive
        samples that both satisfy it, from the latest moment the first can have read the
        router (when its CLI call returned) to the earliest the second can have (when its
        call started), assuming no change and change back within one sample spacing."""
        rows, starts, out = self.series[name], self.starts[name], []
        for i in range(len(rows) - 1):
            (e0, v0), (_, v1) = rows[i], rows[i + 1]
            lo, hi = max(e0, t0), min(starts[i + 1], t1)
            if pred(v0) and pred(v1) and lo < hi:
                out.append((lo, hi))
        return out

    def timeline(self, t0, t1):
        """Every sample time in [t0, t1] with the latest value of every series then (the
        moments at which something was observed), once every series has a value."""
        events = sorted((t, n, v) for n, rows in self.series.items() for t, v in rows if t <= t1)
        latest, out = {}, []
        for t, n, v in events:
            latest[n] = v
            if t >= t0 and len(latest) == len(self.series):
                out.append((t, dict(latest)))
        return out

    def spacing(self, t0, t1):
        """Samples per series in [t0, t1] and the worst spacing of any series."""
        counts, worst = {}, 0.0
        for n, rows in self.series.items():
            ts = [t for t, _ in rows if t0 <= t <= t1]
            counts[n] = len(ts)
            worst = max([worst] + [b - a for a, b in zip(ts, ts[1:])])
        return counts, worst


def edited(text, pattern, replacement, what):
    new, n = re.subn(pattern, replacement, text, flags=re.M)
    if n != 1:
        raise Fail(f"cannot {what}: pattern {pattern!r} matched {n} times in the site config")
    return new


class GuardLab:
    def __init__(self, topo):
        self.topo = topo
        self.dir = run_dir() / "guard"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.nodes = {s: topo.anyguard_node(s) for s in SITES}
        self.rc = topo.nodes["rc"].router()
        self.fleet = self.dir / "fleet.toml"
        self.token = self.dir / "token"
        self.configs = {s: self.dir / f"site-{s}.toml" for s in SITES}
        self.disabled = {s: self.dir / f"site-{s}-disabled.toml" for s in SITES}
        self.route_added = False

    # -- files --------------------------------------------------------------------------

    def write_files(self):
        lines = ["# Generated by lab/scenarios/guard.py: the lab's fleet for the guard scenario.",
                 "[poll]", f'interval = "{POLL_INTERVAL}"', f'timeout = "{POLL_TIMEOUT}"', ""]
        for s in SITES:
            lines += ["[[site]]", f'name = "{s}"',
                      f'status_url = "http://{self.nodes[s].status_listen}/status"', ""]
        lines += ["[[service]]", f'name = "{SERVICE}"', "min_sites = 1", f'prefixes = ["{PREFIX}"]']
        self.fleet.write_text("\n".join(lines) + "\n")
        self.token.write_text(TOKEN + "\n")
        for s in SITES:
            text = self.nodes[s].config.read_text()
            text = edited(text, r"^\[status\]\n", f'[status]\ntoken_file = "{self.token}"\n',
                          "add the control token")
            text += f'\n[fleet]\npath = "{self.fleet}"\nsite = "{s}"\nhand_over = "{HAND_OVER_S:g}s"\n'
            self.configs[s].write_text(text)
            self.disabled[s].write_text(edited(
                text, rf'^(\[\[service\]\]\nname = "{SERVICE}"\n)', r"\1disabled = true\n",
                f"disable {SERVICE}"))

    # -- site state ---------------------------------------------------------------------

    def status(self, s):
        return anyguard.status(self.nodes[s].ns, self.nodes[s].status_listen) or {}

    def svc(self, s):
        return anyguard.service(self.status(s), SERVICE)

    def state(self, s):
        return self.svc(s).get("state")

    def states(self):
        return {s: self.state(s) for s in SITES}

    def edge_has(self, s):
        router_name, neighbor = EDGE[s]
        router = self.topo.nodes[router_name].router()
        if router.kind == "frr":
            return router.route_from(PREFIX, neighbor) is not None
        return router.has_route(PREFIX, neighbor)

    def wait_all_announcing(self, what):
        """Every site up, announced to its router, and every guard seeing both others."""
        def ok():
            if any(self.state(s) != "up" for s in SITES):
                return False
            if not all(self.edge_has(s) for s in SITES):
                return False
            return all(len(self.svc(s).get("guard", {}).get("sites_announcing", [])) == 2 for s in SITES)
        try:
            poll(what, ok, CONVERGE, 0.2)
        except Fail as e:
            raise Fail(f"{e}; states {self.states()}, routers "
                       f"{ {s: self.edge_has(s) for s in SITES} }") from None

    # -- processes ----------------------------------------------------------------------

    def restart_anyguards(self, configs):
        """Stops the three daemons together (each drains for its drain_time), then starts
        them with `configs` and waits for their /status."""
        for s in SITES:
            pid = procs.pid_of(self.nodes[s].ns, "anyguard")
            if pid:
                os.kill(pid, signal.SIGTERM)
        for s in SITES:
            ns = self.nodes[s].ns
            poll(f"anyguard at {s} to exit", lambda: not procs.pid_of(ns, "anyguard"), 15, 0.1)
            procs.stop(ns, "anyguard")
        for s in SITES:
            anyguard.start(self.nodes[s].ns, configs[s], self.nodes[s].dir)
        for s in SITES:
            anyguard.wait_status(self.nodes[s].ns, self.nodes[s].status_listen)

    def fail_health(self, sites):
        """Stops the sites' HTTP targets; returns the time of the first and last stop."""
        times = []
        for s in sites:
            self.topo.stop_http(self.nodes[s])
            times.append(time.monotonic())
        return times[0], times[-1]

    def ensure_http(self):
        for s in SITES:
            if not procs.pid_of(self.nodes[s].ns, "http"):
                self.topo.start_http(self.nodes[s])

    # -- setup and restore --------------------------------------------------------------

    def setup(self):
        self.write_files()
        self.rc.gobgp("global", "rib", "add", "-a", "ipv4", SITE_C_SUBNET, "nexthop", "0.0.0.0")
        self.route_added = True
        a = self.nodes["a"]
        c_status = f"http://{self.nodes['c'].status_listen}/status"
        poll("site a to reach site c's status endpoint (rc announcing 198.18.3.0/24)",
             lambda: sh(["curl", "-sf", "--max-time", "1", "-o", "/dev/null", c_status],
                        ns=a.ns, check=False).returncode == 0, CONVERGE, 0.2)
        self.restart_anyguards(self.configs)
        self.wait_all_announcing("the three sites to announce web with the fleet configs")

    def restore(self):
        self.ensure_http()
        self.restart_anyguards({s: self.nodes[s].config for s in SITES})
        if self.route_added:
            self.rc.gobgp("global", "rib", "del", "-a", "ipv4", SITE_C_SUBNET)
        poll("the three sites to announce web again with their normal configs",
             lambda: all(self.state(s) == "up" and self.edge_has(s) for s in SITES), CONVERGE, 0.2)

    # -- the steps ----------------------------------------------------------------------

    def one_site(self):
        t0, _ = self.fail_health(["c"])
        poll("rc (GoBGP) to lose anyguard c's route", lambda: not self.edge_has("c"), 15, 0.05)
        t_gone = time.monotonic()
        st = self.states()
        if st["c"] != "down":
            raise Fail(f"anyguard c says web is {st['c']!r} after its health failed, expected down")
        for s in ("a", "b"):
            if st[s] != "up" or not self.edge_has(s):
                raise Fail(f"site {s} stopped announcing when only c failed: {st}")
        guard_c = self.svc("c").get("guard", {})
        log(f"guard: c withdrew {1000 * (t_gone - t0):.0f} ms after its target stopped; "
            f"c's guard: {guard_c.get('decision')}: {guard_c.get('reason')}")
        self.topo.start_http(self.nodes["c"])
        self.wait_all_announcing("site c to announce again after its target came back")
        return f"one site: c withdrawn {1000 * (t_gone - t0):.0f} ms after its target stopped, a and b kept"

    def all_sites(self, sampler):
        """Every target fails; returns (spread of the failures, their time, when one site
        was left holding, that site, the order in which the others left, a's guard reason)."""
        t_first, t_last = self.fail_health(SITES)
        spread = t_last - t_first
        found = {}

        def settled():
            st = self.states()
            held = [s for s in SITES if st[s] == "held"]
            if len(held) != 1 or any(st[s] != "down" for s in SITES if s not in held):
                return False
            if [s for s in SITES if self.edge_has(s)] != held:
                return False
            found["held"] = held[0]
            return True
        try:
            poll("exactly one site held, the other two withdrawn, after every site's target failed",
                 settled, 20, 0.1)
        except Fail as e:
            raise Fail(f"{e}; states {self.states()}, routers {({s: self.edge_has(s) for s in SITES})}") from None
        t_settled = time.monotonic()
        held = found["held"]
        # It must stay that way: several poll rounds later, the site still holds.
        time.sleep(2.0)
        doc = self.status(held)
        svc = anyguard.service(doc, SERVICE)
        guard = svc.get("guard", {})
        report = next((r for r in doc.get("guard", {}).get("services", []) if r.get("name") == SERVICE), {})
        if svc.get("state") != "held" or guard.get("decision") != "held":
            raise Fail(f"{held}'s web is {svc.get('state')!r} (guard {guard.get('decision')!r}) 2 s later, "
                       f"expected held")
        reason = guard.get("reason", "")
        want = ["health failing", f"withdrawing {SERVICE} would leave 0 of 3 sites announcing (min_sites 1)"]
        if not all(w in reason for w in want):
            raise Fail(f"{held}'s guard reason does not explain the hold: {reason!r}")
        if not (report.get("intent") == "held" and report.get("announcing") is True and report.get("healthy") is False):
            raise Fail(f"{held}'s published report for web is {report}, expected held, announcing, unhealthy")
        for s in SITES:
            if s != held and (self.edge_has(s) or self.state(s) != "down"):
                raise Fail(f"site {s} announces or is not down while {held} holds: {self.states()}")
        empty_core = [round(t - t_first, 3) for t, v in sampler.series["core"] if t >= t_first and not v]
        if empty_core:
            raise Fail(f"the core had no path to {PREFIX} at t={empty_core[:5]} s after the failures")
        left = {s: sampler.first(s, t_first, lambda v: not v) for s in SITES if s != held}
        order = sorted(left, key=lambda s: left[s] or 0)
        log(f"guard: {held} held ({svc.get('reason')}); withdrawn first: "
            + ", ".join(f"{s} at +{1000 * (left[s] - t_first):.0f} ms" for s in order if left[s]))
        return spread, t_first, t_settled, held, order, reason

    def recovery(self, sampler, t_fail, held):
        """Another site's target recovers; the held site must withdraw after it announces."""
        other = next(s for s in SITES if s != held)
        t_rec = time.monotonic()
        self.topo.start_http(self.nodes[other])
        waits = []

        def released():
            st = self.states()
            reason = self.svc(held).get("guard", {}).get("reason", "")
            if "for the hand-over" in reason:
                waits.append(reason)
            return (st[other] == "up" and st[held] == "down" and self.edge_has(other)
                    and not self.edge_has(held))
        try:
            poll(f"{other} to announce and the held site {held} to withdraw", released, 20, 0.05)
        except Fail as e:
            raise Fail(f"{e}; states {self.states()}, {held}'s guard {self.svc(held).get('guard')}") from None
        time.sleep(0.5)  # a few more samples after the release
        t_end = time.monotonic()
        o_in = sampler.first(other, t_rec, bool)
        h_out = sampler.first(held, t_rec, lambda v: not v)
        if o_in is None or h_out is None:
            raise Fail(f"the samples missed {other}'s announcement ({o_in}) or {held}'s withdrawal ({h_out})")
        # Each sample reads a router at some moment during its CLI call (tens of ms with
        # vtysh): the order is only certain when the latest moment the held site's route
        # can have gone is before the earliest moment the other's can have come.
        o_range = sampler.became(other, t_rec, bool)
        h_range = sampler.became(held, t_rec, lambda v: not v)
        if h_range[1] < o_range[0]:
            raise Fail(f"{EDGE[held][0]} lost {held}'s route {1000 * (o_range[0] - h_range[1]):.0f} ms "
                       f"before {EDGE[other][0]} had {other}'s")
        # Make-before-break: the held site's route must go no earlier than hand_over after
        # the other's came. Judged as soundly as the order: a failure only when even the
        # latest moment the held route can have gone is less than hand_over after the
        # earliest moment the other's can have come (the samples bound each moment by one
        # CLI call and the spacing; the guard's margin is measured from when the held site
        # first saw the other's report, which is after the other's UPDATE was written).
        margin = (h_range[0] - o_range[1], h_range[1] - o_range[0])
        if margin[1] < HAND_OVER_S:
            raise Fail(f"{EDGE[held][0]} lost {held}'s route at most {1000 * margin[1]:.0f} ms after "
                       f"{EDGE[other][0]} had {other}'s: less than hand_over {HAND_OVER_S:g}s")
        wait = next((w for w in waits if f"{other}: announcing for " in w and f"of hand_over {HAND_OVER_S:g}s" in w), None)
        if wait is None:
            raise Fail(f"{held}'s /status never said it waits for the hand-over of {other}: {waits[:3]}")
        timeline = sampler.timeline(t_fail, t_end)
        # A moment without any site's route must be certain: each router is read at some
        # moment during its CLI call, so the three series are intersected as intervals in
        # which each route was surely absent, not as their latest values at each stamp
        # (a slow call that read a route before it came can return after another router's
        # call that read the other route gone). The core is one series: any empty read of
        # it is a real moment without a path.
        gone = [(t_fail, t_end)]
        for s in SITES:
            absent = sampler.certainly(s, lambda v: not v, t_fail, t_end)
            gone = [(max(a, c), min(b, d)) for a, b in gone for c, d in absent if max(a, c) < min(b, d)]
        no_site = [round(a - t_fail, 3) for a, _ in gone]
        no_core = [round(t - t_fail, 3) for t, v in timeline if not v["core"]]
        if no_site or no_core:
            raise Fail(f"moments without an announcing site: routers {no_site[:5]}, core {no_core[:5]} "
                       f"(s after the failures)")
        st = self.svc(held)
        log(f"guard: after {other} recovered, {held} is {st.get('state')}: {st.get('reason')}; "
            f"its guard: {st.get('guard', {}).get('reason')}")
        # What was sampled, as the moments the picture changed (also written in full).
        changes, last = [], None
        for t, v in timeline:
            now = ("".join(s for s in SITES if v[s]) or "-", "".join(v["core"]) or "-")
            if now != last:
                changes.append(f"+{1000 * (t - t_fail):.0f}ms routers {now[0]} core {now[1]}")
                last = now
        with open(run_dir() / "guard-samples.jsonl", "w") as f:
            for t, v in timeline:
                f.write(json.dumps({"t_ms": round(1000 * (t - t_fail), 1), **v}) + "\n")
        print("  guard: sampled from the failures on: " + "; ".join(changes), flush=True)
        counts, worst = sampler.spacing(t_fail, t_end)
        min_sites = min(sum(v[s] for s in SITES) for _, v in timeline)
        min_core = min(len(v["core"]) for _, v in timeline)
        print(f"  guard: {held} while waiting: {wait}", flush=True)
        return other, o_in - t_rec, margin, counts, worst, min_sites, min_core

    def reject_rollout(self):
        argv = [anyguard_binary(), "check", "--fleet", str(self.fleet)]
        for s in SITES:
            argv += ["--site-config", f"{s}={self.disabled[s]}"]
        p = sh(argv, check=False)
        if p.returncode != 1:
            raise Fail(f"check of the all-disabled rollout exited {p.returncode}: {p.stdout}{p.stderr}")
        msg = next((line for line in p.stderr.splitlines() if PREFIX in line), "")
        want = [f"service {SERVICE} prefix", PREFIX, "0 of 3 sites", "a: service disabled",
                "b: service disabled", "c: service disabled"]
        if not all(w in msg for w in want):
            raise Fail(f"check's message misses one of {want}: {p.stderr.strip()!r}")
        log(f"guard: check: {msg}")
        return msg

    def reload_sighup(self, s):
        node = self.nodes[s]
        gen = self.status(s)["daemon"]["config_generation"]
        self.configs[s].write_text(self.disabled[s].read_text())
        os.kill(procs.pid_of(node.ns, "anyguard"), signal.SIGHUP)
        poll(f"site {s} to accept the reload disabling web",
             lambda: self.status(s).get("daemon", {}).get("config_generation") == gen + 1, 10, 0.1)
        last = self.status(s)["daemon"]["last_reload"]
        if not last or not last.get("ok"):
            raise Fail(f"site {s} rejected disabling web although another site announces: {last}")
        poll(f"site {s} to withdraw the disabled service", lambda: not self.edge_has(s), 15, 0.1)
        return self.state(s)

    def reject_reload(self):
        """The all-disabled config, rolled out live site by site: c and b take it, a cannot."""
        after = {s: self.reload_sighup(s) for s in ("c", "b")}
        a = self.nodes["a"]
        poll("a's guard to see no other site announcing",
             lambda: self.svc("a").get("guard", {}).get("sites_announcing") == [], 10, 0.1)
        before = self.status("a")["daemon"]
        self.configs["a"].write_text(self.disabled["a"].read_text())
        body = self.dir / "reload-a.json"
        p = sh(["curl", "-s", "--max-time", "5", "-o", str(body), "-w", "%{http_code}", "-X", "POST",
                "-H", f"Authorization: Bearer {TOKEN}", f"http://{a.status_listen}/reload"], ns=a.ns, check=False)
        code = p.stdout.strip()
        answer = body.read_text() if body.exists() else ""
        if code != "409":
            raise Fail(f"POST /reload of the all-disabled config at a answered {code}: {answer}")
        daemon = self.status("a")["daemon"]
        last = daemon.get("last_reload") or {}
        errors = last.get("errors") or []
        if last.get("ok") is not False:
            raise Fail(f"a's last_reload is {last}, expected ok false")
        guard_err = next((e for e in errors if e.startswith("all-sites guard: ")), None)
        if not guard_err or f"service {SERVICE} prefix" not in guard_err or PREFIX not in guard_err:
            raise Fail(f"a's reload errors do not carry the guard's reason: {errors}")
        if daemon["config_generation"] != before["config_generation"]:
            raise Fail(f"a's config generation moved {before['config_generation']} → {daemon['config_generation']}")
        time.sleep(1.0)
        if self.state("a") != "up" or not self.edge_has("a"):
            raise Fail(f"a stopped announcing after its reload was rejected: {self.states()}")
        core = self.topo.nodes["core"].router().route_json(PREFIX).get("paths", [])
        if not core:
            raise Fail(f"the core has no path to {PREFIX} after the rejected reload")
        reasons = json.loads(answer).get("reasons", []) if answer.startswith("{") else []
        log(f"guard: POST /reload at a → 409 {reasons}; c: {after['c']}, b: {after['b']}")
        return before["config_generation"], guard_err, after


def run(ctx):
    topo = ctx.topology()
    g = GuardLab(topo)
    sampler = None
    ok = False
    try:
        g.setup()
        d_one = g.one_site()
        sampler = Sampler(topo)
        sampler.start()
        spread, t_fail, t_settled, held, order, guard_reason = g.all_sites(sampler)
        other, o_after, overlap, counts, worst_gap, min_sites_seen, min_core = g.recovery(sampler, t_fail, held)
        sampler.stop()
        g.ensure_http()
        g.wait_all_announcing("every site to announce again once its target came back")
        g.reject_rollout()
        gen, _err, after = g.reject_reload()
        ok = True
    finally:
        if sampler is not None:
            sampler.stop()
        try:
            g.restore()
        except Exception as e:  # noqa: BLE001 — never hide the scenario's own failure
            if ok:
                raise
            log(f"guard: restoring the normal configs failed too: {e}")
    print(f"  guard: {held}'s reason while held: {guard_reason}", flush=True)
    return (f"{d_one}; all three failed within {1000 * spread:.0f} ms: {'/'.join(order)} withdrew, "
            f"{held} (last left) held, settled {1000 * (t_settled - t_fail):.0f} ms after; {other} recovered: "
            f"announced after {1000 * o_after:.0f} ms, {held} withdrew {1000 * overlap[0]:.0f}..{1000 * overlap[1]:.0f} ms "
            f"after that (hand_over {HAND_OVER_S:g}s, /status said it waited for it); "
            f"RIB samples {'/'.join(f'{n} {c}' for n, c in counts.items())} (worst spacing {1000 * worst_gap:.0f} ms): at least {min_sites_seen} "
            f"site router(s) and {min_core} core path(s) throughout; all-disabled rollout: check exit 1, "
            f"live at c/b accepted ({after['c']}/{after['b']}), at a POST /reload 409, generation stays "
            f"{gen}, web still announced")
