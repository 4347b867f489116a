"""WebSocket through egress (issue 14, item 3): an `Upgrade: websocket`
request is decided like any other request (method, path), forwarded with
its Upgrade headers, and on the upstream's `101 Switching Protocols` the two
sides are relayed as a tunnel (with the tunnel idle timeout) whose close
audit row carries status 101 and the bytes both ways. Inside an inspected
tunnel (CONNECT to an `inspect: true` rule) and on plain HTTP forwarding
(absolute-form GET through the proxy).

How, with real peers only:
- The upstream is a real WebSocket server on 127.0.0.1 written here by
  hand (RFC 6455): it checks the handshake as a real server does (GET,
  `Upgrade: websocket`, `Connection: upgrade`, version 13, a key; otherwise
  400), answers 101 with Sec-WebSocket-Accept = base64(sha1(key + GUID)),
  sends one unsolicited text message in the same write as the 101 head
  (so bytes behind the head must be relayed too), echoes every client text
  message back as "echo:" + message, and answers a close frame with a close
  frame. It records every connection: the request path and headers, the
  messages received and whether each client frame arrived masked, and how
  and when the connection ended. One plain-TCP instance (plain.test) and
  one TLS instance (allowed.test, certificate from `make_upstream_cert`,
  given to egress with --upstream-ca).
- The client is a python socket: CONNECT allowed.test through egress, TLS
  trusting the egress CA (`egress ca init`), then the upgrade request by
  hand; for the plain case `GET http://plain.test:PORT/ws` through the
  proxy. It checks the 101 and the Accept value, reads the unsolicited
  message, sends 3 messages (125-, 16-bit-length and UTF-8 payloads, masked
  as a client must), checks each echo, then the close handshake.
- Both rules have `paths: [/ws]`: a WebSocket upgrade to /other is refused
  403 path-not-allowed, inside the tunnel and on plain HTTP, and no request
  reaches the upstream.
- The audit rows (sqlite3 on the audit file): the /ws attempts have an
  allow decision and a close row with status 101 and bytes_up / bytes_down
  at least the WebSocket frame bytes each way (kind inspected and http);
  the /other attempts a deny / path-not-allowed decision. The harness's
  check that every request id has exactly one decision and one close runs
  at the end.
- Idle: with `limits: tunnel_idle_timeout: 1s`, an upgraded connection
  left silent (after one message each way) is closed by egress within 0.8
  to 5 s, on both sides, and its close row's error says "tunnel idle for
  1000 ms".

Network rule: 127.0.0.1 only; allowed.test and plain.test resolve through
the config's dns.hosts. Every loop is bounded in count and time; every
socket, thread and egress started here is closed or stopped.
"""
import base64
import hashlib
import os
import socket
import ssl
import struct
import subprocess
import threading
import time

import harness

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
POLICY = """\
version: 1
mode: self-hosted
allow:
  - host: allowed.test
    ports: any
    inspect: true
    paths: [/ws]
  - host: plain.test
    ports: any
    paths: [/ws]
internal:
  - cidr: 127.0.0.1/32
    ports: any
"""
IDLE_TIMEOUT_MS = 1000
LIMITS = "limits:\n  tunnel_idle_timeout: 1s\n"
UNSOLICITED = "hello from the upstream, before any client message"
MESSAGES = ["msg-1 " + "a" * 100,                    # 7-bit length
            "msg-2 " + "b" * 1000,                   # 16-bit length
            "msg-3 h\u00e9llo w\u00f6rld \u2713"]    # UTF-8 text
OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA
CLOSE_PAYLOAD = struct.pack("!H", 1000) + b"bye"


def frame_size(payload_length, masked):
    extended = 0 if payload_length < 126 else 2 if payload_length < 65536 else 8
    return 2 + extended + (4 if masked else 0) + payload_length


