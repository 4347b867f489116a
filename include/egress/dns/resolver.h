// Name resolution for the proxy: c-ares driven by the caller's Asio
// executor (no blocking getaddrinfo on the event loop), A and AAAA, with a
// cache that honours TTLs. One Resolver per io_context thread; not
// thread-safe, no locks.
//
// Invariant 3 ("connect to what was checked") starts here: a Resolution is
// the one and only answer the proxy uses for a request; it checks these
// addresses and connects to exactly these, never resolving again.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/address.hpp>

namespace egress::dns {

struct ResolverOptions {
  /// DNS servers as "ip" or "ip:port" ("[v6]:port"). Empty: /etc/resolv.conf.
  std::vector<std::string> servers;
  /// Static names answered before DNS (egress's own /etc/hosts handling;
  /// tests and pinned internal names). Lower-case names.
  std::map<std::string, std::vector<boost::asio::ip::address>> static_hosts;
  /// Consult the system hosts file (/etc/hosts) before DNS.
  bool use_hosts_file = true;
  std::chrono::milliseconds timeout{5000};   // whole lookup, all tries
  std::chrono::seconds min_ttl{5};           // floor for cached answers
  std::chrono::seconds max_ttl{300};         // ceiling for cached answers
  std::chrono::seconds negative_ttl{5};      // NXDOMAIN / failures are cached this long
  std::size_t max_cache_entries = 10000;
};

enum class ResolveStatus { Ok, NxDomain, NoData, ServFail, Timeout, Error };
std::string_view to_string(ResolveStatus status);  // "ok", "nxdomain", ...

struct Resolution {
  ResolveStatus status = ResolveStatus::Error;
  std::vector<boost::asio::ip::address> addresses;  // Ok: at least one
  std::string error;  // human text when status != Ok
  bool from_cache = false;
};

class Resolver {
 public:
  virtual ~Resolver() = default;
  /// Resolves a normalised host name (not an IP literal) to every A and AAAA
  /// address. Never throws for DNS outcomes; they are statuses.
  virtual boost::asio::awaitable<Resolution> resolve(std::string host) = 0;
};

using ResolverPtr = std::unique_ptr<Resolver>;

/// A c-ares resolver on `executor` (an io_context's executor).
/// Throws std::runtime_error if c-ares cannot be initialised (bad server list).
ResolverPtr make_cares_resolver(boost::asio::any_io_executor executor,
                                const ResolverOptions& options);

}  // namespace egress::dns
