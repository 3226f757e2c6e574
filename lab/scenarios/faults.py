"""Faults (issue 7 scenario 4) on the three-site topology. After each fault is repaired,
the announcements must converge back to what health says (every site healthy: each edge
router has its anyguard node's route, the core prefers site a, the client is answered by
a); the scenario prints how long each took.

1. router daemon killed: BIRD at site b gets SIGKILL and is started again;
2. link down and up: site a's anyguard link (both veth ends lose carrier);
3. hold timer expiry: site a's BGP packets are blackholed (a /32 blackhole route towards
   ra in a's namespace: no carrier change, no FIN, only silence) until both sides' hold
   timers expire, then the route is removed;
4. anyguard killed with SIGKILL at site a (graceful restart is off in the site configs, so
   the router drops the route at once) and started again.
During 2–4 the client must be answered by site b while a is cut off."""

import signal
import time

from labkit import anyguard, procs
from labkit.util import Fail, poll, sh

from .failover import best_peer, curl

NAME = "faults"
NEEDS = ("curl",)
TOPOLOGY = True

PREFIX = "203.0.113.0/24"
CONVERGE = 60.0
SITES = {"a": ("ra", "198.18.1.2", "198.18.0.1"), "b": ("rb", "198.18.2.2", "198.18.0.3"),
         "c": ("rc", "198.18.3.2", "198.18.0.5")}


def converged(topo, why: dict) -> bool:
    """Every site healthy and announced; the core prefers a; the client reaches a."""
    for site, (router_name, speaker, _) in SITES.items():
        node = topo.anyguard_node(site)
        svc = anyguard.service(anyguard.status(node.ns, node.status_listen), "web")
        if svc.get("state") != "up":
            why["last"] = f"anyguard {site}: web is {svc.get('state')}"
            return False
        if not topo.nodes[router_name].router().has_route(PREFIX, speaker):
            why["last"] = f"{router_name} has no route from anyguard {site}"
            return False
    core = topo.nodes["core"].router()
    if best_peer(core) != SITES["a"][2]:
        why["last"] = f"core's best path via {best_peer(core)}"
        return False
    answer = curl(topo.nodes["client"])
    if answer != "site a":
        why["last"] = f"client got {answer!r}"
        return False
    return True


def wait_converged(topo, what: str) -> float:
    t0, why = time.monotonic(), {}
    try:
        poll(f"convergence after {what}", lambda: converged(topo, why), CONVERGE, 0.1)
    except Fail as e:
        raise Fail(f"{e} ({why.get('last')})") from None
    return time.monotonic() - t0


def wait_client(topo, site: str, what: str) -> float:
    t0 = time.monotonic()
    poll(f"the client to be answered by site {site} during {what}",
         lambda: curl(topo.nodes["client"]) == f"site {site}", 30, 0.1)
    return time.monotonic() - t0


def router_killed(topo) -> str:
    rb = topo.nodes["rb"]
    router = rb.router()
    procs.stop(rb.ns, "bird", sig=signal.SIGKILL)
    poll("bird at rb to be gone", lambda: not procs.pid_of(rb.ns, "bird"), 5, 0.05)
    (rb.dir / "bird.ctl").unlink(missing_ok=True)
    router.start(rb.config)
    return f"bird killed+restarted: converged {wait_converged(topo, 'the bird restart'):.1f} s after restart"


def link_flap(topo) -> str:
    a = topo.anyguard_node("a")
    sh(["ip", "link", "set", "eth1", "down"], ns=a.ns)
    try:
        moved = wait_client(topo, "b", "a's link down")
        ra = topo.nodes["ra"].router()
        poll("ra to drop a's route", lambda: not ra.has_route(PREFIX, "198.18.1.2"), 15, 0.1)
    finally:
        sh(["ip", "link", "set", "eth1", "up"], ns=a.ns)
        # The kernel deleted the routes through the downed link (a's default route):
        # re-apply the node's addressing and routes as a host's network config would.
        for line in a.exec:
            sh(line, ns=a.ns, check=False)
    back = wait_converged(topo, "a's link up")
    return f"link down: client on b after {moved:.1f} s; link up: converged in {back:.1f} s"


def hold_timer(topo) -> str:
    a = topo.anyguard_node("a")
    ra = topo.nodes["ra"].router()
    blackhole = ["198.18.1.1/32"]
    sh(["ip", "route", "add", "blackhole", *blackhole], ns=a.ns)
    t0 = time.monotonic()
    try:
        poll("ra's session to anyguard a to leave Established (hold timer)",
             lambda: ra.state("198.18.1.2") not in ("established", "unknown"), 20, 0.1)
        t_hold = time.monotonic() - t0
        poll("ra to drop a's route", lambda: not ra.has_route(PREFIX, "198.18.1.2"), 5, 0.1)
        poll("anyguard a to see its session down",
             lambda: anyguard.peer_state(anyguard.status(a.ns, a.status_listen), "ra") != "established", 20, 0.1)
        wait_client(topo, "b", "a's hold-timer expiry")
    finally:
        sh(["ip", "route", "del", "blackhole", *blackhole], ns=a.ns, check=False)
    back = wait_converged(topo, "the blackhole removal")
    return f"hold timer expired {t_hold:.1f} s after the blackhole (hold 6 s); converged {back:.1f} s after repair"


def anyguard_killed(topo) -> str:
    a = topo.anyguard_node("a")
    procs.stop(a.ns, "anyguard", sig=signal.SIGKILL)
    moved = wait_client(topo, "b", "anyguard a killed")
    anyguard.start(a.ns, a.config, a.dir)
    back = wait_converged(topo, "anyguard a's restart")
    return f"anyguard SIGKILL: client on b after {moved:.1f} s; restarted, converged in {back:.1f} s"


def run(ctx):
    topo = ctx.topology()
    wait_converged(topo, "start-up")
    details = []
    for fault in (router_killed, link_flap, hold_timer, anyguard_killed):
        try:
            details.append(fault(topo))
        except Fail as e:
            raise Fail(f"{fault.__name__}: {e}") from None
    return "; ".join(details)
