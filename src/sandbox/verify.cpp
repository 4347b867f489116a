// `sandbox verify`. Self-contained mode brings up, in this order: an
// upstream namespace (egsu<ID> <-> egsv<ID>, 10.213.254.0/24) with a tiny
// HTTP server, a "host daemon" on the proxy address and one on host
// loopback, an egress serve on its own proxy address (10.213.253.1), then
// runs the probe (probe.cpp) in a sandbox of role `verify` through
// run_sandbox() — the same path `sandbox run` takes — and judges the host
// side: the audit log, the host filesystem, leftovers. Everything it made
// goes away at the end (and with it if it is killed: every helper has
// PDEATHSIG, the namespaces are held by processes).
#include "egress/sandbox/verify.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "sandbox/checklist.h"
#include "sandbox/network.h"
#include "sandbox/probe.h"
#include "sandbox/process.h"

namespace egress::sandbox {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

constexpr const char* kVerifyProxyAddress = "10.213.253.1";
constexpr const char* kVerifyWorkerRange = "10.213.252.0/24";
constexpr const char* kVerifyUpstreamRange = "10.213.254.0/24";
constexpr std::uint16_t kUpstreamPort = 8080;

std::string random_hex(int bytes) {
  unsigned char b[16];
  if (getrandom(b, static_cast<std::size_t>(bytes), 0) != bytes) throw SandboxError("getrandom failed");
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < bytes; ++i) {
    s += hex[b[i] >> 4];
    s += hex[b[i] & 15];
  }
  return s;
}

sockaddr_in to_sockaddr(const policy::IpAddress& a, std::uint16_t port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  std::memcpy(&sa.sin_addr, a.bytes.data(), 4);
  return sa;
}

// A listening socket in `netns_fd`'s namespace (-1: ours). A socket stays in
// the namespace it was made in, so we step in, make it, and step back.
int listen_in(int netns_fd, const policy::IpAddress& address, std::uint16_t port) {
  int home = -1;
  if (netns_fd >= 0) {
    home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (home < 0 || setns(netns_fd, CLONE_NEWNET) != 0) throw SandboxError("setns into the upstream namespace failed");
  }
  const int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  auto sa = to_sockaddr(address, port);
  const bool ok = s >= 0 && bind(s, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 && listen(s, 16) == 0;
  const int err = errno;
  if (home >= 0) {
    setns(home, CLONE_NEWNET);
    close(home);
  }
  if (!ok) {
    if (s >= 0) close(s);
    throw SandboxError("listen on " + address.to_string() + ":" + std::to_string(port) + ": " + std::strerror(err));
  }
  return s;
}

std::uint16_t port_of(int s) {
  sockaddr_in sa{};
  socklen_t len = sizeof sa;
  getsockname(s, reinterpret_cast<sockaddr*>(&sa), &len);
  return ntohs(sa.sin_port);
}

// A forked HTTP/1.0-style server on `listener`: every request gets `body`.
// Bounded by PDEATHSIG and alarm().
pid_t serve_http(int listener, const std::string& body) {
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) throw SandboxError(std::string("fork: ") + std::strerror(errno));
  if (pid > 0) {
    close(listener);
    return pid;
  }
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(0);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  signal(SIGPIPE, SIG_IGN);
  alarm(600);
  const std::string response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
                               std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
  for (int served = 0; served < 10000; ++served) {
    const int c = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    timeval tv{5, 0};
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string head;
    char buf[2048];
    while (head.find("\r\n\r\n") == std::string::npos && head.size() < 16384) {
      const ssize_t n = read(c, buf, sizeof buf);
      if (n <= 0) break;
      head.append(buf, static_cast<std::size_t>(n));
    }
    if (write(c, response.data(), response.size()) < 0) { /* the client left; next one */ }
    close(c);
  }
  _exit(0);
}

