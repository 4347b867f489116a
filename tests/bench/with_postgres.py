#!/usr/bin/env python3
"""Runs a command with a throwaway PostgreSQL 15 cluster (the one
tests/integration/test_audit_fleet.py uses: its own directory, a Unix
socket, fsync off), its DSN in EGRESS_BENCH_PG_DSN; stops and removes the
cluster when the command ends. Exits with the command's code.

PostgreSQL runs at SCHED_IDLE and nice 19 (postmaster and every backend it
forks, and its session's autogroup): in a fleet the central store is another
machine, so on the bench's 2 cores it should take only the CPU the proxies
leave, not compete with them as a second tenant would.
EGRESS_BENCH_PG_SCHED=normal leaves out SCHED_IDLE (nice 19 only), to
measure PostgreSQL as a neighbour on the same cores.

  python3 tests/bench/with_postgres.py -- bash tests/bench/peers.sh --replicate
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from test_audit_fleet import Postgres  # noqa: E402

if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        sys.exit("usage: with_postgres.py -- COMMAND [ARGS...]")
    pg = Postgres()
    try:
        with open(os.path.join(pg.data, "postmaster.pid")) as f:
            postmaster = f.readline().strip()
        children = subprocess.run(["pgrep", "-P", postmaster], capture_output=True, text=True).stdout.split()
        subprocess.run(["renice", "-n", "19", "-p", postmaster, *children], check=True, capture_output=True)
        if os.environ.get("EGRESS_BENCH_PG_SCHED", "idle") == "idle":
            # SCHED_IDLE: a core's idle time only, and preempted at once by
            # any woken proxy or client thread; backends forked later
            # inherit it from the postmaster.
            for pid in [postmaster, *children]:
                subprocess.run(["chrt", "--idle", "-p", "0", pid], check=True, capture_output=True)
        # The postmaster runs in its own session, so with autogroup scheduling
        # its nice only ranks it within that session: lower the group too.
        if os.path.exists("/proc/%s/autogroup" % postmaster):
            with open("/proc/%s/autogroup" % postmaster, "w") as f:
                f.write("19")
        code = subprocess.call(argv, env=dict(os.environ, EGRESS_BENCH_PG_DSN=pg.dsn))
    finally:
        pg.remove()
    sys.exit(code)
