// Speed of decide() on a policy with 10,000 host entries and 100 regexes
// (issue 4's benchmark). Hidden ([.bench]) because timing under sanitizers
// or a loaded CI box means nothing; run it with `policy_tests "[.bench]"`.
// Reports the median and p99 separately for exact-host matches,
// domain-suffix matches and misses. Target: under 1 µs median for exact and
// domain matches.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <string>

#include "egress/policy/policy.h"

using namespace egress::policy;

namespace {

struct Timing {
  double median = 0, p99 = 0;
  int allowed = 0;
};

Timing time_decisions(const Policy& policy, const std::vector<Target>& targets) {
  std::vector<double> nanos;
  Timing timing;
  for (int round = 0; round < 5; ++round) {
    for (const Target& target : targets) {
      auto start = std::chrono::steady_clock::now();
      Decision decision = policy.decide({target, RequestKind::Connect, "", "", ""});
      auto end = std::chrono::steady_clock::now();
      timing.allowed += decision.allows();
      nanos.push_back(std::chrono::duration<double, std::nano>(end - start).count());
    }
  }
  std::sort(nanos.begin(), nanos.end());
  timing.median = nanos[nanos.size() / 2];
  timing.p99 = nanos[nanos.size() * 99 / 100];
  return timing;
}

}  // namespace

TEST_CASE("Deciding exact and domain matches with 10,000 entries and 100 regexes takes under a microsecond",
          "[policy][.bench]") {
  std::string yaml = "version: 1\nmode: self-hosted\nallow:\n";
  for (int i = 0; i < 5000; ++i) yaml += "  - host-" + std::to_string(i) + ".example.com\n";
  for (int i = 0; i < 5000; ++i) yaml += "  - .domain-" + std::to_string(i) + ".example.net\n";
  for (int i = 0; i < 100; ++i) yaml += "  - ~^svc-" + std::to_string(i) + "-[0-9]+\\.regex\\.example$\n";
  yaml += "deny:\n  - .evil.example\n";
  auto policy = load_policy_string(yaml, "bench");

  std::vector<Target> exact, domain, regex, miss;
  for (int i = 0; i < 1000; ++i) {
    exact.push_back(*parse_authority("host-" + std::to_string(i * 5) + ".example.com:443").target);
    domain.push_back(*parse_authority("a.b.domain-" + std::to_string(i * 5) + ".example.net:443").target);
    regex.push_back(*parse_authority("svc-" + std::to_string(i % 100) + "-7.regex.example:443").target);
    miss.push_back(*parse_authority("miss-" + std::to_string(i) + ".example.org:443").target);
  }
  auto e = time_decisions(*policy, exact);
  auto d = time_decisions(*policy, domain);
  auto r = time_decisions(*policy, regex);
  auto m = time_decisions(*policy, miss);
  std::cout << "decide() over 10,000 entries + 100 regexes, 5,000 calls each:\n"
            << "  exact:  median " << e.median << " ns, p99 " << e.p99 << " ns\n"
            << "  domain: median " << d.median << " ns, p99 " << d.p99 << " ns\n"
            << "  regex:  median " << r.median << " ns, p99 " << r.p99 << " ns\n"
            << "  miss:   median " << m.median << " ns, p99 " << m.p99 << " ns\n";
  CHECK(e.allowed == 5000);
  CHECK(d.allowed == 5000);
  CHECK(r.allowed == 5000);
  CHECK(m.allowed == 0);
  CHECK(e.median < 1000.0);
  CHECK(d.median < 1000.0);
}