# The WebSocket bytes of one exchange after the 101, each way: client
# messages and close frame up; the unsolicited message, the echoes and the
# close answer down. Each is well over its handshake head (about 200 bytes),
# so a byte count that stopped at the handshake fails.
FRAME_BYTES_UP = sum(frame_size(len(m.encode()), True) for m in MESSAGES) + frame_size(len(CLOSE_PAYLOAD), True)
FRAME_BYTES_DOWN = (frame_size(len(UNSOLICITED.encode()), False) + frame_size(2, False)
                    + sum(frame_size(len(b"echo:" + m.encode()), False) for m in MESSAGES))


def accept_value(key):
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def encode_frame(opcode, payload, mask):
    """One final frame (RFC 6455 5.2); client frames are masked."""
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        head = bytes([0x80 | opcode, bit | n])
    elif n < 65536:
        head = bytes([0x80 | opcode, bit | 126]) + struct.pack("!H", n)
    else:
        head = bytes([0x80 | opcode, bit | 127]) + struct.pack("!Q", n)
    if mask:
        key = os.urandom(4)
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        head += key
    return head + payload


class Peer:
    """A socket (plain or TLS) with a read buffer: exact reads, a head, a
    frame. recv() timeouts bound each wait; counts bound each loop."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("peer closed")
        self.buf += chunk

    def read_exact(self, n):
        for _ in range(10000):
            if len(self.buf) >= n:
                out, self.buf = self.buf[:n], self.buf[n:]
                return out
            self._fill()
        raise EOFError("no %d bytes after 10000 reads" % n)

    def read_head(self, limit=65536):
        for _ in range(10000):
            if b"\r\n\r\n" in self.buf:
                head, _, self.buf = self.buf.partition(b"\r\n\r\n")
                return head.decode("latin-1")
            if len(self.buf) > limit:
                raise EOFError("head over %d bytes" % limit)
            self._fill()
        raise EOFError("no head after 10000 reads")

    def read_frame(self):
        """(opcode, payload, masked, wire size)."""
        b0, b1 = self.read_exact(2)
        size = 2
        n = b1 & 0x7F
        if n == 126:
            n, size = struct.unpack("!H", self.read_exact(2))[0], size + 2
        elif n == 127:
            n, size = struct.unpack("!Q", self.read_exact(8))[0], size + 8
        if n > 1 << 20:
            raise EOFError("frame of %d bytes" % n)
        masked = bool(b1 & 0x80)
        key = self.read_exact(4) if masked else b""
        payload = self.read_exact(n)
        if masked:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        return b0 & 0x0F, payload, masked, size + len(key) + n


def parse_head(head):
    """(status or method line, {lower name: value})."""
    lines = head.split("\r\n")
    fields = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        fields[k.strip().lower()] = v.strip()
    return lines[0], fields


def tokens(value):
    return {t.strip().lower() for t in (value or "").split(",")}


class WsUpstream:
    """A WebSocket server on 127.0.0.1 (TLS when cert_dir is given) that
    records every connection in `self.conns` (dicts, see _serve)."""

    def __init__(self, cert_dir=None):
        self.context = None
        if cert_dir:
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.context.load_cert_chain(os.path.join(cert_dir, "upstream.crt"),
                                         os.path.join(cert_dir, "upstream.key"))
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.conns = []
        self.sockets = []
        self.closing = False
        self.threads = []
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def requests(self):
        """The paths of the request heads that arrived, in order."""
        with self.lock:
            return [c["path"] for c in self.conns if c["path"] is not None]

    def conn_for(self, path):
        with self.lock:
            found = [c for c in self.conns if c["path"] == path]
        return found[-1] if found else None

    def _accept(self):
        for _ in range(10 ** 6):  # bounded; ends when close() is called
            if self.closing:
                return
            try:
                conn, _ = self.listener.accept()
            except (socket.timeout, OSError):
                continue
            record = {"path": None, "headers": {}, "upgraded": False, "rejected": None, "messages": [],
                      "unmasked_frames": 0, "end": None, "ended_at": None}
            with self.lock:
                self.conns.append(record)
                self.sockets.append(conn)
            t = threading.Thread(target=self._serve, args=(conn, record), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, conn, record):
        conn.settimeout(20)
        try:
            sock = self.context.wrap_socket(conn, server_side=True) if self.context else conn
            with self.lock:
                self.sockets.append(sock)
            self._session(Peer(sock), record)
        except socket.timeout:
            record["end"] = "timeout"
        except EOFError:
            record["end"] = record["end"] or "eof"
        except (OSError, ssl.SSLError) as e:
            record["end"] = record["end"] or "error: %s" % e
        finally:
            record["ended_at"] = time.monotonic()
            conn.close()

    def _session(self, peer, record):
        head = peer.read_head()
        line, fields = parse_head(head)
        parts = line.split(" ")
        record["path"] = parts[1] if len(parts) == 3 else line
        record["headers"] = fields
        problem = None
        if len(parts) != 3 or parts[0] != "GET" or parts[2] != "HTTP/1.1":
            problem = "not GET ... HTTP/1.1: " + line
        elif "websocket" not in tokens(fields.get("upgrade")):
            problem = "no Upgrade: websocket"
        elif "upgrade" not in tokens(fields.get("connection")):
            problem = "no Connection: upgrade"
        elif fields.get("sec-websocket-version") != "13" or not fields.get("sec-websocket-key"):
            problem = "no Sec-WebSocket-Version: 13 with a Sec-WebSocket-Key"
        if problem:
            record["rejected"] = problem
            body = ("not a websocket upgrade: %s\n" % problem).encode()
            peer.sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            record["end"] = "rejected"
            return
        record["upgraded"] = True
        peer.sock.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Accept: %s\r\n\r\n" % accept_value(fields["sec-websocket-key"])).encode()
                          + encode_frame(OP_TEXT, UNSOLICITED.encode(), mask=False))
        for _ in range(1000):
            opcode, payload, masked, _ = peer.read_frame()
            if not masked:
                record["unmasked_frames"] += 1
            if opcode == OP_TEXT:
                record["messages"].append(payload.decode("utf-8", "replace"))
                peer.sock.sendall(encode_frame(OP_TEXT, b"echo:" + payload, mask=False))
            elif opcode == OP_PING:
                peer.sock.sendall(encode_frame(OP_PONG, payload, mask=False))
            elif opcode == OP_CLOSE:
                peer.sock.sendall(encode_frame(OP_CLOSE, payload[:2] or struct.pack("!H", 1000), mask=False))
                record["end"] = "close frame"
                return  # the server closes the TCP connection first (RFC 6455 7.1.1)

    def close(self):
        self.closing = True
        self.listener.close()
        with self.lock:
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self.acceptor.join(5)
        for t in self.threads:
            t.join(5)


def handshake(peer, target, host):
    """Sends the upgrade request; returns (status, fields, head, key)."""
    key = base64.b64encode(os.urandom(16)).decode()
    peer.sock.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                       "Origin: http://%s\r\n\r\n" % (target, host, key, host)).encode())
    head = peer.read_head()
    line, fields = parse_head(head)
    parts = line.split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    return status, fields, head, key


def read_text(peer):
    """The next text message (answering nothing else); (text, wire size)."""
    for _ in range(10):
        opcode, payload, masked, size = peer.read_frame()
        if opcode == OP_TEXT:
            return payload.decode("utf-8", "replace"), size, masked
    raise EOFError("no text frame in 10 frames")


def open_inspected(egress, egress_ca, port):
    """CONNECT allowed.test:PORT, then TLS to the minted leaf; a Peer."""
    s, status = harness.tunnel(egress.address, "allowed.test:%d" % port, timeout=10)
    if not status.startswith("HTTP/1.1 200"):
        s.close()
        raise AssertionError("CONNECT refused: " + status)
    context = ssl.create_default_context(cafile=egress_ca)
    t = context.wrap_socket(s, server_hostname="allowed.test")
    t.settimeout(5)
    return Peer(t)


def open_plain(egress):
    host, port = egress.address.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=5)
    return Peer(s)


class Case:
    """One of the two ways in: inspected (TLS upstream, kind inspected) or
    plain forwarding (TCP upstream, kind http)."""

    def __init__(self, name, kind, open_peer, target, host, upstream):
        self.name, self.kind, self.open_peer = name, kind, open_peer
        self.target, self.host, self.upstream = target, host, upstream


def exchange(check, egress, case):
    """The upgrade, the unsolicited message, 3 echoes and the close; then
    the upstream's record and the audit rows."""
    label = "[%s]" % case.name
    peer = case.open_peer()
    try:
        status, fields, head, key = handshake(peer, case.target("/ws"), case.host)
        request_id = fields.get("x-egress-request-id")
        check("%s the upgrade to /ws gets 101 Switching Protocols through egress" % label, status == 101,
              "got %r" % head[:300])
        check("%s the 101 carries the upstream's correct Sec-WebSocket-Accept" % label,
              fields.get("sec-websocket-accept") == accept_value(key),
              "got %r, expected %r" % (fields.get("sec-websocket-accept"), accept_value(key)))
        check("%s the 101 keeps Upgrade: websocket and Connection: upgrade" % label,
              "websocket" in tokens(fields.get("upgrade")) and "upgrade" in tokens(fields.get("connection")),
              "upgrade=%r connection=%r" % (fields.get("upgrade"), fields.get("connection")))
        if status == 101:
            try:
                text, _, masked = read_text(peer)
                check("%s the unsolicited server-to-client message arrives (sent with the 101 head)" % label,
                      text == UNSOLICITED and not masked, "got %r masked=%s" % (text[:80], masked))
                echoes = []
                for message in MESSAGES:
                    peer.sock.sendall(encode_frame(OP_TEXT, message.encode(), mask=True))
                    echoes.append(read_text(peer)[0])
                check("%s each of %d client messages comes back echoed, in order" % (label, len(MESSAGES)),
                      echoes == ["echo:" + m for m in MESSAGES], "got %r" % [e[:40] for e in echoes])
                peer.sock.sendall(encode_frame(OP_CLOSE, CLOSE_PAYLOAD, mask=True))
                opcode, payload, _, _ = peer.read_frame()
                check("%s the close frame is answered with a close frame (1000)" % label,
                      opcode == OP_CLOSE and payload[:2] == struct.pack("!H", 1000),
                      "got opcode %d %r" % (opcode, payload[:20]))
            except (EOFError, OSError, ssl.SSLError) as e:
                check("%s the upgraded connection carries messages both ways" % label, False, repr(e))
        else:
            check("%s messages both ways over the upgraded connection" % label, False,
                  "not tried: no 101 (got %s)" % status)
        # The server closed after its close frame; egress ends the relay.
        drain(peer, 2)
    finally:
        peer.sock.close()

    conn = case.upstream.conn_for("/ws")
    check("%s the upstream got the request with its Upgrade and Connection: upgrade headers" % label,
          conn is not None and conn["rejected"] is None and conn["upgraded"],
          "upstream record: %s" % (conn and {k: conn[k] for k in ("rejected", "headers")}))
    if conn is not None and conn["upgraded"]:
        wait_until(lambda: conn["end"] is not None, 3)
        check("%s the upstream received the client messages intact and masked" % label,
              conn["messages"] == MESSAGES and conn["unmasked_frames"] == 0 and conn["end"] == "close frame",
              "messages %r, unmasked %d, end %s" % ([m[:20] for m in conn["messages"]],
                                                    conn["unmasked_frames"], conn["end"]))
    check_audit(check, egress, case, label, request_id, "/ws")


