// Opening an audit database: RAII handles for SQLite objects, the egress
// identity check (PRAGMA application_id), and the migration runner that
// brings a file up to this binary's schema (PRAGMA user_version = number of
// migrations applied). The writer uses it today; `egress audit` will too.
#pragma once

#include <sqlite3.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace egress::audit {

/// PRAGMA application_id of every egress audit database: "EGRS".
inline constexpr std::int32_t kApplicationId = 0x45475253;

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using DbPtr = std::unique_ptr<sqlite3, DbCloser>;

struct StmtFinalizer {
  void operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }
};
using StmtPtr = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

/// Opens `path` read-write, creating it if missing, and migrates it to the
/// newest schema this binary knows, one transaction per migration. Throws
/// AuditError, naming the path, when the file cannot be opened or written,
/// is not an egress audit database, or has a newer schema than this binary
/// (egress never downgrades a database).
DbPtr open_database(const std::string& path, std::chrono::milliseconds busy_timeout);

/// Prepares `sql` on `db`; throws AuditError naming `path` and SQLite's error.
StmtPtr prepare(sqlite3* db, std::string_view sql, const std::string& path);

/// Runs `sql` (one or more statements); throws AuditError naming `path`,
/// `what` was being done and SQLite's error.
void exec(sqlite3* db, const char* sql, const std::string& path, std::string_view what);

}  // namespace egress::audit
