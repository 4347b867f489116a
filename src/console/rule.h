// Refused → rule: for one refused destination, the policy entry that would
// allow it, built by the same code as `egress policy suggest`, placed where
// it applies (under the worker's role when it has one), and the decision
// before and after as `egress policy diff` prints it. Pure: the console
// shows the result and writes nothing.
#pragma once

#include <cstdint>
#include <string>

#include "egress/policy/policy.h"

namespace egress::console {

struct RefusedTarget {
  std::string role;  // "" when the worker had none
  std::string host;
  std::uint16_t port = 0;
  policy::RequestKind kind = policy::RequestKind::Connect;
};

struct RuleSuggestion {
  std::string error;       // non-empty: nothing below is set; why
  std::string section;     // "allow" or "internal"
  std::string placement;   // e.g. "roles: comfyui: allow:"
  std::string entry;       // the YAML entry, as suggest writes it
  std::string candidate;   // the whole policy with the entry added
  std::string before;      // "deny not-allowed (default)"
  std::string after;       // "allow role-allow (candidate.yaml:14)"
  std::string diff;        // the `egress policy diff` line for the target
  std::string note;        // why the entry may not be enough, or ""
};

/// `current_text` is the policy file's text ("" for the embedded default).
RuleSuggestion suggest_rule(const policy::Policy& current, const std::string& current_text,
                            const RefusedTarget& target);

}  // namespace egress::console
