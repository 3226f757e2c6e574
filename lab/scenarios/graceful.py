"""Graceful shutdown and restart (issue 7 scenario 3) on the three-site topology.

1. SIGTERM to anyguard at site a (FRR) and at site b (BIRD): each router's RIB shows our
   route with the GRACEFUL_SHUTDOWN community 65535:0 (RFC 8326) before the route is
   withdrawn (drain_time later), read through the router's own CLI.
2. Graceful restart (RFC 4724) at site a (FRR) and site b (BIRD): anyguard runs with
   `graceful_restart` on its peers; it is killed with SIGKILL (no Cease, no withdrawal) and
   started again. The router (a helper by default in both) keeps the prefix in its RIB
   throughout: sampled every 100 ms from the kill until the new session has sent
   End-of-RIB and the route is no longer stale.
Afterwards both sites run their normal configs again."""

import os
import re
import signal
import time

from labkit import anyguard, procs
from labkit.util import Fail, poll, run_dir

NAME = "graceful"
NEEDS = ("curl",)
TOPOLOGY = True

PREFIX = "203.0.113.0/24"
GSHUT = "65535:0"


def established(node, peer):
    return anyguard.peer_state(anyguard.status(node.ns, node.status_listen), peer) == "established"


def announced_by_anyguard(node, peer):
    """anyguard's own /status says the service's routes went to `peer`."""
    doc = anyguard.status(node.ns, node.status_listen)
    return any(a.get("peer") == peer and a.get("state") == "announced"
               for a in anyguard.service(doc, "web").get("announcements", []))


def stop_and_wait_withdrawn(node, site, router, neighbor):
    """Stops anyguard (SIGTERM: drain, withdrawal, Cease) and waits until the router has
    dropped the route: what the next instance announces must not be mistaken for the last
    moments of this one."""
    procs.stop(node.ns, "anyguard")
    poll(f"{router.kind} to drop anyguard {site}'s route after the stop",
         lambda: not router.has_route(PREFIX, neighbor), 20, 0.05)


def wait_announced(topo, site, router, neighbor):
    node = topo.anyguard_node(site)
    poll(f"{router.kind} to learn {PREFIX} from anyguard {site}",
         lambda: router.communities(PREFIX, neighbor) is not None, 30, 0.1)
    return node


def drain(topo, site, router_name, neighbor):
    node = topo.anyguard_node(site)
    router = topo.nodes[router_name].router()
    wait_announced(topo, site, router, neighbor)
    comms = router.communities(PREFIX, neighbor) or []
    if GSHUT in comms:
        raise Fail(f"{router.kind} shows {GSHUT} on a healthy site's route: {comms}")
    t0 = time.monotonic()
    pid = procs.pid_of(node.ns, "anyguard")
    if not pid:
        raise Fail(f"anyguard at {site} is not running")
    os.kill(pid, signal.SIGTERM)
    seen = {}

    def gshut_then_gone():
        c = router.communities(PREFIX, neighbor)
        if c is not None and GSHUT in c and "gshut" not in seen:
            seen["gshut"] = time.monotonic()
        if c is None:
            seen["gone"] = time.monotonic()
            return True
        return False

    poll(f"{router.kind} to withdraw anyguard {site}'s route after SIGTERM", gshut_then_gone, 20, 0.05)
    if "gshut" not in seen:
        raise Fail(f"{router.kind} never showed {GSHUT} on the route before it was withdrawn")
    poll(f"anyguard at {site} to exit", lambda: not procs.pid_of(node.ns, "anyguard"), 15, 0.1)
    procs.stop(node.ns, "anyguard")
    return (f"{router.kind}: {GSHUT} {1000 * (seen['gshut'] - t0):.0f} ms after SIGTERM, "
            f"withdrawn {1000 * (seen['gone'] - seen['gshut']):.0f} ms later")


def restart_normal(topo, site, router_name, neighbor):
    node = topo.anyguard_node(site)
    stop_and_wait_withdrawn(node, site, topo.nodes[router_name].router(), neighbor)
    anyguard.start(node.ns, node.config, node.dir)
    wait_announced(topo, site, topo.nodes[router_name].router(), neighbor)


def with_graceful_restart(config_text: str) -> str:
    """The site config with graceful restart on every peer (10 s restart time)."""
    return re.sub(r"(?m)^\[\[peer\]\]\n", '[[peer]]\ngraceful_restart = { restart_time = "10s" }\n', config_text)


def graceful_restart(topo, site, router_name, neighbor):
    node = topo.anyguard_node(site)
    router = topo.nodes[router_name].router()
    peer = router_name
    cfg = run_dir() / "nodes" / site / "anyguard-gr.toml"
    cfg.write_text(with_graceful_restart(node.config.read_text()))
    stop_and_wait_withdrawn(node, site, router, neighbor)
    anyguard.start(node.ns, cfg, node.dir)
    poll(f"anyguard {site}'s session to {router_name} with graceful restart",
         lambda: established(node, peer), 30, 0.1)
    poll(f"anyguard {site} to announce to {router_name}", lambda: announced_by_anyguard(node, peer), 30, 0.1)
    poll(f"{router_name} to learn the prefix from anyguard {site}", lambda: router.has_route(PREFIX, neighbor), 30, 0.1)
    # A crash: no drain, no withdrawal, no Cease.
    t_kill = time.monotonic()
    procs.stop(node.ns, "anyguard", sig=signal.SIGKILL)
    missing, stale_seen = [], False
    for _ in range(30):  # 3 s down, sampling every 100 ms
        if not router.has_route(PREFIX, neighbor):
            missing.append(round(time.monotonic() - t_kill, 2))
        elif router.keeping_stale(PREFIX, neighbor):
            stale_seen = True
        time.sleep(0.1)
    anyguard.start(node.ns, cfg, node.dir)
    t_start = time.monotonic()
    fresh_at = None
    for _ in range(200):  # until re-established and no longer stale, at most 20 s
        if not router.has_route(PREFIX, neighbor):
            missing.append(round(time.monotonic() - t_kill, 2))
        elif not router.keeping_stale(PREFIX, neighbor) and established(node, peer):
            fresh_at = time.monotonic()
            break
        time.sleep(0.1)
    if missing:
        raise Fail(f"{router.kind} lost the prefix during the restart at t={missing[:5]} s after the kill")
    if not stale_seen:
        raise Fail(f"{router.kind} never kept the route as stale while anyguard was down (no graceful restart?)")
    if fresh_at is None:
        raise Fail(f"{router.kind}: the route stayed stale: anyguard's new session did not refresh it")
    return (f"{router.kind} kept {PREFIX} (stale) through a SIGKILL and restart, fresh again "
            f"{1000 * (fresh_at - t_start):.0f} ms after anyguard started")


def run(ctx):
    topo = ctx.topology()
    details = [drain(topo, "a", "ra", "198.18.1.2"), drain(topo, "b", "rb", "198.18.2.2")]
    restart_normal(topo, "b", "rb", "198.18.2.2")
    restart_normal(topo, "a", "ra", "198.18.1.2")
    details.append(graceful_restart(topo, "a", "ra", "198.18.1.2"))
    details.append(graceful_restart(topo, "b", "rb", "198.18.2.2"))
    restart_normal(topo, "a", "ra", "198.18.1.2")
    restart_normal(topo, "b", "rb", "198.18.2.2")
    return "; ".join(details)
