"""One adapter per routing daemon: how to start it inside a namespace with its control
socket, pid and log under the node's run directory, how to read a session's state and the
routes it learned through the daemon's own CLI, and how to render an interop config.

Peers in `render_interop` are dicts: name, family (4|6), router (our side's address),
speaker (anyguard's address), router_asn, speaker_asn, md5 (key or None), gtsm (bool), and
optionally bfd ({"min_tx_ms", "min_rx_ms", "multiplier"}: BFD with the speaker; BIRD and
FRR only), timers ((keepalive, hold) in seconds, default (3, 9)) and fast_connect (BIRD and FRR
retry their outgoing connection every second or two: the collision rows). A peer whose
speaker_asn is the router's own ASN is an iBGP neighbour."""

import re

import json
import os
import shutil
from pathlib import Path

from .util import LAB_DIR, out, poll, which
from . import procs


class Router:
    kind = ""
    binaries: tuple = ()
    md5 = True
    gtsm = True

    def __init__(self, ns: str, node_dir: Path):
        self.ns, self.dir = ns, node_dir

    @classmethod
    def missing(cls):
        return [b for b in cls.binaries if not which(b)]

    def stop(self):
        for name in reversed(self.procs()):
            procs.stop(self.ns, name)

    def procs(self):
        return [self.kind]

    def running(self) -> bool:
        return all(procs.pid_of(self.ns, p) for p in self.procs())

    def local_pref(self, prefix: str, neighbor: str):
        """LOCAL_PREF of the route to `prefix` learned from `neighbor`, as the router's CLI
        shows it (None: no such route)."""
        raise NotImplementedError

    def session_counters(self, neighbor: str):
        """What the router shows that changes when the session flaps (compared before and
        after a wait by the collision rows)."""
        raise NotImplementedError


def _timers(p):
    return p.get("timers", (3, 9))


# FRR's daemons live here; /usr/sbin/bgpd is OpenBGPD's.
FRR_LIBEXEC = "/usr/lib/frr"


