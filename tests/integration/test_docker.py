"""The guide's Docker deployment, for real, on a dockerd of the test's own
(dockerharness): the egress image built from docker/Dockerfile (RelWithDebInfo,
the build type CI builds; its compiles served from the suite build's ccache
when scripts/test.sh runs it), then docker/docker-compose.yml plus the
rendered override in production, self-hosted and developer mode, with two
runsc workers (roles coder and reviewer, each by its address) on the
internal network and an "internet" container on an external network the
test creates. From inside the workers: the guide's "Testing Sandboxing
Effectiveness" and the proxy path, the role in each audit row; then
`egress sandbox verify --docker`: passes, and fails exactly the right line
with a runc worker and with a worker also on a non-internal network.
Nothing of it is left afterwards. Stage times are printed (docs/docker.md)."""
import json
import os
import re
import secrets
import subprocess
import time

import dockerharness
import harness

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKER_IMAGE = "egress-worker:test"
EGRESS_IP, CODER_IP, REVIEWER_IP = "10.213.160.2", "10.213.160.10", "10.213.160.20"
EGRESS_OUT_IP, INTERNET_IP = "10.213.162.2", "10.213.162.10"
MODES = ("production", "self-hosted", "developer")
ALLOWED, DENIED = "http://allowed.test:8080/", "http://denied.test:8080/"

WORKER_DOCKERFILE = """FROM debian:12-slim
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends curl python3 bind9-dnsutils >/dev/null \\
 && rm -rf /var/lib/apt/lists/*
"""

# The "internet": every request gets the token (python3 in the worker image).
INTERNET_SERVER = """
import http.server, sys
token = sys.argv[1].encode()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", str(len(token))); self.end_headers()
        self.wfile.write(token)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("0.0.0.0", 8080), H).serve_forever()
"""

POLICY = """version: 1
mode: {mode}
internal:
  - host: allowed.test
    ports: any
deny:
  - host: denied.test
roles:
  coder:
    sources: [10.213.160.8/29]
  reviewer:
    sources: [10.213.160.16/29]
"""

# Addresses, images and the test's own networks; everything about isolation
# comes from docker-compose.yml and the rendered override.
TEST_OVERRIDE = """services:
  egress:
    image: egress:latest
    dns: [127.0.0.1]   # the test's egress resolves only Docker's names: no lookup leaves this machine
    volumes:
      - {policies}:/etc/egress/policies:ro
      - {ca}:/etc/egress/ca:ro
    networks:
      sandbox: {{ipv4_address: {egress_ip}}}
      egress: {{ipv4_address: {egress_out_ip}}}
  worker:
    image: {worker_image}
    networks:
      sandbox: {{ipv4_address: {coder_ip}}}
  reviewer:
    image: {worker_image}
    command: ["sleep", "infinity"]
    depends_on: [egress]
    networks:
      sandbox: {{ipv4_address: {reviewer_ip}}}
networks:
  sandbox:
    internal: true   # docker-compose 1.29 replaces the rendered definition whole: repeat it
    ipam:
      config: [{{subnet: {sandbox_subnet}}}]
  egress:
    external: true
    name: {internet}
secrets:
  egress-secrets:
    file: {secrets}
"""


class Stages:
    def __init__(self):
        self.times = []

    def run(self, name, fn, *args):
        start = time.monotonic()
        try:
            return fn(*args)
        finally:
            self.times.append((name, time.monotonic() - start))
            print("stage %-40s %6.1f s" % (name, self.times[-1][1]), flush=True)


def exec_in(d, container, *argv, timeout=60):
    return d.docker("exec", container, *argv, check=False, timeout=timeout)


