"""The fleet file reloads, and sites running different fleet files show it (issue 11 item 5),
on the three-site topology.

Each site gets its own copy of the fleet file (as config management would deploy it), each
with other comments and spellings: the three digests agree all the same. Then a change
(`min_sites` 1 → 2, polls every 300 ms instead of 400 ms) is rolled out site by site with
SIGHUP: after c reloads, c's /status lists a and b under `fleet.mismatch` and a's and b's
list c, and so does `anyguard_guard_fleet_digest_mismatch`; nothing is withdrawn (the core
keeps its three paths). A broken copy at b is rejected with file:line:column and changes
nothing. Once a and b have the new file too, no mismatch is left and every site acts on
`min_sites 2`. Afterwards (also on failure) every node runs its normal config again."""

import os
import signal

from labkit import procs
from labkit.util import Fail, log, poll, sh
from scenarios.guard import CONVERGE, POLL_INTERVAL, POLL_TIMEOUT, PREFIX, SERVICE, SITES, TOKEN, GuardLab, edited

NAME = "fleetreload"
NEEDS = ("curl",)
TOPOLOGY = True


class FleetReloadLab(GuardLab):
    def __init__(self, topo):
        super().__init__(topo)
        self.dir = self.dir.parent / "fleetreload"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.token = self.dir / "token"
        self.configs = {s: self.dir / f"site-{s}.toml" for s in SITES}
        self.fleets = {s: self.dir / f"fleet-{s}.toml" for s in SITES}

    def fleet_text(self, site, min_sites, interval):
        """The fleet as site `site`'s config management renders it: same meaning, its own
        comments and spelling."""
        ms = int(interval.removesuffix("ms"))
        timeout_ms = int(POLL_TIMEOUT.removesuffix("ms"))
        lines = [f"# fleet for the lab, rendered at site {site}", "[poll]"]
        if site == "b":
            lines += [f'timeout="{POLL_TIMEOUT}"', f'interval="{ms}ms"']
        else:
            lines += [f'interval = "{ms}ms"', f'timeout  = "{POLL_TIMEOUT}"   # per poll']
        if site == "a":  # the default, written out
            lines += [f'stale_after = "{3 * ms + timeout_ms}ms"']
        lines += [""]
        for s in SITES:
            lines += ["[[site]]", f'name = "{s}"', f'status_url = "http://{self.nodes[s].status_listen}/status"', ""]
        lines += ["[[service]]", f'name = "{SERVICE}"', f"min_sites = {min_sites}", f'prefixes = ["{PREFIX}"]']
        return "\n".join(lines) + "\n"

    def write_files(self):
        self.token.write_text(TOKEN + "\n")
        for s in SITES:
            self.fleets[s].write_text(self.fleet_text(s, 1, POLL_INTERVAL))
            text = self.nodes[s].config.read_text()
            text = edited(text, r"^\[status\]\n", f'[status]\ntoken_file = "{self.token}"\n',
                          "add the control token")
            text += f'\n[fleet]\npath = "{self.fleets[s]}"\nsite = "{s}"\n'
            self.configs[s].write_text(text)

    def fleet_of(self, s):
        return self.status(s).get("fleet") or {}

    def metric(self, s, series):
        body = sh(["curl", "-s", "--max-time", "2", f"http://{self.nodes[s].status_listen}/metrics"],
                  ns=self.nodes[s].ns, check=False).stdout
        for line in body.splitlines():
            if line.startswith(series + " "):
                return float(line.split()[-1])
        return None

    def sighup(self, s):
        """Reloads site s; returns its last_reload once this attempt shows."""
        before = (self.status(s)["daemon"].get("last_reload") or {}).get("at")
        os.kill(procs.pid_of(self.nodes[s].ns, "anyguard"), signal.SIGHUP)
        poll(f"site {s}'s reload attempt", lambda: (self.status(s)["daemon"].get("last_reload") or {}).get("at")
             not in (None, before), 10, 0.1)
        return self.status(s)["daemon"]["last_reload"]

    def mismatches(self):
        return {s: self.fleet_of(s).get("mismatch") for s in SITES}

    def core_paths(self):
        return len(self.topo.nodes["core"].router().route_json(PREFIX).get("paths", []))

    def agree(self, what):
        def ok():
            fleets = [self.fleet_of(s) for s in SITES]
            return (len({f.get("digest") for f in fleets}) == 1
                    and all(f.get("mismatch") == [] and all(x.get("fleet") == "same" for x in f.get("sites", []))
                            for f in fleets))
        try:
            poll(what, ok, CONVERGE, 0.2)
        except Fail as e:
            raise Fail(f"{e}; mismatches {self.mismatches()}") from None
        return self.fleet_of("a")["digest"]


