"""Network namespaces and veth pairs. Only names with the lab's prefix are ever deleted."""

import shutil
import subprocess
from pathlib import Path

from .util import NS_PREFIX, Fail, sh


def ns_name(node: str) -> str:
    return node if node.startswith(NS_PREFIX) else NS_PREFIX + node


def lab_namespaces():
    p = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    names = [line.split()[0] for line in p.stdout.splitlines() if line.strip()]
    return [n for n in names if n.startswith(NS_PREFIX)]


def add(ns: str) -> None:
    if not ns.startswith(NS_PREFIX):
        raise Fail(f"refusing to create namespace {ns!r} without the {NS_PREFIX!r} prefix")
    if ns in lab_namespaces():
        sh(["ip", "netns", "del", ns])
    sh(["ip", "netns", "add", ns])
    sh(["ip", "link", "set", "lo", "up"], ns=ns)
    # Routers forward; hosts do too harmlessly. Accept our own /32 on lo as local source.
    for key in ("net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
                "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"):
        sh(["sysctl", "-qw", key], ns=ns)


def delete(ns: str) -> None:
    if not ns.startswith(NS_PREFIX):
        raise Fail(f"refusing to delete namespace {ns!r} (not the lab's)")
    subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
    # FRR's per-namespace socket directory (pathspace -N <ns>).
    shutil.rmtree(Path("/var/run/frr") / ns, ignore_errors=True)


def veth(ns_a: str, if_a: str, ns_b: str, if_b: str) -> None:
    """One veth pair with its ends already named and placed in their namespaces."""
    sh(["ip", "link", "add", if_a, "netns", ns_a, "type", "veth", "peer", "name", if_b, "netns", ns_b])
    sh(["ip", "link", "set", if_a, "up"], ns=ns_a)
    sh(["ip", "link", "set", if_b, "up"], ns=ns_b)
