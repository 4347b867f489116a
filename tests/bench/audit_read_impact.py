"""Does reading the audit log slow serving? Runs `egress serve` against a
loopback upstream and measures allowed requests per second from 8
keep-alive clients for a fixed time, first alone, then while a second
process runs `egress audit query` and `egress audit stats` on the same
database in a loop. Bounded in time; loopback only.

    python3 tests/bench/audit_read_impact.py --egress build/egress [--seconds 8]
"""
import argparse
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
import harness  # noqa: E402


def load(proxy_address, port, seconds, clients=8):
    host, proxy_port = proxy_address.rsplit(":", 1)
    counts = [0] * clients
    deadline = time.time() + seconds

    def worker(i):
        conn = http.client.HTTPConnection(host, int(proxy_port), timeout=10)
        while time.time() < deadline:
            conn.request("GET", "http://allowed.test:%d/x" % port)
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                counts[i] += 1
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 20)
    return sum(counts) / seconds


NICE = []  # set by --nice: run the readers at the lowest CPU priority


def main():
    global NICE
    parser = argparse.ArgumentParser()
    parser.add_argument("--egress", required=True)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--nice", action="store_true",
                        help="run the readers under nice -n 19, to separate CPU sharing from any locking effect")
    options = parser.parse_args()
    NICE = ["nice", "-n", "19"] if options.nice else []
    harness.EGRESS = os.path.abspath(options.egress)
    workdir = tempfile.mkdtemp(prefix="egress-bench-")
    try:
        upstream = harness.Upstream()
        egress = harness.Egress(workdir, harness.ALLOWED_TEST_POLICY, hosts={"allowed.test": "127.0.0.1"})
        load(egress.address, upstream.port, 1)  # warm-up, and rows to query
        alone = load(egress.address, upstream.port, options.seconds)

        stop = threading.Event()
        queries = [0]

        def reader():
            while not stop.is_set():
                for sub in (["query", "--since", "1h", "--limit", "1000", "--format", "json"], ["stats", "--since", "1h"]):
                    subprocess.run([*NICE, harness.EGRESS, "audit", *sub, "--db", egress.db], capture_output=True,
                                   timeout=60)
                    queries[0] += 1

        thread = threading.Thread(target=reader)
        thread.start()
        with_reads = load(egress.address, upstream.port, options.seconds)
        stop.set()
        thread.join(70)
        egress.stop()
        upstream.close()
        print("allowed requests/s, 8 keep-alive clients: alone %.0f, while audit query/stats%s ran %d times: %.0f (%+.1f%%)"
              % (alone, " (nice 19)" if NICE else "", queries[0], with_reads, 100.0 * (with_reads - alone) / alone))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
