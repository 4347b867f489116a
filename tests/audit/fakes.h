// Test helpers for the audit component: a fresh temporary directory per test,
// a second (reader) SQLite connection like the sqlite3 CLI would open, and
// sample events.
#pragma once

#include <sqlite3.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <string>

#include "audit/database.h"
#include "egress/audit/event.h"
#include "egress/audit/store.h"
#include <vector>

namespace egress::audit::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "egress-audit-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

/// An independent connection, as `sqlite3 FILE` would open it.
inline DbPtr open_reader(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
    sqlite3_close_v2(db);
    throw std::runtime_error("cannot open " + path);
  }
  return DbPtr(db);
}

/// Like open_reader, but creates the file (for hand-made databases).
inline DbPtr open_reader_creating(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
      SQLITE_OK) {
    sqlite3_close_v2(db);
    throw std::runtime_error("cannot create " + path);
  }
  return DbPtr(db);
}

inline void run_sql(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "?";
    sqlite3_free(err);
    throw std::runtime_error(sql + ": " + msg);
  }
}

/// Runs `sql` and returns the error message, or "" if it succeeded.
inline std::string sql_error(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) == SQLITE_OK) return "";
  std::string msg = err ? err : "?";
  sqlite3_free(err);
  return msg;
}

inline std::int64_t query_int(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
    throw std::runtime_error(sql + ": " + sqlite3_errmsg(db));
  }
  StmtPtr guard(stmt);
  if (sqlite3_step(stmt) != SQLITE_ROW) throw std::runtime_error(sql + ": no row");
  return sqlite3_column_int64(stmt, 0);
}

/// First column of the first row as text; "<NULL>" for NULL.
inline std::string query_text(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
    throw std::runtime_error(sql + ": " + sqlite3_errmsg(db));
  }
  StmtPtr guard(stmt);
  if (sqlite3_step(stmt) != SQLITE_ROW) throw std::runtime_error(sql + ": no row");
  if (sqlite3_column_type(stmt, 0) == SQLITE_NULL) return "<NULL>";
  return reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
}

/// A decision event with every decision field set.
inline Event decision_event(const std::string& request_id) {
  Event e;
  e.ts = std::chrono::system_clock::time_point(std::chrono::microseconds(1795895698123456));
  e.request_id = request_id;
  e.event = EventType::Decision;
  e.mode = "self-hosted";
  e.role = "comfyui";
  e.client_addr = "172.20.1.5:40000";
  e.kind = "connect";
  e.host = "github.com";
  e.port = 443;
  e.sni = "github.com";
  e.decision = "allow";
  e.rule = "policy.yaml:3";
  e.reason = "host-allowed";
  e.upstream_addr = "140.82.112.3:443";
  return e;
}

/// The close event of `request_id`.
inline Event close_event(const std::string& request_id) {
  Event e;
  e.ts = std::chrono::system_clock::time_point(std::chrono::microseconds(1795895699000001));
  e.request_id = request_id;
  e.event = EventType::Close;
  e.mode = "self-hosted";
  e.client_addr = "172.20.1.5:40000";
  e.kind = "connect";
  e.host = "github.com";
  e.port = 443;
  e.upstream_addr = "140.82.112.3:443";
  e.status = 200;
  e.bytes_up = 517;
  e.bytes_down = 123456789012;
  e.duration_ms = 877;
  return e;
}

/// The time of a sample event `minutes` after 2026-11-28T00:00:00Z.
inline std::chrono::system_clock::time_point sample_time(int minutes) {
  using namespace std::chrono;
  return system_clock::time_point(sys_days(year(2026) / 11 / 28)) + std::chrono::minutes(minutes);
}

/// Commits `events` to the database at `path` through the real writer.
inline void write_events(const std::string& path, std::vector<Event> events) {
  StoreOptions options;
  options.path = path;
  auto store = AuditStore::open(options);
  for (auto& e : events) store->record(std::move(e));
  store->flush();
}

/// A decision and its close, `minute` minutes into the sample day.
inline std::vector<Event> request_pair(const std::string& id, int minute, const std::string& host,
                                       const std::string& decision, int status) {
  Event d = decision_event(id);
  d.ts = sample_time(minute);
  d.host = host;
  d.decision = decision;
  d.reason = decision == "deny" ? "not-allowed" : "host-allowed";
  Event c = close_event(id);
  c.ts = sample_time(minute) + std::chrono::milliseconds(5);
  c.host = host;
  c.status = status;
  return {d, c};
}

}  // namespace egress::audit::testing
