"""Interop matrix (issue 7 scenario 1, issue 3's lab requirement): anyguard against each of
BIRD 2, FRR, GoBGP, OpenBGPD and ExaBGP over IPv4 and IPv6 transport, plain, with TCP MD5
and with GTSM. One namespace pair per router: the router side and anyguard's side joined by
one veth, three addresses per family on each side (one per auth variant), so one daemon and
one anyguard hold all six sessions at once.

A case is ok only when the session is Established in anyguard's /status AND in the
router's own CLI AND the router's RIB shows our prefix learned from that session
(203.0.113.0/24 over IPv4 sessions, 2001:db8:100::/48 over IPv6 sessions). The matrix is
written to lab/results/interop.md."""

import time
from pathlib import Path

from labkit import anyguard, netns, procs
from labkit.routers import ADAPTERS
from labkit.util import LAB_DIR, NS_PREFIX, Fail, Skip, log, run_dir, sh

NAME = "interop"
NEEDS = ("curl",)
TOPOLOGY = False

ROUTERS = ["bird", "frr", "gobgp", "openbgpd", "exabgp"]
AUTHS = ["plain", "md5", "gtsm"]
PREFIX = {4: "203.0.113.0/24", 6: "2001:db8:100::/48"}
# Addresses per auth variant: router side .1/.11/.21, anyguard side .2/.12/.22.
HOST = {"plain": 1, "md5": 11, "gtsm": 21}
MD5_KEY = "anyguard-lab-md5"
ROUTER_ASN, SPEAKER_ASN = 65001, 65101
# What a router cannot do on Linux, with the reason shown in the table's notes.
UNSUPPORTED = {}
# Cases where the router must open the connection (anyguard passive), and why.
ROUTER_CONNECTS = {
    ("exabgp", "gtsm"): "ExaBGP 4.2 applies `outgoing-ttl` only to connections it opens: its "
    "listener answers with TTL 64, which a GTSM speaker drops, so ExaBGP connects",
    ("openbgpd", "md5"): "A passive OpenBGPD 7.7 (Linux port) answers no MD5-signed SYN, from "
    "anyguard or from FRR alike (checked by hand in the same namespaces), so OpenBGPD connects",
}
ESTABLISH_TIMEOUT = 45.0


def _addr(fam: int, n: int) -> str:
    return f"198.18.200.{n}" if fam == 4 else f"2001:db8:200::{n}"


def cases(router: str):
    for fam in (4, 6):
        for auth in AUTHS:
            if (router, auth) in UNSUPPORTED:
                continue
            h = HOST[auth]
            yield {"name": f"v{fam}-{auth}", "family": fam, "auth": auth,
                   "router": _addr(fam, h), "speaker": _addr(fam, h + 1),
                   "router_id": "198.18.200.1", "router_asn": ROUTER_ASN, "speaker_asn": SPEAKER_ASN,
                   "md5": MD5_KEY if auth == "md5" else None, "gtsm": auth == "gtsm",
                   "router_connects": (router, auth) in ROUTER_CONNECTS}


def anyguard_config(peers, d: Path) -> Path:
    (d / "md5.key").write_text(MD5_KEY + "\n")
    (d / "healthy").write_text("ok\n")
    lines = ['router_id = "198.18.200.2"', f"local_asn = {SPEAKER_ASN}", "",
             "[status]", 'listen = "127.0.0.1:9180"', ""]
    if any(p["router_connects"] for p in peers):
        lines += ["[bgp]", 'listen = "[::]:179"', ""]
    for p in peers:
        lines += ["[[peer]]", f'name = "{p["name"]}"', f'address = "{p["router"]}"',
                  f'local_address = "{p["speaker"]}"', f"remote_asn = {ROUTER_ASN}",
                  'hold_time = "9s"', 'connect_retry = "1s"',
                  f'mode = "{"passive" if p["router_connects"] else "active"}"',
                  f"ipv4 = {'true' if p['family'] == 4 else 'false'}",
                  f"ipv6 = {'true' if p['family'] == 6 else 'false'}"]
        if p["md5"]:
            lines.append('md5_key_file = "md5.key"')
        if p["gtsm"]:
            lines.append("ttl_security = true")
        lines.append("")
    lines += ["[[service]]", 'name = "web"', f'prefixes = ["{PREFIX[4]}", "{PREFIX[6]}"]',
              'drain_time = "1s"', "",
              "[[service.check]]", 'type = "file"', 'path = "healthy"', 'interval = "200ms"',
              "rise = 1", "fall = 1", ""]
    cfg = d / "anyguard.toml"
    cfg.write_text("\n".join(lines))
    return cfg


