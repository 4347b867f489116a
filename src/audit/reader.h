// Opening an audit database for reading (`egress audit query|tail|stats|
// verify|export`), and the small SQLite helpers the read side shares:
// binding a Value and reading a column back as one.
#pragma once

#include <string>

#include "audit/database.h"
#include "egress/audit/log.h"

namespace egress::audit {

/// Opens `path` read-only (a WAL reader: it never blocks the writer) and
/// checks that it is an egress audit database this binary can read. Throws
/// AuditError naming the path and what to do when the file is missing, is
/// not SQLite, is not an egress database, or has a newer schema.
DbPtr open_readonly(const std::string& path);

/// The schema version (PRAGMA user_version) of an open audit database.
std::int64_t schema_version(sqlite3* db, const std::string& path);

/// Binds `value` to parameter `index` (1-based); SQLITE_TRANSIENT copies.
int bind_value(sqlite3_stmt* stmt, int index, const Value& value);

/// Column `index` of the current row as a Value.
Value column_value(sqlite3_stmt* stmt, int index);

}  // namespace egress::audit
