"""Plain CONNECT tunnels relay with splice(2) (src/proxy/splice_relay.h),
and keep the copy relay's contract: tens of MiB both ways at once arrive
whole (sha256) and the close event's bytes_up / bytes_down are exact (the
200 head is part of bytes_down); a FIN from either side half-closes and the
other direction still delivers; a tunnel that goes silent is closed after
tunnel_idle_timeout with the bytes it moved counted.
egress_proxy_tunnels_relayed_total{relay="splice"} proves the path: one per
tunnel, none by copy. The upstream is raw TCP (a raw_tcp rule), so no TLS
stands between the test and the byte counts."""
import hashlib
import os
import random
import socket
import threading
import time

import harness
from harness import Egress, free_port
from test_admin import get, samples

POLICY = """\
version: 1
mode: self-hosted
internal:
  - host: rawok.test
    ports: any
    raw_tcp: true
"""

MIB = 1 << 20


def payload(size, seed):
    return random.Random(seed).randbytes(size)


def read_all(sock):
    """(bytes, sha256 hex) of what `sock` sends until EOF."""
    digest, total = hashlib.sha256(), 0
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return total, digest.hexdigest()
        digest.update(chunk)
        total += len(chunk)


class Peer:
    """A raw TCP upstream that runs `handler(conn)` for each connection, in
    its own thread, and keeps what each returns."""

    def __init__(self, handler):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        self.results = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(60)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            self.results.append(self.handler(conn))
        except OSError as e:
            self.results.append(e)
        finally:
            conn.close()

    def wait(self, count, timeout=60):
        deadline = time.time() + timeout
        while len(self.results) < count and time.time() < deadline:
            time.sleep(0.02)
        return self.results[:count]

    def close(self):
        self.sock.close()


def send_then_fin(sock, data):
    sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)


def open_tunnel(egress, port):
    """A CONNECT tunnel to rawok.test:port: (socket, the whole 200 head)."""
    host, proxy_port = egress.address.rsplit(":", 1)
    s = socket.create_connection((host, int(proxy_port)), timeout=60)
    s.sendall(b"CONNECT rawok.test:%d HTTP/1.1\r\nHost: rawok.test:%d\r\n\r\n" % (port, port))
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = s.recv(1)  # a byte at a time: the tunnel's bytes stay unread
        if not byte:
            break
        head += byte
    return s, head


def close_row(egress, count):
    return egress.wait_for_events("event = 'close' AND kind = 'connect'", count=count, timeout=10)


def relayed(admin):
    values = samples(get(admin, "/metrics")[1])
    return {relay: values.get('egress_proxy_tunnels_relayed_total{relay="%s"}' % relay) for relay in ("splice", "copy")}


