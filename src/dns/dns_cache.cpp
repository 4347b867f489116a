// DnsCache and the TTL rule that feeds it (see dns_cache.h for invariants).
#include "dns/dns_cache.h"

#include <algorithm>

namespace egress::dns {

std::chrono::seconds cache_lifetime(const Resolution& resolution,
                                    std::optional<std::chrono::seconds> answer_ttl,
                                    const ResolverOptions& options) {
  switch (resolution.status) {
    case ResolveStatus::Ok: {
      // A floor keeps a 0-TTL answer (hosts file, load balancers) from turning
      // every request into a query; the ceiling bounds how long a changed
      // record goes unnoticed.
      const auto ttl = answer_ttl.value_or(options.min_ttl);
      return std::clamp(ttl, options.min_ttl, std::max(options.min_ttl, options.max_ttl));
    }
    case ResolveStatus::NxDomain:
    case ResolveStatus::NoData:
    case ResolveStatus::ServFail:
    case ResolveStatus::Timeout:
      return options.negative_ttl;
    case ResolveStatus::Error:
      return std::chrono::seconds{0};
  }
  return std::chrono::seconds{0};
}

std::optional<Resolution> DnsCache::find(const std::string& host, Clock::time_point now) {
  const auto it = entries_.find(host);
  if (it == entries_.end()) return std::nullopt;
  if (it->second->expires <= now) {
    lru_.erase(it->second);
    entries_.erase(it);
    return std::nullopt;
  }
  lru_.splice(lru_.begin(), lru_, it->second);
  Resolution hit = it->second->resolution;
  hit.from_cache = true;
  return hit;
}

void DnsCache::insert(const std::string& host, Resolution resolution, Clock::time_point expires) {
  if (max_entries_ == 0) return;
  resolution.from_cache = false;
  if (const auto it = entries_.find(host); it != entries_.end()) {
    it->second->resolution = std::move(resolution);
    it->second->expires = expires;
    lru_.splice(lru_.begin(), lru_, it->second);
    return;
  }
  if (entries_.size() >= max_entries_) {
    entries_.erase(lru_.back().host);
    lru_.pop_back();
  }
  lru_.push_front(Entry{host, std::move(resolution), expires});
  entries_.emplace(host, lru_.begin());
}

}  // namespace egress::dns