void stop_child(pid_t& pid, int sig = SIGKILL) {
  if (pid <= 0) return;
  kill(pid, sig);
  if (!wait_for(pid, 15s)) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
  pid = -1;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Audit rows of the probe's two proxy requests: each must carry the role.
Line audit_line(const std::string& db_path, const std::string& role) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    sqlite3_close(db);
    return {"FAIL", "cannot open the audit database " + db_path};
  }
  sqlite3_stmt* st = nullptr;
  const char* sql = "SELECT coalesce(role,''), coalesce(host,''), coalesce(decision,'') FROM events WHERE event='decision'";
  int rows = 0, with_role = 0;
  bool allow_seen = false, deny_seen = false;
  if (sqlite3_prepare_v2(db, sql, -1, &st, nullptr) == SQLITE_OK) {
    while (sqlite3_step(st) == SQLITE_ROW) {
      const std::string r = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
      const std::string host = reinterpret_cast<const char*>(sqlite3_column_text(st, 1));
      const std::string decision = reinterpret_cast<const char*>(sqlite3_column_text(st, 2));
      ++rows;
      with_role += r == role;
      allow_seen = allow_seen || (host.starts_with("allowed.") && decision == "allow");
      deny_seen = deny_seen || (host.starts_with("denied.") && decision == "deny");
    }
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  const bool ok = rows >= 2 && with_role == rows && allow_seen && deny_seen;
  return {ok ? "PASS" : "FAIL", std::to_string(rows) + " decision events in the audit log, " + std::to_string(with_role) +
                                    " with role '" + role + "'; allow " + (allow_seen ? "seen" : "MISSING") + ", deny " +
                                    (deny_seen ? "seen" : "MISSING")};
}

Line docker_line() {
  const std::string path = "/etc/docker/daemon.json";
  if (!fs::exists(path)) return {"SKIP", "no Docker daemon config here (" + path + " absent); `egress sandbox render --target docker-daemon` writes one"};
  std::error_code ec;
  auto v = boost::json::parse(read_file(path), ec);
  if (ec || !v.is_object()) return {"FAIL", path + " is not a JSON object"};
  const auto* runtimes = v.as_object().if_contains("runtimes");
  const bool ok = runtimes && runtimes->is_object() && runtimes->as_object().contains("runsc");
  return {ok ? "PASS" : "FAIL", ok ? path + " has runtimes.runsc" : path + " lacks runtimes.runsc; run `egress sandbox render --target docker-daemon --out /etc/docker`"};
}

}  // namespace

