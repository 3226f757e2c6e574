"""Health drives the router's RIB: one router and one anyguard in a namespace pair (as in
the interop scenario), anyguard probing a local HTTP health target whose failure is
instantaneous and timestamped (nodes/health-target.py), the router installing what it
learns into its namespace's kernel FIB, and `ip -ts monitor route` in the router's
namespace timestamping every FIB change.

Used by the `health` scenario and by bench/withdraw-latency.

Timing method (docs/lab-benchmarks.md has the whole story):
- T0, the failure: the health target's own clock reading in its SIGUSR1 handler, the
  instant from which it answers 503 (CLOCK_REALTIME, microseconds).
- T1, the prefix leaving the router: the RTM_DELROUTE of the prefix in the router's
  namespace as timestamped by `ip -ts monitor route` when it reads the netlink message
  (gettimeofday, microseconds; same clock as T0). The router removes a route from its
  FIB only after it left its RIB (BIRD's kernel protocol and FRR's zebra are fed by the
  RIB), so T1 is an upper bound of the RIB time by the router's RIB-to-FIB step; the CLI
  is checked afterwards to agree that the route is gone from the RIB.
- In between: the probes answered 503 (the target logs every request), anyguard's
  decision (its log line) and the withdrawal's arrival on the router's interface (a
  passive packet tap, nodes/bgp-wiretap.py), which split T1 - T0 into the health part
  (probe scheduling, inherent), anyguard's part and the router's part."""

import os
import random
import re
import signal
import time
from datetime import datetime, timezone
from pathlib import Path

from . import anyguard, netns, procs
from .routers import ADAPTERS
from .util import LAB_DIR, NS_PREFIX, Fail, poll, read_jsonl, run_dir, sh, shielded

ROUTER_ASN, SPEAKER_ASN = 65001, 65101
PREFIX = {4: "203.0.113.0/24", 6: "2001:db8:100::/48"}
TARGET = ("127.0.0.1", 8080)
STATUS = "127.0.0.1:9180"
ESTABLISH_TIMEOUT = 45.0
# The wiretap's own bound; a lab run is far shorter.
WIRETAP_SECONDS = 3600
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _addr(fam: int, host: int) -> str:
    return f"198.18.201.{host}" if fam == 4 else f"2001:db8:201::{host}"


def _peers(bfd=None):
    return [{"name": f"v{fam}", "family": fam, "router": _addr(fam, 1), "speaker": _addr(fam, 2),
             "router_id": "198.18.201.1", "router_asn": ROUTER_ASN, "speaker_asn": SPEAKER_ASN,
             "md5": None, "gtsm": False, "router_connects": False, "bfd": bfd} for fam in (4, 6)]


# What each router needs on top of its interop config to install BGP routes in the kernel
# (FRR's zebra does so by default).
KERNEL_EXPORT = {
    "bird": "\nprotocol kernel kernel4 { ipv4 { import none; export all; }; }\n"
            "protocol kernel kernel6 { ipv6 { import none; export all; }; }\n",
    "frr": "",
}


def _ts(text: str) -> float:
    # `ip -ts` prints local time without a zone; the monitor runs with TZ=UTC.
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc).timestamp()


def fib_event(line: str):
    """(time, "add"|"del", prefix) of one `ip -ts monitor route` line of the main table,
    None for any other line."""
    if not line.startswith("[") or "]" not in line:
        return None
    stamp, _, rest = line[1:].partition("]")
    words = rest.split()
    if not words or "table" in words:
        return None
    kind = "del" if words[0] == "Deleted" else "add"
    prefix = words[1] if kind == "del" and len(words) > 1 else words[0]
    try:
        return (_ts(stamp), kind, prefix)
    except ValueError:
        return None


def start_target(ns: str, events: Path, logfile: Path) -> None:
    """nodes/health-target.py on TARGET in `ns` (pid name `target`), logging its switches
    and requests to `events`; returns once it answers."""
    procs.start(ns, "target", ["/usr/bin/python3", LAB_DIR / "nodes" / "health-target.py",
                               TARGET[0], str(TARGET[1]), events], logfile)
    url = f"http://{TARGET[0]}:{TARGET[1]}/"
    poll(f"the health target in {ns} to answer",
         lambda: sh(["curl", "-s", "--max-time", "1", url], ns=ns, check=False).stdout.strip() == "ok", 10, 0.05)


