"""The admin listener (--admin-listen): /metrics after known traffic shows
exact counters; /healthz is 200; /readyz is 200 when ready, 503 after a
DNS lookup fails (the configured server is a dead loopback port) and after
the audit database cannot be written (a small tmpfs this test mounts and
fills), and 200 again once each is fixed. Needs root for the mount."""
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request

import harness
from harness import Egress, Upstream, curl, free_port, header

POLICY = harness.ALLOWED_TEST_POLICY + """\
  - host: unresolvable.test
    ports: any
"""


def get(admin, path, method="GET"):
    """(status, body) of an admin request; no proxy."""
    request = urllib.request.Request("http://%s%s" % (admin, path), method=method)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.read().decode(), response.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), e.headers


def samples(text):
    """{'name{labels}': value} from the Prometheus text format."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def requests_key(kind, verdict, reason, mode="self-hosted"):
    return 'egress_proxy_requests_total{mode="%s",kind="%s",verdict="%s",reason="%s"}' % (mode, kind, verdict, reason)


def origin_form_request(proxy_address):
    host, port = proxy_address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n")
        data = harness.read_to_end(s)
    return int(data.split()[1])



def wait_ready(admin, want, timeout=5):
    deadline = time.time() + timeout
    while True:
        status, body, _ = get(admin, "/readyz")
        if status == want or time.time() > deadline:
            return status, body
        time.sleep(0.05)


def check_traffic_counters(check, egress, admin, plain, tls, cert):
    url = "http://allowed.test:%d/" % plain.port
    statuses = [curl(egress.proxy, url + "ok-%d" % i)[0] for i in range(3)]
    check("known traffic: 3 allowed requests", statuses == [200] * 3, str(statuses))
    status, head, _, _ = curl(egress.proxy, "http://denied.test:%d/" % plain.port)
    check("known traffic: denied.test is refused not-allowed",
          status == 403 and header(head, "X-Egress-Reason") == "not-allowed", head)
    status = origin_form_request(egress.address)
    check("known traffic: an origin-form request is refused", status == 400, str(status))
    status, _, body, err = curl(egress.proxy, "https://allowed.test:%d/secure" % tls.port, "--cacert", cert)
    check("known traffic: one CONNECT tunnel", status == 200, "%d %s %s" % (status, body[:100], err))

    # Close events are counted when each attempt closes: poll until all six are in.
    deadline = time.time() + 5
    while True:
        status, text, headers = get(admin, "/metrics")
        values = samples(text)
        total = sum(v for k, v in values.items() if k.startswith("egress_proxy_requests_total{"))
        if total >= 6 or time.time() > deadline:
            break
        time.sleep(0.05)
    check("/metrics answers 200 in the 0.0.4 text format",
          status == 200 and "version=0.0.4" in headers.get("Content-Type", ""), str(headers.items()))
    check("/metrics has HELP and TYPE lines",
          "# HELP egress_proxy_requests_total " in text and "# TYPE egress_proxy_requests_total counter" in text,
          text[:300])
    requests = {k: v for k, v in values.items() if k.startswith("egress_proxy_requests_total{")}
    want = {
        requests_key("http", "allow", "internal-rule"): 3,
        requests_key("http", "deny", "not-allowed"): 1,
        requests_key("http", "deny", "origin-form"): 1,
        requests_key("connect", "allow", "internal-rule"): 1,
    }
    check("requests by mode, kind, verdict and reason are exact", requests == want, str(requests))
    roles = {k: v for k, v in values.items() if k.startswith("egress_proxy_requests_by_role_total{")}
    check("requests by role (no role) and verdict are exact",
          roles == {'egress_proxy_requests_by_role_total{role="",verdict="allow"}': 4,
                    'egress_proxy_requests_by_role_total{role="",verdict="deny"}': 2}, str(roles))
    check("no failures after a decision", not any(k.startswith("egress_proxy_failures_total") for k in values))
    check("no tunnel is active any more", values.get("egress_proxy_active_tunnels") == 0, str(values))
    check("bytes down: at least the three bodies and the tunnel",
          values.get("egress_proxy_bytes_down_total", 0) > 3 * len("hello from upstream /ok-0"), str(values))
    check("bytes up: the TLS handshake went up the tunnel", values.get("egress_proxy_bytes_up_total", 0) > 200,
          str(values))
    lookups = values.get("egress_dns_cache_hits_total", -1) + values.get("egress_dns_cache_misses_total", -1)
    check("DNS: one lookup per allowed attempt (4), as cache hits plus misses", lookups == 4, str(values))
    check("DNS: every lookup past the cache was answered ok",
          values.get('egress_dns_lookups_total{status="ok"}') == values.get("egress_dns_cache_misses_total")
          and values.get("egress_dns_lookup_duration_seconds_count") == values.get("egress_dns_cache_misses_total"),
          str(values))
    check("policy loaded, no reloads", values.get("egress_policy_loaded") == 1
          and values.get('egress_policy_reloads_total{result="success"}') == 0
          and values.get('egress_policy_reloads_total{result="failure"}') == 0, str(values))
    check("audit healthy, events committed, no failures",
          values.get("egress_audit_healthy") == 1 and values.get("egress_audit_committed_events_total", 0) >= 6
          and values.get("egress_audit_commit_failures_total") == 0, str(values))


def check_endpoints(check, admin):
    status, body, _ = get(admin, "/healthz")
    check("/healthz is 200 ok", status == 200 and body == "ok\n", "%d %r" % (status, body))
    status, body, _ = get(admin, "/readyz")
    check("/readyz is 200 when ready", status == 200 and body == "ready\n", "%d %r" % (status, body))
    status, body, headers = get(admin, "/metrics", method="HEAD")
    check("HEAD /metrics: 200, no body", status == 200 and body == "", "%d %r" % (status, body))
    status, _, _ = get(admin, "/nothing")
    check("anything else is 404", status == 404, str(status))
    status, _, _ = get(admin, "/metrics", method="POST")
    check("POST is 405", status == 405, str(status))


def check_dns_readiness(check, egress, admin, plain):
    status, head, _, _ = curl(egress.proxy, "http://unresolvable.test:%d/" % plain.port)
    check("a name the dead DNS server cannot answer is refused", status in (502, 504), head)
    status, body = wait_ready(admin, 503)
    check("/readyz turns 503 after a DNS lookup fails", status == 503 and "DNS" in body, "%d %r" % (status, body))
    status, _, _, _ = curl(egress.proxy, "http://allowed.test:%d/again" % plain.port)
    status, body = wait_ready(admin, 200)
    check("/readyz is 200 again once a lookup is answered", status == 200, "%d %r" % (status, body))


def check_audit_readiness(check, egress, admin, plain, mnt):
    url = "http://allowed.test:%d/" % plain.port
    filler = harness.fill_filesystem(mnt)
    try:
        status, head, _, _ = curl(egress.proxy, url + "full")
        check("disk full: the request is refused audit-unavailable",
              status == 503 and header(head, "X-Egress-Reason") == "audit-unavailable", head)
        status, body = wait_ready(admin, 503)
        check("disk full: /readyz is 503 and says why", status == 503 and "audit" in body, "%d %r" % (status, body))
        status, _, _ = get(admin, "/healthz")
        check("disk full: /healthz stays 200 (the process is up)", status == 200, str(status))
        values = samples(get(admin, "/metrics")[1])
        check("disk full: metrics show the failure",
              values.get("egress_audit_healthy") == 0 and values.get("egress_audit_dropped_events_total", 0) >= 1
              and values.get('egress_proxy_failures_total{reason="audit-unavailable"}') == 1, str(values))
    finally:
        os.remove(filler)
    # No request needed: an idle unhealthy store probes the disk every second
    # (a load balancer that stops sending traffic while /readyz says 503
    # must still see egress come back).
    status, body = wait_ready(admin, 200)
    check("space freed: /readyz is 200 again without any request", status == 200 and body == "ready\n",
          "%d %r" % (status, body))
    status, _, _, _ = curl(egress.proxy, url + "after")
    check("space freed: serving resumes", status == 200, str(status))
    values = samples(get(admin, "/metrics")[1])
    check("space freed: audit healthy again", values.get("egress_audit_healthy") == 1, str(values))


def check_admin_address_in_use(check, egress, admin):
    home = os.path.join(egress.workdir, "second")
    os.makedirs(home)
    out = subprocess.run([harness.EGRESS, "serve", "--config", egress.config, "--policy", egress.policy,
                          "--audit-db", os.path.join(home, "audit.db"), "--listen", "127.0.0.1:0",
                          "--admin-listen", admin], capture_output=True, text=True, timeout=30)
    check("an explicit admin address in use: serve refuses to start",
          out.returncode != 0 and "admin listener cannot listen" in out.stderr, out.stderr[-300:])


def run(workdir, results):
    check = results.check
    if os.geteuid() != 0:
        check("running as root (needed to mount a tmpfs)", False)
        return
    cert = harness.make_upstream_cert(workdir)
    plain = Upstream()
    tls = Upstream(tls_dir=workdir)
    egress = None
    with harness.small_audit_disk(workdir) as (home, mnt, _):  # the audit database on a tmpfs
        try:
            admin = "127.0.0.1:%d" % free_port()
            egress = Egress(home, POLICY, hosts={"allowed.test": "127.0.0.1"}, extra_args=("--admin-listen", admin))
            check("the log names the admin address", "admin listener on http://" + admin in egress.log_text(),
                  egress.log_text()[-300:])
            check_traffic_counters(check, egress, admin, plain, tls, cert)
            check_endpoints(check, admin)
            check_dns_readiness(check, egress, admin, plain)
            check_audit_readiness(check, egress, admin, plain, mnt)
            check_admin_address_in_use(check, egress, admin)
            check("egress stops cleanly", egress.stop() == 0)
        finally:
            if egress is not None:
                egress.stop()
            plain.close()
            tls.close()


if __name__ == "__main__":
    harness.main(run)
