// The DNS server list parser: accepted spellings and the errors users see.
#include <catch2/catch.hpp>

#include <stdexcept>

#include "dns/server_list.h"

namespace egress::dns {
namespace {

TEST_CASE("server entries become c-ares CSV with explicit ports", "[dns][servers]") {
  CHECK(servers_to_csv({}) == "");
  CHECK(servers_to_csv({"127.0.0.1"}) == "127.0.0.1:53");
  CHECK(servers_to_csv({"127.0.0.1:5353", "::1", "[::1]:5300"}) ==
        "127.0.0.1:5353,[::1]:53,[::1]:5300");
}

TEST_CASE("bad server entries are rejected with the entry named", "[dns][servers]") {
  for (const char* bad : {"dns.example", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:99999",
                          "[::1", "[::1]x", "1.2.3:53", ""}) {
    INFO(bad);
    CHECK_THROWS_WITH(servers_to_csv({bad}), Catch::Contains(std::string("\"") + bad + "\"") &&
                                                Catch::Contains("ip:port"));
  }
}

}  // namespace
}  // namespace egress::dns
