#!/usr/bin/python3
"""ExaBGP API process for lab/bench/ingest: counts the prefixes ExaBGP hands it (every
`announce` NLRI of every parsed UPDATE, minus withdrawals) and keeps the running count in
the file named on the command line, rewritten at most every 50 ms and after the last line
of a burst (ExaBGP keeps no RIB: what it passed to its API is what it received)."""

import json
import os
import select
import sys
import time


def main():
    path = sys.argv[1]
    count, updates, dirty, last = 0, 0, True, 0.0

    def flush():
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{count} {updates}\n")
        os.replace(tmp, path)

    fd = sys.stdin.fileno()
    buf = b""
    while True:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                upd = msg.get("neighbor", {}).get("message", {}).get("update")
                if msg.get("type") != "update" or upd is None:
                    continue
                updates += 1
                for fam in upd.get("announce", {}).values():
                    for nlris in fam.values():
                        count += len(nlris)
                for nlris in upd.get("withdraw", {}).values():
                    count -= len(nlris)
                dirty = True
        now = time.monotonic()
        if dirty and (not ready or now - last >= 0.05):
            flush()
            dirty, last = False, now
    flush()


if __name__ == "__main__":
    main()
