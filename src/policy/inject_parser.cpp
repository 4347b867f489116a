// Reading `inject:` and `allow_plaintext:` on allow and internal entries:
// which header egress sets with which secret, and where a secret may go at
// all. The "where" rules are load errors, not lint warnings, because a
// policy that would send a credential to more hosts than one registrable
// domain, or over a connection egress cannot verify, must not run: serve
// refuses it, and `policy lint` reports it with the same words.
#include <algorithm>
#include <array>

#include "loader_internal.h"
#include "public_suffix.h"

namespace egress::policy::loader {
namespace {

// Headers egress itself owns on the way upstream (framing, routing,
// hop-by-hop): a credential never goes there.
constexpr std::array<std::string_view, 11> kReservedHeaders = {
    "host", "content-length", "transfer-encoding", "connection", "upgrade", "te",
    "trailer", "keep-alive", "proxy-authorization", "proxy-connection", "via"};

bool is_token(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
  });
}

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c); });
  return out;
}

std::optional<std::string> read_scalar(const YAML::Node& entry, const char* key, int line, Problems& problems) {
  const YAML::Node node = child(entry, key);
  if (!node.IsDefined()) return std::nullopt;
  if (!node.IsScalar()) {
    problems.add(line_of(node, line), std::string("inject ") + key + " must be a string");
    return std::nullopt;
  }
  return node.Scalar();
}

bool read_bool(const YAML::Node& entry, const char* key, int line, bool& out, Problems& problems) {
  const YAML::Node node = child(entry, key);
  if (!node.IsDefined()) return true;
  if (!YAML::convert<bool>::decode(node, out)) {
    problems.add(line_of(node, line), std::string(key) + " must be true or false");
    return false;
  }
  return true;
}

// The value, or `basic: {user, password}` in its place.
bool read_value(const YAML::Node& entry, int line, Injection& injection, Problems& problems) {
  auto value = read_scalar(entry, "value", line, problems);
  const YAML::Node basic = child(entry, "basic");
  if (value.has_value() == basic.IsDefined()) {
    problems.add(line, "inject entry needs exactly one of value (e.g. \"Bearer {secret:hf_token}\") or "
                       "basic: {user: git, password: \"{secret:git_token}\"}");
    return false;
  }
  if (basic.IsDefined()) {
    if (!basic.IsMap()) {
      problems.add(line_of(basic, line), "basic must be a map: {user: NAME, password: \"{secret:NAME}\"}");
      return false;
    }
    check_keys(basic, {"user", "password"}, "inject basic", problems);
    auto user = read_scalar(basic, "user", line, problems);
    value = read_scalar(basic, "password", line, problems);
    if (!user || !value || user->find(':') != std::string::npos) {
      problems.add(line_of(basic, line), "basic needs a user without ':' and a password such as \"{secret:git_token}\"");
      return false;
    }
    injection.basic_user = *user;
  }
  std::string error;
  auto parts = parse_value_template(*value, error);
  if (!parts) {
    problems.add(line, error);
    return false;
  }
  injection.value = *value;
  injection.parts = std::move(*parts);
  for (const auto& part : injection.parts) {
    if (part.secret) injection.secrets.push_back(part.text);
  }
  return true;
}

std::optional<Injection> parse_injection(const YAML::Node& entry, int line, Problems& problems) {
  if (!entry.IsMap()) {
    problems.add(line, "inject entries are maps: - header: Authorization\n    value: \"Bearer {secret:NAME}\"");
    return std::nullopt;
  }
  check_keys(entry, {"header", "value", "basic", "only_placeholder"}, "inject entry", problems);
  Injection injection;
  injection.line = line;
  auto header = read_scalar(entry, "header", line, problems);
  bool ok = true;
  if (!header || !is_token(*header)) {
    problems.add(line, "inject entry needs a header name such as Authorization");
    ok = false;
  } else if (std::find(kReservedHeaders.begin(), kReservedHeaders.end(), lower(*header)) != kReservedHeaders.end()) {
    problems.add(line, "inject cannot set " + *header + ": egress owns that header; use Authorization or an "
                       "API-key header such as X-Api-Key");
    ok = false;
  } else {
    injection.header = *header;
  }
  ok = read_value(entry, line, injection, problems) && ok;
  ok = read_bool(entry, "only_placeholder", line, injection.only_placeholder, problems) && ok;
  if (!ok) return std::nullopt;
  return injection;
}

