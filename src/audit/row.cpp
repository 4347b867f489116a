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

// Boost.JSON writes string bytes as they are, and a host that could not be
// normalised is the worker's raw bytes. A log pipeline must get valid JSON.
std::string valid_utf8(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  for (std::size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    std::size_t len = 0;
    unsigned char lo = 0x80, hi = 0xbf;  // allowed range of the second byte
    if (c < 0x80) len = 1;
    else if (c >= 0xc2 && c <= 0xdf) len = 2;
    else if (c == 0xe0) len = 3, lo = 0xa0;
    else if (c >= 0xe1 && c <= 0xef) len = 3, hi = (c == 0xed ? 0x9f : 0xbf);  // no surrogates
    else if (c == 0xf0) len = 4, lo = 0x90;
    else if (c >= 0xf1 && c <= 0xf3) len = 4;
    else if (c == 0xf4) len = 4, hi = 0x8f;  // nothing above U+10FFFF
    bool ok = len != 0 && i + len <= n;
    for (std::size_t k = 1; ok && k < len; ++k) {
      const unsigned char b = p[i + k];
      ok = k == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xbf);
    }
    if (ok) {
      out.append(s, i, len);
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

std::vector<Value> row_values(const Event& e) {
  // Order is kContentColumns order; chain hashes depend on it.
  return {
      format_timestamp(e.ts), e.request_id,     to_string(e.event), text(e.mode),
      text(e.role),           text(e.client_addr), text(e.kind),    text(e.method),
      text(e.scheme),         text(e.host),     integer(e.port),    text(e.path),
      text(e.sni),            text(e.decision), text(e.rule),       text(e.reason),
      text(e.upstream_addr),  integer(e.status), integer(e.bytes_up), integer(e.bytes_down),
      integer(e.duration_ms), text(e.error),
      text(e.alpn),           text(e.injected), integer(e.scrubbed),
  };
}

std::string select_list(std::string_view columns, std::int64_t version) {
  std::string out;
  while (!columns.empty()) {
    const auto comma = columns.find(',');
    auto name = columns.substr(0, comma);
    columns = comma == std::string_view::npos ? std::string_view{} : columns.substr(comma + 1);
    while (!name.empty() && name.front() == ' ') name.remove_prefix(1);
    if (!out.empty()) out += ", ";
    const bool missing = (name == "alpn" && version < kAlpnSchemaVersion) ||
                         ((name == "injected" || name == "scrubbed") && version < kSecretsSchemaVersion);
    if (missing) {
      out += "NULL AS " + std::string(name);
    } else {
      out += name;
    }
  }
  return out;
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
          } else if constexpr (std::is_same_v<T, std::string>) {
            obj[key] = valid_utf8(v);
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
