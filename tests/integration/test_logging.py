"""serve's log: one canonical line per request with the audit table's field
names, as key=value text (default) or as one JSON object per line
(--log-format json), every line valid JSON even for hostile bytes in the
request, and the values equal to the audit database's for the same request."""
import json
import os
import socket
import sqlite3

import harness

FIELDS = ("request_id", "kind", "client_addr", "mode", "method", "host", "port", "path", "decision", "reason",
          "rule", "status", "bytes_up", "bytes_down")


def requests_by_id(db):
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        conn.text_factory = lambda b: b.decode("utf-8", "replace")
        return {row["request_id"]: dict(row) for row in conn.execute("SELECT * FROM requests")}


def raw_request(address, head):
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(head)
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):
            pass


def traffic(egress, upstream_port):
    harness.curl(egress.proxy, "http://allowed.test:%d/ok" % upstream_port)
    harness.curl(egress.proxy, "http://denied.test:%d/no" % upstream_port)
    # A target with a quote and a backslash: refused as malformed, and logged
    # with the raw target as its host. (Bytes that are not UTF-8 never get
    # that far: they are refused as invalid-target before the URL is parsed;
    # tests/proxy/attempt_test.cpp covers them in both formats.)
    raw_request(egress.address, b'GET http://allowed.test:%d/q"\\ HTTP/1.1\r\nHost: x\r\n\r\n' % upstream_port)


def run(workdir, results):
    upstream = harness.Upstream()
    hosts = {"allowed.test": "127.0.0.1", "denied.test": "127.0.0.1"}
    try:
        json_dir = os.path.join(workdir, "json")
        os.mkdir(json_dir)
        egress = harness.Egress(json_dir, harness.ALLOWED_TEST_POLICY, hosts=hosts, extra_args=["--log-format", "json"])
        traffic(egress, upstream.port)
        results.check("json: serve exits 0 on SIGTERM", egress.stop() == 0)
        lines = [line for line in egress.log_text().splitlines() if line]
        parsed = []
        for line in lines:
            try:
                parsed.append(json.loads(line))
            except ValueError:
                results.check("json: every line is JSON", False, repr(line))
        results.check("json: every line is JSON (%d lines)" % len(lines), len(parsed) == len(lines) and lines)
        results.check("json: every line has ts and level",
                      all(isinstance(p.get("ts"), str) and p["ts"].endswith("Z") and p.get("level") for p in parsed))
        requests = [p for p in parsed if "request_id" in p]
        messages = [p for p in parsed if "msg" in p]
        results.check("json: one request line per request (3)", len(requests) == 3, str(requests))
        results.check("json: lifecycle messages are msg lines",
                      any("stopped" in m["msg"] for m in messages), str(messages))
        rows = requests_by_id(egress.db)
        for line in requests:
            row = rows.get(line["request_id"])
            results.check("json: request %s is in the audit log" % line["request_id"], row is not None)
            if row is None:
                continue
            for field in FIELDS:
                if row[field] is None:
                    results.check("json: %s absent when the audit has NULL" % field, field not in line, str(line))
                else:
                    results.check("json: %s %r equals the audit's" % (field, line.get(field)), line.get(field) == row[field],
                                  "log %r, audit %r" % (line.get(field), row[field]))
        results.check("json: status and port are numbers",
                      all(isinstance(line["status"], int) and isinstance(line.get("port", 0), int) for line in requests))
        hostile = [line for line in requests if line.get("host", "").endswith('/q"\\')]
        results.check("json: a hostile target stays one valid field", len(hostile) == 1, str(requests))
        results.check("json: the denied request says why",
                      any(line.get("reason") == "not-allowed" and line.get("status") == 403 for line in requests))

        text_dir = os.path.join(workdir, "text")
        os.mkdir(text_dir)
        egress = harness.Egress(text_dir, harness.ALLOWED_TEST_POLICY, hosts=hosts)
        traffic(egress, upstream.port)
        egress.stop()
        text_requests = [line for line in egress.log_text().splitlines() if "request_id=" in line]
        results.check("text: one request line per request (3)", len(text_requests) == 3, str(text_requests))
        rows = requests_by_id(egress.db)
        for line in text_requests:
            request_id = line.split("request_id=", 1)[1].split()[0]
            row = rows.get(request_id)
            results.check("text: request %s is in the audit log" % request_id, row is not None)
            if row:
                for field in ("host", "decision", "reason", "status"):
                    if any(c in str(row[field]) for c in '" \\\ufffd'):
                        continue  # quoted and escaped: checked below
                    results.check("text: %s=%s" % (field, row[field]), " %s=%s" % (field, row[field]) in line, line)
        hostile = [line for line in text_requests if '/q\\"\\\\" ' in line]
        results.check("text: a hostile target is quoted and escaped on one line", len(hostile) == 1, str(text_requests))
    finally:
        upstream.close()


if __name__ == "__main__":
    harness.main(run)
