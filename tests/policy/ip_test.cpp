// IpAddress/Cidr parsing and classify() over every special-purpose range and
// its boundaries.
#include <catch2/catch.hpp>

#include "egress/policy/ip.h"

using namespace egress::policy;

namespace {
IpAddress ip(const char* text) {
  auto address = IpAddress::parse(text);
  REQUIRE(address);
  return *address;
}
}  // namespace

TEST_CASE("IP addresses parse strictly and print canonically", "[policy]") {
  struct Case { const char* text; const char* canonical; };
  auto c = GENERATE(values<Case>({
      {"1.2.3.4", "1.2.3.4"},
      {"255.255.255.255", "255.255.255.255"},
      {"::1", "::1"},
      {"2001:DB8:0:0:0:0:0:1", "2001:db8::1"},
      {"::ffff:127.0.0.1", "::ffff:127.0.0.1"},
      {"fe80::1", "fe80::1"},
  }));
  CAPTURE(c.text);
  CHECK(ip(c.text).to_string() == c.canonical);
}

TEST_CASE("IP address parsing refuses lenient and malformed forms", "[policy]") {
  auto text = GENERATE(as<std::string>{}, "", "127.1", "0x7f.0.0.1", "1.2.3.4.5", "1.2.3.256", "01.2.3.4",
                       "2130706433", "fe80::1%eth0", "[::1]", "::g", "1.2.3.4 ", std::string("1.2.3.4\0x", 9));
  CAPTURE(text);
  CHECK_FALSE(IpAddress::parse(text));
}

TEST_CASE("CIDRs parse, refuse host bits and out-of-range prefixes, and contain their addresses", "[policy]") {
  REQUIRE(Cidr::parse("10.0.0.0/8"));
  CHECK(Cidr::parse("10.0.0.0/8")->to_string() == "10.0.0.0/8");
  CHECK(Cidr::parse("10.1.2.3")->prefix_len == 32);
  CHECK(Cidr::parse("fd00::/8")->prefix_len == 8);
  CHECK(Cidr::parse("::1")->prefix_len == 128);
  CHECK(Cidr::parse("0.0.0.0/0"));
  CHECK_FALSE(Cidr::parse("10.0.0.1/8"));
  CHECK_FALSE(Cidr::parse("10.0.0.0/33"));
  CHECK_FALSE(Cidr::parse("fd00::/129"));
  CHECK_FALSE(Cidr::parse("10.0.0.0/"));
  CHECK_FALSE(Cidr::parse("10.0.0.0/-1"));
  CHECK_FALSE(Cidr::parse("10.0.0.0/8x"));
  CHECK_FALSE(Cidr::parse("fd00::1/8"));
  auto net = *Cidr::parse("172.16.0.0/12");
  CHECK(net.contains(ip("172.16.0.0")));
  CHECK(net.contains(ip("172.31.255.255")));
  CHECK_FALSE(net.contains(ip("172.32.0.0")));
  CHECK_FALSE(net.contains(ip("172.15.255.255")));
  CHECK_FALSE(net.contains(ip("::ffff:172.16.0.1")));  // families never mix in Cidr itself
  CHECK(Cidr::parse("0.0.0.0/0")->contains(ip("8.8.8.8")));
  CHECK(Cidr::parse("2001:db8::/32")->contains(ip("2001:db8:ffff::1")));
  CHECK_FALSE(Cidr::parse("2001:db8::/32")->contains(ip("2001:db9::1")));
}

