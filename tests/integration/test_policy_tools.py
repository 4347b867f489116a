"""The admins' tools, end to end with the real binary: `egress policy lint`
on the example policies (no errors) and on every bad fixture (exit 2,
FILE:LINE: severity lines); `hash-token` against Python's sha256; `import
--from-squid` of a sample squid.conf with a file-based list, then `egress
check` on sample hosts compared with a tiny squid first-match evaluator;
`suggest` from the audit database of a real `egress serve` session, loaded
back and checked with `egress check`; `diff` over that audit database;
`egress check` on https:// URLs of inspected and plain tunnels."""
import glob
import hashlib
import json
import os
import re
import subprocess

import harness
from harness import Egress, Upstream, curl, free_port

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FINDING = re.compile(r"^(.+):(\d+): (error|warning): (.+)$")
PUBLIC_IP = "93.184.216.34"  # `egress check` resolves names here; it never connects


def egress(*args, stdin=None):
    return subprocess.run([harness.EGRESS, *args], input=stdin, capture_output=True, text=True, timeout=60)


def check_config(workdir, names):
    """A serve config whose static hosts answer every name with a public
    address, so `egress check` can decide allowed names without DNS."""
    path = os.path.join(workdir, "check-%d.yaml" % len(os.listdir(workdir)))
    with open(path, "w") as f:
        f.write("dns:\n  hosts_file: false\n  servers: [\"127.0.0.1:%d\"]\n  timeout: 500ms\n  hosts:\n" % free_port())
        for name in names:
            f.write("    %s: [%s]\n" % (name, PUBLIC_IP))
    return path


def decide(policy, config, target):
    out = egress("check", "--json", "--policy", policy, "--config", config, target)
    assert out.returncode in (0, 1), out.stderr
    return out.returncode == 0


def test_lint(workdir, check):
    for policy in sorted(glob.glob(os.path.join(ROOT, "policies", "*.yaml"))):
        out = egress("policy", "lint", policy)
        check("lint %s: exit 0, no errors" % os.path.basename(policy),
              out.returncode == 0 and ": error:" not in out.stdout, out.stdout + out.stderr)
    for bad in sorted(glob.glob(os.path.join(ROOT, "tests", "policy", "testdata", "bad", "*.yaml"))):
        out = egress("policy", "lint", bad)
        lines = out.stdout.splitlines()
        well_formed = bool(lines) and all(FINDING.match(l) and FINDING.match(l).group(1) == bad for l in lines)
        check("lint bad/%s: exit 2 with FILE:LINE: error lines" % os.path.basename(bad),
              out.returncode == 2 and well_formed and any(": error: " in l for l in lines), out.stdout + out.stderr)
    shadowed = os.path.join(ROOT, "tests", "policy", "testdata", "lint", "shadowed.yaml")
    out = egress("policy", "lint", shadowed)
    check("lint warnings alone exit 0 and name line and fix",
          out.returncode == 0 and "%s:5: warning: allow entry 'a.example.com' is shadowed by '.example.com' at line 4" %
          shadowed in out.stdout and "; remove it" in out.stdout, out.stdout)
    out = egress("policy", "lint", os.path.join(workdir, "missing.yaml"))
    check("lint of a missing file exits 2", out.returncode == 2, out.stdout)


def test_hash_token(workdir, check):
    secret = "worker-secret-42"
    expected = "sha256:" + hashlib.sha256(secret.encode()).hexdigest()
    from_stdin = egress("policy", "hash-token", stdin=secret + "\n")
    from_arg = egress("policy", "hash-token", secret)
    check("hash-token from stdin matches sha256", from_stdin.stdout.strip() == expected, from_stdin.stdout)
    check("hash-token from the argument matches", from_arg.stdout.strip() == expected, from_arg.stdout)
    check("hash-token refuses an empty secret", egress("policy", "hash-token", stdin="").returncode == 2)
    policy = os.path.join(workdir, "token.yaml")
    with open(policy, "w") as f:
        f.write("version: 1\nmode: self-hosted\nroles:\n  w:\n    tokens: [%s]\n" % expected)
    check("the hash is accepted in a role's tokens", egress("policy", "lint", policy).returncode == 0)


