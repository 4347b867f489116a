// Fuzzes the policy loader (invariant 5): load_policy_string() on arbitrary
// text either returns a policy or throws PolicyLoadError naming the problems.
// Any other exception (yaml-cpp's, std::out_of_range, ...) escapes this
// function, and libFuzzer reports it as a crash: that is a finding, because
// `egress serve` turns only PolicyLoadError into "the old policy stays".
// A policy that loads is then asked a few questions, so the compiled form
// (hash maps, suffix maps, re2 sets) is exercised too.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "egress/policy/policy.h"
#include "fuzz_check.h"

using namespace egress::policy;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view yaml(reinterpret_cast<const char*>(data), size);
  PolicySnapshot policy;
  try {
    policy = load_policy_string(yaml, "fuzz.yaml");
  } catch (const PolicyLoadError& error) {
    FUZZ_CHECK(!error.problems().empty(), "a load error names at least one problem");
    return 0;
  }
  FUZZ_CHECK(policy != nullptr, "a loaded policy is not null");

  static const char* const kHosts[] = {"github.com:443", "a.b.github.com:443", "127.0.0.1:80",
                                       "[::1]:443", "10.20.1.2:5672", "evil.example:22"};
  for (const char* authority : kHosts) {
    auto target = parse_authority(authority);
    FUZZ_CHECK(target.target.has_value(), "fixed authorities parse");
    for (std::string_view role : {std::string_view{}, std::string_view{"comfyui"}}) {
      DecideArgs http{*target.target, RequestKind::Http, "GET", "/api/models/x", role};
      DecideArgs tunnel{*target.target, RequestKind::Connect, "", "", role};
      for (const DecideArgs& args : {http, tunnel}) {
        Decision decision = policy->decide(args);
        if (decision.needs_addresses) {
          const IpAddress addresses[] = {*IpAddress::parse("140.82.112.3"), *IpAddress::parse("10.20.1.2")};
          policy->check_addresses(decision, args, addresses);
        }
      }
    }
  }
  policy->role_for_source(*IpAddress::parse("172.20.1.7"));
  policy->role_for_token("secret");
  return 0;
}
