// normalize_host and parse_authority: every spelling a worker can send for a
// host reduces to one canonical form, and everything ambiguous is refused.
#include <catch2/catch.hpp>

#include "egress/policy/target.h"

using namespace egress::policy;

namespace {
struct Accepted {
  std::string raw;
  const char* canonical;
  HostType type;
};
}  // namespace

TEST_CASE("Hosts normalise to one canonical spelling", "[policy]") {
  auto c = GENERATE(values<Accepted>({
      // names: case, trailing dot, underscores
      {"example.com", "example.com", HostType::Name},
      {"EXAMPLE.COM", "example.com", HostType::Name},
      {"GitHub.Com.", "github.com", HostType::Name},
      {"a_b.example", "a_b.example", HostType::Name},
      {"localhost", "localhost", HostType::Name},
      {"x-1.y-2.z", "x-1.y-2.z", HostType::Name},
      // IDN: Unicode to A-labels, A-labels kept, full-width forms mapped
      {"bücher.de", "xn--bcher-kva.de", HostType::Name},
      {"BÜCHER.de.", "xn--bcher-kva.de", HostType::Name},
      {"xn--bcher-kva.de", "xn--bcher-kva.de", HostType::Name},
      {"XN--BCHER-KVA.DE", "xn--bcher-kva.de", HostType::Name},
      {"faß.de", "xn--fa-hia.de", HostType::Name},
      {"\xEF\xBC\xA5\xEF\xBC\xB8.com", "ex.com", HostType::Name},  // full-width "ＥＸ"
      {"g\xD1\x96thub.com", "xn--gthub-n2e.com", HostType::Name},  // Cyrillic i: a different host
      {"example\xE3\x80\x82" "com", "example.com", HostType::Name},  // ideographic full stop
      // every IPv4 spelling of 127.0.0.1
      {"127.0.0.1", "127.0.0.1", HostType::Ipv4},
      {"127.0.0.1.", "127.0.0.1", HostType::Ipv4},
      {"2130706433", "127.0.0.1", HostType::Ipv4},
      {"0177.0.0.1", "127.0.0.1", HostType::Ipv4},
      {"0x7f.0.0.1", "127.0.0.1", HostType::Ipv4},
      {"0X7F.0.0.1", "127.0.0.1", HostType::Ipv4},
      {"0x7f000001", "127.0.0.1", HostType::Ipv4},
      {"017700000001", "127.0.0.1", HostType::Ipv4},
      {"127.1", "127.0.0.1", HostType::Ipv4},
      {"127.0.1", "127.0.0.1", HostType::Ipv4},
      {"0x7f.1", "127.0.0.1", HostType::Ipv4},
      {"0177.0x0.0.01", "127.0.0.1", HostType::Ipv4},
      {"0x7f.0.0x0.1", "127.0.0.1", HostType::Ipv4},
      {"00000127.0.0.1", "87.0.0.1", HostType::Ipv4},  // leading zeros mean octal
      {"1.2.3.4", "1.2.3.4", HostType::Ipv4},
      {"169.254.43518", "169.254.169.254", HostType::Ipv4},
      {"0xa9fea9fe", "169.254.169.254", HostType::Ipv4},
      {"0", "0.0.0.0", HostType::Ipv4},
      {"0x", "0.0.0.0", HostType::Ipv4},
      {"4294967295", "255.255.255.255", HostType::Ipv4},
      {"255.16777215", "255.255.255.255", HostType::Ipv4},
      {"0xff.0xff.0xffff", "255.255.255.255", HostType::Ipv4},
      {"\xEF\xBC\x91\xEF\xBC\x92\xEF\xBC\x97.0.0.1", "127.0.0.1", HostType::Ipv4},  // full-width digits
      // IPv6, bracketed or bare
      {"[::1]", "::1", HostType::Ipv6},
      {"::1", "::1", HostType::Ipv6},
      {"[::FFFF:127.0.0.1]", "::ffff:127.0.0.1", HostType::Ipv6},
      {"[::ffff:7f00:1]", "::ffff:127.0.0.1", HostType::Ipv6},
      {"[64:ff9b::7f00:1]", "64:ff9b::7f00:1", HostType::Ipv6},
      {"[2001:DB8:0::1]", "2001:db8::1", HostType::Ipv6},
      {"[fe80::1]", "fe80::1", HostType::Ipv6},
  }));
  CAPTURE(c.raw);
  auto result = normalize_host(c.raw);
  INFO(result.error);
  REQUIRE(result.host);
  CHECK(result.host->host == c.canonical);
  CHECK(result.host->type == c.type);
  CHECK(result.host->address.has_value() == (c.type != HostType::Name));
  if (result.host->address) CHECK(result.host->address->to_string() == c.canonical);
}

