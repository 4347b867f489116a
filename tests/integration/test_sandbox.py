"""egress sandbox run, end to end, as root with the real runsc: one `egress
serve` and two sandboxed workers of different roles at once. Inside each,
curl through egress reaches its role's upstream (200) and not the other's
(403); a direct connection, a DNS lookup, a write to / and setuid(0) fail;
the audit log names each worker's role; the command's output and exit code
come through. The rendered seccomp profile is tested in a sandbox: python3
and curl run under it, unshare(0) (allowed without it) is refused. Finally
`sandbox run` is SIGKILLed mid-command and nothing of it remains.

Network rule: the upstream lives in a network namespace this test creates
(10.213.250.0/30) and deletes; egress listens on 10.213.251.1, an address
`egress sandbox setup` puts on lo and `teardown` removes. `sandbox verify
--policy --role` checks that running deployment (and fails when the role's
URLs are swapped).
"""
import json
import os
import re
import signal
import socket
import subprocess
import time

import harness

NS = "egress-it-up%d" % os.getpid()
UP_HOST_LINK = "eitu%d" % (os.getpid() % 100000)
UP_HOST_IP, UP_IP = "10.213.250.1", "10.213.250.2"
PROXY_IP = "10.213.251.1"

POLICY = """\
version: 1
mode: self-hosted
roles:
  comfyui:
    sources: [10.213.241.0/24]
    internal:
      - host: hf.test
        ports: any
      - host: secret.test
        ports: any
        allow_plaintext: true   # the upstream is plain HTTP; the worker has no CA to trust
        inject:
          - header: Authorization
            value: "Bearer {secret:hf_token}"
  ai_worker:
    sources: [10.213.242.0/24]
    internal:
      - host: gh.test
        ports: any
"""

# Runs inside the sandbox as the worker: one JSON line of what happened.
WORKER = r"""
import ctypes, json, os, socket, subprocess, sys
out = {}
def code(url):
    p = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", url],
                       capture_output=True, text=True)
    return p.stdout.strip()
out["allowed"] = code(sys.argv[1])
out["denied"] = code(sys.argv[2])
s = socket.socket(); s.settimeout(2)
try:
    s.connect((sys.argv[3], 8080)); out["direct"] = "connected"
except OSError as e:
    out["direct"] = e.__class__.__name__ + ":" + str(e.errno)
try:
    socket.getaddrinfo("hf.test", 80); out["dns"] = "resolved"
except OSError as e:
    out["dns"] = "failed:" + str(e)
try:
    open("/egress-it-write", "w").write("x"); out["write"] = "written"
except OSError as e:
    out["write"] = "failed:" + str(e.errno)
p = subprocess.run([sys.executable, "-c", "import os; os.setuid(0)"], capture_output=True, text=True)
out["setuid"] = p.returncode
out["uid"] = os.getuid()
print(json.dumps(out), flush=True)
print("to stderr", file=sys.stderr, flush=True)
sys.exit(int(sys.argv[4]))
"""

# Runs inside the sandbox of role comfyui: fetches the protected resource
# with curl and urllib (neither sends a credential) and dumps what a worker
# could read of its own environment and of egress's secrets directory.
SECRET_WORKER = r"""
import json, os, subprocess, sys, urllib.request
url, secrets_dir = sys.argv[1], sys.argv[2]
out = {"curl": subprocess.run(["curl", "-s", "-w", " %{http_code}", "--max-time", "5", url],
                              capture_output=True, text=True).stdout}
try:
    out["urllib"] = urllib.request.urlopen(url, timeout=5).read().decode()
except Exception as e:
    out["urllib"] = repr(e)
out["env"] = dict(os.environ)
out["proc_environ"] = open("/proc/self/environ", "rb").read().decode(errors="replace")
try:
    out["secrets_dir"] = os.listdir(secrets_dir)
except OSError as e:
    out["secrets_dir"] = "error " + str(e.errno)
print(json.dumps(out), flush=True)
"""

SECCOMP_PROBE = r"""
import ctypes, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
r = libc.syscall(272, 0)  # unshare(0): a no-op any process may do, unless seccomp forbids it
p = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", sys.argv[1]],
                   capture_output=True, text=True)
print("unshare=%d errno=%d curl=%s" % (r, ctypes.get_errno(), p.stdout.strip()), flush=True)
"""


def sh(*argv, check=True):
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and out.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(argv), out.stderr))
    return out


def instances():
    try:
        return {d for d in os.listdir("/run/egress-sandbox") if re.fullmatch(r"[0-9a-f]{8}", d)}
    except FileNotFoundError:
        return set()


