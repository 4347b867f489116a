#!/usr/bin/env python3
"""Runs a command with a throwaway PostgreSQL 15 cluster (the one
tests/integration/test_audit_fleet.py uses: its own directory, a Unix
socket, fsync off), its DSN in EGRESS_BENCH_PG_DSN; stops and removes the
cluster when the command ends. Exits with the command's code.

PostgreSQL runs at nice 19 (postmaster and every backend it forks, and its
session's autogroup): in a
fleet the central store is another machine, so on the bench's 2 cores it
should take only the CPU the proxies leave, not compete with them as a
second tenant would.

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
        # The postmaster runs in its own session, so with autogroup scheduling
        # its nice only ranks it within that session: lower the group too.
        if os.path.exists("/proc/%s/autogroup" % postmaster):
            with open("/proc/%s/autogroup" % postmaster, "w") as f:
                f.write("19")
        code = subprocess.call(argv, env=dict(os.environ, EGRESS_BENCH_PG_DSN=pg.dsn))
    finally:
        pg.remove()
    sys.exit(code)
