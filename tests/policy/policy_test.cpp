// Policy::decide and check_addresses, following policy.h's evaluation order:
// one table over three fixtures (self-hosted, developer, production) with the
// expected verdict, reason and deciding rule line for every case.
#include <catch2/catch.hpp>

#include <map>

#include "egress/policy/policy.h"
#include "testdata.h"

using namespace egress::policy;
using egress::policy::test::testdata;

namespace {

const Policy& fixture(const std::string& name) {
  static std::map<std::string, PolicySnapshot> cache;
  auto& slot = cache[name];
  if (!slot) slot = load_policy_file(testdata(name));
  return *slot;
}

struct Case {
  const char* fixture;
  const char* role;
  const char* authority;
  RequestKind kind;
  const char* path;
  std::vector<const char*> addresses;  // empty: decide() alone
  Verdict verdict;
  Reason reason;
  const char* rule;  // ":N" for line N of the fixture, else the literal rule text
};

constexpr auto Http = RequestKind::Http;
constexpr auto Connect = RequestKind::Connect;
constexpr auto Allow = Verdict::Allow;
constexpr auto Deny = Verdict::Deny;
constexpr auto Report = Verdict::Report;
const char* const S = "decide_self_hosted.yaml";
const char* const D = "decide_developer.yaml";
const char* const P = "decide_production.yaml";

struct Outcome {
  Decision decision;
  Target target;
};

Outcome run(const Case& c) {
  auto parsed = parse_authority(c.authority);
  INFO(parsed.error);
  REQUIRE(parsed.target);
  const Policy& policy = fixture(c.fixture);
  DecideArgs args{*parsed.target, c.kind, c.kind == Connect ? "" : "GET", c.path, c.role};
  Decision decision = policy.decide(args);
  if (!c.addresses.empty()) {
    INFO("needs_addresses must be set before resolving");
    REQUIRE(decision.needs_addresses);
    std::vector<IpAddress> addresses;
    for (const char* text : c.addresses) addresses.push_back(*IpAddress::parse(text));
    decision = policy.check_addresses(decision, args, addresses);
    CHECK_FALSE(decision.needs_addresses);
  }
  return {decision, *parsed.target};
}

std::string expected_rule(const Case& c) {
  if (c.rule[0] == ':') return testdata(c.fixture) + c.rule;
  return c.rule;
}

}  // namespace

