// verify (edits, deletions, reordering), prune with its anchor, retention
// in the background, and the read-only opener's refusals.
#include <catch2/catch.hpp>

#include <fstream>

#include "audit/migrations.h"
#include "audit/reader.h"
#include "egress/audit/log.h"
#include "egress/audit/maintenance.h"
#include "egress/audit/store.h"
#include "fakes.h"

using namespace egress::audit;
using namespace egress::audit::testing;
using Catch::Matchers::Contains;
using namespace std::chrono_literals;

namespace {

// `n` requests (2n rows), one a minute from 00:00.
std::string filled_db(const TempDir& dir, int n) {
  const std::string path = dir.file("audit.db");
  std::vector<Event> all;
  for (int i = 0; i < n; ++i) {
    for (auto& e : request_pair("r" + std::to_string(i), i, "h" + std::to_string(i) + ".test", "allow", 200)) {
      all.push_back(e);
    }
  }
  write_events(path, all);
  return path;
}

// What an attacker with the sqlite3 CLI does first.
DbPtr drop_guards(const std::string& path) {
  DbPtr db = open_reader(path);
  run_sql(db.get(), "DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete");
  return db;
}

std::string minute(int m) { return format_timestamp(sample_time(m)); }

}  // namespace

TEST_CASE("verify passes an intact chain and counts its rows", "[audit]") {
  TempDir dir;
  const auto report = verify(filled_db(dir, 5));
  CHECK(report.ok);
  CHECK(report.problem.empty());
  CHECK(report.rows == 10);
  CHECK(report.first_id == 1);
  CHECK(report.last_id == 10);
}

TEST_CASE("verify names an edited row", "[audit]") {
  TempDir dir;
  const auto path = filled_db(dir, 5);
  auto db = drop_guards(path);
  run_sql(db.get(), "UPDATE events SET decision = 'deny' WHERE id = 4");
  const auto report = verify(path);
  CHECK_FALSE(report.ok);
  CHECK(report.bad_id == 4);
  CHECK(report.rows == 3);
  CHECK_THAT(report.problem, Contains("row 4") && Contains("request r1") && Contains("edited"));
}

TEST_CASE("verify names the row after a deleted one", "[audit]") {
  TempDir dir;
  const auto path = filled_db(dir, 5);
  auto db = drop_guards(path);
  run_sql(db.get(), "DELETE FROM events WHERE id IN (5, 6)");
  const auto report = verify(path);
  CHECK_FALSE(report.ok);
  CHECK(report.bad_id == 7);
  CHECK_THAT(report.problem, Contains("row 7") && Contains("row(s) 5..6 were deleted"));
}

TEST_CASE("verify names a swapped row as out of order", "[audit]") {
  TempDir dir;
  const auto path = filled_db(dir, 5);
  auto db = drop_guards(path);
  // Swap rows 3 and 4 wholesale (content and hashes), keeping their ids.
  run_sql(db.get(),
          "UPDATE events SET id = -3 WHERE id = 3; UPDATE events SET id = 3 WHERE id = 4; "
          "UPDATE events SET id = 4 WHERE id = -3");
  const auto report = verify(path);
  CHECK_FALSE(report.ok);
  CHECK(report.bad_id == 3);
  CHECK_THAT(report.problem, Contains("row 3") && Contains("out of order") && Contains("after row 4"));
}

TEST_CASE("verify names a row inserted with a forged hash", "[audit]") {
  TempDir dir;
  const auto path = filled_db(dir, 2);
  run_sql(open_reader(path).get(),
          "INSERT INTO events (ts, request_id, event, prev_hash, hash) "
          "SELECT ts, 'forged', 'decision', hash, hash FROM events WHERE id = 4");
  const auto report = verify(path);
  CHECK_FALSE(report.ok);
  CHECK(report.bad_id == 5);
  CHECK_THAT(report.problem, Contains("row 5") && Contains("request forged"));
}

TEST_CASE("verify catches the oldest rows deleted without an anchor", "[audit]") {
  TempDir dir;
  const auto path = filled_db(dir, 3);
  run_sql(drop_guards(path).get(), "DELETE FROM events WHERE id <= 2");
  const auto report = verify(path);
  CHECK_FALSE(report.ok);
  CHECK(report.bad_id == 3);
  CHECK_THAT(report.problem, Contains("the start of the log") && Contains("row(s) 1..2 were deleted"));
}

TEST_CASE("prune removes the old prefix, anchors it, and verify still passes", "[audit]") {
  TempDir dir;
  const auto path = filled_db(dir, 10);  // requests at minutes 0..9
  PruneOptions options;
  options.older_than = minute(4);  // requests 0..3: rows 1..8
  options.batch_rows = 3;          // several transactions, one anchor
  const auto result = prune(path, options);
  CHECK(result.pruned_rows == 8);
  CHECK(result.first_id == 1);
  CHECK(result.last_id == 8);
  CHECK(result.batches == 3);

  DbPtr db = open_reader(path);
  CHECK(query_int(db.get(), "SELECT min(id) FROM events") == 9);
  CHECK(query_int(db.get(), "SELECT count(*) FROM prune_anchors") == 1);
  CHECK(query_text(db.get(), "SELECT first_id || '..' || last_id || ' ' || pruned_rows FROM prune_anchors") ==
        "1..8 8");
  CHECK(query_int(db.get(), "SELECT count(*) FROM sqlite_master WHERE name = 'events_no_delete'") == 1);
  CHECK_THAT(sql_error(db.get(), "DELETE FROM events"), Contains("append-only"));

  auto report = verify(path);
  CHECK(report.ok);
  CHECK(report.rows == 12);
  CHECK(report.anchors == 1);
  CHECK(report.pruned_rows == 8);

  // A second run chains a second anchor; new rows keep chaining.
  write_events(path, request_pair("late", 100, "x.test", "allow", 200));
  options.older_than = minute(6);
  CHECK(prune(path, options).pruned_rows == 4);
  report = verify(path);
  CHECK(report.ok);
  CHECK(report.anchors == 2);
  CHECK(report.first_id == 13);
}

