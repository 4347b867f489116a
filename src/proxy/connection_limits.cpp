// Connection admission (see connection_limits.h).
#include "proxy/connection_limits.h"

#include <string_view>

namespace egress::proxy {

ConnectionLimiter::ConnectionLimiter(std::size_t max_connections, std::size_t max_per_client)
    : max_connections_(max_connections), max_per_client_(max_per_client) {}

ConnectionLimiter::Ticket::~Ticket() {
  if (owner_) owner_->release(client_);
}

std::size_t ConnectionLimiter::KeyHash::operator()(const ClientKey& key) const noexcept {
  return std::hash<std::string_view>{}(std::string_view(reinterpret_cast<const char*>(key.data()), key.size()));
}

ConnectionLimiter::Shard& ConnectionLimiter::shard_for(const ClientKey& client) {
  return shards_[KeyHash{}(client) % kShards];
}

const ConnectionLimiter::Shard& ConnectionLimiter::shard_for(const ClientKey& client) const {
  return shards_[KeyHash{}(client) % kShards];
}

ConnectionLimiter::Admission ConnectionLimiter::admit(const ClientKey& client) {
  Admission out;
  // Take a global place first; give it back if that overshot the limit.
  if (total_.fetch_add(1, std::memory_order_acq_rel) >= max_connections_) {
    total_.fetch_sub(1, std::memory_order_acq_rel);
    out.refusal = policy::Reason::ConnectionLimit;
    return out;
  }
  Shard& shard = shard_for(client);
  {
    std::lock_guard lock(shard.mutex);
    auto& count = shard.open[client];
    if (count >= max_per_client_) {
      if (count == 0) shard.open.erase(client);
      total_.fetch_sub(1, std::memory_order_acq_rel);
      out.refusal = policy::Reason::ClientConnectionLimit;
      return out;
    }
    ++count;
  }
  out.ticket.emplace(Ticket(this, client));
  return out;
}

void ConnectionLimiter::release(const ClientKey& client) {
  Shard& shard = shard_for(client);
  {
    std::lock_guard lock(shard.mutex);
    const auto it = shard.open.find(client);
    // Forget a client with no open connection, so the map holds only
    // clients that are connected now.
    if (it != shard.open.end() && --it->second == 0) shard.open.erase(it);
  }
  total_.fetch_sub(1, std::memory_order_acq_rel);
}

std::size_t ConnectionLimiter::open_for(const ClientKey& client) const {
  const Shard& shard = shard_for(client);
  std::lock_guard lock(shard.mutex);
  const auto it = shard.open.find(client);
  return it == shard.open.end() ? 0 : it->second;
}

}  // namespace egress::proxy
