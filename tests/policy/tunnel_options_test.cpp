// The rule options for CONNECT tunnels, allow_no_sni and raw_tcp: loaded
// from YAML (default false, bad values refused by the loader), carried
// into the Decision by the rule that allows, and known to lint. Table-driven
// over testdata/tunnel_options.yaml.
#include <catch2/catch.hpp>

#include <fstream>
#include <iterator>

#include "egress/policy/policy.h"
#include "policy/lint.h"
#include "testdata.h"

using namespace egress::policy;
using egress::policy::test::testdata;

namespace {

const Policy& options_policy() {
  static PolicySnapshot policy = load_policy_file(testdata("tunnel_options.yaml"));
  return *policy;
}

Decision decide_connect(const Policy& policy, const std::string& authority, std::string_view role = "") {
  auto target = parse_authority(authority);
  REQUIRE(target.target);
  auto decision = policy.decide({*target.target, RequestKind::Connect, "", "", role});
  if (decision.needs_addresses) {
    const IpAddress addresses[] = {*IpAddress::parse(authority.starts_with("10.") ? "10.20.0.5" : "93.184.216.34")};
    decision = policy.check_addresses(decision, {*target.target, RequestKind::Connect, "", "", role}, addresses);
  }
  return decision;
}

}  // namespace

TEST_CASE("Tunnel options are off unless a rule sets them, and load as written", "[policy]") {
  const auto& model = options_policy().model();
  REQUIRE(model.allow.size() == 5);
  CHECK(model.allow[0].raw_tcp);
  CHECK_FALSE(model.allow[0].allow_no_sni);
  CHECK_FALSE(model.allow[1].raw_tcp);
  CHECK_FALSE(model.allow[1].allow_no_sni);
  CHECK(model.allow[2].allow_no_sni);
  CHECK_FALSE(model.allow[2].raw_tcp);
  CHECK(model.allow[3].raw_tcp);
  CHECK(model.allow[3].allow_no_sni);
  REQUIRE(model.internal.size() == 1);
  CHECK(model.internal[0].raw_tcp);
}

TEST_CASE("The allowing rule's tunnel options reach the decision", "[policy]") {
  struct Case {
    const char* authority;
    const char* role;
    Verdict verdict;
    bool allow_no_sni;
    bool raw_tcp;
  };
  auto c = GENERATE(values<Case>({
      {"git.example:22", "", Verdict::Allow, false, true},
      {"git.example:443", "", Verdict::Allow, false, false},  // the same host on 443: TLS only
      {"www.nosni.example:443", "", Verdict::Allow, true, false},
      {"both.example:2222", "", Verdict::Allow, true, true},
      {"report.example:22", "", Verdict::Report, false, true},  // report state: what it would allow
      {"10.20.0.5:22", "", Verdict::Allow, false, true},        // internal cidr rule
      {"role-git.example:22", "ci", Verdict::Allow, false, true},
      {"role-git.example:22", "", Verdict::Deny, false, false},  // not without the role
      {"other.example:22", "", Verdict::Deny, false, false},
  }));
  CAPTURE(c.authority, c.role);
  const auto decision = decide_connect(options_policy(), c.authority, c.role);
  CHECK(decision.verdict == c.verdict);
  CHECK(decision.allow_no_sni == c.allow_no_sni);
  CHECK(decision.raw_tcp == c.raw_tcp);
}

TEST_CASE("Developer mode allows without a rule, so without tunnel options", "[policy]") {
  const auto policy = default_policy();
  const auto decision = decide_connect(*policy, "anything.example:22");
  CHECK(decision.verdict == Verdict::Allow);
  CHECK_FALSE(decision.allow_no_sni);
  CHECK_FALSE(decision.raw_tcp);
}

TEST_CASE("Bad tunnel option values and tunnel options on deny entries are refused with their line", "[policy]") {
  struct Case {
    const char* file;
    int line;
    const char* fragment;
  };
  auto c = GENERATE(values<Case>({
      {"bad_raw_tcp.yaml", 5, "raw_tcp must be true or false"},
      {"bad_allow_no_sni.yaml", 5, "allow_no_sni must be true or false"},
      {"deny_with_raw_tcp.yaml", 5, "unknown key 'raw_tcp' in deny entry"},
  }));
  const auto path = testdata(std::string("bad/") + c.file);
  CAPTURE(path);
  std::vector<PolicyProblem> problems;
  try {
    load_policy_file(path);
  } catch (const PolicyLoadError& error) {
    problems = error.problems();
  }
  REQUIRE(problems.size() == 1);
  CHECK(problems[0].line == c.line);
  CHECK_THAT(problems[0].message, Catch::Contains(c.fragment));
}

TEST_CASE("lint knows the tunnel options: every-port use, raw_tcp with inspect, and shadowing", "[policy][lint]") {
  std::ifstream in(testdata("lint/tunnel_options.yaml"));
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  REQUIRE(!text.empty());
  const auto findings = lint_policy_text(text, "tunnel_options.yaml");
  std::string all;
  for (const auto& f : findings) all += f.to_string() + "\n";
  INFO(all);
  const auto has = [&](int line, const std::string& fragment) {
    return std::any_of(findings.begin(), findings.end(), [&](const LintFinding& f) {
      return f.line == line && f.message.find(fragment) != std::string::npos;
    });
  };
  CHECK(has(4, "sets raw_tcp on every port"));
  CHECK(has(7, "sets both raw_tcp and inspect"));
  // A rule with different tunnel options is not shadowed by a broader one.
  CHECK_FALSE(has(16, "shadowed"));
  CHECK(findings.size() == 2);
}