def drain(peer, seconds):
    """Reads until the peer closes or `seconds` pass; True when it closed."""
    deadline = time.monotonic() + seconds
    peer.sock.settimeout(0.2)
    for _ in range(int(seconds / 0.2) + 50):
        if time.monotonic() > deadline:
            return False
        try:
            if not peer.sock.recv(65536):
                return True
        except socket.timeout:
            continue
        except (OSError, ssl.SSLError):
            return True
    return False


def wait_until(condition, seconds):
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


def check_audit(check, egress, case, label, request_id, path):
    if not request_id:
        check("%s the answer carries X-Egress-Request-Id" % label, False)
        rows = egress.wait_for_events("event = 'decision' AND kind = ? AND path = ?", (case.kind, path))
        request_id = rows[-1]["request_id"] if rows else None
    decision = egress.wait_for_events("request_id = ? AND event = 'decision'", (request_id,))
    d = decision[-1] if decision else {}
    check("%s audit: the %s request has an allow decision row of kind %s" % (label, path, case.kind),
          d.get("decision") == "allow" and d.get("kind") == case.kind and d.get("path") == path,
          "row: %s" % {k: d.get(k) for k in ("decision", "reason", "kind", "path")})
    close = egress.wait_for_events("request_id = ? AND event = 'close'", (request_id,))
    c = close[-1] if close else {}
    check("%s audit: its close row has status 101" % label, c.get("status") == 101,
          "row: %s" % {k: c.get(k) for k in ("status", "error", "bytes_up", "bytes_down")})
    check("%s audit: its close row counts the WebSocket frame bytes both ways (up >= %d, down >= %d)"
          % (label, FRAME_BYTES_UP, FRAME_BYTES_DOWN),
          (c.get("bytes_up") or 0) >= FRAME_BYTES_UP and (c.get("bytes_down") or 0) >= FRAME_BYTES_DOWN,
          "bytes_up=%s bytes_down=%s" % (c.get("bytes_up"), c.get("bytes_down")))


