// The policy loader: a well-formed file becomes the model design.md
// describes, with defaults; every rejected shape has a fixture under
// testdata/bad/ and is reported with its line and a fix.
#include <catch2/catch.hpp>

#include "egress/policy/policy.h"
#include "testdata.h"

using namespace egress::policy;
using egress::policy::test::testdata;

namespace {

std::vector<PolicyProblem> problems_of(const std::string& path) {
  try {
    load_policy_file(path);
  } catch (const PolicyLoadError& error) {
    return error.problems();
  }
  FAIL("expected " << path << " to be rejected");
  return {};
}

}  // namespace

TEST_CASE("A well-formed policy loads with the documented defaults", "[policy]") {
  auto path = testdata("loader_ok.yaml");
  auto policy = load_policy_file(path);
  const PolicyModel& model = policy->model();
  CHECK(model.mode == Mode::SelfHosted);
  CHECK(model.source == path);
  REQUIRE(model.allow.size() == 7);
  CHECK(model.allow[0].host->kind == HostPattern::Kind::Exact);
  CHECK(model.allow[0].host->value == "github.com");
  CHECK(model.allow[0].ports == std::vector<std::uint16_t>{80, 443});
  CHECK(model.allow[0].where == path + ":4");
  CHECK(model.allow[1].host->kind == HostPattern::Kind::Domain);
  CHECK(model.allow[1].host->value == "githubusercontent.com");
  CHECK(model.allow[2].ports == std::vector<std::uint16_t>{443});
  CHECK(model.allow[2].inspect);
  CHECK(model.allow[2].paths == std::vector<std::string>{"/api/models/"});
  CHECK(model.allow[2].where == path + ":6");
  CHECK(model.allow[3].host->kind == HostPattern::Kind::Regex);
  CHECK(model.allow[3].host->value == "^pypi-[0-9]+\\.corp\\.example$");
  CHECK(model.allow[3].state == RuleState::Report);
  CHECK(model.allow[4].host->kind == HostPattern::Kind::Subdomains);
  CHECK(model.allow[4].host->value == "example.org");
  CHECK(model.allow[5].host->value == "xn--bcher-kva.de");
  CHECK(model.allow[6].ports.empty());
  REQUIRE(model.deny.size() == 2);
  CHECK(model.deny[0].ports.empty());
  CHECK(model.deny[1].ports == std::vector<std::uint16_t>{22});
  REQUIRE(model.internal.size() == 2);
  CHECK(model.internal[0].ports == std::vector<std::uint16_t>{80, 443});
  CHECK(model.internal[1].cidr->to_string() == "10.20.0.0/16");
  CHECK(model.internal[1].ports == std::vector<std::uint16_t>{5672});
  REQUIRE(model.roles.size() == 2);
  CHECK(model.roles[0].name == "comfyui");
  CHECK(model.roles[0].sources.at(0).to_string() == "172.20.1.0/24");
  CHECK(model.roles[1].token_hashes.size() == 1);
  CHECK(model.roles[1].allow.at(0).host->value == "github.com");
}

TEST_CASE("Each rejected policy shape is reported with its line and a fix", "[policy]") {
  struct Case { const char* file; int line; const char* fragment; };
  auto c = GENERATE(values<Case>({
      {"missing_version.yaml", 1, "missing 'version'; add `version: 1`"},
      {"bad_version.yaml", 2, "unsupported version '2'"},
      {"missing_mode.yaml", 1, "missing 'mode'"},
      {"bad_mode.yaml", 2, "mode 'open' is not valid; use production, self-hosted or developer"},
      {"unknown_top_key.yaml", 3, "unknown key 'alow' in the policy; valid keys are: version, mode, allow, deny"},
      {"unknown_entry_key.yaml", 5, "unknown key 'prots' in allow entry; valid keys are: host, cidr, ports"},
      {"glob_in_middle.yaml", 5, "'*' is only allowed as a leading '*.'"},
      {"bare_star.yaml", 4, "'*' is only allowed as a leading '*.'"},
      {"cidr_in_allow.yaml", 4, "put address ranges in internal"},
      {"cidr_host_bits.yaml", 4, "cidr '10.0.0.1/8' is not a valid range"},
      {"port_zero.yaml", 7, "port '0' is not a number from 1 to 65535"},
      {"port_too_large.yaml", 5, "port '70000'"},
      {"port_not_number.yaml", 5, "port 'https'"},
      {"ports_not_list.yaml", 5, "ports must be a list"},
      {"ports_empty.yaml", 5, "empty list, which matches nothing"},
      {"path_without_slash.yaml", 5, "path 'api/' must start with '/'"},
      {"bad_regex.yaml", 4, "is not a valid RE2 regex"},
      {"bad_state.yaml", 5, "state 'warn' is not valid; use enforce or report"},
      {"bad_inspect.yaml", 5, "inspect must be true or false"},
      {"host_and_cidr.yaml", 4, "exactly one of host or cidr"},
      {"neither_host_nor_cidr.yaml", 4, "exactly one of host or cidr"},
      {"bad_host_chars.yaml", 4, "contains a space"},
      {"host_with_port.yaml", 4, "list the port under ports: [443]"},
      {"deny_with_paths.yaml", 5, "unknown key 'paths' in deny entry"},
      {"bad_role_name.yaml", 4, "role name 'Comfy UI' may contain only"},
      {"plaintext_token.yaml", 6, "sha256:<64 lowercase hex>"},
      {"bad_source.yaml", 7, "source '10.0.1.1/24' of role 'worker'"},
      {"role_without_sources.yaml", 4, "neither sources nor tokens"},
      {"role_unknown_key.yaml", 6, "unknown key 'alow' in role 'worker'"},
      {"role_cidr_in_allow.yaml", 7, "cidr entries are not allowed in allow"},
      {"shared_source.yaml", 6, "is listed in roles 'a' and 'b'"},
      {"yaml_syntax.yaml", 6, "YAML syntax error"},
      {"allow_private_ip.yaml", 4, "move it to internal"},
      {"domain_on_ip.yaml", 4, "use a cidr entry"},
      {"duplicate_key.yaml", 4, "key 'allow' appears twice"},
      {"list_not_sequence.yaml", 3, "allow must be a list"},
      {"not_a_map.yaml", 1, "must be a YAML map"},
      {"empty.yaml", 1, "the policy is empty"},
      {"invalid_idn.yaml", 4, "internationalised"},
      {"entry_is_list.yaml", 4, "entries must be a host string or a map"},
      {"deny_with_methods.yaml", 5, "unknown key 'methods' in deny entry"},
      {"method_connect.yaml", 5, "CONNECT cannot be listed in methods"},
      {"method_not_token.yaml", 5, "is not an HTTP method"},
      {"path_triple_star.yaml", 5, "may not contain '***'"},
      {"shared_token.yaml", 6, "the same token hash is listed in roles 'a' and 'b'"},
      {"deny_message_multiline.yaml", 3, "deny_message must be one line"},
  }));
  auto path = testdata(std::string("bad/") + c.file);
  CAPTURE(path);
  auto problems = problems_of(path);
  REQUIRE(problems.size() == 1);
  CHECK(problems[0].file == path);
  CHECK(problems[0].line == c.line);
  CHECK_THAT(problems[0].message, Catch::Contains(c.fragment));
  CHECK(problems[0].to_string() == path + ":" + std::to_string(c.line) + ": " + problems[0].message);
}