// Why `rule` may not carry a secret, or "" when it may.
std::string inject_target_problem(const Rule& rule) {
  if (rule.cidr) return "inject on a cidr entry; name the one host the secret is for";
  if (rule.state == RuleState::Report) return "inject on a rule in report state; enforce the rule first";
  if (!rule.inspect && !rule.allow_plaintext) {
    return "inject needs inspect: true (the secret goes only into inspected HTTPS, whose upstream certificate "
           "egress verified); add inspect: true, or allow_plaintext: true to also send it over plain HTTP";
  }
  const HostPattern& host = *rule.host;
  if (host.kind == HostPattern::Kind::Regex) return "inject on a regex entry; name the host or its domain instead";
  if (IpAddress::parse(host.value)) return "inject on an IP address; name the host so its certificate is checked";
  if (host.kind != HostPattern::Kind::Exact && is_public_suffix(host.value)) {
    return "inject on '." + host.value + "', more than one registrable domain; name one domain, e.g. '.example." +
           host.value + "'";
  }
  return "";
}

}  // namespace

std::optional<std::vector<Injection::Part>> parse_value_template(std::string_view text, std::string& error) {
  constexpr std::string_view open = "{secret:";
  std::vector<Injection::Part> parts;
  bool any_secret = false;
  while (!text.empty()) {
    auto at = text.find(open);
    auto literal = text.substr(0, at);
    if (literal.find_first_of(std::string_view("\r\n\0{}", 5)) != std::string_view::npos) {
      error = "inject value '" + std::string(literal) + "' has a brace, CR, LF or NUL outside {secret:NAME}";
      return std::nullopt;
    }
    if (!literal.empty()) parts.push_back({std::string(literal), false});
    if (at == std::string_view::npos) break;
    text.remove_prefix(at + open.size());
    auto close = text.find('}');
    auto name = text.substr(0, close);
    bool valid = close != std::string_view::npos && !name.empty() && name.front() != '.' &&
                 std::all_of(name.begin(), name.end(), [](unsigned char c) {
                   return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                          c == '-' || c == '.';
                 });
    if (!valid) {
      error = "inject value: {secret:" + std::string(name) + "} is not a secret reference; write {secret:NAME} "
              "where NAME is a file name in the secrets directory (letters, digits, '_', '-', '.')";
      return std::nullopt;
    }
    parts.push_back({std::string(name), true});
    any_secret = true;
    text.remove_prefix(close + 1);
  }
  if (!any_secret) {
    error = "inject value names no secret; write it like \"Bearer {secret:hf_token}\" (a literal credential "
            "belongs in the secrets directory, not in the policy)";
    return std::nullopt;
  }
  return parts;
}

bool parse_inject(const YAML::Node& entry, int line, Rule& rule, Problems& problems) {
  bool ok = true;
  const YAML::Node plaintext = child(entry, "allow_plaintext");
  if (plaintext.IsDefined() && !YAML::convert<bool>::decode(plaintext, rule.allow_plaintext)) {
    problems.add(line_of(plaintext, line), "allow_plaintext must be true or false");
    ok = false;
  }
  const YAML::Node list = child(entry, "inject");
  if (!list.IsDefined()) {
    if (rule.allow_plaintext) problems.add(line, "allow_plaintext without inject has no effect; remove it");
    return ok && !rule.allow_plaintext;
  }
  if (!list.IsSequence() || list.size() == 0) {
    problems.add(line_of(list, line), "inject must be a non-empty list of {header, value} entries");
    return false;
  }
  for (const auto& item : list) {
    if (auto injection = parse_injection(item, line_of(item, line), problems)) {
      rule.inject.push_back(std::move(*injection));
    } else {
      ok = false;
    }
  }
  if (ok && rule.host.has_value() != rule.cidr.has_value()) {
    if (auto problem = inject_target_problem(rule); !problem.empty()) {
      problems.add(line_of(list, line), problem);
      ok = false;
    }
  }
  return ok;
}

}  // namespace egress::policy::loader
