"""Issue 5's parsing and limit contract, end to end: raw sockets send each
smuggling shape, over-long or over-many things, the HTTP/2 preface and a
slowloris to the real `egress serve`; each must get its status and
X-Egress-Reason, a decision and a close row in the audit log with that
reason, a closed connection, and the canary upstream must see no byte.
Also: the connection limits (global and per client address, the clients
being different loopback addresses), the header deadline on a kept-alive
connection's second request, a chunked body cut mid-stream, ALPN in the
audit row, the raw_tcp / allow_no_sni rule options, and the idle, tunnel
idle and upstream connect timeouts."""
import os
import socket
import ssl
import subprocess
import time
import urllib.request

import harness
from harness import Egress, Upstream, curl, header, read_to_end, tunnel
from test_tunnel_sni import Canary

POLICY = """\
version: 1
mode: self-hosted
internal:
  - host: allowed.test
    ports: any
  - host: rawok.test
    ports: any
    raw_tcp: true
  - host: nosni.test
    ports: any
    allow_no_sni: true
"""

LIMITS = """\
limits:
  header_timeout: 2s
  idle_timeout: 30s
  max_body_bytes: 1000
"""

HOSTS = {"allowed.test": "127.0.0.1", "rawok.test": "127.0.0.1", "nosni.test": "127.0.0.1"}


def exchange(address, payload, source="127.0.0.1", timeout=6):
    """Sends raw bytes; returns (answer text, closed): everything egress
    answered and whether it then closed the connection."""
    host, port = address.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=timeout, source_address=(source, 0))
    chunks, closed = [], False
    try:
        s.sendall(payload)
        deadline = time.time() + timeout
        while time.time() < deadline:
            data = s.recv(65536)
            if not data:
                closed = True
                break
            chunks.append(data)
    except ConnectionResetError:
        closed = True
    except socket.timeout:
        pass
    finally:
        s.close()
    return b"".join(chunks).decode("latin-1"), closed


def status_of(text):
    return int(text.split()[1]) if text.startswith("HTTP/1.") else 0


def request(target, headers="", version="HTTP/1.1", method="GET"):
    return ("%s %s %s\r\nHost: allowed.test\r\n%s\r\n" % (method, target, version, headers)).encode("latin-1")


def check_refusal(egress, check, name, answer, status, reason):
    text, closed = answer
    check("%s: %d %s" % (name, status, reason),
          status_of(text) == status and header(text.partition("\r\n\r\n")[0], "X-Egress-Reason") == reason, text[:300])
    check("%s: connection closed" % name, closed)
    rid = header(text.partition("\r\n\r\n")[0], "X-Egress-Request-Id")
    rows = egress.wait_for_events("request_id = ?", (rid,), count=2)
    events = {r["event"]: r for r in rows}
    check("%s: decision and close audited with %s" % (name, reason),
          "decision" in events and "close" in events and events["decision"]["reason"] == reason
          and events["decision"]["decision"] == "deny" and events["close"]["status"] == status, str(rows))


