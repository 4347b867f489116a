// Building and querying the rule indexes of compiled_policy.h. The policy
// engine (policy.cpp) asks only "which rules match this host"; how that is
// answered quickly lives here.
#include "compiled_policy.h"

#include <re2/re2.h>

#include <algorithm>
#include <vector>

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

bool path_glob_matches(std::string_view glob, std::string_view path) {
  // An NFA walk over glob positions: O(|glob| * |path|), no backtracking,
  // so no glob can make matching a hostile path slow. `active[i]` means
  // "the first i glob characters can match what was read so far"; a star
  // (one or two '*') may stay where it is on each character.
  auto star_len = [&](std::size_t i) -> std::size_t {
    if (i >= glob.size() || glob[i] != '*') return 0;
    return i + 1 < glob.size() && glob[i + 1] == '*' ? 2 : 1;
  };
  std::vector<char> active(glob.size() + 1, 0), next(glob.size() + 1, 0);
  auto close = [&](std::vector<char>& states) {
    for (std::size_t i = 0; i < glob.size(); ++i) {
      if (states[i] && star_len(i)) states[i + star_len(i)] = 1;
    }
  };
  active[0] = 1;
  close(active);
  for (char c : path) {
    std::fill(next.begin(), next.end(), 0);
    bool any = false;
    for (std::size_t i = 0; i < glob.size(); ++i) {
      if (!active[i]) continue;
      std::size_t star = star_len(i);
      if (star == 2 || (star == 1 && c != '/')) {
        next[i] = 1;
        any = true;
      } else if (star == 0 && glob[i] == c) {
        next[i + 1] = 1;
        any = true;
      }
    }
    if (!any) return false;
    close(next);
    active.swap(next);
  }
  return active[glob.size()] != 0;
}

bool rule_path_matches(const Rule& rule, std::string_view path) {
  if (rule.paths.empty() || path.empty()) return true;
  if (has_ambiguous_segments(path)) return false;
  std::string_view without_query = path.substr(0, path.find_first_of("?#"));
  return std::any_of(rule.paths.begin(), rule.paths.end(), [&](const std::string& entry) {
    if (entry.find('*') == std::string::npos) return path.starts_with(entry);
    return path_glob_matches(entry, without_query);
  });
}

bool rule_method_matches(const Rule& rule, std::string_view method, RequestKind kind) {
  if (rule.methods.empty() || method.empty() || kind == RequestKind::Connect) return true;
  return std::find(rule.methods.begin(), rule.methods.end(), method) != rule.methods.end();
}

}  // namespace egress::policy