TEST_CASE("Decisions follow the documented evaluation order", "[policy]") {
  auto c = GENERATE(values<Case>({
      // self-hosted: exact hosts, case and trailing dot
      {S, "", "github.com:443", Connect, "", {"140.82.112.3"}, Allow, Reason::AllowRule, ":4"},
      {S, "", "GITHUB.COM.:443", Connect, "", {}, Allow, Reason::AllowRule, ":4"},
      {S, "", "github.com:80", Http, "/", {}, Allow, Reason::AllowRule, ":4"},
      {S, "", "api.github.com:443", Connect, "", {}, Deny, Reason::NotAllowed, "default"},
      {S, "", "github.com.evil:443", Connect, "", {}, Deny, Reason::NotAllowed, "default"},
      {S, "", "g\xD1\x96thub.com:443", Connect, "", {}, Deny, Reason::NotAllowed, "default"},
      // ".x": apex and every subdomain; "*.x": subdomains only
      {S, "", "githubusercontent.com:443", Connect, "", {}, Allow, Reason::AllowRule, ":5"},
      {S, "", "objects.githubusercontent.com:443", Connect, "", {}, Allow, Reason::AllowRule, ":5"},
      {S, "", "a.b.githubusercontent.com:80", Http, "/", {}, Allow, Reason::AllowRule, ":5"},
      {S, "", "xgithubusercontent.com:443", Connect, "", {}, Deny, Reason::NotAllowed, "default"},
      {S, "", "example.org:443", Connect, "", {}, Deny, Reason::NotAllowed, "default"},
      {S, "", "www.example.org:443", Connect, "", {}, Allow, Reason::AllowRule, ":6"},
      {S, "", "a.b.example.org:443", Connect, "", {}, Allow, Reason::AllowRule, ":6"},
      // regexes are anchored at both ends
      {S, "", "foo.com:443", Connect, "", {}, Allow, Reason::AllowRule, ":7"},
      {S, "", "afoo.com:443", Connect, "", {}, Deny, Reason::NotAllowed, "default"},
      {S, "", "foo.com.evil:443", Connect, "", {}, Deny, Reason::NotAllowed, "default"},
      {S, "", "fooxcom:443", Connect, "", {}, Deny, Reason::NotAllowed, "default"},
      // ports and paths
      {S, "", "api.example.net:443", Http, "/v1/models", {}, Allow, Reason::AllowRule, ":8"},
      {S, "", "api.example.net:443", Connect, "", {}, Allow, Reason::AllowRule, ":8"},
      {S, "", "api.example.net:443", Http, "/v2/models", {}, Deny, Reason::PathNotAllowed, ":8"},
      {S, "", "api.example.net:443", Http, "/v1/../admin", {}, Deny, Reason::PathNotAllowed, ":8"},
      {S, "", "api.example.net:443", Http, "/v1/%2e%2e/admin", {}, Deny, Reason::PathNotAllowed, ":8"},
      {S, "", "api.example.net:80", Http, "/v1/", {}, Deny, Reason::PortNotAllowed, ":8"},
      {S, "", "ssh.example:22", Connect, "", {}, Allow, Reason::AllowRule, ":15"},
      {S, "", "ssh.example:443", Connect, "", {}, Deny, Reason::PortNotAllowed, ":15"},
      // IDN entries and targets
      {S, "", "b\xC3\xBC" "cher.de:443", Connect, "", {}, Allow, Reason::AllowRule, ":14"},
      {S, "", "xn--bcher-kva.de:443", Connect, "", {}, Allow, Reason::AllowRule, ":14"},
      // deny wins over allow; report state for allow and deny rules
      {S, "", "raw.githubusercontent.com:443", Connect, "", {}, Deny, Reason::DenyRule, ":21"},
      {S, "", "gist.githubusercontent.com:443", Connect, "", {}, Report, Reason::DenyRule, ":22"},
      {S, "", "github.com:22", Connect, "", {}, Deny, Reason::DenyRule, ":24"},
      {S, "", "trial.example:443", Connect, "", {}, Report, Reason::NotAllowed, ":12"},
      {S, "", "trial.example:443", Connect, "", {"1.1.1.1"}, Report, Reason::NotAllowed, ":12"},
      {S, "", "trial.example:443", Connect, "", {"10.0.0.1"}, Deny, Reason::PrivateAddress, ""},
      {S, "", "metadata.trial:443", Connect, "", {"169.254.169.254"}, Report, Reason::NotAllowed, ":31"},
      // internal rules and the internal cidr rescue
      {S, "", "artifacts.internal:443", Connect, "", {"10.1.2.3"}, Allow, Reason::InternalRule, ":28"},
      {S, "", "artifacts.internal:5672", Connect, "", {}, Deny, Reason::NotAllowed, "default"},
      {S, "", "rabbit.internal:5672", Connect, "", {"10.20.0.5"}, Allow, Reason::InternalRule, ":29"},
      {S, "", "rabbit.internal:5672", Connect, "", {"10.20.0.5", "10.99.0.1"}, Deny, Reason::NotAllowed, "default"},
      {S, "", "10.20.0.5:5672", Connect, "", {}, Allow, Reason::InternalRule, ":29"},
      {S, "", "10.20.0.5:443", Connect, "", {}, Deny, Reason::NotAllowed, "default"},
      // allowed names must resolve to public addresses only, all of them
      {S, "", "allowed-but-private.example:443", Connect, "", {"8.8.8.8"}, Allow, Reason::AllowRule, ":17"},
      {S, "", "allowed-but-private.example:443", Connect, "", {"127.0.0.1"}, Deny, Reason::PrivateAddress, ""},
      {S, "", "allowed-but-private.example:443", Connect, "", {"10.0.0.1"}, Deny, Reason::PrivateAddress, ""},
      {S, "", "allowed-but-private.example:443", Connect, "", {"169.254.169.254"}, Deny, Reason::PrivateAddress, ""},
      {S, "", "allowed-but-private.example:443", Connect, "", {"::ffff:10.0.0.1"}, Deny, Reason::PrivateAddress, ""},
      {S, "", "allowed-but-private.example:443", Connect, "", {"fd00::1"}, Deny, Reason::PrivateAddress, ""},
      {S, "", "allowed-but-private.example:443", Connect, "", {"8.8.8.8", "10.0.0.1"}, Deny, Reason::PrivateAddress, ""},
      {S, "", "allowed-but-private.example:443", Connect, "", {"8.8.4.4"}, Deny, Reason::DenyRule, ":26"},
      {S, "", "allowed-but-private.example:443", Connect, "", {"64:ff9b::808:404"}, Deny, Reason::DenyRule, ":26"},
      {S, "", "intranet-allowed.example:443", Connect, "", {"10.20.0.9"}, Deny, Reason::PrivateAddress, ""},
      // roles add to the global rules; an unknown role adds nothing
      {S, "comfyui", "hf.huggingface.co:443", Connect, "", {}, Allow, Reason::AllowRule, ":36"},
      {S, "", "hf.huggingface.co:443", Connect, "", {}, Deny, Reason::NotAllowed, "default"},
      {S, "comfyui", "github.com:443", Connect, "", {}, Deny, Reason::DenyRule, ":37"},
      {S, "comfyui", "objects.githubusercontent.com:443", Connect, "", {}, Allow, Reason::AllowRule, ":5"},
      {S, "ai_worker", "cache.local:443", Connect, "", {"10.30.1.1"}, Allow, Reason::InternalRule, ":41"},
      {S, "", "cache.local:443", Connect, "", {}, Deny, Reason::NotAllowed, "default"},
      {S, "nobody", "github.com:443", Connect, "", {}, Allow, Reason::AllowRule, ":4"},
      // developer: public destinations on any port, never non-public ones
      {D, "", "example.com:443", Connect, "", {"93.184.216.34"}, Allow, Reason::DeveloperMode, "mode:developer"},
      {D, "", "example.com:8080", Http, "/", {"93.184.216.34", "2606:2800:220:1::1"}, Allow, Reason::DeveloperMode, "mode:developer"},
      {D, "", "example.com:443", Connect, "", {"127.0.0.1"}, Deny, Reason::PrivateAddress, ""},
      {D, "", "8.8.8.8:22", Connect, "", {}, Allow, Reason::DeveloperMode, "mode:developer"},
      {D, "", "127.0.0.1:80", Http, "/", {}, Deny, Reason::PrivateAddress, ""},
      {D, "", "2130706433:80", Http, "/", {}, Deny, Reason::PrivateAddress, ""},
      {D, "", "0177.0.0.1:80", Http, "/", {}, Deny, Reason::PrivateAddress, ""},
      {D, "", "[::1]:443", Connect, "", {}, Deny, Reason::PrivateAddress, ""},
      {D, "", "[::ffff:127.0.0.1]:443", Connect, "", {}, Deny, Reason::PrivateAddress, ""},
      {D, "", "[64:ff9b::a00:1]:443", Connect, "", {}, Deny, Reason::PrivateAddress, ""},
      {D, "", "100.64.0.1:443", Connect, "", {}, Deny, Reason::PrivateAddress, ""},
      {D, "", "169.254.169.254:80", Http, "/", {}, Deny, Reason::DenyRule, ":4"},
      {D, "", "0xa9fea9fe:80", Http, "/", {}, Deny, Reason::DenyRule, ":4"},
      {D, "", "metadata.google.internal:80", Http, "/", {}, Deny, Reason::DenyRule, ":5"},
      {D, "", "tracker.example:443", Connect, "", {"1.2.3.4"}, Report, Reason::DenyRule, ":6"},
      {D, "", "pinned.example:443", Connect, "", {}, Allow, Reason::AllowRule, ":9"},
      {D, "", "pinned.example:80", Http, "/", {}, Deny, Reason::PortNotAllowed, ":9"},
      {D, "", "db.internal:5432", Connect, "", {"10.0.0.5"}, Allow, Reason::InternalRule, ":12"},
      // steps 1-6 allow it as developer-mode first; step c then accepts the
      // address because the internal cidr names it
      {D, "", "192.168.50.7:80", Http, "/", {}, Allow, Reason::DeveloperMode, "mode:developer"},
      {D, "", "192.168.50.7:22", Connect, "", {}, Deny, Reason::PrivateAddress, ""},
      {D, "", "nas.example:80", Http, "/", {"192.168.50.7"}, Allow, Reason::DeveloperMode, "mode:developer"},
      // production: internal destinations only
      {P, "", "github.com:443", Connect, "", {}, Deny, Reason::NotInternal, "mode:production"},
      {P, "", "artifacts.internal:443", Connect, "", {"10.9.9.9"}, Allow, Reason::InternalRule, ":6"},
      {P, "", "rabbitmq.internal:5672", Connect, "", {"10.1.1.1"}, Allow, Reason::InternalRule, ":7"},
      {P, "", "rabbitmq.internal:443", Connect, "", {}, Deny, Reason::NotInternal, "mode:production"},
      {P, "", "queue.internal:5672", Connect, "", {"10.20.3.4"}, Allow, Reason::InternalRule, ":9"},
      {P, "", "queue.internal:5672", Connect, "", {"8.8.8.8"}, Deny, Reason::NotInternal, "mode:production"},
      {P, "", "10.20.0.1:5672", Connect, "", {}, Allow, Reason::InternalRule, ":9"},
      {P, "", "8.8.8.8:443", Connect, "", {}, Deny, Reason::NotInternal, "mode:production"},
      {P, "", "beta.internal:443", Connect, "", {}, Report, Reason::NotInternal, ":11"},
  }));
  CAPTURE(c.fixture, c.role, c.authority, c.path, to_string(c.verdict), to_string(c.reason));
  auto outcome = run(c);
  INFO("detail: " << outcome.decision.detail);
  CHECK(outcome.decision.verdict == c.verdict);
  CHECK(to_string(outcome.decision.reason) == to_string(c.reason));
  CHECK(outcome.decision.rule == expected_rule(c));
}

