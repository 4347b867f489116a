// The JSON endpoints of api.h over the audit log (LogSet, read-only), the
// policy tracker and the metrics text.
#include "console/api.h"

#include <boost/json.hpp>

#include <filesystem>
#include <sstream>

#include "console/rule.h"
#include "egress/audit/event.h"
#include "egress/audit/log.h"
#include "egress/audit/maintenance.h"
#include "egress/audit/store.h"

namespace egress::console {
namespace {

namespace json = boost::json;

constexpr std::size_t kTop = 10;
constexpr std::int64_t kVerifyRows = 1000;

std::string param(const Params& params, std::string_view name) {
  const auto it = params.find(name);
  return it == params.end() ? std::string() : it->second;
}

ApiResult error(int status, const std::string& message) {
  return {status, json::serialize(json::object{{"error", audit::valid_utf8(message)}})};
}

json::value to_json(const audit::Value& v) {
  if (const auto* i = std::get_if<std::int64_t>(&v)) return *i;
  if (const auto* s = std::get_if<std::string>(&v)) return json::string(audit::valid_utf8(*s));
  return nullptr;
}

json::array to_json(const audit::Rows& rows) {
  json::array out;
  for (const auto& row : rows.rows) {
    json::object obj;
    for (std::size_t c = 0; c < row.size() && c < rows.columns.size(); ++c) obj[rows.columns[c]] = to_json(row[c]);
    out.push_back(std::move(obj));
  }
  return out;
}

struct Window {
  std::string name;
  std::size_t bucket_chars;  // see LogSet::timeline
  std::string since;
};

/// The summary window: its start and its chart's bucket size.
std::optional<Window> window_of(const Params& params) {
  static const std::map<std::string, std::size_t, std::less<>> kBuckets = {
      {"15m", 16}, {"1h", 16}, {"6h", 15}, {"24h", 13}, {"7d", 10}};
  std::string name = param(params, "window");
  if (name.empty()) name = "1h";
  const auto bucket = kBuckets.find(name);
  if (bucket == kBuckets.end()) return std::nullopt;
  auto since = audit::parse_time(name, std::chrono::system_clock::now());
  if (!since) return std::nullopt;
  return Window{name, bucket->second, *since};
}

json::object summary_of(const audit::LogSet& log, const Window& window) {
  audit::Filter filter;
  filter.since = window.since;
  json::object out{{"window", window.name}, {"since", window.since}};
  out["timeline"] = to_json(log.timeline(filter, window.bucket_chars));
  json::array sections;
  for (const auto& [title, rows] : log.stats(filter, kTop)) {
    sections.push_back(json::object{{"title", title}, {"rows", to_json(rows)}});
  }
  out["sections"] = std::move(sections);
  json::object roles;
  for (const auto& row : log.timeline(filter, 4).rows) {  // one bucket per year: just the roles
    const auto& role = std::get<std::string>(row[1]);
    if (role.empty() || roles.contains(role)) continue;
    audit::Filter by_role = filter;
    by_role.role = role;
    json::object top;
    for (const auto& [title, rows] : log.stats(by_role, kTop)) {
      if (title == "top hosts allowed") top["allowed"] = to_json(rows);
      if (title == "top hosts denied") top["refused"] = to_json(rows);
    }
    roles[role] = std::move(top);
  }
  out["roles"] = std::move(roles);
  return out;
}

}  // namespace

ApiResult api_summary(const ConsoleOptions& options, const Params& params) {
  const auto window = window_of(params);
  if (!window) return error(400, "window must be 15m, 1h, 6h, 24h or 7d");
  const audit::LogSet log({options.audit_db});
  return {200, json::serialize(summary_of(log, *window))};
}

ApiResult api_refused(const ConsoleOptions& options, const Params& params) {
  const auto window = window_of(params);
  if (!window) return error(400, "window must be 15m, 1h, 6h, 24h or 7d");
  audit::Filter filter;
  filter.since = window->since;
  const audit::LogSet log({options.audit_db});
  return {200, json::serialize(json::object{{"window", window->name}, {"refused", to_json(log.refused(filter, 100))}})};
}

ApiResult api_rule(const ConsoleOptions& options, const Params& params) {
  RefusedTarget target;
  target.role = param(params, "role");
  target.host = param(params, "host");
  const auto port = param(params, "port");
  int number = 0;
  try {
    number = std::stoi(port);
  } catch (const std::exception&) {
  }
  if (number < 1 || number > 65535) return error(400, "port must be 1 to 65535");
  target.port = static_cast<std::uint16_t>(number);
  const auto kind = param(params, "kind");
  target.kind = kind == "http" ? policy::RequestKind::Http
                : kind == "inspected" ? policy::RequestKind::Inspected
                                      : policy::RequestKind::Connect;
  const auto status = options.policy->status();
  if (!status.policy) return error(503, "no policy is loaded yet");
  const auto s = suggest_rule(*status.policy, status.text, target);
  if (!s.error.empty()) return error(422, s.error);
  json::object out{{"section", s.section}, {"placement", s.placement}, {"entry", audit::valid_utf8(s.entry)},
                   {"candidate", audit::valid_utf8(s.candidate)}, {"before", s.before},
                   {"after", s.after}, {"diff", audit::valid_utf8(s.diff)}, {"note", s.note},
                   {"policy_file", status.file.empty() ? std::string("<embedded default>") : status.file}};
  return {200, json::serialize(out)};
}

ApiResult api_event(const ConsoleOptions& options, const Params& params) {
  audit::Filter filter;
  filter.request_id = param(params, "request_id");
  if (filter.request_id.empty()) return error(400, "request_id is required");
  filter.limit = 16;
  const audit::LogSet log({options.audit_db});
  return {200, json::serialize(json::object{{"events", to_json(log.select(filter, audit::Source::Events))}})};
}

namespace {

/// "name value" lines of the metrics text whose name starts with a prefix.
json::object figures(const std::string& metrics, std::initializer_list<std::string_view> prefixes) {
  json::object out;
  std::istringstream lines(metrics);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#') continue;
    for (const auto prefix : prefixes) {
      if (line.rfind(prefix, 0) != 0) continue;
      const auto space = line.rfind(' ');
      if (space != std::string::npos) out[line.substr(0, space)] = line.substr(space + 1);
    }
  }
  return out;
}

}  // namespace

