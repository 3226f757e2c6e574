"""A three-member etcd cluster (Debian's etcd-server, etcd 3.4), each member in a network
namespace of its own, for the etcd fleet backend's lab scenario (`scenarios/etcdfleet.py`).

Members listen on their namespace's address only, on ports that are not etcd's defaults
(2379/2380: a host where the package enabled its own server has those taken), keep their
data under the run directory, and are started, killed and stopped by PID (labkit.procs).
etcdctl runs in a namespace that reaches every member (the scenario's switch)."""

import json
import signal
import time

from . import procs
from .util import Fail, log, out, poll, sh, which

ETCD, ETCDCTL = "etcd", "etcdctl"
CLIENT_PORT, PEER_PORT = 12379, 12380
TOKEN = "anyguard-lab-etcd"


class Member:
    """`peer_addr`: where the members talk raft to each other, when not on `addr` (a
    network of its own lets a scenario cut a member from the quorum and not from its
    clients)."""

    def __init__(self, name: str, ns: str, addr: str, peer_addr: str = None):
        self.name, self.ns, self.addr = name, ns, addr
        self.client_url = f"http://{addr}:{CLIENT_PORT}"
        self.peer_url = f"http://{peer_addr or addr}:{PEER_PORT}"

    def __repr__(self):
        return self.name


class Cluster:
    """`members`: (name, namespace, address[, peer address]) per member; `base`: where data
    and logs go; `ctl_ns`: the namespace etcdctl runs in."""

    def __init__(self, members, base, ctl_ns: str):
        self.members = [Member(*m) for m in members]
        self.base, self.ctl_ns = base, ctl_ns

    @staticmethod
    def missing():
        return [b for b in (ETCD, ETCDCTL) if not which(b)]

    @property
    def endpoints(self):
        return [m.client_url for m in self.members]

    def member(self, name: str) -> Member:
        return next(m for m in self.members if m.name == name)

    def _argv(self, m: Member):
        cluster = ",".join(f"{o.name}={o.peer_url}" for o in self.members)
        # Election timing stays at etcd's defaults (heartbeat 100 ms, election 1 s): what a
        # real cluster runs, so the leader change the scenario causes takes what it takes.
        # On a restart the data directory exists and the initial-cluster flags are ignored.
        return [which(ETCD), "--name", m.name, "--data-dir", self.base / m.name,
                "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
                "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
                "--initial-cluster", cluster, "--initial-cluster-state", "new",
                "--initial-cluster-token", TOKEN, "--logger", "zap", "--log-level", "warn"]

    def start(self, m: Member) -> None:
        procs.start(m.ns, "etcd", self._argv(m), self.base / f"{m.name}.log")

    def start_all(self, timeout: float = 30.0) -> float:
        """Starts every member; returns the time until all three answered as healthy."""
        sh(["rm", "-rf", str(self.base)])
        self.base.mkdir(parents=True)
        t0 = time.monotonic()
        for m in self.members:
            self.start(m)
        self.wait_healthy(timeout)
        return time.monotonic() - t0

    def running(self, m: Member) -> bool:
        return procs.pid_of(m.ns, "etcd") is not None

    def kill(self, m: Member) -> None:
        """SIGKILL by PID: a crash, no goodbye to the peers or clients."""
        if not procs.stop(m.ns, "etcd", sig=signal.SIGKILL, wait=3.0):
            raise Fail(f"etcd member {m.name} was not running")

    def stop_all(self) -> None:
        # SIGTERM of a member that lost quorum can take ~7 s: procs.stop falls back to
        # SIGKILL after its wait.
        for m in self.members:
            procs.stop(m.ns, "etcd", wait=3.0)

    def ctl(self, *args, endpoints=None, timeout: float = 10.0) -> str:
        """etcdctl's stdout ("" when it failed)."""
        eps = ",".join(endpoints or self.endpoints)
        return out([which(ETCDCTL), f"--endpoints={eps}", "--dial-timeout=1s", "--command-timeout=2s",
                    *args], ns=self.ctl_ns, timeout=timeout)

    def statuses(self):
        """{member name: `endpoint status` of it} for the running members that answered
        (etcdctl fails as a whole when one endpoint does not answer)."""
        found = {}
        live = [m.client_url for m in self.members if self.running(m)]
        text = self.ctl("endpoint", "status", "-w", "json", endpoints=live) if live else ""
        try:
            rows = json.loads(text) if text.strip() else []
        except ValueError:
            rows = []
        for row in rows:
            m = next((m for m in self.members if m.client_url == row.get("Endpoint")), None)
            if m is not None:
                found[m.name] = row.get("Status", {})
        return found

    def leader(self):
        """The member every answering member names as leader (None during an election or
        while members disagree)."""
        sts = self.statuses()
        leaders = {st.get("leader") for st in sts.values()}
        if len(leaders) != 1 or not sts:
            return None
        lid = leaders.pop()
        return next((self.member(n) for n, st in sts.items()
                     if st.get("header", {}).get("member_id") == lid), None)

    def wait_healthy(self, timeout: float = 30.0):
        """Every member answers `endpoint health` and they agree on a leader; returns it."""
        def ok():
            text = self.ctl("endpoint", "health", "-w", "json")
            try:
                rows = json.loads(text) if text.strip() else []
            except ValueError:
                return None
            if len(rows) != len(self.members) or not all(r.get("health") for r in rows):
                return None
            return self.leader()
        try:
            return poll("every etcd member healthy with one leader", ok, timeout, 0.2)
        except Fail as e:
            log(f"etcd endpoint health: {self.ctl('endpoint', 'health')!r}")
            raise Fail(f"{e} (logs under {self.base})") from None
