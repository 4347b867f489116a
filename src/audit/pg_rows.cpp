// Rows to central parameters and back (see pg_rows.h).
#include "audit/pg_rows.h"

#include <charconv>

namespace egress::audit {
namespace {

bool integer_column(std::string_view column) {
  for (const std::string_view c : {"id", "port", "status", "bytes_up", "bytes_down", "duration_ms"}) {
    if (column == c) return true;
  }
  return false;
}

PgParam param(const Value& v) {
  if (const auto* i = std::get_if<std::int64_t>(&v)) return std::to_string(*i);
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  return std::nullopt;
}

std::string central_columns() {
  std::string sql = "replica, id";
  for (auto c : kContentColumns) sql += ", " + std::string(c);
  return sql + ", prev_hash, hash";
}

void append_copy_text(std::string& out, std::string_view text) {
  text = text.substr(0, text.find('\0'));
  for (const char c : text) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\t': out += "\\t"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      default: out += c;
    }
  }
}

void append_copy_value(std::string& out, const Value& v) {
  if (const auto* i = std::get_if<std::int64_t>(&v)) {
    out += std::to_string(*i);
  } else if (const auto* s = std::get_if<std::string>(&v)) {
    append_copy_text(out, *s);
  } else {
    out += "\\N";
  }
}

}  // namespace

std::string central_copy_sql() { return "COPY events (" + central_columns() + ") FROM STDIN"; }

void append_copy_row(std::string& out, std::string_view replica, const ShippedRow& row) {
  append_copy_text(out, replica);
  out += '\t';
  out += std::to_string(row.id);
  for (std::size_t i = 0; i < kContentColumns.size(); ++i) {
    out += '\t';
    append_copy_value(out, i < row.content.size() ? row.content[i] : Value{});
  }
  out += '\t';
  append_copy_text(out, row.prev_hash);
  out += '\t';
  append_copy_text(out, row.hash);
  out += '\n';
}

std::string central_insert_sql(std::size_t rows) {
  std::string sql = "INSERT INTO events (" + central_columns() + ") VALUES ";
  std::size_t n = 1;
  for (std::size_t r = 0; r < rows; ++r) {
    sql += r ? ", (" : "(";
    for (std::size_t p = 0; p < kParamsPerRow; ++p) sql += (p ? ", $" : "$") + std::to_string(n++);
    sql += ')';
  }
  return sql + " ON CONFLICT (replica, id) DO NOTHING";
}

void append_row_params(std::vector<PgParam>& params, std::string_view replica, const ShippedRow& row) {
  params.emplace_back(std::string(replica));
  params.emplace_back(std::to_string(row.id));
  for (std::size_t i = 0; i < kContentColumns.size(); ++i) {
    params.push_back(i < row.content.size() ? param(row.content[i]) : std::nullopt);
  }
  params.emplace_back(row.prev_hash);
  params.emplace_back(row.hash);
}

std::string central_select_columns() {
  std::string sql = "id";
  for (auto c : kContentColumns) sql += ", " + std::string(c);
  return sql + ", prev_hash, hash";
}

Value from_pg(std::string_view column, const PgParam& cell) {
  if (!cell) return std::monostate{};
  if (!integer_column(column)) return *cell;
  std::int64_t v = 0;
  const auto [end, ec] = std::from_chars(cell->data(), cell->data() + cell->size(), v);
  if (ec != std::errc{} || end != cell->data() + cell->size()) return *cell;  // keep what is there: verify will see it
  return v;
}

}  // namespace egress::audit
