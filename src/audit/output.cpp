// Printing rows for people and for tools: an aligned table for a terminal,
// JSON lines (one object per row, every key present, NULL as null) and CSV
// with a header (RFC 4180 quoting, NULL as an empty field).
#include <boost/json.hpp>

#include <algorithm>
#include <ostream>

#include "audit/row.h"
#include "egress/audit/log.h"

namespace egress::audit {
namespace {

std::string plain(const Value& v, const char* null_text) {
  if (const auto* i = std::get_if<std::int64_t>(&v)) return std::to_string(*i);
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  return null_text;
}

// Control characters would let a logged value (a raw host, an error text)
// forge extra table lines or move the cursor; show them escaped.
std::string printable(std::string s) {
  std::string out;
  for (const char c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[(c >> 4) & 0xf];
      out += kHex[c & 0xf];
    } else {
      out += c;
    }
  }
  return out;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

}  // namespace

std::optional<Format> format_from_string(std::string_view text) {
  if (text == "table") return Format::Table;
  if (text == "json" || text == "jsonl") return Format::Json;
  if (text == "csv") return Format::Csv;
  return std::nullopt;
}

Rows project(const Rows& rows, const std::vector<std::string>& columns) {
  std::vector<std::size_t> keep;
  Rows out;
  for (const auto& name : columns) {
    const auto it = std::find(rows.columns.begin(), rows.columns.end(), name);
    if (it == rows.columns.end()) continue;
    keep.push_back(static_cast<std::size_t>(it - rows.columns.begin()));
    out.columns.push_back(name);
  }
  out.db = rows.db;
  for (const auto& row : rows.rows) {
    std::vector<Value> r;
    for (const auto k : keep) r.push_back(row[k]);
    out.rows.push_back(std::move(r));
  }
  return out;
}

void write_rows(std::ostream& out, Format format, const Rows& rows,
                const std::vector<std::string>& db_names, bool header, std::string_view db_column) {
  const std::string db_key(db_column);
  const bool with_db = !db_names.empty();
  auto db_of = [&](std::size_t r) { return with_db ? db_names.at(rows.db.at(r)) : std::string(); };

  if (format == Format::Json) {
    for (std::size_t r = 0; r < rows.rows.size(); ++r) {
      boost::json::object obj;
      if (with_db) obj[db_key] = valid_utf8(db_of(r));
      for (std::size_t c = 0; c < rows.columns.size(); ++c) {
        const Value& v = rows.rows[r][c];
        auto& slot = obj[rows.columns[c]];
        if (const auto* i = std::get_if<std::int64_t>(&v)) slot = *i;
        else if (const auto* s = std::get_if<std::string>(&v)) slot = valid_utf8(*s);
        else slot = nullptr;
      }
      out << boost::json::serialize(obj) << '\n';
    }
    return;
  }

  std::vector<std::vector<std::string>> cells;
  std::vector<std::string> head;
  if (with_db) head.push_back(db_key);
  head.insert(head.end(), rows.columns.begin(), rows.columns.end());
  for (std::size_t r = 0; r < rows.rows.size(); ++r) {
    std::vector<std::string> line;
    if (with_db) line.push_back(db_of(r));
    for (const Value& v : rows.rows[r]) {
      line.push_back(format == Format::Csv ? plain(v, "") : printable(plain(v, "-")));
    }
    cells.push_back(std::move(line));
  }

  if (format == Format::Csv) {
    auto write_line = [&](const std::vector<std::string>& line) {
      for (std::size_t c = 0; c < line.size(); ++c) out << (c ? "," : "") << csv_field(line[c]);
      out << "\r\n";
    };
    if (header) write_line(head);
    for (const auto& line : cells) write_line(line);
    return;
  }

  std::vector<std::size_t> width(head.size(), 0);
  for (std::size_t c = 0; c < head.size(); ++c) width[c] = head[c].size();
  for (const auto& line : cells) {
    for (std::size_t c = 0; c < line.size(); ++c) width[c] = std::max(width[c], line[c].size());
  }
  auto write_line = [&](const std::vector<std::string>& line) {
    std::string text;
    for (std::size_t c = 0; c < line.size(); ++c) {
      text += line[c];
      if (c + 1 < line.size()) text.append(width[c] - line[c].size() + 2, ' ');
    }
    out << text << '\n';
  };
  if (header) write_line(head);
  for (const auto& line : cells) write_line(line);
}

}  // namespace egress::audit