def check_bulk(egress, check, up_size, down_size):
    up, down = payload(up_size, 1), payload(down_size, 2)

    def upstream(conn):
        sender = threading.Thread(target=send_then_fin, args=(conn, down))
        sender.start()
        got = read_all(conn)
        sender.join()
        return got

    peer = Peer(upstream)
    s, head = open_tunnel(egress, peer.port)
    started = time.time()
    sender = threading.Thread(target=send_then_fin, args=(s, up))
    sender.start()
    got_down = read_all(s)
    sender.join()
    took = time.time() - started
    s.close()
    got_up = peer.wait(1)
    peer.close()
    print("bulk: %d MiB up and %d MiB down at once in %.2f s" % (up_size // MIB, down_size // MIB, took))
    check("bulk: the 200 comes first", head.startswith(b"HTTP/1.1 200 "), head)
    check("bulk: %d MiB up arrive whole" % (up_size // MIB),
          got_up == [(len(up), hashlib.sha256(up).hexdigest())], str(got_up)[:200])
    check("bulk: %d MiB down arrive whole" % (down_size // MIB),
          got_down == (len(down), hashlib.sha256(down).hexdigest()), str(got_down))
    rows = close_row(egress, 1)
    check("bulk: the close event counts bytes_up exactly",
          len(rows) == 1 and rows[0]["bytes_up"] == len(up), str(rows))
    check("bulk: the close event counts bytes_down exactly (the 200 head and the bytes)",
          len(rows) == 1 and rows[0]["bytes_down"] == len(head) + len(down), str(rows))
    check("bulk: the close event has no error", len(rows) == 1 and not rows[0]["error"], str(rows))


def check_half_close(egress, check):
    """The worker's FIN first (a request, then the answer), then the
    upstream's FIN first (a banner, then what the worker sends after it)."""
    def answer_after_fin(conn):
        got = read_all(conn)
        send_then_fin(conn, b"answer after your FIN")
        return got

    peer = Peer(answer_after_fin)
    s, head = open_tunnel(egress, peer.port)
    send_then_fin(s, b"request")
    got = read_all(s)
    s.close()
    check("half-close: after the worker's FIN the upstream's answer still arrives",
          got[0] == len(b"answer after your FIN") and peer.wait(1)[0][0] == len(b"request"), "%s %s" % (got, peer.results))
    rows = close_row(egress, 2)
    check("half-close: bytes_up and bytes_down exact after the worker's FIN",
          len(rows) == 2 and rows[1]["bytes_up"] == 7 and rows[1]["bytes_down"] == len(head) + 21, str(rows[1:]))
    peer.close()

    def banner_then_read(conn):
        send_then_fin(conn, b"SSH-2.0-banner\r\n")
        return read_all(conn)

    peer = Peer(banner_then_read)
    s, head = open_tunnel(egress, peer.port)
    s.sendall(b"SSH-2.0-client\r\n")  # raw_tcp: the first bytes come from the worker
    banner = b""
    while not banner.endswith(b"\r\n"):
        chunk = s.recv(64)
        if not chunk:
            break
        banner += chunk
    time.sleep(0.2)  # the upstream's FIN is through
    send_then_fin(s, b"sent after the upstream's FIN")
    rest = read_all(s)
    s.close()
    got = peer.wait(1)
    check("half-close: after the upstream's FIN the worker's bytes still arrive",
          banner == b"SSH-2.0-banner\r\n" and rest == (0, hashlib.sha256(b"").hexdigest()) and
          got and got[0][0] == 16 + 29, "%r %s %s" % (banner, rest, got))
    rows = close_row(egress, 3)
    check("half-close: bytes_up and bytes_down exact after the upstream's FIN",
          len(rows) == 3 and rows[2]["bytes_up"] == 16 + 29 and rows[2]["bytes_down"] == len(head) + 16, str(rows[2:]))
    peer.close()


def check_idle(workdir, check):
    egress = Egress(workdir, POLICY, hosts={"rawok.test": "127.0.0.1"},
                    extra_config="limits:\n  tunnel_idle_timeout: 1s\n")

    def echo_once(conn):
        data = conn.recv(64)
        conn.sendall(data)
        return read_all(conn)

    peer = Peer(echo_once)
    s, head = open_tunnel(egress, peer.port)
    s.sendall(b"hello")
    echoed = s.recv(64)
    started = time.time()
    s.settimeout(6)
    try:
        closed = s.recv(1) == b""
    except (ConnectionResetError, socket.timeout):
        closed = False
    waited = time.time() - started
    s.close()
    check("idle: a tunnel silent after some bytes is closed after tunnel_idle_timeout (1 s)",
          echoed == b"hello" and closed and 0.8 < waited < 4, "%r %s after %.2f s" % (echoed, closed, waited))
    rows = close_row(egress, 1)
    check("idle: the close row says so and counts the bytes it moved",
          len(rows) == 1 and rows[0]["error"] == "tunnel idle for 1000 ms" and rows[0]["bytes_up"] == 5 and
          rows[0]["bytes_down"] == len(head) + 5, str(rows))
    peer.close()
    check("idle: egress stops cleanly", egress.stop() == 0)


def run(workdir, results):
    check = results.check
    admin = "127.0.0.1:%d" % free_port()
    main_dir, idle_dir = os.path.join(workdir, "main"), os.path.join(workdir, "idle")
    os.makedirs(main_dir)
    os.makedirs(idle_dir)
    egress = Egress(main_dir, POLICY, hosts={"rawok.test": "127.0.0.1"}, extra_args=("--admin-listen", admin))
    check_bulk(egress, check, 48 * MIB, 32 * MIB)
    check_half_close(egress, check)
    counts = relayed(admin)
    check("the three tunnels were relayed by splice, none by copy", counts == {"splice": 3, "copy": 0}, str(counts))
    check("egress stops cleanly", egress.stop() == 0)
    check_idle(idle_dir, check)


if __name__ == "__main__":
    harness.main(run)
