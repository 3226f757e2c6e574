"""One upstream router and one announcing speaker in a namespace pair, for the comparison
benchmarks (lab/bench/failover, probe-cost, idle): the same topology, addresses and check
settings whatever announces the prefix.

Speakers (`SPEAKERS`):
- `anyguard`: the daemon (release build, LAB_ANYGUARD) with one HTTP check.
- `exabgp`: Debian's ExaBGP running Debian's `exabgp-healthcheck --withdraw-on-down` as its
  process, the check a `curl -sf` (how its documentation sets it up).
- `ahc`: anycast-healthchecker (PyPI, in a venv: AHC_BIN) driving a BIRD 2 in the speaker's
  namespace: it rewrites BIRD's prefix list file and runs `birdc configure`; BIRD exports
  the prefix to the router while it is in that list (the set-up its documentation shows).

Router (`bird` or `frr`) passive, speaker ASN 65101, router ASN 65001, one IPv4 session on
198.18.201.0/24 over one veth, prefix 203.0.113.0/24. The router installs what it learns
into its namespace's FIB and `ip -ts monitor route` there timestamps every change (the same
method as labkit/healthpair.py: T1 is the FIB, an upper bound of the RIB time). The health
target is nodes/health-target.py on 127.0.0.1:8080 in the speaker's namespace; its log of
switches and requests gives T0 and the probe that decided."""

import json
import os
import random
import signal
import time
from pathlib import Path

from . import anyguard, benchkit, netns, procs
from .healthpair import KERNEL_EXPORT, fib_event
from .routers import ADAPTERS, Bird, ExaBgp
from .util import LAB_DIR, NS_PREFIX, Fail, poll, run_dir, sh, shielded, which

ROUTER_ASN, SPEAKER_ASN = 65001, 65101
PREFIX = "203.0.113.0/24"
ROUTER, SPEAKER = "198.18.201.1", "198.18.201.2"
TARGET = ("127.0.0.1", 8080)
URL = f"http://{TARGET[0]}:{TARGET[1]}/healthz"
STATUS = "127.0.0.1:9180"
SPEAKERS = ("anyguard", "exabgp", "ahc")


def ahc_bin():
    return os.environ.get("AHC_BIN") or which("anycast-healthchecker")


def missing(router, speaker):
    m = list(ADAPTERS[router].missing())
    if speaker == "exabgp":
        m += [b for b in ("exabgp", "exabgp-healthcheck", "curl") if not which(b)]
    if speaker == "ahc":
        m += Bird.missing() + ([] if ahc_bin() else ["anycast-healthchecker (AHC_BIN)"])
    return m


class Tail:
    """Reads the lines appended to a file since the last call (a log another process is
    writing); a partial last line is kept for the next call."""

    def __init__(self, path: Path):
        self.path, self.offset, self.partial = path, 0, ""

    def lines(self):
        if not self.path.exists():
            return []
        with open(self.path) as f:
            f.seek(self.offset)
            data = f.read()
            self.offset = f.tell()
        data = self.partial + data
        parts = data.split("\n")
        self.partial = parts.pop()
        return parts


class Settings:
    """A check setting, the same for every speaker: interval (s), rise, fall, and the
    speaker's dampening (anyguard's hold_down; None = the daemon's default)."""

    def __init__(self, name, interval, rise, fall, timeout=None):
        self.name, self.interval, self.rise, self.fall = name, interval, rise, fall
        # anyguard's default is interval / 2.
        self.timeout = timeout if timeout is not None else interval / 2

    @property
    def curl_timeout(self):
        """The incumbents' curl gets at least 1 s: a curl process cannot start, connect and
        read within 5 ms on a loaded machine, and a timeout only matters for a target that
        hangs, which this one never does (it answers 200 or 503 at once).
        exabgp-healthcheck's own --timeout takes whole seconds."""
        return max(1.0, self.interval / 2)


