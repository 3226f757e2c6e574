"""The three-site topology, read from anycast.clab.yml (the same file containerlab
deploys) and materialised with network namespaces and veth pairs."""

import signal
import tomllib
from pathlib import Path

import yaml

from . import anyguard, netns, procs
from .routers import ADAPTERS
from .util import LAB_DIR, Fail, log, poll, run_dir, sh, which

TOPOLOGY_FILE = LAB_DIR / "anycast.clab.yml"
LABEL = "anyguard.lab/"
HTTP_PORT = 80


class Node:
    def __init__(self, name: str, spec: dict, base: Path):
        self.name = name
        self.ns = netns.ns_name(name)
        self.spec = spec
        labels = spec.get("labels") or {}
        self.labels = {k[len(LABEL):]: str(v) for k, v in labels.items() if k.startswith(LABEL)}
        self.role = self.labels.get("role", "")
        self.exec = list(spec.get("exec") or [])
        self.config = (base / self.labels["config"]) if "config" in self.labels else None
        self.dir = run_dir() / "nodes" / name

    def router(self):
        return ADAPTERS[self.labels["daemon"]](self.ns, self.dir)

    @property
    def site(self):
        return self.labels.get("site")

    @property
    def status_listen(self):
        """From the node's anyguard config: where its /status answers."""
        return tomllib.loads(self.config.read_text()).get("status", {}).get("listen", "127.0.0.1:9180")


class Topology:
    def __init__(self, path: Path = TOPOLOGY_FILE):
        doc = yaml.safe_load(path.read_text())
        topo = doc["topology"]
        self.name = doc["name"]
        self.nodes = {n: Node(n, s or {}, path.parent) for n, s in topo["nodes"].items()}
        self.links = []
        for link in topo.get("links", []):
            (a, ia), (b, ib) = (e.split(":") for e in link["endpoints"])
            if a not in self.nodes or b not in self.nodes:
                raise Fail(f"link {link['endpoints']} names an unknown node")
            self.links.append((a, ia, b, ib))

    def by_role(self, role):
        return [n for n in self.nodes.values() if n.role == role]

    def anyguard_node(self, site):
        for n in self.by_role("anyguard"):
            if n.site == site:
                return n
        raise Fail(f"no anyguard node for site {site}")

    def missing(self):
        """Binaries this topology needs that are not installed."""
        need = {"ip", "curl"}
        for n in self.by_role("router"):
            need.update(ADAPTERS[n.labels["daemon"]].binaries)
        return sorted(b for b in need if not which(b))

    # -- lifecycle -------------------------------------------------------------------

    def up(self):
        """Namespaces, links, addressing (the nodes' exec lines), routers, then per site
        the HTTP target and anyguard. Waits (bounded) until every BGP session is up."""
        for node in self.nodes.values():
            node.dir.mkdir(parents=True, exist_ok=True)
            netns.add(node.ns)
        for a, ia, b, ib in self.links:
            netns.veth(self.nodes[a].ns, ia, self.nodes[b].ns, ib)
        for node in self.nodes.values():
            for line in node.exec:
                sh(line, ns=node.ns)
        for node in self.by_role("router"):
            node.router().start(node.config)
        for node in self.by_role("anyguard"):
            self.start_http(node)
            anyguard.start(node.ns, node.config, node.dir)
        for node in self.by_role("anyguard"):
            anyguard.wait_status(node.ns, node.status_listen)
        log("topology up: " + ", ".join(f"{n.name}={n.ns}" for n in self.nodes.values()))

    def start_http(self, node):
        """The site's HTTP target on its IPv4 service address (the one anyguard checks) and
        on its IPv6 one; both answer "site X"."""
        for name, key in (("http", "service"), ("http6", "service6")):
            if key in node.labels:
                procs.start(node.ns, name, ["/usr/bin/python3", LAB_DIR / "nodes" / "site-http.py",
                                            node.site, node.labels[key], str(HTTP_PORT)],
                            node.dir / f"{name}.log")
        addr = node.labels["service"]
        last = {}

        def answers():
            p = sh(["curl", "-sS", "--max-time", "1", f"http://{addr}:{HTTP_PORT}/"], ns=node.ns, check=False)
            last["curl"] = (p.stdout + p.stderr).strip()
            return p.stdout.strip() == f"site {node.site}"
        try:
            poll(f"site {node.site}'s HTTP target", answers, 10, 0.1)
        except Fail as e:
            ss = sh(["ss", "-ltnp"], ns=node.ns, check=False).stdout
            raise Fail(f"{e}; curl said {last.get('curl')!r}; listening: {ss}") from None

    def stop_http(self, node):
        procs.stop(node.ns, "http")
        procs.stop(node.ns, "http6")

    def down(self):
        down()


def down():
    """Idempotent: stops every process the lab recorded, then deletes the lab's namespaces
    (only those with the lab's prefix) and FRR's per-namespace socket directories.
    A second Ctrl-C/SIGTERM must not cut the tear-down short (it is bounded anyway)."""
    sigs = (signal.SIGINT, signal.SIGTERM)
    old = {s: signal.signal(s, signal.SIG_IGN) for s in sigs}
    try:
        n = procs.stop_all()
        nss = netns.lab_namespaces()
        for ns in nss:
            netns.delete(ns)
        return n, nss
    finally:
        for s, h in old.items():
            signal.signal(s, h)
