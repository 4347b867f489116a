"""What an open Live page costs serving: the same refusal flood through
egress twice in one run, with the console enabled both times, once with no
page open and once with the Live page open in headless Chromium (its event
stream subscribed, rows rendering). Reports attempts committed per second
and egress's CPU time per attempt (utime+stime from /proc, all threads, the
console's included) for each, and the difference.

    python3 tests/bench/console_bench.py --egress build/egress [--seconds 5] [--clients 3]
        [--rounds 2] [--split-cpus]

Chromium runs in both phases (on a blank page while "closed"), so only
what the open Live page adds differs. Phases alternate for --rounds rounds;
the figures are sums over the rounds. --split-cpus puts Chromium on CPU 1
and egress and the load on CPU 0 in both phases: a browser on another
machine, as a security engineer's normally is, so what remains is what
serving the page costs egress itself.

Loopback only; the flood is curl with URL globbing (one keep-alive
connection per client, each request refused by policy). CPU contention
caveat: on a shared 2-core machine the load generator, Chromium and other
work compete with egress, so compare the two phases of one run, not runs.
"""
import argparse
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import cdp  # noqa: E402
import harness  # noqa: E402

SECRET = "console-bench-secret"
POLICY = "version: 1\nmode: self-hosted\nroles:\n  bench:\n    sources: [127.0.0.0/8]\n"


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pin(pid, cpus):
    """Sets the CPU affinity of every thread of `pid`."""
    for tid in os.listdir("/proc/%d/task" % pid):
        os.sched_setaffinity(int(tid), cpus)


def flood(egress, seconds, clients, cpus=None):
    """Refused requests for `seconds`; returns (attempts committed, egress CPU s, wall s)."""
    before_rows = len(egress.events("event = 'decision'"))
    cpu0, t0 = cpu_seconds(egress.proc.pid), time.time()
    # --max-time is per transfer, so each curl is stopped (by its PID) after `seconds`.
    procs = [subprocess.Popen(["curl", "-s", "--noproxy", "", "-o", "/dev/null", "-x", egress.proxy,
                               "http://refused.test/%d/[1-1000000]" % i],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
             for i in range(clients)]
    time.sleep(seconds)
    for p in procs:
        p.kill()
        p.wait()
    wall = time.time() - t0
    cpu = cpu_seconds(egress.proc.pid) - cpu0
    time.sleep(0.5)
    return len(egress.events("event = 'decision'")) - before_rows, cpu, wall


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--egress", required=True)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--split-cpus", action="store_true")
    options = parser.parse_args()
    harness.EGRESS = os.path.abspath(options.egress)
    workdir = tempfile.mkdtemp(prefix="egress-console-bench-")
    config = "console:\n  listen: 127.0.0.1:0\n  secret_hashes: [sha256:%s]\n" % hashlib.sha256(SECRET.encode()).hexdigest()
    egress = harness.Egress(workdir, POLICY, hosts={"refused.test": "127.0.0.1"}, extra_config=config,
                            extra_args=("--log-level", "warn", "--admin-listen", "off"))
    browser = None
    try:
        log = ""
        for _ in range(50):
            log = egress.log_text()
            if "console on" in log:
                break
            time.sleep(0.05)
        console = re.search(r"console on http://([0-9.]+:[0-9]+)/", log)
        if not console:
            # --log-level warn hides the info line; fall back to asking ss.
            out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
            ports = [l.split()[3] for l in out.splitlines() if "pid=%d," % egress.proc.pid in l]
            console_address = [p for p in ports if p != egress.address][0]
        else:
            console_address = console.group(1)
        load_cpus = {0} if options.split_cpus else None
        if load_cpus:
            pin(egress.proc.pid, load_cpus)
            everything = os.sched_getaffinity(0)
            os.sched_setaffinity(0, {1})  # Chromium inherits it
        browser = cdp.Browser()
        if load_cpus:
            os.sched_setaffinity(0, everything)
        base = "http://%s" % console_address
        browser.navigate(base + "/login")
        browser.evaluate("document.getElementById('secret').value = '%s'; document.querySelector('form').submit()"
                         % SECRET)
        browser.wait_for("location.pathname === '/live'")
        flood(egress, 1, 1, load_cpus)  # warm-up
        totals = {"closed": [0, 0.0, 0.0], "open": [0, 0.0, 0.0]}

        def phase(name):
            if name == "closed":
                browser.navigate("data:text/html,closed")  # the page closed: its event stream ends
            else:
                browser.navigate(base + "/live")  # the session cookie is still valid
                browser.wait_for("location.pathname === '/live' && "
                                 "document.getElementById('sampling').textContent.startsWith('showing')")
            result = flood(egress, options.seconds, options.clients, load_cpus)
            totals[name] = [a + b for a, b in zip(totals[name], result)]

        for number in range(options.rounds):  # ABBA: the audit file's growth favours neither phase
            for name in (("closed", "open") if number % 2 == 0 else ("open", "closed")):
                phase(name)
        browser.navigate(base + "/live")  # end on the Live page, for the checks below
        browser.wait_for("document.getElementById('sampling').textContent.startsWith('showing')")
        closed, opened = totals["closed"], totals["open"]
        sampling = browser.evaluate("document.getElementById('sampling').textContent")
        rows = browser.evaluate("document.querySelectorAll('#rows tr').length")
        responsive = time.time()
        browser.evaluate("1 + 1")
        responsive = time.time() - responsive
        for name, (n, cpu, wall) in [("page closed", closed), ("Live page open", opened)]:
            print("%-15s %7d attempts in %.1f s = %7.0f/s; egress CPU %.2f s = %.1f us/attempt"
                  % (name, n, wall, n / wall, cpu, 1e6 * cpu / max(n, 1)))
        per_closed = closed[1] / max(closed[0], 1)
        per_open = opened[1] / max(opened[0], 1)
        print("CPU per attempt with the page open: %+.1f %%; throughput %+.1f %%"
              % (100 * (per_open / per_closed - 1), 100 * ((opened[0] / opened[2]) / (closed[0] / closed[2]) - 1)))
        print("page said: %r; %s rows in the table; a script evaluation took %.0f ms" % (sampling, rows, 1000 * responsive))
    finally:
        if browser:
            browser.close()
        egress.stop()
        import shutil
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
