"""TLS inspection end to end (issue 6): real clients (curl, python3 urllib
and ssl) through an `inspect: true` rule to real TLS upstreams on loopback
whose certificates come from a test CA made here with openssl and given to
egress with --upstream-ca.

Proves: requests inside an inspected tunnel are decided on method and path
and logged one by one (kind=inspected); Host must name the tunnel's host;
upstream certificates are verified (expired and wrong-name → 502
upstream-cert-invalid); a worker without the egress CA fails cleanly and the
audit says client-rejected-certificate; a tunnel that is not inspected stays
end to end; the minted certificate verifies with `openssl verify`, carries
the host's SAN and is reused from the cache (metric)."""
import os
import re
import ssl
import subprocess
import sys
import urllib.request

import harness
from harness import Egress, tunnel

# allowed.test is an allow rule (as .huggingface.co would be), so a path
# outside `paths` is refused with path-not-allowed; the internal cidr only
# accepts the loopback address the test names resolve to.
POLICY = """\
version: 1
mode: self-hosted
allow:
  - host: allowed.test
    ports: any
    inspect: true
    paths: [/api/models/]
internal:
  - host: plain.test
    ports: any
  - cidr: 127.0.0.1/32
    ports: any
"""


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_upstream_ca(directory):
    """A CA for the upstreams (what an enterprise's internal CA would be)."""
    key, crt = os.path.join(directory, "upstream-ca.key"), os.path.join(directory, "upstream-ca.crt")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
            "-subj", "/CN=egress test upstream CA", "-keyout", key, "-out", crt)
    return key, crt


def issue(directory, name, ca, sans, days):
    """DIR/NAME/upstream.{crt,key} signed by `ca`, valid `days` (negative:
    already expired), for the DNS names `sans`."""
    out = os.path.join(directory, name)
    os.makedirs(out)
    key, csr, crt = (os.path.join(out, f) for f in ("upstream.key", "upstream.csr", "upstream.crt"))
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=" + sans[0],
            "-keyout", key, "-out", csr)
    ext = os.path.join(out, "ext.cnf")
    with open(ext, "w") as f:
        f.write("subjectAltName=" + ",".join("DNS:" + n for n in sans) + "\n")
    openssl("x509", "-req", "-in", csr, "-CA", ca[1], "-CAkey", ca[0], "-days", str(days), "-extfile", ext,
            "-out", crt)
    return out


def https_over(proxy_address, authority, context, server_hostname, request):
    """Sends `request` over TLS inside a CONNECT tunnel; returns
    (peer certificate DER, response bytes up to the close)."""
    s, status = tunnel(proxy_address, authority, timeout=10)
    if not status.startswith("HTTP/1.1 200"):
        s.close()
        raise AssertionError("CONNECT refused: " + status)
    with context.wrap_socket(s, server_hostname=server_hostname) as t:
        der = t.getpeercert(binary_form=True)
        t.sendall(request)
        data = b""
        while True:
            try:
                chunk = t.recv(65536)
            except (ssl.SSLError, ConnectionResetError):
                break
            if not chunk:
                break
            data += chunk
    return der, data


def metric(admin, name):
    with urllib.request.urlopen("http://%s/metrics" % admin, timeout=5) as r:
        text = r.read().decode()
    m = re.search(r"^egress_%s (\d+)" % re.escape(name), text, re.MULTILINE)
    return int(m.group(1)) if m else -1


