"""The parse and limit families of the attack suite (test_attacks.py:
framing, smuggling, header and target limits, the body limit, slow heads),
run INSIDE an inspected tunnel (issue 14): a python TLS client that trusts
the egress CA opens CONNECT allowed.test, egress terminates TLS with a
minted leaf, and every request inside is the attack.

The rule is `inspect: true` with `paths: [/ok]`, and every attack aims at
an allowed path (/ok/atk-N/...), so only the head check stands between it
and the upstream. The upstream is a real TLS server (a canary) that
records every byte of every connection and answers any head with 200, so a
request that gets through fails its case fast. Cases run one after another
and each checks that the canary received nothing while it ran (the TLS
handshake of the upstream connection is not application data and is not
recorded). Each case asserts the status and X-Egress-Reason, a closed
connection where the plain path closes it, and the audit decision row
(kind inspected, deny, the reason).

A control proves the case could fail: a plain allowed GET through the same
tunnel reaches the canary, and a path outside /ok is refused with
path-not-allowed.

Network rule: 127.0.0.1 only; allowed.test resolves through dns.hosts.
"""
import contextlib
import os
import socket
import sqlite3
import ssl
import subprocess
import threading
import time

import harness
from framing_cases import framing_cases

POLICY = """\
version: 1
mode: self-hosted
allow:
  - host: allowed.test
    ports: any
    inspect: true
    paths: [/ok]
internal:
  - cidr: 127.0.0.1/32
    ports: any
"""
LIMITS = "limits:\n  header_timeout: 1s\n  max_body_bytes: 1000\n"


class TlsCanary:
    """A TLS server on 127.0.0.1 that records the application data of every
    connection and answers each arriving head with a 200."""

    def __init__(self, cert_dir):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(os.path.join(cert_dir, "upstream.crt"), os.path.join(cert_dir, "upstream.key"))
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.data = b""
        self.closing = False
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def take(self):
        with self.lock:
            data, self.data = self.data, b""
        return data

    def _accept(self):
        while not self.closing:
            try:
                conn, _ = self.listener.accept()
            except (socket.timeout, OSError):
                continue
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()

    def _serve(self, conn):
        conn.settimeout(30)
        try:
            with self.context.wrap_socket(conn, server_side=True) as t:
                pending = b""
                for _ in range(10000):  # bounded
                    chunk = t.recv(65536)
                    if not chunk:
                        return
                    with self.lock:
                        self.data += chunk
                    pending += chunk
                    while b"\r\n\r\n" in pending:
                        _, _, pending = pending.partition(b"\r\n\r\n")
                        t.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\ncanary")
        except (OSError, ssl.SSLError):
            return

    def close(self):
        self.closing = True
        self.listener.close()


BODY = b"0\r\n\r\nGET /denied/smuggled HTTP/1.1\r\nHost: allowed.test\r\n\r\n"
CASES = []  # (family, name, request bytes with {M} for the marker path, status, reason)


def post(extra, body=BODY):
    return b"POST /ok{M} HTTP/1.1\r\nHost: allowed.test\r\n" + extra + b"\r\n" + body


def get(extra=b"", target=b"/ok{M}", version=b"HTTP/1.1"):
    return b"GET " + target + b" " + version + b"\r\nHost: allowed.test\r\n" + extra + b"\r\n"


for label, head, reason in framing_cases(len(BODY)):
    CASES.append(("framing", label, post(head), 400, reason))

for label, target, status, reason in [
    ("space in the target", b"/ok{M} x", 400, "invalid-target"),
    ("tab in the target", b"/ok{M}\tx", 400, "invalid-target"),
    ("DEL in the target", b"/ok{M}\x7f", 400, "invalid-target"),
    ("NUL in the path", b"/ok{M}\x00", 400, "invalid-target"),
    ("non-ASCII byte in the path", b"/ok{M}\xff", 400, "invalid-target"),
    ("target over 8192 bytes", b"/ok{M}" + b"a" * 9000, 414, "target-too-long"),
]:
    CASES.append(("target", label, get(target=target), status, reason))

for label, extra, status, reason in [
    ("more than 100 header fields", b"".join(b"X-H%d: %d\r\n" % (i, i) for i in range(150)), 431,
     "too-many-headers"),
    ("500 header fields", b"".join(b"X-H%d: %d\r\n" % (i, i) for i in range(500)), 431, "too-many-headers"),
    ("1000 tiny header fields", b"a: b\r\n" * 1000, 431, "too-many-headers"),
    ("head over 32 KiB", b"X-Big: " + b"a" * 40000 + b"\r\n", 431, "header-too-large"),
]:
    CASES.append(("headers", label, get(extra), status, reason))

