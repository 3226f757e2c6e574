"""Interop matrix (issue 7 scenario 1, issue 3's lab requirement): anyguard against each of
BIRD 2, FRR, GoBGP, OpenBGPD and ExaBGP over IPv4 and IPv6 transport, plain, with TCP MD5
and with GTSM. One namespace pair per router: the router side and anyguard's side joined by
one veth, three addresses per family on each side (one per auth variant), so one daemon and
one anyguard hold all six sessions at once.

A case is ok only when the session is Established in anyguard's /status AND in the
router's own CLI AND the router's RIB shows our prefix learned from that session
(203.0.113.0/24 over IPv4 sessions, 2001:db8:100::/48 over IPv6 sessions). The matrix is
written to lab/results/interop.md.

Then the protocol conformance rows of issue 12, each on a namespace pair of its own with one
session (see `EXTRA_ROWS`): iBGP (router ASN = anyguard's), over IPv4 and over IPv6, showing
the normal route and the de-preferred one as the router sees them; a fast-timer row (hold 3 against FRR `timers 1
3`) with the KEEPALIVEs timed on the wire; collision rows (`mode = "both"`, both sides
connecting, in both identifier orders) showing one stable session, established once."""

import json
import os
import re
import signal
import time
from ipaddress import ip_address
from pathlib import Path

from labkit import anyguard, netns, procs
from labkit.routers import ADAPTERS
from labkit.util import LAB_DIR, NS_PREFIX, Fail, Skip, log, out, run_dir, sh

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


# Issue 12's rows: (row, router, variant). Each runs on its own namespace pair.
EXTRA_ROWS = [("ibgp", r, fam) for fam in ("ipv4", "ipv6") for r in ("bird", "frr", "gobgp", "openbgpd")] + \
    [("fast-timer", "frr", "")] + \
    [("collision", r, order) for r in ("bird", "frr") for order in ("anyguard-higher", "anyguard-lower")]
EXTRA_TITLE = {"ibgp": "iBGP", "fast-timer": "fast timers", "collision": "collision"}
# Namespace-name suffix per variant (names stay short: IFNAMSIZ-bound veth peers).
VARIANT_TAG = {"ipv4": "4", "ipv6": "6", "anyguard-higher": "h", "anyguard-lower": "l"}
VARIANT_TITLE = {"ipv4": "IPv4", "ipv6": "IPv6"}
# How long a collision row watches the session once it is up, and the wiretap the fast
# timers (both bounded).
STABLE_FOR, WIRE_FOR = 20.0, 15.0
# A thaw does not always leave a collision to resolve: BIRD may close the connection
# anyguard opened before anyguard's OPEN is out (then anyguard has one connection in
# OpenSent, and the row has shown nothing). In a CI run BIRD did that three times in a
# row with anyguard's identifier the higher; each attempt that shows no collision costs
# ~25 s, and only an attempt that does show one decides the row.
COLLISION_TRIES = 6


def _extra_peer(row: str, variant: str):
    """The one session of an extra row (IPv4, or IPv6 for the iBGP row's `ipv6` variant), as
    `render_interop` and anyguard_extra_config take it."""
    fam = 6 if variant == "ipv6" else 4
    p = {"name": "x", "family": fam, "auth": "plain", "router": _addr(fam, 1), "speaker": _addr(fam, 2),
         "router_id": "198.18.200.1", "router_asn": ROUTER_ASN, "speaker_asn": SPEAKER_ASN,
         "md5": None, "gtsm": False, "router_connects": False, "speaker_id": "198.18.200.2"}
    if row == "ibgp":
        p["router_asn"] = SPEAKER_ASN
    elif row == "fast-timer":
        p["timers"] = (1, 3)
    elif row == "collision":
        # Both connect, quickly; the identifiers decide which connection survives (§6.8).
        p["router_connects"], p["fast_connect"] = True, True
        p["router_id"] = "198.18.200.1" if variant == "anyguard-higher" else "198.18.200.9"
    return p


