"""A fleet of two `egress serve` replicas replicating their audit logs to a
real PostgreSQL 15 cluster (Debian's, its own cluster in a temp dir, on a
Unix socket only: no TCP listener at all). Checks: every request of both
replicas is central with the right replica name and `audit verify --db
postgresql://` passes; PostgreSQL stopped mid-traffic costs no request and
the backlog (metrics) drains exactly when it is back; a replica SIGKILLed
while shipping resumes with no duplicates and no gaps; an edited, a deleted
and two swapped central rows are each caught by verify naming replica and
row; the OCSF stream parses line by line with each class's fields."""
import contextlib
import http.client
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

import harness
from harness import Egress, Upstream

PG_BIN = "/usr/lib/postgresql/15/bin"
POLICY = harness.ALLOWED_TEST_POLICY


class Postgres:
    """A throwaway cluster owned by the postgres user (initdb and postgres
    refuse root), listening on a Unix socket in its own directory."""

    def __init__(self, shared_buffers="16MB"):
        self.user = "postgres"
        pwd.getpwnam(self.user)  # KeyError: the postgres package is not installed
        self.dir = tempfile.mkdtemp(prefix="egress-pg-")
        shutil.chown(self.dir, self.user, self.user)
        self.data = os.path.join(self.dir, "data")
        self.port = harness.free_port()
        self._as_pg([PG_BIN + "/initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                     "--no-sync"], timeout=60)
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("listen_addresses = ''\nunix_socket_directories = '%s'\nport = %d\nfsync = off\n"
                    "shared_buffers = %s\nmax_connections = 20\n" % (self.dir, self.port, shared_buffers))
        self.start()
        self.psql("CREATE DATABASE egress", db="postgres")
        self.dsn = "postgresql://postgres@/egress?host=%s&port=%d" % (self.dir, self.port)

    def _as_pg(self, argv, timeout=30):
        return subprocess.run(["runuser", "-u", self.user, "--", *argv], check=True, timeout=timeout,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def start(self):
        self._as_pg([PG_BIN + "/pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "log"), "-w", "-t", "20",
                     "start"])

    def stop(self):
        self._as_pg([PG_BIN + "/pg_ctl", "-D", self.data, "-m", "fast", "-w", "-t", "20", "stop"])

    def require_password(self, user, password):
        """A role that must log in with its password (SCRAM) over the socket,
        with the least a shipper needs once the schema exists."""
        self.psql("CREATE ROLE %s LOGIN PASSWORD '%s'; GRANT SELECT ON egress_schema TO %s; "
                  "GRANT SELECT, INSERT ON events TO %s" % (user, password, user, user))
        hba = os.path.join(self.data, "pg_hba.conf")
        with open(hba) as f:
            rules = f.read()
        with open(hba, "w") as f:
            f.write("local egress %s scram-sha-256\n" % user + rules)
        self._as_pg([PG_BIN + "/pg_ctl", "-D", self.data, "reload"])

    def psql(self, sql, db="egress"):
        out = subprocess.run(["psql", "-h", self.dir, "-p", str(self.port), "-U", "postgres", "-d", db, "-XAtq",
                              "-v", "ON_ERROR_STOP=1", "-c", sql], check=True, timeout=30,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return out.stdout.strip()

    def freeze(self):
        """SIGSTOPs the postmaster and its children (by PID): a PostgreSQL
        that accepts connections and never answers."""
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            main = int(f.readline())
        children = subprocess.run(["pgrep", "-P", str(main)], stdout=subprocess.PIPE, text=True).stdout.split()
        self.frozen = [main] + [int(c) for c in children]
        for pid in self.frozen:
            os.kill(pid, signal.SIGSTOP)

    def thaw(self):
        for pid in getattr(self, "frozen", []):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.frozen = []

    def remove(self):
        self.thaw()
        with contextlib.suppress(Exception):
            if os.path.exists(os.path.join(self.data, "postmaster.pid")):
                self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def audit(*args, timeout=60):
    return subprocess.run([harness.EGRESS, "audit", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=timeout)


def local_count(egress):
    return len(egress.events())


def central_counts(pg):
    rows = pg.psql("SELECT replica, count(*), min(id), max(id) FROM events GROUP BY 1 ORDER BY 1")
    out = {}
    for line in rows.splitlines():
        name, n, lo, hi = line.split("|")
        out[name] = (int(n), int(lo), int(hi))
    return out


def wait_drained(pg, replicas, timeout=20):
    """Polls until every replica's central rows equal its local ones on two
    polls in a row: a session's close event is committed locally a moment
    after its worker saw the connection end, so one equal poll can still be
    followed by a local row that has not shipped yet."""
    deadline = time.time() + timeout
    previous = None
    while True:
        want = {name: local_count(e) for name, e in replicas.items()}
        have = {name: c[0] for name, c in central_counts(pg).items() if name in want}
        drained = all(have.get(n) == want[n] for n in want)
        if (drained and want == previous) or time.time() > deadline:
            return want, have
        previous = want if drained else None
        time.sleep(0.2)


def metric(admin, name):
    text = urllib.request.urlopen("http://%s/metrics" % admin, timeout=5).read().decode()
    m = re.search(r"^egress_%s (\S+)$" % name, text, re.M)
    return float(m.group(1)) if m else None


def traffic(egress, upstream, n, tag):
    """n requests through one replica: allowed GETs, some denied, one tunnel
    each 10; returns how many failed (an allowed one not answered 200)."""
    host, port = egress.address.rsplit(":", 1)
    failed = 0
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    for i in range(n):
        if i % 10 == 9:
            try:
                sock, status = harness.tunnel(egress.address, "allowed.test:%d" % upstream.port)
                sock.close()
                failed += 0 if " 200" in status else 1
            except OSError:
                failed += 1
            continue
        target = "http://denied.test/%s/%d" % (tag, i) if i % 7 == 3 else \
            "http://allowed.test:%d/%s/%d" % (upstream.port, tag, i)
        try:
            conn.request("GET", target)
            response = conn.getresponse()
            response.read()
            if "allowed.test" in target and response.status != 200:
                failed += 1
        except OSError:
            failed += 1
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.close()
    return failed


def start_replica(root, name, pg, extra=(), replica=None):
    workdir = os.path.join(root, name)
    os.makedirs(workdir, exist_ok=True)
    admin = "127.0.0.1:%d" % harness.free_port()
    egress = Egress(workdir, POLICY, hosts={"allowed.test": "127.0.0.1"},
                    extra_args=("--audit-replicate-to", pg.dsn, "--audit-replica", replica or name, "--admin-listen", admin,
                                *extra))
    egress.admin = admin
    return egress


def run(workdir, results):
    pg = Postgres()
    upstream = Upstream()
    try:
        fleet(workdir, pg, upstream, results)
    finally:
        for e in harness.STARTED:
            e.stop()
        upstream.close()
        pg.remove()


def fleet(workdir, pg, upstream, results):
    check = results.check
    stream = os.path.join(workdir, "alpha-ocsf.jsonl")
    alpha = start_replica(workdir, "alpha", pg, ("--audit-stream", stream, "--audit-stream-format", "ocsf"))
    beta = start_replica(workdir, "beta", pg)
    replicas = {"alpha": alpha, "beta": beta}

    # 1. Traffic through both, all of it central, verify passes.
    failed = traffic(alpha, upstream, 60, "a1") + traffic(beta, upstream, 60, "b1")
    check("first traffic: no failed request", failed == 0, failed)
    want, have = wait_drained(pg, replicas)
    check("every local row is central, per replica", want == have, (want, have))
    q = audit("query", "--db", pg.dsn, "--format", "json")
    lines = [json.loads(line) for line in q.stdout.splitlines()]
    local_requests = {n: len(e.events("event = 'decision'")) for n, e in replicas.items()}
    by_replica = {n: sum(1 for r in lines if r.get("replica") == n) for n in replicas}
    check("audit query --db postgresql:// returns every request with its replica name",
          q.returncode == 0 and by_replica == local_requests and len(lines) == sum(local_requests.values()),
          (q.returncode, by_replica, local_requests, q.stderr[-300:]))
    paths = {r["path"] for r in lines if r.get("path")}
    check("requests of both replicas are there", any("/a1/" in p for p in paths) and any("/b1/" in p for p in paths))
    qb = audit("query", "--db", pg.dsn, "--replica", "beta", "--format", "json", "--decision", "deny")
    rows_b = [json.loads(line) for line in qb.stdout.splitlines()]
    check("--replica and filters narrow the central query",
          qb.returncode == 0 and rows_b and all(r["replica"] == "beta" and r["decision"] == "deny" for r in rows_b)
          and len(rows_b) == len(beta.events("event = 'decision' AND decision = 'deny'")), qb.stderr[-300:])
    v = audit("verify", "--db", pg.dsn)
    check("verify passes on the central store", v.returncode == 0 and v.stdout.count(": ok:") == 2,
          v.stdout + v.stderr)
    s = audit("stats", "--db", pg.dsn, "--format", "json")
    total = sum(json.loads(l)["requests"] for l in s.stdout.splitlines()
                if json.loads(l)["section"] == "requests by decision")
    check("stats over the fleet add both replicas up", s.returncode == 0 and total == sum(local_requests.values()),
          (total, s.stderr[-200:]))

    # 2. PostgreSQL away mid-traffic: no failed request, backlog grows, ready.
    pg.stop()
    failed = traffic(alpha, upstream, 30, "a2") + traffic(beta, upstream, 30, "b2")
    time.sleep(0.6)
    backlog1 = metric(alpha.admin, "audit_replication_backlog_rows")
    failed += traffic(alpha, upstream, 20, "a3")
    time.sleep(0.6)
    backlog2 = metric(alpha.admin, "audit_replication_backlog_rows")
    lag = metric(alpha.admin, "audit_replication_lag_seconds")
    check("PostgreSQL stopped: zero failed requests", failed == 0, failed)
    check("backlog metric grows while PostgreSQL is away", backlog1 and backlog2 and backlog2 > backlog1 > 0,
          (backlog1, backlog2))
    check("lag metric is positive", lag is not None and lag > 0, lag)
    check("connected metric is 0", metric(alpha.admin, "audit_replication_connected") == 0)
    ready = urllib.request.urlopen("http://%s/readyz" % beta.admin, timeout=5).status
    check("/readyz stays ready without PostgreSQL", ready == 200, ready)
    pg.start()
    want, have = wait_drained(pg, replicas)
    check("PostgreSQL back: the backlog drains, central counts equal local ones exactly", want == have, (want, have))
    time.sleep(0.5)
    check("backlog metric back to 0", metric(alpha.admin, "audit_replication_backlog_rows") == 0)
    log = alpha.log_text()
    check("the failure is logged once, not per row", log.count("is failing") == 1, log.count("is failing"))
    check("the recovery is logged", "recovered" in log)

    # 2b. PostgreSQL frozen (accepts, never answers): requests are not slowed.
    pg.freeze()
    t0 = time.time()
    failed = traffic(alpha, upstream, 30, "a6") + traffic(beta, upstream, 30, "b6")
    took = time.time() - t0
    pg.thaw()
    check("PostgreSQL frozen: zero failed requests, not slowed", failed == 0 and took < 10, (failed, took))
    want, have = wait_drained(pg, replicas)
    check("PostgreSQL thawed: central equals local again", want == have, (want, have))

    # 3. A replica SIGKILLed while shipping, then restarted.
    stop_traffic = threading.Event()
    def busy():
        while not stop_traffic.is_set():
            try:
                traffic(beta, upstream, 10, "b4")
            except OSError:
                return
    t = threading.Thread(target=busy)
    t.start()
    time.sleep(1.0)
    beta.stop(signal.SIGKILL)
    stop_traffic.set()
    t.join(20)
    beta = start_replica(workdir, "beta", pg)
    replicas["beta"] = beta
    traffic(beta, upstream, 10, "b5")
    want, have = wait_drained(pg, replicas)
    counts = central_counts(pg)
    n, lo, hi = counts["beta"]
    local_ids = [e["id"] for e in beta.events()]
    check("after SIGKILL and restart: central equals local", want == have, (want, have))
    check("no duplicates and no gaps (ids 1..max, one each)", n == hi - lo + 1 and lo == 1 and hi == max(local_ids),
          counts["beta"])

    # 4. Tampering in PostgreSQL, each caught with replica and row named.
    v = audit("verify", "--db", pg.dsn)
    check("verify passes before tampering", v.returncode == 0, v.stdout + v.stderr)
    original = pg.psql("SELECT host FROM events WHERE replica = 'alpha' AND id = 5")
    pg.psql("UPDATE events SET host = 'evil.test' WHERE replica = 'alpha' AND id = 5")
    v = audit("verify", "--db", pg.dsn)
    check("an edited row is caught, naming replica and row",
          v.returncode == 1 and re.search(r"replica alpha: TAMPERED: row 5 .*edited", v.stdout), v.stdout)
    pg.psql("UPDATE events SET host = %s WHERE replica = 'alpha' AND id = 5" %
            ("NULL" if original == "" else "'%s'" % original))
    pg.psql("BEGIN; UPDATE events SET id = -1 WHERE replica = 'alpha' AND id = 10; "
            "UPDATE events SET id = 10 WHERE replica = 'alpha' AND id = 11; "
            "UPDATE events SET id = 11 WHERE replica = 'alpha' AND id = -1; COMMIT")
    v = audit("verify", "--db", pg.dsn)
    check("two swapped rows are caught, naming replica and row",
          v.returncode == 1 and re.search(r"replica alpha: TAMPERED: row 10 .*out of order", v.stdout), v.stdout)
    pg.psql("DELETE FROM events WHERE replica = 'beta' AND id = 7")
    v = audit("verify", "--db", pg.dsn)
    check("a deleted row is caught, naming replica and row",
          v.returncode == 1 and re.search(r"replica beta: TAMPERED: row 8 .*row\(s\) 7 were deleted", v.stdout),
          v.stdout)

    # 5. The OCSF stream: every line JSON, each class's fields.
    alpha.stop()
    problems, classes = [], set()
    with open(stream) as f:
        lines = f.read().splitlines()
    for i, line in enumerate(lines):
        try:
            e = json.loads(line)
        except ValueError as err:
            problems.append("line %d: %s" % (i + 1, err))
            continue
        classes.add(e.get("class_uid"))
        need = ["class_uid", "category_uid", "activity_id", "type_uid", "time", "severity_id", "metadata",
                "src_endpoint", "dst_endpoint", "status_id"]
        missing = [k for k in need if k not in e]
        if e.get("class_uid") == 4002 and "http_request" not in e:
            missing.append("http_request")
        if e.get("class_uid") == 4002 and not e.get("http_request", {}).get("url", {}).get("hostname"):
            missing.append("http_request.url.hostname")
        if e.get("class_uid") == 4001 and not e.get("dst_endpoint", {}).get("port"):
            missing.append("dst_endpoint.port")
        if e.get("type_uid") != e.get("class_uid", 0) * 100 + e.get("activity_id", -1):
            missing.append("type_uid = class_uid*100 + activity_id")
        if e.get("category_uid") != 4 or not e.get("metadata", {}).get("version") or not e.get("time", 0) > 0:
            missing.append("category/metadata.version/time")
        if not e.get("src_endpoint", {}).get("ip"):
            missing.append("src_endpoint.ip")
        if missing:
            problems.append("line %d: %s" % (i + 1, missing))
    check("OCSF stream: every line parses with its class's fields", lines and not problems, problems[:5])
    check("OCSF stream has both HTTP Activity and Network Activity", classes == {4001, 4002}, classes)
    check("OCSF stream has every committed row", len(lines) == local_count(alpha), (len(lines), local_count(alpha)))

    # 6. Retention never prunes what is not shipped; a backlog bound makes
    #    /readyz unready.
    pg.stop()
    gamma = start_replica(workdir, "gamma", pg, ("--audit-max-backlog", "5"))
    gamma.rows_may_be_lost = True  # pruned below on purpose (harness.check_one_decision_one_close)
    failed = traffic(gamma, upstream, 10, "g1")
    time.sleep(0.5)  # close events are queued without waiting
    before = local_count(gamma)
    pr = audit("prune", "--db", gamma.db, "--older-than", "0s")
    check("prune keeps unshipped rows and says so",
          pr.returncode == 0 and "pruned 0 event(s)" in pr.stdout and
          "kept %d older event(s) (ids above 0): not yet replicated to postgresql://postgres@/egress" % before
          in pr.stdout and local_count(gamma) == before and failed == 0,
          (pr.stdout, pr.stderr, before, local_count(gamma)))
    time.sleep(0.6)
    try:
        ready = urllib.request.urlopen("http://%s/readyz" % gamma.admin, timeout=5).status
    except urllib.error.HTTPError as e:
        ready = e.code
    check("/readyz unready past --audit-max-backlog", ready == 503, ready)
    pg.start()
    replicas = {"gamma": gamma}
    want, have = wait_drained(pg, replicas)
    check("gamma's backlog ships after the outage", want == have, (want, have))
    time.sleep(1.2)  # the shipped id is noted locally at most once a second
    gamma.stop()
    pr = audit("prune", "--db", gamma.db, "--older-than", "0s")
    check("once shipped, prune removes them", pr.returncode == 0 and local_count(gamma) == 1, (pr.stdout, local_count(gamma)))

    # 7. The password comes from a file and appears in no log; export and
    #    tail read the central store too.
    secret = "pw-%d-zq" % os.getpid()
    pg.require_password("shipper", secret)
    pwfile = os.path.join(workdir, "pgpassword")
    with open(pwfile, "w") as f:
        f.write(secret + "\n")
    os.chmod(pwfile, 0o600)
    shipper_dsn = pg.dsn.replace("postgres@", "shipper@")
    os.makedirs(os.path.join(workdir, "delta"))
    delta = Egress(os.path.join(workdir, "delta"), POLICY, hosts={"allowed.test": "127.0.0.1"},
                   extra_args=("--audit-replicate-to", shipper_dsn, "--audit-replica", "delta",
                               "--audit-replicate-password-file", pwfile, "--admin-listen", "off"))
    traffic(delta, upstream, 10, "d1")
    want, have = wait_drained(pg, {"delta": delta})
    delta.stop()
    check("a replica logging in with a password file ships", want == have and want["delta"] > 0, (want, have))
    log = delta.log_text()
    check("the password is in no log line", secret not in log and "shipper@" in log, log[-400:])
    ex = audit("export", "--db", pg.dsn, "--replica", "delta")
    check("export --db postgresql:// writes every event of the replica",
          ex.returncode == 0 and len(ex.stdout.splitlines()) == want["delta"], (ex.stderr[-300:], want))
    tl = audit("tail", "--db", pg.dsn, "-n", "5", "--format", "json")
    check("tail --db postgresql:// shows the newest events", tl.returncode == 0 and len(tl.stdout.splitlines()) == 5,
          tl.stderr[-300:])

    # 7a. Two egresses under one replica name: said loudly, nothing overwritten.
    before = central_counts(pg)["beta"]
    twin = start_replica(workdir, "twin", pg, replica="beta")
    traffic(twin, upstream, 5, "t1")
    deadline = time.time() + 10
    while "same name" not in twin.log_text() and time.time() < deadline:
        time.sleep(0.2)
    twin.stop()
    log = twin.log_text()
    check("a replica name used twice is reported, the first one's rows kept",
          "is failing" in log and "another egress ships under the same name" in log
          and central_counts(pg)["beta"][0] >= before[0]
          and audit("verify", "--db", pg.dsn, "--replica", "beta").stdout.count("row 8") == 1, log[-500:])

    # 7b. serve's shutdown does not wait for a frozen PostgreSQL.
    delta = Egress(os.path.join(workdir, "delta"), POLICY, hosts={"allowed.test": "127.0.0.1"},
                   extra_args=("--audit-replicate-to", shipper_dsn, "--audit-replica", "delta",
                               "--audit-replicate-password-file", pwfile, "--admin-listen", "off"))
    time.sleep(0.5)
    pg.freeze()
    traffic(delta, upstream, 10, "d2")
    time.sleep(0.5)
    t0 = time.time()
    code = delta.stop(timeout=30)
    took = time.time() - t0
    pg.thaw()
    print("shutdown took %.1f s; left behind: %s" % (took, "did not stop within 5 s" in delta.log_text()))
    check("SIGTERM with PostgreSQL frozen: serve exits cleanly within 10 s", code == 0 and took < 10, (code, took))

    # 8. A password in the DSN is refused and never echoed.
    bad = subprocess.run([harness.EGRESS, "serve", "--audit-replicate-to", "postgresql://u:s3cretpw@/x",
                          "--audit-db", os.path.join(workdir, "x.db"), "--listen", "127.0.0.1:0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=20)
    check("a DSN with a password is refused without echoing it",
          bad.returncode == 2 and "s3cretpw" not in bad.stderr + bad.stdout and "password" in bad.stderr, bad.stderr)


if __name__ == "__main__":
    harness.main(run)
