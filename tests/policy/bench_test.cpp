// Speed of decide() on a 10,000-entry policy. Hidden ([.bench]) because
// timing under sanitizers or a loaded CI box means nothing; run it with
// `policy_tests "[.bench]"`. Target: well under 1 µs median per decision.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <string>

#include "egress/policy/policy.h"

using namespace egress::policy;

TEST_CASE("Deciding exact and domain matches on a 10,000-entry policy takes well under a microsecond",
          "[policy][.bench]") {
  std::string yaml = "version: 1\nmode: self-hosted\nallow:\n";
  for (int i = 0; i < 5000; ++i) yaml += "  - host-" + std::to_string(i) + ".example.com\n";
  for (int i = 0; i < 5000; ++i) yaml += "  - .domain-" + std::to_string(i) + ".example.net\n";
  yaml += "deny:\n  - .evil.example\n";
  auto policy = load_policy_string(yaml, "bench");

  std::vector<Target> targets;
  for (int i = 0; i < 1000; ++i) {
    targets.push_back(*parse_authority("host-" + std::to_string(i * 5) + ".example.com:443").target);
    targets.push_back(*parse_authority("a.b.domain-" + std::to_string(i * 5) + ".example.net:443").target);
    targets.push_back(*parse_authority("miss-" + std::to_string(i) + ".example.org:443").target);
  }
  std::vector<double> nanos;
  int allowed = 0;
  for (int round = 0; round < 5; ++round) {
    for (const Target& target : targets) {
      auto start = std::chrono::steady_clock::now();
      Decision decision = policy->decide({target, RequestKind::Connect, "", "", ""});
      auto end = std::chrono::steady_clock::now();
      allowed += decision.allows();
      nanos.push_back(std::chrono::duration<double, std::nano>(end - start).count());
    }
  }
  std::sort(nanos.begin(), nanos.end());
  double median = nanos[nanos.size() / 2];
  double p99 = nanos[nanos.size() * 99 / 100];
  std::cout << "decide(): median " << median << " ns, p99 " << p99 << " ns over " << nanos.size() << " calls\n";
  CHECK(allowed == 5 * 2000);
  CHECK(median < 1000.0);
}