def anyguard_extra_config(row: str, p, d: Path) -> Path:
    (d / "healthy").write_text("ok\n")
    lines = [f'router_id = "{p["speaker_id"]}"', f"local_asn = {SPEAKER_ASN}", "",
             "[status]", 'listen = "127.0.0.1:9180"', ""]
    if row == "collision":
        lines += ["[bgp]", f'listen = "{p["speaker"]}:179"', ""]
    hold = "3s" if row == "fast-timer" else "9s"
    lines += ["[[peer]]", 'name = "x"', f'address = "{p["router"]}"', f'local_address = "{p["speaker"]}"',
              f"remote_asn = {p['router_asn']}", f'hold_time = "{hold}"', 'connect_retry = "1s"',
              f'mode = "{"both" if row == "collision" else "active"}"',
              f"ipv4 = {'true' if p['family'] == 4 else 'false'}",
              f"ipv6 = {'true' if p['family'] == 6 else 'false'}"]
    if row == "collision":
        # Retry fast so that our connection and the router's cross.
        lines.append('reconnect = { min = "100ms", max = "1s" }')
    lines += ["", "[[service]]", 'name = "web"', f'prefixes = ["{PREFIX[p["family"]]}"]', 'drain_time = "1s"']
    if row == "ibgp":
        lines.append('on_down = "deprefer"')
    lines += ["", "[[service.check]]", 'type = "file"', 'path = "healthy"', 'interval = "200ms"',
              "rise = 1", "fall = 1", ""]
    cfg = d / "anyguard.toml"
    cfg.write_text("\n".join(lines))
    return cfg


def _peer_doc(doc):
    return next((x for x in (doc or {}).get("peers", []) if x.get("name") == "x"), {})


def _check_ibgp(router, sns, base, p, kind):
    """The normal route (LOCAL_PREF 100) and, once the health file is gone, the de-preferred
    one (LOCAL_PREF 50), both in the router's RIB: a route with our own AS in its path would
    be dropped there as a loop (RFC 4271 §9.1.2), so its presence shows the empty AS_PATH.
    Over IPv6 the route is the IPv6 prefix in MP_REACH_NLRI (RFC 4760)."""
    prefix = PREFIX[p["family"]]
    lp = poll_value(lambda: router.local_pref(prefix, p["speaker"]), lambda v: v is not None, 20)
    if lp != 100:
        return False, f"{kind} shows LOCAL_PREF {lp} for {prefix} (want 100)"
    (base / "healthy").unlink()
    down = poll_value(lambda: router.local_pref(prefix, p["speaker"]), lambda v: v == 50, 15)
    if down != 50:
        return False, f"LOCAL_PREF 100 while healthy; after the health file went: {down} (want 50)"
    return True, (f"{kind} shows LOCAL_PREF 100 on {prefix} while healthy, 50 de-preferred "
                  "(health file removed)")


def _check_fast_timer(router, sns, base, p, kind, rns):
    """Hold 3 against FRR `timers 1 3`: the KEEPALIVEs from anyguard, timed by a passive tap
    on the router's interface, are never closer than 1 s (RFC 4271 §4.4)."""
    wire = base / "wiretap.jsonl"
    procs.start(rns, "wiretap", ["/usr/bin/python3", LAB_DIR / "nodes" / "bgp-wiretap.py", "eth1",
                                 wire, str(WIRE_FOR), "keepalives"], base / "wiretap.log")
    time.sleep(WIRE_FOR + 1.0)
    procs.stop(rns, "wiretap")
    stamps = []
    for line in wire.read_text().splitlines() if wire.exists() else []:
        e = json.loads(line)
        if e.get("keepalive") and e.get("src") == p["speaker"]:
            stamps.append(e["t"])
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    doc = anyguard.status(sns, "127.0.0.1:9180")
    me = _peer_doc(doc)
    if len(gaps) < 5:
        return False, f"only {len(stamps)} KEEPALIVEs from anyguard on the wire in {WIRE_FOR:.0f} s"
    detail = (f"hold {me.get('hold_time')} negotiated; {len(stamps)} KEEPALIVEs from anyguard in "
              f"{WIRE_FOR:.0f} s on the wire, closest {min(gaps) * 1000:.0f} ms apart, widest "
              f"{max(gaps) * 1000:.0f} ms; {kind} {router.state(p['speaker'])}, "
              f"established {me.get('established_count')} time(s)")
    ok = min(gaps) >= 1.0 and me.get("hold_time") == 3 and me.get("established_count") == 1 \
        and router.state(p["speaker"]) == "established"
    return ok, detail


