// Request-target parsing (absolute-form and CONNECT authorities) and the
// decide → resolve → check pipeline, with a fake resolver on a real
// io_context.
#include <catch2/catch.hpp>

#include <optional>
#include <string>
#include <vector>

#include "egress/proxy/evaluate.h"
#include "proxy/fakes.h"

using namespace egress;
using namespace egress::proxy;
using policy::HostType;
using policy::Reason;
using policy::Verdict;
using proxy::testing::FakeResolver;

namespace {

struct Accepted {
  std::string target;
  std::string host;
  HostType type;
  std::uint16_t port;
  std::string path;
  std::string origin_form;
};

struct Refused {
  std::string target;
  Reason reason;
};

}  // namespace

TEST_CASE("Absolute-form targets parse to a normalised host, port and origin-form", "[proxy]") {
  auto c = GENERATE(values<Accepted>({
      {"http://example.com/", "example.com", HostType::Name, 80, "/", "/"},
      {"http://example.com", "example.com", HostType::Name, 80, "/", "/"},
      {"http://example.com:8080/a/b", "example.com", HostType::Name, 8080, "/a/b", "/a/b"},
      {"http://example.com:65535/", "example.com", HostType::Name, 65535, "/", "/"},
      {"http://example.com:1/", "example.com", HostType::Name, 1, "/", "/"},
      {"http://example.com:/x", "example.com", HostType::Name, 80, "/x", "/x"},  // empty port: the default
      {"http://example.com/p?q=1&r=%20", "example.com", HostType::Name, 80, "/p", "/p?q=1&r=%20"},
      {"http://example.com?q", "example.com", HostType::Name, 80, "/", "/?q"},
      {"http://example.com/p?", "example.com", HostType::Name, 80, "/p", "/p?"},
      {"http://example.com/p?q=1#frag", "example.com", HostType::Name, 80, "/p", "/p?q=1"},
      {"http://example.com/p#frag", "example.com", HostType::Name, 80, "/p", "/p"},
      {"http://example.com/a%2Fb%20c", "example.com", HostType::Name, 80, "/a%2Fb%20c", "/a%2Fb%20c"},
      {"http://EXAMPLE.Com./", "example.com", HostType::Name, 80, "/", "/"},
      {"HTTP://example.com/", "example.com", HostType::Name, 80, "/", "/"},  // schemes are case-insensitive
      {"http://2130706433/", "127.0.0.1", HostType::Ipv4, 80, "/", "/"},
      {"http://0x7f.1/", "127.0.0.1", HostType::Ipv4, 80, "/", "/"},
      {"http://0177.0.0.1:81/", "127.0.0.1", HostType::Ipv4, 81, "/", "/"},
      {"http://[::1]/", "::1", HostType::Ipv6, 80, "/", "/"},
      {"http://[::1]:8080/x", "::1", HostType::Ipv6, 8080, "/x", "/x"},
      {"http://[2001:DB8::1]/", "2001:db8::1", HostType::Ipv6, 80, "/", "/"},
  }));
  INFO(c.target);
  const auto parsed = parse_absolute_target(c.target);
  INFO("error: " << parsed.error);
  REQUIRE(parsed.request);
  const auto& r = *parsed.request;
  CHECK(r.kind == policy::RequestKind::Http);
  CHECK(r.scheme == "http");
  CHECK(r.target.host.host == c.host);
  CHECK(r.target.host.type == c.type);
  CHECK(r.target.host.address.has_value() == (c.type != HostType::Name));
  CHECK(r.target.port == c.port);
  CHECK(r.path == c.path);
  CHECK(r.origin_form == c.origin_form);
  CHECK(parsed.request);
}

TEST_CASE("The raw host is kept as the worker wrote it", "[proxy]") {
  const auto parsed = parse_absolute_target("http://EXAMPLE.Com.:81/");
  REQUIRE(parsed.request);
  CHECK(parsed.request->raw_host == "EXAMPLE.Com.");
  CHECK(parsed.request->target.host.host == "example.com");
}