class Frr(Router):
    kind = "frr"
    binaries = ("vtysh",)

    @classmethod
    def missing(cls):
        return super().missing() + [d for d in ("zebra", "bgpd") if not os.access(f"{FRR_LIBEXEC}/{d}", os.X_OK)]

    with_bfd = False

    def procs(self):
        return ["zebra", "bfdd", "bgpd"] if self.with_bfd else ["zebra", "bgpd"]

    def start(self, conf: Path):
        # FRR drops privileges to `frr`: its pathspace (-N) socket dir and files must be its.
        sock_dir = Path("/var/run/frr") / self.ns
        sock_dir.mkdir(parents=True, exist_ok=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        dst = self.dir / "frr.conf"
        shutil.copyfile(conf, dst)
        shutil.chown(self.dir, "frr", "frr")
        shutil.chown(dst, "frr", "frr")
        shutil.chown(sock_dir, "frr", "frr")
        common = ["-N", self.ns, "-f", dst, "-P", "0"]
        procs.start(self.ns, "zebra", [f"{FRR_LIBEXEC}/zebra", *common, "-i", self.dir / "zebra.pid",
                                       "--log", f"file:{self.dir}/zebra.log"], self.dir / "zebra.out")
        poll(f"zebra's zserv socket in {self.ns}", lambda: (sock_dir / "zserv.api").exists(), 15, 0.1)
        # bfdd (what `bfdd=yes` in /etc/frr/daemons starts) when the config has a bfd block.
        self.with_bfd = any(line.strip() == "bfd" for line in dst.read_text().splitlines())
        if self.with_bfd:
            procs.start(self.ns, "bfdd", [f"{FRR_LIBEXEC}/bfdd", *common, "-i", self.dir / "bfdd.pid",
                                          "--log", f"file:{self.dir}/bfdd.log"], self.dir / "bfdd.out")
            poll(f"bfdd's vty socket in {self.ns}", lambda: (sock_dir / "bfdd.vty").exists(), 15, 0.1)
        procs.start(self.ns, "bgpd", [f"{FRR_LIBEXEC}/bgpd", *common, "-i", self.dir / "bgpd.pid",
                                      "--log", f"file:{self.dir}/bgpd.log", "--log-level", "debug"],
                    self.dir / "bgpd.out")
        poll(f"bgpd's vty socket in {self.ns}", lambda: (sock_dir / "bgpd.vty").exists(), 15, 0.1)

    def vtysh(self, cmd: str) -> str:
        return out(["vtysh", "-N", self.ns, "-c", cmd], ns=self.ns, timeout=15)

    def state(self, neighbor: str) -> str:
        try:
            doc = json.loads(self.vtysh(f"show bgp neighbors {neighbor} json") or "{}")
        except ValueError:
            return "unknown"
        return str(doc.get(neighbor, {}).get("bgpState", "unknown")).lower()

    def has_route(self, prefix: str, neighbor=None) -> bool:
        if neighbor:
            # From the RIB's paths, not `neighbors X routes`, which hides the stale paths a
            # graceful restart keeps while the session is down.
            return self.route_from(prefix, neighbor) is not None
        return bool(self.route_json(prefix).get("paths"))

    def route_from(self, prefix: str, neighbor: str):
        """The path learned from `neighbor` as FRR's JSON (None when absent)."""
        for path in self.route_json(prefix).get("paths", []):
            if path.get("peer", {}).get("peerId") == neighbor:
                return path
        return None

    def communities(self, prefix: str, neighbor: str):
        """Communities on the route from `neighbor`, as `asn:value` strings (None: no route)."""
        path = self.route_from(prefix, neighbor)
        if path is None:
            return None
        text = path.get("community", {}).get("string", "")
        # FRR names the well-known ones (RFC 8326's 65535:0 is "graceful-shutdown").
        return [{"graceful-shutdown": "65535:0"}.get(c, c) for c in text.split()]

    def keeping_stale(self, prefix: str, neighbor: str) -> bool:
        """Graceful restart helper at work: the route from `neighbor` is kept, marked stale."""
        path = self.route_from(prefix, neighbor)
        return bool(path and path.get("stale"))

    def local_pref(self, prefix: str, neighbor: str):
        path = self.route_from(prefix, neighbor)
        return None if path is None else path.get("locPrf")

    def session_counters(self, neighbor: str):
        try:
            doc = json.loads(self.vtysh(f"show bgp neighbors {neighbor} json") or "{}").get(neighbor, {})
        except ValueError:
            return None
        return {k: doc.get(k) for k in ("connectionsEstablished", "connectionsDropped")}

    def route_json(self, prefix: str):
        fam = "ipv6" if ":" in prefix else "ipv4"
        try:
            return json.loads(self.vtysh(f"show bgp {fam} unicast {prefix} json") or "{}")
        except ValueError:
            return {}

    def show(self, prefix: str) -> str:
        fam = "ipv6" if ":" in prefix else "ipv4"
        return self.vtysh(f"show bgp {fam} unicast {prefix}")

    def bfd_peers(self):
        """`show bfd peers json`: the sessions bfdd knows, as FRR's JSON list."""
        try:
            return json.loads(self.vtysh("show bfd peers json") or "[]")
        except ValueError:
            return []

    def bfd_state(self, neighbor: str) -> str:
        for p in self.bfd_peers():
            if p.get("peer") == neighbor:
                return str(p.get("status", "unknown")).lower()
        return "absent"

    def render_interop(self, peers) -> str:
        asn = peers[0]["router_asn"]
        lines = ["frr defaults traditional", "hostname interop", "!"]
        if any(p.get("fast_connect") for p in peers):
            # A collision row: bgpd.log then says which connection FRR kept, closed or
            # took a NOTIFICATION on (printed when the row fails; CI keeps no files).
            lines += ["debug bgp neighbor-events", "!"]
        bfd = next((p["bfd"] for p in peers if p.get("bfd")), None)
        if bfd:
            lines += ["bfd", " profile anyguard", f"  transmit-interval {bfd['min_tx_ms']}",
                      f"  receive-interval {bfd['min_rx_ms']}", f"  detect-multiplier {bfd['multiplier']}",
                      # Not `exit`: every daemon reads this file, and bgpd, which does not
                      # know the bfd node, would leave configuration mode on it.
                      " !", "!"]
        lines += [f"router bgp {asn}",
                 f" bgp router-id {peers[0]['router_id']}", " no bgp ebgp-requires-policy",
                 " no bgp default ipv4-unicast"]
        for p in peers:
            s = p["speaker"]
            ka, hold = _timers(p)
            lines += [f" neighbor {s} remote-as {p['speaker_asn']}", f" neighbor {s} update-source {p['router']}",
                      f" neighbor {s} timers {ka} {hold}"]
            if p.get("fast_connect"):
                lines.append(f" neighbor {s} timers connect 1")
            if not p["router_connects"]:
                lines.append(f" neighbor {s} passive")
            if p["md5"]:
                lines.append(f" neighbor {s} password {p['md5']}")
            if p["gtsm"]:
                lines.append(f" neighbor {s} ttl-security hops 1")
            if p.get("bfd"):
                lines += [f" neighbor {s} bfd", f" neighbor {s} bfd profile anyguard"]
        for fam in (4, 6):
            lines.append(f" address-family ipv{fam} unicast")
            lines += [f"  neighbor {p['speaker']} activate" for p in peers if p["family"] == fam]
            lines.append(" exit-address-family")
        return "\n".join(lines) + "\n"


class Bird(Router):
    kind = "bird"
    binaries = ("bird", "birdc")

    @property
    def sock(self):
        return self.dir / "bird.ctl"

    def start(self, conf: Path):
        self.dir.mkdir(parents=True, exist_ok=True)
        procs.start(self.ns, "bird", [which("bird"), "-f", "-c", conf, "-s", self.sock,
                                      "-P", self.dir / "bird.pid"], self.dir / "bird.log")
        poll(f"bird's control socket in {self.ns}", lambda: self.sock.exists() and self.birdc("show status"), 15, 0.1)

    def birdc(self, *cmd) -> str:
        return out(["birdc", "-s", str(self.sock), *cmd], timeout=15)

    def _protocol(self, neighbor: str):
        """The BGP protocol whose neighbor address is `neighbor` (from `show protocols all`)."""
        name = None
        for line in self.birdc("show", "protocols", "all").splitlines():
            if line and not line[0].isspace() and not line.startswith(("BIRD", "Name")):
                name = line.split()[0]
            elif "Neighbor address:" in line and line.split(":", 1)[1].strip() == neighbor:
                return name
        return None

    def state(self, neighbor: str) -> str:
        proto = self._protocol(neighbor)
        if not proto:
            return "unknown"
        for line in self.birdc("show", "protocols", "all", proto).splitlines():
            if "BGP state:" in line:
                return line.split(":", 1)[1].strip().lower()
        return "unknown"

    def has_route(self, prefix: str, neighbor=None) -> bool:
        if neighbor:
            proto = self._protocol(neighbor)
            return bool(proto) and prefix in self.birdc("show", "route", prefix, "protocol", proto)
        return prefix in self.birdc("show", "route", prefix)

    def show(self, prefix: str) -> str:
        return self.birdc("show", "route", prefix, "all")

    def keeping_stale(self, prefix: str, neighbor: str) -> bool:
        """Graceful restart helper at work: BIRD says so on the protocol (it shows no per-route
        stale mark) and the route is still there."""
        proto = self._protocol(neighbor)
        return bool(proto) and "graceful restart active" in self.birdc("show", "protocols", "all", proto) \
            and self.has_route(prefix, neighbor)

    def communities(self, prefix: str, neighbor: str):
        proto = self._protocol(neighbor)
        text = self.birdc("show", "route", prefix, "protocol", proto, "all") if proto else ""
        if prefix not in text:
            return None
        found = []
        for line in text.splitlines():
            if "BGP.community:" in line:
                found += [c.strip("()").replace(",", ":") for c in line.split(":", 1)[1].split()]
        return found

    def local_pref(self, prefix: str, neighbor: str):
        proto = self._protocol(neighbor)
        text = self.birdc("show", "route", prefix, "protocol", proto, "all") if proto else ""
        m = re.search(r"BGP\.local_pref:\s*(\d+)", text)
        return int(m.group(1)) if prefix in text and m else None

    def session_counters(self, neighbor: str):
        # BIRD keeps no flap counter: the time of the protocol's last state change (the
        # `Since` column) moves on every flap.
        proto = self._protocol(neighbor)
        for line in (self.birdc("show", "protocols", proto) if proto else "").splitlines():
            words = line.split()
            if words and words[0] == proto and len(words) >= 5:
                return {"since": " ".join(words[3:5]), "info": " ".join(words[5:])}
        return None

    def bfd_state(self, neighbor: str) -> str:
        """The state `birdc show bfd sessions` gives the session with `neighbor`."""
        for line in self.birdc("show", "bfd", "sessions").splitlines():
            words = line.split()
            if words and words[0] == neighbor and len(words) >= 3:
                return words[2].lower()
        return "absent"

    def render_interop(self, peers) -> str:
        lines = [f"router id {peers[0]['router_id']};", "protocol device { }"]
        bfd = next((p["bfd"] for p in peers if p.get("bfd")), None)
        if bfd:
            # BIRD's log (bird.log in the node's directory) says why a session went down.
            lines.insert(0, "log stderr all;")
            lines += ["protocol bfd {", '  interface "*" {', f"    min rx interval {bfd['min_rx_ms']} ms;",
                      f"    min tx interval {bfd['min_tx_ms']} ms;", f"    multiplier {bfd['multiplier']};",
                      "  };", "}"]
        for p in peers:
            ibgp = p["router_asn"] == p["speaker_asn"]
            lines += [f"protocol bgp {p['name'].replace('-', '_')} {{",
                      f"  local {p['router']} as {p['router_asn']};",
                      f"  neighbor {p['speaker']} as {p['speaker_asn']};",
                      f"  hold time {_timers(p)[1]};", f"  keepalive time {_timers(p)[0]};"]
            if ibgp:
                # iBGP is multihop with recursive next hops by default: the speaker is on the
                # link, so resolve its next hop directly (no IGP in the lab).
                lines.append("  direct;")
            if p.get("fast_connect"):
                lines += ["  connect delay time 1;", "  connect retry time 2;"]
            if not p["router_connects"]:
                lines.append("  passive on;")
            if p["md5"]:
                lines.append(f"  password \"{p['md5']}\";")
            if p["gtsm"]:
                lines.append("  ttl security on;")
            if p.get("bfd"):
                # A BFD Down is a protocol error for BIRD: it restarts the session only after
                # `error wait time` (default 60 s, growing to 300 s). Short here so that the
                # scenario sees the session come back; a router config decides this itself.
                lines += ["  bfd on;", "  error wait time 1, 10;"]
            gw = " gateway direct;" if ibgp else ""
            lines += [f"  ipv{p['family']} {{{gw} import all; export none; }};", "}"]
        return "\n".join(lines) + "\n"


class GoBgp(Router):
    kind = "gobgp"
    binaries = ("gobgpd", "gobgp")
    API = "127.0.0.1:50051"

    def procs(self):
        return ["gobgpd"]

    def start(self, conf: Path):
        self.dir.mkdir(parents=True, exist_ok=True)
        procs.start(self.ns, "gobgpd", [which("gobgpd"), "-f", conf, "-p", "--api-hosts", self.API,
                                        "--pprof-disable"], self.dir / "gobgpd.log")
        poll(f"gobgpd's API in {self.ns}", lambda: self.gobgp("global"), 20, 0.2)

    def gobgp(self, *cmd) -> str:
        host, port = self.API.split(":")
        return out(["gobgp", "-u", host, "-p", port, *cmd], ns=self.ns, timeout=15)

    def state(self, neighbor: str) -> str:
        for line in self.gobgp("neighbor", neighbor).splitlines():
            if "BGP state" in line:
                return line.split("=", 1)[1].split(",")[0].strip().lower()
        return "unknown"

    def has_route(self, prefix: str, neighbor=None) -> bool:
        fam = "ipv6" if ":" in prefix else "ipv4"
        if neighbor:
            return prefix in self.gobgp("neighbor", neighbor, "adj-in", "-a", fam)
        return prefix in self.gobgp("global", "rib", "-a", fam)

    def show(self, prefix: str) -> str:
        fam = "ipv6" if ":" in prefix else "ipv4"
        return self.gobgp("global", "rib", "-a", fam, prefix)

    def local_pref(self, prefix: str, neighbor: str):
        fam = "ipv6" if ":" in prefix else "ipv4"
        for line in self.gobgp("neighbor", neighbor, "adj-in", "-a", fam).splitlines():
            if prefix in line.split():
                m = re.search(r"LocalPref:\s*(\d+)", line)
                return int(m.group(1)) if m else None
        return None

    def render_interop(self, peers) -> str:
        lines = ["[global.config]", f"  as = {peers[0]['router_asn']}",
                 f"  router-id = \"{peers[0]['router_id']}\"", ""]
        for p in peers:
            lines += ["[[neighbors]]", "  [neighbors.config]",
                      f"    neighbor-address = \"{p['speaker']}\"", f"    peer-as = {p['speaker_asn']}"]
            if p["md5"]:
                lines.append(f"    auth-password = \"{p['md5']}\"")
            ka, hold = _timers(p)
            lines += ["  [neighbors.timers.config]", f"    hold-time = {hold}", f"    keepalive-interval = {ka}",
                      "  [neighbors.transport.config]",
                      f"    passive-mode = {'false' if p['router_connects'] else 'true'}",
                      f"    local-address = \"{p['router']}\""]
            if p["gtsm"]:
                lines += ["  [neighbors.ttl-security.config]", "    enabled = true", "    ttl-min = 255"]
            fam = "ipv4-unicast" if p["family"] == 4 else "ipv6-unicast"
            lines += ["  [[neighbors.afi-safis]]", "    [neighbors.afi-safis.config]",
                      f"      afi-safi-name = \"{fam}\"", ""]
        return "\n".join(lines) + "\n"


class OpenBgpd(Router):
    kind = "openbgpd"
    binaries = ("bgpd", "bgpctl")

    def procs(self):
        return ["bgpd"]

    @property
    def sock(self):
        return self.dir / "bgpd.sock"

    def start(self, conf: Path):
        self.dir.mkdir(parents=True, exist_ok=True)
        # bgpd chroots to its user's home and refuses to start without it.
        Path("/run/openbgpd").mkdir(parents=True, exist_ok=True)
        procs.start(self.ns, "bgpd", ["/usr/sbin/bgpd", "-d", "-v", "-f", conf], self.dir / "bgpd.log")
        poll(f"bgpd's control socket in {self.ns}", lambda: self.sock.exists() and self.bgpctl("show"), 20, 0.2)

    def bgpctl(self, *cmd) -> str:
        return out(["bgpctl", "-s", str(self.sock), *cmd], ns=self.ns, timeout=15)

    def state(self, neighbor: str) -> str:
        for line in self.bgpctl("show", "neighbor", neighbor).splitlines():
            if "BGP state =" in line:
                return line.split("=", 1)[1].split(",")[0].strip().lower()
        return "unknown"

    def has_route(self, prefix: str, neighbor=None) -> bool:
        if neighbor:
            return prefix in self.bgpctl("show", "rib", "neighbor", neighbor)
        return prefix in self.bgpctl("show", "rib", prefix)

    def show(self, prefix: str) -> str:
        return self.bgpctl("show", "rib", prefix, "detail")

    def local_pref(self, prefix: str, neighbor: str):
        text = self.bgpctl("show", "rib", "neighbor", neighbor, "detail", prefix)
        m = re.search(r"localpref (\d+)", text)
        return int(m.group(1)) if prefix in text and m else None

    def render_interop(self, peers) -> str:
        lines = [f"AS {peers[0]['router_asn']}", f"router-id {peers[0]['router_id']}",
                 f"socket \"{self.sock}\"", "fib-update no", ""]
        for p in peers:
            lines += [f"neighbor {p['speaker']} {{", f"  remote-as {p['speaker_asn']}",
                      f"  descr \"{p['name']}\"", f"  local-address {p['router']}", f"  holdtime {_timers(p)[1]}"]
            if not p["router_connects"]:
                lines.append("  passive")
            if p["md5"]:
                lines.append(f"  tcp md5sig password {p['md5']}")
            if p["gtsm"]:
                lines.append("  ttl-security yes")
            lines += ["}", ""]
        lines += ["allow from any", "allow to any"]
        return "\n".join(lines) + "\n"


class ExaBgp(Router):
    kind = "exabgp"
    binaries = ("exabgp",)

    @property
    def events(self):
        return self.dir / "exabgp-events.jsonl"

    def start(self, conf: Path, bind=()):
        self.dir.mkdir(parents=True, exist_ok=True)
        env = {"exabgp.daemon.user": "root", "exabgp.daemon.daemonize": "false",
               "exabgp.daemon.drop": "false", "exabgp.api.cli": "false",
               "exabgp.log.destination": "stdout", "exabgp.tcp.bind": " ".join(bind),
               "exabgp.tcp.port": "179"}
        procs.start(self.ns, "exabgp", [which("exabgp"), conf], self.dir / "exabgp.log",
                    env={k.replace(".", "_"): v for k, v in env.items()})
        poll("exabgp running", lambda: procs.pid_of(self.ns, "exabgp"), 5, 0.2)

    def _messages(self):
        if not self.events.exists():
            return []
        msgs = []
        for line in self.events.read_text().splitlines():
            try:
                msgs.append(json.loads(line))
            except ValueError:
                continue
        return msgs

    def state(self, neighbor: str) -> str:
        st = "unknown"
        for m in self._messages():
            n = m.get("neighbor", {})
            if m.get("type") == "state" and n.get("address", {}).get("peer") == neighbor:
                st = n.get("state", st)
        return "established" if st == "up" else st

    def has_route(self, prefix: str, neighbor=None) -> bool:
        present = False
        for m in self._messages():
            n = m.get("neighbor", {})
            if m.get("type") != "update" or (neighbor and n.get("address", {}).get("peer") != neighbor):
                continue
            upd = n.get("message", {}).get("update", {})
            for fam in upd.get("announce", {}).values():
                for nlris in fam.values():
                    if any(x.get("nlri") == prefix for x in nlris):
                        present = True
            for nlris in upd.get("withdraw", {}).values():
                if any(x.get("nlri") == prefix for x in nlris):
                    present = False
        return present

    def show(self, prefix: str) -> str:
        return "\n".join(json.dumps(m) for m in self._messages() if prefix in json.dumps(m))[-2000:]

    def render_interop(self, peers) -> str:
        lines = ["process log {", f"  run /usr/bin/python3 {LAB_DIR}/nodes/exabgp-log.py {self.events};",
                 "  encoder json;", "}", ""]
        for p in peers:
            lines += [f"neighbor {p['speaker']} {{", f"  description \"{p['name']}\";",
                      f"  router-id {p['router_id']};", f"  local-address {p['router']};",
                      f"  local-as {p['router_asn']};", f"  peer-as {p['speaker_asn']};",
                      "  hold-time 9;"]
            if not p["router_connects"]:
                lines.append("  passive true;")
            if p["md5"]:
                lines.append(f"  md5-password \"{p['md5']}\";")
            if p["gtsm"]:
                lines += ["  outgoing-ttl 255;", "  incoming-ttl 254;"]
            fam = "ipv4 unicast" if p["family"] == 4 else "ipv6 unicast"
            lines += [f"  family {{ {fam}; }}",
                      "  api { processes [ log ]; neighbor-changes; receive { parsed; update; } }", "}", ""]
        return "\n".join(lines) + "\n"


ADAPTERS = {a.kind: a for a in (Frr, Bird, GoBgp, OpenBgpd, ExaBgp)}
