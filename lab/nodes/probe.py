#!/usr/bin/python3
"""The client's view: HTTP GETs to URL at a fixed spacing, one new TCP connection each (so a
routing change shows at once), each bounded by a short timeout; one JSON line per request
with its CLOCK_MONOTONIC time and the site that answered (null for no answer). Stops after
DURATION seconds, at most COUNT requests, or when STOPFILE appears.
Usage: probe.py URL SPACING_S TIMEOUT_S DURATION_S COUNT OUT [STOPFILE]"""

import json
import os
import socket
import sys
import time
from urllib.parse import urlsplit


def get(host, port, path, timeout):
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            data = b""
            while len(data) < 4096:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.") or b" 200 " not in head.split(b"\r\n")[0]:
            return None
        return body.decode(errors="replace").strip()
    except OSError:
        return None


def main():
    url, spacing, timeout, duration, count, outp = sys.argv[1:7]
    stop = sys.argv[7] if len(sys.argv) > 7 else None
    u = urlsplit(url)
    spacing, timeout, duration, count = float(spacing), float(timeout), float(duration), int(count)
    start = time.monotonic()
    nxt = start
    with open(outp, "w", buffering=1) as f:
        for _ in range(count):
            now = time.monotonic()
            if now - start > duration or (stop and os.path.exists(stop)):
                break
            answer = get(u.hostname, u.port or 80, u.path or "/", timeout)
            # CLOCK_MONOTONIC is system-wide: the scenario compares these with its own times.
            f.write(json.dumps({"t": round(now, 4), "site": answer}) + "\n")
            nxt += spacing
            delay = nxt - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                nxt = time.monotonic()


if __name__ == "__main__":
    main()
