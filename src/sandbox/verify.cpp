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

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/random.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>

#include "sandbox/checklist.h"
#include "sandbox/fd.h"
#include "sandbox/network.h"
#include "sandbox/probe.h"
#include "sandbox/process.h"
#include "sandbox/verify_evidence.h"
#include "sandbox/verify_services.h"

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

const policy::IpAddress& loopback() {
  static const auto address = *policy::IpAddress::parse("127.0.0.1");
  return address;
}

// A loopback port nothing listens on once this returns.
std::uint16_t free_loopback_port() {
  const int probe = listen_in(-1, loopback(), 0);
  const auto port = port_of(probe);
  close(probe);
  return port;
}

// Everything a verify run makes, undone in reverse order of declaration
// (so the fabric goes first and the work directory last) however the run
// ends.
struct Bench {
  struct WorkDir {
    std::string path;
    ~WorkDir() {
      std::error_code ec;
      fs::remove_all(path, ec);
    }
  };
  // Constructors spelled out: clang (the sanitizer build) has no
  // parenthesised aggregate initialisation for optional::emplace.
  struct LinkGuard {
    explicit LinkGuard(std::string link) : name(std::move(link)) {}
    LinkGuard(const LinkGuard&) = delete;
    LinkGuard& operator=(const LinkGuard&) = delete;
    ~LinkGuard() { delete_link(name); }
    std::string name;
  };
  struct Children {
    pid_t upstream = -1, loop_svc = -1, host_svc = -1, egress = -1;
    ~Children() {
      for (auto* p : {&upstream, &loop_svc, &host_svc, &egress}) stop_child(*p);
    }
  };
  struct FabricGuard {
    FabricGuard(ProxyEndpoint endpoint, bool owned) : proxy(endpoint), own(owned) {}
    FabricGuard(const FabricGuard&) = delete;
    FabricGuard& operator=(const FabricGuard&) = delete;
    ProxyEndpoint proxy;
    bool own;
    ~FabricGuard() {
      try {
        if (own) teardown_fabric(proxy);
      } catch (...) {
      }
    }
  };

  std::string id, token;
  WorkDir work;
  std::optional<NetnsHolder> upstream_ns;
  Subnet30 up_net;
  std::optional<LinkGuard> up_link;
  Children children;
  std::uint16_t loop_port = 0, hostsvc_port = 0;
  ProxyEndpoint proxy;
  std::optional<FabricGuard> fabric;
  // What the probe is pointed at: given (operator mode) or made here.
  std::string policy_file, role, allowed_url, denied_url;
  std::string db;
};

// Returns `runsc --version`, for the gVisor line.
CommandResult check_prerequisites(const VerifyOptions& o) {
  if (geteuid() != 0) throw SandboxError("egress sandbox verify needs root; run it with sudo");
  if (o.policy_file.empty() != o.role.empty()) throw SandboxError("give both --policy and --role, or neither (self-contained)");
  const auto runsc = find_program("runsc");
  if (runsc.empty()) throw SandboxError("runsc not found on PATH; install it (scripts/install-deps.sh --test)");
  auto version = run_command({runsc, "--version"});
  for (const char* tool : {"/usr/bin/python3", "/usr/bin/curl"})
    if (!fs::exists(fs::path(o.rootfs) / (tool + 1)))
      throw SandboxError(std::string("the probe needs ") + tool + " in the rootfs " + o.rootfs);
  return version;
}

// The work directory, world-traversable so the probe (uid 65534) can read
// its script from the bind of work/probe.
void prepare_work_dir(Bench& bench) {
  fs::create_directories(kRunDir);
  bench.id = random_hex(4);
  bench.work.path = std::string(kRunDir) + "/verify-" + bench.id;
  const auto& work = bench.work.path;
  fs::create_directories(work + "/probe");
  chmod(work.c_str(), 0711);
  chmod((work + "/probe").c_str(), 0755);
  std::ofstream(work + "/probe/probe.py") << kProbeScript;
  chmod((work + "/probe/probe.py").c_str(), 0644);
  bench.token = "egress-verify-" + random_hex(8);
}

// The upstream, in a namespace of its own: the only way there is egress.
void start_upstream(Bench& bench) {
  bench.upstream_ns.emplace();
  const auto a = allocate_subnet(*policy::Cidr::parse(kVerifyUpstreamRange));
  if (!a) throw SandboxError(std::string("no free /30 in ") + kVerifyUpstreamRange);
  bench.up_net = *a;
  const std::string host_link = "egsu" + bench.id, inner_link = "egsv" + bench.id;
  bench.up_link.emplace(host_link);  // in place: a moved-from guard would delete the link at once
  create_plain_link(host_link, inner_link, *bench.upstream_ns, bench.up_net);
  bench.children.upstream = serve_http(listen_in(bench.upstream_ns->fd(), bench.up_net.worker(), kUpstreamPort), bench.token);
}

