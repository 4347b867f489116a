// The checks behind `egress policy lint` (lint.h). Each warning names the
// entry, the rule that makes it moot (with its line) and what to change.
// Comparisons work on the loaded model, so they see normalised hosts
// ("GitHub.com." and "github.com" are duplicates) and default ports.
#include "lint.h"

#include <algorithm>

#include "loader_internal.h"
#include "public_suffix.h"

namespace egress::policy {
namespace {

bool is_under(std::string_view host, std::string_view domain) {
  return host.size() > domain.size() && host.ends_with(domain) && host[host.size() - domain.size() - 1] == '.';
}

// `outer` admits at least every port `inner` does (empty = any port).
bool ports_cover(const Rule& outer, const Rule& inner) {
  if (outer.ports.empty()) return true;
  if (inner.ports.empty()) return false;
  return std::all_of(inner.ports.begin(), inner.ports.end(), [&](std::uint16_t p) {
    return std::find(outer.ports.begin(), outer.ports.end(), p) != outer.ports.end();
  });
}

bool methods_cover(const Rule& outer, const Rule& inner) {
  if (outer.methods.empty()) return true;
  if (inner.methods.empty()) return false;
  return std::all_of(inner.methods.begin(), inner.methods.end(), [&](const std::string& m) {
    return std::find(outer.methods.begin(), outer.methods.end(), m) != outer.methods.end();
  });
}

bool paths_cover(const Rule& outer, const Rule& inner) {
  if (outer.paths.empty()) return true;
  if (inner.paths.empty()) return false;
  // Only plain prefixes are compared; a glob is covered only by itself.
  return std::all_of(inner.paths.begin(), inner.paths.end(), [&](const std::string& p) {
    return std::any_of(outer.paths.begin(), outer.paths.end(), [&](const std::string& o) {
      return o == p || (o.find('*') == std::string::npos && p.starts_with(o));
    });
  });
}

// Options that change what a match does, beyond admitting it.
bool same_injections(const Rule& a, const Rule& b) {
  return std::equal(a.inject.begin(), a.inject.end(), b.inject.begin(), b.inject.end(),
                    [](const Injection& x, const Injection& y) {
                      return x.header == y.header && x.value == y.value && x.basic_user == y.basic_user &&
                             x.only_placeholder == y.only_placeholder;
                    }) &&
         a.allow_plaintext == b.allow_plaintext;
}

bool same_options(const Rule& a, const Rule& b) {
  return a.inspect == b.inspect && a.allow_no_sni == b.allow_no_sni && a.raw_tcp == b.raw_tcp &&
         same_injections(a, b);
}

bool same_rule(const Rule& a, const Rule& b) {
  bool same_target = (a.host && b.host && a.host->kind == b.host->kind && a.host->value == b.host->value) ||
                     (a.cidr && b.cidr && *a.cidr == *b.cidr);
  return same_target && a.ports == b.ports && a.paths == b.paths && a.methods == b.methods && a.state == b.state &&
         same_options(a, b);
}

// Everything `inner` would admit, `outer` admits too, with the same effect.
bool rule_covers(const Rule& outer, const Rule& inner) {
  if (outer.state != inner.state || !same_options(outer, inner)) return false;
  bool target = (outer.host && inner.host && host_pattern_covers(*outer.host, *inner.host)) ||
                (outer.cidr && inner.cidr && outer.cidr->network.family == inner.cidr->network.family &&
                 outer.cidr->prefix_len <= inner.cidr->prefix_len && outer.cidr->contains(inner.cidr->network));
  return target && ports_cover(outer, inner) && methods_cover(outer, inner) && paths_cover(outer, inner);
}

std::string entry_text(const Rule& rule) {
  return rule.host ? pattern_text(*rule.host) : rule.cidr->to_string();
}

struct Linter {
  const PolicyModel& model;
  std::vector<LintFinding> findings;

  void warn(int line, std::string message) {
    findings.push_back({model.source, line, Severity::Warning, std::move(message)});
  }

