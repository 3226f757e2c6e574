#!/usr/bin/python3
"""The site's service and health target: answers every GET/HEAD with "site <name>".
Usage: site-http.py NAME ADDRESS [PORT]. Binds only to ADDRESS (the anycast service
address on the node's loopback), so the answer tells the client which site served it."""

import http.server
import sys

from plainhttp import answer, server


class Handler(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self):
        answer(self, 200, self.body)

    do_HEAD = do_GET

    def log_message(self, fmt, *args):
        pass


def main():
    name, address = sys.argv[1], sys.argv[2]
    port = int(sys.argv[3]) if len(sys.argv) > 3 else 80
    Handler.body = f"site {name}\n".encode()
    with server(address, port, Handler) as srv:
        srv.serve_forever()


if __name__ == "__main__":
    main()
