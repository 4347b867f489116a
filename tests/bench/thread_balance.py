#!/usr/bin/env python3
"""How evenly egress's proxy threads share long-lived connections: the
http-keepalive load of the side-by-side bench (c=50 kept-alive connections,
absolute-form GET through egress to nginx on loopback), run several times
against each binary given, alternating, each run against a fresh egress so
the kernel's SO_REUSEPORT hash sees new client ports.

Per run it reports requests/s (wrk), the share of the proxy threads' CPU
taken by the busiest of them and the audit writer's CPU (from
/proc/PID/task/*/stat over the run), and, where the binary has it, the
per-thread connection count from /metrics (egress_proxy_thread_connections).

    python3 tests/bench/thread_balance.py --egress build/egress [--egress OTHER] [--runs 5] [--duration 6]

Loopback only; every process it starts is stopped by PID; bounded by
--runs x --duration plus a few seconds per run.
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

from loopback import free_port, start_egress, start_nginx, stop

WRK_SCRIPT = 'wrk.path = "http://allowed.test:%d/"\nwrk.headers["Host"] = "allowed.test:%d"\n'


def thread_cpu(pid):
    """{tid: (name, cpu ticks)} for every thread of `pid`."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[tid] = (name, int(fields[11]) + int(fields[12]))  # utime + stime
    return out


def proxy_threads(pid, threads):
    """The proxy threads' ids: named egress-wN, or, in a build that does not
    name them, the threads other than the main one that kept the process's
    own name (the audit writer, resolver and admin threads have names)."""
    named = [t for t, (name, _) in threads.items() if name.startswith("egress-w")]
    if named:
        return named
    own = threads[str(pid)][0]
    return [t for t, (name, _) in threads.items() if name == own and t != str(pid)]


def one_run(binary, work, duration, connections):
    admin = free_port()
    egress, port = start_egress(binary, work, admin="127.0.0.1:%d" % admin)
    try:
        before = thread_cpu(egress.pid)
        wrk = subprocess.Popen(["wrk", "-t2", "-c%d" % connections, "-d%ds" % duration,
                                "-s", os.path.join(work, "abs.lua"), "http://127.0.0.1:%d/" % port],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(duration / 2)
        metrics = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin, timeout=5).read().decode()
        out, _ = wrk.communicate(timeout=duration + 30)
        after = thread_cpu(egress.pid)
    finally:
        stop(egress)
    used = {t: (after[t][1] - before.get(t, (None, 0))[1], after[t][0]) for t in after}
    proxy = proxy_threads(egress.pid, after)
    busiest = sorted(used[t] for t in proxy)
    total = sum(u for u, _ in busiest) or 1
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    split = re.findall(r'^egress_proxy_thread_connections\{thread="(\d+)"\} (\d+)$', metrics, re.M)
    audit = sum(u for u, name in used.values() if name == "egress-audit")
    return {"rps": float(rate.group(1)) if rate else 0.0,
            "audit_cpu": audit / (os.sysconf("SC_CLK_TCK") * duration),
            "busiest_share": busiest[-1][0] / total,
            "connections": [int(n) for _, n in split]}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--egress", action="append", required=True)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--duration", type=int, default=6)
    parser.add_argument("--connections", type=int, default=50)
    options = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool) and not os.path.exists("/usr/sbin/" + tool):
            sys.exit("thread_balance.py: %s is not installed (../shared/bench/setup.sh installs it)" % tool)
    work = tempfile.mkdtemp(prefix="egress-balance-")
    upstream_port = free_port()
    with open(os.path.join(work, "abs.lua"), "w") as f:
        f.write(WRK_SCRIPT % (upstream_port, upstream_port))
    nginx = start_nginx(work, upstream_port)
    try:
        results = {b: [] for b in options.egress}
        for run in range(options.runs):
            for binary in options.egress:
                r = one_run(os.path.abspath(binary), work, options.duration, options.connections)
                results[binary].append(r)
                print("run %d %-30s %8.0f req/s  busiest proxy thread %4.1f %% of their CPU  audit writer %.2f "
                      "cores  connections per thread %s" % (run, binary, r["rps"], 100 * r["busiest_share"],
                                                            r["audit_cpu"], r["connections"] or "(no metric)"))
                sys.stdout.flush()
        print()
        for binary, rs in results.items():
            rps = sorted(r["rps"] for r in rs)
            shares = sorted(r["busiest_share"] for r in rs)
            print("%-40s req/s median %.0f (%.0f-%.0f); busiest thread's share median %.1f %% (%.1f-%.1f %%)"
                  % (binary, rps[len(rps) // 2], rps[0], rps[-1], 100 * shares[len(shares) // 2],
                     100 * shares[0], 100 * shares[-1]))
    finally:
        stop(nginx, signal.SIGQUIT)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
