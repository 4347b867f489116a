// The per-thread LRU of minted leaf certificates. See egress/tls/cert_cache.h.
#include "egress/tls/cert_cache.h"

#include <cassert>

namespace egress::tls {

CertCache::CertCache(std::size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {
  map_.reserve(capacity_);
}

CertCache::Lookup CertCache::get(std::string_view host, Clock::time_point now, std::chrono::seconds validity,
                                 const std::function<Leaf(std::string_view)>& mint) {
  if (const auto it = map_.find(host); it != map_.end()) {
    if (now < it->second->refresh_at) {
      ++hits_;
      recency_.splice(recency_.begin(), recency_, it->second);
      return {share(it->second->cert.get()), true};
    }
    recency_.erase(it->second);  // stale: minted again below
    map_.erase(it);
  }
  ++misses_;
  Leaf leaf = mint(host);
  X509Ptr served = share(leaf.cert.get());
  if (map_.size() >= capacity_) {
    map_.erase(recency_.back().host);
    recency_.pop_back();
    ++evictions_;
  }
  recency_.push_front(Entry{std::string(host), std::move(leaf.cert), leaf.not_after - validity / 2});
  map_.emplace(recency_.front().host, recency_.begin());
  assert(check_invariants());
  return {std::move(served), false};
}

bool CertCache::check_invariants() const {
  if (map_.size() > capacity_ || map_.size() != recency_.size()) return false;
  for (auto it = recency_.begin(); it != recency_.end(); ++it) {
    const auto found = map_.find(it->host);
    if (found == map_.end() || found->second != it) return false;
  }
  return true;
}

}  // namespace egress::tls
