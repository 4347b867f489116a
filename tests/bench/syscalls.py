#!/usr/bin/env python3
"""System calls egress makes per request, counted by `strace -c -f`
attached to a running egress (all its threads, the audit writer among
them), for each binary given:

  keepalive   one kept-alive connection, N absolute-form GETs through it
              (curl with N URLs), nginx upstream on loopback
  tunnel      N new CONNECT tunnels, one after another, each carrying one
              HTTPS GET (curl -k, a new process and connection per request)

The counts divided by N are what docs/performance.md's syscall table holds;
the busiest calls are listed too. The count does not depend on the load on
the machine (strace slows egress; it does not change what egress calls).

    python3 tests/bench/syscalls.py --egress build/egress [--egress OTHER] [--requests 200]

Loopback only; every process it starts is stopped by PID.
"""
import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

POLICY = """\
version: 1
mode: self-hosted
internal:
  - host: allowed.test
    ports: any
"""
CONFIG = """\
dns:
  hosts_file: false
  hosts: {allowed.test: [127.0.0.1]}
log_level: warn
"""
NGINX = """\
worker_processes 1;
pid %(dir)s/nginx.pid;
error_log %(dir)s/nginx.err;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:%(http)d;
    listen 127.0.0.1:%(https)d ssl;
    ssl_certificate %(dir)s/upstream.crt;
    ssl_certificate_key %(dir)s/upstream.key;
    location / { return 200 "ok\\n"; }
  }
}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, limit=10):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def stop(process, how):
    """Stops a process this script started: `how`, then SIGKILL after 15 s."""
    process.send_signal(how)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def parse_strace(text):
    """{syscall: calls} from strace -c's table."""
    calls = {}
    for line in text.splitlines():
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)
        if m and m.group(2) != "total":
            calls[m.group(2)] = int(m.group(1))
    return calls


def count(binary, work, scenario, ports, requests):
    port = free_port()
    egress = subprocess.Popen([binary, "serve", "--config", os.path.join(work, "egress.yaml"),
                               "--policy", os.path.join(work, "policy.yaml"), "--threads", "2",
                               "--listen", "127.0.0.1:%d" % port, "--admin-listen", "off",
                               "--audit-db", os.path.join(work, "audit-%d.db" % port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proxy = "http://127.0.0.1:%d" % port
    try:
        if not wait_port(port):
            raise RuntimeError("%s did not start" % binary)
        # Warm: the first request resolves and opens the audit file's pages.
        subprocess.run(["curl", "-s", "-o", "/dev/null", "-x", proxy, "http://allowed.test:%d/" % ports["http"]],
                       check=True, timeout=10)
        summary = os.path.join(work, "strace-%d.txt" % port)
        tracer = subprocess.Popen(["strace", "-c", "-f", "-o", summary, "-p", str(egress.pid)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # attached to every thread
        if scenario == "keepalive":
            urls = ["http://allowed.test:%d/" % ports["http"]] * requests
            subprocess.run(["curl", "-s", "-x", proxy] + urls, stdout=subprocess.DEVNULL, check=True, timeout=120)
        else:
            for _ in range(requests):
                subprocess.run(["curl", "-s", "-k", "-o", "/dev/null", "-x", proxy,
                                "https://allowed.test:%d/" % ports["https"]], check=True, timeout=10)
        time.sleep(0.5)  # the last close events committed
        stop(tracer, signal.SIGINT)
        with open(summary) as f:
            return parse_strace(f.read())
    finally:
        stop(egress, signal.SIGTERM)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--egress", action="append", required=True)
    parser.add_argument("--requests", type=int, default=200)
    options = parser.parse_args()
    for tool in ("strace", "curl", "openssl"):
        if not shutil.which(tool):
            raise SystemExit("syscalls.py: %s is not installed" % tool)
    work = tempfile.mkdtemp(prefix="egress-syscalls-")
    ports = {"http": free_port(), "https": free_port()}
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "1", "-subj", "/CN=allowed.test", "-keyout", os.path.join(work, "upstream.key"),
                    "-out", os.path.join(work, "upstream.crt")], check=True, capture_output=True, timeout=30)
    with open(os.path.join(work, "nginx.conf"), "w") as f:
        f.write(NGINX % {"dir": work, "http": ports["http"], "https": ports["https"]})
    for name, text in (("policy.yaml", POLICY), ("egress.yaml", CONFIG)):
        with open(os.path.join(work, name), "w") as f:
            f.write(text)
    nginx = subprocess.Popen(["/usr/sbin/nginx", "-c", os.path.join(work, "nginx.conf"), "-g", "daemon off;"])
    try:
        if not wait_port(ports["http"]) or not wait_port(ports["https"]):
            raise RuntimeError("nginx did not start")
        for scenario in ("keepalive", "tunnel"):
            for binary in options.egress:
                calls = count(os.path.abspath(binary), work, scenario, ports, options.requests)
                total = sum(calls.values())
                top = sorted(calls.items(), key=lambda kv: -kv[1])[:8]
                print("%-9s %-32s %6.1f syscalls per request: %s" % (
                    scenario, binary, total / options.requests,
                    ", ".join("%s %.1f" % (name, n / options.requests) for name, n in top)))
    finally:
        stop(nginx, signal.SIGQUIT)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