class Pair:
    """One router (`kind`: bird or frr) and one anyguard, joined by one veth, with an IPv4
    and an IPv6 session; the service `web` announces both prefixes while its HTTP check
    passes. interval/fall/rise/fast_interval (None: the daemon's default) and hold_down are
    the check's and the service's settings. `bfd` ({"min_tx_ms", "min_rx_ms", "multiplier"},
    or None) runs BFD on both sessions, on both sides (labkit/routers.py renders the
    router's part)."""

    def __init__(self, kind: str, interval: str = "100ms", fall: int = 2, rise: int = 2,
                 hold_down: str = "0s", fast_interval=None, tag: str = "hl", bfd=None):
        if kind not in KERNEL_EXPORT:
            raise Fail(f"no kernel export recipe for {kind}")
        self.kind = kind
        self.adapter = ADAPTERS[kind]
        self.rns = f"{NS_PREFIX}{tag}-{kind[:6]}-r"
        self.sns = f"{NS_PREFIX}{tag}-{kind[:6]}-s"
        self.base = run_dir() / tag / kind
        self.settings = {"interval": interval, "fall": fall, "rise": rise, "hold_down": hold_down,
                         "fast_interval": fast_interval}
        self.bfd = bfd
        self.router = self.adapter(self.rns, self.base / "router")
        self.target_log = self.base / "target-events.jsonl"
        self.fib_log = self.base / "fib-monitor.log"
        self.wire_log = self.base / "bgp-wiretap.jsonl"
        self.anyguard_log = self.base / "anyguard" / "anyguard.log"
        self.started_at = None

    # -- lifecycle -------------------------------------------------------------------------

    def up(self):
        missing = self.adapter.missing()
        if missing:
            raise Fail(f"{self.kind}: missing {', '.join(missing)}")
        sh(["rm", "-rf", str(self.base)])
        self.base.mkdir(parents=True)
        for ns in (self.rns, self.sns):
            netns.add(ns)
        netns.veth(self.rns, "eth1", self.sns, "eth1")
        for fam, plen in ((4, 24), (6, 64)):
            for ns, host in ((self.rns, 1), (self.sns, 2)):
                sh(["ip", "addr", "add", f"{_addr(fam, host)}/{plen}", "dev", "eth1"]
                   + (["nodad"] if fam == 6 else []), ns=ns)
        # The FIB monitor first, so that it sees the routes arrive too.
        procs.start(self.rns, "fibmon", ["ip", "-ts", "monitor", "route"], self.fib_log, env={"TZ": "UTC"})
        procs.start(self.rns, "wiretap", ["/usr/bin/python3", LAB_DIR / "nodes" / "bgp-wiretap.py", "eth1",
                                          self.wire_log, str(WIRETAP_SECONDS)], self.base / "wiretap.log")
        self.router.dir.mkdir(parents=True, exist_ok=True)
        conf = self.base / f"{self.kind}.conf"
        conf.write_text(self.router.render_interop(_peers(self.bfd)) + KERNEL_EXPORT[self.kind])
        self.router.start(conf)
        self.start_target()
        # What the scenario's "appeared after" counts from.
        self.started_at = time.monotonic()
        anyguard.start(self.sns, self.anyguard_config(), self.base / "anyguard")
        anyguard.wait_status(self.sns, STATUS)

    def down(self):
        """Stops what up() started (by pid) and deletes the namespaces. Bounded (every stop
        ends in SIGKILL), and shielded from SIGINT/SIGTERM: an interrupt that arrives
        while tearing down must not leave half a lab behind, so it is held and raised
        (KeyboardInterrupt) once the lab is down."""
        with shielded():
            procs.stop(self.sns, "anyguard", wait=10.0)
            procs.stop(self.sns, "target")
            self.router.stop()
            procs.stop(self.rns, "fibmon")
            procs.stop(self.rns, "wiretap")
            for ns in (self.sns, self.rns):
                netns.delete(ns)

    def anyguard_config(self) -> Path:
        s = self.settings
        lines = [f'router_id = "{_addr(4, 2)}"', f"local_asn = {SPEAKER_ASN}", "",
                 "[status]", f'listen = "{STATUS}"', ""]
        for p in _peers():
            lines += ["[[peer]]", f'name = "{p["name"]}"', f'address = "{p["router"]}"',
                      f'local_address = "{p["speaker"]}"', f"remote_asn = {ROUTER_ASN}",
                      'hold_time = "9s"', 'connect_retry = "1s"',
                      f"ipv4 = {'true' if p['family'] == 4 else 'false'}",
                      f"ipv6 = {'true' if p['family'] == 6 else 'false'}"]
            if self.bfd:
                b = self.bfd
                lines.append(f'bfd = {{ min_tx = "{b["min_tx_ms"]}ms", min_rx = "{b["min_rx_ms"]}ms", '
                             f'multiplier = {b["multiplier"]} }}')
            lines.append("")
        lines += ["[[service]]", 'name = "web"', f'prefixes = ["{PREFIX[4]}", "{PREFIX[6]}"]',
                  'drain_time = "1s"', f'hold_down = "{s["hold_down"]}"', "",
                  "[[service.check]]", 'type = "http"',
                  f'url = "http://{TARGET[0]}:{TARGET[1]}/healthz"',
                  f'interval = "{s["interval"]}"', f"rise = {s['rise']}", f"fall = {s['fall']}"]
        if s["fast_interval"]:
            lines.append(f'fast_interval = "{s["fast_interval"]}"')
        lines.append("")
        cfg = self.base / "anyguard.toml"
        cfg.write_text("\n".join(lines))
        return cfg

    # -- the health target -------------------------------------------------------------------

    def start_target(self):
        start_target(self.sns, self.target_log, self.base / "target.log")

    def stop_target(self) -> float:
        """Kills the target (SIGKILL: its port refuses connections from then on); returns
        the time just before the kill."""
        t = time.time()
        procs.stop(self.sns, "target", sig=signal.SIGKILL)
        return t

    def _signal_target(self, sig):
        pid = procs.pid_of(self.sns, "target")
        if not pid:
            raise Fail("the health target is not running")
        os.kill(pid, sig)

    def fail(self):
        self._signal_target(signal.SIGUSR1)

    def heal(self):
        self._signal_target(signal.SIGUSR2)

    def target_events(self):
        return read_jsonl(self.target_log)

    # -- what the router holds ----------------------------------------------------------------

    def fib_events(self):
        """[(time, "add"|"del", prefix)] from the monitor, main table only."""
        if not self.fib_log.exists():
            return []
        return [row for row in map(fib_event, self.fib_log.read_text().splitlines()) if row]

    def wire_events(self):
        """UPDATEs that reached the router from anyguard, as the wiretap logged them."""
        return [row for row in read_jsonl(self.wire_log) if row.get("src") in (_addr(4, 2), _addr(6, 2))]

    def decisions(self, to: str = "down"):
        """Times at which anyguard logged the service `web` changing to `to`."""
        found = []
        if not self.anyguard_log.exists():
            return found
        needle = f'service state changed service=web from="up" to="{to}"'
        for line in self.anyguard_log.read_text(errors="replace").splitlines():
            line = ANSI.sub("", line)
            if needle in line:
                stamp = line.split()[0].rstrip("Z")
                try:
                    found.append(_ts(stamp[:26]))
                except ValueError:
                    continue
        return found

    def in_fib(self, fam: int) -> bool:
        p = sh(["ip", f"-{fam}", "route", "show", "exact", PREFIX[fam]], ns=self.rns, check=False)
        return bool(p.stdout.strip())

    def in_rib(self, fam: int) -> bool:
        return self.router.has_route(PREFIX[fam], _addr(fam, 2))

    def service_state(self) -> str:
        return anyguard.service(anyguard.status(self.sns, STATUS), "web").get("state", "unknown")

    def wait_present(self, timeout: float = ESTABLISH_TIMEOUT) -> float:
        """Waits (bounded) until both prefixes are in the router's RIB (its CLI) and FIB;
        returns the time that took."""
        start = time.monotonic()
        last = {}

        def present():
            for fam in (4, 6):
                rib, fib = self.in_rib(fam), self.in_fib(fam)
                last[fam] = f"IPv{fam}: RIB {'yes' if rib else 'no'}, FIB {'yes' if fib else 'no'}"
                if not (rib and fib):
                    return False
            return True
        try:
            poll(f"{PREFIX[4]} and {PREFIX[6]} in {self.kind}'s RIB and FIB", present, timeout, 0.05)
        except Fail as e:
            raise Fail(f"{e} ({'; '.join(last.values())}; anyguard says web is {self.service_state()}; "
                       f"logs under {self.base})") from None
        return time.monotonic() - start

    def wait_absent(self, timeout: float = 10.0) -> float:
        """Waits (bounded) until neither prefix is in the router's RIB (its CLI) nor FIB."""
        start = time.monotonic()
        poll(f"{PREFIX[4]} and {PREFIX[6]} to leave {self.kind}'s RIB and FIB",
             lambda: not any(self.in_rib(f) or self.in_fib(f) for f in (4, 6)), timeout, 0.05)
        return time.monotonic() - start

    # -- one measured withdrawal ------------------------------------------------------------

    def measure_withdrawal(self, how: str = "503", settle=(0.3, 0.8), timeout: float = 5.0, rng=random):
        """The route is present; after a random settle time (so that the failure falls at a
        random phase of the probe schedule) the target fails: `how` = "503" switches it to
        answering 503 (T0 is its own timestamp of the switch), "kill" SIGKILLs it (T0 is
        taken just before the kill; connections are refused from then on). Returns times in
        seconds after T0: per family the FIB removal and the withdrawal's arrival on the
        router's interface, anyguard's logged decision and, for "503", the first and the
        `fall`-th probe answered 503. The target stays failed: the caller heals it."""
        time.sleep(rng.uniform(*settle))
        n_events = len(self.target_events())
        fib_before = len(self.fib_events())
        if how == "503":
            t_signal = time.time()
            self.fail()
        elif how == "kill":
            t_signal = self.stop_target()
        else:
            raise ValueError(how)
        want = {PREFIX[4], PREFIX[6]}

        def removed():
            gone = {}
            for t, kind, prefix in self.fib_events()[fib_before:]:
                if kind == "del" and prefix in want and prefix not in gone:
                    gone[prefix] = t
            return gone if len(gone) == len(want) else None
        gone = poll(f"{self.kind} to remove both prefixes from its FIB", removed, timeout, 0.01)
        result = {}
        t0 = t_signal
        if how == "503":
            events = self.target_events()[n_events:]
            switch = [e["t"] for e in events if e.get("event") == "switch" and e.get("healthy") is False]
            if not switch:
                raise Fail("the health target logged no switch to failing")
            t0 = switch[0]
            fails = [e["t"] for e in events if e.get("event") == "request" and e.get("status") == 503]
            fall = self.settings["fall"]
            if len(fails) < fall:
                raise Fail(f"only {len(fails)} probe(s) answered 503 before the withdrawal (fall = {fall})")
            result.update(first_503=fails[0] - t0, fall_503=fails[fall - 1] - t0, signal_lag=t0 - t_signal)
        # The CLI must agree: the RIB no longer holds the prefixes.
        poll(f"{self.kind}'s CLI to show both prefixes gone",
             lambda: not self.in_rib(4) and not self.in_rib(6), 2.0, 0.02)
        decided = [t for t in self.decisions("down") if t >= t0 - 0.001]
        wire = {}
        for row in self.wire_events():
            for fam in row.get("withdraw", []):
                if row["t"] >= t0 and fam not in wire:
                    wire[fam] = row["t"] - t0
        result.update(t0=t0, fib={4: gone[PREFIX[4]] - t0, 6: gone[PREFIX[6]] - t0},
                      decided=decided[0] - t0 if decided else None,
                      wire={4: wire.get("ipv4"), 6: wire.get("ipv6")})
        return result

    def heal_and_wait(self, timeout: float = 20.0) -> float:
        self.heal()
        return self.wait_present(timeout)

