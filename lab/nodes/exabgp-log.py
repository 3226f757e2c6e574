#!/usr/bin/python3
"""ExaBGP API process: appends every JSON message ExaBGP writes (neighbor state changes,
received updates) to the file named on the command line, so the lab can read ExaBGP's own
view of a session and of what it received."""

import sys

with open(sys.argv[1], "a", buffering=1) as f:
    for line in sys.stdin:
        f.write(line if line.endswith("\n") else line + "\n")