// The host daemons a worker must not reach (host loopback, and the proxy
// address's other ports), and the fabric for egress's proxy address.
void start_host_services(Bench& bench, const VerifyOptions& o, bool own_egress) {
  const int loop_listener = listen_in(-1, loopback(), 0);
  bench.loop_port = port_of(loop_listener);
  bench.children.loop_svc = serve_http(loop_listener, "host loopback");
  bench.proxy = own_egress ? ProxyEndpoint{*policy::IpAddress::parse(kVerifyProxyAddress), free_loopback_port()} : o.proxy;
  setup_fabric(bench.proxy);
  bench.fabric.emplace(bench.proxy, own_egress);  // in place, as up_link
  const int host_listener = listen_in(-1, bench.proxy.address, 0);
  bench.hostsvc_port = port_of(host_listener);
  bench.children.host_svc = serve_http(host_listener, "host daemon");
}

// Self-contained mode's policy (role `verify`) and egress configuration:
// both test names resolve to the upstream, every other name to a DNS server
// that does not answer.
void write_own_config(Bench& bench) {
  const auto& work = bench.work.path;
  bench.policy_file = work + "/policy.yaml";
  bench.role = "verify";
  std::ofstream(bench.policy_file) << "version: 1\nmode: self-hosted\nroles:\n  verify:\n    sources: [" << kVerifyWorkerRange
                                   << "]\n    internal:\n      - host: allowed.sandbox.test\n        ports: any\n";
  const auto dead_dns_port = free_loopback_port();
  const auto up = bench.up_net.worker().to_string();
  std::ofstream(work + "/egress.yaml") << "dns:\n  hosts_file: false\n  servers: [\"127.0.0.1:" << dead_dns_port
                                       << "\"]\n  timeout: 500ms\n  hosts:\n    allowed.sandbox.test: [" << up
                                       << "]\n    denied.sandbox.test: [" << up << "]\n";
}

// Waits (bounded) for serve's "egress listening on" line on `out`.
bool wait_for_banner(int out) {
  std::string banner;
  const auto deadline = std::chrono::steady_clock::now() + 15s;
  while (banner.find("egress listening on") == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    pollfd p{out, POLLIN, 0};
    if (poll(&p, 1, 200) != 1) continue;
    char buf[512];
    const ssize_t n = read(out, buf, sizeof buf);
    if (n <= 0) break;
    banner.append(buf, static_cast<std::size_t>(n));
  }
  return banner.find("egress listening on") != std::string::npos;
}

