// Loading a policy: reading the file, parsing YAML, checking the document's
// shape (version, mode, lists, roles) and compiling the result into a
// PolicySnapshot. Every problem is collected and thrown together as one
// PolicyLoadError, so a bad file never half-loads (invariant 5) and the admin
// sees all of its mistakes with file and line at once.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "loader_internal.h"

namespace egress::policy {
namespace loader {

YAML::Node child(const YAML::Node& map, std::string_view key) {
  for (const auto& entry : map) {
    if (entry.first.IsScalar() && entry.first.Scalar() == key) return entry.second;
  }
  return YAML::Node(YAML::NodeType::Undefined);
}

int line_of(const YAML::Node& node, int fallback) {
  if (!node.IsDefined()) return fallback;
  int line = node.Mark().line;
  return line < 0 ? fallback : line + 1;
}

void check_keys(const YAML::Node& map, std::initializer_list<std::string_view> valid, std::string_view what,
                Problems& problems) {
  std::string valid_list;
  for (auto key : valid) valid_list += (valid_list.empty() ? "" : ", ") + std::string(key);
  std::set<std::string> seen;
  for (const auto& entry : map) {
    int line = line_of(entry.first, line_of(map));
    std::string key = entry.first.IsScalar() ? entry.first.Scalar() : std::string("?");
    if (std::find(valid.begin(), valid.end(), key) == valid.end()) {
      problems.add(line, "unknown key '" + key + "' in " + std::string(what) + "; valid keys are: " + valid_list);
    } else if (!seen.insert(key).second) {
      problems.add(line, "key '" + key + "' appears twice in " + std::string(what) + "; keep one");
    }
  }
}

namespace {

bool is_role_name(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

bool is_token_hash(std::string_view text) {
  if (!text.starts_with("sha256:") || text.size() != 7 + 64) return false;
  return std::all_of(text.begin() + 7, text.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

void read_version(const YAML::Node& root, Problems& problems) {
  const YAML::Node version = child(root, "version");
  if (!version.IsDefined()) {
    problems.add(line_of(root, 1), "missing 'version'; add `version: 1` at the top of the policy");
  } else if (!version.IsScalar() || version.Scalar() != "1") {
    problems.add(line_of(version, 1), "unsupported version '" + (version.IsScalar() ? version.Scalar() : "?") +
                                          "'; this egress reads version: 1");
  }
}

void read_mode(const YAML::Node& root, PolicyModel& model, Problems& problems) {
  const YAML::Node mode = child(root, "mode");
  if (!mode.IsDefined()) {
    problems.add(line_of(root, 1), "missing 'mode'; add `mode: production`, `mode: self-hosted` or `mode: developer`");
    return;
  }
  auto parsed = mode.IsScalar() ? mode_from_string(mode.Scalar()) : std::nullopt;
  if (!parsed) {
    problems.add(line_of(mode, 1), "mode '" + (mode.IsScalar() ? mode.Scalar() : "?") +
                                       "' is not valid; use production, self-hosted or developer");
    return;
  }
  model.mode = *parsed;
}

std::vector<std::string> read_string_list(const YAML::Node& node, int line, std::string_view what,
                                          Problems& problems) {
  std::vector<std::string> items;
  if (!node.IsDefined() || node.IsNull()) return items;
  if (!node.IsSequence()) {
    problems.add(line_of(node, line), std::string(what) + " must be a list, e.g. [" + std::string(what == "sources" ? "10.0.0.0/24" : "sha256:...") + "]");
    return items;
  }
  for (const auto& item : node) {
    items.push_back(item.IsScalar() ? item.Scalar() : std::string());
  }
  return items;
}

// `deny_message:` is free text for 403 bodies; one line, so a worker reading
// the body (or a header copy of it) cannot be fed forged extra lines.
std::string read_deny_message(const YAML::Node& map, int line, Problems& problems) {
  const YAML::Node node = child(map, "deny_message");
  if (!node.IsDefined() || node.IsNull()) return {};
  if (!node.IsScalar()) {
    problems.add(line_of(node, line), "deny_message must be a string, e.g. deny_message: \"ask #infra for access\"");
    return {};
  }
  std::string text = node.Scalar();
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  if (text.size() > 1000 || std::any_of(text.begin(), text.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f; })) {
    problems.add(line_of(node, line), "deny_message must be one line of at most 1000 characters without control "
                                      "characters; shorten it");
    return {};
  }
  return text;
}

RoleRules read_role(const std::string& name, const YAML::Node& body, int line, Problems& problems) {
  RoleRules role;
  role.name = name;
  if (!is_role_name(name)) {
    problems.add(line, "role name '" + name + "' may contain only a-z, 0-9, '_' and '-'; rename it");
  }
  if (!body.IsMap()) {
    problems.add(line_of(body, line), "role '" + name + "' must be a map with sources, tokens, allow, deny or internal");
    return role;
  }
  check_keys(body, {"sources", "tokens", "allow", "deny", "internal", "deny_message"}, "role '" + name + "'",
             problems);
  role.line = line;
  role.deny_message = read_deny_message(body, line, problems);
  const YAML::Node sources = child(body, "sources");
  std::size_t index = 0;
  for (const auto& text : read_string_list(sources, line, "sources", problems)) {
    int item_line = line_of(sources[index++], line);
    if (auto cidr = Cidr::parse(text)) {
      role.sources.push_back(*cidr);
    } else {
      problems.add(item_line, "source '" + text + "' of role '" + name +
                                  "' is not a valid address or range; write it like 172.20.1.0/24 with the host bits zero");
    }
  }
  const YAML::Node tokens = child(body, "tokens");
  index = 0;
  for (const auto& text : read_string_list(tokens, line, "tokens", problems)) {
    int item_line = line_of(tokens[index++], line);
    if (is_token_hash(text)) {
      role.token_hashes.push_back(text);
    } else {
      problems.add(item_line, "token of role '" + name + "' must be stored hashed as sha256:<64 lowercase hex>; "
                              "run `egress policy hash-token` and paste its output");
    }
  }
  if (!sources.IsDefined() && !tokens.IsDefined()) {
    problems.add(line, "role '" + name + "' has neither sources nor tokens, so no worker can have it; add one");
  }
  role.allow = loader::parse_rule_list(child(body, "allow"), ListKind::Allow, line, problems);
  role.deny = loader::parse_rule_list(child(body, "deny"), ListKind::Deny, line, problems);
  role.internal = loader::parse_rule_list(child(body, "internal"), ListKind::Internal, line, problems);
  return role;
}

void read_roles(const YAML::Node& roles, int key_line, PolicyModel& model, Problems& problems) {
  if (!roles.IsDefined() || roles.IsNull()) return;
  if (!roles.IsMap()) {
    problems.add(line_of(roles, key_line), "roles must be a map from role name to its sources, tokens and rules");
    return;
  }
  std::vector<int> role_lines;
  for (const auto& entry : roles) {
    std::string name = entry.first.IsScalar() ? entry.first.Scalar() : std::string("?");
    role_lines.push_back(line_of(entry.first, key_line));
    model.roles.push_back(read_role(name, entry.second, role_lines.back(), problems));
  }
  // Two roles claiming the same range (or token) would make the worker's
  // role ambiguous.
  for (std::size_t i = 0; i < model.roles.size(); ++i) {
    for (std::size_t j = i + 1; j < model.roles.size(); ++j) {
      for (const std::string& token : model.roles[i].token_hashes) {
        const auto& other = model.roles[j].token_hashes;
        if (std::find(other.begin(), other.end(), token) != other.end()) {
          problems.add(role_lines[j], "the same token hash is listed in roles '" + model.roles[i].name + "' and '" +
                                          model.roles[j].name + "'; give each worker secret one role");
        }
      }
      for (const Cidr& source : model.roles[i].sources) {
        const auto& other = model.roles[j].sources;
        if (std::find(other.begin(), other.end(), source) != other.end()) {
          problems.add(role_lines[j], "source " + source.to_string() + " is listed in roles '" +
                                                    model.roles[i].name + "' and '" + model.roles[j].name +
                                                    "'; give each range one role");
        }
      }
    }
  }
}

}  // namespace

PolicyModel parse_document(std::string_view yaml, const std::string& name, Problems& problems) {
  PolicyModel model;
  model.source = name;
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    problems.add(e.mark.line < 0 ? 0 : e.mark.line + 1, "YAML syntax error: " + e.msg + "; fix the syntax here");
    return model;
  }
  if (!root.IsDefined() || root.IsNull()) {
    problems.add(1, "the policy is empty; it needs at least `version: 1` and a `mode:`");
    return model;
  }
  if (!root.IsMap()) {
    problems.add(line_of(root, 1), "the policy must be a YAML map with keys version, mode, allow, deny, internal, roles");
    return model;
  }
  check_keys(root, {"version", "mode", "allow", "deny", "internal", "roles", "deny_message"}, "the policy",
             problems);
  read_version(root, problems);
  read_mode(root, model, problems);
  model.deny_message = read_deny_message(root, 1, problems);
  auto key_line = [&](std::string_view key) {
    for (const auto& entry : root) {
      if (entry.first.IsScalar() && entry.first.Scalar() == key) return line_of(entry.first, 1);
    }
    return 1;
  };
  model.allow = parse_rule_list(child(root, "allow"), ListKind::Allow, key_line("allow"), problems);
  model.deny = parse_rule_list(child(root, "deny"), ListKind::Deny, key_line("deny"), problems);
  model.internal = parse_rule_list(child(root, "internal"), ListKind::Internal, key_line("internal"), problems);
  read_roles(child(root, "roles"), key_line("roles"), model, problems);
  return model;
}

}  // namespace loader

PolicySnapshot load_policy_string(std::string_view yaml, const std::string& name, std::optional<Mode> mode_override) {
  loader::Problems problems{name, {}};
  PolicyModel model = loader::parse_document(yaml, name, problems);
  if (!problems.list.empty()) throw PolicyLoadError(std::move(problems.list));
  if (mode_override) model.mode = *mode_override;
  return std::make_shared<const Policy>(std::move(model));
}

PolicySnapshot load_policy_file(const std::string& path, std::optional<Mode> mode_override) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    int error = errno;
    throw PolicyLoadError({{path, 0, std::string("cannot read the policy file: ") + std::strerror(error) +
                                         "; check the path and its permissions"}});
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    int error = errno;
    throw PolicyLoadError({{path, 0, std::string("cannot read the policy file: ") + std::strerror(error)}});
  }
  return load_policy_string(text.str(), path, mode_override);
}

PolicySnapshot default_policy(std::optional<Mode> mode_override) {
  PolicyModel model;
  model.mode = mode_override.value_or(Mode::Developer);
  model.source = "<embedded default>";
  return std::make_shared<const Policy>(std::move(model));
}

}  // namespace egress::policy
