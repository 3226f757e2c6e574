"""What the lab's small HTTP servers share: a threading TCP server that binds to one
address of either family, and a plain-text answer that closes the connection."""

import socket
import socketserver


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    # Not http.server.HTTPServer: its server_bind() resolves the bound address's name
    # (getfqdn), a DNS query that has nowhere to go from inside the lab and stalls startup.
    allow_reuse_address = True
    daemon_threads = True


def server(address: str, port: int, handler) -> Server:
    """A server bound to ADDRESS only (IPv4 or IPv6, from its form)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    cls = type("BoundServer", (Server,), {"address_family": family})
    return cls((address, port), handler)


def answer(handler, code: int, body: bytes):
    """Send CODE with a text/plain BODY (none for HEAD) and close the connection."""
    handler.send_response(code)
    handler.send_header("Content-Type", "text/plain")
    handler.send_header("Content-Length", str(len(body)))
    handler.send_header("Connection", "close")
    handler.end_headers()
    if handler.command == "GET":
        handler.wfile.write(body)