TEST_CASE("Absolute-form targets that cannot be proxied are refused with 400 and a reason", "[proxy]") {
  auto c = GENERATE(values<Refused>({
      {"/", Reason::OriginForm},
      {"/index.html?q=1", Reason::OriginForm},
      {"https://example.com/", Reason::UnsupportedScheme},
      {"HTTPS://example.com/", Reason::UnsupportedScheme},
      {"ftp://example.com/file", Reason::UnsupportedScheme},
      {"file:///etc/passwd", Reason::UnsupportedScheme},
      {"gopher://example.com:70/", Reason::UnsupportedScheme},
      {"ws://example.com/", Reason::UnsupportedScheme},
      {"http://user:secret@example.com/", Reason::BadRequest},
      {"http://user@example.com/", Reason::BadRequest},
      {"http://@example.com/", Reason::BadRequest},
      {"http://example.com:0/", Reason::BadRequest},
      {"http://example.com:65536/", Reason::BadRequest},
      {"http://example.com:99999999999999999999/", Reason::BadRequest},
      {"http://example.com:8o/", Reason::BadRequest},
      {"http:///path", Reason::BadRequest},
      {"http:/path", Reason::BadRequest},
      {"http:", Reason::BadRequest},
      {"example.com:80", Reason::UnsupportedScheme},  // a scheme "example.com"
      {"", Reason::BadRequest},
      {"*", Reason::BadRequest},
      {"http://exa mple.com/", Reason::BadRequest},
      {"http://example.com/a b", Reason::BadRequest},
      {"http://ex%61mple.com/", Reason::InvalidHost},  // percent-encoding in a host
      {"http://example.com%2F.evil/", Reason::InvalidHost},
      {"http://a..b/", Reason::InvalidHost},
      {"http://1.2.3.999/", Reason::InvalidHost},
      {"http://a.0x1g/", Reason::InvalidHost},
      // Boost.URL 1.81 reads these as host 1.2.3.4 / port 8 with a path
      // that does not start with '/'; RFC 3986 does not allow that.
      {"http://1.2.3.4.evil.example/", Reason::BadRequest},
      {"http://127.0.0.1./x", Reason::BadRequest},
      {"http://[::1]x/", Reason::BadRequest},
      {"http://example.com:80x", Reason::BadRequest},
  }));
  INFO("'" << c.target << "'");
  const auto parsed = parse_absolute_target(c.target);
  CHECK_FALSE(parsed.request);
  CHECK(policy::status_for(parsed.reason) == 400);
  CHECK(policy::to_string(parsed.reason) == policy::to_string(c.reason));
  CHECK_FALSE(parsed.error.empty());
}

TEST_CASE("CONNECT authorities parse to host and port", "[proxy]") {
  auto c = GENERATE(values<Accepted>({
      {"example.com:443", "example.com", HostType::Name, 443, "", ""},
      {"EXAMPLE.com.:8443", "example.com", HostType::Name, 8443, "", ""},
      {"93.184.216.34:443", "93.184.216.34", HostType::Ipv4, 443, "", ""},
      {"2130706433:443", "127.0.0.1", HostType::Ipv4, 443, "", ""},
      {"[::1]:443", "::1", HostType::Ipv6, 443, "", ""},
      {"[2001:db8::1]:65535", "2001:db8::1", HostType::Ipv6, 65535, "", ""},
  }));
  INFO(c.target);
  const auto parsed = parse_connect_target(c.target);
  INFO("error: " << parsed.error);
  REQUIRE(parsed.request);
  const auto& r = *parsed.request;
  CHECK(r.kind == policy::RequestKind::Connect);
  CHECK(r.scheme.empty());
  CHECK(r.raw_host == c.target);
  CHECK(r.target.host.host == c.host);
  CHECK(r.target.host.type == c.type);
  CHECK(r.target.port == c.port);
  CHECK(r.path.empty());
  CHECK(r.origin_form.empty());
}