def refused(check, egress, case):
    """An upgrade to /other: 403 path-not-allowed, nothing upstream."""
    label = "[%s]" % case.name
    before = case.upstream.requests()
    peer = case.open_peer()
    try:
        status, fields, head, _ = handshake(peer, case.target("/other"), case.host)
    except (EOFError, OSError, ssl.SSLError) as e:
        status, fields, head = None, {}, repr(e)
    finally:
        peer.sock.close()
    check("%s a WebSocket upgrade to /other is refused 403 path-not-allowed" % label,
          status == 403 and fields.get("x-egress-reason") == "path-not-allowed", head[:300])
    time.sleep(0.3)  # anything egress might still send upstream has arrived by now
    after = case.upstream.requests()
    check("%s the refused /other request never reaches the upstream" % label,
          after == before and "/other" not in after, "upstream got %r" % after[len(before):])
    rid = fields.get("x-egress-request-id")
    rows = egress.wait_for_events("request_id = ? AND event = 'decision'", (rid,)) if rid else []
    d = rows[-1] if rows else {}
    check("%s audit: /other has a deny / path-not-allowed decision row of kind %s" % (label, case.kind),
          d.get("decision") == "deny" and d.get("reason") == "path-not-allowed" and d.get("kind") == case.kind
          and d.get("path") == "/other",
          "request id %s, row: %s" % (rid, {k: d.get(k) for k in ("decision", "reason", "kind", "path")}))


