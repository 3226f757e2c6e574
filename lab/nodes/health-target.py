#!/usr/bin/python3
"""A health target whose failure is instantaneous and timestamped, for the `health` lab
scenario and the withdrawal-latency benchmark.

Usage: health-target.py ADDRESS PORT EVENTS_FILE

Answers GET/HEAD with 200 "ok" while healthy and 503 "failing" while failing. SIGUSR1
switches to failing, SIGUSR2 back to healthy. Every switch and every request is appended
to EVENTS_FILE as one JSON line with the wall-clock time (time.time(), CLOCK_REALTIME, the
clock `ip -ts monitor` prints too), so a benchmark can tell exactly when the failure began
(the switch) and when anyguard's probes saw it (the requests answered 503).

The switch is taken in the signal handler, which Python runs in the main thread as soon as
the signal interrupts serve_forever's select(): well under a millisecond after the kill."""

import http.server
import json
import signal
import sys
import threading
import time

from plainhttp import answer, server


class State:
    healthy = True
    lock = threading.Lock()
    events = None

    @classmethod
    def record(cls, **fields):
        line = json.dumps(dict(t=time.time(), **fields)) + "\n"
        with cls.lock:
            cls.events.write(line)
            cls.events.flush()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        # Read the flag once: the answer and the logged status always agree.
        healthy = State.healthy
        code, body = (200, b"ok\n") if healthy else (503, b"failing\n")
        State.record(event="request", status=code, path=self.path)
        answer(self, code, body)

    do_HEAD = do_GET

    def log_message(self, fmt, *args):
        pass


def switch(healthy: bool):
    def handler(_signum, _frame):
        State.healthy = healthy
        State.record(event="switch", healthy=healthy)
    return handler


def main():
    address, port, events = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    State.events = open(events, "a", buffering=1)
    signal.signal(signal.SIGUSR1, switch(False))
    signal.signal(signal.SIGUSR2, switch(True))
    with server(address, port, Handler) as srv:
        State.record(event="listening", healthy=State.healthy)
        # A short poll interval keeps the main thread (where the handlers run) responsive
        # even if a signal lands between select() calls.
        srv.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    main()
