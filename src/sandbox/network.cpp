// See network.h. `ip` and `nft` run as child processes with an argv: they
// are the supported netlink front ends on Debian, and a ruleset in nft's
// language is reviewable in a way hand-built netlink messages are not.
#include "sandbox/network.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "sandbox/fd.h"
#include "sandbox/process.h"

namespace egress::sandbox {
namespace {

std::string ip4(const policy::IpAddress& a) { return a.to_string(); }

std::uint32_t host_order(const policy::IpAddress& a) {
  return (std::uint32_t{a.bytes[0]} << 24) | (std::uint32_t{a.bytes[1]} << 16) | (std::uint32_t{a.bytes[2]} << 8) |
         a.bytes[3];
}

struct Ipv4Net {
  std::uint32_t network, mask;  // host order
};

// Every IPv4 network on a host interface (a /32 on lo included): a worker
// /30 must overlap none, or its route would shadow part of a real network.
std::vector<Ipv4Net> host_ipv4_networks() {
  std::vector<Ipv4Net> out;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return out;
  for (auto* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || !i->ifa_netmask) continue;
    const auto addr = ntohl(reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr);
    const auto mask = ntohl(reinterpret_cast<sockaddr_in*>(i->ifa_netmask)->sin_addr.s_addr);
    out.push_back({addr & mask, mask});
  }
  freeifaddrs(list);
  return out;
}

// The static ruleset. `egsh*` matches every worker link from the moment it
// exists, so no per-instance rule can be missing or left behind.
std::string fabric_ruleset() {
  return std::string("table inet ") + kNftTable +
         " {\n"
         "  set proxies { type ipv4_addr . inet_service; }\n"
         "  chain input {\n"
         "    type filter hook input priority filter - 10; policy accept;\n"
         "    iifname \"egsh*\" ip daddr . tcp dport @proxies accept\n"
         "    iifname \"egsh*\" meta l4proto tcp counter reject with tcp reset\n"
         "    iifname \"egsh*\" counter reject with icmpx type admin-prohibited\n"
         "  }\n"
         "  chain forward {\n"
         "    type filter hook forward priority filter - 10; policy accept;\n"
         "    iifname \"egsh*\" counter drop\n"
         "    oifname \"egsh*\" counter drop\n"
         "  }\n"
         "}\n";
}

}  // namespace

NetnsHolder::NetnsHolder() {
  Pipe ready = make_pipe();
  const pid_t parent = getpid();
  pid_ = fork_or_throw("the netns holder");
  if (pid_ == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);
    for (int fd = 3; fd < 1024; ++fd)
      if (fd != ready.write.get()) close(fd);
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, nullptr);  // only SIGKILL ends it
    const char status = unshare(CLONE_NEWNET) == 0 ? 'k' : 'e';
    if (write(ready.write.get(), &status, 1) != 1) _exit(1);
    close(ready.write.get());
    for (;;) pause();
  }
  ready.write.reset();
  pollfd p{ready.read.get(), POLLIN, 0};
  char status = 0;
  const bool got = poll(&p, 1, 5000) == 1 && read(ready.read.get(), &status, 1) == 1;
  ready.read.reset();
  if (!got || status != 'k') {
    stop();
    throw SandboxError("could not create a network namespace (unshare(CLONE_NEWNET) failed); run as root on a kernel with network namespaces");
  }
  fd_ = open(path().c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) {
    stop();
    throw SandboxError("open " + path() + ": " + std::strerror(errno));
  }
}

NetnsHolder::~NetnsHolder() { stop(); }

void NetnsHolder::stop() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  pid_ = -1;
}

std::optional<Subnet30> allocate_subnet(const policy::Cidr& range) {
  if (!range.network.is_v4() || range.prefix_len > 30) return std::nullopt;
  const auto used = host_ipv4_networks();
  const std::uint32_t first = host_order(range.network);
  const std::uint64_t size = std::uint64_t{1} << (32 - range.prefix_len);
  // Bounded: at most 4096 candidates even for a huge range.
  for (std::uint64_t off = 0; off + 4 <= size && off < 4 * 4096; off += 4) {
    const std::uint32_t base = first + static_cast<std::uint32_t>(off);
    bool taken = false;
    for (const auto& net : used)  // overlap: the block is inside the network, or it inside the block
      taken = taken || (base & net.mask) == net.network || (net.network & 0xfffffffcu) == base;
    if (!taken) return Subnet30{base};
  }
  return std::nullopt;
}

bool link_exists(const std::string& name) { return if_nametoindex(name.c_str()) != 0; }

void delete_link(const std::string& name) {
  if (link_exists(name)) run_command({"ip", "link", "del", name});
}

