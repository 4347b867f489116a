"""`egress audit` against the database real `egress serve` traffic wrote:
query (filters, formats, several files), tail and tail -f, stats, verify,
export, prune while serve writes, serve's retention, bad --db input, and
tamper detection after edits made with the sqlite3 CLI."""
import csv
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time

import harness
from harness import Egress, Upstream, curl, header

POLICY = """\
version: 1
mode: self-hosted
internal:
  - host: allowed.test
    ports: any
  - host: api.allowed.test
    ports: any
"""
HOSTS = {n: "127.0.0.1" for n in ("allowed.test", "api.allowed.test", "denied.test")}


def audit(*args, timeout=60):
    out = subprocess.run([harness.EGRESS, "audit", *args], capture_output=True, text=True, timeout=timeout)
    return out.returncode, out.stdout, out.stderr


def jsonl(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def traffic(egress, up, prefix):
    """Two allowed hosts and one denied; returns {request_id: (host, status)}."""
    seen = {}
    for host, path in (("allowed.test", "/one"), ("api.allowed.test", "/two"), ("denied.test", "/three"),
                       ("allowed.test", "/four")):
        status, head, _, err = curl(egress.proxy, "http://%s:%d%s-%s" % (host, up, path, prefix))
        seen[header(head, "X-Egress-Request-Id")] = (host, status)
    return seen


def sqlite_cli(db, sql):
    return subprocess.run(["sqlite3", db, sql], capture_output=True, text=True, timeout=30)


def run(workdir, results):
    started = []
    try:
        checks(workdir, results, started)
    finally:  # a failed check must not leave serve processes behind
        for e in started:
            e.stop()


def checks(workdir, results, started):
    check = results.check
    plain = Upstream()
    up = plain.port
    dir_a = os.path.join(workdir, "a")
    dir_b = os.path.join(workdir, "b")
    os.makedirs(dir_a)
    os.makedirs(dir_b)
    egress = Egress(dir_a, POLICY, hosts=HOSTS)
    replica = Egress(dir_b, POLICY, hosts=HOSTS)
    started += [egress, replica]
    sent = traffic(egress, up, "a")
    sent_b = traffic(replica, up, "b")
    check("traffic: 200, 200, 403, 200",
          [s for _, s in sent.values()] == [200, 200, 403, 200], str(sent))
    egress.wait_for_events("event = 'close'", count=4)
    replica.wait_for_events("event = 'close'", count=4)
    db, db_b = egress.db, replica.db

    # -- query: content of every request, formats, filters. --
    code, out, err = audit("query", "--db", db, "--format", "json")
    rows = jsonl(out)
    check("query json: one row per request", code == 0 and len(rows) == 4, err + out)
    check("query json: request ids, hosts and statuses match the traffic",
          {r["request_id"]: (r["host"], r["status"]) for r in rows} == sent, str(rows))
    check("query json: decisions and reasons",
          sorted((r["decision"], r["reason"]) for r in rows)[-1] == ("deny", "not-allowed"), str(rows))
    check("query json: oldest first", [r["ts"] for r in rows] == sorted(r["ts"] for r in rows), str(rows))

    code, out, _ = audit("query", "--db", db, "--host", ".allowed.test", "--decision", "allow", "--format", "csv")
    table = list(csv.DictReader(io.StringIO(out)))
    check("query csv: .allowed.test matches the domain and its subdomain",
          sorted(r["host"] for r in table) == ["allowed.test", "allowed.test", "api.allowed.test"], out)
    code, out, _ = audit("query", "--db", db, "--host", "*.allowed.test", "--format", "json")
    check("query: *.allowed.test matches subdomains only", [r["host"] for r in jsonl(out)] == ["api.allowed.test"], out)
    code, out, _ = audit("query", "--db", db, "--status", "403", "--format", "json")
    check("query: --status 403 is the denied request", [r["host"] for r in jsonl(out)] == ["denied.test"], out)
    code, out, _ = audit("query", "--db", db, "--since", "1h", "--limit", "2", "--format", "json")
    check("query: --since 1h --limit 2", len(jsonl(out)) == 2, out)
    code, out, _ = audit("query", "--db", db, "--since", "2099-01-01", "--format", "json")
    check("query: a future --since finds nothing", code == 0 and out == "", out)
    code, out, _ = audit("query", "--db", db, "--client", "127.0.0.1", "--format", "json")
    check("query: --client by address matches every port", len(jsonl(out)) == 4, out)
    code, out, _ = audit("query", "--db", db)
    lines = out.splitlines()
    check("query table: header and aligned rows",
          code == 0 and lines[0].startswith("ts ") and len(lines) == 5 and "denied.test" in out
          and len({line.index("request_id") if "request_id" in line else -1 for line in lines[:1]}) == 1, out)

    # -- several files read as one log --
    code, out, _ = audit("query", "--db", db, "--db", db_b, "--format", "json")
    rows = jsonl(out)
    check("two files: eight requests, each tagged with its file",
          len(rows) == 8 and {r["db"] for r in rows} == {db, db_b}, out[:500])
    check("two files: merged oldest first", [r["ts"] for r in rows] == sorted(r["ts"] for r in rows), out[:500])
    check("two files: every request of both", {r["request_id"] for r in rows} == set(sent) | set(sent_b), out[:500])

    # -- tail --
    code, out, _ = audit("tail", "--db", db, "-n", "3", "--format", "json")
    events = egress.events()
    check("tail -n 3: the three newest events", [r["id"] for r in jsonl(out)] == [e["id"] for e in events[-3:]], out)
    follower = subprocess.Popen([harness.EGRESS, "audit", "tail", "-f", "--db", db, "-n", "0", "--format", "json"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        status, head, _, _ = curl(egress.proxy, "http://allowed.test:%d/followed" % up)
        rid = header(head, "X-Egress-Request-Id")
        egress.wait_for_events("request_id = ?", (rid,), count=2)
        time.sleep(0.6)  # three polls
    finally:
        follower.send_signal(signal.SIGINT)
        try:
            out, err = follower.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            follower.kill()
            out, err = follower.communicate()
    followed = jsonl(out)
    check("tail -f: printed the new request's decision and close",
          [(r["request_id"], r["event"]) for r in followed] == [(rid, "decision"), (rid, "close")], out + err)
    check("tail -f: stops on SIGINT with exit 0", follower.returncode == 0, str(follower.returncode))

    # -- stats --
    code, out, _ = audit("stats", "--db", db, "--format", "json")
    stats = jsonl(out)
    by_decision = {r["decision"]: r["requests"] for r in stats if r["section"] == "requests by decision"}
    check("stats: requests by decision", by_decision == {"allow": 4, "deny": 1}, out)
    denied = [r for r in stats if r["section"] == "top hosts denied"]
    check("stats: top denied host", [(r["host"], r["requests"]) for r in denied] == [("denied.test", 1)], out)
    allowed = {r["host"]: r["requests"] for r in stats if r["section"] == "top hosts allowed"}
    check("stats: top allowed hosts", allowed == {"allowed.test": 3, "api.allowed.test": 1}, out)
    reasons = [(r["reason"], r["requests"]) for r in stats if r["section"] == "denials by role and reason"]
    check("stats: denials by reason", reasons == [("not-allowed", 1)], out)
    clients = [r for r in stats if r["section"] == "busiest clients"]
    check("stats: busiest client is 127.0.0.1 without its port",
          [(r["client"], r["requests"], r["denied"]) for r in clients] == [("127.0.0.1", 5, 1)], out)
    code, out, _ = audit("stats", "--db", db)
    check("stats table: every section titled", code == 0 and out.count("== ") == 6 and "denied.test" in out, out)

    # -- export --
    export_file = os.path.join(workdir, "export.jsonl")
    code, _, err = audit("export", "--db", db, "--format", "jsonl", "--since", "1h", "-o", export_file)
    with open(export_file) as f:
        exported = jsonl(f.read())
    events = egress.events()
    check("export jsonl: every event with its hash", code == 0 and
          [(r["id"], r["hash"], r["request_id"]) for r in exported] ==
          [(e["id"], e["hash"], e["request_id"]) for e in events], err)
    code, out, _ = audit("export", "--db", db, "--format", "csv", "--until", "2000-01-01")
    check("export csv: header only for an empty range", out.strip().split(",")[:3] == ["id", "ts", "request_id"]
          and len(out.strip().splitlines()) == 1, out)

    # -- verify on a live database --
    code, out, _ = audit("verify", "--db", db, "--db", db_b)
    check("verify: both files intact", code == 0 and out.count(": ok:") == 2, out)

    # -- bad --db input --
    missing = os.path.join(workdir, "missing.db")
    code, _, err = audit("query", "--db", missing)
    check("missing --db: exit 2 naming the path", code == 2 and missing in err and "No such file" in err, err)
    check("missing --db: not created", not os.path.exists(missing))
    notdb = os.path.join(workdir, "notes.txt")
    with open(notdb, "w") as f:
        f.write("not a database\n" * 100)
    code, _, err = audit("verify", "--db", notdb)
    check("text file --db: exit 2, not an egress audit database", code == 2 and notdb in err
          and "not an egress audit database" in err, err)
    newer = os.path.join(workdir, "newer.db")
    shutil.copy(db_b, newer)
    sqlite_cli(newer, "PRAGMA user_version = 99")
    code, _, err = audit("stats", "--db", newer)
    check("newer schema: exit 2, refused", code == 2 and "newer egress" in err and newer in err, err)
    code, _, err = audit("prune", "--db", newer, "--older-than", "1s")
    check("newer schema: prune refuses too, no downgrade",
          code == 2 and sqlite_cli(newer, "PRAGMA user_version").stdout.strip() == "99", err)
    code, _, err = audit("query", "--db", db, "--since", "yesterday")
    check("bad --since: exit 2 with the forms", code == 2 and "--since 'yesterday'" in err and "15m" in err, err)
    code, _, err = audit("query", "--db", db, "--decision", "maybe")
    check("bad --decision: exit 2", code == 2 and "--decision 'maybe'" in err, err)

    # -- prune while serve writes: the anchor keeps verify passing --
    cutoff = egress.events("event = 'close'")[1]["ts"]  # after the second request's close
    egress.rows_may_be_lost = True  # pruned on purpose (harness.check_one_decision_one_close)
    code, out, err = audit("prune", "--db", db, "--older-than", cutoff)
    kept = egress.events()
    check("prune: removed the oldest rows", code == 0 and "anchored" in out and kept[0]["ts"] >= cutoff, out + err)
    status, head, _, _ = curl(egress.proxy, "http://allowed.test:%d/after-prune" % up)
    rid = header(head, "X-Egress-Request-Id")
    check("serve keeps working after prune", status == 200 and
          len(egress.wait_for_events("request_id = ?", (rid,), count=2)) == 2)
    code, out, _ = audit("verify", "--db", db)
    check("verify after prune: ok, pruned rows anchored", code == 0 and "accounted for by 1 anchor" in out, out)

    # -- retention in serve --
    dir_r = os.path.join(workdir, "r")
    os.makedirs(dir_r)
    retained = Egress(dir_r, POLICY, hosts=HOSTS, extra_args=("--retention", "2s"))
    retained.rows_may_be_lost = True  # retention deletes old rows by design
    started.append(retained)
    traffic(retained, up, "old")
    retained.wait_for_events("event = 'close'", count=4)
    time.sleep(3.5)  # older than 2 s, and at least one 1 s retention pass
    status, head, _, _ = curl(retained.proxy, "http://allowed.test:%d/fresh" % up)
    rid = header(head, "X-Egress-Request-Id")
    deadline = time.time() + 5
    while time.time() < deadline and any(e["request_id"] != rid for e in retained.events()):
        time.sleep(0.2)
    left = retained.events()
    check("retention: only the fresh request is left", {e["request_id"] for e in left} == {rid}, str(left))
    code, out, _ = audit("verify", "--db", retained.db)
    check("retention: verify passes with the anchor", code == 0 and "anchor" in out, out)
    check("retention: logged", "retention removed" in retained.log_text(), retained.log_text()[-500:])
    retained.stop()

    egress.stop()
    replica.stop()

    # -- tamper evidence: edit, delete, swap with the sqlite3 CLI --
    def tampered(name, sql):
        path = os.path.join(workdir, name + ".db")
        shutil.copy(db_b, path)
        done = sqlite_cli(path, "DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete; " + sql)
        if done.returncode != 0:
            raise AssertionError(done.stderr)
        return audit("verify", "--db", path)

    code, out, _ = tampered("edited", "UPDATE events SET host = 'innocent.test' WHERE id = 5")
    check("tamper: an edited row is named", code == 1 and "row 5 " in out and "edited" in out, out)
    code, out, _ = tampered("deleted", "DELETE FROM events WHERE id = 3")
    check("tamper: a deleted row is named", code == 1 and "row 4 " in out and "row(s) 3 were deleted" in out, out)
    code, out, _ = tampered("swapped", "UPDATE events SET id = -1 WHERE id = 2; UPDATE events SET id = 2 WHERE id = 6;"
                                       " UPDATE events SET id = 6 WHERE id = -1")
    check("tamper: swapped rows are named", code == 1 and "row 2 " in out and "out of order" in out, out)
    code, out, _ = audit("verify", "--db", db_b)
    check("the untouched original still verifies", code == 0, out)
    plain.close()


if __name__ == "__main__":
    harness.main(run)
