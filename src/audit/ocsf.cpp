// Rows -> OCSF 1.1 events (see ocsf.h; mapping table in docs/audit-fleet.md).
#include "audit/ocsf.h"

#include <boost/json.hpp>

#include <chrono>
#include <cstdio>

namespace egress::audit {
namespace {

namespace json = boost::json;

// Columns by name, in kContentColumns order.
struct Row {
  const std::vector<Value>& v;
  const Value& at(std::string_view name) const {
    static const Value null;
    for (std::size_t i = 0; i < kContentColumns.size() && i < v.size(); ++i) {
      if (kContentColumns[i] == name) return v[i];
    }
    return null;
  }
  std::string text(std::string_view name) const {
    const auto* s = std::get_if<std::string>(&at(name));
    return s ? valid_utf8(*s) : std::string();
  }
  std::optional<std::int64_t> integer(std::string_view name) const {
    const auto* i = std::get_if<std::int64_t>(&at(name));
    return i ? std::optional(*i) : std::nullopt;
  }
};

// "2026-11-27T19:54:58.123456Z" -> milliseconds since the epoch (0 if malformed).
std::int64_t epoch_ms(const std::string& ts) {
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  long us = 0;
  if (std::sscanf(ts.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%6ldZ", &y, &mo, &d, &h, &mi, &s, &us) < 6) return 0;
  using namespace std::chrono;
  const sys_days day = year_month_day{year{y}, month{static_cast<unsigned>(mo)}, std::chrono::day{static_cast<unsigned>(d)}};
  const auto t = day + hours{h} + minutes{mi} + seconds{s} + microseconds{us};
  return duration_cast<milliseconds>(t.time_since_epoch()).count();
}

// "ip:port" / "[v6]:port" -> {ip, port}.
json::object endpoint(const std::string& addr) {
  json::object out;
  const auto colon = addr.rfind(':');
  if (addr.empty()) return out;
  std::string ip = colon == std::string::npos ? addr : addr.substr(0, colon);
  if (ip.size() > 1 && ip.front() == '[' && ip.back() == ']') ip = ip.substr(1, ip.size() - 2);
  out["ip"] = ip;
  if (colon != std::string::npos) {
    try {
      out["port"] = std::stoi(addr.substr(colon + 1));
    } catch (const std::exception&) {
      // no port: the ip alone
    }
  }
  return out;
}

int http_activity(const std::string& method) {
  static const std::pair<const char*, int> kIds[] = {{"CONNECT", 1}, {"DELETE", 2}, {"GET", 3}, {"HEAD", 4},
                                                     {"OPTIONS", 5}, {"POST", 6},   {"PUT", 7}, {"TRACE", 8}};
  for (const auto& [name, id] : kIds) {
    if (method == name) return id;
  }
  return method.empty() ? 0 : 99;
}

void put_if(json::object& o, std::string_view key, const std::string& v) {
  if (!v.empty()) o[key] = v;
}
void put_if(json::object& o, std::string_view key, std::optional<std::int64_t> v) {
  if (v) o[key] = *v;
}

}  // namespace

std::string to_ocsf_line(const std::vector<Value>& content, const RowMeta& meta) {
  const Row r{content};
  const bool close = r.text("event") == "close";
  const std::string decision = r.text("decision"), error = r.text("error");
  const bool http = r.text("kind") != "connect";
  const int class_uid = http ? kOcsfHttpActivity : kOcsfNetworkActivity;
  // HTTP Activity: by method. Network Activity: 1 Open, 2 Close, 5 Refuse.
  const int activity = http ? http_activity(r.text("method")) : close ? 2 : decision == "deny" ? 5 : 1;
  const bool denied = decision == "deny";

  json::object e;
  e["class_uid"] = class_uid;
  e["class_name"] = http ? "HTTP Activity" : "Network Activity";
  e["category_uid"] = 4;
  e["category_name"] = "Network Activity";
  e["activity_id"] = activity;
  e["type_uid"] = class_uid * 100 + activity;
  e["time"] = epoch_ms(r.text("ts"));
  e["severity_id"] = denied ? 3 : decision == "report" ? 2 : 1;
  e["severity"] = denied ? "Medium" : decision == "report" ? "Low" : "Informational";
  if (!decision.empty()) {
    e["action_id"] = denied ? 2 : 1;
    e["action"] = denied ? "Denied" : "Allowed";
    e["disposition_id"] = denied ? 2 : 1;
    e["disposition"] = denied ? "Blocked" : "Allowed";
  }
  const bool failed = denied || !error.empty();
  e["status_id"] = failed ? 2 : 1;
  e["status"] = failed ? "Failure" : "Success";
  put_if(e, "status_detail", error.empty() ? r.text("reason") : error);
  put_if(e, "message", error);
  put_if(e, "duration", r.integer("duration_ms"));

  e["metadata"] = {{"version", kOcsfVersion},
                   {"product", {{"name", "egress"}, {"vendor_name", "egress"}}},
                   {"uid", r.text("request_id") + "/" + std::to_string(meta.id)},
                   {"correlation_uid", r.text("request_id")},
                   {"sequence", meta.id},
                   {"original_time", r.text("ts")},
                   {"log_name", "egress audit"}};
  e["src_endpoint"] = endpoint(r.text("client_addr"));
  json::object dst = endpoint(r.text("upstream_addr"));
  put_if(dst, "hostname", r.text("host"));
  put_if(dst, "port", r.integer("port"));
  e["dst_endpoint"] = std::move(dst);
  if (close) {
    json::object traffic;
    put_if(traffic, "bytes_out", r.integer("bytes_up"));
    put_if(traffic, "bytes_in", r.integer("bytes_down"));
    if (!traffic.empty()) e["traffic"] = std::move(traffic);
  }
  if (http) {
    json::object url;
    put_if(url, "hostname", r.text("host"));
    put_if(url, "port", r.integer("port"));
    put_if(url, "path", r.text("path"));
    put_if(url, "scheme", r.text("scheme"));
    json::object request{{"url", std::move(url)}};
    put_if(request, "http_method", r.text("method"));
    e["http_request"] = std::move(request);
    if (auto status = r.integer("status")) e["http_response"] = {{"code", *status}};
  }
  if (!r.text("sni").empty()) e["tls"] = {{"sni", r.text("sni")}};

  json::object unmapped;
  for (const char* key : {"event", "mode", "role", "kind", "decision", "rule", "reason", "alpn"}) {
    put_if(unmapped, key, r.text(key));
  }
  unmapped["prev_hash"] = std::string(meta.prev_hash);
  unmapped["hash"] = std::string(meta.hash);
  e["unmapped"] = std::move(unmapped);
  return json::serialize(e);
}

}  // namespace egress::audit