SQUID_CONF = """\
# sample squid.conf for the import test
acl localnet src 10.0.0.0/8
acl SSL_ports port 443
acl allowed_sites dstdomain .github.com api.example.com
acl allowed_sites dstdomain .huggingface.co
acl listed dstdomain "%s"
acl blocked dstdomain .evil.example raw.github.com
http_port 3128
http_access deny !SSL_ports
http_access deny blocked
http_access allow localnet allowed_sites
http_access allow listed
http_access deny all
"""
SQUID_LIST = "# from a file\n.pypi.org\nfiles.example.net\n"
SAMPLE_HOSTS = ["github.com", "api.github.com", "raw.github.com", "api.example.com", "www.example.com",
                "hf.huggingface.co", "pypi.org", "files.pypi.org", "files.example.net", "cdn.files.example.net",
                "evil.example", "x.evil.example", "unlisted.org"]


def squid_allows(conf, lists, host):
    """squid's answer for a client in localnet on port 443: the first
    http_access line whose dstdomain acls match decides."""
    acls = {}
    for line in conf.splitlines():
        words = line.split()
        if len(words) >= 4 and words[0] == "acl" and words[2] == "dstdomain":
            for value in words[3:]:
                values = lists[value.strip('"')] if value.startswith('"') else [value]
                acls.setdefault(words[1], []).extend(values)
    for line in conf.splitlines():
        words = line.split()
        if not words or words[0] != "http_access":
            continue
        names = [w for w in words[2:] if w in acls]
        if words[2:] == ["all"]:
            return words[1] == "allow"
        if not names:
            continue  # src/port conditions hold for the sample (localnet client, port 443)
        if any(host == d or (d.startswith(".") and (host == d[1:] or host.endswith(d))) for d in acls[names[0]]):
            return words[1] == "allow"
    return False


def test_import(workdir, check):
    list_file = os.path.join(workdir, "extra-sites.txt")
    with open(list_file, "w") as f:
        f.write(SQUID_LIST)
    conf_text = SQUID_CONF % list_file
    conf = os.path.join(workdir, "squid.conf")
    with open(conf, "w") as f:
        f.write(conf_text)
    out = egress("policy", "import", "--from-squid", conf)
    check("import exits 0", out.returncode == 0, out.stderr)
    check("import reports http_port by line", "%s:8: directive 'http_port'" % conf in out.stderr, out.stderr)
    check("import reports deny !SSL_ports by line", "%s:9: http_access deny without a dstdomain acl" % conf in out.stderr,
          out.stderr)
    check("import reports the dropped src condition", "%s:11: converted allow allowed_sites but dropped" % conf
          in out.stderr, out.stderr)
    imported = os.path.join(workdir, "imported.yaml")
    with open(imported, "w") as f:
        f.write(out.stdout)
    lint = egress("policy", "lint", imported)
    check("the imported policy lints without errors", lint.returncode == 0, lint.stdout)
    config = check_config(workdir, SAMPLE_HOSTS)
    lists = {list_file: [l for l in SQUID_LIST.splitlines() if l and not l.startswith("#")]}
    for host in SAMPLE_HOSTS:
        want = squid_allows(conf_text, lists, host)
        got = decide(imported, config, "%s:443" % host)
        check("import: %s is %s as squid would" % (host, "allowed" if want else "denied"), got == want,
              "egress says %s" % got)


SERVE_POLICY = """\
version: 1
mode: developer
internal:
  - cidr: 127.0.0.0/8
    ports: [%d]
deny:
  - blocked.test
"""


