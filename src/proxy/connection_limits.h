// How many worker connections are open, globally and per client address,
// across every worker thread (one io_context per thread behind
// SO_REUSEPORT, so one client's connections land on any thread). A
// connection is admitted at accept and holds a Ticket until it closes;
// nothing here runs per request.
//
// Invariants: total() equals the number of live Tickets; each client's
// count equals its live Tickets; neither ever exceeds its limit (a refused
// admission changes nothing).
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <utility>

#include "egress/policy/reason.h"

namespace egress::proxy {

/// A client address as 16 bytes (IPv4 as its IPv4-mapped IPv6 form, so
/// both spellings of one client count together).
using ClientKey = std::array<std::uint8_t, 16>;

class ConnectionLimiter {
 public:
  ConnectionLimiter(std::size_t max_connections, std::size_t max_per_client);
  ConnectionLimiter(const ConnectionLimiter&) = delete;
  ConnectionLimiter& operator=(const ConnectionLimiter&) = delete;

  /// One admitted connection; releases its place when destroyed.
  class Ticket {
   public:
    Ticket(Ticket&& other) noexcept : owner_(std::exchange(other.owner_, nullptr)), client_(other.client_) {}
    Ticket& operator=(Ticket&&) = delete;
    Ticket(const Ticket&) = delete;
    ~Ticket();

   private:
    friend class ConnectionLimiter;
    Ticket(ConnectionLimiter* owner, const ClientKey& client) : owner_(owner), client_(client) {}
    ConnectionLimiter* owner_;
    ClientKey client_;
  };

  /// A ticket, or the reason there is none: connection-limit when every
  /// place is taken, client-connection-limit when this client has all of
  /// its own.
  struct Admission {
    std::optional<Ticket> ticket;
    policy::Reason refusal = policy::Reason::ConnectionLimit;
  };
  Admission admit(const ClientKey& client);

  std::size_t total() const { return total_.load(std::memory_order_relaxed); }
  std::size_t open_for(const ClientKey& client) const;

 private:
  struct KeyHash {
    std::size_t operator()(const ClientKey& key) const noexcept;
  };
  // The global count is one atomic (a fetch_add, undone when over the
  // limit). Per-client counts need a map; it is split into shards, each
  // with its own mutex held for one hash-map update at accept and at close
  // (never per request), so threads accepting different clients rarely
  // meet. A lock-free table was rejected: reusing a slot of a client whose
  // count fell to zero races with that client's next accept, and an exact
  // count is the point of the limit.
  struct Shard {
    mutable std::mutex mutex;
    std::unordered_map<ClientKey, std::uint32_t, KeyHash> open;
  };
  static constexpr std::size_t kShards = 64;

  Shard& shard_for(const ClientKey& client);
  const Shard& shard_for(const ClientKey& client) const;
  void release(const ClientKey& client);

  const std::size_t max_connections_;
  const std::size_t max_per_client_;
  std::atomic<std::size_t> total_{0};
  std::array<Shard, kShards> shards_;
};

}  // namespace egress::proxy
