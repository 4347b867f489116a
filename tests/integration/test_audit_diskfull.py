"""Disk full while serving (invariant 2 fails closed): the audit database
lives on a small tmpfs this test mounts; once it is filled, new requests get
503 with reason audit-unavailable and the log says the store is unhealthy;
once space is freed, serving resumes without a restart. (There is no
/healthz yet, the admin listener is another issue, so the log is checked.)
Needs root for mount; skipped with a failing check otherwise."""
import os
import subprocess
import time

import harness
from harness import Egress, Upstream, curl, header

POLICY = harness.ALLOWED_TEST_POLICY



def run(workdir, results):
    check = results.check
    if os.geteuid() != 0:
        check("running as root (needed to mount a tmpfs)", False)
        return
    upstream = Upstream()
    egress = None
    with harness.small_audit_disk(workdir) as (home, mnt, db):
        try:
            egress = Egress(home, POLICY, hosts={"allowed.test": "127.0.0.1"})
            url = "http://allowed.test:%d/" % upstream.port
            status, _, _, _ = curl(egress.proxy, url + "before")
            check("serving with room on the disk", status == 200, str(status))
            check("the database and its WAL live on the tmpfs", os.path.exists(db + "-wal"),
                  str(os.listdir(mnt)) + str(os.listdir(home)))

            filler = harness.fill_filesystem(mnt)
            statuses = []
            for i in range(5):
                status, head, body, _ = curl(egress.proxy, url + "full-%d" % i)
                statuses.append((status, header(head, "X-Egress-Reason")))
            check("disk full: new requests get 503 audit-unavailable",
                  all(s == (503, "audit-unavailable") for s in statuses), str(statuses))
            check("disk full: nothing reached the upstream",
                  not any(r["path"].startswith("/full-") for r in upstream.seen), str(upstream.seen[-3:]))
            log = egress.log_text()
            check("disk full: the log says the store is unhealthy and why",
                  "unhealthy" in log and ("full" in log.lower()), log[-800:])

            os.remove(filler)
            status, head, body, _ = curl(egress.proxy, url + "after")
            check("space freed: serving resumes without a restart", status == 200 and egress.proc.poll() is None,
                  "%d %s" % (status, body[:200]))
            time.sleep(0.2)
            check("space freed: the log says healthy again", "healthy" in egress.log_text().split("unhealthy")[-1],
                  egress.log_text()[-500:])
            egress.stop()
            out = subprocess.run([harness.EGRESS, "audit", "verify", "--db", db], capture_output=True, text=True,
                                 timeout=60)
            check("verify passes: failed batches left no rows", out.returncode == 0, out.stdout + out.stderr)
            out = subprocess.run([harness.EGRESS, "audit", "query", "--db", db, "--format", "json"],
                                 capture_output=True, text=True, timeout=60)
            paths = [line for line in out.stdout.splitlines() if '"/full-' in line]
            check("the refused requests were not logged as allowed", not paths, str(paths[:2]))
        finally:
            if egress is not None:
                egress.stop()
            upstream.close()


if __name__ == "__main__":
    harness.main(run)
