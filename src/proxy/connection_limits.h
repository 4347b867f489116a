// How many worker connections are open, globally and per client address,
// across every worker thread (one io_context per thread behind
// SO_REUSEPORT, so one client's connections land on any thread). A
// connection is admitted at accept and holds a Ticket until it closes;
// nothing here runs per request.
//
// At a limit, a place held by an idle connection (waiting for a request
// to start, nothing unread) is given to the new connection instead of
// refusing it: one of the same client's for the per-client limit, and for
// the global one the client's own or else the one idle longest anywhere. The idle connection is told to close
// (its closer, posted to its own thread) and its Ticket then releases
// nothing. So a flood of idle connections cannot lock a client out, while
// connections busy with a request still count against the limit.
//
// Invariants: total() equals the number of live Tickets that have not
// yielded; each client's count likewise; neither ever exceeds its limit (a
// refused admission changes nothing).
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

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

  struct Place;

  /// One admitted connection; releases its place when destroyed (unless
  /// the place was given to another connection meanwhile).
  class Ticket {
   public:
    Ticket(Ticket&& other) noexcept;
    Ticket& operator=(Ticket&&) = delete;
    Ticket(const Ticket&) = delete;
    ~Ticket();

    /// How the connection is closed if its place is given away while it is
    /// idle. Called on the admitting thread, under the limiter's lock: it
    /// must only post the close to the connection's own thread. Set once,
    /// before the first enter_idle().
    void on_yield(std::function<void()> close);
    /// The connection waits for a request to start, with nothing unread:
    /// its place may be given away from now on.
    void enter_idle();
    /// A request starts. False: the place was given away meanwhile, so the
    /// connection must close without serving it.
    [[nodiscard]] bool leave_idle();
    bool yielded() const;

   private:
    friend class ConnectionLimiter;
    Ticket(ConnectionLimiter* owner, std::unique_ptr<Place> place);
    ConnectionLimiter* owner_;
    std::unique_ptr<Place> place_;
  };

  /// A ticket, or the reason there is none: connection-limit when every
  /// place is taken by a busy connection, client-connection-limit when
  /// this client's own are.
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
  // limit). Per-client places need a map; it is split into shards, each
  // with its own mutex held for one hash-map update at accept and at close
  // (never per request: a request only flips its place's atomic state),
  // so threads accepting different clients rarely meet. A lock-free table was rejected: reusing a slot of a client whose
  // count fell to zero races with that client's next accept, and an exact
  // count is the point of the limit.
  struct Shard {
    mutable std::mutex mutex;
    std::unordered_map<ClientKey, std::vector<Place*>, KeyHash> open;  // in admission order
  };
  static constexpr std::size_t kShards = 64;

  Shard& shard_for(const ClientKey& client);
  const Shard& shard_for(const ClientKey& client) const;
  void release(Place& place);
  // Under the shard's lock: gives the place of the longest-idle connection
  // in `places` away (tells it to close) and returns true, or false when
  // none is idle.
  static bool yield_idle(Shard& shard, const ClientKey& client);
  // Gives away the place of the connection idle longest among all
  // clients; false when none is idle. Takes the shards' locks one at a
  // time, so the caller holds none.
  bool yield_longest_idle();

  const std::size_t max_connections_;
  const std::size_t max_per_client_;
  std::atomic<std::size_t> total_{0};
  std::array<Shard, kShards> shards_;
};

/// A connection waiting for a request head to start, with nothing unread:
/// a drain may close it then (`awaiting`), and a connection limit may give
/// its place to a new connection (the ticket; none for the requests inside
/// an inspected tunnel, whose connection is busy with the tunnel).
struct IdleWait {
  ConnectionLimiter::Ticket* ticket = nullptr;
  bool awaiting = false;

  void enter() {
    awaiting = true;
    if (ticket) ticket->enter_idle();
  }
  /// False: the place went to another connection; close without serving.
  [[nodiscard]] bool leave() {
    awaiting = false;
    return !ticket || ticket->leave_idle();
  }
};

}  // namespace egress::proxy