def _check_collision(router, sns, base, p, kind):
    """One session, Established on both sides, that stays so for STABLE_FOR seconds with no
    flap in anyguard's counters or the router's."""
    before_theirs = router.session_counters(p["speaker"])
    before_ours = _peer_doc(anyguard.status(sns, "127.0.0.1:9180"))
    time.sleep(STABLE_FOR)
    after_theirs = router.session_counters(p["speaker"])
    after_ours = _peer_doc(anyguard.status(sns, "127.0.0.1:9180"))
    states = (after_ours.get("state"), router.state(p["speaker"]))
    # RFC 4271 §6.8: the connection the higher identifier opened survives. On anyguard's
    # side, the router's connection has local port 179.
    kept = out(["ss", "-Htn", "state", "established", "( sport = :179 or dport = :179 )"], ns=sns).split()
    opener = "router" if any(a.endswith(":179") for a in kept[2:3]) else "anyguard"
    want = "anyguard" if ip_address(p["speaker_id"]) > ip_address(p["router_id"]) else "router"
    sent = after_ours.get("last_notification_sent") or {}
    recv = after_ours.get("last_notification_received") or {}
    crossed = [f"{w} {n.get('code')}/{n.get('subcode')}" for w, n in (("sent", sent), ("received", recv)) if n]

    conns = base / "connections.txt"
    n = len(conns.read_text().splitlines()) if conns.exists() else 0
    # Connections that reached OpenSent before the session came up: two means a collision
    # that anyguard's two-slot FSM had to resolve (RFC 4271 §6.8).
    agl = base / "anyguard" / "anyguard.log"
    head = agl.read_text(errors="replace").split("session established")[0] if agl.exists() else ""
    opensent = head.count("to=opensent")
    detail = (f"ids anyguard {p['speaker_id']} / {kind} {p['router_id']}: {n} TCP connections when both "
              f"daemons resumed, {opensent} of anyguard's in OpenSent before the session came up; kept the "
              f"one {opener} opened (the higher identifier's: {want}'s); "
              f"established on both sides, "
              f"{STABLE_FOR:.0f} s later still ({states[0]}, {states[1]}); anyguard established "
              f"{after_ours.get('established_count')} time(s); {kind} {after_theirs}; "
              f"NOTIFICATION {', '.join(crossed) if crossed else 'none'}")
    # Who resolved: a 6/7 anyguard sent after both its connections had the router's OPEN
    # (both in OpenConfirm before the session came up) is its own §6.8 decision by
    # identifiers, so the connection kept must be the one the higher identifier opened
    # (unless the router decided otherwise first: then anyguard sends no 6/7). A 6/7 it
    # sent on a connection of the router's that brought no OPEN is the router's next
    # attempt replacing its previous one, not a tie-break. A 6/7 it received, or none (the
    # router gave up a connection: FRR does when its overdue connect timer fires on the
    # thaw), is the router's doing; anyguard, which resolves only once both connections
    # have an OPEN (issue 12 finding 7), must then just keep a session up.
    tie_break = head.count("to=openconfirm") >= 2
    ours_resolved = (sent.get("code"), sent.get("subcode")) == (6, 7) and tie_break
    # §6.8: "a connection collision with an existing BGP connection that is in the
    # Established state causes closing of the newly created connection", whatever the
    # identifiers: when our session was up before we sent the 6/7, the late one went.
    text = agl.read_text(errors="replace") if agl.exists() else ""
    up, dumped = text.find("session established"), text.find("notification=Cease/Connection Collision")
    late = (sent.get("code"), sent.get("subcode")) == (6, 7) and 0 <= up < dumped
    collided = opensent >= 2
    # The race where both sides apply §6.8 from different states: we are Established on
    # one connection while the router, still in OpenConfirm on it, gets the late OPEN on
    # the other and keeps the connection the higher identifier opened. anyguard holds a
    # late connection the identifiers favour (no KEEPALIVE) until the router's verdict,
    # and moves the session there when the router closes the other one with 6/7: no
    # second establishment on either side (src/fsm/collision.rs). Required: none.
    moved = text.count("session moved to the connection the peer kept")
    if moved:
        detail += (f"; the router closed the connection anyguard was already Established on (6/7, "
                   f"the router still in OpenConfirm there) and the session moved to the one it kept "
                   f"({moved} move(s), no re-establishment)")
    elif late:
        detail += "; resolved by anyguard (6/7 sent on the late connection: the other was already Established)"
    elif ours_resolved:
        detail += "; resolved by anyguard (6/7 sent after its tie-break)"
    elif (sent.get("code"), sent.get("subcode")) == (6, 7):
        detail += f"; anyguard closed a connection {kind} had replaced by a new one (6/7)"
    elif (recv.get("code"), recv.get("subcode")) == (6, 7):
        detail += f"; resolved by {kind} (6/7 received)"
    elif opener == "router":
        detail += f"; {kind} closed anyguard's connection without a NOTIFICATION before any OPEN on it"
    else:
        detail += f"; {kind} gave up the connection it opened (no 6/7)"
    # FRR ending a session it had just established, on its own (see _frr_self_stops), and
    # anyguard seeing only the TCP close on it: the router's race, not a collision left to
    # resolve; anyguard must then connect again and keep that session (counted below).
    races = min(_frr_self_stops(base), _sessions_closed_by_peer(text)) if kind == "frr" else 0
    if races:
        detail += (f"; {kind} then ended the session it had just established itself, {races} time(s) "
                   "(bgpd.log: 'peer transfer' of the kept connection, then 'BGP_Stop "
                   "(Established->Clearing)' on it with nothing received from anyguard: its queued "
                   "stop for the connection it closed by 6/7 applied to the one it kept), anyguard "
                   "saw a TCP close without NOTIFICATION and connected again")
    # What failed, when something did (diagnosis: the counters moved, or not one connection).
    if before_theirs != after_theirs:
        detail += f"; {kind} before the wait: {before_theirs}"
    if len(kept) != 4:
        detail += f"; established connections at the end: {' '.join(kept) or 'none'}"
    # One session, established once on each side: no re-establishment is allowed, but for
    # the router's own race above (then once more per race, on both sides).
    ok = n >= 2 and collided and len(kept) == 4 and states == ("established", "established") \
        and (opener == want or not ours_resolved or late) \
        and after_ours.get("established_count") == 1 + races \
        and before_ours.get("established_count") == 1 + races and before_theirs == after_theirs
    if kind == "frr" and after_theirs:
        ok = ok and after_theirs.get("connectionsEstablished") == 1 + races \
            and after_theirs.get("connectionsDropped") == races
    return ok, detail, collided


