"""The topology file itself (no root needed): what both containerlab and the runner rely
on. With `CLAB_SCHEMA=/path/to/clab.schema.json` (containerlab's published schema,
`schemas/clab.schema.json` in its repository; not vendored here: this project commits no
other project's files) and python3-jsonschema, the file is validated against that schema
too. Always, a consistency check:
node keys are ones containerlab documents for nodes, every link endpoint is `node:ethN` of
a known node and used once, every interface an exec line names is wired by a link, every
bind source and runner config exists (the anyguard binary excepted: cargo builds it), and
every router/anyguard node says what the runner starts."""

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

# The node keys of containerlab's topology reference that this lab may use.
NODE_KEYS = {"kind", "image", "cmd", "entrypoint", "binds", "exec", "labels", "env", "group",
             "startup-config", "sysctls", "cap-add", "user", "network-mode", "ports"}


def check(path: Path):
    doc = yaml.safe_load(path.read_text())
    problems = []
    if set(doc) - {"name", "prefix", "mgmt", "topology"}:
        problems.append(f"unknown top-level keys {sorted(set(doc) - {'name', 'prefix', 'mgmt', 'topology'})}")
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
        if set(spec) - NODE_KEYS:
            problems.append(f"{name}: unknown keys {sorted(set(spec) - NODE_KEYS)}")
        if spec.get("kind") != "linux" or not spec.get("image"):
            problems.append(f"{name}: needs kind linux and an image")
        for line in spec.get("exec", []):
            for iface in re.findall(r"\bdev (eth\d+)", line):
                if f"{name}:{iface}" not in wired:
                    problems.append(f"{name}: exec uses {iface}, which no link wires")
        for bind in spec.get("binds", []):
            src = bind.split(":")[0]
            if "target/debug/anyguard" not in src and not (path.parent / src).exists():
                problems.append(f"{name}: bind source {src} does not exist")
        labels = {k[len(LABEL):]: v for k, v in (spec.get("labels") or {}).items() if k.startswith(LABEL)}
        role = labels.get("role")
        if role not in ("router", "anyguard", "client"):
            problems.append(f"{name}: label {LABEL}role missing or unknown ({role!r})")
        if role == "router" and labels.get("daemon") not in ADAPTERS:
            problems.append(f"{name}: router without a known {LABEL}daemon")
        if role in ("router", "anyguard") and not (path.parent / str(labels.get("config", "-"))).is_file():
            problems.append(f"{name}: {LABEL}config {labels.get('config')!r} is not a file")
        if role == "anyguard" and not (labels.get("site") and labels.get("service")):
            problems.append(f"{name}: anyguard node without {LABEL}site/service")
    return problems, len(nodes), len(wired) // 2


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
        raise Fail("; ".join(f"{'/'.join(map(str, e.path)) or '<root>'}: {e.message}" for e in errors[:10]))
    return f"valid against {schema_path} ({schema.get('$id', 'no $id')})"


def run(ctx):
    problems, n, links = check(TOPOLOGY_FILE)
    if problems:
        raise Fail("; ".join(problems))
    schema = published_schema(TOPOLOGY_FILE)
    return f"{TOPOLOGY_FILE.name}: {n} nodes, {links} links consistent; {schema}"