def run(workdir, results):
    check = results.check
    certs = os.path.join(workdir, "certs")
    out = subprocess.run([harness.EGRESS, "ca", "init", "--out", certs], capture_output=True, text=True, timeout=30)
    check("egress ca init succeeds", out.returncode == 0, out.stderr)
    egress_ca = os.path.join(certs, "ca.crt")

    upstream_ca = make_upstream_ca(workdir)
    good = harness.Upstream(tls_dir=issue(workdir, "good", upstream_ca, ["allowed.test", "plain.test"], 2))
    expired = harness.Upstream(tls_dir=issue(workdir, "expired", upstream_ca, ["allowed.test"], -1))
    wrong = harness.Upstream(tls_dir=issue(workdir, "wrong", upstream_ca, ["other.test"], 2))
    admin = "127.0.0.1:%d" % harness.free_port()
    egress = Egress(workdir, POLICY, hosts={"allowed.test": "127.0.0.1", "plain.test": "127.0.0.1"},
                    extra_args=("--ca-cert", egress_ca, "--ca-key", os.path.join(certs, "ca.key"),
                                "--upstream-ca", upstream_ca[1], "--admin-listen", admin))
    try:
        run_checks(check, workdir, egress, admin, egress_ca, upstream_ca, good, expired, wrong)
        check("a root CA (egress ca init) is not sent: the worker gets the leaf alone",
              served_chain(egress, good.port, egress_ca) == 1)
    finally:
        code = egress.stop()
        check("egress stops cleanly (exit 0)", code == 0, "%s\n%s" % (code, egress.log_text()[-3000:]))
    try:
        check_intermediate_ca(check, workdir, upstream_ca, good)
    finally:
        for upstream in (good, expired, wrong):
            upstream.close()


def served_chain(egress, port, trusted):
    """How many certificates egress sends in an inspected handshake
    (openssl s_client through the CONNECT proxy); -1 when it fails."""
    out = subprocess.run(["openssl", "s_client", "-proxy", egress.address, "-connect", "allowed.test:%d" % port,
                          "-servername", "allowed.test", "-CAfile", trusted, "-verify_return_error", "-showcerts"],
                         input="", capture_output=True, text=True, timeout=30)
    if out.returncode != 0 or "Verify return code: 0 (ok)" not in out.stdout:
        return -1
    return out.stdout.count("-----BEGIN CERTIFICATE-----")


def check_intermediate_ca(check, workdir, upstream_ca, good):
    """An enterprise's intermediate CA as the inspection CA: it goes out as
    the chain, so workers that trust only the root validate the leaf."""
    d = os.path.join(workdir, "intermediate")
    os.makedirs(d)
    root_key, root_crt = os.path.join(d, "root.key"), os.path.join(d, "root.crt")
    key, csr, crt = (os.path.join(d, f) for f in ("ca.key", "ca.csr", "ca.crt"))
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
            "-subj", "/CN=corp root", "-keyout", root_key, "-out", root_crt)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=corp inspection",
            "-keyout", key, "-out", csr)
    ext = os.path.join(d, "ext.cnf")
    with open(ext, "w") as f:
        f.write("basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n"
                "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    openssl("x509", "-req", "-in", csr, "-CA", root_crt, "-CAkey", root_key, "-days", "2", "-extfile", ext,
            "-out", crt)
    os.chmod(key, 0o600)
    egress = Egress(d, POLICY, hosts={"allowed.test": "127.0.0.1", "plain.test": "127.0.0.1"},
                    extra_args=("--ca-cert", crt, "--ca-key", key, "--upstream-ca", upstream_ca[1]))
    try:
        status, head, body, err = harness.curl(egress.proxy, "https://allowed.test:%d/api/models/i" % good.port,
                                               "--cacert", root_crt)
        check("intermediate inspection CA: curl trusting only the root fetches through it",
              status == 200 and "hello from upstream /api/models/i" in body, "%s %s" % (status, err))
        check("intermediate inspection CA: the worker gets the leaf and the intermediate",
              served_chain(egress, good.port, root_crt) == 2)
    finally:
        code = egress.stop()
        check("the egress with the intermediate CA stops cleanly (exit 0)", code == 0, egress.log_text()[-2000:])