# Lines of each log a failed collision row prints: a clean-clone CI run keeps no files,
# and the order of the two sides' opens, closes and NOTIFICATIONs is what tells a race.
EXCERPT_LINES = 60


def _log_collision_excerpt(base: Path):
    """The session lines of anyguard's log (its driver's debug lines say which side closed
    which connection) and the router's log, up to the first EXCERPT_LINES each."""
    for name, path, keep in (
            ("anyguard", base / "anyguard" / "anyguard.log", ("session::driver", "session established")),
            ("router", base / "router" / "bgpd.log", ("198.18.200.2", "ollision", "NOTIFICATION")),
            ("router", base / "router" / "bird.log", ("",))):
        if not path.exists():
            continue
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if any(k in ln for k in keep)]
        log(f"  {name} log {path.name}, {min(len(lines), EXCERPT_LINES)} of {len(lines)} session lines:")
        for ln in lines[:EXCERPT_LINES]:
            log(f"    {ln[:300]}")


def _frr_self_stops(base: Path) -> int:
    """Sessions FRR ended itself right after establishing them, with nothing from anyguard
    in between: FRR 8.4 resolves a collision on the OPEN of anyguard's connection (kept: the
    higher identifier opened it) by a 6/7 on its own connection, whose BGP_Stop is queued
    behind that write; anyguard's KEEPALIVE on the kept connection arrives meanwhile, FRR
    establishes it and moves it onto its peer entry ("peer transfer fd X -> ... fd Y"), and
    the queued stop then ends that session ("BGP_Stop (Established->Clearing), fd X"). Seen
    once in a clean-clone CI run and reproduced here with neighbor-event logging; any
    speaker that answers an OPEN at once can meet it. Counted only when bgpd.log shows no
    NOTIFICATION received and no close of that fd between the transfer and the stop."""
    path = base / "router" / "bgpd.log"
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    stops = 0
    for i, ln in enumerate(lines):
        m = re.search(r"peer transfer \S+ fd (\d+) -> ", ln)
        if not m:
            continue
        fd = m.group(1)
        for later in lines[i + 1:]:
            if f"connection closed fd {fd}" in later or "NOTIFICATION: received" in later:
                break
            if f"BGP_Stop (Established->Clearing), fd {fd}" in later:
                stops += 1
                break
    return stops