for label, request in [
    ("HTTP/2 connection preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    ("HTTP/1.2 request", get(version=b"HTTP/1.2")),
    ("HTTP/0.9 request line without a version", b"GET /ok{M}\r\n\r\n"),
]:
    CASES.append(("version", label, request, 505, "unsupported-version"))

CASES.append(("body", "Content-Length over max_body_bytes",
              b"POST /ok{M} HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 5000\r\n\r\n" + b"a" * 100, 413,
              "body-too-large"))


def open_tunnel(egress, egress_ca):
    s, status = harness.tunnel(egress.address, "allowed.test:%d" % CANARY_PORT[0], timeout=10)
    if not status.startswith("HTTP/1.1 200"):
        s.close()
        raise AssertionError("CONNECT refused: " + status)
    context = ssl.create_default_context(cafile=egress_ca)
    return context.wrap_socket(s, server_hostname="allowed.test")


CANARY_PORT = [0]


def read_response(t, timeout=4):
    """(status or None, head text): None when the tunnel closed first."""
    t.settimeout(timeout)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = t.recv(65536)
            if not chunk:
                break
            data += chunk
    except (socket.timeout, OSError, ssl.SSLError):
        pass
    head = data.partition(b"\r\n\r\n")[0].decode("latin-1")
    parts = head.split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[0].startswith("HTTP/1.") and parts[1].isdigit() else None
    return status, head


def closed_by_peer(t, timeout=3):
    t.settimeout(timeout)
    try:
        for _ in range(100):  # bounded: a refusal body may still be arriving
            if not t.recv(65536):
                return True
    except (ConnectionResetError, ssl.SSLError, OSError):
        return True
    except socket.timeout:
        return False
    return False


def decision_row(egress, request_id=None, client_addr=None, reason=None):
    where = "event = 'decision' AND kind = 'inspected'"
    args = ()
    if request_id:
        where, args = where + " AND request_id = ?", (request_id,)
    else:
        where, args = where + " AND client_addr = ? AND reason = ?", (client_addr, reason)
    deadline = time.time() + 5
    while True:
        with contextlib.closing(sqlite3.connect(egress.db)) as db:
            db.row_factory = sqlite3.Row
            db.text_factory = lambda b: b.decode("utf-8", "replace")
            rows = [dict(r) for r in db.execute("SELECT * FROM events WHERE %s ORDER BY id" % where, args)]
        if rows or time.time() > deadline:
            return rows[-1] if rows else None
        time.sleep(0.05)


def check_canary(problems, canary):
    time.sleep(0.25)  # anything egress might still send would arrive by now
    leaked = canary.take()
    if leaked:
        problems.append("UPSTREAM RECEIVED %d bytes: %r" % (len(leaked), leaked[:160]))


def run_case(egress, egress_ca, canary, index, request, status, reason):
    problems = []
    canary.take()
    marker = b"/atk-%d/" % index
    t = open_tunnel(egress, egress_ca)
    try:
        try:
            t.sendall(request.replace(b"{M}", marker))
        except OSError as e:
            problems.append("send: %s" % e)
        got, head = read_response(t)
        got_reason = harness.header(head, "X-Egress-Reason")
        if got != status or got_reason != reason:
            problems.append("got %s %s, expected %d %s (%r)" % (got, got_reason, status, reason, head[:120]))
        if got is not None and not closed_by_peer(t):
            problems.append("tunnel left open after the refusal")
        request_id = harness.header(head, "X-Egress-Request-Id")
    finally:
        t.close()
    if request_id:
        row = decision_row(egress, request_id=request_id)
        if row is None:
            problems.append("no inspected decision row for %s" % request_id)
        elif row["decision"] != "deny" or row["reason"] != reason:
            problems.append("audit says %s/%s, expected deny/%s" % (row["decision"], row["reason"], reason))
    else:
        problems.append("no X-Egress-Request-Id on the answer")
    check_canary(problems, canary)
    return problems


def run_slow_head(egress, egress_ca, canary, second):
    """Slowloris inside the tunnel: the (first or, after one allowed request,
    second) head dripped a line every 0.2 s must be cut off by
    header_timeout (1 s) counted from its first byte, not the idle timeout."""
    problems = []
    canary.take()
    t = open_tunnel(egress, egress_ca)
    client_addr = None
    started, cut_after = None, None
    try:
        if second:
            t.sendall(b"GET /ok/first HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
            status, head = read_response(t)
            if status != 200:
                problems.append("the first request got %s (%r)" % (status, head[:100]))
            time.sleep(1.5)  # idle between requests is allowed (idle_timeout), longer than header_timeout
            canary.take()
        started = time.monotonic()
        t.sendall(b"GET /ok/slow HTTP/1.1\r\n")
        t.settimeout(0.2)
        for i in range(25):  # bounded: 5 s
            try:
                if t.recv(65536) == b"":
                    cut_after = time.monotonic() - started
                    break
            except socket.timeout:
                pass
            t.sendall(b"X-%d: %d\r\n" % (i, i))
    except (OSError, ssl.SSLError):
        cut_after = time.monotonic() - started if started else None
    finally:
        t.close()
    if cut_after is None or cut_after > 3:
        problems.append("the dripped head was not cut off within 3 s (%s)" %
                        ("still open after 5 s" if cut_after is None else "%.1f s" % cut_after))
    # The first slow-head case leaves one row, the second a second one.
    rows = egress.wait_for_events("event = 'decision' AND kind = 'inspected' AND reason = 'client-timeout'",
                                  count=2 if second else 1, timeout=3)
    if len(rows) < (2 if second else 1):
        problems.append("no inspected client-timeout decision row")
    check_canary(problems, canary)
    return problems


def run_chunked_over_limit(egress, egress_ca, canary):
    """A chunked body streams, so its head goes upstream before the limit is
    known: once over max_body_bytes (1000) the worker gets 413 and the
    upstream connection is reset, so the upstream never has a whole request
    (no last chunk) to act on."""
    problems = []
    canary.take()
    t = open_tunnel(egress, egress_ca)
    try:
        t.sendall(b"POST /ok/chunked HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(4):
            t.sendall(b"1f4\r\n" + b"a" * 500 + b"\r\n")
        t.sendall(b"0\r\n\r\n")
        status, head = read_response(t)
        if status != 413 or harness.header(head, "X-Egress-Reason") != "body-too-large":
            problems.append("got %s %r, expected 413 body-too-large" % (status, head[:120]))
        if status is not None and not closed_by_peer(t):
            problems.append("tunnel left open after the refusal")
    except (OSError, ssl.SSLError) as e:
        problems.append("send: %s" % e)
    finally:
        t.close()
    time.sleep(0.25)
    seen = canary.take()
    if b"0\r\n\r\n" in seen or len(seen) > 1000 + 200:
        problems.append("UPSTREAM RECEIVED a whole request or more than the limit (%d bytes)" % len(seen))
    rows = egress.wait_for_events("event = 'close' AND kind = 'inspected' AND status = 413")
    if not rows or not (rows[-1]["error"] or "").startswith("body-too-large"):
        problems.append("no inspected close row with 413 body-too-large: %s" % rows[-1:])
    return problems


def run_controls(check, egress, egress_ca, canary):
    canary.take()
    t = open_tunnel(egress, egress_ca)
    try:
        t.sendall(b"GET /ok/control HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        status, head = read_response(t)
        check("control: an allowed GET through the tunnel gets the canary's 200", status == 200, head[:200])
        time.sleep(0.2)
        check("control: the canary records what reaches it", b"GET /ok/control HTTP/1.1" in canary.take())
        t.sendall(b"GET /denied HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        status, head = read_response(t)
        check("control: a path outside /ok is refused 403 path-not-allowed",
              status == 403 and harness.header(head, "X-Egress-Reason") == "path-not-allowed", head[:200])
    finally:
        t.close()
    check_canary([], canary)


def run(workdir, results):
    check = results.check
    certs = os.path.join(workdir, "certs")
    out = subprocess.run([harness.EGRESS, "ca", "init", "--out", certs], capture_output=True, text=True, timeout=30)
    check("egress ca init succeeds", out.returncode == 0, out.stderr)
    egress_ca = os.path.join(certs, "ca.crt")
    upstream_dir = os.path.join(workdir, "upstream")
    os.makedirs(upstream_dir)
    upstream_crt = harness.make_upstream_cert(upstream_dir, names=("allowed.test",))
    canary = TlsCanary(upstream_dir)
    CANARY_PORT[0] = canary.port
    egress = harness.Egress(workdir, POLICY, hosts={"allowed.test": "127.0.0.1"}, extra_config=LIMITS,
                            extra_args=("--ca-cert", egress_ca, "--ca-key", os.path.join(certs, "ca.key"),
                                        "--upstream-ca", upstream_crt))
    try:
        started = time.time()
        run_controls(check, egress, egress_ca, canary)
        for index, (family, name, request, status, reason) in enumerate(CASES):
            try:
                problems = run_case(egress, egress_ca, canary, index, request, status, reason)
            except Exception as e:  # noqa: BLE001 — a crash is this case's failure
                problems = ["crashed: %r" % e]
            check("[inspected %s] %s" % (family, name), not problems, "; ".join(problems))
        problems = run_chunked_over_limit(egress, egress_ca, canary)
        check("[inspected body] chunked body over max_body_bytes", not problems, "; ".join(problems))
        for second in (False, True):
            name = "slow %s head inside the tunnel" % ("second" if second else "first")
            try:
                problems = run_slow_head(egress, egress_ca, canary, second)
            except Exception as e:  # noqa: BLE001
                problems = ["crashed: %r" % e]
            check("[inspected exhaustion] " + name, not problems, "; ".join(problems))
        print("     %d inspected attack cases in %.1f s" % (len(CASES) + 3, time.time() - started))
    finally:
        code = egress.stop()
        check("egress stops cleanly (exit 0)", code == 0, "%s\n%s" % (code, egress.log_text()[-2000:]))
        canary.close()


if __name__ == "__main__":
    harness.main(run)
