"""The topology file itself (no root needed): what both containerlab and the runner rely
on.

Always, a structural check written from containerlab's published schema
(`schemas/clab.schema.json` of srl-labs/containerlab, read at commit b11ef1a; its key names
are listed here, the file itself is not vendored: this project commits no other project's
files): top-level and node keys are ones the schema allows (it sets additionalProperties
false on both), kind is a known one, labels are strings or numbers, binds and endpoints
unique, exec a non-empty list of strings. Then the lab's own consistency: every link
endpoint is `node:ethN` of a known node and used once, every interface an exec line names
is wired by a link, every bind source and runner config exists (the anyguard binary
excepted: cargo builds it), and every router/anyguard node says what the runner starts.
Each rule is also shown to fire on a broken copy of the file, so the check cannot pass
vacuously.

With `CLAB_SCHEMA=/path/to/clab.schema.json` (a downloaded copy of the published schema)
and python3-jsonschema, the file is validated against that schema too."""

import os
import re
from pathlib import Path

import yaml

from labkit.routers import ADAPTERS
from labkit.topology import LABEL, TOPOLOGY_FILE
from labkit.util import Fail

NAME = "clabfile"
NEEDS = ()
TOPOLOGY = False
ROOT = False

# What containerlab's schema (definitions/node-config, additionalProperties false) allows
# on a node, and at the top level. Names only; see the module doc for the source.
NODE_KEYS = frozenset({
    "image", "image-pull-policy", "kind", "license", "type", "group", "startup-config",
    "startup-delay", "enforce-startup-config", "auto-remove", "exec", "binds", "ports", "env",
    "user", "entrypoint", "cmd", "publish", "labels", "runtime", "mgmt-ipv4", "mgmt-ipv6",
    "network-mode", "cpu", "memory", "cpu-set", "sandbox", "kernel", "extras", "config",
    "stages", "dns", "certificate", "healthcheck", "wait-for",
})
TOP_KEYS = frozenset({"name", "prefix", "mgmt", "topology", "settings"})
TOPOLOGY_KEYS = frozenset({"nodes", "kinds", "defaults", "links"})


def _strings(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)


def schema_rules(doc) -> list:
    """The published schema's rules that a file like this one can break."""
    problems = []
    if not isinstance(doc, dict):
        return ["the file is not a mapping"]
    for key in ("name", "topology"):
        if key not in doc:
            problems.append(f"required top-level key {key!r} missing")
    if set(doc) - TOP_KEYS:
        problems.append(f"unknown top-level keys {sorted(set(doc) - TOP_KEYS)}")
    if not isinstance(doc.get("name", ""), str):
        problems.append("name is not a string")
    topo = doc.get("topology") or {}
    if set(topo) - TOPOLOGY_KEYS:
        problems.append(f"unknown topology keys {sorted(set(topo) - TOPOLOGY_KEYS)}")
    if not isinstance(topo.get("nodes"), dict):
        problems.append("topology.nodes missing or not a mapping")
    for name, spec in (topo.get("nodes") or {}).items():
        if spec is None:
            continue
        if set(spec) - NODE_KEYS:
            problems.append(f"{name}: keys the schema does not allow {sorted(set(spec) - NODE_KEYS)}")
        for key in ("image", "cmd", "entrypoint", "kind"):
            if key in spec and not isinstance(spec[key], str):
                problems.append(f"{name}: {key} is not a string")
        for key in ("exec", "binds"):
            if key in spec and not _strings(spec[key]):
                problems.append(f"{name}: {key} is not a non-empty list of strings")
        if len(set(spec.get("binds") or [])) != len(spec.get("binds") or []):
            problems.append(f"{name}: binds repeat an entry")
        for key, value in (spec.get("labels") or {}).items():
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                problems.append(f"{name}: label {key} is neither a string nor a number")
    links = topo.get("links", [])
    if "links" in topo and not (isinstance(links, list) and links):
        problems.append("topology.links is not a non-empty list")
    for i, link in enumerate(links or []):
        eps = link.get("endpoints") if isinstance(link, dict) else None
        if not isinstance(eps, list) or len(eps) < 2 or not all(isinstance(e, str) for e in eps):
            problems.append(f"link {i}: endpoints must be a list of at least two strings")
        elif len(set(eps)) != len(eps) or not all(re.fullmatch(r"\S+:\S+", e) for e in eps):
            problems.append(f"link {i}: endpoints must be unique `node:interface` strings")
    return problems


