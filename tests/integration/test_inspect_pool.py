"""Upstream connection reuse in inspected tunnels: after a response has been
relayed whole, egress keeps the upstream TLS connection for the next
inspected tunnel to the same host:port (src/proxy/upstream_pool.h).

Real peers: curl (trusting the egress CA) as the worker, and a TLS origin on
loopback written here so the test can see which connection each request
arrived on and make the origin drop a kept-alive connection at will.

Proves: sequential tunnels share one upstream connection (and the metric
counts it); another host name on the same address never gets that
connection; a connection the upstream closed while idle is never handed to
a worker; a GET that meets a connection closed just then is sent again on
a new one (the worker sees 200), in a new tunnel or a kept-alive one, while
a body or an unsafe method without an Idempotency-Key is not (502); idle
connections are closed after tls.upstream_pool_idle; with
tls.upstream_pool_size 0 every tunnel opens its own connection."""
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.request

import harness
from harness import Egress
from test_inspect import issue, make_upstream_ca

POLICY = """\
version: 1
mode: self-hosted
allow:
  - host: allowed.test
    ports: any
    inspect: true
  - host: other.test
    ports: any
    inspect: true
internal:
  - cidr: 127.0.0.1/32
    ports: any
"""


class Origin:
    """A keep-alive origin, HTTPS with the certificate in `tls_dir` or plain
    HTTP without, that records, for every request, the connection it came
    on. `drop_reused` requests that are not the first on their connection
    are read and then answered by closing the connection (no response, no
    close_notify): what a server's keep-alive timeout does when it fires
    just as a request arrives. `also_on` lists more loopback addresses it
    listens on, at the same port."""

    def __init__(self, tls_dir=None, also_on=()):
        self.context = None
        if tls_dir:
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.context.load_cert_chain(os.path.join(tls_dir, "upstream.crt"),
                                         os.path.join(tls_dir, "upstream.key"))
            # Set once, and kept on the connection itself: handshakes of
            # several connections may overlap.
            self.context.sni_callback = lambda sock, name, ctx: setattr(sock, "sni", name)
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.listeners = [self.listener]
        for address in also_on:
            extra = socket.socket()
            extra.bind((address, self.port))
            extra.listen(64)
            self.listeners.append(extra)
        self.lock = threading.Lock()
        self.requests = []  # (connection number, request number on it, method, path, SNI)
        self.connections = 0
        self.open = set()
        self.drop_reused = 0
        self.close_after_response = False
        self.local_address = {}  # connection number -> the address it was accepted on
        for listener in self.listeners:
            threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener):
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                number = self.connections
                self.open.add(number)
                self.local_address[number] = raw.getsockname()[0]
            threading.Thread(target=self._serve, args=(raw, number), daemon=True).start()

    def _serve(self, raw, number):
        try:
            conn = self.context.wrap_socket(raw, server_side=True) if self.context else raw
        except (ssl.SSLError, OSError):
            raw.close()
            with self.lock:
                self.open.discard(number)
            return
        reader = conn.makefile("rb")
        served = 0
        try:
            while True:
                line = reader.readline()
                if not line:
                    break
                method, path = line.decode("latin-1").split()[:2]
                length = 0
                while True:
                    header_line = reader.readline()
                    if header_line in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = header_line.decode("latin-1").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                if length:
                    reader.read(length)
                served += 1
                with self.lock:
                    self.requests.append((number, served, method, path, getattr(conn, "sni", None)))
                    drop = served > 1 and self.drop_reused > 0
                    if drop:
                        self.drop_reused -= 1
                if drop:
                    break
                if path.startswith("/slow"):
                    time.sleep(1)
                body = ("connection %d request %d %s %s" % (number, served, method, path)).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                if self.close_after_response:
                    break
        except (OSError, ValueError, ssl.SSLError):
            pass
        finally:
            reader.close()
            conn.close()
            with self.lock:
                self.open.discard(number)

    def seen(self, path):
        with self.lock:
            return [r for r in self.requests if r[3] == path]

    def open_connections(self):
        with self.lock:
            return len(self.open)

    def close(self):
        for listener in self.listeners:
            listener.close()


def reused(admin, family="egress_tls_upstream_connections_total"):
    """A pool's connection counter (the inspected tunnels' unless `family`
    names another) by its `reused` label: (yes, no)."""
    with urllib.request.urlopen("http://%s/metrics" % admin, timeout=5) as r:
        text = r.read().decode()
    found = dict(re.findall(r'^%s\{reused="(yes|no)"\} (\d+)' % family, text, re.MULTILINE))
    return int(found.get("yes", -1)), int(found.get("no", -1))


