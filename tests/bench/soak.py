"""Soak: does egress hold steady under hours of moderate load? Runs
`egress serve` (audit on) against loopback HTTP and HTTPS upstreams and
drives a fixed mix at a bounded rate — keep-alive and new-connection HTTP,
CONNECT tunnels with a TLS handshake, denied requests and denied CONNECTs —
for --minutes, sampling egress's RSS and open file descriptors every
--sample seconds. At the end, with the load stopped, the descriptor count
must be back at its idle baseline and RSS in the last quarter of the run
must not have grown over the second quarter (after warm-up) by more than
--rss-slack. Loopback only; bounded in time and rate.

    python3 tests/bench/soak.py --egress build/egress --minutes 30
"""
import argparse
import http.client
import os
import shutil
import sqlite3
import ssl
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
import harness  # noqa: E402


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


class Load:
    """CLIENTS threads, each issuing one request of the mix every
    1/rate_per_client seconds until stopped."""

    def __init__(self, proxy, http_port, https_port, ca, clients, rate_per_client):
        self.host, port = proxy.rsplit(":", 1)
        self.port = int(port)
        self.http_port, self.https_port = http_port, https_port
        self.tls = ssl.create_default_context(cafile=ca)
        self.stop = threading.Event()
        self.counts = {"ok": 0, "denied": 0, "failed": 0}
        self.lock = threading.Lock()
        self.interval = 1.0 / rate_per_client
        self.threads = [threading.Thread(target=self._client, args=(i,)) for i in range(clients)]
        for t in self.threads:
            t.start()

    def _count(self, key):
        with self.lock:
            self.counts[key] += 1

    def _http(self, conn, host):
        conn.request("GET", "http://%s:%d/x" % (host, self.http_port))
        response = conn.getresponse()
        response.read()
        return response.status

    def _tunnel(self, host):
        conn = http.client.HTTPSConnection(host, self.https_port, timeout=10, context=self.tls)
        conn.set_tunnel(host, self.https_port)
        conn.host, conn.port = self.host, self.port  # connect to the proxy, tunnel to host
        try:
            conn.request("GET", "/x")
            response = conn.getresponse()
            response.read()
            return response.status
        except OSError as error:
            if "403" in str(error):
                return 403
            raise
        finally:
            conn.close()

    def _client(self, i):
        keepalive = http.client.HTTPConnection(self.host, self.port, timeout=10)
        step = 0
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                kind = step % 5
                if kind == 0:
                    status = self._http(keepalive, "allowed.test")
                elif kind == 1:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
                    status = self._http(conn, "allowed.test")
                    conn.close()
                elif kind == 2:
                    status = self._tunnel("allowed.test")
                elif kind == 3:
                    status = self._http(keepalive, "denied.test")
                else:
                    status = self._tunnel("denied.test")
                self._count("ok" if status == 200 else "denied" if status == 403 else "failed")
            except (OSError, http.client.HTTPException):
                self._count("failed")
                keepalive.close()
                keepalive = http.client.HTTPConnection(self.host, self.port, timeout=10)
            step += 1 + i  # clients walk the mix at different strides
            self.stop.wait(max(0.0, self.interval - (time.monotonic() - started)))
        keepalive.close()

    def close(self):
        self.stop.set()
        for t in self.threads:
            t.join(30)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--egress", required=True)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--sample", type=float, default=30, help="seconds between samples")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rate", type=float, default=10, help="requests per second per client")
    parser.add_argument("--rss-slack", type=float, default=0.10, help="allowed RSS growth, fraction")
    options = parser.parse_args()
    if not 0 < options.minutes <= 24 * 60:
        parser.error("--minutes must be in (0, 1440]")
    harness.EGRESS = os.path.abspath(options.egress)
    workdir = tempfile.mkdtemp(prefix="egress-soak-")
    samples = []
    try:
        plain = harness.Upstream()
        harness.make_upstream_cert(workdir)
        tls = harness.Upstream(tls_dir=workdir)
        policy = "version: 1\nmode: self-hosted\ninternal:\n  - host: allowed.test\n    ports: any\n"
        egress = harness.Egress(workdir, policy, hosts={"allowed.test": "127.0.0.1", "denied.test": "127.0.0.1"})
        pid = egress.proc.pid
        # Warm up (the audit database's WAL, the resolver, worker threads
        # open what they keep for good), then take the idle baseline.
        warm = Load(egress.address, plain.port, tls.port, os.path.join(workdir, "upstream.crt"), 5, 10)
        time.sleep(2)
        warm.close()
        time.sleep(2)
        idle_fds = open_fds(pid)
        load = Load(egress.address, plain.port, tls.port, os.path.join(workdir, "upstream.crt"),
                    options.clients, options.rate)
        started = time.monotonic()
        deadline = started + options.minutes * 60
        print("minute  RSS MiB  fds  ok  denied  failed", flush=True)
        while time.monotonic() < deadline:
            time.sleep(min(options.sample, max(0.0, deadline - time.monotonic())))
            plain.seen.clear()
            tls.seen.clear()
            with load.lock:
                counts = dict(load.counts)
            sample = ((time.monotonic() - started) / 60, rss_kib(pid) / 1024, open_fds(pid), counts)
            samples.append(sample)
            print("%6.1f  %7.1f  %3d  %d  %d  %d" % (sample[0], sample[1], sample[2], counts["ok"], counts["denied"],
                                                     counts["failed"]), flush=True)
        load.close()
        time.sleep(2)
        final_fds = open_fds(pid)
        egress.stop()
        with sqlite3.connect(egress.db) as db:
            decisions = db.execute("SELECT count(*) FROM events WHERE event = 'decision'").fetchone()[0]
        plain.close()
        tls.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    quarter = max(1, len(samples) // 4)
    second = statistics.median(s[1] for s in samples[quarter:2 * quarter]) if len(samples) >= 4 else samples[0][1]
    last = statistics.median(s[1] for s in samples[-quarter:])
    counts = samples[-1][3]
    total = sum(counts.values())
    print("%.1f min, %d requests (%.0f/s): %d ok, %d denied, %d failed%s"
          % (options.minutes, total, total / (options.minutes * 60), counts["ok"], counts["denied"], counts["failed"],
             "; %d decision events in the audit log (the warm-up included)" % decisions))
    print("RSS median 2nd quarter %.1f MiB, last quarter %.1f MiB (%+.1f%%), max %.1f MiB; "
          "fds idle %d, max under load %d, after load %d"
          % (second, last, 100 * (last - second) / second, max(s[1] for s in samples), idle_fds,
             max(s[2] for s in samples), final_fds))
    failures = []
    if last > second * (1 + options.rss_slack):
        failures.append("RSS grew by more than %.0f%%" % (100 * options.rss_slack))
    if final_fds > idle_fds:
        failures.append("%d descriptors more than before the load" % (final_fds - idle_fds))
    if counts["failed"] > total * 0.001:
        failures.append("%d requests failed" % counts["failed"])
    if failures:
        print("soak: FAIL: " + "; ".join(failures))
        sys.exit(1)
    print("soak: ok")


if __name__ == "__main__":
    main()
