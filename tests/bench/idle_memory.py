"""Memory per idle worker connection: RSS of `egress serve` before and after
N connections are opened and left idle, and again after each has carried one
request (kept alive). Loopback only; bounded by N (default 1000).

    python3 tests/bench/idle_memory.py --egress build/egress [--connections 1000]
"""
import argparse
import os
import resource
import shutil
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
import harness  # noqa: E402


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--egress", required=True)
    parser.add_argument("--connections", type=int, default=1000)
    options = parser.parse_args()
    if not 0 < options.connections <= 20000:
        parser.error("--connections must be in 1..20000")
    harness.EGRESS = os.path.abspath(options.egress)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, options.connections + 256)), hard))
    workdir = tempfile.mkdtemp(prefix="egress-idle-")
    conns = []
    try:
        limits = "limits:\n  max_connections_per_client: %d\n  max_connections: %d\n" % (
            options.connections + 16, options.connections + 16)
        egress = harness.Egress(workdir, harness.ALLOWED_TEST_POLICY, hosts={"allowed.test": "127.0.0.1"},
                                extra_config=limits)
        pid = egress.proc.pid
        host, port = egress.address.rsplit(":", 1)
        time.sleep(0.5)
        base = rss_kib(pid)
        for _ in range(options.connections):
            conns.append(socket.create_connection((host, int(port)), timeout=10))
        time.sleep(1)
        opened = rss_kib(pid)
        for s in conns:  # a refused request each (no upstream needed), kept alive
            s.sendall(b"GET http://denied.test:1/ HTTP/1.1\r\nHost: denied.test\r\n\r\n")
        for s in conns:
            s.recv(65536)
        time.sleep(1)
        used = rss_kib(pid)
        n = options.connections
        print("egress RSS %.1f MiB idle; %d connections: +%.1f KiB each when just opened, "
              "+%.1f KiB each after one request (kept alive)" % (base / 1024, n, (opened - base) / n, (used - base) / n))
    finally:
        for s in conns:
            s.close()
        if "egress" in locals():
            egress.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
