"""Attempts (decision events egress must have logged) that the shared bench
harness made through one proxy in its measured runs, from its JSON lines:
one per request, except connect-keepalive, where one tunnel (one attempt)
carries many requests. Warm-ups and verification requests are not counted.

    python3 tests/bench/attempts.py RESULTS.jsonl [PROXY]
"""
import json
import os
import sys


def attempts(path, proxy):
    total = 0
    if not os.path.exists(path):  # --verify-only writes no results
        return 0
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            if row.get("type") != "result" or row.get("proxy") != proxy:
                continue
            if row["scenario"] == "connect-keepalive":
                total += sum(r["client_conns"] for r in row["rounds"])
            else:
                total += row["ok"] + row["bad"]
    return total


if __name__ == "__main__":
    print(attempts(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "egress"))
