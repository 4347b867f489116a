// Event -> column values, and column values -> one JSON line.
#include "audit/row.h"

#include <boost/json.hpp>

namespace egress::audit {
namespace {

Value text(const std::string& s) {
  if (s.empty()) return std::monostate{};
  return s;
}

template <typename T>
Value integer(const std::optional<T>& v) {
  if (!v) return std::monostate{};
  return static_cast<std::int64_t>(*v);
}

}  // namespace

std::vector<Value> row_values(const Event& e) {
  // Order is kContentColumns order; chain hashes depend on it.
  return {
      format_timestamp(e.ts), e.request_id,     to_string(e.event), text(e.mode),
      text(e.role),           text(e.client_addr), text(e.kind),    text(e.method),
      text(e.scheme),         text(e.host),     integer(e.port),    text(e.path),
      text(e.sni),            text(e.decision), text(e.rule),       text(e.reason),
      text(e.upstream_addr),  integer(e.status), integer(e.bytes_up), integer(e.bytes_down),
      integer(e.duration_ms), text(e.error),
  };
}

std::string to_json_line(const std::vector<Value>& content, const RowMeta& meta) {
  boost::json::object obj;
  obj.reserve(kContentColumns.size() + 3);
  obj["id"] = meta.id;
  for (std::size_t i = 0; i < kContentColumns.size() && i < content.size(); ++i) {
    const auto key = boost::json::string_view(kContentColumns[i].data(), kContentColumns[i].size());
    std::visit(
        [&](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, std::monostate>) {
            obj[key] = nullptr;
          } else {
            obj[key] = v;
          }
        },
        content[i]);
  }
  obj["prev_hash"] = boost::json::string_view(meta.prev_hash.data(), meta.prev_hash.size());
  obj["hash"] = boost::json::string_view(meta.hash.data(), meta.hash.size());
  return boost::json::serialize(obj);
}

std::string to_json_line(const Event& event, const RowMeta& meta) {
  return to_json_line(row_values(event), meta);
}

}  // namespace egress::audit