def smuggling_cases(canary_port):
    base = "http://allowed.test:%d" % canary_port
    url = base + "/x"
    return [
        ("CL and TE", request(url, "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", method="POST") + b"0\r\n\r\n",
         400, "ambiguous-framing"),
        ("TE and CL", request(url, "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", method="POST") + b"0\r\n\r\n",
         400, "ambiguous-framing"),
        ("duplicate Content-Length", request(url, "Content-Length: 3\r\nContent-Length: 3\r\n", method="POST") + b"abc",
         400, "ambiguous-framing"),
        ("conflicting Content-Length", request(url, "Content-Length: 3\r\nContent-Length: 30\r\n", method="POST") + b"abc",
         400, "ambiguous-framing"),
        ("Content-Length list", request(url, "Content-Length: 3, 3\r\n", method="POST") + b"abc", 400,
         "ambiguous-framing"),
        ("Transfer-Encoding gzip, chunked", request(url, "Transfer-Encoding: gzip, chunked\r\n", method="POST"), 400,
         "ambiguous-framing"),
        ("Transfer-Encoding identity", request(url, "Transfer-Encoding: identity\r\n", method="POST"), 400,
         "ambiguous-framing"),
        ("chunked in HTTP/1.0", request(url, "Transfer-Encoding: chunked\r\n", "HTTP/1.0", "POST") + b"0\r\n\r\n", 400,
         "ambiguous-framing"),
        ("obsolete line folding", request(url, "X-A: one\r\n two\r\n"), 400, "invalid-header"),
        ("space before the colon", request(url, "Transfer-Encoding : chunked\r\n", method="POST"), 400,
         "invalid-header"),
        ("control character in a value", request(url, "X-A: a\x01b\r\n"), 400, "invalid-header"),
        ("bad header name", request(url, "X[A]: 1\r\n"), 400, "invalid-header"),
        ("space in the target", request(base + "/a b"), 400, "invalid-target"),
        ("control character in the target", request(base + "/a\x01b"), 400, "invalid-target"),
        ("non-ASCII target", request(base + "/caf\xe9"), 400, "invalid-target"),
        ("target over max_target_length", request(base + "/" + "a" * 9000), 414, "target-too-long"),
        ("userinfo in the URI", request("http://user:pw@allowed.test:%d/" % canary_port), 400, "bad-request"),
        ("101 headers", request(url, "".join("X-H%d: v\r\n" % i for i in range(101))), 431, "too-many-headers"),
        ("Content-Length over max_body_bytes", request(url, "Content-Length: 5000\r\n", method="POST") + b"a" * 100,
         413, "body-too-large"),
        ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "unsupported-version"),
        ("HTTP/1.2", request(url, version="HTTP/1.2"), 505, "unsupported-version"),
    ]


def check_parsing(egress, check, canary):
    for name, payload, status, reason in smuggling_cases(canary.port):
        check_refusal(egress, check, name, exchange(egress.address, payload), status, reason)
    # A valid request first, then a smuggled one on the same connection: the
    # second is refused and the connection closed, never resynchronised.
    upstream = Upstream()
    first = request("http://allowed.test:%d/first" % upstream.port)
    smuggled = request("http://allowed.test:%d/x" % canary.port, "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
                       method="POST") + b"0\r\n\r\nGET http://allowed.test:%d/smuggled HTTP/1.1\r\n\r\n" % canary.port
    text, closed = exchange(egress.address, first + smuggled)
    check("pipelined: the first request is answered", text.startswith("HTTP/1.1 200") and "/first" in text, text[:200])
    check("pipelined: the smuggled one is refused and the connection closed",
          "X-Egress-Reason: ambiguous-framing" in text and closed and "/smuggled" not in text, text[-300:])
    upstream.close()
    time.sleep(0.3)
    check("parsing: the canary upstream never received a byte", canary.bytes == 0, "%d bytes" % canary.bytes)


def check_bodies(egress, check):
    upstream = Upstream()
    url = "http://allowed.test:%d/upload" % upstream.port
    status, head, body, _ = curl(egress.proxy, url, "--data-binary", "x" * 1000)
    check("body: exactly max_body_bytes is forwarded", status == 200 and "received 1000 bytes" in body, head + body)
    posts_before = len([s for s in upstream.seen if s["method"] == "POST"])
    chunks = b"".join(b"%x\r\n%s\r\n" % (400, b"y" * 400) for _ in range(4)) + b"0\r\n\r\n"
    payload = request(url, "Transfer-Encoding: chunked\r\n", method="POST") + chunks
    text, closed = exchange(egress.address, payload)
    head = text.partition("\r\n\r\n")[0]
    check("chunked body over the limit: 413 body-too-large, closed",
          status_of(text) == 413 and header(head, "X-Egress-Reason") == "body-too-large" and closed, text[:300])
    rid = header(head, "X-Egress-Request-Id")
    rows = egress.wait_for_events("request_id = ? AND event = 'close'", (rid,))
    check("chunked body over the limit: the close row says body-too-large",
          rows and (rows[0]["error"] or "").startswith("body-too-large") and rows[0]["status"] == 413, str(rows))
    time.sleep(0.3)
    check("chunked body over the limit: the upstream never got a whole request",
          len([s for s in upstream.seen if s["method"] == "POST"]) == posts_before, str(upstream.seen[-1:])[:300])
    upstream.close()


