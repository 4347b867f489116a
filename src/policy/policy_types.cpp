// The small vocabulary of policy.h: names of modes, verdicts and request
// kinds as they appear in policy files, audit rows and logs, and the
// PolicyLoadError that carries every problem found in a policy file.
#include <sstream>

#include "egress/policy/policy.h"

namespace egress::policy {

std::string_view to_string(Mode mode) {
  switch (mode) {
    case Mode::Production: return "production";
    case Mode::SelfHosted: return "self-hosted";
    case Mode::Developer: return "developer";
  }
  return "unknown";
}

std::optional<Mode> mode_from_string(std::string_view text) {
  for (Mode mode : {Mode::Production, Mode::SelfHosted, Mode::Developer}) {
    if (to_string(mode) == text) return mode;
  }
  return std::nullopt;
}

std::string_view to_string(Verdict verdict) {
  switch (verdict) {
    case Verdict::Allow: return "allow";
    case Verdict::Deny: return "deny";
    case Verdict::Report: return "report";
  }
  return "unknown";
}

std::string_view to_string(RequestKind kind) {
  switch (kind) {
    case RequestKind::Http: return "http";
    case RequestKind::Connect: return "connect";
    case RequestKind::Inspected: return "inspected";
  }
  return "unknown";
}

std::string PolicyProblem::to_string() const {
  return file + ":" + std::to_string(line) + ": " + message;
}

namespace {
std::string join_problems(const std::vector<PolicyProblem>& problems) {
  std::ostringstream out;
  for (std::size_t i = 0; i < problems.size(); ++i) {
    if (i) out << '\n';
    out << problems[i].to_string();
  }
  return out.str();
}
}  // namespace

PolicyLoadError::PolicyLoadError(std::vector<PolicyProblem> problems)
    : std::runtime_error(join_problems(problems)), problems_(std::move(problems)) {}

std::string describe(const Decision& d) {
  return std::string(to_string(d.verdict)) + " " + std::string(to_string(d.reason)) + " (" +
         (d.rule.empty() ? std::string("no rule") : d.rule) + ")";
}

}  // namespace egress::policy
