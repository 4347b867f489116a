// Opening and migrating an audit database (see database.h).
//
// Every check runs inside the migration's BEGIN IMMEDIATE transaction, so two
// processes opening one new file at once cannot both migrate it, and a file
// that turns out not to be ours is never written: nothing touches the file
// before the application_id check passes (WAL is switched on afterwards by
// the writer).
#include "audit/database.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "audit/migrations.h"
#include "egress/audit/store.h"

namespace egress::audit {
namespace {

std::string hex32(std::int64_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", static_cast<unsigned>(v));
  return buf;
}

[[noreturn]] void fail(sqlite3* db, const std::string& path, std::string_view what) {
  const int code = sqlite3_errcode(db);
  if ((code & 0xff) == SQLITE_NOTADB) {
    throw AuditError(path + ": not an egress audit database (" + sqlite3_errmsg(db) +
                     "); point --audit-db at an egress audit file or a new path");
  }
  std::string msg = path + ": " + std::string(what) + ": " + sqlite3_errmsg(db);
  if (const int sys = sqlite3_system_errno(db); sys != 0) {
    msg += " (" + std::string(std::strerror(sys)) + ")";
  }
  throw AuditError(msg);
}

std::int64_t query_int(sqlite3* db, const char* sql, const std::string& path) {
  StmtPtr stmt = prepare(db, sql, path);
  if (sqlite3_step(stmt.get()) != SQLITE_ROW) fail(db, path, sql);
  return sqlite3_column_int64(stmt.get(), 0);
}

// Applies at most one migration inside one transaction. Returns false once
// the database is at the newest schema.
bool migrate_one(sqlite3* db, const std::string& path) {
  const auto& all = migrations();
  const auto known = static_cast<std::int64_t>(all.size());

  const std::int64_t app = query_int(db, "PRAGMA application_id", path);
  const std::int64_t version = query_int(db, "PRAGMA user_version", path);
  const std::int64_t objects = query_int(db, "SELECT count(*) FROM sqlite_master", path);
  if (app != kApplicationId && (app != 0 || version != 0 || objects != 0)) {
    throw AuditError(path + ": not an egress audit database (application_id " + hex32(app) +
                     ", expected " + hex32(kApplicationId) +
                     "); point --audit-db at an egress audit file or a new path");
  }
  if (version > known) {
    throw AuditError(path + ": written by a newer egress, schema v" + std::to_string(version) +
                     "; this binary knows up to v" + std::to_string(known) +
                     "; upgrade egress (it never downgrades a database)");
  }
  if (version == known) return false;

  const Migration& m = all[static_cast<std::size_t>(version)];
  exec(db, std::string(m.sql).c_str(), path, "migration " + std::string(m.name));
  const std::string stamp = "PRAGMA application_id = " + std::to_string(kApplicationId) +
                            "; PRAGMA user_version = " + std::to_string(version + 1) + ";";
  exec(db, stamp.c_str(), path, "migration " + std::string(m.name));
  spdlog::info("audit: {}: applied schema migration {} (now v{})", path, m.name, version + 1);
  return true;
}

}  // namespace

StmtPtr prepare(sqlite3* db, std::string_view sql, const std::string& path) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT,
                         &stmt, nullptr) != SQLITE_OK) {
    fail(db, path, "prepare '" + std::string(sql) + "'");
  }
  return StmtPtr(stmt);
}

void exec(sqlite3* db, const char* sql, const std::string& path, std::string_view what) {
  if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) fail(db, path, what);
}

DbPtr open_database(const std::string& path, std::chrono::milliseconds busy_timeout) {
  // Audit rows name hosts and paths workers asked for, so a new database is
  // not world-readable: owner writes, the owner's group (the security team)
  // reads. SQLite gives the -wal and -shm files the database's mode.
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
  if (fd >= 0) {
    ::close(fd);
  } else if (errno != EEXIST) {
    throw AuditError(path + ": cannot open audit database: cannot create the file (" +
                     std::strerror(errno) + "); check that the directory exists and is writable");
  }

  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                                 nullptr);
  DbPtr db(raw);  // sqlite3_open_v2 may hand back a handle even on failure
  if (rc != SQLITE_OK) {
    if (!db) throw AuditError(path + ": cannot open audit database: out of memory");
    fail(db.get(), path, "cannot open audit database (does the directory exist and is it writable?)");
  }
  sqlite3_extended_result_codes(db.get(), 1);
  if (sqlite3_db_readonly(db.get(), "main") == 1) {
    throw AuditError(path + ": audit database is read-only (" + std::strerror(EACCES) +
                     "); egress must be able to write it");
  }
  sqlite3_busy_timeout(db.get(), static_cast<int>(busy_timeout.count()));

  for (;;) {
    exec(db.get(), "BEGIN IMMEDIATE", path, "cannot lock audit database");
    bool more = false;
    try {
      more = migrate_one(db.get(), path);
      exec(db.get(), "COMMIT", path, "cannot commit schema migration");
    } catch (...) {
      if (!sqlite3_get_autocommit(db.get())) {
        sqlite3_exec(db.get(), "ROLLBACK", nullptr, nullptr, nullptr);
      }
      throw;
    }
    if (!more) return db;
  }
}

}  // namespace egress::audit
