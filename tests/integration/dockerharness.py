"""A Docker engine of the test's own, for the Docker tests: Debian's dockerd
(docker.io 20.10; /usr/bin/docker and /usr/sbin/dockerd by path, since a
different client may come first on PATH) with a temporary data root, exec
root, socket and pid file; its runtimes from `egress sandbox render --target
docker-daemon` (so the render is what is tested) and every address in
10.213.128.0/18, a block of the project's test range the sandbox tests
(10.213.241-254.x) do not use. Images are made offline: debootstrap from the
Debian archive the machine's apt sources name, `docker import`ed as
debian:12-slim (docker/Dockerfile's FROM), so nothing is pulled.

Dockerd.stop() removes every container, network and volume, stops dockerd
by its PID, unmounts what is left under its roots, removes them, deletes
the bridge and the iptables rules and chains dockerd added, and restores
ip_forward; leftovers() says what is still there (the test checks it is
nothing)."""
import glob
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time

DOCKER = "/usr/bin/docker"
DOCKERD = "/usr/sbin/dockerd"
COMPOSE = "/usr/bin/docker-compose"
BRIDGE_IP = "10.213.128.1/24"           # docker0 (--bip): image builds run here
POOL = "10.213.144.0/20"                # networks without an explicit subnet
SANDBOX_SUBNET = "10.213.160.0/24"      # compose `sandbox` (internal)
INTERNET_SUBNET = "10.213.162.0/24"     # the test's "internet" (compose `egress`, external)
OPEN_SUBNET = "10.213.163.0/24"         # a non-internal network for the bad case
CACHE = os.environ.get("EGRESS_DOCKER_CACHE", "/var/tmp/egress-docker-cache")
BASE_TAG = "debian:12-slim"
ROOTFS_TAG = "egress-rootfs:test"       # the debootstrap tarball as imported, before BASE_TAG adds the sources


# Copies the build context (a compiler cache) into the cache mount.
SEED_DOCKERFILE = """FROM debian:12-slim
RUN --mount=type=cache,id=egress-ccache,target=/root/.cache/ccache --mount=type=bind,target=/seed \\
    cp -a /seed/. /root/.cache/ccache/
"""


BOOKWORM_SUITES = ("bookworm", "bookworm-updates", "bookworm-security")


