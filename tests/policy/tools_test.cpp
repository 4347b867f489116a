// The admin-facing pieces of src/policy/: worker tokens, deny messages,
// path globs, `egress policy lint` findings per shape (fixtures in
// testdata/lint/), `suggest` grouping and its round trip, and the squid
// importer checked against hand-written squid decisions.
#include <catch2/catch.hpp>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <map>

#include "policy/compiled_policy.h"
#include "egress/policy/policy.h"
#include "policy/lint.h"
#include "policy/squid_import.h"
#include "policy/suggest.h"
#include "testdata.h"

using namespace egress::policy;
using egress::policy::test::testdata;

namespace {

Decision decide(const Policy& policy, const std::string& authority, std::string_view role = "") {
  auto target = parse_authority(authority);
  REQUIRE(target.target);
  return policy.decide({*target.target, RequestKind::Connect, "", "", role});
}

std::vector<LintFinding> lint_fixture(const std::string& name) {
  std::ifstream in(testdata("lint/" + name));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  REQUIRE(!text.empty());
  return lint_policy_text(text, name);
}

bool has_finding(const std::vector<LintFinding>& findings, int line, Severity severity, const std::string& text) {
  return std::any_of(findings.begin(), findings.end(), [&](const LintFinding& f) {
    return f.line == line && f.severity == severity && f.message.find(text) != std::string::npos;
  });
}

std::string describe(const std::vector<LintFinding>& findings) {
  std::string out;
  for (const auto& f : findings) out += f.to_string() + "\n";
  return out;
}

}  // namespace

