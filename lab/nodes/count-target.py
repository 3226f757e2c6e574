#!/usr/bin/python3
"""A health target that only counts, for the probe-cost benchmark: answers every GET/HEAD
with 200 "ok" and keeps one counter of the requests; GET /count answers {"requests": N}
(not counted). Nothing is logged per request, so that the target costs as little as it can
(its CPU is measured apart and not charged to the checker).

Usage: count-target.py ADDRESS PORT EVENTS_FILE   (EVENTS_FILE gets one "listening" line)"""

import http.server
import json
import sys
import threading
import time

from plainhttp import answer, server

LOCK = threading.Lock()
COUNT = [0]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/count":
            with LOCK:
                n = COUNT[0]
            answer(self, 200, json.dumps({"requests": n}).encode())
            return
        with LOCK:
            COUNT[0] += 1
        answer(self, 200, b"ok\n")

    do_HEAD = do_GET

    def log_message(self, fmt, *args):
        pass


def main():
    address, port, events = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with server(address, port, Handler) as srv:
        with open(events, "a") as f:
            f.write(json.dumps({"t": time.time(), "event": "listening"}) + "\n")
        srv.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    main()
