"""End to end: real curl and urllib workers through the real `egress serve`
to real loopback upstreams (HTTP and HTTPS). Every case is checked three
ways: what the worker got, what `egress check` predicts for it, and what
the audit database recorded."""
import hashlib
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request

import harness
from harness import Egress, Upstream, curl, egress_check, header

POLICY = """\
version: 1
mode: self-hosted
deny_message: Egress is restricted to the approved list; do not retry other routes.
allow:
  - host: public.test        # a public-looking name that resolves to 127.0.0.1
    ports: any
  - host: ports.test
    ports: [443]
deny:
  - .evil.test
internal:
  - host: allowed.test
    ports: any
roles:
  tokened:                   # a worker that authenticates with a proxy token
    tokens: [sha256:%s]
""" % hashlib.sha256(b"secret-token").hexdigest()

NAMES = ["allowed.test", "denied.test", "public.test", "www.evil.test", "ports.test"]


def raw_exchange(address, payload, timeout=5):
    """Sends raw bytes to the proxy and returns everything it answers."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(payload)
        chunks = []
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except socket.timeout:
            pass
    return b"".join(chunks).decode("latin-1")


def run(workdir, results):
    cert = harness.make_upstream_cert(workdir)
    plain = Upstream()
    tls = Upstream(tls_dir=workdir)
    closed_port = harness.free_port()
    egress = Egress(workdir, POLICY, hosts={n: "127.0.0.1" for n in NAMES},
                    extra_config="limits:\n  upstream_timeout: 1s\n  header_timeout: 1s\n")
    check = results.check

    # -- The decision table: worker result, `egress check` and audit agree. --
    up, tp = plain.port, tls.port
    table = [
        # (name, url, curl args, status, reason or None, body fragment)
        ("internal host over http", "http://allowed.test:%d/hello" % up, [], 200, None, "hello from upstream /hello"),
        ("upper case and trailing dot", "http://ALLOWED.TEST.:%d/x" % up, [], 200, None, "hello from upstream /x"),
        ("unlisted host", "http://denied.test:%d/" % up, [], 403, "not-allowed", "denied.test"),
        ("allowed name resolving to loopback", "http://public.test:%d/" % up, [], 403, "private-address", "loopback"),
        ("deny rule over a subdomain", "http://www.evil.test:%d/" % up, [], 403, "deny-rule", ""),
        ("loopback literal", "http://127.0.0.1:%d/" % up, [], 403, "not-allowed", ""),
        ("port outside the rule", "http://ports.test:%d/" % up, [], 403, "port-not-allowed", ""),
        ("https through CONNECT", "https://allowed.test:%d/secure" % tp, ["--cacert", cert], 200, None,
         "hello from upstream /secure"),
        ("CONNECT to an unlisted host", "https://denied.test:%d/" % tp, ["--cacert", cert], 403, "not-allowed", ""),
        ("CONNECT to a deny rule", "https://www.evil.test:%d/" % tp, ["--cacert", cert], 403, "deny-rule", ""),
        ("upstream unreachable", "http://allowed.test:%d/" % closed_port, [], 502, "upstream-unreachable", ""),
    ]
    for name, url, args, status, reason, fragment in table:
        got, head, body, err = curl(egress.proxy, url, *args)
        check("%s: status %d" % (name, status), got == status, "got %d %s %s" % (got, head[:200], err))
        if fragment:
            check("%s: body" % name, fragment in body, body[:300])
        if reason:
            check("%s: X-Egress-Reason %s" % (name, reason), header(head, "X-Egress-Reason") == reason, head)
            check("%s: request id in header" % name, len(header(head, "X-Egress-Request-Id") or "") == 24, head)
        predicted = egress_check(egress.policy, egress.config, url)
        expected_decision = "allow" if status in (200, 502) else "deny"
        check("%s: egress check says %s" % (name, expected_decision), predicted["decision"] == expected_decision,
              str(predicted))
        if reason and status == 403:
            check("%s: egress check reason" % name, predicted["reason"] == reason, str(predicted))

    # -- Refusal body a person (or an agent) can act on. --
    status, head, body, _ = curl(egress.proxy, "http://denied.test:%d/" % up)
    rid = header(head, "X-Egress-Request-Id")
    for fragment in ("host:       denied.test", "mode:       self-hosted", "reason:     not-allowed", rid,
                     "message:    Egress is restricted to the approved list; do not retry other routes."):
        check("403 body names %r" % fragment, fragment in body, body)
    rows = egress.wait_for_events("request_id = ?", (rid,), count=2)
    check("403 request id matches its audit rows", [r["event"] for r in rows] == ["decision", "close"], str(rows))

    # -- Bad input. --
    answer = raw_exchange(egress.address, b"GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
    check("origin-form request gets 400 origin-form", answer.startswith("HTTP/1.1 400") and "origin-form" in answer,
          answer[:300])
    answer = raw_exchange(egress.address, b"GARBAGE\r\n\r\n")
    check("malformed request line gets 400", answer.startswith("HTTP/1.1 400"), answer[:200])
    answer = raw_exchange(egress.address, b"GET http://allowed.test:%d/ HTTP/1.1\r\nX-Big: %s\r\n\r\n" % (up, b"a" * 40000))
    check("header block over 32 KiB gets 431", answer.startswith("HTTP/1.1 431"), answer[:200])
    for scheme in ("ftp", "file", "gopher"):
        answer = raw_exchange(egress.address, b"GET %s://allowed.test/x HTTP/1.1\r\n\r\n" % scheme.encode())
        check("%s:// gets 400 unsupported-scheme" % scheme,
              answer.startswith("HTTP/1.1 400") and "unsupported-scheme" in answer, answer[:200])
    answer = raw_exchange(egress.address, b"CONNECT allowed.test HTTP/1.1\r\n\r\n")
    check("CONNECT without a port gets 400", answer.startswith("HTTP/1.1 400"), answer[:200])

    # -- Slow peers are timed out. --
    status, head, _, _ = curl(egress.proxy, "http://allowed.test:%d/slow" % up)
    check("an upstream slower than upstream_timeout gets 504 upstream-timeout",
          status == 504 and header(head, "X-Egress-Reason") == "upstream-timeout", head)
    started = time.time()
    answer = raw_exchange(egress.address, b"GET http://allowed.test:%d/ HTTP/1.1\r\nX-Slow: " % up, timeout=5)
    check("a request head slower than header_timeout is cut off", answer == "" and time.time() - started < 4,
          answer[:200])
    rows = egress.wait_for_events("reason = 'client-timeout'", count=2)
    check("the cut-off attempt is logged as client-timeout", len(rows) == 2, str(rows))

    # -- Keep-alive: each request on one connection is decided afresh. --
    answer = raw_exchange(egress.address,
                          b"GET http://allowed.test:%d/one HTTP/1.1\r\n\r\n"
                          b"GET http://denied.test:%d/two HTTP/1.1\r\n\r\n"
                          b"GET http://allowed.test:%d/three HTTP/1.1\r\nConnection: close\r\n\r\n" % (up, up, up))
    statuses = re.findall(r"HTTP/1\.1 (\d{3}) ", answer)
    check("three requests on one connection: 200, 403, 200", statuses == ["200", "403", "200"], str(statuses))
    check("the third response is the third request's", "hello from upstream /three" in answer, answer[-200:])

    # -- Bodies both ways, chunked and Content-Length, HEAD. --
    status, _, body, _ = curl(egress.proxy, "http://allowed.test:%d/post" % up, "--data-binary", "x" * 100000)
    check("POST with Content-Length body", status == 200 and "received 100000 bytes" in body, body)
    status, _, body, _ = curl(egress.proxy, "http://allowed.test:%d/post" % up, "-H", "Transfer-Encoding: chunked",
                              "--data-binary", "y" * 70000)
    check("POST with chunked body", status == 200 and "received 70000 bytes" in body, body)
    status, _, body, _ = curl(egress.proxy, "http://allowed.test:%d/chunked" % up)
    check("chunked response relayed", status == 200 and body == "hello chunked world", repr(body))
    status, head, body, _ = curl(egress.proxy, "http://allowed.test:%d/head" % up, "-I")
    check("HEAD answered without a body", status == 200 and header(head, "Content-Length") is not None, head)

    # -- Header hygiene: what the upstream saw. --
    before = len(plain.seen)
    curl(egress.proxy, "http://allowed.test:%d/hygiene" % up, "-U", "worker:secret-token",
         "-H", "Proxy-Connection: keep-alive", "-H", "Host: evil.example", "-H", "Connection: close, X-Drop",
         "-H", "X-Drop: 1")
    seen = [r for r in plain.seen[before:] if r["path"] == "/hygiene"]
    check("upstream got the request", len(seen) == 1, str(plain.seen[before:]))
    if seen:
        h = seen[0]["headers"]
        check("Proxy-Authorization consumed", "proxy-authorization" not in h, str(h))
        check("Proxy-Connection removed", "proxy-connection" not in h, str(h))
        check("headers named by Connection removed", "x-drop" not in h, str(h))
        check("Host rewritten to the URI authority", h.get("host") == "allowed.test:%d" % up, str(h))
        check("Via added", h.get("via") == "1.1 egress", str(h))

    # -- python3 urllib as a worker. --
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": egress.proxy}))
    with opener.open("http://allowed.test:%d/urllib" % up, timeout=10) as response:
        check("urllib through egress", response.status == 200 and b"/urllib" in response.read())
    try:
        opener.open("http://denied.test:%d/" % up, timeout=10)
        check("urllib denied gets 403", False)
    except urllib.error.HTTPError as e:
        check("urllib denied gets 403", e.code == 403 and e.headers["X-Egress-Reason"] == "not-allowed")

    # -- Every attempt is in the audit log, with the contract's fields. --
    time.sleep(0.5)  # close events are queued without waiting
    events = egress.events()
    by_request = {}
    for e in events:
        by_request.setdefault(e["request_id"], []).append(e)
    check("audit has events", len(by_request) >= 25, str(len(by_request)))
    incomplete = [rid for rid, evs in by_request.items() if sorted(e["event"] for e in evs) != ["close", "decision"]]
    check("every request has one decision and one close event", not incomplete, str(incomplete[:5]))
    decisions = [e for e in events if e["event"] == "decision"]
    required = ("ts", "request_id", "mode", "client_addr", "kind", "decision", "reason", "prev_hash", "hash")
    missing = [(e["id"], k) for e in decisions for k in required if not e[k]]
    check("decision events carry the contract's fields", not missing, str(missing[:5]))
    closes = [e for e in events if e["event"] == "close"]
    answered = [e for e in closes if e["reason"] != "client-timeout"]  # cut off: nothing was sent
    check("close events carry status, bytes and duration",
          all(e["status"] is not None and e["bytes_down"] is not None and e["duration_ms"] is not None
              for e in answered), str([e for e in answered if e["status"] is None][:2]))
    allowed = [e for e in closes if e["status"] == 200 and e["kind"] == "http"]
    check("allowed close events name the upstream address",
          allowed and all(e["upstream_addr"].startswith("127.0.0.1:") for e in allowed))
    tunnel = [e for e in closes if e["kind"] == "connect" and e["status"] == 200]
    check("tunnel close events count bytes both ways",
          tunnel and all(e["bytes_up"] > 0 and e["bytes_down"] > 0 for e in tunnel), str(tunnel[:1]))
    check("timestamps are ISO-8601 UTC with microseconds",
          all(len(e["ts"]) == 27 and e["ts"].endswith("Z") and e["ts"][10] == "T" for e in events), events[0]["ts"])
    check("a failed upstream's close event says why",
          any(e["error"] and e["error"].startswith("upstream-unreachable") and e["status"] == 502 for e in closes))
    check("SIGTERM stops egress with exit code 0", egress.stop() == 0, egress.log_text()[-500:])

    # -- Production mode refuses what self-hosted allowed at the host level. --
    os.rename(egress.db, egress.db + ".self-hosted")
    production = Egress(workdir, POLICY, hosts={n: "127.0.0.1" for n in NAMES}, extra_args=["--mode", "production"])
    status, head, _, _ = curl(production.proxy, "http://public.test:%d/" % up)
    check("production: an allow rule is not enough (not-internal)",
          status == 403 and header(head, "X-Egress-Reason") == "not-internal", head)
    predicted = egress_check(production.policy, production.config, "http://public.test:%d/" % up, "--mode", "production")
    check("production: egress check agrees", predicted["reason"] == "not-internal", str(predicted))
    status, _, body, _ = curl(production.proxy, "http://allowed.test:%d/prod" % up)
    check("production: internal still allowed", status == 200 and "/prod" in body, body)

    # -- SIGKILL right after an answer: the decision is already on disk, in
    # the journal if the writer had not committed it; the next start
    # ingests it. --
    status, head, _, _ = curl(production.proxy, "http://allowed.test:%d/kill" % up)
    rid = header(head, "X-Egress-Request-Id")
    production.proc.send_signal(signal.SIGKILL)
    production.proc.wait()
    Egress(workdir, POLICY, hosts={n: "127.0.0.1" for n in NAMES}, extra_args=["--mode", "production"]).stop()
    rows = production.events("request_id = ? AND event = 'decision'", (rid,))
    check("after SIGKILL and a restart the answered request's decision is in the database, once",
          status == 200 and len(rows) == 1 and rows[0]["decision"] == "allow", str(rows))

    # -- Start-up errors exit 2 and say where. --
    bad = os.path.join(workdir, "bad.yaml")
    with open(bad, "w") as f:
        f.write("version: 1\nmode: self-hosted\nallow:\n  - host: ok.test\n    ports: [99999]\n")
    out = subprocess.run([harness.EGRESS, "serve", "--policy", bad, "--listen", "127.0.0.1:0", "--audit-db",
                          os.path.join(workdir, "x.db")], capture_output=True, text=True, timeout=20)
    check("a bad policy exits 2 naming FILE:LINE", out.returncode == 2 and bad + ":5:" in out.stderr, out.stderr)
    out = subprocess.run([harness.EGRESS, "check", "--policy", bad, "http://x.test/"], capture_output=True, text=True,
                         timeout=20)
    check("check with a bad policy exits 2 naming FILE:LINE", out.returncode == 2 and bad + ":5:" in out.stderr,
          out.stderr)
    db = os.path.join(workdir, "no-such-dir", "audit.db")
    out = subprocess.run([harness.EGRESS, "serve", "--audit-db", db, "--listen", "127.0.0.1:0"], capture_output=True,
                         text=True, timeout=20)
    check("an unopenable audit database exits 2 naming the path", out.returncode == 2 and db in out.stderr, out.stderr)

    plain.close()
    tls.close()


if __name__ == "__main__":
    harness.main(run)
