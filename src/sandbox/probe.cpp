// The in-sandbox half of `sandbox verify`. Written in Python because it
// must run in the worker's own image, where python3 and curl are what a
// worker has; every connection it makes goes to the proxy, the upstream in
// verify's own namespace, or loopback.
#include "sandbox/probe.h"

#include <algorithm>

#include "egress/policy/policy.h"

namespace egress::sandbox {
namespace {

std::string secret_fingerprints(const secrets::SecretStore& store) {
  std::string out;
  for (auto name : store.names()) {
    const std::string& value = *store.find(name);
    std::replace(name.begin(), name.end(), ';', '_');  // the list separator; the name is only shown
    out.append(name).append(":").append(std::to_string(value.size())).append(":");
    out.append(policy::hash_token(value).substr(7)).append(";");  // without "sha256:"
  }
  return out;
}

}  // namespace

SecretSearch secret_search(const std::string& secrets_dir, Breakage breakage) {
  if (secrets_dir.empty())
    return {{}, Line{"SKIP", "give --secrets-dir (egress's secrets directory) to search the worker for their values"}};
  secrets::SecretStore store;
  try {
    store = secrets::SecretStore::load(secrets_dir);
  } catch (const secrets::SecretsError& e) {
    throw SandboxError(e.what());
  }
  const auto names = store.names();
  if (names.empty()) return {{}, Line{"SKIP", secrets_dir + " holds no secrets"}};
  SecretSearch search{{"V_SECRETS=" + secret_fingerprints(store)}, std::nullopt};
  if (breakage == Breakage::SecretInEnv) search.probe_env.push_back("EGRESS_VERIFY_LEAKED=" + *store.find(names[0]));
  return search;
}

const char* const kProbeScript = R"PY(
import ctypes, errno, os, re, socket, stat, subprocess, urllib.request
E = os.environ
UP, UP_PORT, TOKEN = E["V_UP"], int(E["V_UP_PORT"]), E["V_TOKEN"]
PROXY_IP, HOSTSVC_PORT, LOOP_PORT = E["V_PROXY_IP"], int(E["V_HOSTSVC_PORT"]), int(E["V_LOOP_PORT"])
ALLOWED, DENIED = E.get("V_ALLOWED_URL", ""), E.get("V_DENIED_URL", "")
# V_DOCKER=1: `sandbox verify --docker` runs this through `docker exec` in a
# running worker; Docker's internal networks keep a default route to a bridge
# that drops what it forwards, so a direct connection times out instead of
# failing with ENETUNREACH, and PID 1 is the container's command.
DOCKER = E.get("V_DOCKER") == "1"
DNS_NAME = E.get("V_DNS_NAME", "example.com")

def check(cid, ok, detail):
    print("CHECK|%s|%s|%s" % (cid, "PASS" if ok else "FAIL", detail.replace("\n", " ")), flush=True)
def en(e):
    if isinstance(e, OSError) and e.errno: return errno.errorcode.get(e.errno, str(e.errno))
    return "%s(%s)" % (type(e).__name__, e)
def curl(*args, max_time=5):
    try:
        p = subprocess.run(["curl", "-sS", "--max-time", str(max_time), *args], capture_output=True, text=True, timeout=20)
        return p.returncode, p.stdout, p.stderr.strip()
    except Exception as e:
        return -1, "", en(e)
def tcp(ip, port):
    s = socket.socket(); s.settimeout(2)
    try:
        s.connect((ip, port)); return None
    except OSError as e:
        return e
    finally:
        s.close()

# proxy path: allowed -> 200 with the upstream's token, denied -> 403
if ALLOWED:
    rc, so, se = curl("-o", "/dev/null", "-w", "%{http_code}", ALLOWED)
    ok = so.strip() == "200"
    detail = "curl %s -> HTTP %s" % (ALLOWED, so.strip() or se)
    if "sandbox.test" in ALLOWED:
        try:
            body = urllib.request.urlopen(ALLOWED, timeout=5).read().decode().strip()
            ok = ok and body == TOKEN
            detail += "; urllib body %s" % ("is the upstream's token" if body == TOKEN else "WRONG")
        except Exception as e:
            ok, detail = False, detail + "; urllib " + en(e)
    check("allowed", ok, detail)
if DENIED:
    rc, so, se = curl("-o", "/dev/null", "-w", "%{http_code}", DENIED)
    check("denied", so.strip() == "403", "curl %s -> HTTP %s" % (DENIED, so.strip() or se))

# network: direct connections fail
e1 = tcp(UP, UP_PORT)
rc, so, se = curl("--noproxy", "*", "http://%s:%d/" % (UP, UP_PORT), max_time=2)
check("direct", e1 is not None and (DOCKER or e1.errno == errno.ENETUNREACH) and rc != 0,
      "connect %s:%d -> %s; curl --noproxy rc=%d" % (UP, UP_PORT, en(e1) if e1 else "CONNECTED", rc))
if HOSTSVC_PORT:
    e2 = tcp(PROXY_IP, HOSTSVC_PORT)
    check("hostsvc", e2 is not None, "host service on the proxy address %s:%d -> %s" % (PROXY_IP, HOSTSVC_PORT, en(e2) if e2 else "CONNECTED"))
if LOOP_PORT:
    e3 = tcp("127.0.0.1", LOOP_PORT)
    check("loopback", e3 is not None, "host loopback port %d from the sandbox -> %s" % (LOOP_PORT, en(e3) if e3 else "CONNECTED"))
try:
    routes = open("/proc/net/route").read().splitlines()[1:]
    default = [r for r in routes if r.split()[1] == "00000000"]
    check("noroute", not default, "default routes: %d of %d" % (len(default), len(routes)))
except OSError as e:
    check("noroute", e1 is not None and e1.errno == errno.ENETUNREACH, "/proc/net/route %s; judged by ENETUNREACH" % en(e))
ifs = [l.split(":")[0].strip() for l in open("/proc/net/dev").read().splitlines()[2:]]
check("ifaces", len(ifs) == 2 and "lo" in ifs, "interfaces %s" % ifs)

# DNS
try:
    socket.getaddrinfo(DNS_NAME, 443)
    dns_ok, dns_detail = False, "getaddrinfo(%s) answered" % DNS_NAME
except OSError as e:
    dns_ok, dns_detail = True, "getaddrinfo(%s) -> %s" % (DNS_NAME, en(e))
for tool in (["getent", "hosts", DNS_NAME], ["nslookup", "-timeout=2", "-retry=0", DNS_NAME]):
    if DOCKER and any(os.path.exists(d + "/" + tool[0]) for d in ("/usr/bin", "/bin")):
        try:
            p = subprocess.run(tool, capture_output=True, text=True, timeout=15)
            dns_ok = dns_ok and p.returncode != 0
            dns_detail += "; %s exit %d" % (tool[0], p.returncode)
        except subprocess.TimeoutExpired:
            dns_detail += "; %s no answer in 15 s" % tool[0]
check("dns", dns_ok, dns_detail)

# filesystem
res = []
for p in ("/egress-verify-probe", "/usr/egress-verify-probe"):
    try:
        with open(p, "w") as f: f.write("x")
        res.append("%s WRITTEN" % p)
    except OSError as e:
        res.append("%s %s" % (p, en(e)))
root_opts = [l.split()[3] for l in open("/proc/self/mounts") if l.split()[1] == "/"]
ro = bool(root_opts) and "ro" in root_opts[0].split(",")
check("rootro", ro and not any("WRITTEN" in r for r in res), "; ".join(res) + "; / mounted " + (root_opts[0] if root_opts else "?"))
try:
    with open("/tmp/egress-probe", "w") as f: f.write("ok")
    t_ok = open("/tmp/egress-probe").read() == "ok"
except OSError:
    t_ok = False
tmp_fs = [l.split()[2] for l in open("/proc/self/mounts") if l.split()[1] == "/tmp"]
check("tmp", t_ok and tmp_fs == ["tmpfs"], "/tmp write %s, fs %s" % ("ok" if t_ok else "FAILED", tmp_fs))
res = []
for p in ("/etc/shadow", "/root/.bashrc", "/root"):
    try:
        if os.path.isdir(p): os.listdir(p)
        else: open(p).read(1)
        res.append("%s READABLE" % p)
    except OSError as e:
        res.append("%s %s" % (p, en(e)))
marker = E.get("V_HOST_MARKER", "")
if marker:
    res.append("host file %s %s" % (marker, "VISIBLE" if os.path.exists(marker) else "not visible"))
check("hostfiles", not any(w in r for r in res for w in ("READABLE", "VISIBLE")), "; ".join(res))

# secrets: V_SECRETS is "name:length:sha256;..." of egress's secrets, so the
# probe recognises a value without being given it. Searched: the environment,
# every /proc/N/environ and cmdline, and readable files (up to 4 MiB each) on
# every mount but /proc, /sys and /dev, plus /etc /run /var /tmp /home /root
# /mnt /srv /opt; a file matches when its content, a line or a token of it
# (split at blanks, = : , ; and quotes) hashes to a secret.
SECRETS = [x.rsplit(":", 2) for x in E.get("V_SECRETS", "").split(";") if x]
if SECRETS:
    import hashlib, time
    want = {(int(n), h): name for name, n, h in SECRETS}
    lengths = {int(n) for _, n, _ in SECRETS}
    found, files = [], 0
    def look(where, data):
        for tok in [data.strip()] + data.splitlines() + re.split(rb"[\s=:,;\"']+", data):
            tok = tok.strip()
            name = want.get((len(tok), hashlib.sha256(tok).hexdigest())) if len(tok) in lengths else None
            if name:
                found.append("%s in %s" % (name, where)); return
    for k, v in os.environ.items():
        look("the environment (%s)" % k, v.encode())
    for d in os.listdir("/proc"):
        for f in ("environ", "cmdline"):
            try:
                if d.isdigit(): look("/proc/%s/%s" % (d, f), open("/proc/%s/%s" % (d, f), "rb").read().replace(b"\0", b"\n"))
            except OSError: pass
    seen = set()
    def walk(tops, seconds):
        global files
        deadline = time.monotonic() + seconds
        for top in tops:
            tree = [(os.path.dirname(top), [], [os.path.basename(top)])] if os.path.isfile(top) else os.walk(top)
            for root, dirs, names in tree:
                if time.monotonic() > deadline:
                    return "; the search stopped at %s after %d s" % (root, seconds)
                dirs[:] = [x for x in dirs if os.path.join(root, x) not in ("/proc", "/sys", "/dev")]
                for n in names:
                    p = os.path.join(root, n)
                    try:
                        st = os.lstat(p)
                        if not stat.S_ISREG(st.st_mode) or st.st_size > (4 << 20) or (st.st_dev, st.st_ino) in seen: continue
                        seen.add((st.st_dev, st.st_ino))
                        with open(p, "rb") as fh: data = fh.read()
                    except OSError: continue
                    files += 1
                    look(p, data)
        return ""
    # Mounts are how a secrets directory would get in: searched whole (a
    # search cut short after 20 s fails the line).
    mounts = [l.split()[1] for l in open("/proc/self/mounts")]
    cut = walk([m for m in mounts if m != "/" and m.split("/")[1] not in ("proc", "sys", "dev")], 20)
    # The usual places in the root filesystem: as far as 15 s go.
    note = walk(["/etc", "/run", "/var", "/tmp", "/home", "/root", "/mnt", "/srv", "/opt"], 15)
    check("secrets", not found and not cut,
          "%d secret(s) searched for in the environment, /proc/*/environ, /proc/*/cmdline and %d readable files: %s%s"
          % (len(SECRETS), files, "; ".join(found[:5]) if found else "not found", cut + note))

# privileges
p = subprocess.run(["python3", "-c", "import os; os.setuid(0)"], capture_output=True, text=True)
last = (p.stderr.strip().splitlines() or ["(no error)"])[-1]
st = open("/proc/self/status").read()
capeff = re.search(r"CapEff:\s+(\w+)", st).group(1)
capbnd = re.search(r"CapBnd:\s+(\w+)", st).group(1)
nnp = ctypes.CDLL(None, use_errno=True).prctl(39, 0, 0, 0, 0)
check("caps", int(capeff, 16) == 0 and int(capbnd, 16) == 0, "CapEff=%s CapBnd=%s" % (capeff, capbnd))
check("setuid", p.returncode != 0 and os.getuid() != 0 and nnp == 1,
      "setuid(0): %s; uid=%d NoNewPrivs=%d" % (last, os.getuid(), nnp))

# whose kernel, whose PID 1
pids = sorted(int(d) for d in os.listdir("/proc") if d.isdigit())
if DOCKER:
    cmd1 = " ".join(a.decode(errors="replace") for a in open("/proc/1/cmdline", "rb").read().split(b"\0") if a)
    check("pid1", cmd1 == E.get("V_PID1_CMD") and len(pids) < 10,
          "/proc/1 runs '%s' (the container's command is '%s'); pids %s" % (cmd1, E.get("V_PID1_CMD"), pids))
else:
    env1 = open("/proc/1/environ", "rb").read().split(b"\0")
    check("pid1", b"EGRESS_SANDBOX=1" in env1 and len(pids) < 10, "/proc/1/environ is the worker's (%d vars); pids %s" % (len([x for x in env1 if x]), pids))
u = os.uname()
try:
    dm = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=10).stdout.splitlines()
except Exception as e:
    dm = [en(e)]
check("kernel", u.release != E.get("V_HOST_KERNEL") and any("gVisor" in l for l in dm),
      "uname -r %s (host %s); dmesg: %s" % (u.release, E.get("V_HOST_KERNEL"), dm[0].strip() if dm else "(empty)"))
)PY";

}  // namespace egress::sandbox
