// `sandbox run`: the launcher. States of one run, in order (each undone by
// Instance's destructor, by the reaper after a SIGKILL, or by the next sweep):
//
//   1. global lock /run/egress-sandbox/.lock   (serialises allocation)
//   2. sweep dead instances; ensure the fabric
//   3. instance dir <ID>/ + its lock (flock, held for life) + reaper fork
//      (instance.cpp)
//   4. netns holder, veth pair, addresses, route   -> global lock released
//   5. bundle (config.json, resolv.conf, hosts), `runsc run` attached
//   6. relay stdout/stderr; signals and the timeout end it with `runsc kill`
//      (attach.cpp)
//   7. teardown: `runsc delete --force`, cgroups, holder, veth, dir; tell
//      the reaper it is done
//
// Invariant: while an instance's lock is held (by the launcher or its
// reaper) nothing else touches it; once free, anyone may remove it.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <optional>

#include "egress/policy/policy.h"
#include "egress/sandbox/oci.h"
#include "egress/sandbox/sandbox.h"
#include "sandbox/attach.h"
#include "sandbox/instance.h"
#include "sandbox/network.h"
#include "sandbox/process.h"

namespace egress::sandbox {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

// `path` is `dir` or below it (both canonical).
bool is_within(const fs::path& path, const fs::path& dir) {
  return std::mismatch(dir.begin(), dir.end(), path.begin(), path.end()).first == dir.end();
}

std::string runsc_path() {
  const auto path = find_program("runsc");
  if (path.empty()) throw SandboxError("runsc not found on PATH; install it (scripts/install-deps.sh --test installs Debian's runsc)");
  return path;
}

void preflight() {
  if (geteuid() != 0) throw SandboxError("egress sandbox needs root (network namespaces, veths, nft, runsc); run it with sudo");
  runsc_path();
  for (const char* tool : {"ip", "nft"})
    if (find_program(tool).empty())
      throw SandboxError(std::string(tool) + " not found on PATH; install iproute2 and nftables");
  fs::create_directories(kRunDir);
  chmod(kRunDir, 0711);
}

policy::Cidr role_range(const std::string& policy_file, const std::string& role) {
  policy::PolicySnapshot snapshot;
  try {
    snapshot = policy::load_policy_file(policy_file);
  } catch (const std::exception& e) {
    throw SandboxError(std::string("cannot load the policy: ") + e.what());
  }
  for (const auto& r : snapshot->model().roles) {
    if (r.name != role) continue;
    for (const auto& cidr : r.sources)
      if (cidr.network.is_v4() && cidr.prefix_len <= 30) return cidr;
    throw SandboxError("role '" + role + "' in " + policy_file +
                       " has no IPv4 `sources` range of /30 or larger; add one, e.g. sources: [10.213.1.0/24], so "
                       "egress can tell this worker's role from its address");
  }
  throw SandboxError("role '" + role + "' is not in " + policy_file + "; use one of its `roles`");
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  if (!out) throw SandboxError("write " + path + " failed");
  chmod(path.c_str(), 0644);
}

// No bind may carry egress's secrets into the worker.
void check_binds(const RunOptions& options, const fs::path& secrets_dir) {
  for (const auto& b : options.binds)
    if (!secrets_dir.empty() && is_within(fs::weakly_canonical(b.source), secrets_dir))
      throw SandboxError("the bind " + b.source + " -> " + b.destination + " would put egress's secrets directory " +
                         options.secrets_dir + " into the worker; bind something outside it");
}

// States 1-4, under the global lock: the instance and its network.
Subnet30 set_up_instance(const RunOptions& options, const policy::Cidr& range, std::optional<Instance>& instance) {
  const auto global = global_lock();
  sweep_locked();
  ensure_fabric(options.proxy);
  instance.emplace();
  const auto allocated = allocate_subnet(range);
  if (!allocated)
    throw SandboxError("no free /30 left in " + range.to_string() + " (role " + options.role +
                       "); widen the role's sources or end some sandboxes");
  instance->holder() = std::make_unique<NetnsHolder>();
  create_worker_link(instance->id(), *instance->holder(), *allocated, options.proxy, options.breakage);
  return *allocated;
}

WorkerSpec worker_spec(const RunOptions& options, Instance& instance) {
  WorkerSpec spec;
  spec.args = options.command;
  spec.env = options.env;
  spec.proxy_url = options.proxy.url();
  spec.rootfs = fs::absolute(options.rootfs).string();
  spec.netns_path = instance.holder()->path();
  spec.cgroups_path = std::string("/").append(container_id(instance.id()));  // append: GCC 12 -O3 -Wrestrict false positive on "/" + string
  spec.memory_bytes = options.memory_bytes;
  spec.pids_limit = options.pids_limit;
  spec.seccomp_profile_json = options.seccomp_profile_json;
  return spec;
}

// State 5, the bundle: config.json, and the resolv.conf and hosts it binds.
void write_bundle(const RunOptions& options, const fs::path& secrets_dir, Instance& instance) {
  const auto& dir = instance.dir();
  WorkerSpec spec = worker_spec(options, instance);
  // No resolver: the one in resolv.conf is the worker's own loopback, where
  // nothing listens, so lookups fail at once instead of timing out. Only
  // onto paths that exist: runsc creates missing mount points on the host.
  write_text(dir + "/resolv.conf", "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n");
  write_text(dir + "/hosts", "127.0.0.1\tlocalhost\n");
  for (const char* f : {"/etc/resolv.conf", "/etc/hosts"})
    if (fs::exists(fs::path(spec.rootfs) / (f + 1))) spec.read_only_binds.push_back({dir + "/" + fs::path(f).filename().string(), f});
  for (const auto& b : options.binds) spec.read_only_binds.push_back(b);
  // The secrets directory, where the rootfs has it (the host's / does), is
  // covered so that the worker cannot even list the secrets' names.
  if (!options.secrets_dir.empty() && fs::exists(fs::path(spec.rootfs) / secrets_dir.relative_path()))
    spec.hidden_dirs.push_back(secrets_dir.string());
  write_text(dir + "/config.json", render_oci_spec(spec));
  fs::create_directories(dir + "/state");
}

std::vector<std::string> runsc_run_argv(const RunOptions& options, const std::string& runsc, const Instance& instance) {
  std::vector<std::string> argv{runsc, "--root", instance.dir() + "/state", "--network=host"};
  if (!options.platform.empty()) argv.push_back("--platform=" + options.platform);
  // runsc ignores linux.seccomp unless told to apply it inside the sandbox.
  if (!options.seccomp_profile_json.empty()) argv.push_back("--oci-seccomp");
  argv.insert(argv.end(), {"run", "--bundle", instance.dir(), container_id(instance.id())});
  return argv;
}

// State 5, `runsc run` attached to two pipes. Pipes, never a file: gVisor
// writes a regular-file stdout at its own offset and clobbers what is
// around it.
AttachedChild start_runsc(const std::vector<std::string>& argv) {
  Pipe out = make_pipe();
  Pipe err = make_pipe();
  const pid_t child = spawn({argv, -1, -1, out.write.get(), err.write.get(), true});
  return {child, std::move(out.read), std::move(err.read)};
}

}  // namespace