TEST_CASE("Addresses are classified by the IANA special-purpose registries", "[policy]") {
  struct Case { const char* address; IpClass expected; };
  auto c = GENERATE(values<Case>({
      // IPv4, with the boundaries either side of each range
      {"0.0.0.0", IpClass::Unspecified},        {"0.255.255.255", IpClass::Unspecified},
      {"1.0.0.0", IpClass::Public},             {"8.8.8.8", IpClass::Public},
      {"9.255.255.255", IpClass::Public},       {"10.0.0.0", IpClass::Private},
      {"10.255.255.255", IpClass::Private},     {"11.0.0.0", IpClass::Public},
      {"100.63.255.255", IpClass::Public},      {"100.64.0.0", IpClass::SharedCgnat},
      {"100.127.255.255", IpClass::SharedCgnat}, {"100.128.0.0", IpClass::Public},
      {"126.255.255.255", IpClass::Public},     {"127.0.0.1", IpClass::Loopback},
      {"127.255.255.255", IpClass::Loopback},   {"128.0.0.0", IpClass::Public},
      {"169.253.255.255", IpClass::Public},     {"169.254.0.1", IpClass::LinkLocal},
      {"169.254.169.254", IpClass::Metadata},   {"169.254.169.253", IpClass::LinkLocal},
      {"169.254.255.255", IpClass::LinkLocal},  {"169.255.0.0", IpClass::Public},
      {"172.15.255.255", IpClass::Public},      {"172.16.0.0", IpClass::Private},
      {"172.31.255.255", IpClass::Private},     {"172.32.0.0", IpClass::Public},
      {"192.0.0.0", IpClass::Reserved},         {"192.0.0.255", IpClass::Reserved},
      {"192.0.1.0", IpClass::Public},           {"192.0.2.1", IpClass::Reserved},
      {"192.0.3.0", IpClass::Public},           {"192.88.99.1", IpClass::Reserved},
      {"192.88.98.255", IpClass::Public},       {"192.167.255.255", IpClass::Public},
      {"192.168.0.0", IpClass::Private},        {"192.168.255.255", IpClass::Private},
      {"192.169.0.0", IpClass::Public},         {"198.17.255.255", IpClass::Public},
      {"198.18.0.0", IpClass::Reserved},        {"198.19.255.255", IpClass::Reserved},
      {"198.20.0.0", IpClass::Public},          {"198.51.100.7", IpClass::Reserved},
      {"203.0.113.9", IpClass::Reserved},       {"203.0.114.0", IpClass::Public},
      {"223.255.255.255", IpClass::Public},     {"224.0.0.1", IpClass::Multicast},
      {"239.255.255.255", IpClass::Multicast},  {"240.0.0.0", IpClass::Reserved},
      {"255.255.255.254", IpClass::Reserved},   {"255.255.255.255", IpClass::Broadcast},
      // IPv6
      {"::", IpClass::Unspecified},             {"::1", IpClass::Loopback},
      {"::2", IpClass::Reserved},               {"::ffff:127.0.0.1", IpClass::Loopback},
      {"::ffff:7f00:1", IpClass::Loopback},     {"::ffff:10.0.0.1", IpClass::Private},
      {"::ffff:169.254.169.254", IpClass::Metadata}, {"::ffff:8.8.8.8", IpClass::Public},
      {"64:ff9b::7f00:1", IpClass::Loopback},   {"64:ff9b::808:808", IpClass::Public},
      {"64:ff9b::a9fe:a9fe", IpClass::Metadata}, {"64:ff9b:1::a00:1", IpClass::Private},
      {"64:ff9b:1::808:808", IpClass::Reserved}, {"100::1", IpClass::Reserved},
      {"100:0:0:1::1", IpClass::Reserved},      {"2001::1", IpClass::Reserved},
      {"2001:0:4136:e378::1", IpClass::Reserved}, {"2001:1ff:ffff::1", IpClass::Reserved},
      {"2001:200::1", IpClass::Public},         {"2001:db8::1", IpClass::Reserved},
      {"2001:4860:4860::8888", IpClass::Public}, {"2002:7f00:1::1", IpClass::Loopback},
      {"2002:a00:1::1", IpClass::Private},      {"2002:808:808::1", IpClass::Public},
      {"2606:4700::1111", IpClass::Public},     {"fc00::1", IpClass::UniqueLocal},
      {"fdff:ffff::1", IpClass::UniqueLocal},   {"fd00:ec2::254", IpClass::Metadata},
      {"fd00:ec2::253", IpClass::UniqueLocal},  {"fe80::1", IpClass::LinkLocal},
      {"febf::1", IpClass::LinkLocal},          {"fec0::1", IpClass::Reserved},
      {"ff02::1", IpClass::Multicast},          {"3fff::1", IpClass::Reserved},
      {"4000::1", IpClass::Reserved},
  }));
  CAPTURE(c.address, to_string(c.expected));
  CHECK(classify(ip(c.address)) == c.expected);
}

TEST_CASE("Embedded IPv4 addresses are found in mapped, NAT64 and 6to4 forms only", "[policy]") {
  CHECK(embedded_v4(ip("::ffff:1.2.3.4"))->to_string() == "1.2.3.4");
  CHECK(embedded_v4(ip("64:ff9b::102:304"))->to_string() == "1.2.3.4");
  CHECK(embedded_v4(ip("2002:102:304::"))->to_string() == "1.2.3.4");
  CHECK_FALSE(embedded_v4(ip("1.2.3.4")));
  CHECK_FALSE(embedded_v4(ip("2001:db8::102:304")));
  CHECK(unmap_v4(ip("::ffff:1.2.3.4")) == ip("1.2.3.4"));
  CHECK(unmap_v4(ip("64:ff9b::102:304")) == ip("64:ff9b::102:304"));
}

TEST_CASE("Every address class has a kebab-case name", "[policy]") {
  CHECK(to_string(IpClass::Loopback) == "loopback");
  CHECK(to_string(IpClass::SharedCgnat) == "shared-cgnat");
  CHECK(to_string(IpClass::Metadata) == "metadata");
  CHECK(to_string(IpClass::Public) == "public");
}