def debian_sources():
    """(archive, suite) for each Debian bookworm suite with `main` in the
    apt sources (deb822 .sources or one-line .list), in order, e.g.
    ("http://deb.debian.org/debian", "bookworm")."""
    files = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")) + \
        sorted(glob.glob("/etc/apt/sources.list.d/*.sources"))
    found = []
    for path in files:
        if not os.path.isfile(path):
            continue
        text = open(path).read()
        if path.endswith(".sources"):
            for stanza in re.split(r"\n\s*\n", text):
                fields = {}
                for line in stanza.splitlines():
                    m = re.match(r"^([A-Za-z-]+):\s*(.*)$", line)
                    if m:
                        fields[m.group(1).lower()] = m.group(2).split()
                if "deb" in fields.get("types", []) and "main" in fields.get("components", []) and \
                        fields.get("enabled", ["yes"])[0] != "no":
                    found += [(uri, suite) for uri in fields.get("uris", []) for suite in fields.get("suites", [])]
        else:
            for line in text.splitlines():
                m = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+.*\bmain\b", line)
                if m:
                    found.append((m.group(1), m.group(2)))
    return [(uri, suite) for uri, suite in found if suite in BOOKWORM_SUITES]


def debian_mirror():
    """The first Debian archive for bookworm itself, e.g. http://deb.debian.org/debian."""
    for uri, suite in debian_sources():
        if suite == "bookworm":
            return uri
    raise RuntimeError("no Debian bookworm archive in the apt sources; debootstrap needs one")


def iptables_rules():
    """{table: (chains, rules, {built-in chain: policy})} as iptables-save prints them."""
    out = subprocess.run(["iptables-save"], capture_output=True, text=True, timeout=30).stdout
    tables, table = {}, None
    for line in out.splitlines():
        if line.startswith("*"):
            table = line[1:]
            tables[table] = (set(), [], {})
        elif line.startswith(":") and table:
            name, policy = line[1:].split()[:2]
            if policy == "-":
                tables[table][0].add(name)
            else:
                tables[table][2][name] = policy
        elif line.startswith("-A ") and table:
            tables[table][1].append(line)
    return tables


def mounts_under(path):
    points = []
    for line in open("/proc/self/mountinfo"):
        point = line.split()[4].replace("\\040", " ")
        if point == path or point.startswith(path.rstrip("/") + "/"):
            points.append(point)
    return points


class Dockerd:
    def __init__(self, egress, log=print):
        self.egress = egress
        self.log = log
        self.root = tempfile.mkdtemp(prefix="egress-dockerd-", dir="/var/tmp")
        self.sock = os.path.join(self.root, "docker.sock")
        self.env = dict(os.environ, DOCKER_HOST="unix://" + self.sock, DOCKER_BUILDKIT="1",
                        COMPOSE_INTERACTIVE_NO_CLI="1")
        self.proc = None
        self.iptables_before = iptables_rules()
        self.forward_before = open("/proc/sys/net/ipv4/ip_forward").read().strip()
        self.bridge_existed = os.path.exists("/sys/class/net/docker0")
        self.links_before = set(os.listdir("/sys/class/net"))

    def daemon_json(self):
        """Our keys first, then the rendered runtimes merged in by egress."""
        with open(os.path.join(self.root, "daemon.json"), "w") as f:
            json.dump({"bip": BRIDGE_IP, "default-address-pools": [{"base": POOL, "size": 24}],
                       "ip6tables": False, "log-driver": "json-file"}, f)
        # Debian 12's runsc needs --network=host (docs/docker.md: gvisor#10704).
        r = subprocess.run([self.egress, "sandbox", "render", "--target", "docker-daemon", "--out", self.root,
                            "--runsc-arg=--network=host"], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError("sandbox render --target docker-daemon failed: " + r.stderr)
        return json.load(open(os.path.join(self.root, "daemon.json")))

    def start(self, timeout=60):
        self.daemon_json()
        self.logfile = open(os.path.join(self.root, "dockerd.log"), "w")
        self.proc = subprocess.Popen(
            [DOCKERD, "--config-file", os.path.join(self.root, "daemon.json"), "--data-root",
             os.path.join(self.root, "data"), "--exec-root", os.path.join(self.root, "exec"), "-H",
             "unix://" + self.sock, "--pidfile", os.path.join(self.root, "docker.pid")],
            stdout=self.logfile, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("dockerd exited %d: %s" % (self.proc.returncode, self.log_tail()))
            if self.docker("version", check=False, timeout=10).returncode == 0:
                return
            time.sleep(0.5)
        raise RuntimeError("dockerd did not answer within %ds: %s" % (timeout, self.log_tail()))

    def log_tail(self, n=3000):
        try:
            return open(os.path.join(self.root, "dockerd.log")).read()[-n:]
        except OSError:
            return ""

    def docker(self, *args, check=True, timeout=120, input=None):
        r = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout, env=self.env,
                           input=input)
        if check and r.returncode != 0:
            raise RuntimeError("docker %s: exit %d: %s" % (" ".join(args)[:200], r.returncode,
                                                           (r.stderr or r.stdout)[-2000:]))
        return r

    def compose(self, project, files, *args, check=True, timeout=300):
        argv = [COMPOSE, "-p", project]
        for f in files:
            argv += ["-f", f]
        r = subprocess.run(argv + list(args), capture_output=True, text=True, timeout=timeout, env=self.env)
        if check and r.returncode != 0:
            raise RuntimeError("docker-compose %s: exit %d: %s" % (" ".join(args), r.returncode,
                                                                   (r.stderr + r.stdout)[-3000:]))
        return r

    def inspect(self, *names):
        return json.loads(self.docker("inspect", *names).stdout)

    # --- images -----------------------------------------------------------
    def base_image(self):
        """debian:12-slim from debootstrap (cached as a tarball in CACHE)."""
        os.makedirs(CACHE, exist_ok=True)
        tarball = os.path.join(CACHE, "bookworm-minbase.tar")
        if not os.path.exists(tarball) or time.time() - os.path.getmtime(tarball) > 30 * 86400:
            rootfs = tempfile.mkdtemp(prefix="bookworm-", dir=CACHE)
            try:
                subprocess.run(["debootstrap", "--variant=minbase", "bookworm", rootfs, debian_mirror()],
                               check=True, capture_output=True, timeout=900)
                for junk in glob.glob(rootfs + "/var/cache/apt/archives/*.deb") + \
                        glob.glob(rootfs + "/var/lib/apt/lists/*_*"):
                    os.unlink(junk)
                subprocess.run(["tar", "-C", rootfs, "-cf", tarball + ".tmp", "."], check=True, timeout=300)
                os.rename(tarball + ".tmp", tarball)
            finally:
                shutil.rmtree(rootfs, ignore_errors=True)
        with open(tarball, "rb") as f:
            r = subprocess.run([DOCKER, "import", "-", ROOTFS_TAG], stdin=f, capture_output=True, text=True,
                               timeout=300, env=self.env)
        if r.returncode != 0:
            raise RuntimeError("docker import: " + r.stderr)
        # debootstrap writes only `bookworm main`; like the official image,
        # the base gets the host's bookworm, -updates and -security suites,
        # so images install the same package versions as the host (the
        # image build's compiler cache hits depend on identical headers).
        context = tempfile.mkdtemp(prefix="egress-base-", dir=self.root)
        with open(os.path.join(context, "sources.list"), "w") as f:
            f.write("".join("deb %s %s main\n" % source for source in debian_sources()))
        self.build(BASE_TAG, "FROM %s\nCOPY sources.list /etc/apt/sources.list\n" % ROOTFS_TAG, context=context)
        self.docker("rmi", ROOTFS_TAG)

    def build(self, tag, dockerfile_text=None, context=None, dockerfile=None, build_args=(), timeout=1800):
        """docker build; from Dockerfile text on stdin (with or without a
        context directory) or a Dockerfile in the context. Package installs
        reach the Debian archive."""
        args = ["build", "--progress=plain", "-t", tag]
        for arg in build_args:
            args += ["--build-arg", arg]
        if dockerfile_text is not None:
            where = ["-f", "-", context] if context else ["-"]
            return self.docker(*args, *where, input=dockerfile_text, timeout=timeout)
        return self.docker(*args, "-f", dockerfile, context, timeout=timeout)

    def seed_compiler_cache(self, ccache_dir):
        """Copies a host compiler cache into the BuildKit cache mount that
        docker/Dockerfile's build stage compiles through (id egress-ccache)."""
        self.build("egress-ccache-seed:test", SEED_DOCKERFILE, context=ccache_dir, timeout=600)
        self.docker("rmi", "egress-ccache-seed:test")

    # --- teardown ---------------------------------------------------------
    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            ids = self.docker("ps", "-aq", check=False, timeout=30).stdout.split()
            if ids:
                self.docker("rm", "-f", "-v", *ids, check=False, timeout=120)
            self.docker("network", "prune", "-f", check=False, timeout=60)
            self.docker("volume", "prune", "-f", check=False, timeout=60)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        for pid in self.processes():  # shims of containers that failed to start outlive dockerd
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.5 if self.processes() else 0)
        for point in sorted(mounts_under(self.root), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)
        if not self.bridge_existed and os.path.exists("/sys/class/net/docker0"):
            subprocess.run(["ip", "link", "delete", "docker0"], capture_output=True, timeout=10)
        for link in set(os.listdir("/sys/class/net")) - self.links_before:  # a build killed mid-way leaves its veth
            if link.startswith(("veth", "br-")):
                subprocess.run(["ip", "link", "delete", link], capture_output=True, timeout=10)
        self.restore_iptables()
        with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
            f.write(self.forward_before)

    def restore_iptables(self):
        """Deletes the rules, then the chains, dockerd added (only those)."""
        now = iptables_rules()
        for table, (chains, rules, policies) in now.items():
            old_chains, old_rules, old_policies = self.iptables_before.get(table, (set(), [], {}))
            for rule in reversed(rules):
                if rule not in old_rules:
                    subprocess.run(["iptables", "-t", table, "-D"] + shlex.split(rule)[1:], capture_output=True,
                                   timeout=10)
            for chain in chains - old_chains:
                subprocess.run(["iptables", "-t", table, "-F", chain], capture_output=True, timeout=10)
                subprocess.run(["iptables", "-t", table, "-X", chain], capture_output=True, timeout=10)
            for chain, policy in policies.items():  # dockerd sets FORWARD to DROP
                if policy != old_policies.get(chain, "ACCEPT"):
                    subprocess.run(["iptables", "-t", table, "-P", chain, old_policies.get(chain, "ACCEPT")],
                                   capture_output=True, timeout=10)

    def processes(self):
        """PIDs whose command line names our roots (dockerd, containerd, shims)."""
        pids = []
        for pid in os.listdir("/proc"):
            if pid.isdigit() and int(pid) != os.getpid():
                try:
                    cmd = open("/proc/%s/cmdline" % pid, "rb").read()
                except OSError:
                    continue
                if self.root.encode() in cmd:
                    pids.append(int(pid))
        return pids

    def leftovers(self):
        left = []
        if self.proc is not None and self.proc.poll() is None:
            left.append("dockerd pid %d" % self.proc.pid)
        left += ["process %d" % p for p in self.processes()]
        left += ["mount " + m for m in mounts_under(self.root)]
        if os.path.exists(self.root):
            left.append("directory " + self.root)
        if not self.bridge_existed and os.path.exists("/sys/class/net/docker0"):
            left.append("link docker0")
        left += ["link " + l for l in set(os.listdir("/sys/class/net")) - self.links_before
                 if l.startswith(("veth", "br-"))]
        now = iptables_rules()
        for table, (chains, rules, policies) in now.items():
            old_chains, old_rules, old_policies = self.iptables_before.get(table, (set(), [], {}))
            left += ["iptables %s chain %s" % (table, c) for c in chains - old_chains]
            left += ["iptables %s rule %s" % (table, r) for r in rules if r not in old_rules]
            left += ["iptables %s policy %s %s" % (table, c, p) for c, p in policies.items()
                     if p != old_policies.get(c, "ACCEPT")]
        return left
