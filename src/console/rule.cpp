// suggest_rule (rule.h): suggest_policy() for the one target, its entry
// moved into the current policy with yaml-cpp, and both policies asked
// for the target's decision, as `egress policy diff` does.
#include "console/rule.h"

#include <yaml-cpp/yaml.h>

#include <sstream>
#include <vector>

#include "egress/policy/target.h"
#include "policy/suggest.h"

namespace egress::console {
namespace {

constexpr const char* kCandidateName = "candidate.yaml";

struct Entry {
  std::string section;  // "allow" | "internal"
  std::string text;     // "- host: 'x'\n  ports: [443]\n"
};

/// The one entry of a policy that suggest_policy() wrote for one target.
Entry entry_of(const std::string& suggested) {
  Entry entry;
  std::istringstream lines(suggested);
  std::string line, section;
  while (std::getline(lines, line)) {
    if (line == "allow:" || line == "internal:") section = line.substr(0, line.size() - 1);
    if (section.empty() || line.rfind("  ", 0) != 0 || line.rfind("  #", 0) == 0) continue;
    entry.section = section;
    entry.text += line.substr(2) + "\n";
  }
  return entry;
}

std::string placement_text(const std::string& role, const std::string& section) {
  return role.empty() ? section + ":" : "roles: " + role + ": " + section + ":";
}

const char* note_for(const policy::Decision& before, const policy::Decision& after) {
  if (after.verdict != policy::Verdict::Deny) return "";
  switch (before.reason) {
    case policy::Reason::DenyRule:
      return "a deny rule matches this destination and deny wins over allow: remove or narrow the deny entry";
    case policy::Reason::NotInternal:
      return "production mode allows only internal destinations: add the entry under internal";
    default:
      return "the entry alone does not change the decision; see the reason";
  }
}

}  // namespace

RuleSuggestion suggest_rule(const policy::Policy& current, const std::string& current_text,
                            const RefusedTarget& t) {
  RuleSuggestion out;
  const auto normalized = policy::normalize_host(t.host);
  if (!normalized.host || t.port == 0) {
    out.error = "'" + t.host + "' is not a host name or address a rule can name (" +
                (normalized.host ? std::string("port 0") : normalized.error) + ")";
    return out;
  }
  const policy::UsedTarget used{normalized.host->host, t.port, 1, policy::UsedTarget::Via::Allow};
  const Entry entry = entry_of(policy::suggest_policy({&used, 1}, {"the console", t.role, ""}));
  if (entry.text.empty()) {
    out.error = "egress policy suggest made no entry for " + t.host;
    return out;
  }
  out.section = entry.section;
  out.entry = entry.text;

  YAML::Node root = current_text.empty() ? YAML::Node(YAML::NodeType::Map) : YAML::Load(current_text);
  if (current_text.empty()) {
    root["version"] = 1;
    root["mode"] = std::string(policy::to_string(current.mode()));
  }
  const bool has_role = !t.role.empty() && root["roles"] && root["roles"][t.role].IsMap();
  YAML::Node where = has_role ? root["roles"][t.role] : root;
  out.placement = placement_text(has_role ? t.role : "", entry.section);
  YAML::Node list = where[entry.section];
  if (!list.IsSequence()) list = YAML::Node(YAML::NodeType::Sequence);
  list.push_back(YAML::Load(entry.text)[0]);
  where[entry.section] = list;
  YAML::Emitter emitter;
  emitter << root;
  out.candidate = std::string(emitter.c_str()) + "\n";

  const policy::Target target{*normalized.host, t.port};
  const auto method = t.kind == policy::RequestKind::Connect ? "" : "GET";
  const policy::DecideArgs args{target, t.kind, method, "", t.role};
  const auto before = current.decide(args);
  policy::Decision after;
  try {
    after = policy::load_policy_string(out.candidate, kCandidateName, current.mode())->decide(args);
  } catch (const policy::PolicyLoadError& e) {
    out.error = std::string("the candidate policy does not load: ") + e.what();
    return out;
  }
  out.before = policy::describe(before);
  out.after = policy::describe(after);
  out.diff = normalized.host->host + ":" + std::to_string(t.port) + " (" + std::string(policy::to_string(t.kind)) +
             (t.role.empty() ? std::string(")") : ", role " + t.role + ")") + ": " + out.before + " -> " +
             out.after;
  out.note = note_for(before, after);
  if (out.note.empty() && entry.section == "allow") {
    out.note = "decided on the host alone, as `egress policy diff` does: allow rules reach public addresses only, "
               "so a name that resolves to a private address needs the entry under internal instead";
  }
  return out;
}

}  // namespace egress::console
