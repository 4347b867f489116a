// `egress sandbox run|setup|teardown|sweep`: a worker command under gVisor
// (runsc) in a network namespace of its own whose one reachable address is
// egress's listener.
//
// Host layout (every name carries a prefix so the sweep finds only ours):
//   lo label    lo:egs-proxy     the proxy address(es), /32 each, on the
//               host's loopback link (kernels without the dummy driver
//               have lo too); local delivery accepts them from any link
//   nft table   inet egress_sandbox   static: from any `egsh*` link only
//               tcp to a (proxy address . port) in set @proxies; nothing
//               else answers, nothing is forwarded
//   per worker  ID = 8 hex digits
//     netns     held by a holder process (no `ip netns add`): the kernel
//               frees it, and the veth pair with it, when holder and
//               sandbox are gone
//     veth      egsh<ID> (host, X.1/30) <-> egsw<ID> (worker, X.2/30),
//               X.0/30 taken from the role's `sources` in the policy, so
//               egress maps the worker's address to its role; the worker
//               has one route, to the proxy address /32, and no default
//     runsc     container egress-sbx-<ID>, state and bundle in
//               /run/egress-sandbox/<ID>/, cgroup /egress-sbx-<ID>
//
// Cleanup: the launcher removes everything on exit and on SIGINT/SIGTERM/
// SIGHUP. Helpers die with it (PR_SET_PDEATHSIG). A reaper process, forked
// at start and sharing the instance lock, removes the rest within seconds
// when the launcher is SIGKILLed; and every run first sweeps instances whose
// lock nobody holds.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "egress/policy/ip.h"
#include "egress/sandbox/oci.h"

namespace egress::sandbox {

inline constexpr const char* kRunDir = "/run/egress-sandbox";
inline constexpr const char* kContainerPrefix = "egress-sbx-";
inline constexpr const char* kHostLinkPrefix = "egsh";
inline constexpr const char* kWorkerLinkPrefix = "egsw";
inline constexpr const char* kProxyLabel = "lo:egs-proxy";
inline constexpr const char* kNftTable = "egress_sandbox";

/// Exit codes of `sandbox run` besides the command's own (docker run's).
inline constexpr int kExitSetupFailed = 125;
inline constexpr int kExitTimeout = 124;

/// A setup step failed; what() says which, why, and what to do.
class SandboxError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ProxyEndpoint {
  policy::IpAddress address;  // IPv4
  std::uint16_t port = 3128;
  /// "10.213.255.1:3128"; nullopt unless IPv4:port.
  static std::optional<ProxyEndpoint> parse(std::string_view text);
  std::string to_string() const;
  std::string url() const { return "http://" + to_string(); }
};

inline constexpr const char* kDefaultProxy = "10.213.255.1:3128";

/// "512M", "1G", "65536", "64k" → bytes; nullopt when malformed.
std::optional<std::uint64_t> parse_size(std::string_view text);

enum class Output { PassThrough, Capture };
/// Deliberate weakening, for `sandbox verify`'s own test only.
enum class Breakage { None, DefaultRoute, SecretInEnv };

struct RunOptions {
  std::string policy_file;
  std::string role;
  ProxyEndpoint proxy = *ProxyEndpoint::parse(kDefaultProxy);
  std::string rootfs = "/";
  std::optional<std::uint64_t> memory_bytes = 512ull << 20;
  std::optional<std::int64_t> pids_limit = 128;
  std::chrono::milliseconds timeout{0};  // 0 = none
  std::vector<std::string> env;          // extra KEY=VALUE
  std::vector<BindMount> binds;          // extra read-only binds
  std::string secrets_dir;               // egress's: hidden from the worker, never bound into it
  std::string platform;                  // runsc --platform; "" = runsc's default
  std::string seccomp_profile_json;      // "" = none
  std::vector<std::string> command;
  Output output = Output::PassThrough;
  Breakage breakage = Breakage::None;
};

struct RunResult {
  int exit_code = 0;  // the command's; 124 timeout; 128+N when we got signal N
  std::string stdout_text, stderr_text;  // Output::Capture only
  std::string id;                        // instance id
  std::string worker_address;            // X.2
};

/// Runs options.command in a new sandbox and tears it down. Throws
/// SandboxError when the sandbox cannot be set up (then nothing is left).
RunResult run_sandbox(const RunOptions& options);

/// Adds (idempotently) `proxy`'s address to lo (label lo:egs-proxy) and
/// the static nft table, and admits `proxy`. Run before `egress serve
/// --listen PROXY` so the address exists when serve binds it.
void setup_fabric(const ProxyEndpoint& proxy);

/// Withdraws `proxy` (address and nft element); removes the addresses and table
/// once no endpoint is left and no sandbox is alive, or with no `proxy`.
/// Returns false when live sandboxes kept the table in place.
bool teardown_fabric(const std::optional<ProxyEndpoint>& proxy);

/// Removes what dead instances left behind (their lock is free): runsc
/// state, cgroups, veths, files. Returns how many instances it removed.
int sweep();

/// The ids of instances whose launcher (or reaper) still runs.
std::vector<std::string> live_instances();

}  // namespace egress::sandbox