def sandbox_probes(d, check, worker, mode, marker, token):
    """The guide's "Testing Sandboxing Effectiveness", from inside `worker`."""
    tag = "%s %s: " % (mode, worker.split("_")[1])
    r = exec_in(d, worker, "cat", "/etc/shadow")
    check(tag + "cat /etc/shadow fails", r.returncode != 0, r.stdout[:100])
    r = exec_in(d, worker, "test", "-e", marker)
    check(tag + "a host file is not visible", r.returncode == 1, str(r.returncode))
    # The worker runs as 65534, so EACCES may come before EROFS: the root
    # mount's own options say whether it is read-only (as verify's probe reads them).
    r = exec_in(d, worker, "touch", "/test.txt")
    root = exec_in(d, worker, "python3", "-c",
                   "print([l.split()[3] for l in open('/proc/self/mounts') if l.split()[1] == '/'][0])")
    check(tag + "touch /test.txt fails, / is mounted ro", r.returncode != 0 and
          "ro" in root.stdout.strip().split(","), r.stderr + " / " + root.stdout + root.stderr)
    r = exec_in(d, worker, "curl", "-sS", "--noproxy", "*", "--max-time", "3", "http://%s:8080/" % INTERNET_IP)
    check(tag + "direct curl to the internet fails", r.returncode != 0 and token not in r.stdout, r.stderr)
    for name in ("allowed.test", "outside-name.example"):
        r = exec_in(d, worker, "nslookup", "-timeout=2", "-retry=0", name)
        check(tag + "nslookup %s fails" % name, r.returncode != 0, r.stdout[-200:])
        r = exec_in(d, worker, "getent", "hosts", name)
        check(tag + "getent hosts %s fails" % name, r.returncode != 0, r.stdout)
    r = exec_in(d, worker, "getent", "hosts", "egress")
    check(tag + "the service name egress resolves (control)", r.stdout.startswith(EGRESS_IP), r.stdout)
    r = exec_in(d, worker, "python3", "-c", "import os; os.setuid(0)")
    check(tag + "setuid(0) fails", r.returncode != 0 and "PermissionError" in r.stderr, r.stderr[-200:])
    r = exec_in(d, worker, "cat", "/proc/1/cmdline")
    check(tag + "/proc/1 is the worker's (sleep infinity)", r.stdout == "sleep\0infinity\0", repr(r.stdout))
    r = exec_in(d, worker, "uname", "-r")
    check(tag + "the kernel is gVisor's (uname 4.4.0)", r.stdout.strip() == "4.4.0" and
          r.stdout.strip() != os.uname().release, r.stdout)
    r = exec_in(d, worker, "curl", "-sS", "--max-time", "10", ALLOWED)
    check(tag + "allowed through egress:3128: 200 with the internet's token", r.stdout == token, r.stdout + r.stderr)
    r = exec_in(d, worker, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", DENIED)
    check(tag + "denied through egress:3128: 403", r.stdout == "403", r.stdout + r.stderr)


def audit_roles(d, egress):
    """(client address, role, host, decision) of every audited request."""
    r = exec_in(d, egress, "egress", "audit", "query", "--db", "/var/lib/egress/audit.db", "--format", "csv")
    lines = r.stdout.splitlines()
    if not lines:
        return []
    head = lines[0].split(",")
    rows = [dict(zip(head, l.split(","))) for l in lines[1:]]
    return [(x.get("client_addr", "").rsplit(":", 1)[0], x.get("role"), x.get("host"), x.get("decision"))
            for x in rows]


def verify(d, *args):
    r = subprocess.run([harness.EGRESS, "sandbox", "verify", "--docker-cli", dockerharness.DOCKER, *args,
                        "--allowed-url", ALLOWED, "--denied-url", DENIED], capture_output=True, text=True,
                       timeout=300, env=d.env)
    print(r.stdout[-6000:], r.stderr[-2000:])
    return r.returncode, re.findall(r"\[FAIL\] (.*)", r.stdout), r.stdout


def deploy(d, check, workdir, mode, internet, stages, marker, token, with_bad_cases):
    project = "egit" + mode.replace("-", "")
    mdir = os.path.join(workdir, mode)
    policies, ca = os.path.join(mdir, "policies"), os.path.join(mdir, "ca")
    os.makedirs(policies)
    os.makedirs(ca)
    with open(os.path.join(policies, mode + ".yaml"), "w") as f:
        f.write(POLICY.format(mode=mode))
    os.chmod(mdir, 0o755)
    # egress's secrets directory as the compose file asks: root:10001, 0750; a file 0640.
    secrets_dir = os.path.join(mdir, "secrets")
    os.mkdir(secrets_dir)
    with open(os.path.join(secrets_dir, "hf_token"), "w") as f:
        f.write("hf-" + secrets.token_hex(16) + "\n")
    for path, mode_bits in ((secrets_dir, 0o750), (os.path.join(secrets_dir, "hf_token"), 0o640)):
        os.chown(path, 0, 10001)
        os.chmod(path, mode_bits)
    r = subprocess.run([harness.EGRESS, "sandbox", "render", "--mode", mode, "--target", "compose", "--out", mdir,
                        "--worker-service", "worker", "--worker-service", "reviewer"],
                       capture_output=True, text=True, timeout=30)
    check(mode + ": sandbox render --target compose", r.returncode == 0, r.stderr)
    override = os.path.join(mdir, "test.yml")
    with open(override, "w") as f:
        f.write(TEST_OVERRIDE.format(policies=policies, ca=ca, egress_ip=EGRESS_IP, egress_out_ip=EGRESS_OUT_IP,
                                     worker_image=WORKER_IMAGE, coder_ip=CODER_IP, reviewer_ip=REVIEWER_IP,
                                     sandbox_subnet=dockerharness.SANDBOX_SUBNET, internet=internet,
                                     secrets=secrets_dir))
    files = [os.path.join(REPO, "docker", "docker-compose.yml"), os.path.join(mdir, "docker-compose.sandbox.yml"),
             override]
    try:
        stages.run(mode + ": compose up", d.compose, project, files, "up", "-d", "--no-build")
        egress, coder, reviewer = project + "_egress_1", project + "_worker_1", project + "_reviewer_1"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "egress listening on" not in d.docker(
                "logs", egress, check=False).stdout:
            time.sleep(0.5)
        logs = d.docker("logs", egress, check=False)  # the banner is on stdout (the audit stream is off)
        check(mode + ": egress serves in its container", "egress listening on" in logs.stdout,
              (logs.stdout + logs.stderr)[-1500:])
        info = {c["Name"].lstrip("/"): c for c in d.inspect(egress, coder, reviewer)}
        for w in (coder, reviewer):
            check(mode + ": %s runs under runsc" % w, info[w]["HostConfig"]["Runtime"] == "runsc")
            check(mode + ": %s is only on the internal network" % w,
                  list(info[w]["NetworkSettings"]["Networks"]) == [project + "_sandbox"],
                  str(list(info[w]["NetworkSettings"]["Networks"])))
        nets = sorted(info[egress]["NetworkSettings"]["Networks"])
        check(mode + ": egress is on both networks", nets == sorted([project + "_sandbox", internet]), str(nets))
        e = info[egress]
        check(mode + ": egress runs read-only as 10001 with the policies read-only",
              e["HostConfig"]["ReadonlyRootfs"] and e["Config"]["User"] == "10001:10001" and
              any(m["Destination"] == "/etc/egress/policies" and not m["RW"] for m in e["Mounts"]) and
              any(m["Destination"] == "/var/lib/egress" and m["Type"] == "volume" for m in e["Mounts"]),
              str(e["Mounts"]))
        check(mode + ": egress loaded its secret from the compose secret", "1 secret(s) loaded from "
              "/run/secrets/egress-secrets" in logs.stdout + logs.stderr, (logs.stdout + logs.stderr)[-1500:])
        check(mode + ": egress serves the mode's policy", "/etc/egress/policies/%s.yaml" % mode in e["Args"] and
              mode in e["Args"], str(e["Args"]))

        stages.run(mode + ": probes from both workers", lambda: [
            sandbox_probes(d, check, w, mode, marker, token) for w in (coder, reviewer)])
        deadline = time.monotonic() + 15
        rows = []
        while time.monotonic() < deadline:
            rows = audit_roles(d, egress)
            if len([x for x in rows if x[0] in (CODER_IP, REVIEWER_IP)]) >= 4:
                break
            time.sleep(0.5)
        for ip, role in ((CODER_IP, "coder"), (REVIEWER_IP, "reviewer")):
            mine = [x for x in rows if x[0] == ip]
            check(mode + ": audit rows of %s name role %s (allow and deny)" % (ip, role),
                  len(mine) >= 2 and all(x[1] == role for x in mine) and
                  ("allowed.test", "allow") in [(x[2], x[3]) for x in mine] and
                  ("denied.test", "deny") in [(x[2], x[3]) for x in mine], str(rows))

        code, fails, out = stages.run(mode + ": sandbox verify --compose-project", verify, d,
                                      "--compose-project", project, "--secrets-dir", secrets_dir)
        check(mode + ": verify --compose-project passes", code == 0 and not fails, str(fails))
        for line in ("Docker daemon configured with runsc runtime", "AI workers using gVisor runtime",
                     "Network isolation enabled (internal network)", "DNS resolution disabled for workers",
                     "Logging and monitoring configured", "Egress proxy path (allowed 200, denied 403)",
                     "Secrets not visible to workers"):
            check(mode + ": verify [PASS] " + line, "[PASS] " + line in out)
        if with_bad_cases:
            stages.run(mode + ": verify's two bad cases", bad_cases, d, check, project, files, mdir, coder)
    finally:
        stages.run(mode + ": compose down", lambda: d.compose(project, files, "down", "-v", "--timeout", "5",
                                                              check=False))
    left = d.docker("ps", "-aq", "--filter", "label=com.docker.compose.project=" + project).stdout.split()
    check(mode + ": compose down left no container", not left, str(left))


def bad_cases(d, check, project, files, mdir, coder):
    runc = os.path.join(mdir, "runc.yml")
    with open(runc, "w") as f:
        f.write("services:\n  worker:\n    runtime: runc\n")
    d.compose(project, files + [runc], "up", "-d", "--no-build", "worker")
    code, fails, _ = verify(d, "--docker", coder, "--egress-container", project + "_egress_1")
    check("a runc worker: verify exits 1", code == 1)
    check("a runc worker: exactly the gVisor workers line fails", fails == ["AI workers using gVisor runtime"],
          str(fails))
    d.compose(project, files, "up", "-d", "--no-build", "worker")
    d.docker("network", "connect", project + "_open", coder)
    code, fails, _ = verify(d, "--docker", coder, "--egress-container", project + "_egress_1")
    check("a worker also on a non-internal network: verify exits 1", code == 1)
    check("a worker also on a non-internal network: exactly the network isolation line fails",
          fails == ["Network isolation enabled (internal network)"], str(fails))
    d.docker("network", "disconnect", "-f", project + "_open", coder, check=False)


def run(workdir, results):
    check = results.check
    check("running as root", os.geteuid() == 0)
    if os.geteuid() != 0:
        return
    stages = Stages()
    d = dockerharness.Dockerd(harness.EGRESS)
    marker = "/run/egress-it-host-file-" + secrets.token_hex(4)
    token = "internet-" + secrets.token_hex(8)
    open(marker, "w").write("host only\n")
    try:
        stages.run("dockerd start", d.start)
        runtimes = json.loads(d.docker("info", "--format", "{{json .Runtimes}}").stdout)
        check("dockerd has the rendered runsc runtime", runtimes.get("runsc", {}).get("path") == "/usr/bin/runsc",
              str(runtimes))
        stages.run("base image (debootstrap, import)", d.base_image)
        stages.run("worker image", d.build, WORKER_IMAGE, WORKER_DOCKERFILE)
        # scripts/test.sh's build went through ccache: the image build, at the
        # same path (SOURCE_DIR), reuses its objects (docs/docker.md).
        start = time.monotonic()
        ccache_dir = os.environ.get("CCACHE_DIR", "")
        if os.path.isdir(ccache_dir):
            stages.run("compiler cache seeded from the suite's build", d.seed_compiler_cache, ccache_dir)
        built = stages.run("egress image (docker/Dockerfile)", d.build, "egress:latest", None, REPO,
                           os.path.join(REPO, "docker", "Dockerfile"), ["SOURCE_DIR=" + REPO])
        for line in built.stderr.splitlines():  # ccache --show-stats in the build stage
            if re.search(r"\b(Hits|Misses):", line):
                print("image build compiler cache: " + line.split(None, 2)[-1].strip())
        image = d.inspect("egress:latest")[0]
        print("egress image: %.1f MB, built in %.0f s" % (image["Size"] / 1e6, time.monotonic() - start))
        check("the egress image runs as 10001", image["Config"]["User"] == "10001:10001", image["Config"]["User"])
        # `egress check` in the image, read-only, no capabilities, no network:
        # names come from the config's hosts, so nothing is looked up outside.
        cdir = os.path.join(workdir, "check")
        os.makedirs(cdir)
        with open(os.path.join(cdir, "policy.yaml"), "w") as f:
            f.write(POLICY.format(mode="production"))
        with open(os.path.join(cdir, "egress.yaml"), "w") as f:
            f.write('dns:\n  hosts_file: false\n  servers: ["127.0.0.1:9"]\n  timeout: 500ms\n  hosts:\n'
                    '    allowed.test: [%s]\n    denied.test: [%s]\n' % (INTERNET_IP, INTERNET_IP))
        os.chmod(workdir, 0o755)
        os.chmod(cdir, 0o755)
        for host, want in (("allowed.test", 0), ("denied.test", 1)):
            r = d.docker("run", "--rm", "--read-only", "--cap-drop", "ALL", "--network", "none", "-v",
                         cdir + ":/etc/egress/check:ro", "egress:latest", "check", "--config",
                         "/etc/egress/check/egress.yaml", "--policy", "/etc/egress/check/policy.yaml",
                         "--source", CODER_IP, "http://%s:8080/" % host, check=False)
            check("docker run egress:latest check %s: exit %d (read-only, uid 10001, no network)" % (host, want),
                  r.returncode == want and "role:      coder" in r.stdout, r.stdout + r.stderr)

        internet = "egress-it-internet"
        d.docker("network", "create", "--subnet", dockerharness.INTERNET_SUBNET, internet)
        d.docker("run", "-d", "--name", "egress-it-internet", "--network", internet, "--ip", INTERNET_IP,
                 "--network-alias", "allowed.test", "--network-alias", "denied.test", WORKER_IMAGE,
                 "python3", "-c", INTERNET_SERVER, token)
        for i, mode in enumerate(MODES):
            if mode == "self-hosted":
                d.docker("network", "create", "--subnet", dockerharness.OPEN_SUBNET, "egitselfhosted_open")
            deploy(d, check, workdir, mode, internet, stages, marker, token, with_bad_cases=mode == "self-hosted")
    finally:
        os.unlink(marker)
        stages.run("teardown", d.stop)
        left = d.leftovers()
        check("nothing of the Docker test is left (containers, networks, volumes, image store, dockerd, mounts, "
              "bridge, iptables)", not left, "\n".join(left))
        print("stages: " + ", ".join("%s %.0f s" % t for t in stages.times))

if __name__ == "__main__":
    harness.main(run)
