#!/usr/bin/python3
"""A passive tap on one interface that timestamps every BGP UPDATE crossing it, for the
withdrawal-latency benchmark (no tcpdump needed, nothing is ever sent).

Usage: bgp-wiretap.py IFACE OUTFILE SECONDS [keepalives]

With `keepalives`, every KEEPALIVE crossing the interface gets a line too: {"t", "src",
"keepalive": true} (the fast-timer row of the interop scenario: RFC 4271 §4.4's one per
second at most, seen from the wire).

One JSON line per UPDATE: {"t": kernel receive time (SO_TIMESTAMPNS, CLOCK_REALTIME),
"src": source address, "withdraw": [families], "announce": [families]}. IPv4 unicast is
read from the classic Withdrawn Routes / NLRI fields, other families from MP_REACH_NLRI /
MP_UNREACH_NLRI (RFC 4760 §3, §4). Exits after SECONDS (a bounded helper)."""

import json
import select
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
BGP_PORT = 179
MARKER = b"\xff" * 16
UPDATE = 2
KEEPALIVE = 4
MP_REACH, MP_UNREACH = 14, 15


def tcp_payload(frame: bytes):
    """(source address, TCP payload) of a BGP segment in an Ethernet frame, else None."""
    if len(frame) < 14:
        return None
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    ip = frame[14:]
    if ethertype == 0x0800 and len(ip) >= 20 and ip[9] == 6:
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack_from("!H", ip, 2)[0]
        src, tcp = socket.inet_ntop(socket.AF_INET, ip[12:16]), ip[ihl:total]
    elif ethertype == 0x86DD and len(ip) >= 40 and ip[6] == 6:
        plen = struct.unpack_from("!H", ip, 4)[0]
        src, tcp = socket.inet_ntop(socket.AF_INET6, ip[8:24]), ip[40:40 + plen]
    else:
        return None
    if len(tcp) < 20:
        return None
    sport, dport = struct.unpack_from("!HH", tcp, 0)
    if BGP_PORT not in (sport, dport):
        return None
    return src, tcp[(tcp[12] >> 4) * 4:]


def messages(payload: bytes):
    """(type, body) of each complete BGP message in the segment."""
    off = 0
    while off + 19 <= len(payload) and payload[off:off + 16] == MARKER:
        length, mtype = struct.unpack_from("!HB", payload, off + 16)
        if length < 19 or off + length > len(payload):
            return
        yield mtype, payload[off + 19:off + length]
        off += length


def updates(payload: bytes):
    """The (withdraw, announce) family sets of each complete UPDATE in the segment."""
    for mtype, body in messages(payload):
        if mtype == UPDATE:
            yield parse_update(body)


def parse_update(body: bytes):
    withdraw, announce = set(), set()
    wlen = struct.unpack_from("!H", body, 0)[0]
    if wlen:
        withdraw.add("ipv4")
    alen = struct.unpack_from("!H", body, 2 + wlen)[0]
    attrs = body[4 + wlen:4 + wlen + alen]
    if len(body) > 4 + wlen + alen:
        announce.add("ipv4")
    i = 0
    while i + 3 <= len(attrs):
        flags, code = attrs[i], attrs[i + 1]
        if flags & 0x10:  # extended length
            alen_i, hdr = struct.unpack_from("!H", attrs, i + 2)[0], 4
        else:
            alen_i, hdr = attrs[i + 2], 3
        value = attrs[i + hdr:i + hdr + alen_i]
        if code in (MP_REACH, MP_UNREACH) and len(value) >= 3:
            afi = struct.unpack_from("!H", value, 0)[0]
            fam = {1: "ipv4", 2: "ipv6"}.get(afi, f"afi{afi}")
            # An MP_UNREACH with no NLRI is End-of-RIB (RFC 4724 §2), not a withdrawal.
            if code == MP_UNREACH and len(value) > 3:
                withdraw.add(fam)
            elif code == MP_REACH:
                announce.add(fam)
        i += hdr + alen_i
    return sorted(withdraw), sorted(announce)


def main():
    iface, outfile, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    keepalives = sys.argv[4:5] == ["keepalives"]
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    s.bind((iface, 0))
    deadline = time.monotonic() + seconds
    with open(outfile, "a", buffering=1) as out:
        out.write(json.dumps({"t": time.time(), "event": "listening", "iface": iface}) + "\n")
        while time.monotonic() < deadline:
            ready, _, _ = select.select([s], [], [], 0.5)
            if not ready:
                continue
            frame, anc, _flags, addr = s.recvmsg(65535, 64)
            if addr[2] == socket.PACKET_OUTGOING:
                continue  # only what reaches the router
            stamp = time.time()
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
                    sec, nsec = struct.unpack_from("qq", data)
                    stamp = sec + nsec / 1e9
            seg = tcp_payload(frame)
            if not seg:
                continue
            src, payload = seg
            if keepalives:
                for mtype, _body in messages(payload):
                    if mtype == KEEPALIVE:
                        out.write(json.dumps({"t": stamp, "src": src, "keepalive": True}) + "\n")
            for withdraw, announce in updates(payload):
                out.write(json.dumps({"t": stamp, "src": src, "withdraw": withdraw,
                                      "announce": announce}) + "\n")


if __name__ == "__main__":
    main()
