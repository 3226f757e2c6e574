"""BFD with the routers (operators' wish 2): against BIRD 2 (`protocol bfd`, `bfd on` in the
BGP protocols) and FRR (bfdd, `neighbor X bfd`), each in a namespace pair with one anyguard
(labkit/healthpair.py) running BFD on its IPv4 and IPv6 sessions at 100 ms / 100 ms / 3:

1. both BFD sessions come Up: in the router's own CLI (`birdc show bfd sessions`,
   `vtysh -c 'show bfd peers json'`) and in anyguard's /status (state, discriminators,
   detection time); 203.0.113.0/24 and 2001:db8:100::/48 are in the router's RIB and FIB;
2. anyguard is frozen with SIGSTOP: a hung host, whose TCP connections stay open, so
   without BFD the router would wait for its hold timer (9 s here, 90 s by default). The
   router's BFD detects the silence, drops the BGP sessions and the prefixes leave its RIB
   and FIB. Measured from just before the SIGSTOP to the later of the two RTM_DELROUTEs
   (`ip -ts monitor route` in the router's namespace, as in the health scenario), printed;
   only a generous bound is asserted (< 10 s: what BFD buys is well under the hold time);
3. SIGCONT: anyguard notices the router's Down, its BFD and BGP sessions come back, the
   prefixes return; BFD Up again on both sides.

4. a reload (SIGHUP) that changes only `bfd` (100 ms -> 250 ms): the same BFD sessions
   (same discriminators, still Up in the router's CLI) re-tuned through a Poll Sequence
   (detection time 3 x 250 ms in /status), the BGP sessions untouched (still Established,
   not re-established).

Steps 2 and 3 run three times per router (three samples); anyguard must count exactly one
BFD failure per freeze and session. BIRD restarts a BGP session that BFD took down only
after its `error wait time` (default 60 s, growing): the scenario's BIRD sets it to 1–10 s.

The PASS line prints the detection figures per router; docs/lab-benchmarks.md keeps them."""

import os
import random
import signal
import time

from labkit import anyguard, procs
from labkit.healthpair import PREFIX, STATUS, Pair, _addr
from labkit.routers import ADAPTERS
from labkit.util import Fail, Skip, log, poll

NAME = "bfd"
NEEDS = ("curl", "ip")
TOPOLOGY = False

ROUTERS = ["bird", "frr"]
BFD = {"min_tx_ms": 100, "min_rx_ms": 100, "multiplier": 3}
# Generous: the expected figure is about multiplier x interval (300 ms) plus the router's
# reaction; the hold time is 9 s.
DETECT_BOUND = 10.0
# How long anyguard stays frozen each time, and how many times.
FROZEN_FOR = 3.0
FREEZES = 3


def _ms(s: float) -> str:
    return f"{s * 1000:.0f} ms"


def _bfd_status(pair: Pair):
    doc = anyguard.status(pair.sns, STATUS)
    return {p["name"]: (p.get("bfd") or {}) for p in doc.get("peers", [])}


def _wait_bfd_up(pair: Pair, timeout: float):
    """Both sessions Up in the router's CLI and in anyguard's status; returns anyguard's view."""
    last = {}

    def up():
        last["router"] = {fam: pair.router.bfd_state(_addr(fam, 2)) for fam in (4, 6)}
        last["anyguard"] = _bfd_status(pair)
        return all(s == "up" for s in last["router"].values()) and \
            all(b.get("state") == "up" for b in last["anyguard"].values()) and len(last["anyguard"]) == 2
    try:
        poll(f"BFD Up with {pair.kind} on both sessions", up, timeout, 0.1)
    except Fail as e:
        raise Fail(f"{e}: router says {last.get('router')}, anyguard says "
                   f"{ {n: b.get('state') for n, b in last.get('anyguard', {}).items()} } "
                   f"(logs under {pair.base})") from None
    return last["anyguard"]