def _sessions_closed_by_peer(text: str) -> int:
    """anyguard's sessions that ended because the peer closed the TCP connection, with no
    NOTIFICATION sent or received by anyguard on that connection (its log gives every
    state change, NOTIFICATION and close with the connection's id)."""
    lost = 0
    for m in re.finditer(r"to=established conn=(\d+)", text):
        conn = m.group(1)
        rest = text[m.end():]
        down = rest.find("session down")
        span = rest if down < 0 else rest[:down]
        if down >= 0 and f"connection closed by peer conn={conn}" in span \
                and not re.search(rf"NOTIFICATION notification=\S+(?: \S+)* conn={conn}\b", span):
            lost += 1
    return lost


def poll_value(fn, good, timeout: float):
    """fn() until good(value) (bounded); the last value either way."""
    v = None
    for _ in range(int(timeout / 0.5) + 1):
        v = fn()
        if good(v):
            return v
        time.sleep(0.5)
    return v


def _cross_connections(router, rns, sns, conf, cfg, base):
    """Starts the router and anyguard so that each one's own connection and the other's
    reach OpenSent together (a real RFC 4271 §6.8 collision; on a veth the first connection
    otherwise completes in microseconds, before the other side tries). Each side drops its
    SYN-ACKs (a policy rule on source port 179), so both sides' connections hang in
    SYN-SENT; both daemons are frozen; the rules go, the kernels' retransmissions complete
    both handshakes; both daemons are thawed with two connections each."""
    for ns in (rns, sns):
        sh(["ip", "rule", "add", "ipproto", "tcp", "sport", "179", "blackhole"], ns=ns)
    router.start(conf)
    # The driver's debug lines say which side closed a connection.
    anyguard.start(sns, cfg, base / "anyguard", log="info,anyguard::session::driver=debug")
    anyguard.wait_status(sns, "127.0.0.1:9180")
    time.sleep(2)
    pids = [procs.pid_of(rns, router.procs()[-1]), procs.pid_of(sns, "anyguard")]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        for ns in (rns, sns):
            sh(["ip", "rule", "del", "ipproto", "tcp", "sport", "179", "blackhole"], ns=ns)

        def both():
            est = out(["ss", "-Htn", "state", "established", "( sport = :179 or dport = :179 )"], ns=sns)
            return len(est.splitlines()) >= 2
        poll_value(both, bool, 10)
        conns = out(["ss", "-Htn", "state", "established", "( sport = :179 or dport = :179 )"], ns=sns)
        (base / "connections.txt").write_text(conns)
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def run_extra(row: str, kind: str, variant: str):
    """One of issue 12's rows; returns (ok, detail), ok None when it cannot run. A collision
    row is tried again (at most COLLISION_TRIES times) when the thaw did not leave anyguard
    with two connections in OpenSent: then there was no collision to show."""
    if row != "collision":
        return _run_extra_once(row, kind, variant)[:2]
    why = ""
    for attempt in range(1, COLLISION_TRIES + 1):
        good, why, collided = _run_extra_once(row, kind, variant)
        if collided or good is None:
            return good, f"attempt {attempt}: {why}"
    return False, f"no collision in {COLLISION_TRIES} attempts; last: {why}"


