// `inject:` on rules: what loads, what the decision carries, and every shape
// the loader refuses (a secret sent where egress cannot verify the
// upstream, or to more than one registrable domain), with its line.
#include <catch2/catch.hpp>

#include "egress/policy/policy.h"

using namespace egress::policy;

namespace {

std::string policy_with(const std::string& entry) {
  return "version: 1\nmode: self-hosted\nallow:\n" + entry;
}

std::string problems_of(const std::string& yaml) {
  try {
    load_policy_string(yaml, "p.yaml");
  } catch (const PolicyLoadError& error) {
    return error.what();
  }
  return "";
}

Decision decide_https(const Policy& policy, std::string_view host, RequestKind kind = RequestKind::Inspected,
                      std::string_view method = "GET", std::string_view path = "/api/x") {
  auto target = parse_authority(std::string(host) + ":443");
  REQUIRE(target.target);
  return policy.decide({*target.target, kind, method, path, ""});
}

}  // namespace

TEST_CASE("An inject entry loads into its parts and the allowing decision carries it", "[policy][inject]") {
  auto policy = load_policy_string(policy_with(R"(  - host: .huggingface.co
    inspect: true
    paths: [/api/]
    inject:
      - header: Authorization
        value: "Bearer {secret:hf_token}"
      - header: X-Both
        value: "{secret:a}-{secret:b.c}"
        only_placeholder: true
  - host: git.example.com
    inspect: true
    inject:
      - header: Authorization
        basic: {user: git, password: "{secret:git_token}"}
)"),
                                   "p.yaml");
  const Rule& rule = policy->model().allow[0];
  REQUIRE(rule.inject.size() == 2);
  CHECK(rule.inject[0].header == "Authorization");
  CHECK(rule.inject[0].value == "Bearer {secret:hf_token}");
  REQUIRE(rule.inject[0].parts.size() == 2);
  CHECK(rule.inject[0].parts[0].text == "Bearer ");
  CHECK_FALSE(rule.inject[0].parts[0].secret);
  CHECK(rule.inject[0].parts[1].text == "hf_token");
  CHECK(rule.inject[0].parts[1].secret);
  CHECK(rule.inject[1].secrets == std::vector<std::string>{"a", "b.c"});
  CHECK(rule.inject[1].only_placeholder);
  CHECK(policy->model().allow[1].inject[0].basic_user == "git");
  CHECK(policy->model().allow[1].inject[0].secrets == std::vector<std::string>{"git_token"});

  auto allowed = decide_https(*policy, "huggingface.co");
  CHECK(allowed.verdict == Verdict::Allow);
  CHECK(allowed.inject.size() == 2);
  auto refused = decide_https(*policy, "huggingface.co", RequestKind::Inspected, "GET", "/admin");
  CHECK(refused.verdict == Verdict::Deny);
  CHECK(refused.inject.empty());
  CHECK(decide_https(*policy, "other.example").inject.empty());
}

TEST_CASE("A report-state or unmatched rule never carries a secret", "[policy][inject]") {
  auto policy = load_policy_string(R"(version: 1
mode: developer
allow:
  - host: api.example.com
    inspect: true
    inject:
      - header: Authorization
        value: "Bearer {secret:t}"
)",
                                   "p.yaml");
  CHECK(decide_https(*policy, "api.example.com").inject.size() == 1);
  CHECK(decide_https(*policy, "else.example.com").inject.empty());  // developer-mode allow
}

TEST_CASE("The loader refuses inject where a secret could leak, naming the line", "[policy][inject]") {
  struct Case {
    const char* name;
    std::string entry;
    const char* expected;
  };
  const std::string inject = "    inject:\n      - header: Authorization\n        value: \"Bearer {secret:t}\"\n";
  const std::vector<Case> cases = {
      {"not inspected", "  - host: api.example.com\n" + inject, "p.yaml:6: inject needs inspect: true"},
      {"a public suffix", "  - host: .co.uk\n    inspect: true\n" + inject, "more than one registrable domain"},
      {"subdomains of a suffix", "  - host: \"*.github.io\"\n    inspect: true\n" + inject,
       "more than one registrable domain"},
      {"a regex", "  - host: ~^api[0-9]\\.example\\.com$\n    inspect: true\n" + inject, "inject on a regex entry"},
      {"an IP literal", "  - host: 93.184.216.34\n    inspect: true\n" + inject, "inject on an IP address"},
      {"report state", "  - host: api.example.com\n    inspect: true\n    state: report\n" + inject,
       "inject on a rule in report state"},
      {"no secret", "  - host: a.example.com\n    inspect: true\n    inject:\n      - header: X-Key\n        value: literal\n",
       "names no secret"},
      {"a bad reference", "  - host: a.example.com\n    inspect: true\n    inject:\n      - header: X-Key\n        value: \"{secret:}\"\n",
       "is not a secret reference"},
      {"an unclosed reference",
       "  - host: a.example.com\n    inspect: true\n    inject:\n      - header: X-Key\n        value: \"{secret:abc\"\n",
       "is not a secret reference"},
      {"a header egress owns",
       "  - host: a.example.com\n    inspect: true\n    inject:\n      - header: Host\n        value: \"{secret:t}\"\n",
       "inject cannot set Host"},
      {"no header", "  - host: a.example.com\n    inspect: true\n    inject:\n      - value: \"{secret:t}\"\n",
       "needs a header name"},
      {"value and basic",
       "  - host: a.example.com\n    inspect: true\n    inject:\n      - header: A\n        value: \"{secret:t}\"\n"
       "        basic: {user: u, password: \"{secret:t}\"}\n",
       "exactly one of value"},
      {"a user with a colon",
       "  - host: a.example.com\n    inspect: true\n    inject:\n      - header: A\n        basic: {user: \"u:x\", password: \"{secret:t}\"}\n",
       "a user without ':'"},
      {"an unknown key", "  - host: a.example.com\n    inspect: true\n    inject:\n      - header: A\n        valeu: x\n", "valeu"},
      {"allow_plaintext alone", "  - host: a.example.com\n    allow_plaintext: true\n", "has no effect"},
      {"an empty list", "  - host: a.example.com\n    inspect: true\n    inject: []\n", "non-empty list"},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    const std::string problems = problems_of(policy_with(c.entry));
    CHECK(problems.find(c.expected) != std::string::npos);
    CHECK(problems.find("p.yaml:") != std::string::npos);
  }
  // A cidr entry with inject (internal list).
  CHECK(problems_of("version: 1\nmode: self-hosted\ninternal:\n  - cidr: 10.0.0.0/8\n" + inject)
            .find("inject on a cidr entry") != std::string::npos);
}

TEST_CASE("allow_plaintext lets inject go on a rule that is not inspected", "[policy][inject]") {
  auto policy = load_policy_string(policy_with(R"(  - host: artifacts.example.com
    allow_plaintext: true
    inject:
      - header: X-Api-Key
        value: "{secret:artifacts}"
)"),
                                   "p.yaml");
  auto target = parse_authority("artifacts.example.com:80");
  REQUIRE(target.target);
  auto decision = policy->decide({*target.target, RequestKind::Http, "GET", "/", ""});
  CHECK(decision.inject.size() == 1);
  CHECK(decision.inject_plaintext);
}
