// The per-thread LRU of leaf certificates: hits, misses, eviction order and
// refresh half way through a certificate's life.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "egress/tls/cert_cache.h"

using namespace egress::tls;
using Clock = std::chrono::system_clock;
using namespace std::chrono_literals;

namespace {

/// A mint function that records which hosts it was asked for; the
/// certificates are empty X509 objects (the cache never looks inside).
struct CountingMint {
  std::vector<std::string> minted;
  Clock::time_point now;
  std::chrono::seconds validity{24h};
  Leaf operator()(std::string_view host) {
    minted.emplace_back(host);
    return Leaf{X509Ptr(X509_new()), now + validity};
  }
};

}  // namespace

TEST_CASE("The cache mints once per host and then hits", "[tls]") {
  CertCache cache(8);
  CountingMint mint{{}, Clock::now()};
  const auto get = [&](const char* host) { return cache.get(host, mint.now, mint.validity, std::ref(mint)); };
  const auto first = get("a.test");
  CHECK_FALSE(first.hit);
  CHECK(first.cert);
  const auto second = get("a.test");
  CHECK(second.hit);
  CHECK(second.cert.get() == first.cert.get());  // the same certificate, shared
  CHECK(mint.minted == std::vector<std::string>{"a.test"});
  CHECK(cache.hits() == 1);
  CHECK(cache.misses() == 1);
  CHECK(cache.check_invariants());
}

TEST_CASE("The least recently used host is evicted first", "[tls]") {
  struct Step {
    const char* host;
    bool hit;
  };
  // capacity 2: a, b, a (hit; b is now oldest), c (evicts b), a (hit), b (miss, evicts c), c (miss)
  const std::vector<Step> steps = {{"a", false}, {"b", false}, {"a", true}, {"c", false},
                                   {"a", true},  {"b", false}, {"c", false}};
  CertCache cache(2);
  CountingMint mint{{}, Clock::now()};
  for (const auto& step : steps) {
    CAPTURE(step.host);
    CHECK(cache.get(step.host, mint.now, mint.validity, std::ref(mint)).hit == step.hit);
    CHECK(cache.size() <= 2);
    CHECK(cache.check_invariants());
  }
  CHECK(cache.evictions() == 3);
}

TEST_CASE("An entry is minted again once half its validity has passed", "[tls]") {
  CertCache cache(4);
  const auto start = Clock::now();
  CountingMint mint{{}, start};
  CHECK_FALSE(cache.get("a", start, mint.validity, std::ref(mint)).hit);
  CHECK(cache.get("a", start + 11h, mint.validity, std::ref(mint)).hit);
  mint.now = start + 12h + 1s;
  CHECK_FALSE(cache.get("a", mint.now, mint.validity, std::ref(mint)).hit);
  CHECK(cache.size() == 1);
  CHECK(mint.minted.size() == 2);
  CHECK(cache.check_invariants());
}

TEST_CASE("A certificate handed out survives its eviction", "[tls]") {
  CertCache cache(0);  // treated as 1
  CHECK(cache.capacity() == 1);
  CountingMint mint{{}, Clock::now()};
  auto a = cache.get("a", mint.now, mint.validity, std::ref(mint));
  cache.get("b", mint.now, mint.validity, std::ref(mint));  // evicts a
  CHECK(a.cert);
  CHECK(X509_get_version(a.cert.get()) >= 0);  // still a live object
}
