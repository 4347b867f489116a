#include "audit/database.h"

#include <catch2/catch.hpp>

#include <fstream>
#include <random>
#include <set>

#include "audit/migrations.h"
#include "audit/row.h"
#include "egress/audit/store.h"
#include "fakes.h"

using namespace egress::audit;
using namespace egress::audit::testing;
using Catch::Matchers::Contains;
using namespace std::chrono_literals;

namespace {

std::set<std::string> schema_objects(sqlite3* db, const std::string& type) {
  std::set<std::string> names;
  sqlite3_stmt* stmt = nullptr;
  const std::string sql = "SELECT name FROM sqlite_master WHERE type = '" + type +
                          "' AND name NOT LIKE 'sqlite_%'";
  REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK);
  StmtPtr guard(stmt);
  while (sqlite3_step(stmt) == SQLITE_ROW) {
    names.insert(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)));
  }
  return names;
}

DbPtr create_plain(const std::string& path) {
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open(path.c_str(), &raw);
  DbPtr db(raw);
  REQUIRE(rc == SQLITE_OK);
  return db;
}

std::string open_error(const std::string& path) {
  try {
    open_database(path, 100ms);
  } catch (const AuditError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("open_database creates the schema in a new file", "[audit]") {
  TempDir dir;
  const std::string path = dir.file("audit.db");
  { DbPtr db = open_database(path, 100ms); }

  DbPtr db = open_reader(path);
  CHECK(schema_objects(db.get(), "table") == std::set<std::string>{"events", "prune_anchors", "replication"});
  CHECK(schema_objects(db.get(), "view") == std::set<std::string>{"requests"});
  CHECK(schema_objects(db.get(), "index") ==
        std::set<std::string>{"events_ts", "events_host_ts", "events_request_id",
                              "events_decision_ts"});
  CHECK(schema_objects(db.get(), "trigger") ==
        std::set<std::string>{"events_no_update", "events_no_delete"});
  CHECK(query_int(db.get(), "PRAGMA application_id") == 0x45475253);
  CHECK((std::filesystem::status(path).permissions() & std::filesystem::perms::others_all) ==
        std::filesystem::perms::none);
  CHECK(query_int(db.get(), "PRAGMA user_version") ==
        static_cast<std::int64_t>(migrations().size()));
}

TEST_CASE("the events table has the contract's columns in kContentColumns order", "[audit]") {
  TempDir dir;
  const std::string path = dir.file("audit.db");
  DbPtr db = open_database(path, 100ms);
  std::vector<std::string> columns;
  sqlite3_stmt* stmt = nullptr;
  REQUIRE(sqlite3_prepare_v2(db.get(), "SELECT name FROM pragma_table_info('events') ORDER BY cid",
                             -1, &stmt, nullptr) == SQLITE_OK);
  StmtPtr guard(stmt);
  while (sqlite3_step(stmt) == SQLITE_ROW) {
    columns.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)));
  }
  // 001's columns, then the columns later migrations appended after hash.
  std::vector<std::string> expected{"id"};
  expected.insert(expected.end(), kContentColumns.begin(), kContentColumns.begin() + kChainBaseColumns);
  expected.insert(expected.end(), {"prev_hash", "hash"});
  expected.insert(expected.end(), kContentColumns.begin() + kChainBaseColumns, kContentColumns.end());
  CHECK(columns == expected);
}

TEST_CASE("open_database reopens an existing database without migrating again", "[audit]") {
  TempDir dir;
  const std::string path = dir.file("audit.db");
  { DbPtr db = open_database(path, 100ms); }
  {
    DbPtr db = open_reader(path);
    run_sql(db.get(),
            "INSERT INTO events (ts, request_id, event, prev_hash, hash) "
            "VALUES ('t', 'r', 'close', 'p', 'h')");
  }
  DbPtr db = open_database(path, 100ms);
  CHECK(query_int(db.get(), "SELECT count(*) FROM events") == 1);
  CHECK(query_int(db.get(), "PRAGMA user_version") ==
        static_cast<std::int64_t>(migrations().size()));
}

TEST_CASE("open_database refuses a SQLite file that is not an egress audit database",
          "[audit]") {
  TempDir dir;
  const std::string path = dir.file("other.db");
  {
    DbPtr db = create_plain(path);
    run_sql(db.get(), "PRAGMA application_id = 1234; CREATE TABLE t (x)");
  }
  const std::string error = open_error(path);
  CHECK_THAT(error, Contains(path) && Contains("not an egress audit database") &&
                        Contains("0x000004d2"));
  // ... and leaves it alone.
  DbPtr db = open_reader(path);
  CHECK(query_int(db.get(), "SELECT count(*) FROM sqlite_master WHERE name = 'events'") == 0);
}

