// The c-ares resolver against real DNS servers on loopback (dnsmasq and
// fake_dns_server.py): record types, static and hosts-file names, caching
// and TTLs, rebinding, failures, the deadline, coalescing and shutdown.
// Every wait is bounded by run_until().
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <optional>
#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include "egress/dns/resolver.h"
#include "test_servers.h"

namespace egress::dns {
namespace {

using namespace std::chrono_literals;
using boost::asio::ip::make_address;
using testing::Dnsmasq;
using testing::FakeDns;

// Runs `io` until `done()` or `limit` passes; false on timeout.
template <typename Done>
bool run_until(boost::asio::io_context& io, Done done, std::chrono::milliseconds limit = 5s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    if (io.stopped()) io.restart();
    io.run_one_for(20ms);
  }
  return done();
}

void spawn_resolve(boost::asio::io_context& io, Resolver& resolver, const std::string& host,
                   std::optional<Resolution>& out) {
  boost::asio::co_spawn(io, resolver.resolve(host),
                        [&out](std::exception_ptr e, Resolution r) {
                          if (e) std::rethrow_exception(e);
                          out = std::move(r);
                        });
}

Resolution resolve(boost::asio::io_context& io, Resolver& resolver, const std::string& host) {
  std::optional<Resolution> out;
  spawn_resolve(io, resolver, host, out);
  REQUIRE(run_until(io, [&] { return out.has_value(); }));
  return *out;
}

ResolverOptions options_for(const std::string& server) {
  ResolverOptions options;
  options.servers = {server};
  options.use_hosts_file = false;
  options.timeout = 2000ms;
  return options;
}

std::vector<std::string> strings(const Resolution& r) {
  std::vector<std::string> out;
  for (const auto& a : r.addresses) out.push_back(a.to_string());
  return out;
}

TEST_CASE("A, AAAA and dual-stack names resolve from dnsmasq", "[dns][resolver]") {
  Dnsmasq dns({"--host-record=a.test,127.0.0.5", "--host-record=aaaa.test,::5",
               "--host-record=both.test,127.0.0.6,::6", "--address=/nx.test/"});
  boost::asio::io_context io;
  const auto resolver = make_cares_resolver(io.get_executor(), options_for(dns.server()));

  const auto a = resolve(io, *resolver, "a.test");
  CHECK(a.status == ResolveStatus::Ok);
  CHECK(strings(a) == std::vector<std::string>{"127.0.0.5"});
  CHECK_FALSE(a.from_cache);

  const auto aaaa = resolve(io, *resolver, "aaaa.test");
  CHECK(aaaa.status == ResolveStatus::Ok);
  CHECK(strings(aaaa) == std::vector<std::string>{"::5"});

  auto both = strings(resolve(io, *resolver, "both.test"));
  std::sort(both.begin(), both.end());
  CHECK(both == std::vector<std::string>{"127.0.0.6", "::6"});

  const auto nx = resolve(io, *resolver, "nx.test");
  CHECK(nx.status == ResolveStatus::NxDomain);
  CHECK(nx.addresses.empty());
  CHECK_THAT(nx.error, Catch::Contains("nx.test"));
}

TEST_CASE("static hosts answer before DNS, without a query", "[dns][resolver]") {
  FakeDns dns({"--a", "pinned.test=192.0.2.1"});
  boost::asio::io_context io;
  auto options = options_for(dns.server());
  options.static_hosts["pinned.test"] = {make_address("10.0.0.7"), make_address("fd00::7")};
  const auto resolver = make_cares_resolver(io.get_executor(), options);

  const auto r = resolve(io, *resolver, "pinned.test");
  CHECK(r.status == ResolveStatus::Ok);
  CHECK(strings(r) == std::vector<std::string>{"10.0.0.7", "fd00::7"});
  CHECK(dns.queries("pinned.test", "A") == 0);
}

TEST_CASE("the hosts file is consulted only when use_hosts_file is set", "[dns][resolver]") {
  FakeDns dns({});  // knows nothing: "localhost" is NXDOMAIN here, 127.0.0.1 in /etc/hosts
  boost::asio::io_context io;
  auto options = options_for(dns.server());

  SECTION("on: /etc/hosts answers, DNS is not asked") {
    options.use_hosts_file = true;
    const auto resolver = make_cares_resolver(io.get_executor(), options);
    const auto r = resolve(io, *resolver, "localhost");
    CHECK(r.status == ResolveStatus::Ok);
    CHECK(std::count(r.addresses.begin(), r.addresses.end(), make_address("127.0.0.1")) == 1);
    CHECK(dns.queries("localhost", "A") == 0);
    CHECK(resolve(io, *resolver, "localhost").from_cache);  // TTL 0 became min_ttl
  }
  SECTION("off: /etc/hosts is not read") {
    // This c-ares also never sends "localhost" to DNS (RFC 6761), so with
    // the hosts file off the name does not resolve at all.
    const auto resolver = make_cares_resolver(io.get_executor(), options);
    CHECK(resolve(io, *resolver, "localhost").status != ResolveStatus::Ok);
  }
  SECTION("on: names absent from /etc/hosts still go to DNS") {
    options.use_hosts_file = true;
    const auto resolver = make_cares_resolver(io.get_executor(), options);
    CHECK(resolve(io, *resolver, "only-in-dns.test").status == ResolveStatus::NxDomain);
    CHECK(dns.queries("only-in-dns.test", "A") == 1);
  }
}

TEST_CASE("a second lookup within the TTL is a cache hit", "[dns][resolver]") {
  FakeDns dns({"--a", "a.test=192.0.2.1", "--aaaa", "a.test=2001:db8::1", "--ttl", "a.test=60"});
  boost::asio::io_context io;
  const auto resolver = make_cares_resolver(io.get_executor(), options_for(dns.server()));

  const auto first = resolve(io, *resolver, "a.test");
  const auto second = resolve(io, *resolver, "a.test");
  CHECK_FALSE(first.from_cache);
  CHECK(second.from_cache);
  CHECK(strings(second) == strings(first));
  CHECK(first.addresses.size() == 2);
  CHECK(resolve(io, *resolver, "A.Test").from_cache);  // names are case-folded
  CHECK(dns.queries("a.test", "A") == 1);
}

TEST_CASE("an expired answer is looked up again, and a changed answer returned as-is",
          "[dns][resolver]") {
  // Rebinding: the second answer is loopback. The resolver reports it
  // faithfully; refusing it is the IP policy's job (invariant 3).
  // TTLs of 2 s leave room for a loaded CI machine between the first two
  // lookups, which must both fall inside the TTL.
  FakeDns dns({"--rebind", "re.test=93.184.216.34,127.0.0.1", "--ttl", "re.test=2"});
  boost::asio::io_context io;
  auto options = options_for(dns.server());
  options.min_ttl = 0s;
  const auto resolver = make_cares_resolver(io.get_executor(), options);

  CHECK(strings(resolve(io, *resolver, "re.test")) == std::vector<std::string>{"93.184.216.34"});
  CHECK(resolve(io, *resolver, "re.test").from_cache);
  std::this_thread::sleep_for(2200ms);
  const auto later = resolve(io, *resolver, "re.test");
  CHECK_FALSE(later.from_cache);
  CHECK(strings(later) == std::vector<std::string>{"127.0.0.1"});
  CHECK(dns.queries("re.test", "A") == 2);
}

TEST_CASE("NXDOMAIN is cached for negative_ttl", "[dns][resolver]") {
  FakeDns dns({});
  boost::asio::io_context io;
  auto options = options_for(dns.server());
  options.negative_ttl = 2s;
  const auto resolver = make_cares_resolver(io.get_executor(), options);

  CHECK(resolve(io, *resolver, "nx.test").status == ResolveStatus::NxDomain);
  const auto again = resolve(io, *resolver, "nx.test");
  CHECK(again.status == ResolveStatus::NxDomain);
  CHECK(again.from_cache);
  CHECK(dns.queries("nx.test", "A") == 1);
  std::this_thread::sleep_for(2100ms);
  CHECK_FALSE(resolve(io, *resolver, "nx.test").from_cache);
  CHECK(dns.queries("nx.test", "A") == 2);
}

TEST_CASE("a name with no A or AAAA records is NoData", "[dns][resolver]") {
  Dnsmasq dns({"--txt-record=txt.test,hello"});
  boost::asio::io_context io;
  const auto resolver = make_cares_resolver(io.get_executor(), options_for(dns.server()));
  CHECK(resolve(io, *resolver, "txt.test").status == ResolveStatus::NoData);
}

TEST_CASE("SERVFAIL is reported as ServFail", "[dns][resolver]") {
  FakeDns dns({"--servfail", "sf.test"});
  boost::asio::io_context io;
  const auto resolver = make_cares_resolver(io.get_executor(), options_for(dns.server()));
  const auto r = resolve(io, *resolver, "sf.test");
  CHECK(r.status == ResolveStatus::ServFail);
  CHECK_THAT(r.error, Catch::Contains("sf.test"));
}

TEST_CASE("a silent server times out within the configured deadline", "[dns][resolver]") {
  FakeDns dns({"--silent", "quiet.test"});
  boost::asio::io_context io;
  auto options = options_for(dns.server());
  options.timeout = 300ms;
  const auto resolver = make_cares_resolver(io.get_executor(), options);

  const auto start = std::chrono::steady_clock::now();
  const auto r = resolve(io, *resolver, "quiet.test");
  const auto took = std::chrono::steady_clock::now() - start;
  CHECK(r.status == ResolveStatus::Timeout);
  CHECK(took < 1000ms);
  CHECK(resolve(io, *resolver, "quiet.test").from_cache);  // negative-cached
}

TEST_CASE("concurrent lookups of one name share one query", "[dns][resolver]") {
  FakeDns dns({"--a", "c.test=192.0.2.3"});
  boost::asio::io_context io;
  const auto resolver = make_cares_resolver(io.get_executor(), options_for(dns.server()));

  std::vector<std::optional<Resolution>> results(10);
  for (auto& out : results) spawn_resolve(io, *resolver, "c.test", out);
  REQUIRE(run_until(io, [&] {
    return std::all_of(results.begin(), results.end(), [](const auto& r) { return r.has_value(); });
  }));
  for (const auto& r : results) {
    CHECK(r->status == ResolveStatus::Ok);
    CHECK(strings(*r) == std::vector<std::string>{"192.0.2.3"});
  }
  CHECK(dns.queries("c.test", "A") == 1);
}

TEST_CASE("destroying the resolver mid-lookup completes waiters with Error", "[dns][resolver]") {
  FakeDns dns({"--silent", "quiet.test"});
  boost::asio::io_context io;
  auto options = options_for(dns.server());
  options.timeout = 5000ms;
  auto resolver = make_cares_resolver(io.get_executor(), options);

  std::optional<Resolution> out;
  spawn_resolve(io, *resolver, "quiet.test", out);
  run_until(io, [&] { return dns.queries("quiet.test", "A") > 0; }, 2s);
  REQUIRE_FALSE(out);
  resolver.reset();
  REQUIRE(run_until(io, [&] { return out.has_value(); }, 1s));
  CHECK(out->status == ResolveStatus::Error);
  CHECK_THAT(out->error, Catch::Contains("shut down"));
  io.run_for(50ms);  // let any late handler run: it must find nothing to touch
}

TEST_CASE("a bad server list is rejected when the resolver is made", "[dns][resolver]") {
  boost::asio::io_context io;
  ResolverOptions options;
  options.servers = {"127.0.0.1:5353", "dns.example:53"};
  CHECK_THROWS_WITH(make_cares_resolver(io.get_executor(), options),
                    Catch::Contains("dns.example:53") && Catch::Contains("ip:port"));
}

TEST_CASE("statuses have stable names", "[dns]") {
  CHECK(to_string(ResolveStatus::Ok) == "ok");
  CHECK(to_string(ResolveStatus::NxDomain) == "nxdomain");
  CHECK(to_string(ResolveStatus::Timeout) == "timeout");
}

}  // namespace
}  // namespace egress::dns
