// Connection admission (see connection_limits.h).
#include "proxy/connection_limits.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <string_view>

namespace egress::proxy {

// One admitted connection's place. `state` goes Busy <-> Idle on the
// connection's own thread, and Idle -> Yielded on an admitting thread
// under the shard's lock; a Yielded place is no longer in its shard.
struct ConnectionLimiter::Place {
  enum State : int { Busy, Idle, Yielded };
  explicit Place(const ClientKey& key) : client(key) {}
  const ClientKey client;
  std::atomic<int> state{Busy};
  std::atomic<std::int64_t> idle_since{0};  // steady clock, ns
  std::function<void()> close;              // set before the first Idle
};

namespace {

std::int64_t steady_now() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The idle place in `places` that has been idle longest, or null.
ConnectionLimiter::Place* longest_idle(const std::vector<ConnectionLimiter::Place*>& places) {
  ConnectionLimiter::Place* best = nullptr;
  for (auto* place : places) {
    if (place->state.load(std::memory_order_acquire) != ConnectionLimiter::Place::Idle) continue;
    if (!best || place->idle_since.load(std::memory_order_relaxed) < best->idle_since.load(std::memory_order_relaxed))
      best = place;
  }
  return best;
}

}  // namespace

ConnectionLimiter::ConnectionLimiter(std::size_t max_connections, std::size_t max_per_client)
    : max_connections_(max_connections), max_per_client_(max_per_client) {}

ConnectionLimiter::Ticket::Ticket(ConnectionLimiter* owner, std::unique_ptr<Place> place)
    : owner_(owner), place_(std::move(place)) {}

ConnectionLimiter::Ticket::Ticket(Ticket&& other) noexcept = default;

ConnectionLimiter::Ticket::~Ticket() {
  if (place_) owner_->release(*place_);
}

void ConnectionLimiter::Ticket::on_yield(std::function<void()> close) { place_->close = std::move(close); }

void ConnectionLimiter::Ticket::enter_idle() {
  place_->idle_since.store(steady_now(), std::memory_order_relaxed);
  int busy = Place::Busy;
  place_->state.compare_exchange_strong(busy, Place::Idle, std::memory_order_acq_rel);
}

bool ConnectionLimiter::Ticket::leave_idle() {
  int idle = Place::Idle;
  return place_->state.compare_exchange_strong(idle, Place::Busy, std::memory_order_acq_rel) || idle == Place::Busy;
}

bool ConnectionLimiter::Ticket::yielded() const { return place_->state.load(std::memory_order_acquire) == Place::Yielded; }

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
  auto place = std::make_unique<Place>(client);
  Shard& shard = shard_for(client);
  std::unique_lock lock(shard.mutex);
  // A client at its own limit gets the place of one of its idle
  // connections; the total does not change.
  if (shard.open[client].size() >= max_per_client_) {
    if (!yield_idle(shard, client)) {
      if (shard.open[client].empty()) shard.open.erase(client);
      out.refusal = policy::Reason::ClientConnectionLimit;
      return out;
    }
  } else if (total_.fetch_add(1, std::memory_order_acq_rel) >= max_connections_) {
    // Every place is taken: this client's idle connection, or the one idle
    // longest anywhere, gives its place up.
    total_.fetch_sub(1, std::memory_order_acq_rel);
    if (!yield_idle(shard, client)) {
      lock.unlock();
      const bool freed = yield_longest_idle();
      lock.lock();
      // The freed place is counted in total_ and is now this one's; it is
      // given back if, meanwhile, the client reached its own limit.
      if (!freed || shard.open[client].size() >= max_per_client_) {
        if (freed) total_.fetch_sub(1, std::memory_order_acq_rel);
        if (shard.open[client].empty()) shard.open.erase(client);
        out.refusal = policy::Reason::ConnectionLimit;
        return out;
      }
    }
  }
  shard.open[client].push_back(place.get());
  out.ticket.emplace(Ticket(this, std::move(place)));
  return out;
}

bool ConnectionLimiter::yield_idle(Shard& shard, const ClientKey& client) {
  const auto it = shard.open.find(client);
  if (it == shard.open.end()) return false;
  auto& places = it->second;
  // A place found idle may turn busy before it is claimed: try the next.
  while (Place* candidate = longest_idle(places)) {
    int idle = Place::Idle;
    if (!candidate->state.compare_exchange_strong(idle, Place::Yielded, std::memory_order_acq_rel)) continue;
    places.erase(std::find(places.begin(), places.end(), candidate));
    if (candidate->close) candidate->close();
    return true;
  }
  return false;
}

bool ConnectionLimiter::yield_longest_idle() {
  // Bounded: each try either yields or found its candidate turned busy.
  for (int attempt = 0; attempt < 3; ++attempt) {
    Shard* best_shard = nullptr;
    ClientKey best_client{};
    std::int64_t best_since = std::numeric_limits<std::int64_t>::max();
    for (Shard& shard : shards_) {
      std::lock_guard lock(shard.mutex);
      for (const auto& [client, places] : shard.open) {
        const Place* place = longest_idle(places);
        if (!place || place->idle_since.load(std::memory_order_relaxed) >= best_since) continue;
        best_since = place->idle_since.load(std::memory_order_relaxed);
        best_shard = &shard;
        best_client = client;
      }
    }
    if (!best_shard) return false;
    std::lock_guard lock(best_shard->mutex);
    if (yield_idle(*best_shard, best_client)) {
      if (best_shard->open[best_client].empty()) best_shard->open.erase(best_client);
      return true;
    }
  }
  return false;
}

void ConnectionLimiter::release(Place& place) {
  Shard& shard = shard_for(place.client);
  {
    std::lock_guard lock(shard.mutex);
    // A yielded place was taken out of its shard and its count handed to
    // another connection: nothing to give back.
    if (place.state.load(std::memory_order_acquire) == Place::Yielded) return;
    const auto it = shard.open.find(place.client);
    if (it != shard.open.end()) {
      auto& places = it->second;
      places.erase(std::remove(places.begin(), places.end(), &place), places.end());
      // Forget a client with no open connection, so the map holds only
      // clients that are connected now.
      if (places.empty()) shard.open.erase(it);
    }
  }
  total_.fetch_sub(1, std::memory_order_acq_rel);
}

std::size_t ConnectionLimiter::open_for(const ClientKey& client) const {
  const Shard& shard = shard_for(client);
  std::lock_guard lock(shard.mutex);
  const auto it = shard.open.find(client);
  return it == shard.open.end() ? 0 : it->second.size();
}

}  // namespace egress::proxy
