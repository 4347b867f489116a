#!/usr/bin/env python3
"""Replication throughput (docs/audit-fleet.md). Not a test: run by hand.

  ship:    one replica's backlog of --requests requests (2 events each) is
           made with replication off, then serve restarts with replication on
           against an empty central store; reports events/s shipped until the
           central count equals the local one.
  worker:  --requests requests from --clients parallel clients through one
           replica, with --replication on or off; reports requests/s and
           p50/p99 latency (the side-by-side: run it once with each).

  python3 tests/bench/replication_bench.py --egress build/egress --mode ship
  python3 tests/bench/replication_bench.py --egress build/egress --mode worker --replication on
  python3 tests/bench/replication_bench.py --egress build/egress --mode worker --replication off

Everything is local: PostgreSQL on a Unix socket in a temp dir, loopback
upstream and proxy (tests/integration/harness.py).
"""
import argparse
import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
import harness  # noqa: E402
from test_audit_fleet import Postgres  # noqa: E402


def cpu_seconds(pid, thread_name=None):
    """utime+stime of a process (its live threads), or of its threads named
    thread_name only."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except FileNotFoundError:
        return 0  # a backend that has just exited (the psql polls')
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                name = f.read().strip()
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if thread_name is None or name == thread_name:
            total += int(fields[11]) + int(fields[12])
    return total / tick


def postgres_cpu_seconds(pg):
    """CPU of the cluster's processes now alive (the postmaster and its
    children: the shipper's backend among them)."""
    with open(os.path.join(pg.data, "postmaster.pid")) as f:
        main = int(f.readline())
    children = subprocess.run(["pgrep", "-P", str(main)], stdout=subprocess.PIPE, text=True).stdout.split()
    return sum(cpu_seconds(int(pid)) for pid in [main] + children)


def drive(egress, upstream, total, clients):
    host, port = egress.address.rsplit(":", 1)
    latencies, failures, lock = [], [0], threading.Lock()
    counter = iter(range(total))
    counter_lock = threading.Lock()

    def client():
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        while True:
            with counter_lock:
                i = next(counter, None)
            if i is None:
                break
            t0 = time.perf_counter()
            try:
                conn.request("GET", "http://allowed.test:%d/bench/%d" % (upstream.port, i))
                r = conn.getresponse()
                r.read()
                ok = r.status == 200
            except OSError:
                ok = False
                conn = http.client.HTTPConnection(host, int(port), timeout=10)
            with lock:
                latencies.append(time.perf_counter() - t0)
                failures[0] += 0 if ok else 1
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    latencies.sort()
    return elapsed, failures[0], latencies


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--egress", required=True)
    p.add_argument("--mode", choices=["ship", "worker"], default="ship")
    p.add_argument("--replication", choices=["on", "off"], default="on")
    p.add_argument("--requests", type=int, default=5000)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--shared-buffers", default="128MB", help="PostgreSQL's shared_buffers (its default: 128MB)")
    a = p.parse_args()
    harness.EGRESS = os.path.abspath(a.egress)
    root = tempfile.mkdtemp(prefix="egress-bench-")
    pg = Postgres(shared_buffers=a.shared_buffers)
    upstream = harness.Upstream()
    try:
        hosts = {"allowed.test": "127.0.0.1"}
        rep = ["--audit-replicate-to", pg.dsn, "--audit-replica", "bench"]
        if a.mode == "worker":
            egress = harness.Egress(root, harness.ALLOWED_TEST_POLICY, hosts=hosts,
                                    extra_args=rep if a.replication == "on" else ())
            elapsed, failed, lat = drive(egress, upstream, a.requests, a.clients)
            print("worker replication=%s: %d requests, %d clients: %.0f req/s, p50 %.2f ms, p99 %.2f ms, "
                  "%d failed" % (a.replication, a.requests, a.clients, a.requests / elapsed,
                                 1000 * statistics.median(lat), 1000 * lat[int(len(lat) * 0.99)], failed))
            egress.stop()
            return
        egress = harness.Egress(root, harness.ALLOWED_TEST_POLICY, hosts=hosts)
        drive(egress, upstream, a.requests, a.clients)
        egress.stop()
        local = len(egress.events())
        pg_before = postgres_cpu_seconds(pg)
        t0 = time.perf_counter()
        egress = harness.Egress(root, harness.ALLOWED_TEST_POLICY, hosts=hosts, extra_args=rep)
        deadline = time.time() + 300
        central, first, first_at = 0, 0, None
        while time.time() < deadline:
            try:
                central = int(pg.psql("SELECT count(*) FROM events WHERE replica = 'bench'") or 0)
            except subprocess.CalledProcessError:
                central = 0  # the shipper has not created the table yet
            if central and first_at is None:
                first, first_at = central, time.perf_counter()
            if central >= local:
                break
            time.sleep(0.02)
        done = time.perf_counter()
        shipper = cpu_seconds(egress.proc.pid, "egress-ship")
        serve = cpu_seconds(egress.proc.pid)
        postgres = postgres_cpu_seconds(pg) - pg_before
        egress.stop()
        steady = (central - first) / (done - first_at) if first_at and done > first_at else float("nan")
        print("ship: %d events in %.2f s from serve start (connect and migration included): %.0f events/s; "
              "%.0f events/s after the first batch landed" % (central, done - t0, central / (done - t0), steady))
        print("CPU per shipped event: shipper thread %.2f us, all of serve %.2f us, PostgreSQL %.2f us"
              % (1e6 * shipper / central, 1e6 * serve / central, 1e6 * postgres / central))
    finally:
        for e in harness.STARTED:
            e.stop()
        upstream.close()
        pg.remove()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
