// The resolver's answer cache: a bounded LRU map from host name to the
// Resolution last obtained for it, each entry with its own expiry. Pure data
// structure, no sockets and no clock of its own: callers pass `now`, so the
// TTL and eviction rules are unit-tested without waiting.
//
// Invariants:
//   (1) size() <= max_entries after every call.
//   (2) find() never returns an entry whose expiry is <= now; such entries
//       are dropped on sight (a stale answer would break invariant 3 of
//       docs/security.md as surely as a second lookup).
//   (3) Stored entries never carry from_cache=true; find() sets it on the copy
//       it returns.
#pragma once

#include <chrono>
#include <cstddef>
#include <list>
#include <optional>
#include <string>
#include <unordered_map>

#include "egress/dns/resolver.h"

namespace egress::dns {

/// How long `resolution` may be served from the cache; zero means "do not
/// cache". `answer_ttl` is the smallest TTL over the answer's records (none
/// for failures). Positive answers are clamped to [min_ttl, max_ttl] (so the
/// hosts file's TTL 0 becomes min_ttl); NxDomain, NoData, ServFail and
/// Timeout live negative_ttl; Error (local trouble, shutdown) is not cached.
std::chrono::seconds cache_lifetime(const Resolution& resolution,
                                    std::optional<std::chrono::seconds> answer_ttl,
                                    const ResolverOptions& options);

class DnsCache {
 public:
  using Clock = std::chrono::steady_clock;

  explicit DnsCache(std::size_t max_entries) : max_entries_(max_entries) {}

  /// The live entry for `host` (from_cache set), refreshed as most recently
  /// used; nullopt if absent or expired.
  std::optional<Resolution> find(const std::string& host, Clock::time_point now);

  /// Stores (or replaces) the entry for `host` until `expires`, evicting the
  /// least recently used entry if the cache is full.
  void insert(const std::string& host, Resolution resolution, Clock::time_point expires);

  std::size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::string host;
    Resolution resolution;
    Clock::time_point expires;
  };
  using Lru = std::list<Entry>;  // front: most recently used

  std::size_t max_entries_;
  Lru lru_;
  std::unordered_map<std::string, Lru::iterator> entries_;
};

}  // namespace egress::dns