TEST_CASE("CONNECT authorities without a valid host and port are refused", "[proxy]") {
  const std::string c = GENERATE(as<std::string>{}, "example.com", "example.com:", ":443", "example.com:0",
                                 "example.com:65536", "example.com:https", "example.com:-1", "::1:443", "[::1]",
                                 "[::1]443", "[::1", "a..b:443", "ex%61mple.com:443", "", "user@example.com:443");
  INFO("'" << c << "'");
  const auto parsed = parse_connect_target(c);
  CHECK_FALSE(parsed.request);
  CHECK(policy::status_for(parsed.reason) == 400);
  CHECK(parsed.reason == Reason::InvalidHost);
  CHECK_FALSE(parsed.error.empty());
}

// ---- evaluate() ----

namespace {

constexpr const char* kSelfHosted = R"(version: 1
mode: self-hosted
allow:
  - example.com
  - .mixed.example
deny:
  - .evil.example
internal:
  - cidr: 10.20.0.0/16
    ports: [5672]
)";

RequestTarget connect_to(const std::string& authority) {
  auto parsed = parse_connect_target(authority);
  REQUIRE(parsed.request);
  return *parsed.request;
}

RequestTarget http_to(const std::string& url) {
  auto parsed = parse_absolute_target(url);
  REQUIRE(parsed.request);
  return *parsed.request;
}

Evaluation evaluate_with(const policy::Policy& policy, FakeResolver& resolver, const RequestTarget& target,
                         std::string_view method = "") {
  return proxy::testing::run(evaluate(policy, resolver, target, method, ""));
}

std::vector<std::string> endpoints_of(const Evaluation& e) {
  std::vector<std::string> out;
  for (const auto& ep : e.endpoints) {
    const auto a = ep.address();
    out.push_back((a.is_v6() ? "[" + a.to_string() + "]" : a.to_string()) + ":" + std::to_string(ep.port()));
  }
  return out;
}

}  // namespace

TEST_CASE("An allowed name connects to exactly the addresses it resolved to", "[proxy]") {
  const auto policy = policy::load_policy_string(kSelfHosted, "test.yaml");
  FakeResolver resolver;
  resolver.answer("example.com", {"93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"});

  SECTION("CONNECT") {
    const auto e = evaluate_with(*policy, resolver, connect_to("EXAMPLE.com:443"));
    CHECK(e.decision.verdict == Verdict::Allow);
    CHECK(e.decision.reason == Reason::AllowRule);
    CHECK(e.decision.rule == "test.yaml:4");
    CHECK(endpoints_of(e) == std::vector<std::string>{"93.184.216.34:443", "[2606:2800:220:1:248:1893:25c8:1946]:443"});
    CHECK_FALSE(e.from_dns_cache);
  }
  SECTION("HTTP on an explicit port the rule allows") {
    const auto e = evaluate_with(*policy, resolver, http_to("http://example.com/x?y"), "GET");
    CHECK(e.decision.verdict == Verdict::Allow);
    CHECK(endpoints_of(e) == std::vector<std::string>{"93.184.216.34:80", "[2606:2800:220:1:248:1893:25c8:1946]:80"});
  }
  SECTION("an answer from the cache is flagged") {
    resolver.set_from_cache(true);
    const auto e = evaluate_with(*policy, resolver, connect_to("example.com:443"));
    CHECK(e.decision.allows());
    CHECK(e.from_dns_cache);
  }
  CHECK(resolver.lookups() == std::vector<std::string>{"example.com"});
}

TEST_CASE("A name that resolves partly private is refused whole", "[proxy]") {
  const auto policy = policy::load_policy_string(kSelfHosted, "test.yaml");
  struct Case {
    const char* name;
    std::vector<std::string> addresses;
  };
  auto c = GENERATE(values<Case>({
      {"public then private", {"93.184.216.34", "10.0.0.5"}},
      {"private then public", {"192.168.1.1", "93.184.216.34"}},
      {"loopback v6", {"93.184.216.34", "::1"}},
      {"metadata", {"169.254.169.254"}},
      {"unique-local v6", {"fd00::1"}},
      {"v4-mapped loopback", {"::ffff:127.0.0.1"}},
  }));
  INFO(c.name);
  FakeResolver resolver;
  resolver.answer("www.mixed.example", c.addresses);
  const auto e = evaluate_with(*policy, resolver, connect_to("www.mixed.example:443"));
  CHECK(e.decision.verdict == Verdict::Deny);
  CHECK(e.decision.reason == Reason::PrivateAddress);
  CHECK(e.endpoints.empty());
  CHECK(policy::status_for(e.decision.reason) == 403);
  CHECK(resolver.lookups().size() == 1);
}

