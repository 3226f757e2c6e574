"""Starting anyguard inside a namespace and reading its /status document there."""

import json
from pathlib import Path

from . import procs
from .util import anyguard_binary, out, poll


def start(ns: str, config: Path, node_dir: Path, log: str = "info") -> int:
    node_dir.mkdir(parents=True, exist_ok=True)
    # Each node keeps its state file (drains, addresses, pending removals) in its own run
    # directory: the three sites share this host's /var/lib/anyguard otherwise, and every
    # lab run with them. A config with `state_dir` still decides for itself.
    return procs.start(ns, "anyguard", [anyguard_binary(), "run", "--config", config],
                       node_dir / "anyguard.log",
                       env={"RUST_LOG": log, "STATE_DIRECTORY": str(node_dir)})


def status(ns: str, listen: str):
    """The /status document (None while the endpoint does not answer)."""
    body = out(["curl", "-s", "--max-time", "2", f"http://{listen}/status"], ns=ns, timeout=5)
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def peer_state(doc, peer: str) -> str:
    for p in (doc or {}).get("peers", []):
        if p.get("name") == peer:
            return p.get("state", "unknown")
    return "unknown"


def service(doc, name: str):
    for s in (doc or {}).get("services", []):
        if s.get("name") == name:
            return s
    return {}


def wait_status(ns: str, listen: str, timeout: float = 20):
    return poll(f"anyguard's /status at {listen} in {ns}", lambda: status(ns, listen), timeout, 0.2)