def descendants(root):
    """PIDs below `root` (from /proc/*/stat), root included."""
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    parent[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        for child, pp in parent.items():
            if pp == p and child not in found:
                found.add(child)
                frontier.append(child)
    return found


def netns_of(pids):
    out = set()
    for p in pids:
        try:
            out.add(os.readlink("/proc/%d/ns/net" % p))
        except OSError:
            pass
    return out


def all_netns():
    return netns_of(int(d) for d in os.listdir("/proc") if d.isdigit())


def leftovers(instance, namespaces):
    left = []
    if os.path.exists("/run/egress-sandbox/" + instance):
        left.append("instance dir (runsc state)")
    if os.path.exists("/sys/class/net/egsh" + instance):
        left.append("veth egsh" + instance)
    for c in os.listdir("/sys/fs/cgroup"):
        if os.path.exists("/sys/fs/cgroup/%s/egress-sbx-%s" % (c, instance)):
            left.append("cgroup " + c)
    if instance in sh("nft", "list", "tables").stdout:
        left.append("nft table")
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/cmdline" % d, "rb") as f:
                    if ("egress-sbx-" + instance).encode() in f.read():
                        left.append("process %s" % d)
            except OSError:
                pass
    still = namespaces & all_netns()
    if still:
        left.append("netns %s" % sorted(still))
    return left


def start_egress(workdir, port, secrets_dir):
    """egress serve on PROXY_IP:port with static names for the upstreams."""
    policy = os.path.join(workdir, "policy.yaml")
    with open(policy, "w") as f:
        f.write(POLICY)
    config = os.path.join(workdir, "egress.yaml")
    with open(config, "w") as f:
        f.write("dns:\n  hosts_file: false\n  servers: [\"127.0.0.1:%d\"]\n  timeout: 500ms\n  hosts:\n"
                "    hf.test: [%s]\n    gh.test: [%s]\n    secret.test: [%s]\n" % (harness.free_port(), UP_IP, UP_IP, UP_IP))
    db = os.path.join(workdir, "audit.db")
    log = open(os.path.join(workdir, "egress.log"), "w")
    proc = subprocess.Popen([harness.EGRESS, "serve", "--config", config, "--policy", policy, "--audit-db", db,
                             "--listen", "%s:%d" % (PROXY_IP, port), "--threads", "2", "--admin-listen", "off",
                             "--secrets-dir", secrets_dir],
                            stdout=subprocess.PIPE, stderr=log, text=True)
    deadline = time.time() + 15
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line or line.startswith("egress listening on "):
            break
    return proc, policy, db


def run(workdir, results):
    check = results.check
    check("running as root", os.geteuid() == 0)
    check("runsc is installed", sh("runsc", "--version", check=False).returncode == 0)
    if os.geteuid() != 0:
        return
    port = harness.free_port()
    proxy = "%s:%d" % (PROXY_IP, port)
    egress = upstream = None
    try:
        # Upstream: a namespace of ours with an HTTP server; only egress routes there.
        sh("ip", "netns", "add", NS)
        sh("ip", "link", "add", UP_HOST_LINK, "type", "veth", "peer", "name", "eth0", "netns", NS)
        sh("ip", "addr", "add", UP_HOST_IP + "/30", "dev", UP_HOST_LINK)
        sh("ip", "link", "set", UP_HOST_LINK, "up")
        sh("ip", "-n", NS, "addr", "add", UP_IP + "/30", "dev", "eth0")
        sh("ip", "-n", NS, "link", "set", "eth0", "up")
        sh("ip", "-n", NS, "link", "set", "lo", "up")
        # egress's secrets directory, and the one secret: root's, 0600, in a 0700 directory.
        secrets_dir = os.path.join(workdir, "secrets")
        os.mkdir(secrets_dir, 0o700)
        secret = os.urandom(16).hex()
        with open(os.open(os.path.join(secrets_dir, "hf_token"), os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(secret + "\n")
        # /secret wants the injected credential (read from the secrets file, not argv); the rest answers "ok".
        upstream = subprocess.Popen(
            ["ip", "netns", "exec", NS, "python3", "-c",
             "import http.server as h\n"
             "want = 'Bearer ' + open(%r).read().strip()\n"
             "class H(h.BaseHTTPRequestHandler):\n"
             "  def do_GET(s):\n"
             "    ok = s.path != '/secret' or s.headers.get('Authorization') == want\n"
             "    body = (b'granted' if s.path == '/secret' else b'ok') if ok else b'no credential'\n"
             "    s.send_response(200 if ok else 401); s.send_header('Content-Length', str(len(body)))\n"
             "    s.end_headers(); s.wfile.write(body)\n"
             "  def log_message(s,*a): pass\n"
             "h.HTTPServer(('%s', 8080), H).serve_forever()\n" % (os.path.join(secrets_dir, "hf_token"), UP_IP)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        setup = sh(harness.EGRESS, "sandbox", "setup", "--proxy", proxy, check=False)
        check("sandbox setup puts the proxy address in place", setup.returncode == 0, setup.stderr)
        egress, policy, db = start_egress(workdir, port, secrets_dir)

        def sandbox_run(role, *command, extra=("--secrets-dir", secrets_dir)):
            return subprocess.Popen([harness.EGRESS, "sandbox", "run", "--policy", policy, "--role", role,
                                     "--proxy", proxy, "--timeout", "60s", *extra, "--", *command],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        # -- two workers of different roles at once --
        started = time.time()
        workers = {
            "comfyui": sandbox_run("comfyui", "python3", "-c", WORKER, "http://hf.test:8080/", "http://gh.test:8080/",
                                   UP_IP, "0"),
            "ai_worker": sandbox_run("ai_worker", "python3", "-c", WORKER, "http://gh.test:8080/",
                                     "http://hf.test:8080/", UP_IP, "3"),
        }
        outputs = {role: p.communicate(timeout=90) for role, p in workers.items()}
        print("two sandboxed workers finished in %.1f s" % (time.time() - started))
        for role, (out, err) in outputs.items():
            rc = workers[role].returncode
            check("%s: exit code passed through" % role, rc == (0 if role == "comfyui" else 3), "rc=%d %s" % (rc, err))
            check("%s: stderr passed through" % role, "to stderr" in err, err)
            try:
                r = json.loads(out.strip().splitlines()[-1])
            except (ValueError, IndexError):
                check("%s: worker printed its results" % role, False, out + err)
                continue
            check("%s: allowed upstream through egress -> 200" % role, r["allowed"] == "200", str(r))
            check("%s: the other role's upstream -> 403" % role, r["denied"] == "403", str(r))
            check("%s: direct connection fails (no route)" % role, r["direct"] == "OSError:101", str(r))
            check("%s: DNS lookup fails" % role, r["dns"].startswith("failed"), str(r))
            check("%s: write to / fails" % role, r["write"].startswith("failed"), str(r))
            check("%s: setuid(0) fails, uid 65534" % role, r["setuid"] != 0 and r["uid"] == 65534, str(r))
        check("nothing was written to the host's /", not os.path.exists("/egress-it-write"))

        # -- a credential the worker never holds --
        p = sandbox_run("comfyui", "python3", "-c", SECRET_WORKER, "http://secret.test:8080/secret", secrets_dir)
        out, err = p.communicate(timeout=60)
        try:
            r = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            r = {}
        check("injecting rule: curl in the sandbox, sending no credential, gets the protected resource",
              r.get("curl") == "granted 200", out + err)
        check("injecting rule: python urllib too", r.get("urllib") == "granted", out + err)
        check("the secrets directory is empty in the worker (an empty tmpfs covers it)", r.get("secrets_dir") == [],
              str(r.get("secrets_dir")))
        check("the value is not in the worker's environment, /proc/self/environ or anything it printed",
              r and secret not in out + err, "found" if secret in out + err else out + err)
        no_cred = sandbox_run("ai_worker", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
                              "http://secret.test:8080/secret")
        out, err = no_cred.communicate(timeout=60)
        check("a role without the rule is refused (403) and gets no credential", out.strip() == "403", out + err)

        # -- the audit log names each worker's role --
        rows = []
        deadline = time.time() + 5
        while time.time() < deadline:
            try:
                import sqlite3
                with sqlite3.connect(db) as conn:
                    rows = conn.execute("SELECT role, client_addr, host, decision FROM events "
                                        "WHERE event='decision' ORDER BY id").fetchall()
            except Exception:
                rows = []
            if len(rows) >= 4:
                break
            time.sleep(0.1)
        expect = {("comfyui", "hf.test", "allow"), ("comfyui", "gh.test", "deny"),
                  ("ai_worker", "gh.test", "allow"), ("ai_worker", "hf.test", "deny")}
        seen = {(r[0], r[2], r[3]) for r in rows}
        check("audit: each decision carries the worker's role", expect <= seen, str(rows))
        check("audit: client addresses are in the role's range",
              all(r[1].startswith("10.213.241.") if r[0] == "comfyui" else r[1].startswith("10.213.242.")
                  for r in rows), str(rows))

        # -- `sandbox verify` against this running deployment (--policy mode) --
        def verify(allowed, denied, *extra):
            return subprocess.run([harness.EGRESS, "sandbox", "verify", "--policy", policy, "--role", "comfyui",
                                   "--proxy", proxy, "--allowed-url", allowed, "--denied-url", denied,
                                   "--secrets-dir", secrets_dir, *extra],
                                  capture_output=True, text=True, timeout=150)
        good = verify("http://secret.test:8080/secret", "http://gh.test:8080/")
        print(good.stdout)
        check("verify --policy --role comfyui on the running egress: exit 0, no FAIL",
              good.returncode == 0 and "[FAIL]" not in good.stdout, good.stdout + good.stderr)
        check("verify --policy: the proxy path line passes with the role's URLs (the allowed one needs the injection)",
              re.search(r"\[PASS\] Egress proxy path", good.stdout) is not None, good.stdout)
        check("verify --policy --secrets-dir: the secrets line passes, having searched files",
              re.search(r"\[PASS\] Secrets not visible to workers\n\s+1 secret\(s\) searched for .* and [1-9]\d* readable "
                        r"files: not found", good.stdout) is not None, good.stdout)
        leak = verify("http://secret.test:8080/secret", "http://gh.test:8080/", "--break", "secret-in-env")
        check("verify with the secret put in the worker's environment: exit 1, the secrets line fails naming it",
              leak.returncode == 1 and re.search(r"\[FAIL\] Secrets not visible to workers\n.*hf_token in the "
                                                 r"environment \(EGRESS_VERIFY_LEAKED\)", leak.stdout) is not None,
              leak.stdout + leak.stderr)
        check("verify's output never holds the value", secret not in good.stdout + good.stderr + leak.stdout + leak.stderr)
        swapped = verify("http://gh.test:8080/", "http://hf.test:8080/")
        check("verify --policy with the URLs swapped (comfyui may not reach gh.test): exit 1, the proxy path fails",
              swapped.returncode == 1 and re.search(r"\[FAIL\] Egress proxy path", swapped.stdout) is not None,
              swapped.stdout + swapped.stderr)

        # -- the rendered seccomp profile, for real, in a sandbox --
        sh(harness.EGRESS, "sandbox", "render", "--target", "seccomp", "--out", workdir)
        profile = os.path.join(workdir, "seccomp-worker.json")
        for label, extra in (("without seccomp", ()), ("with the profile", ("--seccomp", profile))):
            p = sandbox_run("comfyui", "python3", "-c", SECCOMP_PROBE, "http://hf.test:8080/", extra=extra)
            out, err = p.communicate(timeout=60)
            m = re.search(r"unshare=(-?\d+) errno=(\d+) curl=(\d*)", out)
            check("seccomp %s: python3 and curl run" % label, p.returncode == 0 and m and m.group(3) == "200",
                  out + err)
            if label == "without seccomp":
                check("unshare(0) succeeds without seccomp", m and m.group(1) == "0", out)
            else:
                check("unshare(0) fails with EPERM under the profile", m and m.group(1) == "-1" and m.group(2) == "1",
                      out)

        # -- SIGKILL of `sandbox run` mid-command: nothing of it remains --
        before = instances()
        victim = sandbox_run("comfyui", "sleep", "60")
        instance, deadline = None, time.time() + 15
        while time.time() < deadline and instance is None:
            new = instances() - before
            if new and os.path.exists("/sys/class/net/egsh" + next(iter(new))):
                instance = next(iter(new))
            time.sleep(0.05)
        check("a sandbox came up to be killed", instance is not None)
        if instance:
            time.sleep(1.0)  # let runsc start the command
            namespaces = netns_of(descendants(victim.pid)) - netns_of([os.getpid()])
            check("the sandbox had its own network namespace", len(namespaces) >= 1, str(namespaces))
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=10)
            killed_at = time.time()
            left = ["?"]
            while time.time() - killed_at < 10:
                left = leftovers(instance, namespaces)
                if not left:
                    break
                time.sleep(0.1)
            check("after SIGKILL nothing remains (netns, veth, nft, runsc state, cgroups, processes)", not left,
                  str(left))
            print("SIGKILL cleanup took %.1f s" % (time.time() - killed_at))
    finally:
        if egress:
            egress.terminate()
            egress.wait(timeout=20)
        if upstream:
            upstream.kill()
            upstream.wait()
        sh(harness.EGRESS, "sandbox", "teardown", "--proxy", proxy, check=False)
        sh("ip", "link", "del", UP_HOST_LINK, check=False)
        sh("ip", "netns", "del", NS, check=False)
    check("teardown removed the proxy address", PROXY_IP not in sh("ip", "-4", "addr", "show", "dev", "lo").stdout)
    # Other sandboxes (a concurrent verify) may be running: only orphans count.
    orphans = [l for l in os.listdir("/sys/class/net")
               if l.startswith("egsh") and not os.path.isdir("/run/egress-sandbox/" + l[4:])]
    check("no orphaned worker veth is left", not orphans, str(orphans))


if __name__ == "__main__":
    harness.main(run)
