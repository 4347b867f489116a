// `sandbox render --target docker-daemon`: runtimes.runsc merged into an
// existing daemon.json with Boost.JSON, every other key kept as it was and
// in its order. Pure.
#include <boost/json.hpp>

#include <sstream>
#include <system_error>

#include "egress/sandbox/render.h"

namespace egress::sandbox {
namespace {

namespace json = boost::json;

// Boost.JSON serialises on one line; daemon.json is edited by people, so it
// is written indented, two spaces, keys in their original order.
void pretty(std::ostream& out, const json::value& v, int indent) {
  const std::string pad(static_cast<std::size_t>(indent) * 2, ' ');
  const std::string inner(static_cast<std::size_t>(indent + 1) * 2, ' ');
  if (v.is_object()) {
    const auto& obj = v.get_object();
    if (obj.empty()) {
      out << "{}";
      return;
    }
    out << "{\n";
    std::size_t i = 0;
    for (const auto& kv : obj) {
      out << inner << json::serialize(json::string(kv.key())) << ": ";
      pretty(out, kv.value(), indent + 1);
      out << (++i < obj.size() ? ",\n" : "\n");
    }
    out << pad << "}";
  } else if (v.is_array()) {
    const auto& arr = v.get_array();
    if (arr.empty()) {
      out << "[]";
      return;
    }
    out << "[\n";
    for (std::size_t i = 0; i < arr.size(); ++i) {
      out << inner;
      pretty(out, arr[i], indent + 1);
      out << (i + 1 < arr.size() ? ",\n" : "\n");
    }
    out << pad << "]";
  } else {
    out << json::serialize(v);
  }
}

}  // namespace

std::string merge_daemon_json(const std::string& existing, const RenderOptions& o) {
  json::value root = json::object();
  bool blank = existing.find_first_not_of(" \t\r\n") == std::string::npos;
  if (!blank) {
    std::error_code ec;
    json::value parsed = json::parse(existing, ec);
    if (ec) throw InvalidJson("daemon.json is not valid JSON (" + ec.message() + "); fix it or move it away, nothing was written");
    if (!parsed.is_object()) throw InvalidJson("daemon.json must hold a JSON object at the top; nothing was written");
    root = std::move(parsed);
  }
  auto& obj = root.as_object();
  if (auto* runtimes = obj.if_contains("runtimes"); runtimes && !runtimes->is_object())
    throw InvalidJson("daemon.json: \"runtimes\" is not an object; fix it, nothing was written");
  if (!obj.contains("runtimes")) obj["runtimes"] = json::object();
  json::array args;
  for (const auto& a : o.runsc_args) args.emplace_back(a);
  json::object runsc;
  runsc["path"] = "/usr/bin/runsc";
  runsc["runtimeArgs"] = std::move(args);
  obj["runtimes"].as_object()["runsc"] = std::move(runsc);
  std::ostringstream out;
  pretty(out, root, 0);
  out << "\n";
  return out.str();
}

}  // namespace egress::sandbox