def run_checks(check, workdir, egress, admin, egress_ca, upstream_ca, good, expired, wrong):
    url = "https://allowed.test:%d" % good.port

    # curl trusting the egress CA: allowed path, refused path.
    status, head, body, err = harness.curl(egress.proxy, url + "/api/models/x", "--cacert", egress_ca)
    check("curl --cacert: /api/models/x through the inspected tunnel", status == 200 and
          "hello from upstream /api/models/x" in body, "%s %s %s" % (status, body[:200], err))
    check("the response carries the inspected request's id", harness.header(head, "X-Egress-Request-Id") is not None)
    seen = [r for r in good.seen if r["path"] == "/api/models/x"]
    check("the upstream got Host allowed.test:PORT and a Via", seen and
          seen[0]["headers"].get("host") == "allowed.test:%d" % good.port and "via" in seen[0]["headers"], str(seen))

    status, head, body, err = harness.curl(egress.proxy, url + "/admin", "--cacert", egress_ca)
    check("curl: /admin on the same host is refused 403 path-not-allowed",
          status == 403 and harness.header(head, "X-Egress-Reason") == "path-not-allowed", "%s %s" % (status, err))
    check("/admin never reached the upstream", not any(r["path"] == "/admin" for r in good.seen))

    # python3 urllib with SSL_CERT_FILE (how a worker image trusts the CA).
    script = ("import urllib.request,sys\n"
              "r = urllib.request.urlopen(sys.argv[1], timeout=15)\n"
              "print(r.status, r.read().decode())\n")
    env = dict(os.environ, SSL_CERT_FILE=egress_ca, https_proxy=egress.proxy, HTTPS_PROXY=egress.proxy,
               no_proxy="", NO_PROXY="")
    out = subprocess.run([sys.executable, "-c", script, url + "/api/models/y?rev=2"], env=env, capture_output=True,
                         text=True, timeout=30)
    check("python urllib with SSL_CERT_FILE fetches through the inspected tunnel",
          out.returncode == 0 and out.stdout.startswith("200 hello from upstream /api/models/y?rev=2"),
          out.stdout + out.stderr[-500:])

    rows = egress.wait_for_events("kind = 'inspected' AND event = 'close'", count=3)
    by_path = {r["path"]: r for r in rows}
    check("audit: one inspected close row per request, with the paths",
          {"/api/models/x", "/admin", "/api/models/y"} <= set(by_path), str(sorted(by_path)))
    x = by_path.get("/api/models/x", {})
    check("audit: /api/models/x allowed, GET, status 200, bytes counted",
          x.get("decision") == "allow" and x.get("method") == "GET" and x.get("status") == 200 and
          (x.get("bytes_down") or 0) > 0 and x.get("sni") == "allowed.test", str(x))
    a = by_path.get("/admin", {})
    check("audit: /admin denied path-not-allowed with status 403",
          a.get("decision") == "deny" and a.get("reason") == "path-not-allowed" and a.get("status") == 403, str(a))
    decisions = egress.events("kind = 'inspected' AND event = 'decision' AND path = '/api/models/x'")
    check("audit: the inspected request has its own decision event", len(decisions) == 1 and
          decisions[0]["request_id"] == x.get("request_id"), str(decisions))
    tunnels = egress.events("kind = 'connect' AND host = 'allowed.test' AND event = 'decision'")
    check("audit: the tunnel itself is logged as a connect decision", len(tunnels) >= 3, str(len(tunnels)))

    # Host must name the tunnel's host (invariant 4 inside the tunnel).
    trusting = ssl.create_default_context(cafile=egress_ca)
    _, data = https_over(egress.address, "allowed.test:%d" % good.port, trusting, "allowed.test",
                         b"GET /api/models/z HTTP/1.1\r\nHost: plain.test\r\nConnection: close\r\n\r\n")
    check("a request whose Host is another host gets 421 host-mismatch",
          data.startswith(b"HTTP/1.1 421") and b"X-Egress-Reason: host-mismatch" in data, data[:300])
    check("the mismatched request never reached the upstream", not any(r["path"] == "/api/models/z" for r in good.seen))

    # Upstream certificates are verified: expired, wrong name.
    for name, upstream, words in (("expired", expired, "expired"), ("wrong-name", wrong, "hostname mismatch")):
        status, head, body, err = harness.curl(egress.proxy, "https://allowed.test:%d/api/models/x" % upstream.port,
                                               "--cacert", egress_ca)
        check("%s upstream certificate: 502 upstream-cert-invalid with the error in the body" % name,
              status == 502 and harness.header(head, "X-Egress-Reason") == "upstream-cert-invalid" and words in body,
              "%s %s %s" % (status, body[:400], err))
        check("%s upstream: the request never reached it" % name, not upstream.seen)
        rows = egress.wait_for_events("kind = 'inspected' AND event = 'close' AND port = ? AND error LIKE "
                                      "'upstream-cert-invalid%%'", (upstream.port,))
        check("%s upstream: the audit close row says upstream-cert-invalid" % name,
              len(rows) == 1 and rows[0]["status"] == 502 and words in rows[0]["error"], str(rows))

    # A worker that does not trust the egress CA fails the handshake cleanly.
    before = len(egress.events("error LIKE 'client-rejected-certificate%'"))
    status, head, body, err = harness.curl(egress.proxy, url + "/api/models/x", "--cacert", upstream_ca[1])
    check("curl without the egress CA fails certificate verification", status == 0 and
          ("certificate" in err.lower() or "issuer" in err.lower()), err)
    try:
        https_over(egress.address, "allowed.test:%d" % good.port, ssl.create_default_context(cafile=upstream_ca[1]),
                   "allowed.test", b"GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        python_failed = False
    except ssl.SSLCertVerificationError:
        python_failed = True
    check("python ssl without the egress CA fails certificate verification", python_failed)
    rows = egress.wait_for_events("kind = 'connect' AND event = 'close' AND error LIKE 'client-rejected-certificate%'",
                                  count=before + 2)
    check("audit: the tunnels' close rows say client-rejected-certificate", len(rows) == before + 2,
          str([r["error"] for r in egress.events("kind = 'connect' AND event = 'close'")]))

    # A host that is not inspected: end to end, the upstream's own certificate.
    with open(os.path.join(workdir, "good", "upstream.crt")) as f:
        upstream_der = ssl.PEM_cert_to_DER_cert(f.read())
    der, data = https_over(egress.address, "plain.test:%d" % good.port, ssl.create_default_context(cafile=upstream_ca[1]),
                           "plain.test", b"GET /e2e HTTP/1.1\r\nHost: plain.test\r\nConnection: close\r\n\r\n")
    check("non-inspected tunnel: the worker sees the upstream's own certificate", der == upstream_der)
    check("non-inspected tunnel: the request went through", b"hello from upstream /e2e" in data, data[:200])
    check("non-inspected tunnel: no inspected rows for plain.test",
          not egress.events("kind = 'inspected' AND host = 'plain.test'"))

    # The minted certificate: openssl verify against the CA, SAN, cache reuse.
    hits_before, misses_before = metric(admin, "tls_cert_cache_hits_total"), metric(admin, "tls_cert_cache_misses_total")
    ders = []
    for _ in range(3):
        der, data = https_over(egress.address, "allowed.test:%d" % good.port, trusting, "allowed.test",
                               b"GET /api/models/c HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n")
        ders.append(der)
    hits, misses = metric(admin, "tls_cert_cache_hits_total"), metric(admin, "tls_cert_cache_misses_total")
    # Each of serve's 2 threads has its own cache, and every connection so
    # far was for allowed.test: at most one miss per thread, ever.
    check("certificate cache: at most one mint per thread for the host", 1 <= misses <= 2, "misses=%d" % misses)
    check("certificate cache: the later connections were cache hits", hits - hits_before >= 3 - (2 - misses_before),
          "hits %d -> %d, misses %d -> %d" % (hits_before, hits, misses_before, misses))
    check("certificate cache: the same certificate is served again", ders[1] == ders[0] or ders[2] in ders[:2])
    leaf = os.path.join(workdir, "leaf.pem")
    with open(leaf, "w") as f:
        f.write(ssl.DER_cert_to_PEM_cert(ders[0]))
    out = subprocess.run(["openssl", "verify", "-CAfile", egress_ca, "-purpose", "sslserver", "-verify_hostname",
                          "allowed.test", leaf], capture_output=True, text=True)
    check("openssl verify: the minted certificate chains to the egress CA for allowed.test",
          out.returncode == 0 and out.stdout.strip().endswith("OK"), out.stdout + out.stderr)
    out = subprocess.run(["openssl", "x509", "-in", leaf, "-noout", "-ext", "subjectAltName", "-dates"],
                         capture_output=True, text=True)
    check("the minted certificate carries the SAN DNS:allowed.test", "DNS:allowed.test" in out.stdout, out.stdout)

    log = egress.log_text()
    check("the CA key never appears in the log", "PRIVATE KEY" not in log)


if __name__ == "__main__":
    harness.main(run)
