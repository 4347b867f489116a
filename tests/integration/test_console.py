"""The web console (serve --console-listen), end to end in headless
Chromium driven over the DevTools protocol (cdp.py). Two roles (127.0.0.2
alpha, 127.0.0.3 beta) make allowed and refused requests through egress;
the Live page must show a refusal with its reason within 2 s and filter by
role; the Summary totals must equal `egress audit stats`; the rule the
Refused → rule page offers must make `egress check` allow the destination.
Without a session every page and the event stream answer 401, five wrong
passwords rate-limit the source, and the cookie flags and security headers
are checked. Attacker-chosen host, path and ALPN values with <script>,
"><img onerror> and javascript: must show as text with no script run.
Screenshots of each page go to the build directory's console-screenshots/,
or to $EGRESS_SCREENSHOTS (docs/images/ to refresh docs/console.md's)."""
import hashlib
import http.client
import json
import os
import re
import subprocess
import time

import cdp
import harness
from harness import Egress, Upstream, curl

SECRET = "console-test-secret-5a1f"
def screenshot_path(name):
    """Where the test writes a page's screenshot (harness.EGRESS is set once the test runs)."""
    return os.path.join(os.environ.get("EGRESS_SCREENSHOTS") or
                        os.path.join(os.path.dirname(harness.EGRESS), "console-screenshots"), name)

POLICY = """\
version: 1
mode: self-hosted
internal:
  - host: allowed.test
    ports: any
roles:
  alpha:
    sources: [127.0.0.2/32]
    internal:
      - host: hf.test
        ports: any
  beta:
    sources: [127.0.0.3/32]
    internal:
      - host: gh.test
        ports: any
"""
NAMES = ["allowed.test", "hf.test", "gh.test", "refused-alpha.test", "refused-beta.test"]
MARKER = "window.__pwned"
ATTACK_TARGET = ('http://<script>window.__pwned=1</script>/"><img/src=x/onerror=window.__pwned=2>'
                 '/javascript:window.__pwned=3')


def request(address, method, path, body=None, headers=None, source="127.0.0.1"):
    host, port = address.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=10, source_address=(source, 0))
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, r.headers, data


def raw(proxy_address, data):
    import socket
    host, port = proxy_address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(data)
        return harness.read_to_end(s)


def console_address(egress):
    deadline = time.time() + 5
    while time.time() < deadline:
        m = re.search(r"console on http://([0-9.]+:[0-9]+)/", egress.log_text())
        if m:
            return m.group(1)
        time.sleep(0.05)
    raise RuntimeError("no console line in the log: " + egress.log_text())