TEST_CASE("Final denials and IP literals do not ask for resolution; allowed names do", "[policy]") {
  const Policy& s = fixture(S);
  auto decide = [&](const char* authority, std::string_view path = "") {
    auto target = *parse_authority(authority).target;
    return s.decide({target, RequestKind::Connect, "", path, ""});
  };
  CHECK(decide("github.com:443").needs_addresses);
  CHECK(decide("trial.example:443").needs_addresses);  // Report still connects
  CHECK(decide("rabbit.internal:5672").needs_addresses);  // an internal cidr could rescue it
  CHECK_FALSE(decide("rabbit.internal:443").needs_addresses);
  CHECK_FALSE(decide("raw.githubusercontent.com:443").needs_addresses);
  CHECK_FALSE(decide("ssh.example:443").needs_addresses);
  CHECK_FALSE(decide("10.20.0.5:5672").needs_addresses);
  CHECK_FALSE(decide("8.8.8.8:443").needs_addresses);
}

TEST_CASE("Decisions carry inspection, internal flags and readable details", "[policy]") {
  const Policy& s = fixture(S);
  auto target = [](const char* authority) { return *parse_authority(authority).target; };
  auto api = target("api.example.net:443");
  CHECK(s.decide({api, RequestKind::Inspected, "GET", "/v1/x", ""}).inspect);
  CHECK_FALSE(s.decide({target("github.com:443"), RequestKind::Connect, "", "", ""}).inspect);
  CHECK(s.decide({target("artifacts.internal:443"), RequestKind::Connect, "", "", ""}).internal);

  auto port = s.decide({target("api.example.net:80"), RequestKind::Http, "GET", "/v1/", ""});
  CHECK(port.detail == "port 80 is not in [443] for rule " + testdata(S) + ":8");

  auto name = target("allowed-but-private.example:443");
  DecideArgs args{name, RequestKind::Connect, "", "", ""};
  const IpAddress loopback[] = {*IpAddress::parse("127.0.0.1")};
  auto refused = s.check_addresses(s.decide(args), args, loopback);
  CHECK(refused.detail == "127.0.0.1 is loopback");

  auto none = s.check_addresses(s.decide(args), args, {});
  CHECK(none.verdict == Verdict::Deny);
}

