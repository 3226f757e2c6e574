"""Scenario registry: every module in this package that defines NAME and run(ctx) is a
scenario. `ORDER` lists the ones whose order matters; others follow alphabetically.

A scenario's run(ctx) returns a one-line detail for the PASS line, raises labkit.util.Fail
(or any exception) to fail and labkit.util.Skip when it cannot run here. `NEEDS` names the
binaries it requires (a missing one is a skip) and `TOPOLOGY = True` asks the runner to
bring the three-site topology up before it (and keep it up for the next such scenario).
`ROOT = False` lets it run without root."""

import importlib
import pkgutil

ORDER = ["clabfile", "interop", "health", "bfd", "failover", "graceful", "faults", "guard", "removals", "fleetauth",
         "fleetreload", "stops", "etcd-fleet"]


def registry():
    found = {}
    for mod in pkgutil.iter_modules(__path__):
        m = importlib.import_module(f"{__name__}.{mod.name}")
        if hasattr(m, "NAME") and hasattr(m, "run"):
            found[m.NAME] = m
    ordered = [n for n in ORDER if n in found] + sorted(n for n in found if n not in ORDER)
    return {n: found[n] for n in ordered}