def check_unauthenticated(check, console):
    for path in ["/", "/live", "/summary", "/rule", "/health", "/event?request_id=x", "/api/events",
                 "/api/summary", "/api/health", "/api/rule?host=a&port=1", "/assets/live.js"]:
        status, _, _ = request(console, "GET", path)
        check("without a session %s answers 401" % path, status == 401, str(status))
    status, headers, body = request(console, "GET", "/login")
    csp = headers.get("Content-Security-Policy", "")
    check("the login page is served without a session", status == 200 and b'name="secret"' in body)
    check("CSP: default-src 'self', no inline script or style, no framing",
          "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
          and "frame-ancestors 'none'" in csp, csp)
    check("nosniff, X-Frame-Options DENY, Referrer-Policy same-origin",
          headers.get("X-Content-Type-Options") == "nosniff" and headers.get("X-Frame-Options") == "DENY"
          and headers.get("Referrer-Policy") == "same-origin")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    status, _, _ = request(console, "POST", "/login", "secret=" + SECRET,
                           dict(form, Origin="http://evil.example", **{"Sec-Fetch-Site": "cross-site"}))
    check("a cross-site login POST is refused (403)", status == 403, str(status))
    status, _, _ = request(console, "GET", "/logout")
    check("GET /logout changes nothing (405)", status == 405, str(status))
    codes = [request(console, "POST", "/login", "secret=wrong%d" % i, form, source="127.0.0.5")[0] for i in range(5)]
    status, headers, _ = request(console, "POST", "/login", "secret=" + SECRET, form, source="127.0.0.5")
    check("five wrong passwords answer 401", codes == [401] * 5, str(codes))
    check("then the source is rate-limited, even with the right password (429, Retry-After)",
          status == 429 and headers.get("Retry-After"), str(status))
    status, headers, _ = request(console, "POST", "/login", "secret=" + SECRET, form)
    cookie = headers.get("Set-Cookie", "")
    check("login sets an HttpOnly SameSite=Strict cookie (not Secure over plain HTTP)",
          status == 303 and "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie, cookie)
    _, headers, _ = request(console, "POST", "/login", "secret=" + SECRET, dict(form, **{"X-Forwarded-Proto": "https"}))
    check("behind a TLS ingress the cookie is Secure", "; Secure" in headers.get("Set-Cookie", ""))
    status, _, body = request(console, "GET", "/api/health", headers={"Authorization": "Bearer " + SECRET})
    check("a bearer secret opens the API", status == 200 and b'"chain"' in body, str(status))
    check("no page or API response carries the secret", SECRET.encode() not in body)


def traffic(egress, up):
    for source, host in [("127.0.0.2", "hf.test"), ("127.0.0.3", "gh.test"), ("127.0.0.3", "refused-beta.test"),
                         ("127.0.0.2", "allowed.test"), ("127.0.0.3", "allowed.test")]:
        curl(egress.proxy, "http://%s:%d/ok" % (host, up.port), "--interface", source)


def run(workdir, results):
    check = results.check
    started = time.time()
    up = Upstream()
    config = "console:\n  listen: 127.0.0.1:0\n  secret_hashes: [sha256:%s]\n" % hashlib.sha256(SECRET.encode()).hexdigest()
    egress = Egress(workdir, POLICY, hosts={n: "127.0.0.1" for n in NAMES}, extra_config=config)
    console = console_address(egress)
    base = "http://" + console
    check_unauthenticated(check, console)

    browser = cdp.Browser()
    try:
        browser.navigate(base + "/login")
        browser.evaluate("document.getElementById('secret').value = %s; document.querySelector('form').submit()"
                         % json.dumps(SECRET))
        check("the login form leads to the Live page", browser.wait_for("location.pathname === '/live'"))
        check("the session cookie is HttpOnly (not readable by page script)",
              browser.evaluate("document.cookie") == "")
        check("the Live page's stream is open", browser.wait_for("document.getElementById('sampling').textContent.startsWith('showing')"))
        traffic(egress, up)
        sent = time.time()
        curl(egress.proxy, "http://refused-alpha.test:%d/secret-path" % up.port, "--interface", "127.0.0.2")
        found = browser.wait_for("[...document.querySelectorAll('#rows tr')].some(tr => tr.querySelector('.host')"
                                 ".textContent.startsWith('refused-alpha.test') && tr.querySelector('.reason').textContent === 'not-allowed')",
                                 timeout=5, interval=0.02)
        elapsed = time.time() - sent
        check("Live shows the refused host with its reason within 2 s (%.2f s)" % elapsed, found and elapsed < 2.0)
        browser.wait_for("document.querySelectorAll('#rows tr').length >= 6", timeout=3)
        browser.evaluate("{ const f = document.getElementById('f-role'); f.value = 'alpha'; f.dispatchEvent(new Event('input')); }")
        visible = browser.evaluate("[...document.querySelectorAll('#rows tr')].filter(tr => !tr.hidden).map(tr => tr.dataset.role)")
        check("filtering by role alpha hides beta's rows", visible and set(visible) == {"alpha"}, str(visible))
        check("screenshot console-live.png taken", browser.screenshot(screenshot_path("console-live.png")) > 1000)
        browser.evaluate("{ const f = document.getElementById('f-role'); f.value = ''; f.dispatchEvent(new Event('input')); }")

        # Attacker-chosen values travel through egress into the audit log.
        raw(egress.address, ("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % ATTACK_TARGET).encode())
        curl(egress.proxy, 'http://refused-beta.test:%d/"><img/src=x/onerror=window.__pwned=4>' % up.port,
             "--interface", "127.0.0.3", "--path-as-is")
        # A header value: the TLS ClientHello's ALPN list, recorded as offered,
        # in a tunnel whose SNI does not name the CONNECT host (refused).
        import ssl
        sock, status_line = harness.tunnel(egress.address, "allowed.test:%d" % up.port)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(['<script>window.__pwned=5</script>', '"><img/src=x/onerror=window.__pwned=6>',
                                    'javascript:window.__pwned=7'])
        try:
            context.wrap_socket(sock, server_hostname="other.test").close()
        except (ssl.SSLError, OSError):
            pass
        sock.close()
        rows = egress.wait_for_events("host LIKE '%<script>%' OR path LIKE '%onerror%' OR alpn LIKE '%<script>%'", count=3)
        check("the ALPN header values reached the audit log", any("<script>" in (r["alpn"] or "") for r in rows),
              str([(r["host"], r["alpn"], r["reason"]) for r in rows]))
        alpn_row = next((r for r in rows if "<script>" in (r["alpn"] or "")), None)
        check("the attack values reached the audit log", len(rows) >= 2, str([(r["host"], r["path"]) for r in rows]))
        # Wait for both rows (wait_for returns at the first truthy value, and
        # the rows arrive one by one), then report how many there are.
        attack_cells = ("[...document.querySelectorAll('#rows td')].filter(td => td.textContent.includes('<script>') "
                        "|| td.textContent.includes('onerror=')).length")
        browser.wait_for(attack_cells + " >= 2", timeout=3)
        shown = browser.evaluate(attack_cells)
        check("Live shows <script> and onerror values as text", shown and shown >= 2, str(shown))
        check("no element came from worker data (no img/script in the rows)",
              browser.evaluate("document.querySelectorAll('#rows img, #rows script, #rows iframe').length") == 0)
        check("no attacker script ran (marker unset)", browser.evaluate("typeof " + MARKER) == "undefined")
        request_id = rows[0]["request_id"]
        browser.navigate(base + "/event?request_id=" + request_id)
        details = browser.wait_for("document.querySelector('dl.event') && document.getElementById('app').textContent")
        check("the details page shows the attack host and its reason as text",
              details and "<script>" in details and "bad-request" in details, "%s %s" % (request_id, (details or browser.evaluate("document.body.innerText"))[:300]))
        check("no attacker script ran on the details page", browser.evaluate("typeof " + MARKER) == "undefined")
        if alpn_row:
            browser.navigate(base + "/event?request_id=" + alpn_row["request_id"])
            details = browser.wait_for("document.querySelector('dl.event') && document.getElementById('app').textContent")
            check("the details page shows the ALPN values as text", details and "<script>window.__pwned=5" in details
                  and "javascript:window.__pwned=7" in details, (details or "")[:300])
            check("no element came from the ALPN values",
                  browser.evaluate("document.querySelectorAll('#app img, #app script').length") == 0)
            check("no attacker script ran on the ALPN details page", browser.evaluate("typeof " + MARKER) == "undefined")

        # Sampling: a burst faster than the page renders.
        browser.navigate(base + "/live")
        browser.wait_for("document.getElementById('sampling').textContent.startsWith('showing')")
        curl(egress.proxy, "http://refused-alpha.test:%d/burst/[1-400]" % up.port, "--interface", "127.0.0.2", timeout=60)
        sampling = browser.wait_for("(t => t.startsWith('sampling') && t)(document.getElementById('sampling').textContent)", timeout=3)
        check("a burst makes the Live page say it samples", sampling, browser.evaluate("document.getElementById('sampling').textContent"))
        count = browser.evaluate("document.querySelectorAll('#rows tr').length")
        check("and it renders at most its row cap (%s rows)" % count, count is not None and count <= 500)

        # Summary totals against `egress audit stats`.
        # Every close row of the burst committed (they linger up to 2 ms for
        # company), so the page and `egress audit stats` read the same log.
        n = len(egress.events())
        for _ in range(20):
            time.sleep(0.1)
            if len(egress.events()) == n:
                break
            n = len(egress.events())
        browser.navigate(base + "/summary?window=1h")
        totals = browser.wait_for("(n => n.length && n.map(e => [e.dataset.role, +e.dataset.requests, +e.dataset.refused]))"
                                  "([...document.querySelectorAll('.totals')])")
        check("screenshot console-summary.png taken", browser.screenshot(screenshot_path("console-summary.png")) > 1000)
        for role in ["alpha", "beta"]:
            out = subprocess.run([harness.EGRESS, "audit", "stats", "--db", egress.db, "--since", "1h", "--role", role,
                                  "--format", "json"], capture_output=True, text=True, timeout=30)
            by_decision = {}
            for line in out.stdout.splitlines():
                row = json.loads(line)
                if row.get("section") == "requests by decision" or ("decision" in row and "requests" in row and len(row) <= 3):
                    by_decision[row["decision"]] = row["requests"]
            want = (sum(by_decision.values()), by_decision.get("deny", 0))
            got = next(((t[1], t[2]) for t in totals or [] if t[0] == role), None)
            check("Summary totals for %s match egress audit stats %s" % (role, want), got == want and want[0] > 0,
                  "%s %s" % (got, out.stdout[:300]))

        # Refused -> rule.
        browser.navigate(base + "/rule?role=alpha&host=refused-alpha.test&port=%d&kind=http" % up.port)
        candidate = browser.wait_for("(e => e && e.textContent)(document.getElementById('candidate'))")
        diff = browser.evaluate("(e => e && e.textContent)(document.getElementById('diff'))")
        check("screenshot console-rule.png taken", browser.screenshot(screenshot_path("console-rule.png")) > 1000)
        check("the rule page shows the diff deny -> allow for the refused kind (http)",
              diff and "(http, role alpha): deny" in diff and "-> allow" in diff, str(diff))
        path = os.path.join(workdir, "candidate.yaml")
        with open(path, "w") as f:
            f.write(candidate or "")
        # `egress check` resolves the name; this configuration (used by check
        # only, which connects nowhere) gives it a public address, as a real
        # refused destination would have, and no DNS server but a dead
        # loopback port.
        check_config = os.path.join(workdir, "check.yaml")
        with open(check_config, "w") as f:
            f.write("dns:\n  hosts_file: false\n  servers: [\"127.0.0.1:%d\"]\n  hosts:\n"
                    "    refused-alpha.test: [93.184.215.14]\n" % harness.free_port())
        out = subprocess.run([harness.EGRESS, "check", "--json", "--config", check_config, "--policy", path, "--role", "alpha",
                              "http://refused-alpha.test:%d/" % up.port], capture_output=True, text=True, timeout=30)
        verdict = json.loads(out.stdout).get("decision") if out.stdout.strip().startswith("{") else out.stdout
        check("the suggested rule makes egress check allow the destination", verdict == "allow", out.stdout + out.stderr)
        with open(egress.policy) as f:
            check("the console wrote nothing to the policy file", f.read() == POLICY)

        browser.navigate(base + "/health")
        chain = browser.wait_for("(e => e && e.textContent)(document.getElementById('chain'))")
        policy = browser.evaluate("(e => e && e.textContent)(document.getElementById('policy'))")
        check("screenshot console-health.png taken", browser.screenshot(screenshot_path("console-health.png")) > 1000)
        check("Health: the chain of the newest rows verifies", chain and chain.startswith("ok"), str(chain))
        check("Health: the policy file, its hash and last load are shown",
              policy and "policy.yaml" in policy and "sha256:" in policy and "loaded" in policy, str(policy))
        check("no attacker script ran anywhere", browser.evaluate("typeof " + MARKER) == "undefined")
        browser.navigate(base + "/login")
        check("screenshot console-login.png taken", browser.screenshot(screenshot_path("console-login.png")) > 1000)
    finally:
        browser.close()
        egress.stop()
        up.close()
    print("test_console took %.1f s" % (time.time() - started))


if __name__ == "__main__":
    harness.main(run)
