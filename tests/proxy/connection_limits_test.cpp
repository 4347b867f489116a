// Connection admission: exact global and per-client counts, the right
// refusal reason, places given back when tickets go, and exact counts under
// threads admitting and releasing at once.
#include <catch2/catch.hpp>

#include <atomic>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "proxy/connection_limits.h"

using namespace egress::proxy;
using egress::policy::Reason;

namespace {

ClientKey client(std::uint8_t last) {
  ClientKey key{};
  key[10] = key[11] = 0xff;  // ::ffff:127.0.0.x
  key[12] = 127;
  key[15] = last;
  return key;
}

}  // namespace

TEST_CASE("A client over its own limit is refused with client-connection-limit; others still get in", "[proxy]") {
  ConnectionLimiter limiter(10, 2);
  auto a1 = limiter.admit(client(1));
  auto a2 = limiter.admit(client(1));
  auto a3 = limiter.admit(client(1));
  CHECK(a1.ticket.has_value());
  CHECK(a2.ticket.has_value());
  REQUIRE_FALSE(a3.ticket.has_value());
  CHECK(a3.refusal == Reason::ClientConnectionLimit);
  CHECK(limiter.open_for(client(1)) == 2);
  CHECK(limiter.total() == 2);
  auto b = limiter.admit(client(2));
  CHECK(b.ticket.has_value());
  a1.ticket.reset();
  CHECK(limiter.open_for(client(1)) == 1);
  CHECK(limiter.admit(client(1)).ticket.has_value());  // a place came back (and went again)
  CHECK(limiter.total() == 2);
}

TEST_CASE("Over the global limit every client is refused with connection-limit", "[proxy]") {
  ConnectionLimiter limiter(3, 3);
  std::vector<ConnectionLimiter::Admission> held;
  for (std::uint8_t i = 1; i <= 3; ++i) held.push_back(limiter.admit(client(i)));
  auto over = limiter.admit(client(9));
  REQUIRE_FALSE(over.ticket.has_value());
  CHECK(over.refusal == Reason::ConnectionLimit);
  CHECK(limiter.total() == 3);
  CHECK(limiter.open_for(client(9)) == 0);
  held.clear();
  CHECK(limiter.total() == 0);
  CHECK(limiter.admit(client(9)).ticket.has_value());
}

TEST_CASE("Counts stay exact while threads admit and release at once", "[proxy]") {
  ConnectionLimiter limiter(1000, 50);
  constexpr int kThreads = 4, kRounds = 2000;
  std::vector<std::thread> threads;
  std::atomic<int> refused{0};
  std::atomic<std::size_t> most{0};  // Catch2 assertions are not thread-safe: collect, check after
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kRounds; ++i) {
        const auto key = client(static_cast<std::uint8_t>(i % 3));
        auto a = limiter.admit(key);
        if (!a.ticket) {
          ++refused;
          continue;
        }
        const auto open = limiter.open_for(key);
        auto seen = most.load();
        while (open > seen && !most.compare_exchange_weak(seen, open)) {
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(most.load() <= kThreads);
  CHECK(limiter.total() == 0);
  for (std::uint8_t i = 0; i < 3; ++i) CHECK(limiter.open_for(client(i)) == 0);
  CHECK(refused.load() == 0);  // never more than 4 held at once per client, well under 50
}

namespace {

// An admitted ticket whose yield is counted instead of closing a socket.
struct Held {
  explicit Held(ConnectionLimiter::Admission admission) : ticket(std::move(admission.ticket)) {
    if (ticket) ticket->on_yield([this] { ++yields; });
  }
  std::optional<ConnectionLimiter::Ticket> ticket;
  int yields = 0;
};

}  // namespace

TEST_CASE("At a limit an idle connection's place goes to the new one; busy ones keep theirs", "[proxy]") {
  struct Case {
    const char* name;
    std::size_t max_total, max_per_client;
    std::vector<std::uint8_t> held;  // clients of the connections already open
    std::vector<bool> idle;          // which of them are idle
    std::uint8_t newcomer;
    int yielded;                     // index into held, or -1: refused
    Reason refusal;
  };
  const std::vector<Case> cases = {
      {"per client, one idle", 10, 2, {1, 1}, {false, true}, 1, 1, Reason::ClientConnectionLimit},
      {"per client, all busy", 10, 2, {1, 1}, {false, false}, 1, -1, Reason::ClientConnectionLimit},
      {"per client, another client's idle one does not count", 10, 2, {1, 1, 2}, {false, false, true}, 1, -1,
       Reason::ClientConnectionLimit},
      {"global, the newcomer's own idle one", 3, 3, {1, 2, 9}, {true, false, true}, 9, 2, Reason::ConnectionLimit},
      {"global, the longest idle anywhere", 3, 3, {1, 2, 3}, {true, true, false}, 9, 0, Reason::ConnectionLimit},
      {"global, all busy", 3, 3, {1, 2, 3}, {false, false, false}, 9, -1, Reason::ConnectionLimit},
  };
  for (const auto& c : cases) {
    SECTION(c.name) {
      ConnectionLimiter limiter(c.max_total, c.max_per_client);
      std::vector<std::unique_ptr<Held>> held;
      for (std::size_t i = 0; i < c.held.size(); ++i) {
        held.push_back(std::make_unique<Held>(limiter.admit(client(c.held[i]))));
        REQUIRE(held.back()->ticket);
        if (c.idle[i]) held.back()->ticket->enter_idle();  // in order: the first idle is idle longest
      }
      const auto total = limiter.total();
      auto admission = limiter.admit(client(c.newcomer));
      if (!admission.ticket) CHECK(admission.refusal == c.refusal);
      Held newcomer(std::move(admission));
      for (std::size_t i = 0; i < held.size(); ++i) {
        const bool expected = static_cast<int>(i) == c.yielded;
        CHECK(held[i]->yields == (expected ? 1 : 0));
        CHECK(held[i]->ticket->yielded() == expected);
      }
      if (c.yielded < 0) {
        REQUIRE_FALSE(newcomer.ticket);
        CHECK(limiter.total() == total);
        continue;
      }
      REQUIRE(newcomer.ticket);
      CHECK(limiter.total() == total);  // the place changed hands
      auto& gone = *held[static_cast<std::size_t>(c.yielded)];
      CHECK_FALSE(gone.ticket->leave_idle());  // its request, if one comes now, is not served
      const auto before = limiter.open_for(client(c.held[static_cast<std::size_t>(c.yielded)]));
      gone.ticket.reset();  // releases nothing: its place is the newcomer's
      CHECK(limiter.total() == total);
      CHECK(limiter.open_for(client(c.held[static_cast<std::size_t>(c.yielded)])) == before);
      newcomer.ticket.reset();
      held.clear();
      CHECK(limiter.total() == 0);
    }
  }
}

TEST_CASE("A connection that became busy again keeps its place", "[proxy]") {
  ConnectionLimiter limiter(10, 1);
  Held first(limiter.admit(client(1)));
  first.ticket->enter_idle();
  CHECK(first.ticket->leave_idle());  // a request arrived
  const auto second = limiter.admit(client(1));
  CHECK_FALSE(second.ticket);
  CHECK(second.refusal == Reason::ClientConnectionLimit);
  CHECK(first.yields == 0);
}