  // Duplicates and entries made moot by a broader entry of the same list.
  void check_list(const std::vector<Rule>& rules, std::string_view list) {
    for (std::size_t j = 0; j < rules.size(); ++j) {
      for (std::size_t i = 0; i < rules.size(); ++i) {
        if (i == j) continue;
        const Rule& a = rules[i];
        const Rule& b = rules[j];
        if (same_rule(a, b)) {
          if (i < j) {
            warn(b.line, std::string(list) + " entry '" + entry_text(b) + "' duplicates the entry at line " +
                             std::to_string(a.line) + "; remove one of them");
            break;
          }
          continue;
        }
        if (rule_covers(a, b)) {
          warn(b.line, std::string(list) + " entry '" + entry_text(b) + "' is shadowed by '" + entry_text(a) +
                           "' at line " + std::to_string(a.line) +
                           ", which already matches everything it does; remove it, or narrow the broader entry");
          break;
        }
      }
    }
  }

  // An allow/internal entry that an enforced deny covers can never apply.
  void check_against_deny(const std::vector<Rule>& rules, const std::vector<Rule>& deny, std::string_view list) {
    for (const Rule& rule : rules) {
      if (!rule.host) continue;
      for (const Rule& d : deny) {
        if (d.state != RuleState::Enforce || !d.host || !host_pattern_covers(*d.host, *rule.host)) continue;
        if (!ports_cover(d, rule)) continue;
        warn(rule.line, std::string(list) + " entry '" + entry_text(rule) + "' never applies: deny entry '" +
                            entry_text(d) + "' at line " + std::to_string(d.line) +
                            " matches all of it and deny wins; remove one of the two");
        break;
      }
    }
  }

  // A role's entry that a global entry of the same list already covers.
  void check_against_global(const std::vector<Rule>& rules, const std::vector<Rule>& global, const RoleRules& role,
                            std::string_view list) {
    for (const Rule& rule : rules) {
      for (const Rule& g : global) {
        if (!rule_covers(g, rule)) continue;
        warn(rule.line, "role '" + role.name + "' " + std::string(list) + " entry '" + entry_text(rule) +
                            "' is already granted to every worker by '" + entry_text(g) + "' at line " +
                            std::to_string(g.line) + "; remove it from the role");
        break;
      }
    }
  }

  // Allow lists only: internal names such as `.internal` or `.corp` are
  // single labels by design, and a broad deny (`.xyz`) is a choice.
  void check_breadth(const std::vector<Rule>& rules, std::string_view list) {
    for (const Rule& rule : rules) {
      if (!rule.host || rule.host->kind == HostPattern::Kind::Exact || rule.host->kind == HostPattern::Kind::Regex) {
        continue;
      }
      if (!is_public_suffix(rule.host->value)) continue;
      warn(rule.line, std::string(list) + " entry '" + entry_text(rule) + "' covers every domain under the public "
                          "suffix '" + rule.host->value + "', not one registrable domain; name the domain instead, e.g. '." +
                          "example." + rule.host->value + "' (built-in suffix list: public_suffix.cpp)");
    }
  }

  void check_visibility(const std::vector<Rule>& rules, std::string_view list) {
    static constexpr std::uint16_t kTlsPorts[] = {443, 8443};
    for (const Rule& rule : rules) {
      if (rule.inspect || (rule.paths.empty() && rule.methods.empty())) continue;
      std::string what = !rule.paths.empty() && !rule.methods.empty() ? "paths and methods"
                         : !rule.paths.empty()                        ? "paths"
                                                                      : "methods";
      bool all_tls = !rule.ports.empty() && std::all_of(rule.ports.begin(), rule.ports.end(), [](std::uint16_t p) {
        return std::find(std::begin(kTlsPorts), std::end(kTlsPorts), p) != std::end(kTlsPorts);
      });
      bool some_tls = rule.ports.empty() || std::any_of(rule.ports.begin(), rule.ports.end(), [](std::uint16_t p) {
        return std::find(std::begin(kTlsPorts), std::end(kTlsPorts), p) != std::end(kTlsPorts);
      });
      if (all_tls) {
        warn(rule.line, std::string(list) + " entry '" + entry_text(rule) + "' has " + what +
                            " egress cannot enforce: its ports carry TLS through CONNECT, where neither is visible, "
                            "and it is not inspected; set inspect: true, or remove " + what);
      } else if (some_tls) {
        warn(rule.line, std::string(list) + " entry '" + entry_text(rule) + "' has " + what +
                            " that hold only for plain HTTP: a CONNECT tunnel to port 443 passes any; set "
                            "inspect: true, or restrict ports to the plain-HTTP ones");
      }
    }
  }