def wait_until(condition, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def check_reuse_rules(check, egress, origin, get, kind):
    """The rules both pools keep (src/proxy/upstream_pool.h), and the one
    resend rule of the exchange, through `get(path, *curl_args)` to `origin`
    for requests whose audit rows have `kind`: a connection the origin
    closed while idle is never handed out; a GET that meets a connection
    closed just then is sent again on a new one (200); a body, or a method
    that is not safe to repeat without an Idempotency-Key, is not (502)."""
    origin.close_after_response = True
    closed_run = [get("/closing/%d" % i)[0] for i in range(4)]
    origin.close_after_response = False
    check("%s: an origin closing after every response: the worker always gets 200" % kind, closed_run == [200] * 4,
          str(closed_run))
    check("%s: each of those requests went over a connection of its own" % kind,
          len({origin.seen("/closing/%d" % i)[0][0] for i in range(4)}) == 4, str(origin.requests[-4:]))

    # A bodiless request meets a pooled connection the origin closes as it
    # arrives: sent again on a new connection.
    get("/warm")
    origin.drop_reused = 1
    status, head, body, err = get("/resend")
    seen = origin.seen("/resend")
    check("%s: GET on a connection the origin drops: the worker gets 200 after a resend" % kind,
          status == 200 and "/resend" in body, "%s %s %s" % (status, body[:200], err))
    check("%s: the origin saw the GET twice: dropped on the old connection, answered on a new one" % kind,
          len(seen) == 2 and seen[0][1] > 1 and seen[1][1] == 1 and seen[0][0] != seen[1][0], str(seen))
    rows = egress.wait_for_events("kind = ? AND event = 'close' AND path = '/resend'", (kind,))
    check("%s: audit: one close row for the resent request, status 200, the origin's address" % kind,
          len(rows) == 1 and rows[0]["status"] == 200 and rows[0]["upstream_addr"] == "127.0.0.1:%d" % origin.port,
          str(rows))

    # Not sent twice: a body, or a method that is not safe to repeat,
    # unless an Idempotency-Key says it is.
    for what, path, args, resent in (
            ("POST with a body", "/post", ("--data-binary", "payload"), False),
            ("DELETE without a body", "/delete", ("-X", "DELETE"), False),
            ("DELETE with an Idempotency-Key", "/delete-key", ("-X", "DELETE", "-H", "Idempotency-Key: k1"), True)):
        get("/warm" + path)
        origin.drop_reused = 1
        status, head, body, err = get(path, *args)
        origin.drop_reused = 0
        if resent:
            check("%s: %s on a connection the origin drops: resent, 200" % (kind, what),
                  status == 200 and len(origin.seen(path)) == 2, "%s %s" % (status, origin.seen(path)))
        else:
            check("%s: %s on a connection the origin drops: 502 upstream-unreachable" % (kind, what),
                  status == 502 and harness.header(head, "X-Egress-Reason") == "upstream-unreachable",
                  "%s %s %s" % (status, body[:300], err))
            check("%s: %s: the origin saw it once" % (kind, what), len(origin.seen(path)) == 1, str(origin.seen(path)))


def check_idle_close(check, origin, get):
    """Idle connections are closed after tls.upstream_pool_idle (the test's
    egress sets 700 ms; the sweep runs every second), and the next request
    opens a new one."""
    get("/idle")
    check("a pooled connection is open while the pool keeps it", origin.open_connections() >= 1)
    started = time.time()
    closed = wait_until(lambda: origin.open_connections() == 0, 5)
    check("egress closes idle upstream connections within the idle time plus one sweep",
          closed and time.time() - started < 2.5, "%d open after %.1f s" % (origin.open_connections(),
                                                                             time.time() - started))
    before = origin.connections
    status = get("/after-idle")[0]
    check("after the idle timeout the next request opens a new connection", status == 200 and
          origin.connections == before + 1, "%s %d -> %d" % (status, before, origin.connections))


def check_unpooled(check, origin, get, counts):
    """With tls.upstream_pool_size 0, every request through `get(path)`
    opens its own upstream connection, and `counts()` (the pool's metric:
    reused, new) says so."""
    before = origin.connections
    statuses = [get("/nopool/%d" % i)[0] for i in range(3)]
    check("upstream_pool_size 0: all 200", statuses == [200] * 3, str(statuses))
    check("upstream_pool_size 0: three requests, three upstream connections", origin.connections == before + 3,
          "%d -> %d" % (before, origin.connections))
    check("upstream_pool_size 0: the metric counts no reuse", counts() == (0, 3), str(counts()))


def start_egress(workdir, name, certs, upstream_ca, extra_config):
    directory = os.path.join(workdir, name)
    os.makedirs(directory)
    admin = "127.0.0.1:%d" % harness.free_port()
    egress = Egress(directory, POLICY, hosts={"allowed.test": "127.0.0.1", "other.test": "127.0.0.1"},
                    extra_config=extra_config, threads=1,
                    extra_args=("--ca-cert", os.path.join(certs, "ca.crt"), "--ca-key", os.path.join(certs, "ca.key"),
                                "--upstream-ca", upstream_ca, "--admin-listen", admin))
    return egress, admin


def run(workdir, results):
    check = results.check
    certs = os.path.join(workdir, "certs")
    subprocess.run([harness.EGRESS, "ca", "init", "--out", certs], check=True, capture_output=True, timeout=30)
    egress_ca = os.path.join(certs, "ca.crt")
    upstream_ca = make_upstream_ca(workdir)
    origin = Origin(issue(workdir, "origin", upstream_ca, ["allowed.test", "other.test"], 2))
    url = "https://allowed.test:%d" % origin.port
    # One proxy thread, so every tunnel meets the same pool.
    egress, admin = start_egress(workdir, "pooled", certs, upstream_ca[1], "tls:\n  upstream_pool_idle: 700ms\n")
    try:
        get = lambda path, *args, host=url: harness.curl(egress.proxy, host + path, "--cacert", egress_ca, *args)

        # Sequential tunnels share one upstream connection.
        statuses = [get("/seq/%d" % i)[0] for i in range(6)]
        check("6 sequential inspected tunnels: all 200", statuses == [200] * 6, str(statuses))
        connections = {r[0] for i in range(6) for r in origin.seen("/seq/%d" % i)}
        check("they reached the origin over one connection", len(connections) == 1, str(origin.requests))
        yes, no = reused(admin)
        check("metric: 1 new upstream connection, 5 reused", (yes, no) == (5, 1), "yes=%d no=%d" % (yes, no))
        rows = egress.wait_for_events("kind = 'inspected' AND event = 'close' AND path LIKE '/seq/%'", count=6)
        check("audit: each request has its own inspected row, status 200, the upstream address",
              len(rows) == 6 and all(r["status"] == 200 and r["upstream_addr"] == "127.0.0.1:%d" % origin.port
                                     for r in rows), str([(r["status"], r["upstream_addr"]) for r in rows]))

        # Another name on the same address and port gets its own connection.
        status, head, body, err = get("/other", host="https://other.test:%d" % origin.port)
        other = origin.seen("/other")
        check("other.test on the same address: 200", status == 200, "%s %s" % (status, err))
        check("other.test went over a new connection with its own SNI, not allowed.test's",
              len(other) == 1 and other[0][0] not in connections and other[0][4] == "other.test", str(other))

        check_reuse_rules(check, egress, origin, get, "inspected")

        # Inside one tunnel too: a worker that idles until the origin has
        # closed the connection gets its next GET answered.
        trusting = ssl.create_default_context(cafile=egress_ca)
        s, status = harness.tunnel(egress.address, "allowed.test:%d" % origin.port, timeout=10)
        with trusting.wrap_socket(s, server_hostname="allowed.test") as t:
            reader = t.makefile("rb")
            answers = []
            for path in ("/same-tunnel/1", "/same-tunnel/2"):
                if path.endswith("2"):
                    origin.drop_reused = 1
                t.sendall(b"GET %s HTTP/1.1\r\nHost: allowed.test:%d\r\n\r\n" % (path.encode(), origin.port))
                status_line = reader.readline()
                length = 0
                while True:
                    line = reader.readline()
                    if line in (b"\r\n", b""):
                        break
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                answers.append((status_line, reader.read(length)))
            origin.drop_reused = 0
            reader.close()  # else the socket stays open behind the makefile
        check("a second GET in the same tunnel, its connection dropped by the origin: 200 after a resend",
              [a[0][:12] for a in answers] == [b"HTTP/1.1 200"] * 2 and len(origin.seen("/same-tunnel/2")) == 2,
              "%s %s" % (answers, origin.seen("/same-tunnel/2")))

        check_idle_close(check, origin, get)

        # SIGTERM while an inspected request is upstream: its response says
        # Connection: close and the tunnel ends, as a plain connection does.
        s, status = harness.tunnel(egress.address, "allowed.test:%d" % origin.port, timeout=10)
        with trusting.wrap_socket(s, server_hostname="allowed.test") as t:
            t.sendall(b"GET /slow-drain HTTP/1.1\r\nHost: allowed.test:%d\r\n\r\n" % origin.port)
            time.sleep(0.3)
            egress.proc.send_signal(signal.SIGTERM)
            t.settimeout(5)
            data = harness.read_to_end(t)
        head = data.split(b"\r\n\r\n")[0].decode("latin-1")
        check("draining: the inspected response in flight is delivered with Connection: close",
              head.startswith("HTTP/1.1 200") and harness.header(head, "Connection") == "close" and
              data.endswith(b"/slow-drain"), data[:400])
        check("draining: egress exits 0 once the inspected tunnel is done", egress.proc.wait(10) == 0,
              egress.log_text()[-2000:])
    finally:
        code = egress.stop()
        check("egress stops cleanly (exit 0)", code == 0, "%s\n%s" % (code, egress.log_text()[-3000:]))

    # With the pool off, every tunnel has its own upstream connection.
    egress, admin = start_egress(workdir, "unpooled", certs, upstream_ca[1], "tls:\n  upstream_pool_size: 0\n")
    try:
        check_unpooled(check, origin, lambda path: harness.curl(egress.proxy, url + path, "--cacert", egress_ca),
                       lambda: reused(admin))
    finally:
        code = egress.stop()
        check("the second egress stops cleanly (exit 0)", code == 0, egress.log_text()[-3000:])
        origin.close()


if __name__ == "__main__":
    harness.main(run)
