// Micro-benchmarks for the policy engine's request path: decide() on a
// policy shaped like a real deployment (a few hundred host entries: exact
// hosts, domains, subdomain globs, a handful of regexes, CIDRs, deny rules
// and a role), and host normalisation over every spelling a worker can send.
// Figures and the command that produced them are in docs/performance.md
// ("Performance"); CI builds this file so it cannot rot, but does not run it.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

#include "egress/policy/policy.h"
#include "egress/policy/target.h"

using namespace egress::policy;

namespace {

/// 200 exact hosts, 100 domains, 50 subdomain globs, 5 regexes, 20 deny
/// domains, 10 deny CIDRs, 10 internal hosts, 5 internal CIDRs, one role
/// with 20 more allow entries: 420 entries, the size of a large team's
/// allow-list.
std::string realistic_policy_yaml() {
  std::string yaml = "version: 1\nmode: self-hosted\nallow:\n";
  for (int i = 0; i < 200; ++i) yaml += "  - api-" + std::to_string(i) + ".vendor" + std::to_string(i % 17) + ".com\n";
  for (int i = 0; i < 100; ++i) yaml += "  - .cdn" + std::to_string(i) + ".example.net\n";
  for (int i = 0; i < 50; ++i) yaml += "  - \"*.svc" + std::to_string(i) + ".example.org\"\n";
  for (int i = 0; i < 5; ++i) {
    yaml += "  - host: ~^mirror-" + std::to_string(i) + "-[0-9]+\\.pkg\\.example$\n    ports: [443]\n";
  }
  yaml += "  - host: api.models.example\n    ports: [443]\n    paths: [/v1/, /api/*/models]\n";
  yaml += "deny:\n";
  for (int i = 0; i < 20; ++i) yaml += "  - .bad" + std::to_string(i) + ".example\n";
  for (int i = 0; i < 10; ++i) yaml += "  - cidr: 198.51." + std::to_string(i) + ".0/24\n";
  yaml += "internal:\n";
  for (int i = 0; i < 10; ++i) yaml += "  - host: artifacts-" + std::to_string(i) + ".internal\n";
  for (int i = 0; i < 5; ++i) yaml += "  - cidr: 10." + std::to_string(20 + i) + ".0.0/16\n    ports: [5672]\n";
  yaml += "roles:\n  builder:\n    sources: [172.20.1.0/24]\n    allow:\n";
  for (int i = 0; i < 20; ++i) yaml += "      - .builder" + std::to_string(i) + ".example\n";
  return yaml;
}

const Policy& realistic_policy() {
  static const PolicySnapshot policy = load_policy_string(realistic_policy_yaml(), "bench-policy.yaml");
  return *policy;
}

Target target(const std::string& authority) {
  auto parsed = parse_authority(authority);
  if (!parsed.target) throw std::runtime_error("bad bench target " + authority + ": " + parsed.error);
  return *parsed.target;
}

/// Decides each target of `targets` in turn (so no single rule stays hot)
/// and fails the run if a verdict is not the one the case is about.
void run_decisions(benchmark::State& state, const std::vector<Target>& targets, bool expect_allow,
                   RequestKind kind = RequestKind::Connect, std::string_view method = "",
                   std::string_view path = "", std::string_view role = "") {
  const Policy& policy = realistic_policy();
  for (const auto& t : targets) {
    if (policy.decide({t, kind, method, path, role}).allows() != expect_allow) {
      state.SkipWithError(("unexpected verdict for " + t.host.host).c_str());
      return;
    }
  }
  std::size_t i = 0;
  for (auto _ : state) {
    Decision decision = policy.decide({targets[i], kind, method, path, role});
    benchmark::DoNotOptimize(decision);
    if (++i == targets.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_decide_exact_hit(benchmark::State& state) {
  std::vector<Target> targets;
  for (int i = 0; i < 200; i += 7) targets.push_back(target("api-" + std::to_string(i) + ".vendor" + std::to_string(i % 17) + ".com:443"));
  run_decisions(state, targets, true);
}
BENCHMARK(BM_decide_exact_hit);

void BM_decide_domain_hit(benchmark::State& state) {
  std::vector<Target> targets;
  for (int i = 0; i < 100; i += 3) targets.push_back(target("a.b.cdn" + std::to_string(i) + ".example.net:443"));
  run_decisions(state, targets, true);
}
BENCHMARK(BM_decide_domain_hit);

void BM_decide_glob_hit(benchmark::State& state) {
  std::vector<Target> targets;
  for (int i = 0; i < 50; i += 3) targets.push_back(target("x.svc" + std::to_string(i) + ".example.org:443"));
  run_decisions(state, targets, true);
}
BENCHMARK(BM_decide_glob_hit);

void BM_decide_regex_hit(benchmark::State& state) {
  std::vector<Target> targets;
  for (int i = 0; i < 5; ++i) targets.push_back(target("mirror-" + std::to_string(i) + "-42.pkg.example:443"));
  run_decisions(state, targets, true);
}
BENCHMARK(BM_decide_regex_hit);

void BM_decide_http_path_hit(benchmark::State& state) {
  run_decisions(state, {target("api.models.example:443")}, true, RequestKind::Http, "GET", "/api/org/models");
}
BENCHMARK(BM_decide_http_path_hit);

void BM_decide_role_domain_hit(benchmark::State& state) {
  std::vector<Target> targets;
  for (int i = 0; i < 20; i += 3) targets.push_back(target("dl.builder" + std::to_string(i) + ".example:443"));
  run_decisions(state, targets, true, RequestKind::Connect, "", "", "builder");
}
BENCHMARK(BM_decide_role_domain_hit);

void BM_decide_miss(benchmark::State& state) {
  std::vector<Target> targets;
  for (int i = 0; i < 32; ++i) targets.push_back(target("unknown-" + std::to_string(i) + ".elsewhere.example:443"));
  run_decisions(state, targets, false);
}
BENCHMARK(BM_decide_miss);

void BM_decide_ipv4_literal_denied_cidr(benchmark::State& state) {
  std::vector<Target> targets;
  for (int i = 0; i < 10; ++i) targets.push_back(target("198.51." + std::to_string(i) + ".7:443"));
  run_decisions(state, targets, false);
}
BENCHMARK(BM_decide_ipv4_literal_denied_cidr);

// ---- Normalisation ----------------------------------------------------------

void run_normalise(benchmark::State& state, const std::vector<std::string>& hosts) {
  for (const auto& h : hosts) {
    if (!normalize_host(h).host) {
      state.SkipWithError(("did not normalise: " + h).c_str());
      return;
    }
  }
  std::size_t i = 0;
  for (auto _ : state) {
    HostOrError result = normalize_host(hosts[i]);
    benchmark::DoNotOptimize(result);
    if (++i == hosts.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_normalise_ascii(benchmark::State& state) {
  run_normalise(state, {"github.com", "objects.githubusercontent.com", "pypi.org", "files.pythonhosted.org"});
}
BENCHMARK(BM_normalise_ascii);

void BM_normalise_mixed_case_trailing_dot(benchmark::State& state) {
  run_normalise(state, {"GitHub.COM.", "Objects.GitHubUserContent.com.", "PyPI.org.", "Files.PythonHosted.ORG."});
}
BENCHMARK(BM_normalise_mixed_case_trailing_dot);

void BM_normalise_idn(benchmark::State& state) {  // libidn2, UTS#46
  run_normalise(state, {"b\xC3\xBC" "cher.de", "M\xC3\xBCnchen.example", "\xE4\xBE\x8B\xE3\x81\x88.jp",
                        "xn--bcher-kva.de"});
}
BENCHMARK(BM_normalise_idn);

void BM_normalise_ipv4_spellings(benchmark::State& state) {
  run_normalise(state, {"127.0.0.1", "2130706433", "0177.0.0.1", "0x7f.1", "127.1"});
}
BENCHMARK(BM_normalise_ipv4_spellings);

void BM_normalise_ipv6(benchmark::State& state) {
  run_normalise(state, {"[::1]", "[2001:DB8:0::1]", "[::ffff:7f00:1]", "[64:ff9b::7f00:1]"});
}
BENCHMARK(BM_normalise_ipv6);

}  // namespace
