"""Credentials the worker never holds (issue 16), end to end with real
clients (curl, python urllib, git) and real TLS upstreams on loopback:
- an upstream that wants `Authorization: Bearer <value>` answers 200 through
  an injecting rule to workers that send no credential, and 401 once a
  reload removes the rule; a role without the rule gets no injection;
  `only_placeholder` rewrites only the requests carrying the placeholder;
- `git clone` over smart HTTP (git http-backend behind a TLS server that
  wants Basic auth) succeeds through egress, and fails with 401 without it;
- an echo upstream returns the request headers in a header and in bodies of
  several MiB with the secret at many offsets: the worker sees
  [egress:NAME], never the value;
- a missing secret gives secret-unavailable and zero bytes upstream; a
  secret file of mode 0644 keeps serve from starting;
- the value appears nowhere: audit database, logs, metrics, check --json."""
import base64
import http.server
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.request

import harness
from harness import Egress
from test_inspect import issue, make_upstream_ca

HF_TOKEN = "hf_SeCrEt_0123456789abcdef"
GIT_TOKEN = "git-pAsSwOrD-9876543210"
GH_TOKEN = "ghp_PlAcEhOlDeR_555444333"
WORKER_TOKEN = "worker-token-for-the-trusted-role"
OTHER_TOKEN = "worker-token-for-the-other-role"

POLICY = """\
version: 1
mode: self-hosted
allow:
  - host: git.test
    ports: any
    inspect: true
    inject:
      - header: Authorization
        basic: {user: git, password: "{secret:git_token}"}
  - host: opt.test
    ports: any
    inspect: true
    inject:
      - header: Authorization
        value: "token {secret:gh}"
        only_placeholder: true
  - host: echo.test
    ports: any
    inspect: true
    inject:
      - header: Authorization
        value: "Bearer {secret:hf_token}"
  - host: missing.test
    ports: any
    inspect: true
    inject:
      - header: X-Api-Key
        value: "{secret:absent}"
  - host: plain.test        # plain HTTP on purpose: allow_plaintext
    ports: any
    allow_plaintext: true
    inject:
      - header: Authorization
        value: "Bearer {secret:hf_token}"
internal:
  - cidr: 127.0.0.1/32       # the test names resolve here; an allow rule may reach it
    ports: any
roles:
  other:                   # reaches the same host, without the injection
    tokens: [%s]
    allow:
      - host: models.test
        ports: any
        inspect: true
  trusted:
    tokens: [%s]
    allow:
      - host: models.test
        ports: any
        inspect: true
        paths: [/api/, /private/]
        inject:
          - header: Authorization
            value: "Bearer {secret:hf_token}"
"""