TEST_CASE("A worker's role is the longest matching source prefix", "[policy]") {
  const Policy& s = fixture(S);
  CHECK(s.role_for_source(*IpAddress::parse("172.20.1.9")) == "comfyui");
  CHECK(s.role_for_source(*IpAddress::parse("172.20.2.9")) == "ai_worker");
  CHECK(s.role_for_source(*IpAddress::parse("172.20.9.9")) == "ai_worker");
  CHECK(s.role_for_source(*IpAddress::parse("::ffff:172.20.1.9")) == "comfyui");
  CHECK(s.role_for_source(*IpAddress::parse("172.21.0.1")).empty());
  CHECK(s.role_for_source(*IpAddress::parse("::1")).empty());
}

TEST_CASE("The default policy allows public destinations and refuses private ones", "[policy]") {
  auto policy = default_policy();
  auto target = *parse_authority("example.com:443").target;
  DecideArgs args{target, RequestKind::Connect, "", "", ""};
  auto decision = policy->decide(args);
  CHECK(decision.verdict == Verdict::Allow);
  CHECK(decision.reason == Reason::DeveloperMode);
  const IpAddress metadata[] = {*IpAddress::parse("169.254.169.254")};
  CHECK(policy->check_addresses(decision, args, metadata).reason == Reason::PrivateAddress);
}
