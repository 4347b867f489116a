#!/usr/bin/env python3
"""Bulk bytes through one plain CONNECT tunnel, raw TCP (a raw_tcp rule, so
no TLS on either side): throughput and egress's CPU per GiB, up (worker →
upstream) and down, for each binary given, interleaved run by run. CPU is
read from /proc/PID/stat (all of egress's threads) around the transfer, so
it holds on a busy machine better than throughput does. The upstream and
the worker are this script (Python, 1 MiB system calls), the same for
every binary. For the splice relay against the copy relay
(docs/performance.md, "Zero-copy tunnels"):

    python3 tests/bench/tunnel_bulk.py --egress /work/main/build/egress --egress build/egress \\
        [--mib 1024] [--runs 3]

Loopback only; every process it starts is stopped by PID.
"""
import argparse
import os
import shutil
import socket
import statistics
import tempfile
import threading
import time

from loopback import free_port, start_egress, stop

POLICY = """\
version: 1
mode: self-hosted
internal:
  - host: raw.test
    ports: any
    raw_tcp: true
"""
CONFIG = """\
dns:
  hosts_file: false
  hosts: {raw.test: [127.0.0.1]}
log_level: warn
"""
CHUNK = 1 << 20


class Upstream:
    """Per connection, the first line says what to do: "up" reads to EOF,
    "down N" sends N bytes and closes."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _serve(conn):
        with conn:
            line = b""
            while not line.endswith(b"\n"):
                line += conn.recv(1)
            words = line.split()
            if words[0] == b"up":
                buffer = bytearray(CHUNK)
                while conn.recv_into(buffer):
                    pass
            else:
                block, left = memoryview(os.urandom(CHUNK)), int(words[1])
                while left > 0:
                    left -= conn.send(block[:min(left, CHUNK)])


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def transfer(proxy_port, upstream_port, direction, size):
    """Seconds to move `size` bytes through a new tunnel."""
    s = socket.create_connection(("127.0.0.1", proxy_port), timeout=60)
    with s:
        s.sendall(b"CONNECT raw.test:%d HTTP/1.1\r\nHost: raw.test\r\n\r\n" % upstream_port)
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += s.recv(1)
        assert head.startswith(b"HTTP/1.1 200"), head
        started = time.perf_counter()
        if direction == "up":
            s.sendall(b"up\n")
            block, left = memoryview(os.urandom(CHUNK)), size
            while left > 0:
                left -= s.send(block[:min(left, CHUNK)])
            s.shutdown(socket.SHUT_WR)
            while s.recv(CHUNK):  # the upstream closes after reading to EOF
                pass
        else:
            s.sendall(b"down %d\n" % size)
            buffer, got = bytearray(CHUNK), 0
            while True:
                n = s.recv_into(buffer)
                if not n:
                    break
                got += n
            assert got == size, (got, size)
        return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--egress", action="append", required=True, help="binary (repeat to compare)")
    parser.add_argument("--mib", type=int, default=1024, help="MiB per transfer")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="egress-tunnel-bulk-")
    upstream = Upstream()
    started = []
    try:
        for i, binary in enumerate(args.egress):
            directory = os.path.join(work, str(i))
            os.makedirs(directory)
            started.append(start_egress(binary, directory, policy=POLICY, config=CONFIG))
        size = args.mib << 20
        results = {(i, d): [] for i in range(len(args.egress)) for d in ("up", "down")}
        for run in range(args.runs):
            order = list(range(len(args.egress)))
            if run % 2:
                order.reverse()
            for i in order:
                process, port = started[i]
                for direction in ("up", "down"):
                    before = cpu_seconds(process.pid)
                    seconds = transfer(port, upstream.port, direction, size)
                    time.sleep(0.2)  # the close event and the tunnel's teardown count too
                    results[(i, direction)].append((seconds, cpu_seconds(process.pid) - before))
        print("| binary | direction | MiB/s, median (min–max) | egress CPU s per GiB, median (min–max) |")
        print("|---|---|---|---|")
        for (i, direction), runs in results.items():
            rates = [args.mib / s for s, _ in runs]
            cpu = [c / (args.mib / 1024) for _, c in runs]
            print("| %s | %s | %.0f (%.0f–%.0f) | %.3f (%.3f–%.3f) |" % (
                args.egress[i], direction, statistics.median(rates), min(rates), max(rates),
                statistics.median(cpu), min(cpu), max(cpu)))
    finally:
        for process, _ in started:
            stop(process)
        upstream.sock.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
