"""Does reading the audit log slow serving? Runs `egress serve` against a
loopback upstream and measures allowed requests per second (and the p99
request latency) from 8 keep-alive clients under three conditions,
interleaved round by round so that drift on a shared machine hits all three
alike:

  alone   nothing else runs;
  copy    a second process loops `egress audit query` + `egress audit stats`
          on a fresh *copy* of the database: the same CPU work, no shared file;
  live    the same loop on the database `serve` is writing.

"copy" vs "alone" is what any CPU-hungry neighbour costs on the machine;
"live" vs "copy" is what sharing the SQLite file costs (WAL readers and the
writer's locks) — the part egress is responsible for. Bounded in time;
loopback only.

    python3 tests/bench/audit_read_impact.py --egress build/egress [--rounds 5] [--seconds 4] [--nice]
"""
import argparse
import http.client
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
import harness  # noqa: E402

CLIENTS = 8
READS = (["query", "--since", "1h", "--limit", "1000", "--format", "json"], ["stats", "--since", "1h"])


def load(proxy_address, port, seconds):
    """Requests/s and p99 latency (ms) of CLIENTS keep-alive clients."""
    host, proxy_port = proxy_address.rsplit(":", 1)
    latencies = [[] for _ in range(CLIENTS)]
    deadline = time.monotonic() + seconds

    def client(i):
        conn = http.client.HTTPConnection(host, int(proxy_port), timeout=10)
        while time.monotonic() < deadline:
            started = time.monotonic()
            conn.request("GET", "http://allowed.test:%d/x" % port)
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                latencies[i].append(time.monotonic() - started)
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 20)
    merged = sorted(x for per_client in latencies for x in per_client)
    p99 = merged[int(len(merged) * 0.99)] * 1000 if merged else float("nan")
    return len(merged) / seconds, p99


class Readers:
    """Loops the audit read commands on `db` until stopped; counts runs."""

    def __init__(self, db, nice):
        self.db, self.nice, self.runs = db, nice, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop)
        self.thread.start()

    def _loop(self):
        while not self.stop.is_set():
            for sub in READS:
                subprocess.run([*self.nice, harness.EGRESS, "audit", *sub, "--db", self.db], capture_output=True,
                               timeout=60, check=True)
                self.runs += 1

    def close(self):
        self.stop.set()
        self.thread.join(70)


def children_cpu():
    """CPU seconds used by waited-for children: the audit commands (serve is
    waited for only when it stops)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def snapshot(live, copy):
    """A consistent copy of the live database (SQLite's online backup)."""
    if os.path.exists(copy):
        os.remove(copy)
    with sqlite3.connect(live) as source, sqlite3.connect(copy) as target:
        source.backup(target)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--egress", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--nice", action="store_true", help="run the readers under nice -n 19")
    options = parser.parse_args()
    nice = ["nice", "-n", "19"] if options.nice else []
    harness.EGRESS = os.path.abspath(options.egress)
    workdir = tempfile.mkdtemp(prefix="egress-bench-")
    results = {"alone": [], "copy": [], "live": []}
    runs = {"copy": 0, "live": 0}
    reader_cpu = {"copy": 0.0, "live": 0.0}
    try:
        upstream = harness.Upstream()
        egress = harness.Egress(workdir, harness.ALLOWED_TEST_POLICY, hosts={"allowed.test": "127.0.0.1"})
        load(egress.address, upstream.port, 3)  # warm-up, and rows to query
        copy = os.path.join(workdir, "copy.db")
        for _ in range(options.rounds):
            for condition in ("alone", "copy", "live"):
                readers = None
                if condition == "copy":
                    snapshot(egress.db, copy)
                    readers = Readers(copy, nice)
                elif condition == "live":
                    readers = Readers(egress.db, nice)
                cpu_before = children_cpu()
                results[condition].append(load(egress.address, upstream.port, options.seconds))
                if readers:
                    readers.close()
                    runs[condition] += readers.runs
                    reader_cpu[condition] += children_cpu() - cpu_before
        egress.stop()
        upstream.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    def median(condition, index):
        return statistics.median(r[index] for r in results[condition])

    alone, copy_rps, live_rps = median("alone", 0), median("copy", 0), median("live", 0)
    print("%d rounds x %.0f s, %d keep-alive clients, readers%s; median per condition:"
          % (options.rounds, options.seconds, CLIENTS, " at nice 19" if nice else " at normal priority"))
    for condition in ("alone", "copy", "live"):
        spread = sorted(r[0] for r in results[condition])
        print("  %-5s %6.0f req/s (rounds %s)  p99 %.1f ms%s" % (
            condition, median(condition, 0), " ".join("%.0f" % x for x in spread), median(condition, 1),
            "  (%d audit commands, %.1f CPU s)" % (runs[condition], reader_cpu[condition])
            if condition in runs else ""))
    print("CPU neighbour (copy vs alone): %+.1f%%; sharing the live database (live vs copy): %+.1f%%"
          % (100.0 * (copy_rps - alone) / alone, 100.0 * (live_rps - copy_rps) / copy_rps))


if __name__ == "__main__":
    main()