def run_router(kind: str):
    """Runs one router's six cases; returns {case name: (ok, why)}."""
    adapter = ADAPTERS[kind]
    if adapter.missing():
        return {c["name"]: (None, f"{', '.join(adapter.missing())} not installed") for c in cases(kind)}
    base = run_dir() / "interop" / kind
    sh(["rm", "-rf", str(base)])
    base.mkdir(parents=True)
    rns, sns = f"{NS_PREFIX}ix-{kind[:6]}-r", f"{NS_PREFIX}ix-{kind[:6]}-s"
    peers = list(cases(kind))
    results = {}
    try:
        for ns in (rns, sns):
            netns.add(ns)
        netns.veth(rns, "eth1", sns, "eth1")
        for p in peers:
            pl = 32 if p["family"] == 4 else 128
            net = 24 if p["family"] == 4 else 64
            for ns, a in ((rns, p["router"]), (sns, p["speaker"])):
                sh(["ip", "addr", "add", f"{a}/{net}", "dev", "eth1"] + (["nodad"] if pl == 128 else []), ns=ns)
        router = adapter(rns, base / "router")
        conf = base / f"{kind}.conf"
        router.dir.mkdir(parents=True, exist_ok=True)
        conf.write_text(router.render_interop(peers))
        if kind == "exabgp":
            router.start(conf, bind=[p["router"] for p in peers])
        else:
            router.start(conf)
        cfg = anyguard_config(peers, base)
        anyguard.start(sns, cfg, base / "anyguard")
        anyguard.wait_status(sns, "127.0.0.1:9180")
        pending = {p["name"]: p for p in peers}
        deadline = time.monotonic() + ESTABLISH_TIMEOUT
        last = {}
        for _ in range(int(ESTABLISH_TIMEOUT / 0.5) + 1):
            doc = anyguard.status(sns, "127.0.0.1:9180")
            for name, p in list(pending.items()):
                ours = anyguard.peer_state(doc, name)
                theirs = router.state(p["speaker"])
                rib = router.has_route(PREFIX[p["family"]], p["speaker"])
                last[name] = f"anyguard {ours}, {kind} {theirs}, prefix {'in' if rib else 'not in'} RIB"
                if ours == "established" and theirs == "established" and rib:
                    results[name] = (True, last[name])
                    del pending[name]
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        for name in pending:
            results[name] = (False, last.get(name, "no status"))
        if pending:
            log(f"{kind}: logs under {base}")
    except Fail as e:
        for p in peers:
            results.setdefault(p["name"], (False, str(e)))
    finally:
        procs.stop(sns, "anyguard")
        adapter(rns, base / "router").stop()
        for ns in (sns, rns):
            netns.delete(ns)
    return results


def write_table(all_results, path: Path) -> None:
    lines = ["# Interop matrix", "",
             "Generated by `lab/lab test interop` (a real run: each router in its own network",
             "namespace, anyguard in another, one veth between them). **ok** means: the session is",
             "Established in anyguard's `/status` and in the router's own CLI, and the router's RIB",
             "shows our prefix learned from that session (203.0.113.0/24 over IPv4 transport,",
             "2001:db8:100::/48 over IPv6 transport).", "",
             "| router | transport | plain | TCP MD5 | GTSM |", "|---|---|---|---|---|"]
    notes = []
    for kind in ROUTERS:
        for fam in (4, 6):
            cells = []
            for auth in AUTHS:
                r = all_results.get(kind, {}).get(f"v{fam}-{auth}")
                if (kind, auth) in UNSUPPORTED:
                    cells.append("n.a.")
                elif r is None or r[0] is None:
                    cells.append("skipped")
                else:
                    cells.append("ok" if r[0] else "FAIL")
            lines.append(f"| {kind} | IPv{fam} | " + " | ".join(cells) + " |")
    for (kind, auth), why in sorted(UNSUPPORTED.items()):
        notes.append(f"- n.a. {kind} {auth}: {why}")
    for (kind, auth), why in sorted(ROUTER_CONNECTS.items()):
        notes.append(f"- {kind} {auth}: the router opens the session, anyguard is passive. {why}.")
    if notes:
        notes.insert(0, "Anyguard opens the sessions (the routers are passive) except where noted:")
        notes.insert(1, "")
    versions = []
    for kind in ROUTERS:
        versions.append(f"- {kind}: {version(kind)}")
    lines += [""] + notes + ([""] if notes else []) + ["Versions (Debian packages):", ""] + versions
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    # The READMEs show the table (and its notes) from this run between their markers.
    table = "\n".join(lines[lines.index("| router | transport | plain | TCP MD5 | GTSM |"):])
    for readme in (LAB_DIR / "README.md", LAB_DIR.parent / "README.md"):
        splice(readme, table)


def splice(readme: Path, block: str) -> None:
    begin, end = "<!-- interop:begin -->", "<!-- interop:end -->"
    if not readme.exists():
        return
    text = readme.read_text()
    if begin not in text or end not in text:
        return
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{begin}\n{block}\n{end}{tail}")


def version(kind: str) -> str:
    pkg = {"bird": "bird2", "frr": "frr", "gobgp": "gobgpd", "openbgpd": "openbgpd", "exabgp": "exabgp"}[kind]
    p = sh(["dpkg-query", "-W", "-f=${Version}", pkg], check=False)
    return f"{pkg} {p.stdout.strip()}" if p.returncode == 0 else f"{pkg} not installed"


def run(ctx):
    only = [r for r in ROUTERS if not ctx.routers or r in ctx.routers]
    all_results, failed, skipped, ok = {}, [], [], 0
    for kind in only:
        res = run_router(kind)
        all_results[kind] = res
        for name, (good, why) in res.items():
            if good is None:
                skipped.append(f"{kind}/{name}")
            elif good:
                ok += 1
            else:
                failed.append(f"{kind}/{name} ({why})")
        log(f"{kind}: " + ", ".join(f"{n}={'ok' if g else ('skip' if g is None else 'FAIL')}" for n, (g, _) in res.items()))
    if not ctx.routers:
        write_table(all_results, LAB_DIR / "results" / "interop.md")
    if failed:
        raise Fail(f"{len(failed)} case(s) failed: " + "; ".join(failed))
    if skipped:
        # A partial matrix is not a pass.
        raise Skip(f"{len(skipped)} case(s) could not run ({', '.join(skipped)}); {ok} ok")
    return f"{ok} sessions Established on both sides with the prefix in the router's RIB"
