#!/usr/bin/python3
"""The site's service and health target: answers every GET/HEAD with "site <name>".
Usage: site-http.py NAME ADDRESS [PORT]. Binds only to ADDRESS (the anycast service
address on the node's loopback), so the answer tells the client which site served it."""

import http.server
import socket
import socketserver
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(self.body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(self.body)

    do_HEAD = do_GET

    def log_message(self, fmt, *args):
        pass


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    # Not http.server.HTTPServer: its server_bind() resolves the bound address's name
    # (getfqdn), a DNS query that has nowhere to go from inside the lab and stalls startup.
    allow_reuse_address = True
    daemon_threads = True


def main():
    name, address = sys.argv[1], sys.argv[2]
    port = int(sys.argv[3]) if len(sys.argv) > 3 else 80
    Handler.body = f"site {name}\n".encode()
    Server.address_family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with Server((address, port), Handler) as srv:
        srv.serve_forever()


if __name__ == "__main__":
    main()