TEST_CASE("DNS failures refuse an allowed name with 502, or 504 on a timeout", "[proxy]") {
  const auto policy = policy::load_policy_string(kSelfHosted, "test.yaml");
  struct Case {
    dns::ResolveStatus status;
    Reason reason;
    int refusal_status;
  };
  auto c = GENERATE(values<Case>({
      {dns::ResolveStatus::NxDomain, Reason::DnsNxdomain, 502},
      {dns::ResolveStatus::NoData, Reason::DnsNxdomain, 502},
      {dns::ResolveStatus::ServFail, Reason::DnsFailure, 502},
      {dns::ResolveStatus::Error, Reason::DnsFailure, 502},
      {dns::ResolveStatus::Timeout, Reason::DnsTimeout, 504},
  }));
  INFO(dns::to_string(c.status));
  FakeResolver resolver;
  resolver.fail("gone.mixed.example", c.status, "canned failure");
  const auto e = evaluate_with(*policy, resolver, http_to("http://gone.mixed.example/"), "GET");
  CHECK(e.decision.verdict == Verdict::Deny);
  CHECK(e.decision.reason == c.reason);
  CHECK(e.decision.detail == "gone.mixed.example: canned failure");
  CHECK(policy::status_for(e.decision.reason) == c.refusal_status);
  CHECK(e.endpoints.empty());
}

TEST_CASE("An empty answer for an allowed name is a DNS failure, not a connection", "[proxy]") {
  const auto policy = policy::load_policy_string(kSelfHosted, "test.yaml");
  FakeResolver resolver;
  resolver.answer("empty.mixed.example", {});
  const auto e = evaluate_with(*policy, resolver, connect_to("empty.mixed.example:443"));
  CHECK(e.decision.verdict == Verdict::Deny);
  CHECK(e.decision.reason == Reason::DnsFailure);
  CHECK(policy::status_for(e.decision.reason) == 502);
  CHECK(e.endpoints.empty());
}

TEST_CASE("IP literals are decided without resolving", "[proxy]") {
  const auto developer = policy::load_policy_string("version: 1\nmode: developer\n", "dev.yaml");
  struct Case {
    std::string target;
    Verdict verdict;
    Reason reason;
    std::vector<std::string> endpoints;
  };
  auto c = GENERATE(values<Case>({
      {"93.184.216.34:443", Verdict::Allow, Reason::DeveloperMode, {"93.184.216.34:443"}},
      {"1558500514:80", Verdict::Allow, Reason::DeveloperMode, {"92.228.212.162:80"}},
      {"[2606:4700::1111]:443", Verdict::Allow, Reason::DeveloperMode, {"[2606:4700::1111]:443"}},
      {"127.0.0.1:80", Verdict::Deny, Reason::PrivateAddress, {}},
      {"2130706433:80", Verdict::Deny, Reason::PrivateAddress, {}},
      {"[::1]:443", Verdict::Deny, Reason::PrivateAddress, {}},
      {"169.254.169.254:80", Verdict::Deny, Reason::PrivateAddress, {}},
  }));
  INFO(c.target);
  FakeResolver resolver;  // knows no names: any lookup throws
  const auto e = evaluate_with(*developer, resolver, connect_to(c.target));
  CHECK(resolver.lookups().empty());
  CHECK(e.decision.verdict == c.verdict);
  CHECK(e.decision.reason == c.reason);
  CHECK(endpoints_of(e) == c.endpoints);
  if (!e.decision.allows()) CHECK(policy::status_for(e.decision.reason) == 403);
}