def _run_extra_once(row: str, kind: str, variant: str):
    """One try of a row: (ok, detail, collided)."""
    adapter = ADAPTERS[kind]
    if adapter.missing():
        return None, f"{', '.join(adapter.missing())} not installed", True
    tag = f"{row}-{kind}" + (f"-{variant}" if variant else "")
    base = run_dir() / "interop" / tag
    sh(["rm", "-rf", str(base)])
    base.mkdir(parents=True)
    short = {"ibgp": "ib", "fast-timer": "ft", "collision": "co"}[row] + VARIANT_TAG.get(variant, "")
    rns, sns = f"{NS_PREFIX}x{short}-{kind[:4]}-r", f"{NS_PREFIX}x{short}-{kind[:4]}-s"
    p = _extra_peer(row, variant)
    try:
        for ns in (rns, sns):
            netns.add(ns)
        netns.veth(rns, "eth1", sns, "eth1")
        net = ["24"] if p["family"] == 4 else ["64", "nodad"]
        sh(["ip", "addr", "add", f"{p['router']}/{net[0]}", "dev", "eth1"] + net[1:], ns=rns)
        sh(["ip", "addr", "add", f"{p['speaker']}/{net[0]}", "dev", "eth1"] + net[1:], ns=sns)
        router = adapter(rns, base / "router")
        conf = base / f"{kind}.conf"
        router.dir.mkdir(parents=True, exist_ok=True)
        conf.write_text(router.render_interop([p]))
        cfg = anyguard_extra_config(row, p, base)
        if row == "collision":
            _cross_connections(router, rns, sns, conf, cfg, base)
        else:
            router.start(conf)
            anyguard.start(sns, cfg, base / "anyguard")
            anyguard.wait_status(sns, "127.0.0.1:9180")
        last = "no status"
        for _ in range(int(ESTABLISH_TIMEOUT / 0.5) + 1):
            ours = anyguard.peer_state(anyguard.status(sns, "127.0.0.1:9180"), "x")
            theirs = router.state(p["speaker"])
            last = f"anyguard {ours}, {kind} {theirs}"
            if ours == "established" and theirs == "established":
                break
            time.sleep(0.5)
        else:
            log(f"{tag}: logs under {base}")
            return False, f"not established: {last}", True
        if row == "ibgp":
            res = _check_ibgp(router, sns, base, p, kind) + (True,)
        elif row == "fast-timer":
            res = _check_fast_timer(router, sns, base, p, kind, rns) + (True,)
        else:
            res = _check_collision(router, sns, base, p, kind)
        if not res[0]:
            log(f"{tag}: logs under {base}")
            if row == "collision":
                _log_collision_excerpt(base)
        return res
    except Fail as e:
        return False, str(e), True
    finally:
        procs.stop(rns, "wiretap")
        procs.stop(sns, "anyguard")
        adapter(rns, base / "router").stop()
        for ns in (sns, rns):
            netns.delete(ns)