TEST_CASE("The Cyrillic homograph of github.com does not normalise to github.com", "[policy]") {
  auto homograph = normalize_host("g\xD1\x96thub.com");
  REQUIRE(homograph.host);
  CHECK(homograph.host->host != "github.com");
}

TEST_CASE("Malformed, ambiguous and overflowing hosts are refused", "[policy]") {
  struct Refused { std::string raw; const char* fragment; };
  auto c = GENERATE(values<Refused>({
      {"", "empty"},
      {".", "no labels"},
      {"a..b", "empty label"},
      {".example.com", "empty label"},
      {"example.com..", "empty label"},
      {"exa mple.com", "space"},
      {"example.com%2f", "percent"},
      {"ex%41mple.com", "percent"},
      {std::string("exa\0mple.com", 12), "control"},
      {"exa\tmple.com", "control"},
      {"exa\x7fmple.com", "control"},
      {"exa\\mple.com", "backslash"},
      {"user@example.com", "'@'"},
      {"example.com:443", "':'"},
      {"exa/mple.com", "'/'"},
      {"exa*mple.com", "'*'"},
      {"[fe80::1%eth0]", "zone"},
      {"fe80::1%eth0", "zone"},
      {"[::1", "bracketed"},
      {"[1.2.3.4]", "IPv6"},
      {"[::g]", "IPv6"},
      {std::string(64, 'a') + ".com", "63"},
      {std::string(60, 'a') + "." + std::string(60, 'b') + "." + std::string(60, 'c') + "." +
           std::string(60, 'd') + "." + std::string(60, 'e'),
       "253"},
      {"1.2.3.999", "IPv4"},
      {"1.2.3.4.5", "IPv4"},
      {"256.0.0.1", "IPv4"},
      {"1.256.0.1", "IPv4"},
      {"1.2.65536", "IPv4"},
      {"1.16777216", "IPv4"},
      {"4294967296", "IPv4"},
      {"0x100000000", "IPv4"},
      {"99999999999999999999", "IPv4"},
      {"08.0.0.1", "IPv4"},
      {"0x7g.0.0.1", "IPv4"},
      {"a.0x1g", "IPv4"},
      {"example.123", "IPv4"},
      {"foo.0x", "IPv4"},
      {"1..2", "IPv4"},
      {"xn--zz.com", "internationalised"},
      {"xn--abc.com", "internationalised"},
      {"ex\xC3" "ample.com", "internationalised"},  // invalid UTF-8
  }));
  CAPTURE(c.raw);
  auto result = normalize_host(c.raw);
  CHECK_FALSE(result.host);
  CHECK_THAT(result.error, Catch::Contains(c.fragment));
}

TEST_CASE("A name of exactly 253 octets with 63-octet labels is accepted", "[policy]") {
  std::string label(63, 'a');
  std::string name = label + "." + label + "." + label + "." + std::string(61, 'b');
  REQUIRE(name.size() == 253);
  CHECK(normalize_host(name).host);
  CHECK_FALSE(normalize_host(name + "b").host);
}

TEST_CASE("Authorities need a host and a port from 1 to 65535", "[policy]") {
  struct Case { const char* authority; const char* host; int port; };
  auto c = GENERATE(values<Case>({
      {"example.com:443", "example.com", 443},
      {"EXAMPLE.com.:80", "example.com", 80},
      {"[::1]:443", "::1", 443},
      {"[::ffff:127.0.0.1]:8080", "::ffff:127.0.0.1", 8080},
      {"127.1:22", "127.0.0.1", 22},
      {"2130706433:443", "127.0.0.1", 443},
      {"a:1", "a", 1},
      {"a:65535", "a", 65535},
      {"a:00443", "a", 443},
      {"example.com:", nullptr, 0},
      {"example.com", nullptr, 0},
      {"example.com:0", nullptr, 0},
      {"example.com:65536", nullptr, 0},
      {"example.com:99999", nullptr, 0},
      {"example.com:443x", nullptr, 0},
      {"example.com:+443", nullptr, 0},
      {"example.com:-1", nullptr, 0},
      {"example.com: 443", nullptr, 0},
      {"::1:443", nullptr, 0},
      {"[::1]", nullptr, 0},
      {"[::1]443", nullptr, 0},
      {"[::1:443", nullptr, 0},
      {":443", nullptr, 0},
      {"user@example.com:443", nullptr, 0},
      {"[fe80::1%25eth0]:443", nullptr, 0},
      {"1.2.3.999:443", nullptr, 0},
  }));
  CAPTURE(c.authority);
  auto result = parse_authority(c.authority);
  if (c.host) {
    INFO(result.error);
    REQUIRE(result.target);
    CHECK(result.target->host.host == c.host);
    CHECK(result.target->port == c.port);
  } else {
    CHECK_FALSE(result.target);
    CHECK_FALSE(result.error.empty());
  }
}
