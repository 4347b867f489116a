// Connection admission: exact global and per-client counts, the right
// refusal reason, places given back when tickets go, and exact counts under
// threads admitting and releasing at once.
#include <catch2/catch.hpp>

#include <atomic>
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
