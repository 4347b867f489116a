#!/usr/bin/env python3
"""System calls egress makes per request, counted by `strace -f`
attached to a running egress (all its threads, the audit writer among
them) and split by thread: the proxy threads (egress-wN, the calls a
request waits for), the audit writer (egress-audit) and the rest, for each
binary given:

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
import subprocess
import tempfile
import time

from loopback import free_port, start_egress, start_nginx, stop


def parse_strace(text, names):
    """{thread kind: {syscall: calls}} from `strace -f` output, a line per
    call that starts with the thread id; `names` maps thread ids to their
    names (egress-w0, egress-audit, ...), which group into kinds."""
    calls = {}
    for line in text.splitlines():
        m = re.match(r"(\d+)\s+(\w+)\(", line)  # "<... x resumed>" lines are the same call
        if not m:
            continue
        name = names.get(m.group(1), "other")
        kind = "proxy" if name.startswith("egress-w") else "audit" if name == "egress-audit" else "other"
        per_kind = calls.setdefault(kind, {})
        per_kind[m.group(2)] = per_kind.get(m.group(2), 0) + 1
    return calls


def thread_names(pid):
    names = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
            names[tid] = f.read().strip()
    return names


def count(binary, work, scenario, ports, requests):
    egress, port = start_egress(binary, work)
    proxy = "http://127.0.0.1:%d" % port
    try:
        # Warm: the first request resolves and opens the audit file's pages.
        subprocess.run(["curl", "-s", "-o", "/dev/null", "-x", proxy, "http://allowed.test:%d/" % ports["http"]],
                       check=True, timeout=10)
        summary = os.path.join(work, "strace-%d.txt" % port)
        names = thread_names(egress.pid)
        tracer = subprocess.Popen(["strace", "-f", "-qq", "-o", summary, "-p", str(egress.pid)],
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
            return parse_strace(f.read(), names)
    finally:
        stop(egress)


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
    nginx = start_nginx(work, ports["http"], ports["https"])
    try:
        for scenario in ("keepalive", "tunnel"):
            for binary in options.egress:
                kinds = count(os.path.abspath(binary), work, scenario, ports, options.requests)
                total = sum(sum(calls.values()) for calls in kinds.values())
                print("%-9s %-32s %6.1f syscalls per request" % (scenario, binary, total / options.requests))
                for kind in ("proxy", "audit", "other"):
                    calls = kinds.get(kind, {})
                    top = sorted(calls.items(), key=lambda kv: -kv[1])[:8]
                    print("    %-6s threads %6.1f: %s" % (kind, sum(calls.values()) / options.requests,
                          ", ".join("%s %.1f" % (name, n / options.requests) for name, n in top)))
    finally:
        stop(nginx, signal.SIGQUIT)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