def write_table(all_results, path: Path, extra=None) -> None:
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
    if extra:
        lines += ["", "Protocol conformance (issue 12), one session per row (IPv4; iBGP over IPv6 too) on a namespace "
                  "pair of its own:", "",
                  "| row | router | result | what the run showed |", "|---|---|---|---|"]
        for (row, kind, variant), (good, why) in extra.items():
            name = EXTRA_TITLE[row] + (f" ({VARIANT_TITLE.get(variant, variant)})" if variant else "")
            cell = "skipped" if good is None else ("ok" if good else "FAIL")
            lines.append(f"| {name} | {kind} | {cell} | {why.replace('|', '/')} |")
        lines += ["", "- iBGP: router ASN = anyguard's (65101), over IPv4 (203.0.113.0/24) and over IPv6 "
                  "(2001:db8:100::/48 in MP_REACH_NLRI, an IPv6 session); `on_down = \"deprefer\"`, the health "
                  "file removed for the second value. A route carrying our own AS would be dropped by the router "
                  "as a loop, so the de-preferred route in its RIB also shows the empty AS_PATH.",
                  "- fast timers: anyguard `hold_time = \"3s\"`, FRR `timers 1 3`; KEEPALIVEs timed by "
                  "`nodes/bgp-wiretap.py` on the router's interface (kernel receive timestamps).",
                  "- collision: anyguard `mode = \"both\"` and the router connecting too, both identifier "
                  "orders. Each side drops its SYN-ACKs (`ip rule ... sport 179 blackhole`) while both daemons "
                  "start, both are frozen (SIGSTOP), the rules go, the kernels complete both handshakes, both "
                  "are thawed with two connections each (tried again, at most 3 times, when anyguard did not "
                  "get both to OpenSent). ok: the session is Established on both sides and stays so 20 s with "
                  "no flap in either side's counters; when anyguard itself sent the 6/7 before any connection "
                  "was Established, it kept the connection the higher identifier opened (RFC 4271 §6.8); "
                  "anyguard and the router each count one establishment (no re-establishment allowed, but for "
                  "FRR ending a session it had just established on its own, shown by its log, then one more "
                  "on each side, the row says so). In the "
                  "race where anyguard is already Established on one connection while the router, still in "
                  "OpenConfirm on it, gets the late OPEN on the other, anyguard holds a late connection the "
                  "identifiers favour (no KEEPALIVE) until the router's verdict and moves the session to it "
                  "when the router closes the other with 6/7 (the row says so when it happens)."]
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
    # LAB_ROWS=collision,ibgp: only those issue 12 rows, no matrix (and no table).
    if ctx.rows:
        only = []
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
    extra = {}
    for row, kind, variant in EXTRA_ROWS:
        if (ctx.routers and kind not in ctx.routers) or (ctx.rows and row not in ctx.rows):
            continue
        good, why = run_extra(row, kind, variant)
        extra[(row, kind, variant)] = (good, why)
        name = f"{row}/{kind}" + (f"/{variant}" if variant else "")
        log(f"{name}: {'ok' if good else ('skip' if good is None else 'FAIL')}: {why}")
        if good is None:
            skipped.append(name)
        elif good:
            ok += 1
        else:
            failed.append(f"{name} ({why})")
    if not ctx.routers and not ctx.rows:
        write_table(all_results, LAB_DIR / "results" / "interop.md", extra)
    if failed:
        raise Fail(f"{len(failed)} case(s) failed: " + "; ".join(failed))
    if skipped:
        # A partial matrix is not a pass.
        raise Skip(f"{len(skipped)} case(s) could not run ({', '.join(skipped)}); {ok} ok")
    return (f"{ok - len(extra)} sessions Established on both sides with the prefix in the router's RIB; "
            f"{len(extra)} issue 12 rows (iBGP, fast timers, collision) ok")