def lab_rules(doc, base: Path) -> list:
    """What the runner and this lab's design need beyond the schema."""
    problems = []
    nodes = doc["topology"]["nodes"]
    wired = {}
    for i, link in enumerate(doc["topology"].get("links", [])):
        eps = link.get("endpoints", [])
        if len(eps) != 2:
            problems.append(f"link {i}: {len(eps)} endpoints")
        for ep in eps:
            m = re.fullmatch(r"([a-z0-9-]+):(eth\d+)", ep)
            if not m or m.group(1) not in nodes:
                problems.append(f"link {i}: bad endpoint {ep!r}")
            elif ep in wired:
                problems.append(f"endpoint {ep} used twice")
            else:
                wired[ep] = i
    for name, spec in nodes.items():
        spec = spec or {}
        if spec.get("kind") != "linux" or not spec.get("image"):
            problems.append(f"{name}: needs kind linux and an image")
        for line in spec.get("exec", []):
            for iface in re.findall(r"\bdev (eth\d+)", line):
                if f"{name}:{iface}" not in wired:
                    problems.append(f"{name}: exec uses {iface}, which no link wires")
        for bind in spec.get("binds", []):
            src = bind.split(":")[0]
            if "target/debug/anyguard" not in src and not (base / src).exists():
                problems.append(f"{name}: bind source {src} does not exist")
        labels = {k[len(LABEL):]: v for k, v in (spec.get("labels") or {}).items() if k.startswith(LABEL)}
        role = labels.get("role")
        if role not in ("router", "anyguard", "client"):
            problems.append(f"{name}: label {LABEL}role missing or unknown ({role!r})")
        if role == "router" and labels.get("daemon") not in ADAPTERS:
            problems.append(f"{name}: router without a known {LABEL}daemon")
        if role in ("router", "anyguard") and not (base / str(labels.get("config", "-"))).is_file():
            problems.append(f"{name}: {LABEL}config {labels.get('config')!r} is not a file")
        if role == "anyguard" and not (labels.get("site") and labels.get("service")):
            problems.append(f"{name}: anyguard node without {LABEL}site/service")
    return problems


def check_doc(doc, base: Path) -> list:
    problems = schema_rules(doc)
    # The lab's rules index into the structure the schema rules vouch for.
    return problems or lab_rules(doc, base)


def check(path: Path):
    doc = yaml.safe_load(path.read_text())
    problems = check_doc(doc, path.parent)
    links = sum(len(link.get("endpoints", [])) for link in doc["topology"].get("links", [])) // 2
    return problems, len(doc["topology"]["nodes"]), links


# Broken copies of the file, each of which the check must reject (with the words expected
# in its report): proof that every rule family can fire.
def _mutations(doc):
    def node(d, n="a"):
        return d["topology"]["nodes"][n]

    yield "top-level key", "unknown top-level", lambda d: d.update(version=1)
    yield "node key", "does not allow", lambda d: node(d).update(sysctls={"net.ipv4.ip_forward": 1})
    yield "label type", "neither a string", lambda d: node(d)["labels"].update(x=True)
    yield "repeated bind", "repeat", lambda d: node(d)["binds"].append(node(d)["binds"][0])
    yield "endpoint form", "unique `node:interface`", lambda d: d["topology"]["links"][0].update(endpoints=["core", "ra:eth1"])
    yield "unknown node", "bad endpoint", lambda d: d["topology"]["links"][0].update(endpoints=["nosuch:eth1", "ra:eth1"])
    yield "endpoint reuse", "used twice", lambda d: d["topology"]["links"][1].update(endpoints=["core:eth1", "rb:eth1"])
    yield "unwired exec", "no link wires", lambda d: node(d)["exec"].append("ip link set eth9 up; ip addr add 198.18.9.1/24 dev eth9")
    yield "bind source", "does not exist", lambda d: node(d)["binds"].append("nosuch.conf:/etc/x")
    yield "role label", "role missing", lambda d: node(d)["labels"].pop(LABEL + "role")
    yield "kind", "needs kind linux", lambda d: node(d).update(kind="bridge")


def self_test(path: Path) -> int:
    import copy

    original = yaml.safe_load(path.read_text())
    n = 0
    for what, expect, mutate in _mutations(original):
        doc = copy.deepcopy(original)
        mutate(doc)
        problems = check_doc(doc, path.parent)
        if not any(expect in p for p in problems):
            raise Fail(f"the check missed a broken {what}: wanted {expect!r}, got {problems}")
        n += 1
    return n


def published_schema(path: Path) -> str:
    """Validates against containerlab's JSON schema when CLAB_SCHEMA names it; says what
    was done either way."""
    schema_path = os.environ.get("CLAB_SCHEMA")
    if not schema_path:
        return "published schema not checked (set CLAB_SCHEMA to containerlab's clab.schema.json)"
    try:
        import json

        import jsonschema
    except ImportError:
        raise Fail("CLAB_SCHEMA is set but python3-jsonschema is not installed")
    schema = json.loads(Path(schema_path).read_text())
    doc = yaml.safe_load(path.read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=lambda e: list(e.path))
    if errors:
        raise Fail("; ".join(_describe(e) for e in errors[:10]))
    return f"valid against {schema_path} ({schema.get('$id', 'no $id')})"


def _describe(error) -> str:
    # A node is `oneOf: [null, node-config]`: the useful message is the node-config one.
    best = error
    while best.context:
        best = max(best.context, key=lambda e: (len(e.absolute_path), e.validator != "type"))
    where = "/".join(map(str, best.absolute_path)) or "<root>"
    return f"{where}: {best.message}"


def run(ctx):
    problems, n, links = check(TOPOLOGY_FILE)
    if problems:
        raise Fail("; ".join(problems))
    rules = self_test(TOPOLOGY_FILE)
    schema = published_schema(TOPOLOGY_FILE)
    return (f"{TOPOLOGY_FILE.name}: {n} nodes, {links} links consistent "
            f"({rules} broken copies rejected); {schema}")