TEST_CASE("prune always keeps the newest row, which carries the chain", "[audit]") {
  TempDir dir;
  const auto path = filled_db(dir, 3);
  PruneOptions options;
  options.older_than = minute(1000);
  CHECK(prune(path, options).pruned_rows == 5);
  write_events(path, request_pair("next", 1001, "y.test", "allow", 200));
  const auto report = verify(path);
  CHECK(report.ok);
  CHECK(report.rows == 3);
}

TEST_CASE("verify detects an edited anchor and an edited row next to one", "[audit]") {
  TempDir dir;
  const auto path = filled_db(dir, 4);
  PruneOptions options;
  options.older_than = minute(2);
  REQUIRE(prune(path, options).pruned_rows == 4);
  run_sql(open_reader(path).get(), "UPDATE prune_anchors SET pruned_rows = 2");
  auto report = verify(path);
  CHECK_FALSE(report.ok);
  CHECK_THAT(report.problem, Contains("prune anchor 1") && Contains("edited"));
}

TEST_CASE("prune refuses to remove a range whose chain is broken", "[audit]") {
  TempDir dir;
  const auto path = filled_db(dir, 4);
  run_sql(drop_guards(path).get(), "UPDATE events SET host = 'tampered' WHERE id = 2");
  PruneOptions options;
  options.older_than = minute(3);
  CHECK_THROWS_WITH(prune(path, options), Contains("row 2") && Contains("refuses"));
  CHECK(query_int(open_reader(path).get(), "SELECT count(*) FROM events") == 8);
}

TEST_CASE("retention prunes in the background while the writer keeps committing", "[audit]") {
  TempDir dir;
  const std::string path = dir.file("audit.db");
  const auto now = std::chrono::system_clock::now();
  std::vector<Event> old;
  for (int i = 0; i < 100; ++i) {
    Event e = decision_event("old" + std::to_string(i));
    e.ts = now - 48h + std::chrono::milliseconds(i);
    old.push_back(e);
  }
  write_events(path, old);
  StoreOptions options;
  options.path = path;
  auto store = AuditStore::open(options);
  auto live = [&](int i) {
    Event e = decision_event("live" + std::to_string(i));
    e.ts = std::chrono::system_clock::now();
    store->record(std::move(e));
  };
  live(0);
  store->flush();
  {
    Retention retention(path, std::chrono::hours(24), std::chrono::hours(1));  // a pass at start
    for (int i = 1; i < 2000; ++i) live(i);
    store->flush();
    for (int i = 0; i < 250; ++i) {  // bounded wait (5 s) for the first pass
      if (query_int(open_reader(path).get(), "SELECT count(*) FROM events WHERE request_id LIKE 'old%'") == 0) break;
      std::this_thread::sleep_for(20ms);
    }
  }
  store.reset();
  DbPtr db = open_reader(path);
  CHECK(query_int(db.get(), "SELECT count(*) FROM events WHERE request_id LIKE 'old%'") == 0);
  CHECK(query_int(db.get(), "SELECT count(*) FROM events") == 2000);
  const auto report = verify(path);
  CHECK(report.ok);
  CHECK(report.pruned_rows == 100);
}

TEST_CASE("the read-only opener refuses missing, foreign and newer files, naming the path", "[audit]") {
  TempDir dir;
  auto error = [](const std::string& path) -> std::string {
    try {
      open_readonly(path);
    } catch (const AuditError& e) {
      return e.what();
    }
    return "";
  };
  const auto missing = dir.file("missing.db");
  CHECK_THAT(error(missing), Contains(missing) && Contains("No such file"));
  CHECK_FALSE(std::filesystem::exists(missing));  // never created

  const auto text = dir.file("notes.txt");
  std::ofstream(text) << "this is not a database, it is a text file of some length......\n";
  CHECK_THAT(error(text), Contains(text) && Contains("not an egress audit database"));

  const auto foreign = dir.file("foreign.db");
  run_sql(open_reader_creating(foreign).get(), "CREATE TABLE t (x)");
  CHECK_THAT(error(foreign), Contains(foreign) && Contains("application_id"));

  const auto newer = filled_db(dir, 1);
  run_sql(open_reader(newer).get(), "PRAGMA user_version = 99");
  CHECK_THAT(error(newer), Contains(newer) && Contains("newer egress") && Contains("v99"));
  CHECK_THROWS_WITH(LogSet({newer}), Contains("newer egress"));
  PruneOptions options;
  options.older_than = minute(1);
  CHECK_THROWS_WITH(prune(newer, options), Contains("newer egress"));
  CHECK(query_int(open_reader(newer).get(), "PRAGMA user_version") == 99);
}