def _retune(pair: Pair, before: dict) -> dict:
    """A reload that changes only `bfd` (100 ms -> 250 ms): the same BFD sessions, re-tuned
    by a Poll Sequence, BGP untouched. Returns anyguard's view of the peers afterwards."""
    cfg = pair.base / "anyguard.toml"
    old = 'min_tx = "100ms", min_rx = "100ms"'
    if old not in cfg.read_text():
        raise Fail(f"the generated config has no {old!r}")
    cfg.write_text(cfg.read_text().replace(old, 'min_tx = "250ms", min_rx = "250ms"'))
    os.kill(procs.pid_of(pair.sns, "anyguard"), signal.SIGHUP)
    last = {}

    def retuned():
        doc = anyguard.status(pair.sns, STATUS) or {}
        last.update({p["name"]: p for p in doc.get("peers", [])})
        return len(last) == 2 and all((p.get("bfd") or {}).get("tx_interval_ms") == 250 for p in last.values())
    poll("BFD re-tuned to 250 ms by the reload", retuned, 15, 0.1)
    for name, p in last.items():
        b = p["bfd"]
        if p["state"] != "established" or p["established_count"] != before[name]["established_count"]:
            raise Fail(f"{pair.kind}: {name}: the BGP session was touched by a bfd-only reload: {p['state']}, "
                       f"established {p['established_count']} times")
        if b["local_discriminator"] != before[name]["bfd"]["local_discriminator"] or b["state"] != "up":
            raise Fail(f"{pair.kind}: {name}: not the same Up BFD session after the reload: {b}")
        if b["detection_time_ms"] != 750:
            raise Fail(f"{pair.kind}: {name}: detection time {b['detection_time_ms']} ms, expected 3 x 250 ms")
    router = {fam: pair.router.bfd_state(_addr(fam, 2)) for fam in (4, 6)}
    if any(s != "up" for s in router.values()):
        raise Fail(f"{pair.kind}: the router's BFD sessions after the reload: {router}")
    return last