std::vector<std::string> links_with_prefix(const std::string& prefix) {
  std::vector<std::string> out;
  if (auto* list = if_nameindex()) {
    for (auto* i = list; i->if_index != 0; ++i)
      if (std::string_view(i->if_name).starts_with(prefix)) out.emplace_back(i->if_name);
    if_freenameindex(list);
  }
  return out;
}

bool write_sysctl(const std::string& path, const std::string& value) {
  const int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = write(fd, value.data(), value.size()) == static_cast<ssize_t>(value.size());
  close(fd);
  return ok;
}

void create_worker_link(const std::string& id, const NetnsHolder& holder, const Subnet30& subnet,
                        const ProxyEndpoint& proxy, Breakage breakage) {
  const std::string host = kHostLinkPrefix + id, worker = kWorkerLinkPrefix + id;
  must_run({"ip", "link", "add", host, "type", "veth", "peer", "name", worker, "netns", std::to_string(holder.pid())});
  // The host side never routes for the worker, whatever ip_forward says.
  if (!write_sysctl("/proc/sys/net/ipv4/conf/" + host + "/forwarding", "0"))
    throw SandboxError("could not turn forwarding off on " + host);
  write_sysctl("/proc/sys/net/ipv6/conf/" + host + "/disable_ipv6", "1");
  must_run({"ip", "addr", "add", ip4(subnet.host()) + "/30", "dev", host});
  must_run({"ip", "link", "set", host, "up"});

  const int ns = holder.fd();
  const int v6 = run_in_child(ns, [] {
    const bool a = write_sysctl("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
    const bool d = write_sysctl("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
    return a && d ? 0 : 1;
  });
  (void)v6;  // a kernel without IPv6 has nothing to disable
  must_run({"ip", "link", "set", "lo", "up"}, ns);
  must_run({"ip", "addr", "add", ip4(subnet.worker()) + "/30", "dev", worker}, ns);
  must_run({"ip", "link", "set", worker, "up"}, ns);
  if (breakage == Breakage::DefaultRoute) {
    must_run({"ip", "route", "add", "default", "via", ip4(subnet.host()), "dev", worker}, ns);
  } else if (proxy.address != subnet.host()) {
    must_run({"ip", "route", "add", ip4(proxy.address) + "/32", "via", ip4(subnet.host()), "dev", worker}, ns);
  }
}

void create_plain_link(const std::string& host, const std::string& inner, const NetnsHolder& holder,
                       const Subnet30& subnet) {
  must_run({"ip", "link", "add", host, "type", "veth", "peer", "name", inner, "netns", std::to_string(holder.pid())});
  write_sysctl("/proc/sys/net/ipv4/conf/" + host + "/forwarding", "0");
  write_sysctl("/proc/sys/net/ipv6/conf/" + host + "/disable_ipv6", "1");
  must_run({"ip", "addr", "add", ip4(subnet.host()) + "/30", "dev", host});
  must_run({"ip", "link", "set", host, "up"});
  must_run({"ip", "link", "set", "lo", "up"}, holder.fd());
  must_run({"ip", "addr", "add", ip4(subnet.worker()) + "/30", "dev", inner}, holder.fd());
  must_run({"ip", "link", "set", inner, "up"}, holder.fd());
}

void ensure_fabric(const ProxyEndpoint& proxy) {
  must_run({"ip", "addr", "replace", ip4(proxy.address) + "/32", "dev", "lo", "label", kProxyLabel});
  if (!run_command({"nft", "list", "table", "inet", kNftTable}).ok()) must_run({"nft", "-f", "-"}, -1, fabric_ruleset());
  must_run({"nft", "add", "element", "inet", kNftTable, "proxies",
            "{ " + ip4(proxy.address) + " . " + std::to_string(proxy.port) + " }"});
}

void withdraw_proxy(const ProxyEndpoint& proxy) {
  run_command({"nft", "delete", "element", "inet", kNftTable, "proxies",
               "{ " + ip4(proxy.address) + " . " + std::to_string(proxy.port) + " }"});
  // Another port may still use the address; keep it then.
  const auto listing = run_command({"nft", "list", "set", "inet", kNftTable, "proxies"});
  if (listing.output.find(ip4(proxy.address) + " . ") == std::string::npos)
    run_command({"ip", "addr", "del", ip4(proxy.address) + "/32", "dev", "lo", "label", kProxyLabel});
}

bool fabric_has_proxies() {
  const auto listing = run_command({"nft", "list", "set", "inet", kNftTable, "proxies"});
  return listing.ok() && listing.output.find("elements") != std::string::npos;
}

void delete_fabric() {
  run_command({"nft", "delete", "table", "inet", kNftTable});
  run_command({"ip", "addr", "flush", "dev", "lo", "label", kProxyLabel});
}

}  // namespace egress::sandbox