class Pair:
    def __init__(self, router, speaker, settings, idx, hold_down="0s", tag="fo", services=1, target="health"):
        """`services` > 1: that many services, each one check against its own path of the
        target and its own prefix (203.0.113.16*i/28); `target` "count" serves
        nodes/count-target.py (counts probes, logs nothing per request) instead of the
        timestamping health target."""
        self.router_kind, self.speaker, self.s, self.hold_down = router, speaker, settings, hold_down
        self.services, self.target_kind = services, target
        self.prefixes = [PREFIX] if services == 1 else [f"203.0.113.{16 * i}/28" for i in range(services)]
        self.urls = [URL] if services == 1 else [f"http://{TARGET[0]}:{TARGET[1]}/s{i}" for i in range(services)]
        self.rns, self.sns = f"{NS_PREFIX}{tag}{idx}-r", f"{NS_PREFIX}{tag}{idx}-s"
        self.base = run_dir() / tag / f"{idx}-{router}-{speaker}"
        self.router = ADAPTERS[router](self.rns, self.base / "router")
        self.target_log = self.base / "target-events.jsonl"
        self.fib_log = self.base / "fib-monitor.log"
        self.wire_log = self.base / "bgp-wiretap.jsonl"
        self.target_tail, self.fib_tail = Tail(self.target_log), Tail(self.fib_log)
        self.wire_tail = Tail(self.wire_log)
        self.fib = []        # (t, "add"|"del") of PREFIX
        self.wire = []       # (t, "announce"|"withdraw") of IPv4 UPDATEs from the speaker
        self.requests = []   # (t, status)
        self.switches = []   # (t, healthy)
        self.label = speaker

    # -- lifecycle ---------------------------------------------------------------------------

    def up(self):
        m = missing(self.router_kind, self.speaker)
        if m:
            raise Fail(f"{self.router_kind}/{self.speaker}: missing {', '.join(m)}")
        sh(["rm", "-rf", str(self.base)])
        self.base.mkdir(parents=True)
        for ns in (self.rns, self.sns):
            netns.add(ns)
        netns.veth(self.rns, "eth1", self.sns, "eth1")
        sh(["ip", "addr", "add", f"{ROUTER}/24", "dev", "eth1"], ns=self.rns)
        sh(["ip", "addr", "add", f"{SPEAKER}/24", "dev", "eth1"], ns=self.sns)
        procs.start(self.rns, "fibmon", ["ip", "-ts", "monitor", "route"], self.fib_log, env={"TZ": "UTC"})
        procs.start(self.rns, "wiretap", ["/usr/bin/python3", LAB_DIR / "nodes" / "bgp-wiretap.py", "eth1",
                                          self.wire_log, "7200"], self.base / "wiretap.log")
        conf = self.base / f"{self.router_kind}.conf"
        peer = {"name": "sp", "family": 4, "router": ROUTER, "speaker": SPEAKER, "router_id": ROUTER,
                "router_asn": ROUTER_ASN, "speaker_asn": SPEAKER_ASN, "md5": None, "gtsm": False,
                "router_connects": False, "bfd": None}
        conf.write_text(self.router.render_interop([peer]) + KERNEL_EXPORT[self.router_kind])
        self.router.start(conf)
        script = "health-target.py" if self.target_kind == "health" else "count-target.py"
        procs.start(self.sns, "target", ["/usr/bin/python3", LAB_DIR / "nodes" / script,
                                         TARGET[0], str(TARGET[1]), self.target_log], self.base / "target.log")
        poll("the health target", lambda: sh(["curl", "-s", "--max-time", "1", f"http://{TARGET[0]}:{TARGET[1]}/"],
                                             ns=self.sns, check=False).stdout.strip() == "ok", 10, 0.05)
        getattr(self, f"_start_{self.speaker}")()

    def down(self):
        with shielded():
            self.resume()
            # Every process of the speaker's tree, by pid: a healthcheck child must not
            # outlive an ExaBGP that was SIGKILLed.
            members = [q for p in self.speaker_pids() for q in benchkit.tree(p)]
            for name in ("anyguard", "ahc", "exabgp", "bird"):
                procs.stop(self.sns, name, wait=5.0)
            for q in members:
                try:
                    os.kill(q, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            procs.stop(self.sns, "target")
            self.router.stop()
            procs.stop(self.rns, "fibmon")
            procs.stop(self.rns, "wiretap")
            for ns in (self.sns, self.rns):
                netns.delete(ns)

    # -- the speakers --------------------------------------------------------------------------

    def _start_anyguard(self):
        s = self.s
        lines = [f'router_id = "{SPEAKER}"', f"local_asn = {SPEAKER_ASN}", "",
                 "[status]", f'listen = "{STATUS}"', "",
                 "[[peer]]", 'name = "up"', f'address = "{ROUTER}"', f'local_address = "{SPEAKER}"',
                 f"remote_asn = {ROUTER_ASN}", 'hold_time = "9s"', 'connect_retry = "1s"', "",
                 ]
        for i, (prefix, url) in enumerate(zip(self.prefixes, self.urls)):
            lines += ["[[service]]", f'name = "{"web" if i == 0 else f"web{i}"}"', f'prefixes = ["{prefix}"]',
                      'drain_time = "1s"']
            if self.hold_down is not None:
                lines.append(f'hold_down = "{self.hold_down}"')
            lines += ["", "[[service.check]]", 'type = "http"', f'url = "{url}"',
                      f'interval = "{round(s.interval * 1000)}ms"', f'fast_interval = "{round(s.interval * 1000)}ms"',
                      f'timeout = "{round(s.timeout * 1000)}ms"', f"rise = {s.rise}", f"fall = {s.fall}", ""]
        cfg = self.base / "anyguard.toml"
        cfg.write_text("\n".join(lines))
        anyguard.start(self.sns, cfg, self.base / "anyguard")
        anyguard.wait_status(self.sns, STATUS)

    def _curl(self, url=URL):
        # curl's --max-time takes fractions; -f makes a 503 a failure.
        return f"curl -sf -o /dev/null --max-time {self.s.curl_timeout:g} {url}"

    def _start_exabgp(self):
        s = self.s
        lines = []
        for i, (prefix, url) in enumerate(zip(self.prefixes, self.urls)):
            hc = (f"{which('exabgp-healthcheck')} --no-syslog --withdraw-on-down --no-ip-setup "
                  f"--ip {prefix} --next-hop {SPEAKER} --interval {s.interval:g} --fast-interval {s.interval:g} "
                  f"--rise {s.rise} --fall {s.fall} --timeout {round(s.curl_timeout + 1)} "
                  f'--cmd "{self._curl(url)}"')
            lines += [f"process hc{i} {{", f"  run {hc};", "  encoder text;", "}", ""]
        names = " ".join(f"hc{i}" for i in range(len(self.prefixes)))
        conf = self.base / "exabgp.conf"
        conf.write_text("\n".join(lines + [
            f"neighbor {ROUTER} {{", f"  router-id {SPEAKER};", f"  local-address {SPEAKER};",
            f"  local-as {SPEAKER_ASN};", f"  peer-as {ROUTER_ASN};", "  hold-time 9;",
            "  family { ipv4 unicast; }", f"  api {{ processes [ {names} ]; }}", "}", ""]))
        ExaBgp(self.sns, self.base / "speaker").start(conf)

    def _start_ahc(self):
        s = self.s
        d = self.base / "ahc"
        d.mkdir(parents=True)
        prefixes = d / "anycast-prefixes.conf"
        # anycast-healthchecker keeps a dummy prefix in the list so that it is never empty.
        prefixes.write_text("define ACAST_PS_ADVERTISE =\n    [\n        198.51.100.255/32\n    ];\n")
        bird = Bird(self.sns, self.base / "speaker")
        conf = self.base / "speaker-bird.conf"
        conf.write_text("\n".join([
            f"router id {SPEAKER};", f'include "{prefixes}";', "protocol device { }",
            "protocol static anycast { ipv4; " + " ".join(f"route {p} blackhole;" for p in self.prefixes) + " }",
            "protocol bgp up {", f"  local {SPEAKER} as {SPEAKER_ASN};", f"  neighbor {ROUTER} as {ROUTER_ASN};",
            "  hold time 9;", "  keepalive time 3;",
            "  ipv4 { import none; export where net ~ ACAST_PS_ADVERTISE; next hop self; };", "}", ""]))
        bird.start(conf)
        (d / "ahc.conf").write_text("\n".join([
            "[daemon]", "ipv4 = true", "ipv6 = false", f"bird_conf = {prefixes}",
            "bird_variable = ACAST_PS_ADVERTISE",
            f"bird_reconfigure_cmd = {which('birdc')} -s {bird.sock} configure",
            "dummy_ip_prefix = 198.51.100.255/32", "dummy_ip6_prefix = 2001:db8:ffff::1/128",
            f"pidfile = {d / 'ahc.pid'}", "loglevel = info", "purge_ip_prefixes = true", ""]))
        svc = d / "checks"
        svc.mkdir()
        for i, (prefix, url) in enumerate(zip(self.prefixes, self.urls)):
            (svc / f"web{i}.conf").write_text("\n".join([
                f"[web{i}]", f"check_cmd = {self._curl(url)}", f"check_interval = {s.interval:g}",
                f"check_timeout = {s.curl_timeout + 0.5:g}", f"check_rise = {s.rise}", f"check_fail = {s.fall}",
                "check_disabled = false", "on_disabled = withdraw", f"ip_prefix = {prefix}",
                "ip_check_disabled = true", ""]))
        procs.start(self.sns, "ahc", [ahc_bin(), "-f", d / "ahc.conf", "-d", svc], self.base / "ahc.log")
        poll("anycast-healthchecker running", lambda: procs.pid_of(self.sns, "ahc"), 5, 0.2)

    # -- processes ------------------------------------------------------------------------------

    def speaker_pids(self):
        """The speaker's processes whose CPU counts (the health target's does not)."""
        names = {"anyguard": ["anyguard"], "exabgp": ["exabgp"], "ahc": ["ahc", "bird"]}[self.speaker]
        return [p for p in (procs.pid_of(self.sns, n) for n in names) if p]

    def speaker_cpu(self):
        return sum(benchkit.tree_cpu(p) for p in self.speaker_pids())

    def probes(self):
        """Requests the counting target answered so far (0 when it cannot say)."""
        body = sh(["curl", "-s", "--max-time", "2", f"http://{TARGET[0]}:{TARGET[1]}/count"], ns=self.sns,
                  check=False).stdout
        try:
            return int(json.loads(body)["requests"])
        except (ValueError, KeyError, TypeError):
            return 0

    def target_cpu(self):
        pid = procs.pid_of(self.sns, "target")
        return benchkit.cpu_seconds(pid) if pid else 0.0

    def _checker_pids(self):
        """What pause() stops: the incumbents' check loops (ExaBGP's healthcheck processes,
        anycast-healthchecker); anyguard probes in its BGP process, which cannot pause."""
        if self.speaker == "exabgp":
            pid = procs.pid_of(self.sns, "exabgp")
            return benchkit.children(pid) if pid else []
        if self.speaker == "ahc":
            pid = procs.pid_of(self.sns, "ahc")
            return [pid] if pid else []
        return []

    def pause(self):
        for p in self._checker_pids():
            os.kill(p, signal.SIGSTOP)

    def resume(self):
        for p in self._checker_pids():
            try:
                os.kill(p, signal.SIGCONT)
            except ProcessLookupError:
                pass

    # -- the logs ---------------------------------------------------------------------------------

    def _read(self):
        for row in map(fib_event, self.fib_tail.lines()):
            if row and row[2] == self.prefixes[0]:
                self.fib.append(row[:2])
        for line in self.wire_tail.lines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if e.get("src") != SPEAKER:
                continue
            if "ipv4" in e.get("withdraw", []):
                self.wire.append((e["t"], "withdraw"))
            if "ipv4" in e.get("announce", []):
                self.wire.append((e["t"], "announce"))
        for line in self.target_tail.lines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if e.get("event") == "request":
                self.requests.append((e["t"], e.get("status")))
            elif e.get("event") == "switch":
                self.switches.append((e["t"], e.get("healthy")))

    def in_rib(self):
        return self.router.has_route(self.prefixes[0], SPEAKER)

    def wait_present(self, timeout=60.0):
        def present():
            self._read()
            return self.fib and self.fib[-1][1] == "add" and self.in_rib()
        poll(f"{self.prefixes[0]} in {self.router_kind}'s RIB and FIB from {self.speaker}", present, timeout, 0.1)

    def _signal_target(self, sig):
        pid = procs.pid_of(self.sns, "target")
        if not pid:
            raise Fail("the health target is not running")
        os.kill(pid, sig)

    def _wait_fib(self, kind, after, timeout):
        def seen():
            self._read()
            return next((t for t, k in self.fib if k == kind and t >= after), None)
        return poll(f"{self.router_kind} to {'remove' if kind == 'del' else 'install'} {PREFIX} "
                    f"({self.speaker})", seen, timeout, 0.005)

    def _switch_after(self, healthy, after):
        self._read()
        return next((t for t, h in self.switches if h is healthy and t >= after), None)

    def _deciding(self, t0, status_ok, n):
        """The n-th probe answered with the new status after t0: when the speaker had the
        evidence its rise/fall asks for."""
        got = [t for t, st in self.requests if t >= t0 and (st == 200) == status_ok]
        return got[n - 1] if len(got) >= n else None

    def cycle(self, rng, recover_timeout=30.0):
        """One failure and one recovery. Returns a dict of seconds: down (T0 → FIB removal),
        down_detect (T0 → the fall-th failed probe), down_wire (T0 → the withdrawal on the
        router's interface, from a passive tap: nodes/bgp-wiretap.py), and the same for the
        recovery after T0' (up, up_detect, up_wire: the announcement)."""
        time.sleep(rng.uniform(0.2, 0.2 + self.s.interval))
        self.wait_present(10.0)
        t_sig = time.time()
        self._signal_target(signal.SIGUSR1)
        t_del = self._wait_fib("del", t_sig - 0.001, 10.0 + 4 * self.s.interval * self.s.fall)
        t0 = poll("the target's switch to failing", lambda: self._switch_after(False, t_sig - 0.01), 2, 0.01)
        det = self._deciding(t0, False, self.s.fall)
        poll(f"{self.router_kind}'s CLI without the route", lambda: not self.in_rib(), 3.0, 0.02)
        time.sleep(rng.uniform(0.2, 0.2 + self.s.interval))
        t_sig2 = time.time()
        self._signal_target(signal.SIGUSR2)
        t_add = self._wait_fib("add", t_sig2 - 0.001, recover_timeout)
        t1 = poll("the target's switch to healthy", lambda: self._switch_after(True, t_sig2 - 0.01), 2, 0.01)
        det_up = self._deciding(t1, True, self.s.rise)
        poll(f"{self.router_kind}'s CLI with the route", self.in_rib, 5.0, 0.02)
        self._read()
        w_del = next((t for t, k in self.wire if k == "withdraw" and t >= t0), None)
        w_add = next((t for t, k in self.wire if k == "announce" and t >= t1), None)
        return {"down": t_del - t0, "down_detect": None if det is None else det - t0,
                "down_wire": None if w_del is None else w_del - t0,
                "up": t_add - t1, "up_detect": None if det_up is None else det_up - t1,
                "up_wire": None if w_add is None else w_add - t1, "t0": t0}


def rng(seed=None):
    return random.Random(seed)