  // allow_no_sni and raw_tcp loosen the tunnel check; on every port, or
  // together with inspection (which needs TLS), they are likely mistakes.
  void check_tunnel_options(const std::vector<Rule>& rules, std::string_view list) {
    for (const Rule& rule : rules) {
      if (!rule.allow_no_sni && !rule.raw_tcp) continue;
      const std::string what = rule.raw_tcp && rule.allow_no_sni ? "raw_tcp and allow_no_sni"
                               : rule.raw_tcp                   ? "raw_tcp"
                                                                : "allow_no_sni";
      if (rule.ports.empty()) {
        warn(rule.line, std::string(list) + " entry '" + entry_text(rule) + "' sets " + what +
                            " on every port (ports: any); list the ports that need it, e.g. ports: [22]");
      }
      if (rule.raw_tcp && rule.inspect) {
        warn(rule.line, std::string(list) + " entry '" + entry_text(rule) +
                            "' sets both raw_tcp and inspect; inspection needs TLS, so a raw tunnel is never "
                            "inspected; split it into a raw_tcp rule for the raw port and an inspected one for TLS");
      }
    }
  }

  void check_internal_cidrs(const std::vector<Rule>& rules) {
    for (const Rule& rule : rules) {
      if (!rule.cidr || !overlaps_public(*rule.cidr)) continue;
      warn(rule.line, "internal cidr " + rule.cidr->to_string() +
                          " includes public addresses, which internal rules then allow in every mode; narrow it to "
                          "your private ranges (e.g. 10.20.0.0/16), or allow public hosts by name");
    }
  }

  // A range is non-public only when it lies inside one special-purpose
  // block; otherwise some of its addresses classify as Public.
  static bool overlaps_public(const Cidr& cidr) {
    static const char* const kBlocks[] = {
        "0.0.0.0/8",       "10.0.0.0/8",     "100.64.0.0/10", "127.0.0.0/8",     "169.254.0.0/16",
        "172.16.0.0/12",   "192.0.0.0/24",   "192.0.2.0/24",  "192.168.0.0/16",  "198.18.0.0/15",
        "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4",   "240.0.0.0/4",     "::/128",
        "::1/128",         "fc00::/7",       "fe80::/10",     "ff00::/8",        "2001:db8::/32",
        "::ffff:10.0.0.0/104", "::ffff:127.0.0.0/104", "::ffff:172.16.0.0/108", "::ffff:192.168.0.0/112",
    };
    for (const char* text : kBlocks) {
      auto block = Cidr::parse(text);
      if (block && block->network.family == cidr.network.family && block->prefix_len <= cidr.prefix_len &&
          block->contains(cidr.network)) {
        return false;
      }
    }
    return true;
  }

