// A bounded LRU cache of minted leaf certificates, keyed by host. One cache
// per proxy thread (each Worker owns one), so a lookup takes no lock; the
// price is that a host may be minted once per thread, which costs one
// signature each.
//
// Invariants (check_invariants() asserts them in debug builds):
//   1. size() <= capacity(); the map and the recency list hold the same hosts.
//   2. An entry is served only while `now` is before its refresh time: half
//      way through its validity, so a certificate handed to a worker always
//      has at least half its lifetime left (and never outlives the CA).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>

#include "egress/tls/leaf.h"
#include "egress/tls/openssl.h"

namespace egress::tls {

class CertCache {
 public:
  using Clock = std::chrono::system_clock;

  /// capacity 0 is treated as 1.
  explicit CertCache(std::size_t capacity);

  struct Lookup {
    X509Ptr cert;  // an owning reference, valid after eviction
    bool hit = false;
  };

  /// The cached certificate for `host` if it is fresh, else one from
  /// `mint(host)`, stored as the most recent entry (evicting the least
  /// recently used when full). `validity` is what `mint` produces (the
  /// refresh time is not_after - validity / 2).
  Lookup get(std::string_view host, Clock::time_point now, std::chrono::seconds validity,
             const std::function<Leaf(std::string_view)>& mint);

  std::size_t size() const { return map_.size(); }
  std::size_t capacity() const { return capacity_; }
  std::uint64_t hits() const { return hits_; }
  std::uint64_t misses() const { return misses_; }
  std::uint64_t evictions() const { return evictions_; }

  bool check_invariants() const;

 private:
  struct Entry {
    std::string host;
    X509Ptr cert;
    Clock::time_point refresh_at;
  };
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using List = std::list<Entry>;

  std::size_t capacity_;
  List recency_;  // front = most recently used
  std::unordered_map<std::string, List::iterator, Hash, std::equal_to<>> map_;
  std::uint64_t hits_ = 0, misses_ = 0, evictions_ = 0;
};

}  // namespace egress::tls
