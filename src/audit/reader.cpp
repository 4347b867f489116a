// The read-only opener (see reader.h). A reader must never change the file:
// it opens with SQLITE_OPEN_READONLY, never migrates, and refuses rather
// than guesses when the file is not what it expects.
#include "audit/reader.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "audit/migrations.h"
#include "egress/audit/store.h"

namespace egress::audit {
namespace {

constexpr auto kReadBusyTimeout = std::chrono::milliseconds(5000);

std::string hex32(std::int64_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", static_cast<unsigned>(v));
  return buf;
}

// PRAGMA answers; a file that is not SQLite fails here with SQLITE_NOTADB.
std::int64_t pragma_int(sqlite3* db, const char* sql, const std::string& path) {
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db, sql, -1, &raw, nullptr) != SQLITE_OK) {
    const bool not_db = (sqlite3_errcode(db) & 0xff) == SQLITE_NOTADB;
    throw AuditError(path + (not_db ? ": not an egress audit database (not an SQLite file: "
                                    : ": cannot read the audit database (") +
                     sqlite3_errmsg(db) + "); pass the file `egress serve --audit-db` writes");
  }
  StmtPtr stmt(raw);
  const int rc = sqlite3_step(raw);
  if (rc == SQLITE_ROW) return sqlite3_column_int64(raw, 0);
  const bool not_db = (sqlite3_errcode(db) & 0xff) == SQLITE_NOTADB;
  throw AuditError(path + (not_db ? ": not an egress audit database (not an SQLite file: "
                                  : ": cannot read the audit database (") +
                   sqlite3_errmsg(db) + "); pass the file `egress serve --audit-db` writes");
}

}  // namespace

std::int64_t schema_version(sqlite3* db, const std::string& path) {
  return pragma_int(db, "PRAGMA user_version", path);
}

DbPtr open_readonly(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    throw AuditError(path + ": cannot open the audit database: " + std::strerror(errno) +
                     "; pass the file `egress serve --audit-db` writes (default egress-audit.db)");
  }
  if (!S_ISREG(st.st_mode)) {
    throw AuditError(path + ": not an egress audit database (not a regular file)");
  }
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr);
  DbPtr db(raw);
  if (rc != SQLITE_OK) {
    throw AuditError(path + ": cannot open the audit database: " +
                     (db ? sqlite3_errmsg(db.get()) : "out of memory"));
  }
  sqlite3_extended_result_codes(db.get(), 1);
  sqlite3_busy_timeout(db.get(), static_cast<int>(kReadBusyTimeout.count()));

  const std::int64_t app = pragma_int(db.get(), "PRAGMA application_id", path);
  if (app != kApplicationId) {
    throw AuditError(path + ": not an egress audit database (application_id " + hex32(app) +
                     ", expected " + hex32(kApplicationId) +
                     "); pass the file `egress serve --audit-db` writes");
  }
  const std::int64_t version = schema_version(db.get(), path);
  const auto known = static_cast<std::int64_t>(migrations().size());
  if (version > known) {
    throw AuditError(path + ": written by a newer egress, schema v" + std::to_string(version) +
                     "; this binary reads up to v" + std::to_string(known) +
                     "; use a newer egress to read it");
  }
  if (version < 1) {
    throw AuditError(path + ": not an egress audit database (no schema: user_version 0)");
  }
  return db;
}

int bind_value(sqlite3_stmt* stmt, int index, const Value& value) {
  if (const auto* i = std::get_if<std::int64_t>(&value)) {
    return sqlite3_bind_int64(stmt, index, *i);
  }
  if (const auto* s = std::get_if<std::string>(&value)) {
    return sqlite3_bind_text(stmt, index, s->data(), static_cast<int>(s->size()),
                             SQLITE_TRANSIENT);
  }
  return sqlite3_bind_null(stmt, index);
}

Value column_value(sqlite3_stmt* stmt, int index) {
  switch (sqlite3_column_type(stmt, index)) {
    case SQLITE_NULL:
      return std::monostate{};
    case SQLITE_INTEGER:
      return sqlite3_column_int64(stmt, index);
    default: {
      const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt, index));
      return std::string(text ? text : "",
                         static_cast<std::size_t>(sqlite3_column_bytes(stmt, index)));
    }
  }
}

}  // namespace egress::audit
