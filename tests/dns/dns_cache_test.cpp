// DnsCache and cache_lifetime without sockets: expiry, LRU eviction and the
// TTL clamping rules, with `now` passed in instead of waiting.
#include <catch2/catch.hpp>

#include "dns/dns_cache.h"

namespace egress::dns {
namespace {

using namespace std::chrono_literals;
using Clock = DnsCache::Clock;

Resolution ok(const char* ip) {
  return Resolution{ResolveStatus::Ok, {boost::asio::ip::make_address(ip)}, {}, false};
}

TEST_CASE("a cached answer is returned until it expires, marked from_cache", "[dns][cache]") {
  DnsCache cache(10);
  const auto t0 = Clock::now();
  cache.insert("a.test", ok("192.0.2.1"), t0 + 5s);
  const auto hit = cache.find("a.test", t0 + 4s);
  REQUIRE(hit);
  CHECK(hit->from_cache);
  CHECK(hit->addresses.at(0).to_string() == "192.0.2.1");
  CHECK_FALSE(cache.find("a.test", t0 + 5s));
  CHECK(cache.size() == 0);  // expired entries are dropped on sight
  CHECK_FALSE(cache.find("other.test", t0));
}

TEST_CASE("the least recently used entry is evicted when the cache is full", "[dns][cache]") {
  DnsCache cache(2);
  const auto t0 = Clock::now();
  cache.insert("a.test", ok("192.0.2.1"), t0 + 60s);
  cache.insert("b.test", ok("192.0.2.2"), t0 + 60s);
  REQUIRE(cache.find("a.test", t0));  // a is now more recent than b
  cache.insert("c.test", ok("192.0.2.3"), t0 + 60s);
  CHECK(cache.size() == 2);
  CHECK(cache.find("a.test", t0));
  CHECK_FALSE(cache.find("b.test", t0));
  CHECK(cache.find("c.test", t0));
}

TEST_CASE("inserting an existing host replaces its answer and expiry", "[dns][cache]") {
  DnsCache cache(2);
  const auto t0 = Clock::now();
  cache.insert("a.test", ok("192.0.2.1"), t0 + 1s);
  cache.insert("a.test", ok("192.0.2.9"), t0 + 60s);
  CHECK(cache.size() == 1);
  const auto hit = cache.find("a.test", t0 + 30s);
  REQUIRE(hit);
  CHECK(hit->addresses.at(0).to_string() == "192.0.2.9");
}

TEST_CASE("a cache of size zero stores nothing", "[dns][cache]") {
  DnsCache cache(0);
  cache.insert("a.test", ok("192.0.2.1"), Clock::now() + 60s);
  CHECK(cache.size() == 0);
}

TEST_CASE("positive TTLs are clamped to [min_ttl, max_ttl]", "[dns][cache]") {
  ResolverOptions options;
  options.min_ttl = 5s;
  options.max_ttl = 300s;
  const auto answer = ok("192.0.2.1");
  CHECK(cache_lifetime(answer, 60s, options) == 60s);
  CHECK(cache_lifetime(answer, 1s, options) == 5s);
  CHECK(cache_lifetime(answer, 0s, options) == 5s);  // hosts file: TTL 0
  CHECK(cache_lifetime(answer, 86400s, options) == 300s);
  CHECK(cache_lifetime(answer, std::nullopt, options) == 5s);
}

TEST_CASE("failures live negative_ttl, local errors are not cached", "[dns][cache]") {
  ResolverOptions options;
  options.negative_ttl = 7s;
  for (const auto status : {ResolveStatus::NxDomain, ResolveStatus::NoData,
                            ResolveStatus::ServFail, ResolveStatus::Timeout}) {
    CHECK(cache_lifetime(Resolution{status, {}, "x", false}, std::nullopt, options) == 7s);
  }
  CHECK(cache_lifetime(Resolution{ResolveStatus::Error, {}, "x", false}, std::nullopt, options) ==
        0s);
}

}  // namespace
}  // namespace egress::dns
