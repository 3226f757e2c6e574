"""The all-sites guard on etcd (issue 16): three anyguard sites whose fleet file says
`backend = "etcd"`, a three-member etcd cluster, one BIRD router all three sites peer with,
and the router's table for the service prefix sampled all along (one birdc call every
~10 ms). `web` has `min_sites = 1`. Own namespaces, not the three-site topology:

    site a ─┐                      ┌─ etcd e1 198.18.170.11
    site b ─┼─ router (BIRD 65000) │
    site c ─┘   198.18.16X.1/.2    ├─ etcd e2 198.18.170.12     switch (a bridge, .254:
    sites a/b/c 198.18.170.1/.2/.3 ┴─ etcd e3 198.18.170.13     where etcdctl runs)

Each site reaches the members over its own port on the switch (cutting that port cuts the
site from etcd and from nothing else) and the router over its own link. Cases, each
started from every site healthy and announcing, each checking the router's fewest paths
over its whole window and its end state, each recovering to all-healthy:

1. every site's health target fails at once: exactly `min_sites` (1) path stays, held
   (`/status` state `held` with the guard's reason), the others withdrawn;
2. the same, with the etcd leader (from `etcdctl endpoint status`) SIGKILLed as soon as
   the first site logs its check going down, so that the sites decide while the two
   members left elect a new leader: still exactly 1 path, never 0; the member is started
   again;
3. site c is cut from etcd (its switch port down): c's `/status` says
   `fleet.store.connected: false`, the others stop counting c once its lease expired;
   c's and a's targets fail: c holds (reason `ETCD UNREACHABLE`), a withdraws (b counts),
   b announces; the port comes back: c rejoins and withdraws (b counts), b alone;
4. a config without `web` is pushed to every site and SIGHUPed at once: exactly 1 path
   stays, the site that keeps it shows the held removal and its reason in `/status`
   (`pending_removals`), or refused the reload with the guard's reason; the normal
   config is pushed back;
5. a member up but cut from the quorum (the members' raft runs on a bridge of their own;
   its port there down, its client port up), then every site's target fails: each site on
   that member moves to another member or holds with `ETCD UNREACHABLE`, and none of its
   withdrawals commits in a session with the cut member; exactly 1 path, never 0.

Everything started is stopped by PID and the namespaces deleted at the end, also on
failure. About 40 s."""

import json
import os
import re
import signal
import threading
import time

from labkit import anyguard, healthpair, netns, procs
from labkit.etcd import Cluster
from labkit.routers import ADAPTERS
from labkit.util import NS_PREFIX, Fail, Skip, log, poll, run_dir, sh, shielded

NAME = "etcd-fleet"
NEEDS = ("curl", "ip", "bird", "birdc", "etcd", "etcdctl")
TOPOLOGY = False

SERVICE = "web"
PREFIX = "203.0.113.0/24"
MIN_SITES = 1
SITES = ("a", "b", "c")
SITE_NUM = {"a": 1, "b": 2, "c": 3}
ROUTER_ASN = 65000
LAN = "198.18.170"
# The members' raft traffic: a bridge of its own, so that case 5 can cut one member from
# the quorum (its port on this bridge down) and leave it reachable for its clients.
PEER_LAN = "198.18.171"
MEMBERS = ("e1", "e2", "e3")
LEASE_TTL = "3s"
CONVERGE = 30.0
# How long an end state must hold in the samples before a case counts it.
STEADY = 2.0


def link(s):
    """(router's address, site's address) on site s's link to the router."""
    return f"198.18.16{SITE_NUM[s]}.1", f"198.18.16{SITE_NUM[s]}.2"


