#!/usr/bin/env python3
"""A small real DNS server (UDP, wire format) for the dns tests, loopback only.

It answers A/AAAA queries from a table given on the command line, so each
test controls TTLs and failure modes that a stock server makes hard to stage:
SERVFAIL, silence (the client must time out) and rebinding (the answer
changes after the first query). It counts queries per (name, type) and
rewrites --counts FILE after each one ("name TYPE count" lines), so a test
can prove a cache hit or a coalesced lookup sent nothing.

Unknown names get NXDOMAIN; a known name without records of the asked type
gets an empty NOERROR (NODATA). Prints "READY <port>" once bound.

  fake_dns_server.py --a a.test=127.0.0.5 --aaaa a.test=::5 --ttl a.test=1 \
      --servfail sf.test --silent quiet.test --rebind re.test=93.184.216.34,127.0.0.1 \
      --counts /tmp/counts
"""
import argparse
import collections
import ipaddress
import os
import signal
import socket
import struct
import sys

TYPE_A, TYPE_AAAA = 1, 28
TYPE_NAMES = {TYPE_A: "A", TYPE_AAAA: "AAAA"}
NOERROR, SERVFAIL, NXDOMAIN = 0, 2, 3


def pairs(values):
    out = {}
    for item in values or []:
        name, _, value = item.partition("=")
        out.setdefault(name.lower(), []).extend(v for v in value.split(",") if v)
    return out


def parse_question(packet):
    """(id, flags, qname, qtype, end offset of the question) or None."""
    if len(packet) < 12:
        return None
    ident, flags, qdcount = struct.unpack("!HHH", packet[:6])
    if qdcount != 1:
        return None
    labels, pos = [], 12
    while pos < len(packet):
        length = packet[pos]
        pos += 1
        if length == 0:
            break
        labels.append(packet[pos:pos + length].decode("ascii", "replace"))
        pos += length
    if pos + 4 > len(packet):
        return None
    qtype, _qclass = struct.unpack("!HH", packet[pos:pos + 4])
    return ident, flags, ".".join(labels).lower(), qtype, pos + 4


class Server:
    def __init__(self, args):
        self.a = pairs(args.a)
        self.aaaa = pairs(args.aaaa)
        self.ttl = {k: int(v[0]) for k, v in pairs(args.ttl).items()}
        self.servfail = {n.lower() for n in args.servfail or []}
        self.silent = {n.lower() for n in args.silent or []}
        self.rebind = pairs(args.rebind)
        self.counts_path = args.counts
        self.counts = collections.Counter()

    def records(self, name, qtype):
        count = self.counts[(name, TYPE_NAMES.get(qtype, str(qtype)))]
        if name in self.rebind:
            first, second = self.rebind[name][0], self.rebind[name][1]
            return [first if count <= 1 else second] if qtype == TYPE_A else []
        table = self.a if qtype == TYPE_A else self.aaaa if qtype == TYPE_AAAA else {}
        return table.get(name, [])

    def known(self, name):
        return name in self.a or name in self.aaaa or name in self.rebind

    def answer(self, packet):
        parsed = parse_question(packet)
        if parsed is None:
            return None
        ident, flags, name, qtype, end = parsed
        self.counts[(name, TYPE_NAMES.get(qtype, str(qtype)))] += 1
        self.write_counts()
        if name in self.silent:
            return None
        rcode, rdatas = NOERROR, []
        if name in self.servfail:
            rcode = SERVFAIL
        elif not self.known(name):
            rcode = NXDOMAIN
        else:
            rdatas = [ipaddress.ip_address(ip).packed for ip in self.records(name, qtype)]
        reply_flags = 0x8000 | (flags & 0x7900) | 0x0400 | 0x0080 | rcode  # QR, opcode+RD, AA, RA
        header = struct.pack("!HHHHHH", ident, reply_flags, 1, len(rdatas), 0, 0)
        body = b"".join(struct.pack("!HHHIH", 0xC00C, qtype, 1, self.ttl.get(name, 60), len(r)) + r
                        for r in rdatas)
        return header + packet[12:end] + body

    def write_counts(self):
        if not self.counts_path:
            return
        tmp = self.counts_path + ".tmp"
        with open(tmp, "w") as f:
            for (name, qtype), n in sorted(self.counts.items()):
                f.write(f"{name} {qtype} {n}\n")
        os.replace(tmp, self.counts_path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("--a", "--aaaa", "--ttl", "--servfail", "--silent", "--rebind"):
        parser.add_argument(flag, action="append")
    parser.add_argument("--counts")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = Server(args)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", args.port))  # loopback only, by design
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.write_counts()
    print(f"READY {sock.getsockname()[1]}", flush=True)
    while True:
        packet, peer = sock.recvfrom(4096)
        reply = server.answer(packet)
        if reply is not None:
            sock.sendto(reply, peer)


if __name__ == "__main__":
    main()
