"""Message bodies of announced length (Content-Length), which egress relays
as raw bytes after the head: the boundary is exact both ways (a body and the
next pipelined request in one packet are two requests; a kept-alive
upstream's next response is not swallowed), and a body that ends early is
an error on both sides, never a silently short 200."""
import socket
import threading

import harness


class ShortUpstream:
    """Answers every request with `Content-Length: 1000` and 10 bytes, then
    closes: the body ends early."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                harness.read_until(conn, b"\r\n\r\n", size=4096)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")

    def close(self):
        self.sock.close()


def read_response(reader):
    """One response (head + Content-Length body) from `reader`, a buffered
    file over the socket (sock.makefile("rb")), so bytes of a pipelined
    next response that arrive with this one stay for the next call."""
    lines = []
    while True:
        line = reader.readline()
        if not line:
            return None, b"".join(lines)
        if line == b"\r\n":
            break
        lines.append(line)
    head = b"".join(lines).decode()
    body = reader.read(int(harness.header(head, "Content-Length") or 0))
    return head, body


def run(workdir, results):
    upstream = harness.Upstream()
    short = ShortUpstream()
    try:
        egress = harness.Egress(workdir, harness.ALLOWED_TEST_POLICY, hosts={"allowed.test": "127.0.0.1"})
        host, port = egress.address.rsplit(":", 1)

        # A POST body and the next request in one write: two requests upstream.
        body = b"x" * 70000  # more than one relay buffer
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(b"POST http://allowed.test:%d/post-1 HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s"
                      b"GET http://allowed.test:%d/after-post HTTP/1.1\r\nHost: a\r\n\r\n"
                      % (upstream.port, len(body), body, upstream.port))
            reader = s.makefile("rb")
            head1, body1 = read_response(reader)
            head2, body2 = read_response(reader)
        results.check("POST with a body, then a pipelined GET: two 200s",
                      head1 and head1.startswith("HTTP/1.1 200") and head2 and head2.startswith("HTTP/1.1 200"),
                      "%r %r" % (head1, head2))
        results.check("the upstream got the whole body, no more", body1 == b"received 70000 bytes", repr(body1))
        results.check("the GET after the body reached the upstream as its own request",
                      body2 == b"hello from upstream /after-post", repr(body2))
        seen = [r["path"] for r in upstream.seen]
        results.check("upstream saw exactly POST /post-1 then GET /after-post", seen[-2:] == ["/post-1", "/after-post"],
                      str(seen))

        # Kept-alive upstream: two downloads back to back on one client
        # connection, each exact.
        with socket.create_connection((host, int(port)), timeout=10) as s:
            sizes = (200000, 3)
            for size in sizes:
                s.sendall(b"GET http://allowed.test:%d/bytes/%d HTTP/1.1\r\nHost: a\r\n\r\n" % (upstream.port, size))
            reader = s.makefile("rb")
            got = [read_response(reader) for _ in sizes]
        results.check("two pipelined downloads arrive whole and in order",
                      [len(b) for _, b in got] == list(sizes) and all(h.startswith("HTTP/1.1 200") for h, _ in got),
                      str([(h and h.split("\r\n")[0], len(b)) for h, b in got]))

        # A response body that ends early: the worker sees the connection end
        # short of Content-Length, and the audit says why.
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(b"GET http://allowed.test:%d/short HTTP/1.1\r\nHost: a\r\n\r\n" % short.port)
            head, got_body = read_response(s.makefile("rb"))
            s.settimeout(5)
            try:
                closed = s.recv(1) == b""
            except OSError:
                closed = True
        results.check("a short upstream body reaches the worker as a short body", head is not None and
                      harness.header(head, "Content-Length") == "1000" and got_body == b"0123456789", repr(got_body))
        results.check("then egress closes the worker's connection", closed)
        rows = egress.wait_for_events("event = 'close' AND path = ?", ("/short",))
        results.check("the close event says the body ended early",
                      rows and "reading the upstream response body" in (rows[0]["error"] or ""),
                      str(rows and rows[0]["error"]))
        egress.stop()
    finally:
        upstream.close()
        short.close()


if __name__ == "__main__":
    harness.main(run)
