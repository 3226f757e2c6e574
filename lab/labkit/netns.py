"""Network namespaces and veth pairs. Only names with the lab's prefix are ever deleted."""

import shutil
import subprocess
from pathlib import Path

from .util import NS_PREFIX, Fail, run_dir, sh

# The namespaces this run directory created: `down` deletes these and no others.
RECORD = "namespaces"


def ns_name(node: str) -> str:
    return node if node.startswith(NS_PREFIX) else NS_PREFIX + node


def existing():
    p = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    return [line.split()[0] for line in p.stdout.splitlines() if line.strip()]


def recorded():
    f = run_dir() / RECORD
    return [n for n in f.read_text().split() if n.startswith(NS_PREFIX)] if f.exists() else []


def lab_namespaces():
    """Namespaces that exist and that this run directory created."""
    mine = set(recorded())
    return [n for n in existing() if n in mine]


def add(ns: str) -> None:
    if not ns.startswith(NS_PREFIX):
        raise Fail(f"refusing to create namespace {ns!r} without the {NS_PREFIX!r} prefix")
    if ns in existing():
        if ns not in recorded():
            raise Fail(f"namespace {ns} exists and is not this lab's (another lab running? "
                       f"use another LAB_NS_PREFIX and LAB_RUN_DIR)")
        delete(ns)
    with open(run_dir() / RECORD, "a") as f:
        f.write(ns + "\n")
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
    f = run_dir() / RECORD
    if f.exists():
        f.write_text("".join(n + "\n" for n in f.read_text().split() if n != ns))
    # FRR's per-namespace socket directory (pathspace -N <ns>).
    shutil.rmtree(Path("/var/run/frr") / ns, ignore_errors=True)


def veth(ns_a: str, if_a: str, ns_b: str, if_b: str) -> None:
    """One veth pair with its ends already named and placed in their namespaces."""
    sh(["ip", "link", "add", if_a, "netns", ns_a, "type", "veth", "peer", "name", if_b, "netns", ns_b])
    sh(["ip", "link", "set", if_a, "up"], ns=ns_a)
    sh(["ip", "link", "set", if_b, "up"], ns=ns_b)