def check_slowloris(egress, check):
    """The header deadline holds for the second request on a kept-alive
    connection too: one byte every 0.4 s is cut at header_timeout (2 s)."""
    upstream = Upstream()
    host, port = egress.address.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(request("http://allowed.test:%d/one" % upstream.port))
    answer = harness.read_until(s, b"hello from upstream /one")
    check("keep-alive: the first request is served", b"200" in answer.split(b"\r\n")[0], answer[:200])
    second = request("http://allowed.test:%d/two" % upstream.port)
    started, closed = time.time(), False
    for i in range(25):  # bounded: 25 bytes, 10 s
        try:
            s.sendall(second[i:i + 1])
            s.settimeout(0.4)
            if s.recv(65536) == b"":
                closed = True
                break
        except socket.timeout:
            continue
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
    elapsed = time.time() - started
    s.close()
    check("keep-alive slowloris: cut at the header deadline, not the idle timeout",
          closed and 1.5 <= elapsed <= 5, "closed=%s after %.1f s" % (closed, elapsed))
    rows = egress.wait_for_events("event = 'decision' AND reason = 'client-timeout'")
    check("keep-alive slowloris: audited as client-timeout", len(rows) >= 1, str(rows))
    upstream.close()


def check_tunnels(egress, check, workdir):
    cert = harness.make_upstream_cert(workdir, names=("allowed.test", "nosni.test"))
    tls = Upstream(tls_dir=workdir)
    context = ssl.create_default_context(cafile=cert)
    context.set_alpn_protocols(["h2", "http/1.1"])
    s, status = tunnel(egress.address, "allowed.test:%d" % tls.port)
    with context.wrap_socket(s, server_hostname="allowed.test") as t:
        t.sendall(b"GET /alpn HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n")
        while t.recv(65536):
            pass
    rows = egress.wait_for_events("event = 'decision' AND kind = 'connect' AND alpn IS NOT NULL")
    check("ALPN: the tunnel's decision row lists the offered protocols in order",
          rows and rows[-1]["alpn"] == "h2,http/1.1" and rows[-1]["sni"] == "allowed.test", str(rows[-1:]))
    out = subprocess.run([harness.EGRESS, "audit", "query", "--db", egress.db, "--request-id", rows[-1]["request_id"],
                          "--format", "json"], capture_output=True, text=True, timeout=30)
    check("ALPN: egress audit query shows it", out.returncode == 0 and '"alpn":"h2,http/1.1"' in out.stdout,
          out.stdout + out.stderr)

    loose = ssl.create_default_context()
    loose.check_hostname = False
    loose.verify_mode = ssl.CERT_NONE
    s, status = tunnel(egress.address, "nosni.test:%d" % tls.port)
    try:
        with loose.wrap_socket(s, server_hostname=None) as t:
            t.sendall(b"GET /nosni HTTP/1.1\r\nHost: nosni.test\r\nConnection: close\r\n\r\n")
            body = read_to_end(t)
        ok = b"hello from upstream /nosni" in body
    except (ssl.SSLError, OSError) as e:
        ok, body = False, repr(e).encode()
    check("allow_no_sni: a hello without SNI passes for that rule", ok, body[:200])

    echo = Canary()
    s, status = tunnel(egress.address, "rawok.test:%d" % echo.port)
    s.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
    time.sleep(0.5)
    s.close()
    time.sleep(0.3)
    check("raw_tcp: an SSH banner passes for that rule", status.startswith("HTTP/1.1 200") and echo.bytes == 21,
          "%s, %d bytes" % (status, echo.bytes))
    s, status = tunnel(egress.address, "allowed.test:%d" % echo.port)
    before = echo.bytes
    s.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
    time.sleep(0.5)
    s.close()
    rows = egress.wait_for_events("event = 'decision' AND reason = 'not-tls'")
    check("raw_tcp: without the option, an SSH banner is still not-tls", rows and echo.bytes == before, str(rows[-1:]))
    echo.close()
    tls.close()


