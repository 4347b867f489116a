// The compiled form of a PolicyModel: per scope (global, and each role) and
// per list (allow, deny, internal), indexes that find every rule whose host
// pattern matches a normalised host without scanning the list. Exact hosts
// and domain suffixes are hash lookups (a host has at most 127 suffixes);
// regexes run together in one RE2::Set. Private to src/policy/.
#pragma once

#include <re2/set.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "egress/policy/policy.h"

namespace egress::policy {

// Hash maps keyed by std::string but looked up by string_view, so walking a
// host's suffixes allocates nothing.
struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
};
using IndexMap = std::unordered_map<std::string, std::vector<std::uint32_t>, StringHash, std::equal_to<>>;

/// One list of rules (e.g. the global allow list), indexed. Rule pointers
/// point into the Policy's PolicyModel, which outlives this object.
class RuleSet {
 public:
  /// Indexes `rules`; appends a problem for each regex that does not compile.
  RuleSet(const std::vector<Rule>& rules, std::vector<PolicyProblem>& problems,
          const std::string& source);

  /// Calls `visit` with the index of every rule whose host pattern matches
  /// `host` (a normalised host; `is_name` false for IP literals, which never
  /// match domain patterns). Order is unspecified; indexes are file order.
  /// A template rather than std::function: this is the hot path of decide().
  template <typename Visit>
  void for_each_host_match(std::string_view host, bool is_name, Visit&& visit) const {
    auto visit_all = [&](const IndexMap& map, std::string_view key) {
      if (auto it = map.find(key); it != map.end()) {
        for (auto index : it->second) visit(index);
      }
    };
    if (!exact_.empty()) visit_all(exact_, host);
    if (is_name && !(domain_.empty() && subdomains_.empty())) {
      visit_all(domain_, host);
      // Every proper suffix starting after a dot: "a.b.c" -> "b.c", "c".
      for (auto dot = host.find('.'); dot != std::string_view::npos; dot = host.find('.', dot + 1)) {
        auto suffix = host.substr(dot + 1);
        visit_all(domain_, suffix);
        visit_all(subdomains_, suffix);
      }
    }
    if (regexes_) {
      for (auto index : match_regexes(host)) visit(index);
    }
  }

  const Rule& rule(std::uint32_t index) const { return *rules_[index]; }
  /// Indexes of the regex rules that match `host`.
  std::vector<std::uint32_t> match_regexes(std::string_view host) const;
  /// Rules with a `cidr`, in file order.
  const std::vector<const Rule*>& cidr_rules() const { return cidr_rules_; }

 private:
  std::vector<const Rule*> rules_;
  IndexMap exact_;
  IndexMap domain_;      // ".x": x and every name under it
  IndexMap subdomains_;  // "*.x": every name under x, not x
  std::vector<std::uint32_t> regex_rules_;  // RE2::Set index -> rule index
  std::unique_ptr<RE2::Set> regexes_;
  std::vector<const Rule*> cidr_rules_;
};

/// The three lists of one scope.
struct ScopeRules {
  ScopeRules(const std::vector<Rule>& allow_rules, const std::vector<Rule>& deny_rules,
             const std::vector<Rule>& internal_rules, std::vector<PolicyProblem>& problems,
             const std::string& source)
      : allow(allow_rules, problems, source),
        deny(deny_rules, problems, source),
        internal(internal_rules, problems, source) {}
  RuleSet allow;
  RuleSet deny;
  RuleSet internal;
};

class CompiledPolicy {
 public:
  /// Throws PolicyLoadError if any regex fails to compile.
  explicit CompiledPolicy(const PolicyModel& model);

  const ScopeRules& global() const { return *global_; }
  /// The role's rules, or nullptr for "" and unknown roles.
  const ScopeRules* role(std::string_view name) const;

 private:
  std::unique_ptr<ScopeRules> global_;
  std::unordered_map<std::string, std::unique_ptr<ScopeRules>, StringHash, std::equal_to<>> roles_;
};

/// Whether a rule's ports include `port` (an empty list is any port).
bool rule_port_matches(const Rule& rule, std::uint16_t port);
/// Whether a rule's path prefixes admit `path`; an empty path (not visible,
/// e.g. CONNECT without inspection) is admitted, as docs/policy.md specifies.
bool rule_path_matches(const Rule& rule, std::string_view path);
/// Whether `glob` ('*' within a segment, '**' across segments) matches the
/// whole of `path` (the query already removed).
bool path_glob_matches(std::string_view glob, std::string_view path);
/// Whether a rule's methods admit `method`. CONNECT tunnels (kind Connect)
/// and an empty method (not visible) are admitted: see policy.h.
bool rule_method_matches(const Rule& rule, std::string_view method, RequestKind kind);

}  // namespace egress::policy
