#!/usr/bin/env python3
"""Runs a command with a throwaway PostgreSQL 15 cluster (the one
tests/integration/test_audit_fleet.py uses: its own directory, a Unix
socket, fsync off), its DSN in EGRESS_BENCH_PG_DSN; stops and removes the
cluster when the command ends. Exits with the command's code.

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
        code = subprocess.call(argv, env=dict(os.environ, EGRESS_BENCH_PG_DSN=pg.dsn))
    finally:
        pg.remove()
    sys.exit(code)