# A request head begun and not finished: the connection is busy (a request
# in flight), so a connection limit cannot give its place away.
BUSY = b"GET http://allowed.test:1/ HTTP/1.1\r\n"


def hold_busy(address, source):
    host, port = address.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=5, source_address=(source, 0))
    s.sendall(BUSY)
    return s


def check_connection_limits(workdir, check):
    """Clients are 127.0.0.1, .2 and .3; per client 2, globally 3. The held
    connections are busy (a head begun): idle ones would give their place."""
    egress = Egress(workdir, POLICY, hosts=HOSTS,
                    extra_config="limits:\n  max_connections: 3\n  max_connections_per_client: 2\n")
    held = [hold_busy(egress.address, "127.0.0.1") for _ in range(2)]
    time.sleep(0.3)  # accepted and counted
    text, closed = exchange(egress.address, b"", source="127.0.0.1")
    check("per client: the third connection from 127.0.0.1 gets 503 client-connection-limit",
          status_of(text) == 503 and "X-Egress-Reason: client-connection-limit" in text and closed, text[:300])
    held.append(hold_busy(egress.address, "127.0.0.2"))
    time.sleep(0.3)
    text, closed = exchange(egress.address, b"", source="127.0.0.3")
    check("globally: a fourth connection (from 127.0.0.3) gets 503 connection-limit",
          status_of(text) == 503 and "X-Egress-Reason: connection-limit" in text and closed, text[:300])
    rows = egress.wait_for_events("event = 'decision' AND reason IN ('connection-limit', 'client-connection-limit')",
                                  count=2)
    check("connection limits: both refusals audited", {r["reason"] for r in rows} ==
          {"connection-limit", "client-connection-limit"}, str(rows))
    held.pop(0).close()
    deadline, text = time.time() + 3, ""
    while time.time() < deadline:  # the place comes back once egress sees the close
        text, _ = exchange(egress.address, request("http://allowed.test:1/", "Connection: close\r\n"),
                           source="127.0.0.3", timeout=3)
        if status_of(text) != 503:
            break
        time.sleep(0.1)
    check("after a close, a new client gets in again", status_of(text) not in (0, 503), text[:200])
    for s in held:
        s.close()
    check("limits: egress stops cleanly", egress.stop() == 0)
    check_idle_connections_yield(workdir, check)


def check_idle_connections_yield(workdir, check):
    """500 idle connections from one address cannot lock that address out
    (the default global limit, 20 per client): each new connection takes an
    idle one's place. Busy connections still count."""
    workdir = os.path.join(workdir, "yield")  # an audit file of its own
    os.makedirs(workdir, exist_ok=True)
    admin = "127.0.0.1:%d" % harness.free_port()
    egress = Egress(workdir, POLICY, hosts=HOSTS, extra_config="limits:\n  max_connections_per_client: 20\n",
                    extra_args=("--admin-listen", admin))
    upstream = Upstream()
    host, port = egress.address.rsplit(":", 1)
    idle = []
    try:
        for _ in range(500):
            idle.append(socket.create_connection((host, int(port)), timeout=5, source_address=("127.0.0.5", 0)))
        text, closed = exchange(egress.address, request("http://allowed.test:%d/after-idle" % upstream.port,
                                                        "Connection: close\r\n"), source="127.0.0.5")
        check("500 idle connections from one address: its next real request is served",
              status_of(text) == 200 and "/after-idle" in text, text[:300])
        closed_by_egress = 0
        for s in idle:  # bounded: 500 sockets, a short read each
            s.settimeout(0.05)
            try:
                if s.recv(1) == b"":
                    closed_by_egress += 1
            except socket.timeout:
                pass
            except ConnectionResetError:
                closed_by_egress += 1
        check("egress closed the idle connections whose places it gave away (at least 500 - 20 + 1)",
              closed_by_egress >= 481, "%d closed" % closed_by_egress)
        rows = egress.events("reason IN ('connection-limit', 'client-connection-limit')")
        check("no limit refusal was needed, none audited", rows == [], str(rows[:3]))
        metrics = urllib.request.urlopen("http://%s/metrics" % admin, timeout=5).read().decode()
        yielded = [line for line in metrics.splitlines() if line.startswith("egress_proxy_connections_yielded_total ")]
        check("egress_proxy_connections_yielded_total counts the places given (481 of them)",
              yielded == ["egress_proxy_connections_yielded_total 481"], str(yielded))
    finally:
        for s in idle:
            s.close()
    busy = [hold_busy(egress.address, "127.0.0.6") for _ in range(20)]
    try:
        time.sleep(0.3)
        text, closed = exchange(egress.address, b"", source="127.0.0.6")
        check("20 busy connections from one address: the 21st still gets 503 client-connection-limit",
              status_of(text) == 503 and "X-Egress-Reason: client-connection-limit" in text and closed, text[:300])
    finally:
        for s in busy:
            s.close()
    upstream.close()
    check("idle yield: egress stops cleanly", egress.stop() == 0)


