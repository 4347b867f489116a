#!/usr/bin/env python3
"""Benchmark of TLS inspection: new inspected HTTPS connections per second,
egress CPU per connection, and the latency inspection adds over a direct TLS
connection. Everything on loopback:

  * upstream: nginx with TLS (ECDSA P-256, no session cache or tickets, so
    every connection is a full handshake), object /1k;
  * egress (the binary given) with its own CA, `inspect: true` for
    allowed.test and a plain (not inspected) rule for tunnel.test, both
    answered by egress's static dns.hosts (127.0.0.1), audit on;
  * client: ../shared/bench/loadgen.go (the side-by-side bench's own load
    client, compiled here with `go build`): new TCP + CONNECT + TLS
    handshake + GET /1k + close per request ("connect-new-tunnel").

Scenarios, interleaved per round so ratios hold on a busy machine:
  direct     straight to nginx (TLS, new connection per request)
  tunnel     through egress, CONNECT not inspected (end-to-end TLS)
  injected   the same egress and upstream, under a rule that also injects
             `Authorization: Bearer {secret:bench_token}` (docs/secrets.md):
             the header set on every request, the response scrubbed
  inspected  through egress, CONNECT inspected: the worker's handshake
             with egress; egress's upstream connection comes from its
             pool when nginx kept one alive (nginx's defaults:
             keepalive_timeout 75s, keepalive_requests 1000)
  no-reuse   the same through a second egress with the pool off
             (tls.upstream_pool_size: 0): two full handshakes per
             connection, as mitmproxy does (skip with --no-reuse-run)
and a latency pass at concurrency 1 (median/p99 added over direct).

  mitmproxy  through mitmdump 8 intercepting (Debian's mitmproxy, started
             here like ../shared/bench's mitmproxy-intercept peer:
             ssl_insecure towards the self-signed upstream, which it
             reaches by IP since it cannot use egress's static names)
             — skipped with --no-mitmproxy or when mitmdump is missing.

    python3 tests/bench/inspect_bench.py --egress build/egress [--duration 4] [--concurrency 50] [--rounds 3]
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from loopback import free_port, wait_for_port

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LOADGEN_SRC = os.path.join(ROOT, "..", "shared", "bench", "loadgen.go")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of a process (all its threads), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def start_nginx(tmp, port):
    cert, key = os.path.join(tmp, "upstream.crt"), os.path.join(tmp, "upstream.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "2", "-subj", "/CN=allowed.test",
                    "-addext", "subjectAltName=DNS:allowed.test,DNS:tunnel.test,DNS:inject.test,IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    www = os.path.join(tmp, "www")
    os.makedirs(www)
    with open(os.path.join(www, "1k"), "wb") as f:
        f.write(os.urandom(1024))
    conf = os.path.join(tmp, "nginx.conf")
    user = "user root;\n" if os.geteuid() == 0 else ""
    with open(conf, "w") as f:
        f.write("""%sworker_processes 1;
