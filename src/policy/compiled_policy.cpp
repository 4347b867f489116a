// Building and querying the rule indexes of compiled_policy.h. The policy
// engine (policy.cpp) asks only "which rules match this host"; how that is
// answered quickly lives here.
#include "compiled_policy.h"

#include <re2/re2.h>

#include <algorithm>

namespace egress::policy {

RuleSet::RuleSet(const std::vector<Rule>& rules, std::vector<PolicyProblem>& problems,
                 const std::string& source) {
  RE2::Options options;
  options.set_log_errors(false);
  for (const Rule& rule : rules) {
    if (rule.cidr) {
      cidr_rules_.push_back(&rule);
      continue;
    }
    if (!rule.host) continue;
    auto index = static_cast<std::uint32_t>(rules_.size());
    rules_.push_back(&rule);
    const HostPattern& pattern = *rule.host;
    switch (pattern.kind) {
      case HostPattern::Kind::Exact: exact_[pattern.value].push_back(index); break;
      case HostPattern::Kind::Domain: domain_[pattern.value].push_back(index); break;
      case HostPattern::Kind::Subdomains: subdomains_[pattern.value].push_back(index); break;
      case HostPattern::Kind::Regex: {
        if (!regexes_) regexes_ = std::make_unique<RE2::Set>(options, RE2::ANCHOR_BOTH);
        std::string error;
        if (regexes_->Add(pattern.value, &error) < 0) {
          auto colon = rule.where.rfind(':');
          int line = colon == std::string::npos ? 0 : std::atoi(rule.where.c_str() + colon + 1);
          problems.push_back({source, line,
                              "regex '" + pattern.value + "' does not compile (" + error +
                                  "); fix it using RE2 syntax"});
          continue;
        }
        regex_rules_.push_back(index);
        break;
      }
    }
  }
  if (regexes_ && !regexes_->Compile()) {
    problems.push_back({source, 0, "the regexes of this policy are too large to compile; use fewer"});
    regexes_.reset();
  }
}

std::vector<std::uint32_t> RuleSet::match_regexes(std::string_view host) const {
  std::vector<std::uint32_t> matched;
  std::vector<int> hits;
  if (regexes_ && regexes_->Match(re2::StringPiece(host.data(), host.size()), &hits)) {
    for (int hit : hits) matched.push_back(regex_rules_[static_cast<std::size_t>(hit)]);
  }
  return matched;
}

CompiledPolicy::CompiledPolicy(const PolicyModel& model) {
  std::vector<PolicyProblem> problems;
  global_ = std::make_unique<ScopeRules>(model.allow, model.deny, model.internal, problems, model.source);
  for (const RoleRules& role : model.roles) {
    roles_[role.name] =
        std::make_unique<ScopeRules>(role.allow, role.deny, role.internal, problems, model.source);
  }
  if (!problems.empty()) throw PolicyLoadError(std::move(problems));
}

const ScopeRules* CompiledPolicy::role(std::string_view name) const {
  if (name.empty()) return nullptr;
  auto it = roles_.find(name);
  return it == roles_.end() ? nullptr : it->second.get();
}

bool rule_port_matches(const Rule& rule, std::uint16_t port) {
  return rule.ports.empty() || std::find(rule.ports.begin(), rule.ports.end(), port) != rule.ports.end();
}

namespace {

// A path that could step out of a prefix once a server decodes it
// ("/api/../admin", "/api/%2e%2e/admin") never satisfies a path rule.
bool has_ambiguous_segments(std::string_view path) {
  auto lower_contains = [&](std::string_view needle) {
    auto it = std::search(path.begin(), path.end(), needle.begin(), needle.end(), [](char a, char b) {
      return (a >= 'A' && a <= 'Z' ? static_cast<char>(a - 'A' + 'a') : a) == b;
    });
    return it != path.end();
  };
  if (lower_contains("%2e") || lower_contains("%2f") || lower_contains("%5c") || lower_contains("\\")) return true;
  auto end = path.find_first_of("?#");
  std::string_view segments = path.substr(0, end);
  std::size_t start = 0;
  while (start <= segments.size()) {
    auto slash = segments.find('/', start);
    auto segment = segments.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (segment == "." || segment == "..") return true;
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return false;
}

}  // namespace

bool rule_path_matches(const Rule& rule, std::string_view path) {
  if (rule.paths.empty() || path.empty()) return true;
  if (has_ambiguous_segments(path)) return false;
  return std::any_of(rule.paths.begin(), rule.paths.end(),
                     [&](const std::string& prefix) { return path.starts_with(prefix); });
}

}  // namespace egress::policy
