"""Health drives the routers' RIBs (issue 4, "What it must show", third bullet): against
BIRD and against FRR, each in a namespace pair with one anyguard (labkit/healthpair.py),
the service's IPv4 and IPv6 prefixes (203.0.113.0/24, 2001:db8:100::/48)

1. appear in the router's RIB (its own CLI: birdc / vtysh) and FIB while the local HTTP
   health target answers 200;
2. leave them when the target answers 503, twice (the two times are a smoke run of
   bench/withdraw-latency: same measurement), and come back when it answers 200 again;
3. leave them when the target is killed (connection refused), and come back when it is
   started again.

The check runs at interval = 100ms, fall = 2, rise = 2, with the default hold_down (1s,
doubling with each flap), so each reappearance includes that hold-down. The PASS line
prints the observed times: for each withdrawal the time from the failure to the later of
the two prefixes leaving the router's FIB (T0 and T1 as in the benchmark), for each
recovery the time from the target healing to both prefixes being back in RIB and FIB."""

import time

from labkit.healthpair import Pair
from labkit.routers import ADAPTERS
from labkit.util import Fail, Skip, log

NAME = "health"
NEEDS = ("curl", "ip")
TOPOLOGY = False

ROUTERS = ["bird", "frr"]


def _ms(s: float) -> str:
    return f"{s * 1000:.0f} ms"


def run_router(kind: str) -> str:
    pair = Pair(kind, interval="100ms", fall=2, rise=2, hold_down="1s", tag="hs")
    try:
        pair.up()
        pair.wait_present()
        appear = time.monotonic() - pair.started_at
        if pair.service_state() != "up":
            raise Fail(f"{kind}: routes present but anyguard says web is {pair.service_state()}")
        gone, back = [], []
        for how in ("503", "503", "kill"):
            r = pair.measure_withdrawal(how=how)
            gone.append(f"{how} {_ms(max(r['fib'].values()))}")
            state = pair.service_state()
            if state != "down":
                raise Fail(f"{kind}: after the {how} failure anyguard says web is {state!r}, expected down")
            pair.wait_absent(timeout=2.0)
            # Still gone a moment later: the withdrawal is not a blip.
            time.sleep(0.3)
            if pair.in_rib(4) or pair.in_rib(6):
                raise Fail(f"{kind}: a prefix came back while the target was still failing")
            t = time.monotonic()
            if how == "kill":
                pair.start_target()
            else:
                pair.heal()
            pair.wait_present(timeout=20.0)
            back.append(f"{time.monotonic() - t:.1f} s")
            if pair.service_state() != "up":
                raise Fail(f"{kind}: routes back but anyguard says web is {pair.service_state()!r}")
        log(f"{kind}: appeared after {appear:.1f} s; gone {', '.join(gone)}; back {', '.join(back)}")
        return f"{kind}: v4+v6 in RIB {appear:.1f} s after start, gone after {' / '.join(gone)}, back after {' / '.join(back)}"
    finally:
        pair.down()


def run(ctx):
    only = [r for r in ROUTERS if not ctx.routers or r in ctx.routers]
    if not only:
        raise Fail(f"LAB_ROUTERS selects none of {', '.join(ROUTERS)}")
    missing = sorted({b for kind in only for b in ADAPTERS[kind].missing()})
    if missing:
        # Half the proof is no proof: both routers or a loud skip.
        raise Skip(f"missing {', '.join(missing)}")
    return "; ".join(run_router(kind) for kind in only)
