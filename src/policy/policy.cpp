// The policy engine: Policy::decide() and Policy::check_addresses() walk the
// evaluation order documented in policy.h, step by step, over the indexes of
// compiled_policy.h. Everything here is a pure function of the snapshot and
// the request; every return builds a fresh Decision with a fixed reason.
#include "egress/policy/policy.h"

#include <openssl/crypto.h>

#include <algorithm>

#include "compiled_policy.h"

namespace egress::policy {
namespace {

enum class StateFilter { Enforce, Report };

bool state_is(const Rule& rule, StateFilter filter) {
  return (rule.state == RuleState::Report) == (filter == StateFilter::Report);
}

// The scopes a request sees: the global rules, then its role's.
struct Scopes {
  const ScopeRules* list[2] = {nullptr, nullptr};
  template <typename F>
  void each(F&& f) const {
    for (const ScopeRules* scope : list) {
      if (scope) f(*scope);
    }
  }
};

// The best host match in one list: a full match wins, then the closest
// misses: path only, then method, then port; within a class, global before
// role and file order.
struct HostMatch {
  const Rule* full = nullptr;
  const Rule* host_and_port = nullptr;  // host, port and method matched; the path did not
  const Rule* method_miss = nullptr;    // host and port matched; the method did not
  const Rule* host_only = nullptr;
};

HostMatch match_list(const Scopes& scopes, RuleSet ScopeRules::*list, const DecideArgs& args,
                     StateFilter filter) {
  HostMatch best;
  const NormalizedHost& host = args.target.host;
  bool is_name = host.type == HostType::Name;
  scopes.each([&](const ScopeRules& scope) {
    const RuleSet& rules = scope.*list;
    std::uint32_t full = UINT32_MAX, port = UINT32_MAX, method = UINT32_MAX, only = UINT32_MAX;
    rules.for_each_host_match(host.host, is_name, [&](std::uint32_t index) {
      const Rule& rule = rules.rule(index);
      if (!state_is(rule, filter)) return;
      if (!rule_port_matches(rule, args.target.port)) {
        only = std::min(only, index);
      } else if (!rule_method_matches(rule, args.method, args.kind)) {
        method = std::min(method, index);
      } else if (!rule_path_matches(rule, args.path)) {
        port = std::min(port, index);
      } else {
        full = std::min(full, index);
      }
    });
    if (!best.full && full != UINT32_MAX) best.full = &rules.rule(full);
    if (!best.host_and_port && port != UINT32_MAX) best.host_and_port = &rules.rule(port);
    if (!best.method_miss && method != UINT32_MAX) best.method_miss = &rules.rule(method);
    if (!best.host_only && only != UINT32_MAX) best.host_only = &rules.rule(only);
  });
  return best;
}

std::string ports_text(const std::vector<std::uint16_t>& ports) {
  std::string text = "[";
  for (std::size_t i = 0; i < ports.size(); ++i) {
    if (i) text += ", ";
    text += std::to_string(ports[i]);
  }
  return text + "]";
}

Decision make(Verdict verdict, Reason reason, std::string rule, std::string detail = {}) {
  Decision d;
  d.verdict = verdict;
  d.reason = reason;
  d.rule = std::move(rule);
  d.detail = std::move(detail);
  return d;
}

Decision allow_by(Reason reason, const Rule& rule) {
  Decision d = make(Verdict::Allow, reason, rule.where);
  d.inspect = rule.inspect;
  d.internal = reason == Reason::InternalRule;
  d.allow_no_sni = rule.allow_no_sni;
  d.raw_tcp = rule.raw_tcp;
  d.inject = rule.inject;
  d.inject_plaintext = rule.allow_plaintext;
  return d;
}

bool is_default_deny(const Decision& d) {
  return d.verdict == Verdict::Deny && (d.reason == Reason::NotAllowed || d.reason == Reason::NotInternal);
}

// The addresses a cidr rule is checked against: the address, and for deny
// rules also the IPv4 address an IPv6 form carries (NAT64/6to4 reach it).
bool cidr_names(const Rule& rule, const IpAddress& address, bool include_embedded) {
  if (rule.cidr->contains(address) || rule.cidr->contains(unmap_v4(address))) return true;
  if (include_embedded) {
    if (auto v4 = embedded_v4(address)) return rule.cidr->contains(*v4);
  }
  return false;
}

const Rule* find_cidr(const Scopes& scopes, RuleSet ScopeRules::*list, const IpAddress& address,
                      std::uint16_t port, StateFilter filter) {
  const Rule* found = nullptr;
  bool is_deny = list == &ScopeRules::deny;
  scopes.each([&](const ScopeRules& scope) {
    if (found) return;
    for (const Rule* rule : (scope.*list).cidr_rules()) {
      if (state_is(*rule, filter) && rule_port_matches(*rule, port) && cidr_names(*rule, address, is_deny)) {
        found = rule;
        return;
      }
    }
  });
  return found;
}

bool any_internal_cidr_for_port(const Scopes& scopes, std::uint16_t port) {
  bool found = false;
  scopes.each([&](const ScopeRules& scope) {
    for (const Rule* rule : scope.internal.cidr_rules()) {
      if (rule->state == RuleState::Enforce && rule_port_matches(*rule, port)) found = true;
    }
  });
  return found;
}

// Steps 1-6 with only the rules in `filter` state present.
Decision host_steps(Mode mode, const Scopes& scopes, const DecideArgs& args, StateFilter filter) {
  auto deny = match_list(scopes, &ScopeRules::deny, args, filter);
  // Deny rules have no paths or methods (the loader refuses them), so
  // host+port suffices.
  if (const Rule* rule = deny.full ? deny.full : deny.host_and_port) {
    return make(Verdict::Deny, Reason::DenyRule, rule->where);
  }
  auto internal = match_list(scopes, &ScopeRules::internal, args, filter);
  if (internal.full) return allow_by(Reason::InternalRule, *internal.full);
  if (mode == Mode::Production) return make(Verdict::Deny, Reason::NotInternal, "mode:production");
  auto allow = match_list(scopes, &ScopeRules::allow, args, filter);
  if (allow.full) return allow_by(Reason::AllowRule, *allow.full);
  if (allow.host_and_port) {
    return make(Verdict::Deny, Reason::PathNotAllowed, allow.host_and_port->where,
                "path " + std::string(args.path) + " is not under any of the paths of rule " +
                    allow.host_and_port->where);
  }
  if (allow.method_miss) {
    return make(Verdict::Deny, Reason::MethodNotAllowed, allow.method_miss->where,
                "method " + std::string(args.method) + " is not in the methods of rule " + allow.method_miss->where);
  }
  if (allow.host_only) {
    return make(Verdict::Deny, Reason::PortNotAllowed, allow.host_only->where,
                "port " + std::to_string(args.target.port) + " is not in " +
                    ports_text(allow.host_only->ports) + " for rule " + allow.host_only->where);
  }
  if (mode == Mode::Developer) return make(Verdict::Allow, Reason::DeveloperMode, "mode:developer");
  return make(Verdict::Deny, Reason::NotAllowed, "default");
}

Scopes scopes_for(const CompiledPolicy& compiled, std::string_view role) {
  Scopes scopes;
  scopes.list[0] = &compiled.global();
  scopes.list[1] = compiled.role(role);
  return scopes;
}

}  // namespace

Policy::Policy(PolicyModel model) : model_(std::move(model)) {
  compiled_ = std::make_unique<const CompiledPolicy>(model_);
}

Policy::~Policy() = default;

Decision Policy::decide(const DecideArgs& args) const {
  Scopes scopes = scopes_for(*compiled_, args.role);
  Decision enforced = host_steps(model_.mode, scopes, args, StateFilter::Enforce);
  Decision result = enforced;

  if (enforced.allows()) {
    auto report_deny = match_list(scopes, &ScopeRules::deny, args, StateFilter::Report);
    if (const Rule* rule = report_deny.full ? report_deny.full : report_deny.host_and_port) {
      result.verdict = Verdict::Report;
      result.reason = Reason::DenyRule;
      result.rule = rule->where;
      result.detail = "deny rule " + rule->where + " is in report state; enforced, it would deny";
    }
  } else if (enforced.reason != Reason::DenyRule) {
    // A report-state allow or internal rule that matches fully lets the
    // attempt through as Report. An enforced deny rule still wins.
    auto internal = match_list(scopes, &ScopeRules::internal, args, StateFilter::Report);
    const Rule* rule = internal.full;
    bool is_internal = rule != nullptr;
    if (!rule && model_.mode != Mode::Production) {
      rule = match_list(scopes, &ScopeRules::allow, args, StateFilter::Report).full;
    }
    if (rule) {
      result.verdict = Verdict::Report;
      result.rule = rule->where;
      result.inspect = rule->inspect;
      result.internal = is_internal;
      result.allow_no_sni = rule->allow_no_sni;
      result.raw_tcp = rule->raw_tcp;
      result.detail = "rule " + rule->where + " is in report state; enforced, this would be " +
                      std::string(to_string(enforced.reason));
    }
  }

  const NormalizedHost& host = args.target.host;
  if (host.address) {
    const IpAddress literal[1] = {*host.address};
    return check_addresses(result, args, literal);
  }
  result.needs_addresses =
      result.allows() || (is_default_deny(result) && any_internal_cidr_for_port(scopes, args.target.port));
  return result;
}

Decision Policy::check_addresses(const Decision& host_decision, const DecideArgs& args,
                                 std::span<const IpAddress> addresses) const {
  Scopes scopes = scopes_for(*compiled_, args.role);
  std::uint16_t port = args.target.port;
  Decision result = host_decision;
  result.needs_addresses = false;
  if (addresses.empty()) {
    return make(Verdict::Deny, Reason::DnsFailure, "", "no addresses to check for " + args.target.host.host);
  }
  if (!host_decision.allows() && !is_default_deny(host_decision)) return result;

  // a. deny cidrs, whatever the host decision said.
  for (const IpAddress& address : addresses) {
    if (const Rule* rule = find_cidr(scopes, &ScopeRules::deny, address, port, StateFilter::Enforce)) {
      return make(Verdict::Deny, Reason::DenyRule, rule->where,
                  address.to_string() + " is in " + rule->cidr->to_string());
    }
  }

  // b. a default deny rescued by internal cidrs naming every address.
  if (is_default_deny(host_decision)) {
    const Rule* first = nullptr;
    for (const IpAddress& address : addresses) {
      const Rule* rule = find_cidr(scopes, &ScopeRules::internal, address, port, StateFilter::Enforce);
      if (!rule) return result;
      if (!first) first = rule;
    }
    return allow_by(Reason::InternalRule, *first);
  }

  // c. an allowed target must reach only public addresses, unless its rule is
  // internal or an internal cidr names the address.
  if (!host_decision.internal) {
    for (const IpAddress& address : addresses) {
      IpClass ip_class = classify(address);
      if (ip_class == IpClass::Public) continue;
      if (find_cidr(scopes, &ScopeRules::internal, address, port, StateFilter::Enforce)) continue;
      return make(Verdict::Deny, Reason::PrivateAddress, "",
                  address.to_string() + " is " + std::string(to_string(ip_class)));
    }
  }

  // A report-state deny cidr turns an allow into Report.
  if (result.verdict == Verdict::Allow) {
    for (const IpAddress& address : addresses) {
      if (const Rule* rule = find_cidr(scopes, &ScopeRules::deny, address, port, StateFilter::Report)) {
        result.verdict = Verdict::Report;
        result.reason = Reason::DenyRule;
        result.rule = rule->where;
        result.detail = address.to_string() + " is in " + rule->cidr->to_string() + " of deny rule " +
                        rule->where + ", which is in report state";
        break;
      }
    }
  }
  return result;
}

std::string Policy::role_for_source(const IpAddress& source) const {
  const RoleRules* best = nullptr;
  int best_len = -1;
  IpAddress address = unmap_v4(source);
  for (const RoleRules& role : model_.roles) {
    for (const Cidr& cidr : role.sources) {
      if (cidr.contains(address) && cidr.prefix_len > best_len) {
        best = &role;
        best_len = cidr.prefix_len;
      }
    }
  }
  return best ? best->name : std::string();
}

std::optional<std::string> Policy::role_for_token(std::string_view secret) const {
  const std::string presented = hash_token(secret);
  const RoleRules* found = nullptr;
  // No early exit and no short-circuit: every hash is compared in full.
  for (const RoleRules& role : model_.roles) {
    for (const std::string& stored : role.token_hashes) {
      bool same = stored.size() == presented.size() &&
                  CRYPTO_memcmp(stored.data(), presented.data(), presented.size()) == 0;
      if (same && !found) found = &role;
    }
  }
  if (!found) return std::nullopt;
  return found->name;
}

std::string_view Policy::deny_message(std::string_view role) const {
  if (!role.empty()) {
    for (const RoleRules& r : model_.roles) {
      if (r.name == role && !r.deny_message.empty()) return r.deny_message;
    }
  }
  return model_.deny_message;
}

}  // namespace egress::policy