def measure(kind: str, freezes: int = FREEZES, tag: str = "bf", rng=random, retune: bool = False) -> dict:
    """One namespace pair with BFD on both sessions; `freezes` times: SIGSTOP anyguard (after
    a random 0.2-0.6 s, so that the freeze falls at a random phase of its BFD packets),
    time the prefixes leaving the router's FIB, SIGCONT, wait until they are back. Raises
    Fail when something does not happen; returns the figures (seconds) for the caller to
    print: gone [{4: s, 6: s}, ...], back [s, ...], up_after, detect_ms, failures. With
    `retune`, then a reload that changes only `bfd` (see `_retune`)."""
    pair = Pair(kind, interval="100ms", fall=2, rise=2, hold_down="0s", tag=tag, bfd=BFD)
    frozen = False
    pid = None
    try:
        pair.up()
        pair.wait_present()
        ours = _bfd_status(pair)
        for name, b in ours.items():
            if b.get("state") != "up" and b.get("note") is None and b.get("up_count", 0) == 0:
                raise Fail(f"{kind}: {name}: BFD not up and no note in /status: {b}")
        t_start = time.monotonic()
        ours = _wait_bfd_up(pair, 30.0)
        up_after = time.monotonic() - t_start
        for name, b in ours.items():
            if not b.get("remote_discriminator") or b.get("detection_time_ms") is None:
                raise Fail(f"{kind}: {name}: Up without discriminators or detection time: {b}")
        detect_ms = {n: b["detection_time_ms"] for n, b in ours.items()}
        pid = procs.pid_of(pair.sns, "anyguard")
        if not pid:
            raise Fail("anyguard is not running")
        samples, backs = [], []
        after = ours
        for _ in range(freezes):
            time.sleep(rng.uniform(0.2, 0.6))
            # 2. The hung host.
            fib_before = len(pair.fib_events())
            t_stop = time.time()
            os.kill(pid, signal.SIGSTOP)
            frozen = True
            want = {PREFIX[4], PREFIX[6]}

            def removed():
                gone = {}
                for t, what, prefix in pair.fib_events()[fib_before:]:
                    if what == "del" and prefix in want and prefix not in gone:
                        gone[prefix] = t
                return gone if len(gone) == len(want) else None
            gone = poll(f"{kind} to drop both prefixes while anyguard is frozen", removed, DETECT_BOUND + 5, 0.01)
            took = {fam: gone[PREFIX[fam]] - t_stop for fam in (4, 6)}
            worst = max(took.values())
            if worst >= DETECT_BOUND:
                raise Fail(f"{kind}: the prefixes left after {worst:.1f} s, expected BFD well under the hold time")
            samples.append(took)
            poll(f"{kind}'s CLI to show both prefixes gone",
                 lambda: not pair.in_rib(4) and not pair.in_rib(6), 3, 0.05)
            router_bfd = {fam: pair.router.bfd_state(_addr(fam, 2)) for fam in (4, 6)}
            if any(s == "up" for s in router_bfd.values()):
                raise Fail(f"{kind}: BFD still Up in the router's CLI with anyguard frozen: {router_bfd}")
            # Frozen a little longer: the router's view settles (and TCP is still open).
            time.sleep(max(0.0, FROZEN_FOR - (time.time() - t_stop)))

            # 3. The host comes back.
            t_cont = time.monotonic()
            os.kill(pid, signal.SIGCONT)
            frozen = False
            pair.wait_present(timeout=45.0)
            backs.append(time.monotonic() - t_cont)
            after = _wait_bfd_up(pair, 30.0)
        # Each freeze: the router's Down reached anyguard on resume, one failure per session.
        failures = {n: b.get("failures", 0) for n, b in after.items()}
        if any(f != freezes for f in failures.values()):
            raise Fail(f"{kind}: anyguard counted BFD failures {failures}, expected {freezes} each")
        if retune:
            before = {p["name"]: p for p in (anyguard.status(pair.sns, STATUS) or {}).get("peers", [])}
            _retune(pair, before)
        return {"gone": samples, "back": backs, "up_after": up_after, "detect_ms": detect_ms,
                "failures": failures, "retuned": retune}
    finally:
        if frozen and pid:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        pair.down()


def run_router(kind: str) -> str:
    r = measure(kind, retune=True)
    gone_txt = ", ".join(f"{_ms(t[4])}/{_ms(t[6])}" for t in r["gone"])
    worst_all = max(max(t.values()) for t in r["gone"])
    log(f"{kind}: BFD up {r['up_after']:.1f} s after the routes; detection time (anyguard's view of the "
        f"router) {r['detect_ms']}; {FREEZES} freezes -> prefixes gone (v4/v6) {gone_txt}; "
        f"SIGCONT -> back after {', '.join(f'{b:.1f} s' for b in r['back'])}; "
        f"anyguard BFD failures {r['failures']}")
    return (f"{kind}: BFD Up (CLI + /status); SIGSTOP x{FREEZES} -> prefixes gone (v4/v6) {gone_txt}, "
            f"worst {_ms(worst_all)} (hold time 9 s); SIGCONT -> back {max(r['back']):.1f} s at most; "
            f"bfd-only reload: re-tuned to 250 ms, BGP untouched")


def run(ctx):
    only = [r for r in ROUTERS if not ctx.routers or r in ctx.routers]
    if not only:
        raise Fail(f"LAB_ROUTERS selects none of {', '.join(ROUTERS)}")
    missing = sorted({b for kind in only for b in ADAPTERS[kind].missing()})
    if kind_missing := [k for k in only if k == "frr" and not os.access("/usr/lib/frr/bfdd", os.X_OK)]:
        missing += [f"{k}: bfdd" for k in kind_missing]
    if missing:
        raise Skip(f"missing {', '.join(missing)}")
    return "; ".join(run_router(kind) for kind in only)
