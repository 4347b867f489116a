// Reading allow, deny and internal entries from YAML into Rules: host
// patterns (exact, ".domain", "*.subdomains", "~regex"), cidrs, ports, paths,
// inspection and report state, with the defaults docs/policy.md documents. Every
// mistake becomes a problem with the entry's line and a suggested fix.
#include <re2/re2.h>

#include <algorithm>

#include "egress/policy/target.h"
#include "loader_internal.h"

namespace egress::policy::loader {
namespace {

const std::vector<std::uint16_t> kDefaultPorts = {80, 443};

bool all_digits(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::string where(const Problems& problems, int line) { return problems.file + ":" + std::to_string(line); }

// Reads each item of the list `node` with `read_item(item, item_line)`,
// which returns the item's value or adds a problem and returns nullopt.
// Every wrong item is reported, not only the first; then nullopt.
template <class T, class ReadItem>
std::optional<std::vector<T>> read_items(const YAML::Node& node, int line, ReadItem read_item) {
  std::vector<T> values;
  bool ok = true;
  for (const auto& item : node) {
    std::optional<T> value = read_item(item, line_of(item, line));
    if (value) {
      values.push_back(std::move(*value));
    } else {
      ok = false;
    }
  }
  if (!ok) return std::nullopt;
  return values;
}

// `ports: [443, 8443]` or `ports: any` (empty vector = any port).
std::optional<std::vector<std::uint16_t>> parse_ports(const YAML::Node& node, int line, Problems& problems) {
  if (node.IsScalar() && node.Scalar() == "any") return std::vector<std::uint16_t>{};
  if (!node.IsSequence()) {
    problems.add(line, "ports must be a list such as [443] or the word any; write ports: [" +
                           (node.IsScalar() ? node.Scalar() : std::string("443")) + "]");
    return std::nullopt;
  }
  if (node.size() == 0) {
    problems.add(line, "ports is an empty list, which matches nothing; list ports such as [443] or write ports: any");
    return std::nullopt;
  }
  return read_items<std::uint16_t>(node, line, [&](const YAML::Node& item, int item_line) -> std::optional<std::uint16_t> {
    const std::string text = item.IsScalar() ? item.Scalar() : std::string();
    const long value = all_digits(text) && text.size() <= 5 ? std::stol(text) : -1;
    if (value < 1 || value > 65535) {
      problems.add(item_line, "port '" + text + "' is not a number from 1 to 65535; fix the port");
      return std::nullopt;
    }
    return static_cast<std::uint16_t>(value);
  });
}

std::optional<std::vector<std::string>> parse_paths(const YAML::Node& node, int line, Problems& problems) {
  if (!node.IsSequence() || node.size() == 0) {
    problems.add(line, "paths must be a non-empty list of path prefixes or globs such as [/api/, /v1/*/models]");
    return std::nullopt;
  }
  return read_items<std::string>(node, line, [&](const YAML::Node& item, int item_line) -> std::optional<std::string> {
    if (!item.IsScalar() || item.Scalar().empty() || item.Scalar().front() != '/') {
      const std::string text = item.IsScalar() ? item.Scalar() : std::string("?");
      problems.add(item_line, "path '" + text + "' must start with '/', e.g. /" + text);
      return std::nullopt;
    }
    // '*' and '**' are the only glob characters; "***" has no meaning.
    if (item.Scalar().find("***") != std::string::npos || item.Scalar().find_first_of("?#") != std::string::npos) {
      problems.add(item_line, "path '" + item.Scalar() +
                                  "' may not contain '***', '?' or '#'; use '*' for one segment and "
                                  "'**' for any depth, e.g. /api/*/models or /files/**");
      return std::nullopt;
    }
    return item.Scalar();
  });
}

// `methods: [GET, HEAD]`: HTTP method tokens, folded to upper case, each
// once. CONNECT is refused: a tunnel is decided on host and port (policy.h).
std::optional<std::vector<std::string>> parse_methods(const YAML::Node& node, int line, Problems& problems) {
  if (!node.IsSequence() || node.size() == 0) {
    problems.add(line, "methods must be a non-empty list of HTTP methods such as [GET, HEAD]");
    return std::nullopt;
  }
  auto methods = read_items<std::string>(node, line, [&](const YAML::Node& item, int item_line) -> std::optional<std::string> {
    std::string text = item.IsScalar() ? item.Scalar() : std::string();
    const bool token = !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
      return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '-' || c == '_';
    });
    std::transform(text.begin(), text.end(), text.begin(),
                   [](char c) { return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c; });
    if (!token) {
      problems.add(item_line, "method '" + text + "' is not an HTTP method; write a token such as GET");
      return std::nullopt;
    }
    if (text == "CONNECT") {
      problems.add(item_line, "CONNECT cannot be listed in methods: tunnels are decided on host and "
                              "ports alone; remove it and restrict ports instead");
      return std::nullopt;
    }
    return text;
  });
  if (!methods) return std::nullopt;
  std::vector<std::string> unique;
  for (auto& m : *methods)
    if (std::find(unique.begin(), unique.end(), m) == unique.end()) unique.push_back(std::move(m));
  return unique;
}

// Reads the host pattern of an entry and checks it suits the list.
bool read_host(const YAML::Node& node, ListKind kind, int line, Rule& rule, Problems& problems) {
  if (!node.IsScalar()) {
    problems.add(line, "host must be a string such as example.com or .example.com");
    return false;
  }
  std::string error;
  auto pattern = parse_host_pattern(node.Scalar(), error);
  if (!pattern) {
    problems.add(line, error);
    return false;
  }
  if (kind == ListKind::Allow && pattern->kind == HostPattern::Kind::Exact) {
    auto address = IpAddress::parse(pattern->value);
    if (address && classify(*address) != IpClass::Public) {
      problems.add(line, "allow entry '" + node.Scalar() + "' is a " + std::string(to_string(classify(*address))) +
                             " address, which allow rules never reach; move it to internal");
      return false;
    }
  }
  rule.host = std::move(*pattern);
  return true;
}

bool read_cidr(const YAML::Node& node, ListKind kind, int line, Rule& rule, Problems& problems) {
  if (kind == ListKind::Allow) {
    problems.add(line, "cidr entries are not allowed in allow; put address ranges in internal (to allow them) "
                       "or deny (to refuse them)");
    return false;
  }
  std::string text = node.IsScalar() ? node.Scalar() : std::string();
  auto cidr = Cidr::parse(text);
  if (!cidr) {
    problems.add(line, "cidr '" + text + "' is not a valid range; write it like 10.20.0.0/16 or fd00::/8 "
                       "with the host bits zero");
    return false;
  }
  rule.cidr = *cidr;
  return true;
}

// `inspect: true`, `allow_no_sni: true`, `raw_tcp: true`: absent is false.
bool read_flag(const YAML::Node& entry, const char* key, int line, bool& out, Problems& problems) {
  const YAML::Node node = child(entry, key);
  if (!node.IsDefined()) return true;
  bool value = false;
  if (!YAML::convert<bool>::decode(node, value)) {
    problems.add(line_of(node, line), std::string(key) + " must be true or false");
    return false;
  }
  out = value;
  return true;
}

std::optional<Rule> parse_entry_map(const YAML::Node& entry, ListKind kind, int line, Problems& problems) {
  std::string what = std::string(list_name(kind)) + " entry";
  if (kind == ListKind::Deny) {
    check_keys(entry, {"host", "cidr", "ports", "state"}, what, problems);
  } else {
    check_keys(entry, {"host", "cidr", "ports", "paths", "methods", "inspect", "allow_no_sni", "raw_tcp", "state",
                       "inject", "allow_plaintext"},
               what, problems);
  }
  Rule rule;
  rule.where = where(problems, line);
  rule.line = line;
  bool ok = true;
  const YAML::Node host = child(entry, "host");
  const YAML::Node cidr = child(entry, "cidr");
  if (host.IsDefined() == cidr.IsDefined()) {
    problems.add(line, what + " needs exactly one of host or cidr");
    ok = false;
  } else if (host.IsDefined()) {
    ok = read_host(host, kind, line_of(host, line), rule, problems) && ok;
  } else {
    ok = read_cidr(cidr, kind, line_of(cidr, line), rule, problems) && ok;
  }
  if (kind != ListKind::Deny) rule.ports = kDefaultPorts;
  if (const YAML::Node ports = child(entry, "ports"); ports.IsDefined()) {
    auto parsed = parse_ports(ports, line_of(ports, line), problems);
    if (parsed) rule.ports = std::move(*parsed);
    ok = parsed.has_value() && ok;
  }
  if (kind != ListKind::Deny) {
    if (const YAML::Node paths = child(entry, "paths"); paths.IsDefined()) {
      auto parsed = parse_paths(paths, line_of(paths, line), problems);
      if (parsed) rule.paths = std::move(*parsed);
      ok = parsed.has_value() && ok;
    }
    if (const YAML::Node methods = child(entry, "methods"); methods.IsDefined()) {
      auto parsed = parse_methods(methods, line_of(methods, line), problems);
      if (parsed) rule.methods = std::move(*parsed);
      ok = parsed.has_value() && ok;
    }
    ok = read_flag(entry, "inspect", line, rule.inspect, problems) && ok;
    ok = read_flag(entry, "allow_no_sni", line, rule.allow_no_sni, problems) && ok;
    ok = read_flag(entry, "raw_tcp", line, rule.raw_tcp, problems) && ok;
  }
  if (const YAML::Node state = child(entry, "state"); state.IsDefined()) {
    std::string text = state.IsScalar() ? state.Scalar() : std::string();
    if (text == "enforce") {
      rule.state = RuleState::Enforce;
    } else if (text == "report") {
      rule.state = RuleState::Report;
    } else {
      problems.add(line_of(state, line), "state '" + text + "' is not valid; use enforce or report");
      ok = false;
    }
  }
  if (kind != ListKind::Deny) ok = parse_inject(entry, line, rule, problems) && ok;
  if (!ok) return std::nullopt;
  return rule;
}

}  // namespace