def test_suggest_and_diff(workdir, check):
    up = Upstream()
    names = ["a.models.test", "b.models.test", "tools.test", "blocked.test"]
    serve = Egress(workdir, SERVE_POLICY % up.port, hosts={n: "127.0.0.1" for n in names})
    try:
        used = [("a.models.test", 3), ("b.models.test", 1), ("tools.test", 2)]
        for host, times in used:
            for _ in range(times):
                status, _, _, err = curl(serve.proxy, "http://%s:%d/x" % (host, up.port))
                check("serve: %s answers 200" % host, status == 200, err)
        status, _, _, _ = curl(serve.proxy, "http://blocked.test:%d/" % up.port)
        check("serve: blocked.test is refused", status == 403)
        serve.wait_for_events("event = 'decision'", count=7)
    finally:
        serve.stop()
    out = egress("policy", "suggest", "--from-audit", serve.db)
    check("suggest exits 0", out.returncode == 0, out.stderr)
    suggested = os.path.join(workdir, "suggested.yaml")
    with open(suggested, "w") as f:
        f.write(out.stdout)
    check("suggest groups the two used subdomains", "- host: '.models.test'\n    ports: [%d]" % up.port in out.stdout,
          out.stdout)
    check("suggest counts as comments", "# a.models.test (%d: 3)" % up.port in out.stdout, out.stdout)
    check("suggest keeps a lone host exact", "- host: 'tools.test'" in out.stdout, out.stdout)
    lint = egress("policy", "lint", suggested)
    check("the suggested policy lints clean", lint.returncode == 0 and not lint.stdout, lint.stdout)
    config = check_config(workdir, names + ["other.test", "c.models.test"])
    for host, _ in used:
        check("suggested policy allows used %s" % host, decide(suggested, config, "%s:%d" % (host, up.port)))
    for target in ["blocked.test:%d" % up.port, "other.test:%d" % up.port, "tools.test:%d" % (up.port + 1),
                   "a.models.test:443"]:
        check("suggested policy denies unused %s" % target, not decide(suggested, config, target))
    check("suggest with --role of no worker allows nothing",
          "allow: []" in egress("policy", "suggest", "--from-audit", serve.db, "--role", "nobody").stdout)
    check("suggest --since 1h keeps the session",
          "'.models.test'" in egress("policy", "suggest", "--from-audit", serve.db, "--since", "1h").stdout)

    diff = egress("policy", "diff", serve.policy, suggested, "--from-audit", serve.db)
    check("diff over the audit: the used targets keep their decision", diff.returncode == 0 and
          "0 of " in diff.stdout, diff.stdout + diff.stderr)
    check("diff says it decides without DNS", "without DNS" in diff.stderr, diff.stderr)
    diff = egress("policy", "diff", serve.policy, suggested, "http://other.test:%d/" % up.port)
    check("diff over a given target shows the change", diff.returncode == 1 and
          "allow developer-mode" in diff.stdout and "-> deny not-allowed" in diff.stdout, diff.stdout)
    up.close()


INSPECT_POLICY = """\
version: 1
mode: self-hosted
allow:
  - host: .huggingface.co
    inspect: true
    paths: [/api/models/]
    methods: [GET, HEAD]
  - host: plain.example
"""


def test_check_inspected(workdir, check):
    """`egress check` on https:// URLs: the CONNECT, and for an inspected
    tunnel the request inside, decided on method and path as serve would."""
    policy = os.path.join(workdir, "inspect.yaml")
    with open(policy, "w") as f:
        f.write(INSPECT_POLICY)
    config = check_config(workdir, ["huggingface.co", "plain.example"])
    cases = [  # target, extra args, exit, inspect, request (method, path, decision, reason) or None
        ("https://huggingface.co/api/models/x?rev=2", (), 0, True, ("GET", "/api/models/x", "allow", "allow-rule")),
        ("https://huggingface.co/admin", (), 1, True, ("GET", "/admin", "deny", "path-not-allowed")),
        ("https://huggingface.co", (), 1, True, ("GET", "/", "deny", "path-not-allowed")),
        ("https://huggingface.co/api/models/x", ("--method", "POST"), 1, True,
         ("POST", "/api/models/x", "deny", "method-not-allowed")),
        ("huggingface.co:443", (), 0, True, None),
        ("https://plain.example/anything", (), 0, False, None),
    ]
    for target, args, code, inspect, request in cases:
        out = egress("check", "--json", "--policy", policy, "--config", config, *args, target)
        try:
            result = json.loads(out.stdout)
        except ValueError:
            result = {}
        got = result.get("request")
        got = (got["method"], got["path"], got["decision"], got["reason"]) if got else None
        check("check %s %s: exit %d, inspect %s, request %s" % (" ".join(args), target, code, inspect, request),
              out.returncode == code and result.get("decision") == "allow" and result.get("inspect") == inspect and
              got == request, out.stdout + out.stderr)
    out = egress("check", "--policy", policy, "--config", config, "https://huggingface.co/admin")
    check("check's text output says the tunnel is inspected and why the request is refused",
          "inspect:   yes" in out.stdout and "request:   GET /admin" in out.stdout and
          "path-not-allowed" in out.stdout, out.stdout)
    out = egress("check", "--policy", policy, "--config", config, "https://plain.example/x")
    check("check's text output says a plain tunnel is not inspected", "inspect:   no" in out.stdout, out.stdout)


def run(workdir, results):
    check = results.check
    test_lint(workdir, check)
    test_hash_token(workdir, check)
    test_import(workdir, check)
    test_suggest_and_diff(workdir, check)
    test_check_inspected(workdir, check)


if __name__ == "__main__":
    harness.main(run)