class Sampler:
    """The sites the router has a path to PREFIX from, through birdc, every ~10 ms until
    stopped (bounded in time and count): `rows` holds (monotonic time, frozenset)."""

    SPACING, MAX_SECONDS = 0.01, 600.0
    PROTO = re.compile(r"\[s([abc]) ")

    def __init__(self, router):
        self.router = router
        self.rows = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sites(self):
        text = self.router.birdc("show", "route", PREFIX)
        if not text:
            return None  # birdc failed: no sample rather than a false "no path"
        return frozenset(self.PROTO.findall(text))

    def start(self):
        self._thread.start()
        poll("the first samples of the router's table", lambda: self.rows, 5, 0.02)

    def _run(self):
        deadline = time.monotonic() + self.MAX_SECONDS
        for _ in range(int(self.MAX_SECONDS / self.SPACING)):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            v = self.sites()
            if v is not None:
                self.rows.append((time.monotonic(), v))
            time.sleep(self.SPACING)

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=10)

    def window(self, t0, t1=None):
        return [(t, v) for t, v in list(self.rows) if t >= t0 and (t1 is None or t <= t1)]

    def latest(self):
        return self.rows[-1][1] if self.rows else None

    def steady(self, want, seconds=STEADY, timeout=CONVERGE):
        """Waits until the samples show exactly `want` (a set of sites, or a count) for
        `seconds` in a row; returns when that stretch began."""
        match = (lambda v: len(v) == want) if isinstance(want, int) else (lambda v: v == frozenset(want))
        found = {}

        def ok():
            rows = list(self.rows)
            start = None
            for t, v in rows:
                if match(v):
                    start = t if start is None else start
                else:
                    start = None
            if start is not None and rows[-1][0] - start >= seconds:
                found["t"] = start
                return True
            return False
        poll(f"the router's paths to be {want} for {seconds:g} s", ok, timeout, 0.1)
        return found["t"]

    def changes(self, t0, t1):
        """`+Nms sites` at each change in [t0, t1] (first sample included)."""
        text, last = [], None
        for t, v in self.window(t0, t1):
            if v != last:
                text.append(f"+{(t - t0) * 1000:.0f}ms {''.join(sorted(v)) or '-'}")
                last = v
        return " ".join(text)

    def fewest(self, t0, t1, what):
        rows = self.window(t0, t1)
        if len(rows) < 20:
            raise Fail(f"{what}: only {len(rows)} samples of the router's table")
        fewest = min(len(v) for _, v in rows)
        worst = max([0.0] + [b - a for (a, _), (b, _) in zip(rows, rows[1:])])
        if fewest < MIN_SITES:
            bad = [(round(t - t0, 3), sorted(v)) for t, v in rows if len(v) < MIN_SITES][:5]
            raise Fail(f"{what}: the router had fewer than {MIN_SITES} path(s): {bad} (s, sites); "
                       f"changes {self.changes(t0, t1)}")
        return fewest, len(rows), worst


