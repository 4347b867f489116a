// Shared pieces of the policy loader (policy_loader.cpp reads the document
// and roles; rule_parser.cpp reads allow/deny/internal entries). Problems are
// collected, never thrown one by one, so an admin sees every mistake at once.
// Private to src/policy/.
#pragma once

#include <yaml-cpp/yaml.h>

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "egress/policy/policy.h"

namespace egress::policy::loader {

struct Problems {
  std::string file;
  std::vector<PolicyProblem> list;
  void add(int line, std::string message) { list.push_back({file, line, std::move(message)}); }
};

/// 1-based line of a node, or `fallback` for nodes without a position
/// (a key with no value yields a null node that has none).
int line_of(const YAML::Node& node, int fallback = 0);

/// The value under `key` in `map`, or an undefined node when absent. Found
/// by iterating: yaml-cpp 0.7's operator[] on a missing key yields a
/// placeholder that may read as defined and then throw on use.
YAML::Node child(const YAML::Node& map, std::string_view key);

/// Reports keys of `map` outside `valid` (naming the valid ones) and keys
/// given twice. `what` names the map in messages, e.g. "allow entry".
void check_keys(const YAML::Node& map, std::initializer_list<std::string_view> valid,
                std::string_view what, Problems& problems);

enum class ListKind { Allow, Deny, Internal };
std::string_view list_name(ListKind kind);

/// Reads one allow/deny/internal list. `key_line` is the line of the list's
/// key, used when the value itself has no position.
std::vector<Rule> parse_rule_list(const YAML::Node& list, ListKind kind, int key_line,
                                  Problems& problems);

/// Reads a whole policy document into a model, adding every problem found
/// (the model is partial when there are problems). `egress policy lint`
/// uses it to report problems and warnings together.
PolicyModel parse_document(std::string_view yaml, const std::string& name, Problems& problems);

/// Parses a host entry ("github.com", ".github.com", "*.github.com",
/// "~regex"); on failure returns nullopt and sets `error` to what is wrong
/// and how to fix it.
std::optional<HostPattern> parse_host_pattern(std::string_view text, std::string& error);

/// Reads `inject:` and `allow_plaintext:` of an allow/internal entry into
/// `rule` (read after the entry's host, cidr, inspect and state) and checks
/// the rule may carry a secret at all (inject_parser.cpp). False on problems.
bool parse_inject(const YAML::Node& entry, int line, Rule& rule, Problems& problems);

/// Splits an inject value such as "Bearer {secret:hf_token}" into literal
/// and secret parts; nullopt (and `error`) when it is malformed or names no
/// secret.
std::optional<std::vector<Injection::Part>> parse_value_template(std::string_view text, std::string& error);

}  // namespace egress::policy::loader