def wait_closed(s, limit):
    """Seconds until the peer closes `s` (reading and dropping), or None."""
    started = time.time()
    s.settimeout(0.2)
    while time.time() - started < limit:
        try:
            if s.recv(65536) == b"":
                return time.time() - started
        except socket.timeout:
            continue
        except ConnectionResetError:
            return time.time() - started
    return None


def check_timeouts(workdir, check):
    """idle_timeout between requests, tunnel_idle_timeout in a tunnel and
    connect_timeout to an upstream that never completes the handshake, all
    set to 1 s."""
    egress = Egress(workdir, POLICY, hosts=HOSTS,
                    extra_config="limits:\n  idle_timeout: 1s\n  tunnel_idle_timeout: 1s\n  connect_timeout: 1s\n")
    upstream = Upstream()
    host, port = egress.address.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=5)
    s.sendall(request("http://allowed.test:%d/idle" % upstream.port))
    s.settimeout(5)
    first = s.recv(65536)
    waited = wait_closed(s, 5)
    s.close()
    check("idle_timeout: a kept-alive connection with no next request is closed after it",
          first.startswith(b"HTTP/1.1 200") and waited is not None and waited < 3, "%r after %s" % (first[:40], waited))

    echo = Canary()
    s, status = tunnel(egress.address, "rawok.test:%d" % echo.port)
    s.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
    waited = wait_closed(s, 5)
    s.close()
    check("tunnel_idle_timeout: a silent tunnel is closed after it", waited is not None and waited < 3, str(waited))
    rows = egress.wait_for_events("event = 'close' AND error LIKE 'tunnel idle%'")
    check("tunnel_idle_timeout: the close row says so", len(rows) == 1, str(rows))
    echo.close()

    # A listener whose accept queue is full drops new SYNs: connect hangs.
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    fillers = []
    for _ in range(3):  # bounded: the queue holds one or two
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex(full.getsockname())
        fillers.append(f)
    time.sleep(0.2)
    started = time.time()
    status, head, _, _ = curl(egress.proxy, "http://allowed.test:%d/" % full.getsockname()[1], timeout=10)
    elapsed = time.time() - started
    check("connect_timeout: an upstream that never answers the handshake gives 504 upstream-timeout",
          status == 504 and header(head, "X-Egress-Reason") == "upstream-timeout" and elapsed < 4,
          "%d after %.1f s: %s" % (status, elapsed, head[:200]))
    for f in fillers:
        f.close()
    full.close()
    upstream.close()
    check("timeouts: egress stops cleanly", egress.stop() == 0)


def run(workdir, results):
    check = results.check
    canary = Canary()
    egress = Egress(workdir, POLICY, hosts=HOSTS, extra_config=LIMITS)
    check_parsing(egress, check, canary)
    check_bodies(egress, check)
    check_slowloris(egress, check)
    check_tunnels(egress, check, workdir)
    check("egress stops cleanly", egress.stop() == 0)
    canary.close()
    for name, part in (("limits", check_connection_limits), ("timeouts", check_timeouts)):
        directory = os.path.join(workdir, name)
        os.mkdir(directory)
        part(directory, check)


if __name__ == "__main__":
    harness.main(run)
