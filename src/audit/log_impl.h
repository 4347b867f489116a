// Internals shared by the LogSet pieces (query.cpp, stats.cpp): the open
// read-only connections and a helper that runs one parameterised statement.
#pragma once

#include <string>
#include <vector>

#include "audit/reader.h"
#include "audit/row.h"
#include "egress/audit/log.h"

namespace egress::audit {

struct LogSet::Impl {
  std::vector<DbPtr> dbs;  // one per path, same order
  std::vector<std::int64_t> versions;  // each one's schema version (row.h select_list)
};

/// Runs `sql` with its parameters on `db`; every result row as Values.
/// Throws AuditError naming `path` and SQLite's message.
std::vector<std::vector<Value>> run_sql(sqlite3* db, const Sql& sql, const std::string& path,
                                        std::vector<std::string>* columns = nullptr);

/// The WHERE conditions for `filter` (no "WHERE" keyword; "1" when empty),
/// appending their parameters to `params`. Throws std::invalid_argument.
std::string where_clause(const Filter& filter, std::vector<Value>& params);

}  // namespace egress::audit