TEST_CASE("hash_token gives sha256:<hex> and role_for_token finds the role holding it", "[policy]") {
  CHECK(hash_token("") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(hash_token("builder-secret") ==
        "sha256:924803ab077b591c76322b07d627d2a6d369c7371ee98aaba91f4100cbb5303d");
  auto policy = load_policy_file(testdata("decide_roles.yaml"));
  CHECK(policy->role_for_token("builder-secret") == std::optional<std::string>("builder"));
  CHECK(policy->role_for_token("comfy-secret") == std::optional<std::string>("comfy"));
  CHECK_FALSE(policy->role_for_token("builder-secret\n"));
  CHECK_FALSE(policy->role_for_token(""));
  CHECK_FALSE(policy->role_for_token(
      "sha256:924803ab077b591c76322b07d627d2a6d369c7371ee98aaba91f4100cbb5303d"));  // the hash is not the secret
}

TEST_CASE("deny_message prefers the role's text, then the policy's", "[policy]") {
  auto policy = load_policy_file(testdata("decide_roles.yaml"));
  CHECK(policy->deny_message("builder") == "Builders may reach package indexes only.");
  CHECK(policy->deny_message("comfy") == "Ask #egress-admins to extend the allowlist.");
  CHECK(policy->deny_message("") == "Ask #egress-admins to extend the allowlist.");
  CHECK(policy->deny_message("nobody") == "Ask #egress-admins to extend the allowlist.");
  CHECK(default_policy()->deny_message("").empty());
}

TEST_CASE("Path globs: '*' stays within a segment, '**' crosses segments", "[policy]") {
  CHECK(path_glob_matches("/api/*/models", "/api/v1/models"));
  CHECK(path_glob_matches("/api/*/models", "/api//models"));
  CHECK_FALSE(path_glob_matches("/api/*/models", "/api/v1/v2/models"));
  CHECK_FALSE(path_glob_matches("/api/*/models", "/api/v1/models/x"));
  CHECK(path_glob_matches("/files/**", "/files/a/b/c"));
  CHECK(path_glob_matches("/files/**", "/files/"));
  CHECK_FALSE(path_glob_matches("/files/**", "/files"));
  CHECK(path_glob_matches("/a/**/z", "/a/b/c/z"));
  CHECK(path_glob_matches("/a/**/b*/c", "/a/b1/b2/c"));  // needs '**' to give back what it took
  CHECK(path_glob_matches("/*.tar.gz", "/x.tar.gz"));
  CHECK_FALSE(path_glob_matches("/*.tar.gz", "/d/x.tar.gz"));
  CHECK(path_glob_matches("/**.tar.gz", "/d/x.tar.gz"));
  CHECK_FALSE(path_glob_matches("/a", "/ab"));
  std::string long_path(4000, 'a');
  CHECK_FALSE(path_glob_matches("/**a**a**a**a**b", "/" + long_path));  // linear, not exponential
}

TEST_CASE("lint warns about shadowed entries and duplicates in one list", "[policy][lint]") {
  auto findings = lint_fixture("shadowed.yaml");
  INFO(describe(findings));
  CHECK(has_finding(findings, 5, Severity::Warning, "'a.example.com' is shadowed by '.example.com' at line 4"));
  CHECK(has_finding(findings, 6, Severity::Warning, "'*.example.com' is shadowed by '.example.com' at line 4"));
  CHECK(has_finding(findings, 8, Severity::Warning, "duplicates the entry at line 7"));
  CHECK(has_finding(findings, 9, Severity::Warning, "shadowed by 'github.com' at line 7"));
  CHECK(has_finding(findings, 13, Severity::Warning, "'x.evil.example' is shadowed by '.evil.example' at line 12"));
  CHECK(findings.size() == 5);
  CHECK(findings[0].to_string().starts_with("shadowed.yaml:5: warning: allow entry"));
}

TEST_CASE("lint warns about allows a deny makes moot and role entries the global list grants", "[policy][lint]") {
  auto findings = lint_fixture("deny_shadows_allow.yaml");
  INFO(describe(findings));
  CHECK(has_finding(findings, 4, Severity::Warning, "never applies: deny entry '.blocked.example' at line 7"));
  CHECK(has_finding(findings, 14, Severity::Warning, "already granted to every worker by 'ok.example' at line 5"));
  CHECK(has_finding(findings, 15, Severity::Warning, "never applies: deny entry 'tools.example' at line 17"));
  CHECK(findings.size() == 3);
}

TEST_CASE("lint warns about allow entries broader than a registrable domain", "[policy][lint]") {
  auto findings = lint_fixture("too_broad.yaml");
  INFO(describe(findings));
  CHECK(has_finding(findings, 4, Severity::Warning, "public suffix 'com'"));
  CHECK(has_finding(findings, 5, Severity::Warning, "public suffix 'co.uk'"));
  CHECK(has_finding(findings, 7, Severity::Warning, "public suffix 'github.io'"));
  CHECK(has_finding(findings, 6, Severity::Warning, "'.example.co.uk' is shadowed by '*.co.uk'"));
  CHECK(findings.size() == 4);  // internal .internal and deny .xyz are not "too broad"
}

TEST_CASE("lint warns about paths and methods egress cannot see", "[policy][lint]") {
  auto findings = lint_fixture("unenforceable.yaml");
  INFO(describe(findings));
  CHECK(has_finding(findings, 4, Severity::Warning, "has paths egress cannot enforce"));
  CHECK(has_finding(findings, 7, Severity::Warning, "hold only for plain HTTP"));
  CHECK(findings.size() == 2);
}

TEST_CASE("lint warns about internal cidrs that include public addresses", "[policy][lint]") {
  auto findings = lint_fixture("public_internal.yaml");
  INFO(describe(findings));
  CHECK(has_finding(findings, 5, Severity::Warning, "0.0.0.0/0 includes public addresses"));
  CHECK(has_finding(findings, 6, Severity::Warning, "8.8.8.0/24 includes public addresses"));
  CHECK(has_finding(findings, 8, Severity::Warning, "2000::/3 includes public addresses"));
  for (int line : {4, 7, 9}) CHECK_FALSE(has_finding(findings, line, Severity::Warning, "includes public"));
}

TEST_CASE("lint reports every loader error and the warnings together", "[policy][lint]") {
  auto findings = lint_fixture("errors_and_warnings.yaml");
  INFO(describe(findings));
  CHECK(has_finding(findings, 4, Severity::Warning, "public suffix 'com'"));
  CHECK(has_finding(findings, 6, Severity::Error, "CONNECT cannot be listed"));
  CHECK(has_finding(findings, 8, Severity::Error, "'***'"));
  CHECK(has_finding(findings, 9, Severity::Error, "not a valid host"));
}

TEST_CASE("The example policies and the decision fixtures lint without errors", "[policy][lint]") {
  for (std::string name : {"production.yaml", "self-hosted.yaml", "developer.yaml"}) {
    std::ifstream in(egress::policy::test::policies_dir() + "/" + name);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto findings = lint_policy_text(text, name);
    INFO(describe(findings));
    CHECK(findings.empty());
  }
}

TEST_CASE("suggest groups two or more used subdomains to .domain and loads back allowing what was used",
          "[policy][suggest]") {
  using Via = UsedTarget::Via;
  std::vector<UsedTarget> used = {
      {"a.hf.co", 443, 3, Via::Allow},         {"b.hf.co", 443, 2, Via::Allow},
      {"cdn.hf.co", 80, 1, Via::Allow},        {"github.com", 443, 7, Via::Allow},
      {"api.github.com", 443, 1, Via::Allow},  {"x.y.example.co.uk", 443, 1, Via::Allow},
      {"z.example.co.uk", 8443, 1, Via::Allow}, {"8.8.8.8", 53, 4, Via::Allow},
      {"store.internal", 443, 9, Via::Internal}, {"10.1.2.3", 5672, 2, Via::Allow},
      {"bad host", 443, 1, Via::Allow},
  };
  std::string yaml = suggest_policy(used, {"audit.db", "comfy", "7d"});
  INFO(yaml);
  CHECK(yaml.find("- host: '.hf.co'\n    ports: [80, 443]") != std::string::npos);
  CHECK(yaml.find("# a.hf.co (443: 3)") != std::string::npos);
  CHECK(yaml.find("- host: 'github.com'\n    ports: [443]") != std::string::npos);
  CHECK(yaml.find("- host: 'api.github.com'") != std::string::npos);
  CHECK(yaml.find("- host: '.example.co.uk'\n    ports: [443, 8443]") != std::string::npos);
  CHECK(yaml.find("role comfy, last 7d") != std::string::npos);
  CHECK(yaml.find("# skipped (not a valid host or port): bad host") != std::string::npos);

  auto policy = load_policy_string(yaml, "suggested");
  CHECK(lint_model(policy->model()).empty());
  for (const auto& t : used) {
    if (t.host == "bad host") continue;
    std::string authority = t.host + ":" + std::to_string(t.port);
    CAPTURE(authority);
    CHECK(decide(*policy, authority).allows());
  }
  for (std::string unused : {"hf.co.evil:443", "github.com:80", "gist.github.com:443", "example.co.uk.x:443",
                             "other.co.uk:443", "8.8.4.4:53", "store.internal:80", "a.hf.co:8443"}) {
    CAPTURE(unused);
    CHECK_FALSE(decide(*policy, unused).allows());
  }
}

TEST_CASE("import converts squid dstdomain acls and http_access lines, reporting the rest", "[policy][squid]") {
  const std::string conf =
      "# sample squid.conf\n"
      "acl allowed_sites dstdomain .github.com api.example.com\n"
      "acl allowed_sites dstdomain .huggingface.co\n"
      "acl listed dstdomain \"/lists/extra.txt\"\n"
      "acl blocked dstdomain .evil.example raw.github.com\n"
      "acl localnet src 10.0.0.0/8\n"
      "acl Safe_ports port 80 443\n"
      "acl regexy dstdom_regex ^pypi-[0-9]+\\.corp$\n"
      "http_port 3128\n"
      "http_access deny !Safe_ports\n"
      "http_access deny blocked\n"
      "http_access allow localnet \\\n"
      "    allowed_sites\n"
      "http_access allow listed\n"
      "http_access allow regexy\n"
      "http_access deny all\n"
      "http_access allow allowed_sites\n";
  std::map<std::string, std::string> files = {
      {"/lists/extra.txt", "# extra hosts\n.pypi.org\nfiles.example.net  # inline comment\n\nbad_host!\n"}};
  auto imported = import_squid(conf, "squid.conf", [&](const std::string& path) -> std::optional<std::string> {
    auto it = files.find(path);
    if (it == files.end()) return std::nullopt;
    return it->second;
  });
  std::string reports;
  for (const auto& r : imported.reports) reports += r + "\n";
  INFO(imported.policy_yaml << "\n" << reports);
  CHECK(reports.find("squid.conf:9: directive 'http_port'") != std::string::npos);
  CHECK(reports.find("squid.conf:10: http_access deny without a dstdomain acl") != std::string::npos);
  CHECK(reports.find("squid.conf:12: converted allow allowed_sites but dropped its other conditions localnet (src)") !=
        std::string::npos);
  CHECK(reports.find("/lists/extra.txt:5: 'bad_host!' of acl listed not converted") != std::string::npos);
  CHECK(reports.find("squid.conf:17: http_access after an 'all' line never applies") != std::string::npos);
  CHECK(imported.reports.size() == 5);

  auto policy = load_policy_string(imported.policy_yaml, "imported");
  // Hand-written squid decisions (first matching http_access line wins).
  std::vector<std::pair<std::string, bool>> squid = {
      {"github.com", true},        {"x.github.com", true},       {"raw.github.com", false},
      {"api.example.com", true},   {"www.example.com", false},   {"example.com", false},
      {"hf.huggingface.co", true}, {"huggingface.co", true},     {"pypi.org", true},
      {"files.pypi.org", true},    {"files.example.net", true},  {"x.files.example.net", false},
      {"a.evil.example", false},   {"evil.example", false},      {"pypi-12.corp", true},
      {"xpypi-12.corp", false},    {"pypi-12.corp.evil", false}, {"unlisted.org", false},
  };
  for (const auto& [host, allowed] : squid) {
    CAPTURE(host);
    CHECK(decide(*policy, host + ":443").allows() == allowed);
  }
}

TEST_CASE("import reports a deny that squid's first-match order would not apply", "[policy][squid]") {
  auto imported = import_squid(
      "acl ok dstdomain .a.example\nacl no dstdomain x.a.example\nhttp_access allow ok\nhttp_access deny no\n",
      "order.conf", [](const std::string&) { return std::nullopt; });
  REQUIRE(imported.reports.size() == 1);
  CHECK(imported.reports[0].starts_with("order.conf:4: deny 'x.a.example' overlaps allow '.a.example' of line 3"));
  auto missing = import_squid("acl l dstdomain \"/nope\"\nhttp_access allow l\n", "m.conf",
                              [](const std::string&) { return std::nullopt; });
  CHECK(missing.reports.at(0).find("m.conf:1: cannot read the list file \"/nope\"") == 0);
}
