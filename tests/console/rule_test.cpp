// suggest_rule (console/rule.h): the suggested entry, where it goes, and
// the decision before and after, for a table of refusals.
#include <catch2/catch.hpp>

#include "console/rule.h"

using namespace egress;

namespace {
const char* kPolicy = R"(version: 1
mode: self-hosted
allow:
  - github.com
deny:
  - .evil.example
roles:
  alpha:
    sources: [10.0.0.0/24]
)";
}

TEST_CASE("a refused destination gets the entry that allows it, in the right place", "[console]") {
  const auto current = policy::load_policy_string(kPolicy, "policy.yaml");
  struct Case { const char* role; const char* host; std::uint16_t port; const char* placement; const char* after; };
  for (const Case c : {
           Case{"alpha", "pypi.org", 443, "roles: alpha: allow:", "allow allow-rule"},
           Case{"", "pypi.org", 443, "allow:", "allow allow-rule"},
           Case{"nobody", "files.pythonhosted.org", 443, "allow:", "allow allow-rule"},
           Case{"alpha", "x.evil.example", 443, "roles: alpha: allow:", "deny deny-rule"},
       }) {
    INFO(c.role << " " << c.host);
    const auto s = console::suggest_rule(*current, kPolicy, {c.role, c.host, c.port, policy::RequestKind::Connect});
    REQUIRE(s.error.empty());
    CHECK(s.placement == c.placement);
    CHECK(s.entry.find(std::string("'") + c.host + "'") != std::string::npos);
    CHECK(s.before.rfind("deny", 0) == 0);
    CHECK(s.after.rfind(c.after, 0) == 0);
    const bool still_denied = std::string(c.after).rfind("deny", 0) == 0;
    CHECK(s.note.find(still_denied ? "deny rule" : "under internal") != std::string::npos);
    // The candidate loads and keeps what was there.
    CHECK(policy::load_policy_string(s.candidate, "candidate.yaml")->model().deny.size() == 1);
  }
  CHECK_FALSE(console::suggest_rule(*current, kPolicy, {"", "bad host!", 443, policy::RequestKind::Connect}).error.empty());
}