def idle(check, egress, case):
    """An upgraded connection left silent is closed after the tunnel idle
    timeout (1 s), on both sides, and the close row says why."""
    label = "[%s]" % case.name
    path = "/ws/idle"
    peer = case.open_peer()
    request_id, silent_from, closed_after = None, None, None
    try:
        status, fields, head, _ = handshake(peer, case.target(path), case.host)
        request_id = fields.get("x-egress-request-id")
        if status != 101:
            check("%s idle: a silent upgraded connection is closed after tunnel_idle_timeout" % label, False,
                  "not tried: no 101 (got %r)" % head[:200])
            return
        read_text(peer)  # the unsolicited message
        peer.sock.sendall(encode_frame(OP_TEXT, b"still here", mask=True))
        echo, _, _ = read_text(peer)
        silent_from = time.monotonic()
        closed = drain(peer, 8)
        closed_after = time.monotonic() - silent_from if closed else None
    except (EOFError, OSError, ssl.SSLError) as e:
        check("%s idle: the connection works before going silent" % label, False, repr(e))
        return
    finally:
        peer.sock.close()
    check("%s idle: one message each way before the silence" % label, echo == "echo:still here", repr(echo))
    check("%s idle: egress closes the silent WebSocket within 0.8-5 s (tunnel_idle_timeout 1s)" % label,
          closed_after is not None and 0.8 <= closed_after <= 5,
          "still open after 8 s" if closed_after is None else "closed after %.2f s" % closed_after)
    conn = case.upstream.conn_for(path)
    wait_until(lambda: conn is not None and conn["ended_at"] is not None, 5)
    up_after = conn["ended_at"] - silent_from if conn and conn["ended_at"] else None
    check("%s idle: the upstream side is closed too, within 5 s" % label,
          up_after is not None and up_after <= 5 and conn["end"] not in (None, "timeout", "close frame"),
          "upstream end %s after %s s" % (conn and conn["end"], up_after and "%.2f" % up_after))
    rows = egress.wait_for_events("request_id = ? AND event = 'close'", (request_id,)) if request_id else []
    c = rows[-1] if rows else {}
    expected = "tunnel idle for %d ms" % IDLE_TIMEOUT_MS
    check("%s idle: the close row (status 101) says %r in error" % (label, expected),
          c.get("status") == 101 and expected in (c.get("error") or ""),
          "request id %s, row: %s" % (request_id, {k: c.get(k) for k in ("status", "error")}))


