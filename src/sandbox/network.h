// Host networking for sandboxes: the shared fabric (proxy dummy link, static
// nft table), per-worker network namespaces held by a process, veth pairs
// and address allocation from a role's source range.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "egress/policy/ip.h"
#include "egress/sandbox/sandbox.h"

namespace egress::sandbox {

/// A network namespace kept alive by a child process that only waits
/// (PDEATHSIG=SIGKILL): when it and the sandbox are gone, the kernel frees
/// the namespace and every interface in it.
class NetnsHolder {
 public:
  NetnsHolder();  // forks; throws SandboxError
  ~NetnsHolder();
  NetnsHolder(const NetnsHolder&) = delete;
  NetnsHolder& operator=(const NetnsHolder&) = delete;

  pid_t pid() const { return pid_; }
  int fd() const { return fd_; }  // open /proc/PID/ns/net, for setns()
  std::string path() const { return "/proc/" + std::to_string(pid_) + "/ns/net"; }
  void stop();  // SIGKILL and reap; idempotent

 private:
  pid_t pid_ = -1;
  int fd_ = -1;
};

/// X.0/30 inside a role range: host side X.1, worker X.2.
struct Subnet30 {
  std::uint32_t base = 0;  // host order
  policy::IpAddress host() const { return policy::IpAddress::v4(base + 1); }
  policy::IpAddress worker() const { return policy::IpAddress::v4(base + 2); }
};

/// The first /30 of `range` that overlaps no network on a host interface
/// (so also no other worker's /30).
/// Call under the global lock, so two launchers cannot pick the same one.
std::optional<Subnet30> allocate_subnet(const policy::Cidr& range);

bool link_exists(const std::string& name);
void delete_link(const std::string& name);  // best effort
/// Names of the host's links that start with `prefix`.
std::vector<std::string> links_with_prefix(const std::string& prefix);
/// Writes a sysctl under /proc/sys/net for the namespace of the caller.
bool write_sysctl(const std::string& path, const std::string& value);

/// Creates the veth pair into `holder`'s namespace and configures both
/// ends: addresses, forwarding and IPv6 off on the host side, lo up, one
/// route to the proxy address (or, with Breakage::DefaultRoute, a default
/// route: verify's deliberate failure).
void create_worker_link(const std::string& id, const NetnsHolder& holder, const Subnet30& subnet,
                        const ProxyEndpoint& proxy, Breakage breakage);

/// A plain veth pair into `holder` (verify's upstream namespace): host side
/// X.1/30 with forwarding off, namespace side X.2/30, no other routes.
void create_plain_link(const std::string& host_name, const std::string& ns_name, const NetnsHolder& holder,
                       const Subnet30& subnet);

void ensure_fabric(const ProxyEndpoint& proxy);
void withdraw_proxy(const ProxyEndpoint& proxy);  // best effort
bool fabric_has_proxies();
void delete_fabric();  // best effort

}  // namespace egress::sandbox