pid %s/nginx.pid;
error_log %s/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  server {
    listen 127.0.0.1:%d ssl;
    ssl_certificate %s;
    ssl_certificate_key %s;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache off;
    ssl_session_tickets off;
    location / { root %s; }
  }
}
""" % (user, tmp, tmp, port, cert, key, www))
    proc = subprocess.Popen(["nginx", "-p", tmp, "-c", conf, "-g", "daemon off;"], stderr=subprocess.DEVNULL)
    wait_for_port(port)
    return proc, cert


def start_egress(egress, tmp, upstream_ca, admin, reuse=True):
    """egress with its own CA in `tmp`; `reuse` False turns off the upstream
    connection pool (tls.upstream_pool_size: 0)."""
    os.makedirs(tmp, exist_ok=True)
    subprocess.run([egress, "ca", "init", "--out", os.path.join(tmp, "certs")], check=True, capture_output=True)
    policy = os.path.join(tmp, "policy.yaml")
    with open(policy, "w") as f:
        f.write("version: 1\nmode: self-hosted\ninternal:\n"
                "  - host: allowed.test\n    ports: any\n    inspect: true\n"
                "  - host: tunnel.test\n    ports: any\n"
                "  - host: inject.test\n    ports: any\n    inspect: true\n    inject:\n"
                "      - {header: Authorization, value: \"Bearer {secret:bench_token}\"}\n")
    secrets = os.path.join(tmp, "secrets")
    os.makedirs(secrets, mode=0o700)
    with open(os.open(os.path.join(secrets, "bench_token"), os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
        f.write("bench-" + os.urandom(16).hex())
    config = os.path.join(tmp, "egress.yaml")
    with open(config, "w") as f:
        f.write("dns:\n  hosts_file: false\n  servers: [\"127.0.0.1:%d\"]\n"
                "  hosts:\n    allowed.test: [127.0.0.1]\n    tunnel.test: [127.0.0.1]\n    inject.test: [127.0.0.1]\n"
                % free_port())
        f.write("log_level: warn\n")
        if not reuse:
            f.write("tls:\n  upstream_pool_size: 0\n")
    proc = subprocess.Popen([egress, "serve", "--config", config, "--policy", policy, "--audit-db",
                             os.path.join(tmp, "audit.db"), "--listen", "127.0.0.1:0", "--admin-listen", admin,
                             "--ca-cert", os.path.join(tmp, "certs", "ca.crt"),
                             "--ca-key", os.path.join(tmp, "certs", "ca.key"), "--upstream-ca", upstream_ca,
                             "--secrets-dir", secrets],
                            stdout=subprocess.PIPE, stderr=open(os.path.join(tmp, "egress.log"), "w"), text=True)
    deadline = time.time() + 15
    while time.time() < deadline:
        line = proc.stdout.readline()
        if line.startswith("egress listening on "):
            return proc, line.split()[3]
        if not line:
            break
    proc.kill()
    raise RuntimeError("egress did not start; see %s/egress.log" % tmp)


def start_mitmproxy(tmp):
    """mitmdump intercepting TLS, as the shared bench runs it; (proc, address)."""
    port = free_port()
    proc = subprocess.Popen(["mitmdump", "--listen-host", "127.0.0.1", "-p", str(port),
                             "--set", "confdir=" + os.path.join(tmp, "mitmproxy"), "--set", "ssl_insecure=true",
                             "--set", "flow_detail=0", "--set", "termlog_verbosity=warn",
                             "--set", "stream_large_bodies=1m"],
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "mitmproxy.log"), "w"))
    wait_for_port(port, timeout=30)
    return proc, "127.0.0.1:%d" % port


def build_loadgen(tmp):
    out = os.path.join(tmp, "loadgen")
    env = dict(os.environ, GOFLAGS="-mod=mod", GOCACHE=os.path.join(tmp, "gocache"), GO111MODULE="off")
    subprocess.run(["go", "build", "-o", out, LOADGEN_SRC], check=True, env=env, capture_output=True, timeout=300)
    return out


def load(loadgen, url, proxy, concurrency, duration):
    args = [loadgen, "-url", url, "-c", str(concurrency), "-duration", "%gs" % duration, "-keepalive=false"]
    if proxy:
        args += ["-proxy", proxy]
    out = subprocess.run(args, capture_output=True, text=True, timeout=duration + 60)
    if out.returncode != 0:
        raise RuntimeError("loadgen failed: " + out.stderr[-500:])
    return json.loads(out.stdout)


def metric(admin, name):
    with urllib.request.urlopen("http://%s/metrics" % admin, timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("egress_" + name + " "):
                return float(line.split()[1])
    return -1


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--egress", required=True)
    parser.add_argument("--duration", type=float, default=4)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-requests", type=int, default=300, help="requests per scenario at concurrency 1")
    parser.add_argument("--out", help="also write the results as JSON to this file")
    parser.add_argument("--no-mitmproxy", action="store_true", help="do not measure mitmproxy alongside")
    parser.add_argument("--no-reuse-run", action="store_true",
                        help="skip the run of a second egress with upstream connection reuse off")
    options = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="egress-inspect-bench-")
    os.chmod(tmp, 0o755)
    procs = []
    try:
        loadgen = build_loadgen(tmp)
        port = free_port()
        nginx, upstream_cert = start_nginx(tmp, port)
        procs.append(nginx)
        admin = "127.0.0.1:%d" % free_port()
        egress, proxy = start_egress(os.path.abspath(options.egress), tmp, upstream_cert, admin)
        procs.append(egress)
        scenarios = {  # name: (url, proxy, pid whose CPU is measured)
            "direct": ("https://127.0.0.1:%d/1k" % port, None, None),
            "tunnel": ("https://tunnel.test:%d/1k" % port, proxy, egress.pid),
            "inspected": ("https://allowed.test:%d/1k" % port, proxy, egress.pid),
            "injected": ("https://inject.test:%d/1k" % port, proxy, egress.pid),
        }
        if not options.no_reuse_run:
            # The same, with the upstream connection pool off: two full
            # handshakes per connection, as mitmproxy does.
            single, single_proxy = start_egress(os.path.abspath(options.egress), os.path.join(tmp, "no-reuse"),
                                                upstream_cert, "127.0.0.1:%d" % free_port(), reuse=False)
            procs.append(single)
            scenarios["no-reuse"] = ("https://allowed.test:%d/1k" % port, single_proxy, single.pid)
        if not options.no_mitmproxy and shutil.which("mitmdump"):
            mitm, mitm_proxy = start_mitmproxy(tmp)
            procs.append(mitm)
            scenarios["mitmproxy"] = ("https://127.0.0.1:%d/1k" % port, mitm_proxy, mitm.pid)
        for name, (url, via, _) in scenarios.items():  # warm-up, and a check that each works
            result = load(loadgen, url, via, 2, 0.5)
            if result["status"].get("200", 0) == 0:
                raise RuntimeError("%s: no 200 in the warm-up: %s" % (name, result))

        runs = {name: [] for name in scenarios}
        for round_number in range(options.rounds):
            order = list(scenarios) if round_number % 2 == 0 else list(reversed(scenarios))
            for name in order:
                url, via, pid = scenarios[name]
                cpu_before = cpu_seconds(pid) if pid else 0
                result = load(loadgen, url, via, options.concurrency, options.duration)
                cpu = cpu_seconds(pid) - cpu_before if pid else 0
                ok = result["status"].get("200", 0)
                runs[name].append({"rps": ok / result["elapsed_s"], "ok": ok, "bad": result["requests"] - ok,
                                   "cpu_us_per_req": cpu * 1e6 / ok if ok and pid else None,
                                   "p50_ms": result["latency_ms"]["p50"], "p99_ms": result["latency_ms"]["p99"]})

        latency = {}
        latency_scenarios = [n for n in ("direct", "inspected", "injected", "no-reuse", "tunnel", "mitmproxy")
                             if n in scenarios]
        for name in latency_scenarios:
            url, via, _ = scenarios[name]
            result = subprocess.run([loadgen, "-url", url, "-c", "1", "-n", str(options.latency_requests),
                                     "-duration", "60s", "-keepalive=false"] + (["-proxy", via] if via else []),
                                    capture_output=True, text=True, timeout=120)
            latency[name] = json.loads(result.stdout)["latency_ms"]

        hits, misses = metric(admin, "tls_cert_cache_hits_total"), metric(admin, "tls_cert_cache_misses_total")
        reused = metric(admin, 'tls_upstream_connections_total{reused="yes"}')
        opened = metric(admin, 'tls_upstream_connections_total{reused="no"}')
        summary = {}
        print("\nnew HTTPS connections through egress (GET /1k, new TCP + TLS per request), c=%d, %gs x %d rounds"
              % (options.concurrency, options.duration, options.rounds))
        print("%-10s %12s %10s %10s %10s %14s %8s" % ("scenario", "conn/s", "×direct", "p50 ms", "p99 ms",
                                                       "proxy µs/conn", "bad"))
        direct_rps = [r["rps"] for r in runs["direct"]]
        for name in scenarios:
            rs = runs[name]
            rps = statistics.median(r["rps"] for r in rs)
            ratio = statistics.median(r["rps"] / d for r, d in zip(rs, direct_rps))
            cpu = [r["cpu_us_per_req"] for r in rs if r["cpu_us_per_req"] is not None]
            cpu_text = "%.0f" % statistics.median(cpu) if cpu else "-"
            summary[name] = {"conn_per_s": rps, "x_direct": ratio, "cpu_us_per_conn": statistics.median(cpu) if cpu else None,
                             "p50_ms": statistics.median(r["p50_ms"] for r in rs),
                             "p99_ms": statistics.median(r["p99_ms"] for r in rs), "bad": sum(r["bad"] for r in rs)}
            print("%-10s %12.0f %10.2f %10.2f %10.2f %14s %8d" % (name, rps, ratio, summary[name]["p50_ms"],
                                                                 summary[name]["p99_ms"], cpu_text, summary[name]["bad"]))
        print("\nlatency at concurrency 1 (%d requests each): median / p99 ms, added over direct"
              % options.latency_requests)
        for name in latency_scenarios[1:]:
            added50 = latency[name]["p50"] - latency["direct"]["p50"]
            added99 = latency[name]["p99"] - latency["direct"]["p99"]
            summary[name]["added_latency_ms"] = {"p50": added50, "p99": added99}
            print("%-10s %6.2f / %6.2f   (direct %.2f / %.2f)   added %+.2f / %+.2f"
                  % (name, latency[name]["p50"], latency[name]["p99"], latency["direct"]["p50"],
                     latency["direct"]["p99"], added50, added99))
        print("\ncertificate cache: %d hits, %d misses; upstream TLS connections: %d opened, %d reused"
              % (hits, misses, opened, reused))
        # Injection's cost over inspection alone: per round (the two ran back to back), then the median.
        rate = statistics.median(i["rps"] / a["rps"] for i, a in zip(runs["injected"], runs["inspected"]))
        cpu = [i["cpu_us_per_req"] / a["cpu_us_per_req"] for i, a in zip(runs["injected"], runs["inspected"])
               if i["cpu_us_per_req"] and a["cpu_us_per_req"]]
        summary["injected"]["vs_inspected"] = {"conn_per_s": rate, "cpu": statistics.median(cpu) if cpu else None}
        print("injected vs inspected (median of per-round ratios): connections/s %+.1f %%, egress CPU/conn %s"
              % (100 * (rate - 1), "%+.1f %%" % (100 * (statistics.median(cpu) - 1)) if cpu else "-"))
        if "mitmproxy" in summary:
            for name in ("inspected", "no-reuse"):
                if name in summary:
                    print("%s connections/s: egress %.0f, mitmproxy %.0f (%.1fx)"
                          % (name, summary[name]["conn_per_s"], summary["mitmproxy"]["conn_per_s"],
                             summary[name]["conn_per_s"] / summary["mitmproxy"]["conn_per_s"]))
        if options.out:
            with open(options.out, "w") as f:
                json.dump({"summary": summary, "runs": runs, "latency": latency,
                           "cert_cache": {"hits": hits, "misses": misses},
                           "upstream_connections": {"opened": opened, "reused": reused},
                           "settings": vars(options)}, f, indent=2)
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