class EtcdLab:
    def __init__(self):
        self.base = run_dir() / "etcd-fleet"
        self.rns = f"{NS_PREFIX}ef-r"
        self.swns = f"{NS_PREFIX}ef-sw"
        self.sns = {s: f"{NS_PREFIX}ef-{s}" for s in SITES}
        self.ens = {m: f"{NS_PREFIX}ef-{m}" for m in MEMBERS}
        self.router = ADAPTERS["bird"](self.rns, self.base / "router")
        self.cluster = Cluster([(m, self.ens[m], f"{LAN}.1{i + 1}", f"{PEER_LAN}.1{i + 1}")
                                for i, m in enumerate(MEMBERS)],
                               self.base / "etcd", self.swns)
        self.fleet = self.base / "fleet.toml"
        self.configs = {s: self.base / f"site-{s}.toml" for s in SITES}
        self.sampler = None
        self.log_marks = {}

    # -- lifecycle ------------------------------------------------------------------------

    def up(self):
        missing = self.router.missing() + self.cluster.missing()
        if missing:
            raise Skip(f"missing {', '.join(missing)}")
        sh(["rm", "-rf", str(self.base)])
        self.base.mkdir(parents=True)
        for ns in (self.rns, self.swns, *self.sns.values(), *self.ens.values()):
            netns.add(ns)
        sh(["ip", "link", "add", "br0", "type", "bridge"], ns=self.swns)
        sh(["ip", "addr", "add", f"{LAN}.254/24", "dev", "br0"], ns=self.swns)
        sh(["ip", "link", "set", "br0", "up"], ns=self.swns)
        for name, ns, addr in [(s, self.sns[s], f"{LAN}.{SITE_NUM[s]}") for s in SITES] + \
                              [(m, self.ens[m], f"{LAN}.1{i + 1}") for i, m in enumerate(MEMBERS)]:
            port = f"p{name}"
            netns.veth(ns, "lan", self.swns, port)
            sh(["ip", "link", "set", port, "master", "br0"], ns=self.swns)
            sh(["ip", "addr", "add", f"{addr}/24", "dev", "lan"], ns=ns)
        sh(["ip", "link", "add", "br1", "type", "bridge"], ns=self.swns)
        sh(["ip", "link", "set", "br1", "up"], ns=self.swns)
        for i, m in enumerate(MEMBERS):
            netns.veth(self.ens[m], "peer", self.swns, f"q{m}")
            sh(["ip", "link", "set", f"q{m}", "master", "br1"], ns=self.swns)
            sh(["ip", "addr", "add", f"{PEER_LAN}.1{i + 1}/24", "dev", "peer"], ns=self.ens[m])
        for s in SITES:
            r, a = link(s)
            netns.veth(self.rns, f"s{s}", self.sns[s], "rt")
            sh(["ip", "addr", "add", f"{r}/24", "dev", f"s{s}"], ns=self.rns)
            sh(["ip", "addr", "add", f"{a}/24", "dev", "rt"], ns=self.sns[s])
        took = self.cluster.start_all()
        log(f"etcd: three members healthy after {took:.1f}s")
        peers = [{"name": f"s{s}", "family": 4, "router": link(s)[0], "speaker": link(s)[1],
                  "router_id": link("a")[0], "router_asn": ROUTER_ASN, "speaker_asn": 65100 + SITE_NUM[s],
                  "md5": None, "gtsm": False, "router_connects": False, "bfd": None} for s in SITES]
        conf = self.base / "bird.conf"
        conf.write_text(self.router.render_interop(peers))
        self.router.start(conf)
        self.write_files()
        for s in SITES:
            self.start_target(s)
            anyguard.start(self.sns[s], self.configs[s], self.base / s)
        for s in SITES:
            anyguard.wait_status(self.sns[s], self.listen(s))

    def down(self):
        """Stops what up() started, by PID, and deletes the namespaces; shielded from
        SIGINT/SIGTERM so that an interrupt cannot leave half of it behind."""
        with shielded():
            if self.sampler:
                self.sampler.stop()
            for s in SITES:
                procs.stop(self.sns[s], "anyguard", wait=10.0)
                procs.stop(self.sns[s], "target")
            self.router.stop()
            self.cluster.stop_all()
            for ns in (self.rns, self.swns, *self.sns.values(), *self.ens.values()):
                netns.delete(ns)

    # -- files ----------------------------------------------------------------------------

    def listen(self, s):
        return f"{link(s)[1]}:9180"

    def write_files(self):
        eps = ", ".join(f'"{e}"' for e in self.cluster.endpoints)
        lines = ["# Generated by lab/scenarios/etcdfleet.py.", 'backend = "etcd"', "", "[etcd]",
                 f"endpoints = [{eps}]", 'key_prefix = "/anyguard/lab"', f'lease_ttl = "{LEASE_TTL}"',
                 'timeout = "1s"', ""]
        for s in SITES:
            lines += ["[[site]]", f'name = "{s}"', f'status_url = "http://{self.listen(s)}/status"', ""]
        lines += ["[[service]]", f'name = "{SERVICE}"', f"min_sites = {MIN_SITES}", f'prefixes = ["{PREFIX}"]']
        self.fleet.write_text("\n".join(lines) + "\n")
        for s in SITES:
            self.configs[s].write_text(self.site_config(s, with_service=True))

    def site_config(self, s, with_service):
        r, a = link(s)
        lines = [f'router_id = "{a}"', f"local_asn = {65100 + SITE_NUM[s]}", "", "[status]",
                 f'listen = "{self.listen(s)}"', "", "[[peer]]", 'name = "r"', f'address = "{r}"',
                 f'local_address = "{a}"', f"remote_asn = {ROUTER_ASN}", 'hold_time = "9s"',
                 'connect_retry = "1s"', "ipv4 = true", "ipv6 = false", ""]
        if with_service:
            host, port = healthpair.TARGET
            lines += ["[[service]]", f'name = "{SERVICE}"', f'prefixes = ["{PREFIX}"]', 'hold_down = "0s"', "",
                      "[[service.check]]", 'type = "http"', f'url = "http://{host}:{port}/"',
                      'interval = "100ms"', 'timeout = "80ms"', "rise = 2", "fall = 2", ""]
        lines += ["[fleet]", f'path = "{self.fleet}"', f'site = "{s}"', ""]
        return "\n".join(lines)

    # -- health targets -------------------------------------------------------------------

    def start_target(self, s):
        healthpair.start_target(self.sns[s], self.base / s / "target-events.jsonl", self.base / s / "target.log")

    def signal_targets(self, sites, sig):
        """Signals the targets back to back (microseconds apart); returns the spread."""
        pids = {s: procs.pid_of(self.sns[s], "target") for s in sites}
        if not all(pids.values()):
            raise Fail(f"health targets not running: {pids}")
        t0 = time.monotonic()
        for s in sites:
            os.kill(pids[s], sig)
        return time.monotonic() - t0

    def fail(self, *sites):
        return self.signal_targets(sites, signal.SIGUSR1)

    def heal(self, *sites):
        return self.signal_targets(sites, signal.SIGUSR2)

    # -- site state -----------------------------------------------------------------------

    def status(self, s):
        return anyguard.status(self.sns[s], self.listen(s)) or {}

    def svc(self, s, doc=None):
        return anyguard.service(doc if doc is not None else self.status(s), SERVICE)

    def store(self, s, doc=None):
        return ((doc if doc is not None else self.status(s)).get("fleet") or {}).get("store") or {}

    def states(self):
        return {s: self.svc(s).get("state") for s in SITES}

    def describe(self):
        out = {}
        for s in SITES:
            doc = self.status(s)
            svc, st = self.svc(s, doc), self.store(s, doc)
            out[s] = {"state": svc.get("state"), "reason": (svc.get("guard") or {}).get("reason"),
                      "connected": st.get("connected"), "error": st.get("error"),
                      "pending": doc.get("pending_removals")}
        return json.dumps(out)

    def wait_all_healthy(self, what):
        """Every site up and on the router, connected to etcd, and counting both others."""
        def ok():
            for s in SITES:
                doc = self.status(s)
                svc = self.svc(s, doc)
                if svc.get("state") != "up" or not self.store(s, doc).get("connected"):
                    return False
                if len((svc.get("guard") or {}).get("sites_announcing", [])) != 2:
                    return False
            return self.sampler.latest() == frozenset(SITES)
        try:
            poll(what, ok, CONVERGE, 0.2)
        except Fail as e:
            raise Fail(f"{e}: {self.describe()}; router {sorted(self.sampler.latest() or [])}") from None

    def mark_logs(self):
        for s in SITES:
            f = self.base / s / "anyguard.log"
            self.log_marks[s] = f.stat().st_size if f.exists() else 0

    def log_count(self, s, needle):
        """Lines with `needle` in site s's log since mark_logs()."""
        f = self.base / s / "anyguard.log"
        if not f.exists():
            return 0
        with open(f, "rb") as fh:
            fh.seek(self.log_marks.get(s, 0))
            return sum(1 for line in fh.read().decode(errors="replace").splitlines() if needle in line)

    ENDPOINT = re.compile(r'endpoint[=":\s]+(http://[0-9.]+:[0-9]+)')

    def session_events(self, s):
        """Site s's log since mark_logs(), in order: ("connected", endpoint) for each new
        etcd session, ("unreachable", None) for each lost one, ("committed", None) for each
        withdrawal committed in etcd."""
        f = self.base / s / "anyguard.log"
        if not f.exists():
            return []
        with open(f, "rb") as fh:
            fh.seek(self.log_marks.get(s, 0))
            lines = fh.read().decode(errors="replace").splitlines()
        events = []
        for line in lines:
            if "all-sites guard: connected to etcd" in line:
                m = self.ENDPOINT.search(line)
                events.append(("connected", m.group(1) if m else "?"))
            elif "ETCD UNREACHABLE: withdrawals are held" in line:
                events.append(("unreachable", None))
            elif "withdrawal committed in etcd" in line:
                events.append(("committed", None))
        return events

    def current_endpoint(self, s):
        """The member site s's latest session is with, from its whole log."""
        saved = self.log_marks.get(s)
        self.log_marks[s] = 0
        try:
            found = [e for k, e in self.session_events(s) if k == "connected"]
        finally:
            if saved is None:
                self.log_marks.pop(s, None)
            else:
                self.log_marks[s] = saved
        return found[-1] if found else None

    def settle_all_failed(self, t0, what):
        """Exactly MIN_SITES path(s) for STEADY s, one site held, the others down; returns
        (held site, its reason, settled after)."""
        found = {}

        def ok():
            states = self.states()
            held = [s for s in SITES if states[s] == "held"]
            down = [s for s in SITES if states[s] == "down"]
            if len(held) == MIN_SITES and len(down) == len(SITES) - MIN_SITES:
                found.update(held=held, states=states)
                return True
            return False
        try:
            poll(f"{what}: one site held and the others down", ok, CONVERGE, 0.2)
        except Fail as e:
            raise Fail(f"{e}: {self.describe()}") from None
        settled = self.sampler.steady(set(found["held"]))
        held = found["held"][0]
        # The reason names min_sites once the decision is the store's (a site that has
        # just reconnected may still show the etcd alarm for a moment).
        why = {}

        def explained():
            why["reason"] = (self.svc(held).get("guard") or {}).get("reason", "")
            return f"(min_sites {MIN_SITES})" in why["reason"]
        try:
            poll(f"{what}: {held}'s /status saying why it is held", explained, 5, 0.2)
        except Fail:
            raise Fail(f"{what}: {held}'s /status does not say why it is held: {why.get('reason')!r}") from None
        return held, why["reason"], settled - t0

    # -- the cases ------------------------------------------------------------------------

    def case_all_fail(self):
        self.wait_all_healthy("all healthy before case 1")
        t0 = time.monotonic()
        spread = self.fail(*SITES)
        held, reason, settled = self.settle_all_failed(t0, "case 1 (all fail)")
        t1 = time.monotonic()
        fewest, n, worst = self.sampler.fewest(t0, t1, "case 1 (all fail)")
        print(f"  etcd-fleet: case 1 changes {self.sampler.changes(t0, t1)}; {held}'s reason: {reason}", flush=True)
        self.heal(*SITES)
        self.wait_all_healthy("all healthy after case 1")
        return (f"1 all fail (spread {spread * 1e6:.0f} µs): {held} held, exactly {MIN_SITES} "
                f"path from {settled * 1000:.0f} ms, fewest {fewest} in {n} samples (worst gap "
                f"{worst * 1000:.0f} ms)")

    def case_leader_killed(self):
        self.wait_all_healthy("all healthy before case 2")
        leader = self.cluster.leader()
        if leader is None:
            raise Fail("case 2: no etcd leader before the failures")
        self.mark_logs()
        t0 = time.monotonic()
        self.fail(*SITES)
        # The sites see their failure 100-300 ms later (fall = 2 probes at 100 ms, on a
        # loaded machine later) and decide at once (publication, read, transaction): the
        # leader dies as soon as the first site logs its check going down, so that the
        # others decide while the members elect a new one.
        poll("case 2: the first site to see its failure",
             lambda: any(self.log_count(s, "check up -> down") for s in SITES), 5, 0.003)
        self.cluster.kill(leader)
        t_kill = time.monotonic() - t0
        new_leader = poll("a new etcd leader among the two members left",
                          lambda: self.cluster.leader(), 20, 0.1)
        t_elected = time.monotonic() - t0
        # Every site connected again (those on the dead member, and those whose requests
        # timed out during the election, started new sessions); until then a site holds
        # for etcd, not for min_sites.
        poll("case 2: every site connected to etcd again",
             lambda: all(self.store(s).get("connected") for s in SITES), CONVERGE, 0.2)
        held, reason, settled = self.settle_all_failed(t0, "case 2 (leader killed)")
        t1 = time.monotonic()
        # When each site's current session began (the ones on the dead member, and the
        # ones whose requests timed out during the election, started new ones).
        since = {s: self.store(s).get("since_ms") for s in SITES}
        reconnected = {s: round((t1 - t0) * 1000 - ms) for s, ms in since.items()
                       if ms is not None and (t1 - t0) * 1000 - ms > 0}
        fewest, n, worst = self.sampler.fewest(t0, t1, "case 2 (leader killed)")
        lost = {s: self.log_count(s, "ETCD UNREACHABLE") for s in SITES}
        print(f"  etcd-fleet: case 2 killed leader {leader} at +{t_kill * 1000:.0f}ms, {new_leader} elected by "
              f"+{t_elected * 1000:.0f}ms; changes {self.sampler.changes(t0, t1)}; sessions lost per site "
              f"(log lines) {lost}, reconnected at +ms {reconnected}; {held}'s reason: {reason}", flush=True)
        self.cluster.start(leader)
        self.cluster.wait_healthy()
        self.heal(*SITES)
        self.wait_all_healthy("all healthy after case 2")
        return (f"2 leader {leader} SIGKILLed +{t_kill * 1000:.0f} ms into the failures, {new_leader} leader by "
                f"+{t_elected * 1000:.0f} ms, sites reconnected {sorted(reconnected.values())} ms: {held} held, "
                f"exactly {MIN_SITES} path from {settled * 1000:.0f} ms, fewest {fewest} in {n} samples")

    def case_partition(self):
        self.wait_all_healthy("all healthy before case 3")
        self.mark_logs()
        t0 = time.monotonic()
        sh(["ip", "link", "set", "pc", "down"], ns=self.swns)
        try:
            return self._partitioned(t0)
        finally:
            sh(["ip", "link", "set", "pc", "up"], ns=self.swns)

    def _partitioned(self, t0):
        try:
            poll("case 3: c's /status to say fleet.store.connected false",
                 lambda: self.store("c").get("connected") is False, 15, 0.1)
        except Fail as e:
            raise Fail(f"{e}: {self.describe()}") from None
        t_alarm = time.monotonic() - t0
        # a and b stop counting c once its lease has expired.
        poll("case 3: a and b no longer counting c (its lease expired)",
             lambda: all("c" not in (self.svc(s).get("guard") or {}).get("sites_announcing", []) for s in "ab"),
             15, 0.1)
        t_expired = time.monotonic() - t0
        t_fail = time.monotonic()
        self.fail("c", "a")
        try:
            poll("case 3: a withdrawn, c held, b up",
                 lambda: self.states() == {"a": "down", "b": "up", "c": "held"}, CONVERGE, 0.2)
        except Fail as e:
            raise Fail(f"{e}: {self.describe()}") from None
        self.sampler.steady({"b", "c"})
        doc = self.status("c")
        c_reason = (self.svc("c", doc).get("guard") or {}).get("reason", "")
        if "ETCD UNREACHABLE" not in c_reason or self.store("c", doc).get("connected") is not False:
            raise Fail(f"case 3: c holds without the etcd alarm: reason {c_reason!r}, store {self.store('c', doc)}")
        if self.log_count("a", "withdrawal committed in etcd") != 1:
            raise Fail(f"case 3: a's log does not show one committed withdrawal since the cut: "
                       f"{self.log_count('a', 'withdrawal committed in etcd')}")
        # The port comes back: c rejoins, and withdraws now that b counts in etcd.
        t_heal = time.monotonic()
        sh(["ip", "link", "set", "pc", "up"], ns=self.swns)
        try:
            poll("case 3: c connected again", lambda: self.store("c").get("connected") is True, CONVERGE, 0.1)
            t_rejoin = time.monotonic() - t_heal
            poll("case 3: c withdrawn after rejoining",
                 lambda: self.states() == {"a": "down", "b": "up", "c": "down"}, CONVERGE, 0.2)
        except Fail as e:
            raise Fail(f"{e}: {self.describe()}") from None
        self.sampler.steady({"b"})
        t_end = time.monotonic()
        fewest, n, worst = self.sampler.fewest(t0, t_end, "case 3 (c cut from etcd)")
        print(f"  etcd-fleet: case 3 c's alarm after {t_alarm * 1000:.0f} ms, c's lease gone for a and b after "
              f"{t_expired * 1000:.0f} ms; changes from the failures {self.sampler.changes(t_fail, t_end)}; "
              f"c's reason while cut off: {c_reason}", flush=True)
        self.heal("a", "c")
        self.wait_all_healthy("all healthy after case 3")
        return (f"3 c cut from etcd: alarm after {t_alarm * 1000:.0f} ms, c held (ETCD UNREACHABLE) while a "
                f"withdrew, rejoined {t_rejoin * 1000:.0f} ms after the port came back and withdrew, b alone; "
                f"fewest {fewest} in {n} samples")

    def case_member_cut(self):
        """A member up but cut from the quorum (its raft link down, its client port
        reachable), then every site fails at once: a site on that member must not decide on
        its view, which no longer moves (no linearizable answer, no leader: its requests
        fail or time out), and either moves to another member or holds with the alarm."""
        self.wait_all_healthy("all healthy before case 5")
        # A follower with a site on it if there is one (it keeps answering reads from a view
        # that no longer moves, and loses its leader only after an election timeout), else
        # the leader (the others elect a new one meanwhile).
        on = {s: self.current_endpoint(s) for s in SITES}
        leader = self.cluster.leader()
        used = [m for m in self.cluster.members if m.client_url in on.values()]
        if not used:
            raise Fail(f"case 5: the sites' logs name no member they are connected to: {on}")
        member = next((m for m in used if m is not leader), used[0])
        role = "leader" if member is leader else "follower"
        attached = [s for s in SITES if on[s] == member.client_url]
        self.mark_logs()
        t0 = time.monotonic()
        sh(["ip", "link", "set", f"q{member.name}", "down"], ns=self.swns)
        try:
            return self._member_cut(t0, member, attached, role)
        finally:
            sh(["ip", "link", "set", f"q{member.name}", "up"], ns=self.swns)

    def _member_cut(self, t0, member, attached, role):
        # The failures right after the cut: the attached sites' first decisions are taken
        # while their member may still believe it has a leader.
        self.fail(*SITES)
        held, reason, settled = self.settle_all_failed(t0, "case 5 (member cut from the quorum)")
        t1 = time.monotonic()
        fewest, n, worst = self.sampler.fewest(t0, t1, "case 5 (member cut from the quorum)")
        report = {}
        for s in attached:
            events = self.session_events(s)
            moved = [e for k, e in events if k == "connected" and e != member.client_url]
            # Every withdrawal of an attached site committed in a session with another
            # member: none on the cut member's view.
            session = member.client_url
            for kind, endpoint in events:
                if kind == "connected":
                    session = endpoint
                elif kind == "committed" and session == member.client_url:
                    raise Fail(f"case 5: {s} committed a withdrawal through the member cut from the quorum "
                               f"({member.name}): {events}")
            doc = self.status(s)
            state, why = self.svc(s, doc).get("state"), (self.svc(s, doc).get("guard") or {}).get("reason", "")
            if not moved and not (state == "held" and "ETCD UNREACHABLE" in why):
                raise Fail(f"case 5: {s} (on {member.name}) neither moved to another member nor holds with "
                           f"the etcd alarm: {state} {why!r}; log {events}")
            report[s] = f"moved to {moved[0]}" if moved else "held with ETCD UNREACHABLE"
        print(f"  etcd-fleet: case 5 {member.name} ({role}) cut from the quorum, sites on it {attached}: {report}; "
              f"changes {self.sampler.changes(t0, t1)}; {held}'s reason: {reason}", flush=True)
        sh(["ip", "link", "set", f"q{member.name}", "up"], ns=self.swns)
        self.cluster.wait_healthy()
        self.heal(*SITES)
        self.wait_all_healthy("all healthy after case 5")
        return (f"5 {member.name} ({role}) cut from the quorum (client port up), sites on it {report}: {held} held, "
                f"exactly {MIN_SITES} path from {settled * 1000:.0f} ms, fewest {fewest} in {n} samples")

    def push(self, with_service):
        """Writes every site's config (with or without the service) and SIGHUPs the three
        daemons back to back; returns {site: generation before}."""
        before = {s: self.status(s).get("daemon", {}).get("config_generation") for s in SITES}
        for s in SITES:
            self.configs[s].write_text(self.site_config(s, with_service))
        pids = {s: procs.pid_of(self.sns[s], "anyguard") for s in SITES}
        if not all(pids.values()):
            raise Fail(f"anyguard not running: {pids}")
        for s in SITES:
            os.kill(pids[s], signal.SIGHUP)
        return before

    def case_config_push(self):
        self.wait_all_healthy("all healthy before case 4")
        t0 = time.monotonic()
        before = self.push(with_service=False)
        found = {}

        def ok():
            held, refused, other = {}, {}, []
            for s in SITES:
                doc = self.status(s)
                d = doc.get("daemon", {})
                last = d.get("last_reload") or {}
                if d.get("config_generation") == before[s] + 1 and last.get("ok"):
                    pend = [r for r in doc.get("pending_removals", []) if r.get("service") == SERVICE]
                    if pend and pend[0].get("decision") == "held":
                        held[s] = pend[0].get("reason", "")
                    elif not pend:
                        other.append(s)
                    else:
                        return False
                elif d.get("config_generation") == before[s] and last.get("ok") is False:
                    refused[s] = "; ".join(last.get("errors", []))
                else:
                    return False
            if len(held) + len(refused) == MIN_SITES:
                found.update(held=held, refused=refused, gone=other)
                return True
            return False
        try:
            poll("case 4: every reload answered, exactly 1 site keeping web", ok, CONVERGE, 0.2)
        except Fail as e:
            raise Fail(f"{e}: {self.describe()}") from None
        keep = sorted([*found["held"], *found["refused"]])
        self.sampler.steady(set(keep))
        t1 = time.monotonic()
        fewest, n, worst = self.sampler.fewest(t0, t1, "case 4 (config without web)")
        for s, reason in found["held"].items():
            if not reason.startswith("removed from the config; withdrawing web would leave"):
                raise Fail(f"case 4: {s}'s held removal does not say why: {reason!r}")
        why = "; ".join([f"{s} holds the removal: {r}" for s, r in found["held"].items()]
                        + [f"{s} refused the reload: {r}" for s, r in found["refused"].items()])
        print(f"  etcd-fleet: case 4 changes {self.sampler.changes(t0, t1)}; {why}", flush=True)
        self.push(with_service=True)
        self.wait_all_healthy("all healthy after case 4")
        return (f"4 config without web pushed everywhere: {len(found['gone'])} withdrew, "
                f"{'held at ' + ','.join(found['held']) if found['held'] else ''}"
                f"{' refused at ' + ','.join(found['refused']) if found['refused'] else ''}, "
                f"fewest {fewest} in {n} samples")


def run(ctx):
    lab = EtcdLab()
    try:
        lab.up()
        lab.sampler = Sampler(lab.router)
        lab.sampler.start()
        start = time.monotonic()
        results = [lab.case_all_fail(), lab.case_leader_killed(), lab.case_partition(), lab.case_config_push(),
                   lab.case_member_cut()]
        fewest, n, worst = lab.sampler.fewest(start, time.monotonic(), "whole run")
        rows_file = run_dir() / "etcd-fleet-samples.jsonl"
        rows_file.write_text("".join(json.dumps({"t": round(t - start, 4), "sites": sorted(v)}) + "\n"
                                     for t, v in lab.sampler.window(start)))
        return "; ".join(results) + f"; whole run fewest {fewest} of {n} samples, worst gap {worst * 1000:.0f} ms"
    finally:
        lab.down()