def run(workdir, results):
    check = results.check
    certs = os.path.join(workdir, "certs")
    out = subprocess.run([harness.EGRESS, "ca", "init", "--out", certs], capture_output=True, text=True, timeout=30)
    check("egress ca init succeeds", out.returncode == 0, out.stderr)
    egress_ca = os.path.join(certs, "ca.crt")
    upstream_dir = os.path.join(workdir, "upstream")
    os.makedirs(upstream_dir)
    upstream_crt = harness.make_upstream_cert(upstream_dir, names=("allowed.test",))
    wss = WsUpstream(cert_dir=upstream_dir)
    ws = WsUpstream()
    egress = None
    try:
        egress = harness.Egress(workdir, POLICY, hosts={"allowed.test": "127.0.0.1", "plain.test": "127.0.0.1"},
                                extra_config=LIMITS,
                                extra_args=("--ca-cert", egress_ca, "--ca-key", os.path.join(certs, "ca.key"),
                                            "--upstream-ca", upstream_crt))
        cases = [
            Case("inspected", "inspected", lambda: open_inspected(egress, egress_ca, wss.port),
                 lambda path: path, "allowed.test", wss),
            Case("plain", "http", lambda: open_plain(egress),
                 lambda path: "http://plain.test:%d%s" % (ws.port, path), "plain.test:%d" % ws.port, ws),
        ]
        for case in cases:
            for step in (refused, exchange, idle):
                try:
                    step(check, egress, case)
                except Exception as e:  # noqa: BLE001 -- a crash is this step's failure, the rest still run
                    check("[%s] %s ran to completion" % (case.name, step.__name__), False, repr(e))
    finally:
        if egress:
            code = egress.stop()
            check("egress stops cleanly (exit 0)", code == 0, "%s\n%s" % (code, egress.log_text()[-2000:]))
        wss.close()
        ws.close()


if __name__ == "__main__":
    harness.main(run)
