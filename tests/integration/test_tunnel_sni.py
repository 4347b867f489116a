"""Invariant 4 in a CONNECT tunnel: the TLS ClientHello must name the CONNECT
host. Domain fronting (SNI for another host), a hello without SNI and
non-TLS bytes are refused before a single byte reaches the upstream, and
each refusal is in the audit log with its reason and the SNI seen."""
import socket
import ssl
import threading

import harness
from harness import Egress, read_to_end, tunnel

POLICY = harness.ALLOWED_TEST_POLICY


class Canary:
    """A TCP listener that accepts connections and counts the bytes it
    receives: the proof that nothing of a refused tunnel reached it."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.bytes = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            conn.settimeout(3)
            try:
                while True:
                    data = conn.recv(65536)
                    if not data:
                        break
                    self.bytes += len(data)
            except OSError:
                pass
            conn.close()

    def close(self):
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


def closed_by_peer(s):
    try:
        s.settimeout(5)
        return s.recv(1) == b""
    except (ConnectionResetError, ssl.SSLError):
        return True
    except socket.timeout:
        return False


def run(workdir, results):
    check = results.check
    canary = Canary()
    cert = harness.make_upstream_cert(workdir)
    tls = harness.Upstream(tls_dir=workdir)
    egress = Egress(workdir, POLICY, hosts={"allowed.test": "127.0.0.1", "other.test": "127.0.0.1"})
    context = ssl.create_default_context(cafile=cert)

    # The legitimate case: SNI names the CONNECT host.
    s, status = tunnel(egress.address, "allowed.test:%d" % tls.port)
    with context.wrap_socket(s, server_hostname="allowed.test") as t:
        t.sendall(b"GET /sni HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n")
        body = read_to_end(t)
    check("matching SNI: the tunnel works", status.startswith("HTTP/1.1 200") and b"hello from upstream /sni" in body,
          status)

    loose = ssl.create_default_context()
    loose.check_hostname = False
    loose.verify_mode = ssl.CERT_NONE
    cases = [
        ("domain fronting (SNI other.test)", "sni-mismatch", "other.test",
         lambda s: loose.wrap_socket(s, server_hostname="other.test", do_handshake_on_connect=True)),
        ("a ClientHello without SNI", "sni-missing", None,
         lambda s: loose.wrap_socket(s, server_hostname=None, do_handshake_on_connect=True)),
        ("plain HTTP inside the tunnel", "not-tls", None,
         lambda s: s.sendall(b"GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n")),
        ("an SSH banner inside the tunnel", "not-tls", None,
         lambda s: s.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")),
    ]
    for name, reason, sni, attack in cases:
        s, status = tunnel(egress.address, "allowed.test:%d" % canary.port)
        check("%s: CONNECT answered 200 first" % name, status.startswith("HTTP/1.1 200"), status)
        refused = False
        try:
            attack(s)
            refused = closed_by_peer(s)
        except (ssl.SSLError, ConnectionResetError, OSError):
            refused = True
        s.close()
        check("%s: the tunnel is closed" % name, refused)
        rows = egress.wait_for_events("event = 'decision' AND reason = ?", (reason,), count=1)
        check("%s: audited as %s" % (name, reason), len(rows) >= 1 and rows[-1]["decision"] == "deny", str(rows))
        if sni:
            check("%s: the audit row names the SNI" % name, rows and rows[-1]["sni"] == sni, str(rows[-1:]))
    check("the canary upstream never received a byte", canary.bytes == 0, "%d bytes" % canary.bytes)
    check("egress stops cleanly", egress.stop() == 0)
    canary.close()
    tls.close()


if __name__ == "__main__":
    harness.main(run)