TEST_CASE("open_database refuses a SQLite file with tables but no application_id", "[audit]") {
  TempDir dir;
  const std::string path = dir.file("plain.db");
  {
    DbPtr db = create_plain(path);
    run_sql(db.get(), "CREATE TABLE t (x)");
  }
  CHECK_THAT(open_error(path), Contains(path) && Contains("not an egress audit database"));
}

TEST_CASE("open_database refuses a file that is not SQLite at all", "[audit]") {
  TempDir dir;
  const std::string path = dir.file("random.bin");
  {
    std::mt19937 gen(42);  // fixed seed: hermetic
    std::ofstream out(path, std::ios::binary);
    for (int i = 0; i < 8192; ++i) out.put(static_cast<char>(gen() & 0xff));
  }
  CHECK_THAT(open_error(path), Contains(path) && Contains("not an egress audit database") &&
                                   Contains("file is not a database"));
}

TEST_CASE("open_database refuses a schema newer than this binary's", "[audit]") {
  TempDir dir;
  const std::string path = dir.file("audit.db");
  { DbPtr db = open_database(path, 100ms); }
  const auto newer = static_cast<std::int64_t>(migrations().size()) + 1;
  {
    DbPtr db = open_reader(path);
    run_sql(db.get(), "PRAGMA user_version = " + std::to_string(newer));
  }
  const std::string error = open_error(path);
  CHECK_THAT(error, Contains(path) && Contains("newer egress") &&
                        Contains("schema v" + std::to_string(newer)) &&
                        Contains("upgrade egress"));
  DbPtr db = open_reader(path);  // not downgraded
  CHECK(query_int(db.get(), "PRAGMA user_version") == newer);
}

TEST_CASE("open_database names the path when the directory is missing", "[audit]") {
  TempDir dir;
  const std::string path = dir.file("no/such/dir/audit.db");
  CHECK_THAT(open_error(path), Contains(path) && Contains("cannot open audit database") &&
                                   Contains("No such file or directory"));
}

TEST_CASE("the events table rejects UPDATE and DELETE", "[audit]") {
  TempDir dir;
  const std::string path = dir.file("audit.db");
  { DbPtr db = open_database(path, 100ms); }
  DbPtr db = open_reader(path);
  run_sql(db.get(),
          "INSERT INTO events (ts, request_id, event, prev_hash, hash) "
          "VALUES ('t', 'r', 'decision', 'p', 'h')");
  CHECK_THAT(sql_error(db.get(), "UPDATE events SET host = 'x'"), Contains("append-only"));
  CHECK_THAT(sql_error(db.get(), "DELETE FROM events"), Contains("append-only"));
  CHECK_THAT(sql_error(db.get(), "INSERT INTO events (ts, request_id, event, prev_hash, hash) "
                                 "VALUES ('t', 'r', 'other', 'p', 'h')"),
             Contains("CHECK"));
  CHECK(query_text(db.get(), "SELECT host FROM events") == "<NULL>");
  CHECK(query_int(db.get(), "SELECT count(*) FROM events") == 1);
}

TEST_CASE("a version 1 database migrates to the prune anchors schema keeping its rows",
          "[audit]") {
  TempDir dir;
  const std::string path = dir.file("audit.db");
  {
    // What an egress with only 001_events.sql left behind.
    DbPtr db = open_reader_creating(path);
    run_sql(db.get(), std::string(migrations().at(0).sql));
    run_sql(db.get(), "PRAGMA application_id = 1162302035; PRAGMA user_version = 1");
    run_sql(db.get(),
            "INSERT INTO events (ts, request_id, event, prev_hash, hash) "
            "VALUES ('2026-01-01T00:00:00.000000Z', 'r1', 'decision', 'p', 'h')");
  }
  { DbPtr db = open_database(path, 100ms); }
  DbPtr db = open_reader(path);
  CHECK(query_int(db.get(), "PRAGMA user_version") == static_cast<std::int64_t>(migrations().size()));
  CHECK(query_int(db.get(), "SELECT count(*) FROM events") == 1);
  CHECK(query_int(db.get(), "SELECT count(*) FROM prune_anchors") == 0);
  CHECK(schema_objects(db.get(), "view") == std::set<std::string>{"requests"});
}
