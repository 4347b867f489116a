// Local rows as the central store's statements take them, and central
// values back as local ones. Pure functions (tests/audit/pg_rows_test.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "audit/pg_connection.h"
#include "audit/row.h"

namespace egress::audit {

/// One local row: id, content (kContentColumns order), chain links.
struct ShippedRow {
  std::int64_t id = 0;
  std::vector<Value> content;
  std::string prev_hash;
  std::string hash;
};

/// Parameters per row in central_insert_sql: replica, id, content, prev_hash, hash.
inline constexpr std::size_t kParamsPerRow = kContentColumns.size() + 4;

/// "INSERT INTO events (replica, id, ts, ..., prev_hash, hash) VALUES
/// ($1, ...), ... ON CONFLICT (replica, id) DO NOTHING" for `rows` rows.
std::string central_insert_sql(std::size_t rows);

/// Appends `row`'s kParamsPerRow parameters (text format; NULL is nullopt).
void append_row_params(std::vector<PgParam>& params, std::string_view replica, const ShippedRow& row);

/// "COPY events (replica, id, ts, ..., prev_hash, hash) FROM STDIN": the
/// shipper's fast path, the columns in append_copy_row's order. Unlike the
/// INSERT it cannot skip rows already there: a repeated key fails it.
std::string central_copy_sql();

/// Appends `row` as one line of COPY's text format: tab-separated, NULL as
/// \N, backslash, tab, newline and carriage return escaped. A text value
/// ends at its first NUL byte, as the same value sent as a parameter does.
void append_copy_row(std::string& out, std::string_view replica, const ShippedRow& row);

/// The central column list read back: "id, ts, ..., prev_hash, hash".
std::string central_select_columns();

/// A central cell of column `column` (a kContentColumns name, "id",
/// "prev_hash" or "hash") as the local Value: integers parsed.
Value from_pg(std::string_view column, const PgParam& cell);

}  // namespace egress::audit