TEST_CASE("A denied name is never resolved unless an internal cidr could allow it", "[proxy]") {
  const auto policy = policy::load_policy_string(kSelfHosted, "test.yaml");
  struct Case {
    const char* name;
    std::string target;
    std::size_t lookups;
    Verdict verdict;
    Reason reason;
    std::vector<std::string> endpoints;
  };
  auto c = GENERATE(values<Case>({
      {"deny rule", "x.evil.example:5672", 0, Verdict::Deny, Reason::DenyRule, {}},
      {"deny rule, apex", "evil.example:443", 0, Verdict::Deny, Reason::DenyRule, {}},
      {"allowed host, wrong port", "example.com:22", 0, Verdict::Deny, Reason::PortNotAllowed, {}},
      {"default deny, no internal cidr on the port", "rabbit.corp:443", 0, Verdict::Deny, Reason::NotAllowed, {}},
      {"default deny rescued by the internal cidr", "rabbit.corp:5672", 1, Verdict::Allow, Reason::InternalRule,
       {"10.20.3.4:5672"}},
      {"default deny, public answer not rescued", "public.corp:5672", 1, Verdict::Deny, Reason::NotAllowed, {}},
      {"default deny, answer partly in the cidr", "half.corp:5672", 1, Verdict::Deny, Reason::NotAllowed, {}},
      // The policy refused the name; a failed lookup while looking for a
      // rescue must not turn that into a DNS error.
      {"default deny, rescue lookup fails", "gone.corp:5672", 1, Verdict::Deny, Reason::NotAllowed, {}},
      {"default deny, rescue lookup times out", "slow.corp:5672", 1, Verdict::Deny, Reason::NotAllowed, {}},
  }));
  INFO(c.name << ": " << c.target);
  FakeResolver resolver;
  resolver.answer("rabbit.corp", {"10.20.3.4"})
      .answer("public.corp", {"93.184.216.34"})
      .answer("half.corp", {"10.20.3.4", "10.21.0.1"})
      .fail("gone.corp", dns::ResolveStatus::NxDomain, "no such name")
      .fail("slow.corp", dns::ResolveStatus::Timeout, "timed out");
  const auto e = evaluate_with(*policy, resolver, connect_to(c.target));
  CHECK(resolver.lookups().size() == c.lookups);
  CHECK(e.decision.verdict == c.verdict);
  CHECK(e.decision.reason == c.reason);
  CHECK(endpoints_of(e) == c.endpoints);
  if (!e.decision.allows()) CHECK(policy::status_for(e.decision.reason) == 403);
}

TEST_CASE("Production mode resolves only what an internal cidr could allow", "[proxy]") {
  const auto policy = policy::load_policy_string(R"(version: 1
mode: production
internal:
  - host: artifacts.internal
    ports: [443]
  - cidr: 10.20.0.0/16
    ports: [5672]
)",
                                                 "prod.yaml");
  FakeResolver resolver;
  resolver.answer("artifacts.internal", {"10.9.8.7"}).answer("mq.internal", {"10.20.0.9"});

  SECTION("an internal host may resolve to private addresses") {
    const auto e = evaluate_with(*policy, resolver, connect_to("artifacts.internal:443"));
    CHECK(e.decision.verdict == Verdict::Allow);
    CHECK(e.decision.reason == Reason::InternalRule);
    CHECK(endpoints_of(e) == std::vector<std::string>{"10.9.8.7:443"});
  }
  SECTION("a name inside the internal cidr") {
    const auto e = evaluate_with(*policy, resolver, connect_to("mq.internal:5672"));
    CHECK(e.decision.verdict == Verdict::Allow);
    CHECK(e.decision.reason == Reason::InternalRule);
    CHECK(endpoints_of(e) == std::vector<std::string>{"10.20.0.9:5672"});
  }
  SECTION("the internet is not internal and is not looked up") {
    const auto e = evaluate_with(*policy, resolver, http_to("http://example.com/"), "GET");
    CHECK(e.decision.verdict == Verdict::Deny);
    CHECK(e.decision.reason == Reason::NotInternal);
    CHECK(policy::status_for(e.decision.reason) == 403);
    CHECK(resolver.lookups().empty());
  }
}