def run(ctx):
    topo = ctx.topology()
    g = FleetReloadLab(topo)
    ok = False
    try:
        g.setup()
        old = g.agree("the three re-rendered copies of the fleet file to agree")
        log(f"fleetreload: three copies, three renderings, one digest {old[:12]}")

        # The new fleet at c only.
        g.fleets["c"].write_text(g.fleet_text("c", 2, "300ms"))
        last = g.sighup("c")
        if not last.get("ok"):
            raise Fail(f"c rejected the new fleet file: {last}")
        want = {"a": ["c"], "b": ["c"], "c": ["a", "b"]}
        try:
            poll("every site to show the mismatch", lambda: g.mismatches() == want, CONVERGE, 0.2)
        except Fail as e:
            raise Fail(f"{e}; mismatches {g.mismatches()}") from None
        new = g.fleet_of("c")["digest"]
        gauge = g.metric("a", 'anyguard_guard_fleet_digest_mismatch{site="c"}')
        if gauge != 1.0:
            raise Fail(f"a's anyguard_guard_fleet_digest_mismatch{{site=\"c\"}} is {gauge}, expected 1")
        c = g.status("c")
        if g.fleet_of("c").get("poll_interval_ms") != 300 or g.svc("c")["guard"]["min_sites"] != 2:
            raise Fail(f"c does not act on the new fleet: {c.get('fleet')}, guard {g.svc('c')['guard']}")
        if any(g.state(s) != "up" or not g.edge_has(s) for s in SITES) or g.core_paths() != 3:
            raise Fail(f"a fleet reload changed announcements: {g.states()}, core paths {g.core_paths()}")
        log(f"fleetreload: after c's reload ({old[:12]} → {new[:12]}): mismatches {g.mismatches()}, "
            f"a's gauge for c {gauge}")

        # A broken copy at b: rejected with file:line:column, nothing changes.
        broken = g.fleet_text("b", 0, "300ms")
        g.fleets["b"].write_text(broken)
        gen = g.status("b")["daemon"]["config_generation"]
        last = g.sighup("b")
        line = broken.splitlines().index("min_sites = 0") + 1
        want_err = (f"{g.fleets['b']}:{line}:13: service[0].min_sites: must be between 1 and the number "
                    f"of sites (3), got 0")
        if last.get("ok") or last.get("errors") != [want_err]:
            raise Fail(f"b's reload of a broken fleet file: {last}, expected the error {want_err!r}")
        if g.status("b")["daemon"]["config_generation"] != gen or g.fleet_of("b").get("digest") != old:
            raise Fail(f"the rejected reload changed b: {g.status('b')['daemon']}, {g.fleet_of('b')}")
        log(f"fleetreload: b's broken copy rejected: {want_err}")

        # The rollout completes.
        for s in ("b", "a"):
            g.fleets[s].write_text(g.fleet_text(s, 2, "300ms"))
            last = g.sighup(s)
            if not last.get("ok"):
                raise Fail(f"{s} rejected the new fleet file: {last}")
        done = g.agree("no mismatch once every site reloaded the new fleet")
        if done != new:
            raise Fail(f"the sites agree on {done[:12]}, not on c's {new[:12]}")
        mins = {s: g.svc(s)["guard"]["min_sites"] for s in SITES}
        if set(mins.values()) != {2} or g.metric("a", 'anyguard_guard_fleet_digest_mismatch{site="c"}') != 0.0:
            raise Fail(f"after the rollout: min_sites {mins}, mismatches {g.mismatches()}")
        if any(g.state(s) != "up" or not g.edge_has(s) for s in SITES) or g.core_paths() != 3:
            raise Fail(f"the rollout changed announcements: {g.states()}, core paths {g.core_paths()}")
        ok = True
    finally:
        try:
            g.restore()
        except Exception as e:  # noqa: BLE001 — never hide the scenario's own failure
            if ok:
                raise
            log(f"fleetreload: restoring the normal configs failed too: {e}")
    return (f"three re-rendered copies agree ({old[:12]}); new fleet at c: c shows a, b and a, b show c "
            f"as mismatched (gauge 1), nothing withdrawn; b's broken copy rejected at line {line}:13, "
            f"nothing changed; rolled out everywhere: one digest {new[:12]}, min_sites 2 at a, b, c, "
            f"the core had 3 paths at every check")