  void run() {
    check_list(model.allow, "allow");
    check_list(model.deny, "deny");
    check_list(model.internal, "internal");
    check_against_deny(model.allow, model.deny, "allow");
    check_against_deny(model.internal, model.deny, "internal");
    check_breadth(model.allow, "allow");
    check_visibility(model.allow, "allow");
    check_visibility(model.internal, "internal");
    check_tunnel_options(model.allow, "allow");
    check_tunnel_options(model.internal, "internal");
    check_internal_cidrs(model.internal);
    for (const RoleRules& role : model.roles) {
      std::string prefix = "role '" + role.name + "' ";
      check_list(role.allow, prefix + "allow");
      check_list(role.deny, prefix + "deny");
      check_list(role.internal, prefix + "internal");
      check_against_deny(role.allow, model.deny, prefix + "allow");
      check_against_deny(role.allow, role.deny, prefix + "allow");
      check_against_deny(role.internal, model.deny, prefix + "internal");
      check_against_deny(role.internal, role.deny, prefix + "internal");
      check_against_global(role.allow, model.allow, role, "allow");
      check_against_global(role.internal, model.internal, role, "internal");
      check_breadth(role.allow, prefix + "allow");
      check_visibility(role.allow, prefix + "allow");
      check_visibility(role.internal, prefix + "internal");
      check_tunnel_options(role.allow, prefix + "allow");
      check_tunnel_options(role.internal, prefix + "internal");
      check_internal_cidrs(role.internal);
    }
  }
};

void sort_findings(std::vector<LintFinding>& findings) {
  std::stable_sort(findings.begin(), findings.end(),
                   [](const LintFinding& a, const LintFinding& b) { return a.line < b.line; });
}

}  // namespace

std::string_view to_string(Severity severity) { return severity == Severity::Error ? "error" : "warning"; }

std::string LintFinding::to_string() const {
  return file + ":" + std::to_string(line) + ": " + std::string(policy::to_string(severity)) + ": " + message;
}

bool host_pattern_covers(const HostPattern& outer, const HostPattern& inner) {
  using Kind = HostPattern::Kind;
  if (outer.kind == Kind::Regex || inner.kind == Kind::Regex) {
    return outer.kind == inner.kind && outer.value == inner.value;
  }
  const std::string& o = outer.value;
  const std::string& i = inner.value;
  switch (outer.kind) {
    case Kind::Exact: return inner.kind == Kind::Exact && i == o;
    case Kind::Domain: return i == o || is_under(i, o);
    case Kind::Subdomains: return is_under(i, o) || (inner.kind == Kind::Subdomains && i == o);
    case Kind::Regex: break;
  }
  return false;
}

std::string pattern_text(const HostPattern& pattern) {
  switch (pattern.kind) {
    case HostPattern::Kind::Exact: return pattern.value;
    case HostPattern::Kind::Domain: return "." + pattern.value;
    case HostPattern::Kind::Subdomains: return "*." + pattern.value;
    case HostPattern::Kind::Regex: return "~" + pattern.value;
  }
  return pattern.value;
}

std::vector<LintFinding> lint_model(const PolicyModel& model) {
  Linter linter{model, {}};
  linter.run();
  sort_findings(linter.findings);
  return linter.findings;
}

std::vector<LintFinding> lint_secret_names(const PolicyModel& model, const std::vector<std::string>& available) {
  std::vector<LintFinding> findings;
  auto scan = [&](const std::vector<Rule>& rules) {
    for (const Rule& rule : rules) {
      for (const Injection& injection : rule.inject) {
        for (const std::string& name : injection.secrets) {
          if (std::find(available.begin(), available.end(), name) != available.end()) continue;
          findings.push_back({model.source, injection.line, Severity::Error,
                              "secret '" + name + "' is not in the secrets directory; add a file named " + name +
                                  " there (mode 0600), or fix the name; until then these requests get 503 "
                                  "secret-unavailable"});
        }
      }
    }
  };
  for (const auto* rules : {&model.allow, &model.internal}) scan(*rules);
  for (const RoleRules& role : model.roles) {
    for (const auto* rules : {&role.allow, &role.internal}) scan(*rules);
  }
  return findings;
}

std::vector<LintFinding> lint_policy_text(std::string_view yaml, const std::string& file,
                                          const std::optional<std::vector<std::string>>& secret_names) {
  loader::Problems problems{file, {}};
  PolicyModel model = loader::parse_document(yaml, file, problems);
  std::vector<LintFinding> findings;
  for (const PolicyProblem& p : problems.list) findings.push_back({p.file, p.line, Severity::Error, p.message});
  if (problems.list.empty()) {
    try {
      Policy compiled(model);  // regex sets that parse one by one can still fail together
    } catch (const PolicyLoadError& e) {
      for (const PolicyProblem& p : e.problems()) findings.push_back({p.file, p.line, Severity::Error, p.message});
    }
  }
  for (LintFinding& warning : lint_model(model)) findings.push_back(std::move(warning));
  if (secret_names) {
    for (LintFinding& missing : lint_secret_names(model, *secret_names)) findings.push_back(std::move(missing));
  }
  sort_findings(findings);
  return findings;
}

}  // namespace egress::policy