std::string_view list_name(ListKind kind) {
  switch (kind) {
    case ListKind::Allow: return "allow";
    case ListKind::Deny: return "deny";
    case ListKind::Internal: return "internal";
  }
  return "?";
}

std::optional<HostPattern> parse_host_pattern(std::string_view text, std::string& error) {
  std::string quoted = "host entry '" + std::string(text) + "'";
  if (text.empty()) {
    error = "empty host entry; write a host such as example.com";
    return std::nullopt;
  }
  if (text.front() == '~') {
    std::string regex(text.substr(1));
    RE2::Options options;
    options.set_log_errors(false);
    RE2 compiled(regex, options);
    if (regex.empty() || !compiled.ok()) {
      error = quoted + " is not a valid RE2 regex (" + (regex.empty() ? "empty" : compiled.error()) +
              "); fix the pattern after '~', e.g. ~^pypi-[0-9]+\\.corp\\.example$";
      return std::nullopt;
    }
    return HostPattern{HostPattern::Kind::Regex, std::move(regex)};
  }
  HostPattern::Kind kind = HostPattern::Kind::Exact;
  std::string_view name = text;
  if (text.starts_with("*.")) {
    kind = HostPattern::Kind::Subdomains;
    name.remove_prefix(2);
  } else if (text.front() == '.') {
    kind = HostPattern::Kind::Domain;
    name.remove_prefix(1);
  }
  if (name.find('*') != std::string_view::npos) {
    error = quoted + " uses '*' inside a name; '*' is only allowed as a leading '*.'. Write "
            "'.example.com' for a domain and its subdomains, '*.example.com' for subdomains only, "
            "or a regex such as '~git[a-z0-9-]*\\.com'";
    return std::nullopt;
  }
  auto colon = name.rfind(':');
  if (kind == HostPattern::Kind::Exact && colon != std::string_view::npos && all_digits(name.substr(colon + 1)) &&
      name.find(':') == colon) {
    error = quoted + " includes a port; write the host alone and list the port under ports: [" +
            std::string(name.substr(colon + 1)) + "]";
    return std::nullopt;
  }
  auto normalized = normalize_host(name);
  if (!normalized.host) {
    error = quoted + " is not a valid host: " + normalized.error;
    return std::nullopt;
  }
  if (kind != HostPattern::Kind::Exact && normalized.host->type != HostType::Name) {
    error = quoted + " puts a domain prefix on an IP address; to name addresses use a cidr entry "
            "in internal or deny";
    return std::nullopt;
  }
  return HostPattern{kind, std::move(normalized.host->host)};
}

std::vector<Rule> parse_rule_list(const YAML::Node& list, ListKind kind, int key_line, Problems& problems) {
  std::vector<Rule> rules;
  if (!list.IsDefined() || list.IsNull()) return rules;  // absent, or "allow:" with nothing under it
  if (!list.IsSequence()) {
    problems.add(line_of(list, key_line), std::string(list_name(kind)) +
                                              " must be a list of entries, each '- host' or '- host: ...'");
    return rules;
  }
  for (const auto& entry : list) {
    int line = line_of(entry, key_line);
    if (entry.IsScalar()) {
      Rule rule;
      rule.where = where(problems, line);
      rule.line = line;
      if (!read_host(entry, kind, line, rule, problems)) continue;
      if (kind != ListKind::Deny) rule.ports = kDefaultPorts;
      rules.push_back(std::move(rule));
    } else if (entry.IsMap()) {
      if (auto rule = parse_entry_map(entry, kind, line, problems)) rules.push_back(std::move(*rule));
    } else {
      problems.add(line, std::string(list_name(kind)) + " entries must be a host string or a map with host or cidr");
    }
  }
  return rules;
}

}  // namespace egress::policy::loader