ApiResult api_health(const ConsoleOptions& options, const EventHub& hub, std::size_t sessions) {
  const auto status = options.policy->status();
  json::array roles;
  if (status.policy) {
    for (const auto& role : status.policy->model().roles) roles.push_back(json::string(role.name));
  }
  json::object policy{{"file", status.file.empty() ? std::string("<embedded default>") : status.file},
                      {"hash", status.hash},
                      {"mode", status.policy ? std::string(policy::to_string(status.policy->mode())) : ""},
                      {"roles", std::move(roles)},
                      {"last_load", status.last_load},
                      {"last_result", audit::valid_utf8(status.last_result)},
                      {"loads", status.loads},
                      {"failures", status.failures}};
  const std::string metrics = options.metrics ? options.metrics() : std::string();
  std::error_code ec;
  const auto size = std::filesystem::file_size(options.audit_db, ec);
  json::object audit{{"db", options.audit_db}, {"size_bytes", ec ? 0 : size},
                     {"figures", figures(metrics, {"egress_audit_"})}};
  json::object chain;
  try {
    const auto report = audit::verify(options.audit_db, kVerifyRows);
    chain = {{"ok", report.ok}, {"rows", report.rows}, {"first_id", report.first_id},
             {"last_id", report.last_id}, {"problem", report.problem}};
  } catch (const std::exception& e) {
    chain = {{"ok", false}, {"problem", e.what()}};
  }
  const auto feed = hub.stats();
  json::object out{{"policy", std::move(policy)},
                   {"audit", std::move(audit)},
                   {"chain", std::move(chain)},
                   {"dns", figures(metrics, {"egress_dns_cache_", "egress_dns_lookups_total"})},
                   {"tls", figures(metrics, {"egress_tls_cert_cache_", "egress_tls_upstream_connections_total"})},
                   {"console", json::object{{"live_pages", feed.subscribers}, {"published", feed.published},
                                            {"dropped", feed.dropped}, {"sessions", sessions}}}};
  return {200, json::serialize(out)};
}

}  // namespace egress::console