// Self-contained mode: egress serve on its own proxy address.
void start_own_egress(Bench& bench, const VerifyOptions& o) {
  write_own_config(bench);
  const auto& work = bench.work.path;
  bench.db = work + "/audit.db";
  Pipe out = make_pipe();
  const UniqueFd log(open((work + "/egress.log").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  bench.children.egress =
      spawn({{o.egress_binary, "serve", "--config", work + "/egress.yaml", "--policy", bench.policy_file, "--audit-db",
              bench.db, "--listen", bench.proxy.to_string(), "--threads", "1", "--admin-listen", "off"},
             -1, -1, out.write.get(), log.get(), false});
  out.write.reset();
  // serve writes little more once listening; a closed pipe costs it nothing it needs.
  if (!wait_for_banner(out.read.get()))
    throw SandboxError("egress serve did not start on " + bench.proxy.to_string() + ": " + read_text_file(work + "/egress.log"));
  bench.allowed_url = "http://allowed.sandbox.test:" + std::to_string(kUpstreamPort) + "/";
  bench.denied_url = "http://denied.sandbox.test:" + std::to_string(kUpstreamPort) + "/";
}

// The probe's sandbox, through run_sandbox() as `sandbox run` makes one.
RunOptions probe_run_options(const Bench& bench, const VerifyOptions& o, const SecretSearch& secrets) {
  utsname host_uname{};
  uname(&host_uname);
  const auto& work = bench.work.path;
  RunOptions run;
  run.policy_file = bench.policy_file;
  run.role = bench.role;
  run.proxy = bench.proxy;
  run.rootfs = o.rootfs;
  run.timeout = 120s;  // the probe: about 10 s, and up to 35 s more searching for secrets
  run.output = Output::Capture;
  run.breakage = o.breakage;
  run.binds = {{work + "/probe", work + "/probe"}};  // same path: it exists in the rootfs (host /)
  run.env = {"V_UP=" + bench.up_net.worker().to_string(), "V_UP_PORT=" + std::to_string(kUpstreamPort),
             "V_TOKEN=" + bench.token, "V_PROXY_IP=" + bench.proxy.address.to_string(),
             "V_HOSTSVC_PORT=" + std::to_string(bench.hostsvc_port), "V_LOOP_PORT=" + std::to_string(bench.loop_port),
             "V_HOST_KERNEL=" + std::string(host_uname.release), "V_ALLOWED_URL=" + bench.allowed_url,
             "V_DENIED_URL=" + bench.denied_url};
  run.secrets_dir = o.secrets_dir;
  run.env.insert(run.env.end(), secrets.probe_env.begin(), secrets.probe_env.end());
  run.command = {"/usr/bin/python3", work + "/probe/probe.py"};
  return run;
}

// What the checklist is built from: the probe's lines and the host's side.
struct Evidence {
  ProbeResults probe;
  int probe_exit = 0;
  CommandResult runsc_version;
  Line leftovers, host_write, audit;
  const SecretSearch* secrets = nullptr;
  bool allowed = false, denied = false;  // URLs given for the proxy path
  Line checks(std::initializer_list<const char*> ids) const { return combine(probe, ids, probe_exit); }
};

Line proxy_path_line(const Evidence& e) {
  if (!e.allowed && !e.denied) return {"SKIP", "give --allowed-url and --denied-url to test the proxy path"};
  if (e.allowed && e.denied) return e.checks({"allowed", "denied"});
  return e.checks({e.allowed ? "allowed" : "denied"});
}

Line gvisor_line(const Evidence& e) {
  Line gvisor = e.checks({"kernel"});
  gvisor.detail = e.runsc_version.output.substr(0, e.runsc_version.output.find('\n')) + "; " + gvisor.detail;
  if (!e.runsc_version.ok()) gvisor.verdict = "FAIL";
  return gvisor;
}

Checklist build_checklist(const Evidence& e) {
  Line escape = e.checks({"hostfiles", "pid1"});
  if (e.host_write.verdict != "PASS") escape.verdict = "FAIL";
  escape.detail += "; " + e.host_write.detail;
  Line rootro = e.checks({"rootro", "tmp"});
  if (e.host_write.verdict != "PASS") rootro.verdict = "FAIL";
  return {
      {"gVisor installed and tested", gvisor_line(e)},
      {"Docker daemon configured with runsc runtime", docker_line()},
      {"AI workers using gVisor runtime", e.checks({"kernel", "pid1"})},
      {"Network isolation enabled (internal network)", e.checks({"direct", "noroute", "hostsvc", "loopback", "ifaces"})},
      {"DNS resolution disabled for workers", e.checks({"dns"})},
      {"Read-only root filesystem", rootro},
      {"Dropped capabilities (CAP_DROP: ALL)", e.checks({"caps"})},
      {"No privileged mode", e.checks({"setuid"})},
      {"AppArmor/SELinux profiles applied",
       {"SKIP", fs::exists("/sys/module/apparmor")
                    ? "gVisor does not apply AppArmor inside its sandbox; `egress sandbox render --target apparmor` writes the profile for runc workers"
                    : "AppArmor is not enabled in this kernel; `egress sandbox render --target apparmor` writes the profile"}},
      {"Logging and monitoring configured", e.audit},
      {"Tested sandbox escape prevention", escape},
      {"Documented incident response procedures", {"SKIP", "a document, not a property of this host"}},
      {"Egress proxy path (allowed 200, denied 403)", proxy_path_line(e)},
      {kSecretsLine, e.secrets->skipped.value_or(e.checks({"secrets"}))},
      {"Sandbox torn down (namespace, veth, state, cgroup)", e.leftovers},
  };
}

}  // namespace

int run_verify(const VerifyOptions& o, std::ostream& out) {
  const auto runsc_version = check_prerequisites(o);
  const bool own_egress = o.policy_file.empty();
  Bench bench;
  bench.policy_file = o.policy_file;
  bench.role = o.role;
  bench.allowed_url = o.allowed_url;
  bench.denied_url = o.denied_url;
  prepare_work_dir(bench);
  start_upstream(bench);
  start_host_services(bench, o, own_egress);
  if (own_egress) start_own_egress(bench, o);

  const SecretSearch secrets = secret_search(o.secrets_dir, o.breakage);
  const RunResult result = run_sandbox(probe_run_options(bench, o, secrets));

  // Host-side evidence, after the sandbox is gone.
  Evidence e{parse_probe_output(result.stdout_text), result.exit_code, runsc_version, leftovers_line(result.id),
             host_write_line(), {"SKIP", "the audit log belongs to the running egress; check it with `egress audit query`"},
             &secrets, !bench.allowed_url.empty(), !bench.denied_url.empty()};
  if (own_egress) {
    stop_child(bench.children.egress, SIGTERM);  // flushes the audit store
    e.audit = audit_line(bench.db, bench.role);
  }
  const int failed = print_checklist(out, "Production Checklist (egress sandbox verify, instance " + result.id +
                                              ", worker " + result.worker_address + ", proxy " + bench.proxy.to_string() + ")",
                                     build_checklist(e),
                                     result.stderr_text.empty() ? "" : "sandbox stderr:\n" + result.stderr_text.substr(0, 4000));
  return failed == 0 ? 0 : 1;
}

}  // namespace egress::sandbox
