"""Invariant 2 under a crash: `egress serve` is SIGKILLed in the middle of a
burst of 10,000 requests from parallel clients. The killed run's journals
hold what its writer had not committed yet; the next start ingests them.
After that restart every request that reached the upstream (and every
response a client got from it) has its decision event in the audit
database, no event is there twice, and `egress audit verify` passes.

With `audit_sync: full` the same burst runs again: there every answered
request's decision is in the database itself before the restart, since a
session waits for the fsynced commit before it connects."""
import http.client
import os
import queue
import signal
import subprocess
import threading
import time

import harness
from harness import Egress, Upstream

POLICY = harness.ALLOWED_TEST_POLICY
TOTAL = 10000
CLIENTS = 16
KILL_AFTER = 5000  # responses from upstream before the SIGKILL: mid-burst


def run(workdir, results):
    for sync in ("normal", "full"):
        home = os.path.join(workdir, sync)
        os.makedirs(home)
        upstream = Upstream()
        config = "audit_sync: %s\n" % sync
        egress = Egress(home, POLICY, hosts={"allowed.test": "127.0.0.1"}, extra_config=config)
        try:
            burst(home, config, egress, upstream, results, sync)
        finally:  # a failure before the kill must not leave serve running
            egress.stop()
            upstream.close()


def burst(workdir, config, egress, upstream, results, sync):
    def check(what, ok, detail=""):
        results.check("audit_sync %s: %s" % (sync, what), ok, detail)
    host, port = egress.address.rsplit(":", 1)
    work = queue.Queue()
    for i in range(TOTAL):
        work.put(i)
    answered = {}  # path -> request id, for responses that came from the upstream
    lock = threading.Lock()
    killed = threading.Event()
    deadline = time.time() + 120  # the whole burst is bounded in time too

    def client():
        conn = None
        while not killed.is_set() and time.time() < deadline:
            try:
                i = work.get_nowait()
            except queue.Empty:
                return
            path = "/burst/%d" % i
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(host, int(port), timeout=10)
                conn.request("GET", "http://allowed.test:%d%s" % (upstream.port, path))
                response = conn.getresponse()
                body = response.read()
                if response.status == 200 and body.startswith(b"hello from upstream"):
                    with lock:
                        answered[path] = response.getheader("X-Egress-Request-Id")
                        if len(answered) >= KILL_AFTER and not killed.is_set():
                            killed.set()
                            egress.proc.send_signal(signal.SIGKILL)
            except (OSError, http.client.HTTPException):
                if conn is not None:
                    conn.close()
                conn = None
                if killed.is_set():
                    return

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    started = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=150)
    elapsed = time.time() - started
    egress.proc.wait(timeout=10)
    check("serve was SIGKILLed mid-burst", killed.is_set() and egress.proc.returncode == -signal.SIGKILL,
          "returncode %s, %d answered" % (egress.proc.returncode, len(answered)))
    print("audit_sync %s burst: %d responses from upstream (%d requests reached it) in %.1f s, then SIGKILL"
          % (sync, len(answered), len(upstream.seen), elapsed))

    if sync == "full":
        answered_ids = set(answered.values())
        in_db = {e["request_id"] for e in egress.events("event = 'decision'")}
        missing = answered_ids - in_db
        check("before the restart, every answered request's decision is in the database", not missing,
              "%d of %d missing" % (len(missing), len(answered_ids)))
    journals = os.path.join(os.path.realpath(egress.db) + "-journals")
    left = [f for f in os.listdir(journals) if f.endswith(".journal")]
    check("the killed run left its journals", left, str(os.listdir(journals)))
    out = subprocess.run([harness.EGRESS, "audit", "query", "--db", egress.db, "--limit", "1"], capture_output=True,
                         text=True, timeout=60)
    check("before the restart, egress audit says the journals hold events the database may lack",
          out.returncode == 0 and "journal file(s)" in out.stderr, out.stderr)
    restarted = Egress(workdir, POLICY, hosts={"allowed.test": "127.0.0.1"}, extra_config=config)
    restarted.stop()
    log = restarted.log_text()
    check("the restart ingested the journals and removed them",
          "ingested" in log and not [f for f in os.listdir(journals) if f.endswith(".journal")], log[-600:])
    print([line for line in log.splitlines() if "ingested" in line][:1])

    reached = {r["path"] for r in upstream.seen}
    events = egress.events()
    keys = [(e["request_id"], e["event"]) for e in events]
    check("no event is in the database twice", len(keys) == len(set(keys)),
          "%d events, %d distinct" % (len(keys), len(set(keys))))
    decided = {e["path"]: e["request_id"] for e in events if e["event"] == "decision"}
    missing_answered = [p for p in answered if p not in decided]
    check("every response from upstream has its decision event", not missing_answered,
          "%d of %d missing, e.g. %s" % (len(missing_answered), len(answered), missing_answered[:5]))
    check("the decision events carry the request ids the clients saw",
          all(decided.get(p) == rid for p, rid in answered.items()))
    missing_reached = [p for p in reached if p.startswith("/burst/") and p not in decided]
    check("every request that reached the upstream has its decision event", not missing_reached,
          "%d of %d missing" % (len(missing_reached), len(reached)))
    out = subprocess.run([harness.EGRESS, "audit", "verify", "--db", egress.db], capture_output=True, text=True,
                         timeout=60)
    check("audit verify passes after the crash", out.returncode == 0 and ": ok:" in out.stdout,
          out.stdout + out.stderr)


if __name__ == "__main__":
    harness.main(run)
