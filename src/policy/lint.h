// `egress policy lint`: every problem of a policy file at once. Errors are
// what the loader refuses (the file would not load); warnings are rules
// that load but do not do what they seem to: entries shadowed by broader
// ones or by a deny, duplicates, entries broader than a registrable domain,
// `paths`/`methods` egress cannot see (CONNECT without inspection), and
// `internal` ranges that include public addresses. Pure: text in, findings
// out; the CLI reads the file and prints.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "egress/policy/policy.h"

namespace egress::policy {

enum class Severity { Error, Warning };
std::string_view to_string(Severity severity);  // "error", "warning"

struct LintFinding {
  std::string file;
  int line = 0;  // 1-based; 0 for the whole file
  Severity severity = Severity::Warning;
  std::string message;  // "problem; fix"
  std::string to_string() const;  // "FILE:LINE: severity: problem; fix"
};

/// Warnings about a model that loaded (no errors here), sorted by line.
std::vector<LintFinding> lint_model(const PolicyModel& model);

/// Errors for `inject:` secrets that are not among `available` (the names in
/// serve's secrets directory).
std::vector<LintFinding> lint_secret_names(const PolicyModel& model, const std::vector<std::string>& available);

/// Parses `yaml` (named `file` in findings) and returns the loader's
/// problems as errors plus, from what could be read, the warnings of
/// lint_model(), and, given the secrets directory's names, the errors of
/// lint_secret_names(); sorted by line.
std::vector<LintFinding> lint_policy_text(std::string_view yaml, const std::string& file,
                                          const std::optional<std::vector<std::string>>& secret_names = std::nullopt);

/// Whether every host `inner` matches is also matched by `outer` (exact,
/// ".domain" and "*.domain" forms; a regex covers and is covered only by
/// the identical regex).
bool host_pattern_covers(const HostPattern& outer, const HostPattern& inner);

/// The entry as an admin wrote it: "github.com", ".x", "*.x", "~re".
std::string pattern_text(const HostPattern& pattern);

}  // namespace egress::policy