int run_verify(const VerifyOptions& o, std::ostream& out) {
  if (geteuid() != 0) throw SandboxError("egress sandbox verify needs root; run it with sudo");
  const bool own_egress = o.policy_file.empty();
  if (own_egress != o.role.empty()) throw SandboxError("give both --policy and --role, or neither (self-contained)");
  const auto runsc = find_program("runsc");
  if (runsc.empty()) throw SandboxError("runsc not found on PATH; install it (scripts/install-deps.sh --test)");
  const auto runsc_version = run_command({runsc, "--version"});
  for (const char* tool : {"/usr/bin/python3", "/usr/bin/curl"})
    if (!fs::exists(fs::path(o.rootfs) / (tool + 1)))
      throw SandboxError(std::string("the probe needs ") + tool + " in the rootfs " + o.rootfs);

  fs::create_directories(kRunDir);
  const std::string id = random_hex(4);
  const std::string work = std::string(kRunDir) + "/verify-" + id;
  fs::create_directories(work + "/probe");
  chmod(work.c_str(), 0711);
  chmod((work + "/probe").c_str(), 0755);
  struct WorkDir {
    std::string path;
    ~WorkDir() {
      std::error_code ec;
      fs::remove_all(path, ec);
    }
  } work_guard{work};
  std::ofstream(work + "/probe/probe.py") << kProbeScript;
  chmod((work + "/probe/probe.py").c_str(), 0644);
  const std::string token = "egress-verify-" + random_hex(8);

  // Upstream in a namespace of its own: the only way there is egress.
  NetnsHolder upstream_ns;
  const auto up_range = *policy::Cidr::parse(kVerifyUpstreamRange);
  Subnet30 up_net;
  {
    const auto a = allocate_subnet(up_range);
    if (!a) throw SandboxError(std::string("no free /30 in ") + kVerifyUpstreamRange);
    up_net = *a;
  }
  const std::string up_host_link = "egsu" + id, up_inner_link = "egsv" + id;
  struct LinkGuard {
    std::string name;
    ~LinkGuard() { delete_link(name); }
  } up_link_guard{up_host_link};
  create_plain_link(up_host_link, up_inner_link, upstream_ns, up_net);
  pid_t upstream = serve_http(listen_in(upstream_ns.fd(), up_net.worker(), kUpstreamPort), token);
  pid_t loop_svc = -1, host_svc = -1, egress = -1;
  struct Children {
    std::vector<pid_t*> pids;
    ~Children() {
      for (auto* p : pids) stop_child(*p);
    }
  } children{{&upstream, &loop_svc, &host_svc, &egress}};
  const int loop_listener = listen_in(-1, *policy::IpAddress::parse("127.0.0.1"), 0);
  const auto loop_port = port_of(loop_listener);
  loop_svc = serve_http(loop_listener, "host loopback");

  // egress, on a proxy address of its own.
  ProxyEndpoint proxy = o.proxy;
  std::string policy_file = o.policy_file, role = o.role;
  std::string allowed_url = o.allowed_url, denied_url = o.denied_url;
  if (own_egress) {
    const int probe = listen_in(-1, *policy::IpAddress::parse("127.0.0.1"), 0);
    proxy = ProxyEndpoint{*policy::IpAddress::parse(kVerifyProxyAddress), port_of(probe)};
    close(probe);
  }
  setup_fabric(proxy);
  struct FabricGuard {
    ProxyEndpoint proxy;
    bool own;
    ~FabricGuard() {
      try {
        if (own) teardown_fabric(proxy);
      } catch (...) {
      }
    }
  } fabric_guard{proxy, own_egress};
  const int host_listener = listen_in(-1, proxy.address, 0);
  const auto hostsvc_port = port_of(host_listener);
  host_svc = serve_http(host_listener, "host daemon");

  const std::string db = work + "/audit.db";
  if (own_egress) {
    policy_file = work + "/policy.yaml";
    role = "verify";
    std::ofstream(policy_file) << "version: 1\nmode: self-hosted\nroles:\n  verify:\n    sources: [" << kVerifyWorkerRange
                               << "]\n    internal:\n      - host: allowed.sandbox.test\n        ports: any\n";
    const int dns_probe = listen_in(-1, *policy::IpAddress::parse("127.0.0.1"), 0);
    const auto dead_dns_port = port_of(dns_probe);  // nothing answers there once closed
    close(dns_probe);
    const auto up = up_net.worker().to_string();
    std::ofstream(work + "/egress.yaml") << "dns:\n  hosts_file: false\n  servers: [\"127.0.0.1:" << dead_dns_port
                                         << "\"]\n  timeout: 500ms\n  hosts:\n    allowed.sandbox.test: [" << up
                                         << "]\n    denied.sandbox.test: [" << up << "]\n";
    int pipe_out[2];
    if (pipe2(pipe_out, O_CLOEXEC) != 0) throw SandboxError("pipe failed");
    const int log = open((work + "/egress.log").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    egress = spawn({{o.egress_binary, "serve", "--config", work + "/egress.yaml", "--policy", policy_file, "--audit-db", db,
                     "--listen", proxy.to_string(), "--threads", "1", "--admin-listen", "off"},
                    -1, -1, pipe_out[1], log, false});
    close(pipe_out[1]);
    close(log);
    // Wait (bounded) for serve's "egress listening on" line.
    std::string banner;
    const auto deadline = std::chrono::steady_clock::now() + 15s;
    while (banner.find("egress listening on") == std::string::npos && std::chrono::steady_clock::now() < deadline) {
      pollfd p{pipe_out[0], POLLIN, 0};
      if (poll(&p, 1, 200) != 1) continue;
      char buf[512];
      const ssize_t n = read(pipe_out[0], buf, sizeof buf);
      if (n <= 0) break;
      banner.append(buf, static_cast<std::size_t>(n));
    }
    close(pipe_out[0]);  // serve writes little more; a closed pipe costs it nothing it needs
    if (banner.find("egress listening on") == std::string::npos)
      throw SandboxError("egress serve did not start on " + proxy.to_string() + ": " + read_file(work + "/egress.log"));
    allowed_url = "http://allowed.sandbox.test:" + std::to_string(kUpstreamPort) + "/";
    denied_url = "http://denied.sandbox.test:" + std::to_string(kUpstreamPort) + "/";
  }

  utsname host_uname{};
  uname(&host_uname);
  RunOptions run;
  run.policy_file = policy_file;
  run.role = role;
  run.proxy = proxy;
  run.rootfs = o.rootfs;
  run.timeout = 120s;  // the probe: about 10 s, and up to 35 s more searching for secrets
  run.output = Output::Capture;
  run.breakage = o.breakage;
  run.binds = {{work + "/probe", work + "/probe"}};  // same path: it exists in the rootfs (host /)
  run.env = {"V_UP=" + up_net.worker().to_string(), "V_UP_PORT=" + std::to_string(kUpstreamPort), "V_TOKEN=" + token,
             "V_PROXY_IP=" + proxy.address.to_string(), "V_HOSTSVC_PORT=" + std::to_string(hostsvc_port),
             "V_LOOP_PORT=" + std::to_string(loop_port), "V_HOST_KERNEL=" + std::string(host_uname.release),
             "V_ALLOWED_URL=" + allowed_url, "V_DENIED_URL=" + denied_url};
  run.secrets_dir = o.secrets_dir;
  const SecretSearch secrets = secret_search(o.secrets_dir, o.breakage);
  run.env.insert(run.env.end(), secrets.probe_env.begin(), secrets.probe_env.end());
  run.command = {"/usr/bin/python3", work + "/probe/probe.py"};
  const RunResult result = run_sandbox(run);

  const ProbeResults probe = parse_probe_output(result.stdout_text);
  auto combine = [&](std::initializer_list<const char*> ids) { return sandbox::combine(probe, ids, result.exit_code); };

  // Host-side evidence, after the sandbox is gone.
  Line leftovers{"PASS", "instance " + result.id + ": no veth, runsc state, cgroup or directory left"};
  {
    std::vector<std::string> left;
    if (link_exists(kHostLinkPrefix + result.id)) left.push_back("veth " + std::string(kHostLinkPrefix) + result.id);
    if (fs::exists(std::string(kRunDir) + "/" + result.id)) left.push_back("instance dir");
    std::error_code ec;
    for (const auto& c : fs::directory_iterator("/sys/fs/cgroup", ec))
      if (fs::exists(c.path() / (kContainerPrefix + result.id))) left.push_back("cgroup " + c.path().string());
    if (!left.empty()) {
      leftovers.verdict = "FAIL";
      leftovers.detail = "left behind:";
      for (const auto& x : left) leftovers.detail += " " + x;
    }
  }
  Line host_write{"PASS", "nothing the probe wrote reached the host"};
  for (const char* p : {"/egress-verify-probe", "/usr/egress-verify-probe"})
    if (fs::exists(p)) {
      host_write = {"FAIL", std::string(p) + " appeared on the host"};
      unlink(p);
    }

  Line audit{"SKIP", "the audit log belongs to the running egress; check it with `egress audit query`"};
  if (own_egress) {
    stop_child(egress, SIGTERM);  // flushes the audit store
    audit = audit_line(db, role);
  }

  Line gvisor = combine({"kernel"});
  gvisor.detail = runsc_version.output.substr(0, runsc_version.output.find('\n')) + "; " + gvisor.detail;
  if (!runsc_version.ok()) gvisor.verdict = "FAIL";
  Line proxy_path{"SKIP", "give --allowed-url and --denied-url to test the proxy path"};
  if (!allowed_url.empty() || !denied_url.empty()) {
    std::vector<const char*> ids;
    if (!allowed_url.empty()) ids.push_back("allowed");
    if (!denied_url.empty()) ids.push_back("denied");
    proxy_path = ids.size() == 2 ? combine({"allowed", "denied"}) : combine({ids[0]});
  }
  Line escape = combine({"hostfiles", "pid1"});
  if (host_write.verdict != "PASS") escape.verdict = "FAIL";
  escape.detail += "; " + host_write.detail;
  Line rootro = combine({"rootro", "tmp"});
  if (host_write.verdict != "PASS") rootro.verdict = "FAIL";

  const Checklist checklist = {
      {"gVisor installed and tested", gvisor},
      {"Docker daemon configured with runsc runtime", docker_line()},
      {"AI workers using gVisor runtime", combine({"kernel", "pid1"})},
      {"Network isolation enabled (internal network)", combine({"direct", "noroute", "hostsvc", "loopback", "ifaces"})},
      {"DNS resolution disabled for workers", combine({"dns"})},
      {"Read-only root filesystem", rootro},
      {"Dropped capabilities (CAP_DROP: ALL)", combine({"caps"})},
      {"No privileged mode", combine({"setuid"})},
      {"AppArmor/SELinux profiles applied",
       {"SKIP", fs::exists("/sys/module/apparmor")
                    ? "gVisor does not apply AppArmor inside its sandbox; `egress sandbox render --target apparmor` writes the profile for runc workers"
                    : "AppArmor is not enabled in this kernel; `egress sandbox render --target apparmor` writes the profile"}},
      {"Logging and monitoring configured", audit},
      {"Tested sandbox escape prevention", escape},
      {"Documented incident response procedures", {"SKIP", "a document, not a property of this host"}},
      {"Egress proxy path (allowed 200, denied 403)", proxy_path},
      {kSecretsLine, secrets.skipped.value_or(combine({"secrets"}))},
      {"Sandbox torn down (namespace, veth, state, cgroup)", leftovers},
  };
  const int failed = print_checklist(out, "Production Checklist (egress sandbox verify, instance " + result.id + ", worker " +
                                              result.worker_address + ", proxy " + proxy.to_string() + ")",
                                     checklist,
                                     result.stderr_text.empty() ? "" : "sandbox stderr:\n" + result.stderr_text.substr(0, 4000));
  return failed == 0 ? 0 : 1;
}

}  // namespace egress::sandbox