class AuthOrigin(http.server.BaseHTTPRequestHandler):
    """models.test / opt.test: 200 with the private resource when the
    expected Authorization arrives, else 401. echo.test: the request's
    headers back, in a response header and in the body, and /big/N a body of
    N MiB with the Authorization value at many offsets."""
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def reply(self, status, body, headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.server.seen.append((self.path, dict(self.headers)))
        auth = self.headers.get("Authorization", "")
        if self.path.startswith("/echo"):
            text = "".join("%s: %s\n" % kv for kv in self.headers.items()).encode()
            return self.reply(200, text, [("X-Echo-Authorization", auth)])
        if self.path.startswith("/big/"):
            mib = int(self.path.split("/")[2])
            chunk = (b"x" * 997 + auth.encode())  # the secret lands at every offset mod the read size
            body = (chunk * (mib * 1024 * 1024 // len(chunk) + 1))[:mib * 1024 * 1024]
            return self.reply(200, body)
        expected = {"models.test": "Bearer " + HF_TOKEN, "opt.test": "token " + GH_TOKEN,
                    "plain.test": "Bearer " + HF_TOKEN}
        host = self.headers.get("Host", "").split(":")[0]
        if auth == expected.get(host):
            return self.reply(200, b"private resource " + self.path.encode())
        return self.reply(401, b"unauthorized", [("WWW-Authenticate", "Bearer")])


class GitOrigin(http.server.BaseHTTPRequestHandler):
    """git smart HTTP: git http-backend as a CGI, behind Basic auth."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle_git(self):
        expected = "Basic " + base64.b64encode(("git:" + GIT_TOKEN).encode()).decode()
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        env = dict(os.environ, GIT_PROJECT_ROOT=self.server.root, GIT_HTTP_EXPORT_ALL="1", REQUEST_METHOD=self.command,
                   PATH_INFO=path, QUERY_STRING=query, CONTENT_TYPE=self.headers.get("Content-Type", ""),
                   CONTENT_LENGTH=str(len(body)), REMOTE_USER="git", REMOTE_ADDR="127.0.0.1")
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, timeout=30).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = handle_git


def serve_plain(handler):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.seen = []
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    return server


def serve_tls(handler, tls_dir, **attrs):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.seen = []
    for name, value in attrs.items():
        setattr(server, name, value)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(os.path.join(tls_dir, "upstream.crt"), os.path.join(tls_dir, "upstream.key"))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    return server


def write_secrets(directory, mode=0o600, **secrets):
    os.makedirs(directory, exist_ok=True)
    for name, value in secrets.items():
        path = os.path.join(directory, name)
        with open(path, "w") as f:
            f.write(value + "\n")
        os.chmod(path, mode)


def make_repository(root):
    """A bare repository root/private.git with one commit."""
    work = os.path.join(root, "work")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    subprocess.run(git + ["init", "-q", work], check=True)
    with open(os.path.join(work, "model.txt"), "w") as f:
        f.write("weights\n")
    subprocess.run(git + ["-C", work, "add", "."], check=True)
    subprocess.run(git + ["-C", work, "commit", "-qm", "one"], check=True)
    subprocess.run(["git", "clone", "-q", "--bare", work, os.path.join(root, "private.git")], check=True)


def run(workdir, results):
    check = results.check
    certs = os.path.join(workdir, "certs")
    subprocess.run([harness.EGRESS, "ca", "init", "--out", certs], check=True, capture_output=True, timeout=30)
    egress_ca = os.path.join(certs, "ca.crt")
    upstream_ca = make_upstream_ca(workdir)
    tls = issue(workdir, "origin", upstream_ca, ["models.test", "opt.test", "echo.test", "missing.test", "git.test"], 2)
    origin = serve_tls(AuthOrigin, tls)
    plain_origin = serve_plain(AuthOrigin)
    git_root = os.path.join(workdir, "git")
    make_repository(git_root)
    git_origin = serve_tls(GitOrigin, tls, root=git_root)
    secrets_dir = os.path.join(workdir, "secrets")
    write_secrets(secrets_dir, hf_token=HF_TOKEN, git_token=GIT_TOKEN, gh=GH_TOKEN)

    bad_dir = os.path.join(workdir, "bad-secrets")
    write_secrets(bad_dir, mode=0o644, hf_token=HF_TOKEN)
    out = subprocess.run([harness.EGRESS, "serve", "--listen", "127.0.0.1:0", "--secrets-dir", bad_dir,
                          "--audit-db", os.path.join(workdir, "never.db")], capture_output=True, text=True, timeout=20)
    check("serve refuses a secret file of mode 0644 (exit 2, the file and the fix named, not the value)",
          out.returncode == 2 and "more open than 0640" in out.stderr and "chmod 600" in out.stderr and
          HF_TOKEN not in out.stderr + out.stdout, out.stderr[-500:])

    hosts = {name: "127.0.0.1" for name in ("models.test", "opt.test", "echo.test", "missing.test", "git.test",
                                            "plain.test")}
    admin = "127.0.0.1:%d" % harness.free_port()
    token_hash = tuple(subprocess.run([harness.EGRESS, "policy", "hash-token", token], capture_output=True,
                                      text=True, check=True).stdout.strip() for token in (OTHER_TOKEN, WORKER_TOKEN))
    egress = Egress(workdir, POLICY % token_hash, hosts=hosts,
                    extra_args=("--ca-cert", egress_ca, "--ca-key", os.path.join(certs, "ca.key"),
                                "--upstream-ca", upstream_ca[1], "--admin-listen", admin,
                                "--secrets-dir", secrets_dir))
    try:
        check_plaintext(check, egress, plain_origin.server_address[1])
        run_checks(check, workdir, egress, admin, egress_ca, origin, git_origin, token_hash)
    finally:
        code = egress.stop()
        check("egress stops cleanly (exit 0)", code == 0, egress.log_text()[-2000:])
        for server in (origin, git_origin, plain_origin):
            server.shutdown()
    check_nowhere(check, workdir, egress, POLICY % token_hash)


def curl(egress, url, egress_ca, *args):
    return harness.curl(egress.proxy, url, "--cacert", egress_ca, *args)


def run_checks(check, workdir, egress, admin, egress_ca, origin, git_origin, token_hash):
    port = origin.server_address[1]
    trusted = ("--proxy-user", "w:" + WORKER_TOKEN)
    status, head, body, err = curl(egress, "https://models.test:%d/private/model.bin" % port, egress_ca, *trusted)
    check("curl without a credential gets the private resource through the injecting rule",
          status == 200 and "private resource /private/model.bin" in body, "%s %s %s" % (status, body[:100], err))
    env = dict(os.environ, SSL_CERT_FILE=egress_ca, https_proxy="http://w:%s@%s" % (WORKER_TOKEN, egress.address),
               no_proxy="", NO_PROXY="")
    script = ("import urllib.request,sys\nr=urllib.request.urlopen(sys.argv[1],timeout=15)\n"
              "print(r.status, r.read().decode())\n")
    out = subprocess.run([sys.executable, "-c", script, "https://models.test:%d/api/m" % port], env=env,
                         capture_output=True, text=True, timeout=30)
    check("python urllib without a credential gets it too", out.stdout.startswith("200 private resource /api/m"),
          out.stdout + out.stderr[-300:])
    status, _, _, _ = curl(egress, "https://models.test:%d/private/model.bin" % port, egress_ca,
                           "--proxy-user", "w:" + OTHER_TOKEN)
    check("a worker of a role without the injecting rule gets the upstream's 401", status == 401, str(status))
    rows = egress.wait_for_events("event = 'decision' AND kind = 'inspected' AND host = 'models.test'", count=3)
    check("the audit's decision rows name the injected secret on the trusted role's requests only",
          sorted((r["role"], r["injected"] or "") for r in rows) ==
          [("other", ""), ("trusted", "hf_token"), ("trusted", "hf_token")], str(rows))

    status, _, body, _ = curl(egress, "https://opt.test:%d/r" % port, egress_ca, "-H", "Authorization: token egress:gh")
    check("only_placeholder: a request carrying egress:gh gets the secret", status == 200, "%s %s" % (status, body))
    status, _, _, _ = curl(egress, "https://opt.test:%d/r" % port, egress_ca, "-H", "Authorization: token mine")
    check("only_placeholder: a request without the placeholder is sent as the worker wrote it", status == 401)
    sent = [h.get("Authorization") for p, h in origin.seen if p == "/r"]
    check("only_placeholder: the upstream saw the secret once and the worker's own value once",
          sent == ["token " + GH_TOKEN, "token mine"], str(sent))

    check_echo(check, egress, egress_ca, port)
    check_git(check, workdir, egress, egress_ca, git_origin.server_address[1])

    before = len(origin.seen)
    status, head, body, _ = curl(egress, "https://missing.test:%d/x" % port, egress_ca)
    check("a missing secret refuses the request: 503 secret-unavailable naming the secret",
          status == 503 and harness.header(head, "X-Egress-Reason") == "secret-unavailable" and "absent" in body,
          "%s %s" % (status, body))
    check("the request without its secret never reached the upstream", len(origin.seen) == before)

    with urllib.request.urlopen("http://%s/metrics" % admin, timeout=5) as r:
        metrics = r.read().decode()
    check("no secret value on the metrics page", not any(v in metrics for v in (HF_TOKEN, GIT_TOKEN, GH_TOKEN)))

    # A reload without any inject: the same requests now get the upstream's 401.
    with open(egress.policy, "w") as f:
        f.write(without_inject(POLICY % token_hash))
    egress.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 5
    while "policy reload" not in egress.log_text() and time.time() < deadline:
        time.sleep(0.05)
    check("the policy without inject reloads", "policy reloaded" in egress.log_text(), egress.log_text()[-500:])
    status, _, _, _ = curl(egress, "https://models.test:%d/private/model.bin" % port, egress_ca, *trusted)
    check("after a reload that removes the injection, the same request gets the upstream's 401", status == 401,
          str(status))
    out = git_clone(workdir, egress, egress_ca, git_origin.server_address[1])
    check("the same git clone without the rule's injection fails with the upstream's 401",
          out.returncode != 0 and ("401" in out.stderr or "terminal prompts disabled" in out.stderr), out.stderr[-300:])


def check_plaintext(check, egress, port):
    status, head, body, _ = harness.curl(egress.proxy, "http://plain.test:%d/r" % port)
    check("allow_plaintext: a plain HTTP request gets the credential too", status == 200, "%s %s" % (status, body))
    status, head, body, _ = harness.curl(egress.proxy, "http://plain.test:%d/echo" % port)
    check("allow_plaintext: the plain HTTP response is scrubbed as well",
          status == 200 and "[egress:hf_token]" in body and HF_TOKEN not in head + body, head + body[:200])


def check_echo(check, egress, egress_ca, port):
    status, head, body, _ = curl(egress, "https://echo.test:%d/echo" % port, egress_ca)
    check("an echoed header and body carry [egress:hf_token], not the value",
          status == 200 and "[egress:hf_token]" in body and "[egress:hf_token]" in (harness.header(
              head, "X-Echo-Authorization") or "") and HF_TOKEN not in head + body, head + body[:300])
    for mib in (1, 5):
        out = subprocess.run(["curl", "-s", "-x", egress.proxy, "--cacert", egress_ca,
                              "https://echo.test:%d/big/%d" % (port, mib)], capture_output=True, timeout=60)
        data = out.stdout
        check("a %d MiB echo reaches the worker with every copy of the secret scrubbed" % mib,
              HF_TOKEN.encode() not in data and data.count(b"[egress:hf_token]") > mib * 1000,
              "%d bytes, %d markers" % (len(data), data.count(b"[egress:hf_token]")))
    rows = egress.wait_for_events("event = 'close' AND host = 'echo.test' AND path LIKE '/big/5%'")
    check("the audit counts what was scrubbed", rows and int(rows[-1].get("scrubbed") or 0) > 5000, str(rows[-1:]))


def without_inject(policy):
    """The policy with every inject: block (and allow_plaintext, which
    needs one) removed."""
    out, skip_deeper_than = [], None
    for line in policy.splitlines():
        indent = len(line) - len(line.lstrip())
        if skip_deeper_than is not None and indent > skip_deeper_than:
            continue
        skip_deeper_than = indent if line.strip() == "inject:" else None
        if skip_deeper_than is None and not line.strip().startswith("allow_plaintext:"):
            out.append(line)
    return "\n".join(out) + "\n"


def git_clone(workdir, egress, egress_ca, port):
    dest = os.path.join(workdir, "clone")
    shutil.rmtree(dest, ignore_errors=True)
    git = ["git", "-c", "http.proxy=" + egress.proxy, "-c", "http.sslCAInfo=" + egress_ca, "-c", "credential.helper="]
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="/bin/false", SSH_ASKPASS="/bin/false",
               GIT_SSL_CAINFO=egress_ca)
    out = subprocess.run(git + ["clone", "-q", "https://git.test:%d/private.git" % port, dest], env=env,
                         capture_output=True, text=True, timeout=60)
    out.cloned = out.returncode == 0 and os.path.exists(os.path.join(dest, "model.txt"))
    return out


def check_git(check, workdir, egress, egress_ca, port):
    out = git_clone(workdir, egress, egress_ca, port)
    check("git clone of the private repository through egress, with no credential in the worker", out.cloned,
          out.stderr[-500:])


def check_nowhere(check, workdir, egress, policy_text):
    needles = [v.encode() for v in (HF_TOKEN, GIT_TOKEN, GH_TOKEN)]
    hits = []
    for name in os.listdir(workdir):
        path = os.path.join(workdir, name)
        if name.startswith(("audit.db", "egress.log")) and os.path.isfile(path):
            with open(path, "rb") as f:
                data = f.read()
            hits += [name for n in needles if n in data]
    check("no secret value in the audit database, its WAL or the log", not hits, str(hits))
    policy = os.path.join(workdir, "check-policy.yaml")
    with open(policy, "w") as f:
        f.write(policy_text)
    out = subprocess.run([harness.EGRESS, "check", "--json", "--policy", policy, "--config", egress.config,
                          "--secrets-dir", os.path.join(workdir, "secrets"), "https://git.test:443/private.git"],
                         capture_output=True, text=True, timeout=20)
    check("egress check names the injected header by secret, never the value",
          "git_token" in out.stdout and not any(n.decode() in out.stdout + out.stderr for n in needles),
          out.stdout[-500:] + out.stderr[-300:])


if __name__ == "__main__":
    harness.main(run)