std::optional<ProxyEndpoint> ProxyEndpoint::parse(std::string_view text) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  auto address = policy::IpAddress::parse(text.substr(0, colon));
  if (!address || !address->is_v4()) return std::nullopt;
  unsigned port = 0;
  const auto ptext = text.substr(colon + 1);
  auto [p, ec] = std::from_chars(ptext.data(), ptext.data() + ptext.size(), port);
  if (ec != std::errc() || p != ptext.data() + ptext.size() || port == 0 || port > 65535) return std::nullopt;
  return ProxyEndpoint{*address, static_cast<std::uint16_t>(port)};
}

std::string ProxyEndpoint::to_string() const { return address.to_string() + ":" + std::to_string(port); }

std::optional<std::uint64_t> parse_size(std::string_view text) {
  std::uint64_t value = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || p == text.data()) return std::nullopt;
  std::string_view unit(p, static_cast<std::size_t>(text.data() + text.size() - p));
  int shift = 0;
  if (unit == "" || unit == "B") shift = 0;
  else if (unit == "k" || unit == "K" || unit == "KiB") shift = 10;
  else if (unit == "m" || unit == "M" || unit == "MiB") shift = 20;
  else if (unit == "g" || unit == "G" || unit == "GiB") shift = 30;
  else return std::nullopt;
  if (value > (std::uint64_t{1} << (63 - shift))) return std::nullopt;
  return value << shift;
}

void setup_fabric(const ProxyEndpoint& proxy) {
  preflight();
  const auto global = global_lock();
  ensure_fabric(proxy);
}

bool teardown_fabric(const std::optional<ProxyEndpoint>& proxy) {
  preflight();
  const auto global = global_lock();
  sweep_locked();
  if (proxy) withdraw_proxy(*proxy);
  // Never drop the firewall under a live sandbox.
  if (!links_with_prefix(kHostLinkPrefix).empty()) return false;
  if (!proxy || !fabric_has_proxies()) delete_fabric();
  return true;
}

int sweep() {
  preflight();
  const auto global = global_lock();
  return sweep_locked();
}

RunResult run_sandbox(const RunOptions& options) {
  if (options.command.empty()) throw SandboxError("no command given; put it after --, e.g. -- python3 job.py");
  preflight();
  const auto runsc = runsc_path();
  const auto range = role_range(options.policy_file, options.role);
  const fs::path secrets_dir = options.secrets_dir.empty() ? fs::path() : fs::weakly_canonical(options.secrets_dir);
  check_binds(options, secrets_dir);
  SignalGuard signals;

  std::optional<Instance> instance;
  const Subnet30 subnet = set_up_instance(options, range, instance);
  write_bundle(options, secrets_dir, *instance);
  const auto stop = [&] {
    run_command({runsc, "--root", instance->dir() + "/state", "kill", container_id(instance->id()), "KILL"}, 10s);
  };
  auto outcome = relay_until_exit(start_runsc(runsc_run_argv(options, runsc, *instance)), signals,
                                  {options.output, options.timeout, stop});

  RunResult result{outcome.exit_code, std::move(outcome.stdout_text), std::move(outcome.stderr_text), instance->id(),
                   subnet.worker().to_string()};
  instance.reset();  // teardown before we return
  return result;
}

}  // namespace egress::sandbox