TEST_CASE("A policy with three problems reports all three, in file order", "[policy]") {
  auto path = testdata("bad/three_problems.yaml");
  try {
    load_policy_file(path);
    FAIL("expected a PolicyLoadError");
  } catch (const PolicyLoadError& error) {
    REQUIRE(error.problems().size() == 3);
    CHECK(error.problems()[0].line == 5);
    CHECK_THAT(error.problems()[0].message, Catch::Contains("git*.com"));
    CHECK(error.problems()[1].line == 7);
    CHECK_THAT(error.problems()[1].message, Catch::Contains("port '0'"));
    CHECK(error.problems()[2].line == 10);
    CHECK_THAT(error.problems()[2].message, Catch::Contains("unknown key 'stat'"));
    std::string what = error.what();
    CHECK(what == error.problems()[0].to_string() + "\n" + error.problems()[1].to_string() + "\n" +
                      error.problems()[2].to_string());
  }
}

TEST_CASE("A policy file that cannot be read is one problem at line 0 with the OS error", "[policy]") {
  auto path = testdata("does-not-exist.yaml");
  auto problems = problems_of(path);
  REQUIRE(problems.size() == 1);
  CHECK(problems[0].line == 0);
  CHECK_THAT(problems[0].message, Catch::Contains("No such file or directory"));
}

TEST_CASE("A mode override replaces the file's mode and the default policy is developer mode", "[policy]") {
  auto policy = load_policy_file(testdata("loader_ok.yaml"), Mode::Production);
  CHECK(policy->mode() == Mode::Production);
  CHECK(default_policy()->mode() == Mode::Developer);
  CHECK(default_policy()->source() == "<embedded default>");
  CHECK(default_policy(Mode::SelfHosted)->mode() == Mode::SelfHosted);
  CHECK(load_policy_string("version: 1\nmode: production\n", "inline")->source() == "inline");
}

TEST_CASE("A policy model built in code with a bad regex is refused at compile time", "[policy]") {
  PolicyModel model;
  Rule rule;
  rule.host = HostPattern{HostPattern::Kind::Regex, "foo("};
  rule.where = "code:7";
  model.allow.push_back(rule);
  model.source = "code";
  try {
    Policy policy(std::move(model));
    FAIL("expected a PolicyLoadError");
  } catch (const PolicyLoadError& error) {
    REQUIRE(error.problems().size() == 1);
    CHECK(error.problems()[0].line == 7);
  }
}

TEST_CASE("Mode, verdict and request kind names round-trip", "[policy]") {
  for (Mode mode : {Mode::Production, Mode::SelfHosted, Mode::Developer}) {
    CHECK(mode_from_string(to_string(mode)) == mode);
  }
  CHECK_FALSE(mode_from_string("Production"));
  CHECK(to_string(Verdict::Report) == "report");
  CHECK(to_string(RequestKind::Connect) == "connect");
}

TEST_CASE("Rule lists that a policy leaves out are empty, whichever ones they are", "[policy]") {
  // yaml-cpp inserts placeholders for keys looked up through a non-const
  // node; absent lists must read as empty, not as malformed.
  const char* const kPolicies[] = {
      "version: 1\nmode: self-hosted\ninternal:\n  - host: a.test\n",
      "version: 1\nmode: self-hosted\nallow:\n  - a.test\n",
      "version: 1\nmode: self-hosted\ndeny:\n  - a.test\n",
      "version: 1\nmode: production\n",
      "version: 1\nmode: developer\nroles:\n  r:\n    sources: [10.0.0.0/8]\n",
  };
  for (const char* text : kPolicies) {
    INFO(text);
    CHECK_NOTHROW(load_policy_string(text, "inline"));
  }
}
