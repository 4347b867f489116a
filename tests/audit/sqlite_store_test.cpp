#include "audit/sqlite_store.h"

#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include <atomic>
#include <fstream>
#include <future>
#include <iterator>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "audit/chain.h"
#include "audit/journal.h"
#include "audit/row.h"
#include "egress/audit/maintenance.h"
#include "fakes.h"

using namespace egress::audit;
using namespace egress::audit::testing;
using namespace std::chrono_literals;

namespace {

struct StoredRow {
  std::int64_t id = 0;
  std::vector<Value> content;
  std::string prev_hash;
  std::string hash;
};

// Every row of `events` in id order, read the way `egress audit verify` will.
std::vector<StoredRow> read_rows(sqlite3* db) {
  std::string sql = "SELECT id";
  for (auto column : kContentColumns) sql += ", " + std::string(column);
  sql += ", prev_hash, hash FROM events ORDER BY id";
  sqlite3_stmt* stmt = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK);
  StmtPtr guard(stmt);
  std::vector<StoredRow> rows;
  const int n = static_cast<int>(kContentColumns.size());
  auto text = [&](int i) { return std::string(reinterpret_cast<const char*>(sqlite3_column_text(stmt, i))); };
  while (sqlite3_step(stmt) == SQLITE_ROW) {
    StoredRow row;
    row.id = sqlite3_column_int64(stmt, 0);
    for (int i = 1; i <= n; ++i) {
      switch (sqlite3_column_type(stmt, i)) {
        case SQLITE_NULL: row.content.emplace_back(std::monostate{}); break;
        case SQLITE_INTEGER: row.content.emplace_back(sqlite3_column_int64(stmt, i)); break;
        default: row.content.emplace_back(text(i)); break;
      }
    }
    row.prev_hash = text(n + 1);
    row.hash = text(n + 2);
    rows.push_back(std::move(row));
  }
  return rows;
}

// Recomputes the chain; returns the id of the first bad row, or 0.
std::int64_t first_broken_link(const std::vector<StoredRow>& rows) {
  std::string prev(kGenesisHash);
  for (const auto& row : rows) {
    if (row.prev_hash != prev || row.hash != chain_hash(prev, row.content)) return row.id;
    prev = row.hash;
  }
  return 0;
}

StoreOptions options_for(const std::string& path) {
  StoreOptions o;
  o.path = path;
  return o;
}

}  // namespace

TEST_CASE("a committed event is readable by another connection when its callback runs",
          "[audit]") {
  TempDir dir;
  const std::string path = dir.file("audit.db");
  auto store = AuditStore::open(options_for(path));
  std::promise<bool> committed;
  store->record(decision_event("req-1"), [&](bool ok) { committed.set_value(ok); });
  REQUIRE(committed.get_future().get());

  DbPtr db = open_reader(path);  // a separate connection, as sqlite3 CLI would be
  CHECK(query_text(db.get(), "PRAGMA journal_mode") == "wal");
  const auto rows = read_rows(db.get());
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].content == row_values(decision_event("req-1")));
  CHECK(query_text(db.get(), "SELECT ts || ' ' || event || ' ' || host || ':' || port || ' ' || "
                             "decision || ' ' || rule || ' ' || reason FROM events") ==
        "2026-11-28T19:54:58.123456Z decision github.com:443 allow policy.yaml:3 host-allowed");
  CHECK(query_text(db.get(), "SELECT method FROM events") == "<NULL>");
  CHECK(query_text(db.get(), "SELECT status FROM events") == "<NULL>");
  CHECK(rows[0].prev_hash == kGenesisHash);
  CHECK(first_broken_link(rows) == 0);
  CHECK(store->healthy());
  const auto stats = store->stats();
  CHECK(stats.committed_events == 1);
  CHECK(stats.commits == 1);
  CHECK(stats.commit_failures == 0);
}

TEST_CASE("events from many threads are all committed in order, in batches, chained",
          "[audit]") {
  TempDir dir;
  const std::string path = dir.file("audit.db");
  constexpr int kThreads = 8;
  constexpr int kEvents = 5000;
  auto store = AuditStore::open(options_for(path));
  std::atomic<int> ok{0}, failed{0};
  {
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kEvents; ++i) {
          Event e = decision_event("t" + std::to_string(t) + "-" + std::to_string(i));
          e.port = i;
          e.bytes_up = t;
          store->record(std::move(e), [&](bool committed) { ++(committed ? ok : failed); });
        }
      });
    }
    for (auto& thread : threads) thread.join();
  }
  store->flush();
  CHECK(ok == kThreads * kEvents);
  CHECK(failed == 0);
  const auto stats = store->stats();
  CHECK(stats.committed_events == kThreads * kEvents);
  CHECK(stats.commits < stats.committed_events);  // group commit happened
  CHECK(stats.queue_depth == 0);

  DbPtr db = open_reader(path);
  const auto rows = read_rows(db.get());
  REQUIRE(rows.size() == kThreads * kEvents);
  CHECK(first_broken_link(rows) == 0);
  // ids increase with no gaps, and each thread's events keep their order.
  std::map<std::int64_t, std::int64_t> last_port;  // thread -> port of its previous row
  bool contiguous = true, ordered = true;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    contiguous &= rows[i].id == static_cast<std::int64_t>(i) + 1;
    const auto thread = std::get<std::int64_t>(rows[i].content[18]);  // bytes_up
    const auto port = std::get<std::int64_t>(rows[i].content[10]);
    auto [it, fresh] = last_port.try_emplace(thread, -1);
    ordered &= port == it->second + 1;
    it->second = port;
  }
  CHECK(contiguous);
  CHECK(ordered);
}

TEST_CASE("the requests view joins each decision with its close", "[audit]") {
  TempDir dir;
  const std::string path = dir.file("audit.db");
  auto store = AuditStore::open(options_for(path));
  Event d1 = decision_event("r1");
  d1.upstream_addr.clear();  // not connected yet when decided
  store->record(d1);
  store->record(decision_event("r2"));  // still in flight
  store->record(close_event("r1"));
  store->flush();

  DbPtr db = open_reader(path);
  CHECK(query_int(db.get(), "SELECT count(*) FROM requests") == 2);
  CHECK(query_text(db.get(),
                   "SELECT decision || ' ' || rule || ' ' || status || ' ' || bytes_up || ' ' || "
                   "bytes_down || ' ' || duration_ms || ' ' || upstream_addr || ' ' || ts || ' ' "
                   "|| closed_ts FROM requests WHERE request_id = 'r1'") ==
        "allow policy.yaml:3 200 517 123456789012 877 140.82.112.3:443 "
        "2026-11-28T19:54:58.123456Z 2026-11-28T19:54:59.000001Z");
  CHECK(query_text(db.get(), "SELECT status FROM requests WHERE request_id = 'r2'") == "<NULL>");
  CHECK(query_text(db.get(), "SELECT upstream_addr FROM requests WHERE request_id = 'r2'") ==
        "140.82.112.3:443");
}

TEST_CASE("flush returns once every event queued before it is committed", "[audit]") {
  TempDir dir;
  const std::string path = dir.file("audit.db");
  auto store = AuditStore::open(options_for(path));
  for (int i = 0; i < 1000; ++i) store->record(close_event("r" + std::to_string(i)));
  store->flush();
  CHECK(store->stats().committed_events == 1000);
  CHECK(store->stats().queue_depth == 0);
  DbPtr db = open_reader(path);
  CHECK(query_int(db.get(), "SELECT count(*) FROM events") == 1000);
  store->flush();  // nothing queued: returns at once
}

TEST_CASE("the destructor commits what is still queued", "[audit]") {
  TempDir dir;
  const std::string path = dir.file("audit.db");
  {
    auto store = AuditStore::open(options_for(path));
    for (int i = 0; i < 500; ++i) store->record(close_event("r" + std::to_string(i)));
  }
  DbPtr db = open_reader(path);
  CHECK(query_int(db.get(), "SELECT count(*) FROM events") == 500);
}

TEST_CASE("a reopened store continues the hash chain", "[audit]") {
  TempDir dir;
  const std::string path = dir.file("audit.db");
  for (int round = 0; round < 3; ++round) {
    auto store = AuditStore::open(options_for(path));
    store->record(decision_event("a" + std::to_string(round)));
    store->record(close_event("a" + std::to_string(round)));
  }
  DbPtr db = open_reader(path);
  const auto rows = read_rows(db.get());
  CHECK(rows.size() == 6);
  CHECK(first_broken_link(rows) == 0);
}

TEST_CASE("the stream gets one JSON line per committed event", "[audit]") {
  TempDir dir;
  const std::string path = dir.file("audit.db");
  std::mutex mu;
  std::vector<std::string> lines;
  StoreOptions options = options_for(path);
  options.stream = [&](const std::string& line) {
    std::lock_guard lock(mu);
    lines.push_back(line);
  };
  auto store = AuditStore::open(options);
  store->record(decision_event("s1"));
  store->record(close_event("s1"));
  store->flush();

  DbPtr db = open_reader(path);
  const auto rows = read_rows(db.get());
  std::lock_guard lock(mu);
  REQUIRE(lines.size() == 2);
  REQUIRE(rows.size() == 2);
  for (std::size_t i = 0; i < 2; ++i) {
    const auto obj = boost::json::parse(lines[i]).as_object();
    CHECK(obj.at("id").as_int64() == rows[i].id);
    CHECK(obj.at("hash").as_string() == rows[i].hash);
    CHECK(obj.at("prev_hash").as_string() == rows[i].prev_hash);
    CHECK(obj.at("request_id").as_string() == "s1");
  }
  const auto close = boost::json::parse(lines[1]).as_object();
  CHECK(close.at("event").as_string() == "close");
  CHECK(close.at("bytes_down").as_int64() == 123456789012);
  CHECK(close.at("decision").is_null());
}

TEST_CASE("a full queue refuses events at once with callback(false)", "[audit]") {
  TempDir dir;
  StoreOptions options = options_for(dir.file("audit.db"));
  options.queue_limit = 4;
  auto store = AuditStore::open(options);

  // Hold the writer inside the first event's callback so the queue fills.
  std::promise<void> writer_inside, release;
  auto released = release.get_future().share();
  store->record(close_event("blocker"), [&, released](bool) {
    writer_inside.set_value();
    released.wait();
  });
  writer_inside.get_future().wait();
  std::atomic<int> ok{0};
  for (int i = 0; i < 4; ++i) {
    store->record(close_event("q" + std::to_string(i)), [&](bool c) { ok += c; });
  }
  CHECK(store->stats().queue_depth == 4);

  std::optional<bool> refused;
  std::thread::id refused_on;
  store->record(close_event("over"), [&](bool c) {
    refused = c;
    refused_on = std::this_thread::get_id();
  });
  store->record(close_event("over-no-callback"));
  REQUIRE(refused.has_value());  // ran before record() returned
  CHECK(*refused == false);
  CHECK(refused_on == std::this_thread::get_id());
  CHECK(store->stats().dropped_events == 2);

  release.set_value();
  store->flush();
  CHECK(ok == 4);
  CHECK(store->stats().committed_events == 5);
}

TEST_CASE("a failed commit reports false and unhealthy, keeps the batch, and heals when it commits",
          "[audit]") {
  TempDir dir;
  const std::string path = dir.file("audit.db");
  StoreOptions options = options_for(path);
  options.busy_timeout = 20ms;
  auto store = AuditStore::open(options);
  store->record(decision_event("before"));
  store->flush();

  DbPtr other = open_reader(path);
  run_sql(other.get(), "BEGIN IMMEDIATE");  // holds the write lock: the writer's BEGIN fails
  std::promise<bool> first;
  store->record(decision_event("blocked"), [&](bool c) { first.set_value(c); });
  CHECK(first.get_future().get() == false);
  CHECK_FALSE(store->healthy());
  CHECK(store->stats().commit_failures >= 1);
  CHECK(store->record_durable(decision_event("journaled")));  // the journal still takes it

  run_sql(other.get(), "ROLLBACK");
  for (int i = 0; i < 100 && !store->healthy(); ++i) std::this_thread::sleep_for(20ms);  // the retry commits
  REQUIRE(store->healthy());
  std::promise<bool> second;
  store->record(decision_event("after"), [&](bool c) { second.set_value(c); });
  CHECK(second.get_future().get() == true);

  const auto rows = read_rows(other.get());
  REQUIRE(rows.size() == 4);  // what was journaled while commits failed is kept and committed, in order
  CHECK(std::get<std::string>(rows[1].content[1]) == "blocked");
  CHECK(std::get<std::string>(rows[2].content[1]) == "journaled");
  CHECK(std::get<std::string>(rows[3].content[1]) == "after");
  CHECK(first_broken_link(rows) == 0);
}

TEST_CASE("open refuses a zero batch or queue size", "[audit]") {
  TempDir dir;
  StoreOptions options = options_for(dir.file("audit.db"));
  options.max_batch = 0;
  CHECK_THROWS_AS(AuditStore::open(options), AuditError);
}

TEST_CASE("Sync::Full opens and commits like Normal", "[audit]") {
  TempDir dir;
  StoreOptions options = options_for(dir.file("audit.db"));
  options.sync = StoreOptions::Sync::Full;
  options.max_batch = 1;
  auto store = AuditStore::open(options);
  for (int i = 0; i < 3; ++i) store->record(close_event("f" + std::to_string(i)));
  store->flush();
  CHECK(store->stats().commits == 3);
}

TEST_CASE("journal records round-trip, and decoding stops at a torn or corrupt record", "[audit]") {
  const std::vector<Value> a = {std::string("2026-12-04T00:00:00.000000Z"), std::string("id-a"), std::monostate{},
                                std::int64_t{-1}, std::int64_t{1} << 40, std::string("")};
  const std::vector<Value> b = {std::string("x\0y", 3), std::string(70000, 'z')};
  const std::string both = encode_record(a) + encode_record(b);
  const std::size_t first = encode_record(a).size();
  struct Case {
    const char* name;
    std::string bytes;
    std::size_t records;
    std::size_t good_bytes;
  };
  std::string flipped = both;
  flipped[first + 20] ^= 0x40;  // a byte of b's payload
  std::string bad_length = both;
  bad_length[first] = '\xff';  // b claims more bytes than there are
  auto c = GENERATE_COPY(values<Case>({
      {"both whole", both, 2, both.size()},
      {"nothing", "", 0, 0},
      {"cut inside the second header", both.substr(0, first + 5), 1, first},
      {"cut inside the second payload", both.substr(0, both.size() - 1), 1, first},
      {"cut inside the first", both.substr(0, first - 1), 0, 0},
      {"a flipped byte in the second", flipped, 1, first},
      {"a length past the end", bad_length, 1, first},
      {"garbage after the records", both + "\x01\x00", 2, both.size()},
  }));
  INFO(c.name);
  std::size_t good = 12345;
  const auto records = decode_records(c.bytes, &good);
  REQUIRE(records.size() == c.records);
  CHECK(good == c.good_bytes);
  if (c.records >= 1) CHECK(records[0] == a);
  if (c.records >= 2) CHECK(records[1] == b);
}

TEST_CASE("every event is journaled before it is queued, and a clean stop leaves no journal", "[audit]") {
  TempDir dir;
  const std::string path = dir.file("audit.db");
  {
    auto store = AuditStore::open(options_for(path));
    CHECK(store->record_durable(decision_event("j1")));
    store->record(close_event("j1"));
    const auto files = journal_files(journal_directory(path));
    REQUIRE(files.size() == 1);
    std::ifstream in(files[0], std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto records = decode_records(bytes);
    REQUIRE(records.size() == 2);
    CHECK(records[0] == row_values(decision_event("j1")));
  }
  CHECK(journal_files(journal_directory(path)).empty());
  CHECK(read_rows(open_reader(path).get()).size() == 2);
}

TEST_CASE("a start ingests what a crashed run's journals hold and the database does not, once", "[audit]") {
  TempDir dir;
  const std::string path = dir.file("audit.db");
  {
    auto store = AuditStore::open(options_for(path));
    store->record(decision_event("stored"));
    store->flush();
  }
  // What a run killed before its writer committed leaves: journal files
  // with some events already stored, some not, and a torn tail.
  const std::string journals = journal_directory(path);
  {
    std::ofstream out(journals + "/1-t1-0.journal", std::ios::binary);
    out << encode_record(row_values(decision_event("stored"))) << encode_record(row_values(decision_event("lost")))
        << encode_record(row_values(close_event("lost")));
    const std::string torn = encode_record(row_values(close_event("torn")));
    out << torn.substr(0, torn.size() / 2);
  }
  {
    std::ofstream out(journals + "/1-t2-0.journal", std::ios::binary);
    out << encode_record(row_values(decision_event("other-thread")));
  }
  {
    auto store = AuditStore::open(options_for(path));
    CHECK(journal_files(journals).empty());  // ingested, then removed
  }
  {
    auto store = AuditStore::open(options_for(path));  // a second start finds nothing to ingest
  }
  const auto rows = read_rows(open_reader(path).get());
  std::multiset<std::string> ids;
  for (const auto& row : rows) ids.insert(std::get<std::string>(row.content[1]) + "/" +
                                          std::get<std::string>(row.content[2]));
  CHECK(ids == std::multiset<std::string>{"stored/decision", "lost/decision", "lost/close",
                                          "other-thread/decision"});
  CHECK(first_broken_link(rows) == 0);
}

TEST_CASE("a second store on the same database is refused", "[audit]") {
  TempDir dir;
  const std::string path = dir.file("audit.db");
  auto store = AuditStore::open(options_for(path));
  CHECK_THROWS_WITH(AuditStore::open(options_for(path)), Catch::Contains("another egress serve"));
}

TEST_CASE("journal files are reported as left only when no store holds them", "[audit]") {
  TempDir dir;
  const std::string path = dir.file("audit.db");
  CHECK(journal_files_left(path).empty());  // no store ever ran
  {
    auto store = AuditStore::open(options_for(path));
    CHECK(store->record_durable(decision_event("live")));
    CHECK(journal_files_left(path).empty());  // live: the store holds the lock
    // What a kill leaves: a segment the store does not know of.
    std::ofstream(journal_directory(path) + "/0-t9-0.journal", std::ios::binary)
        << encode_record(row_values(decision_event("left")));
    CHECK(journal_files_left(path).empty());
  }
  const auto left = journal_files_left(path);
  REQUIRE(left.size() == 1);  // the store's own segments went at its clean stop, the stray one stays
  CHECK(left[0].find("0-t9-0.journal") != std::string::npos);
  auto again = AuditStore::open(options_for(path));  // ingests it
  CHECK(journal_files_left(path).empty());
}

TEST_CASE("below the free-space reserve the journal refuses events and the store is unhealthy", "[audit]") {
  TempDir dir;
  StoreOptions options = options_for(dir.file("audit.db"));
  options.min_free_bytes = std::uint64_t{1} << 62;  // more than any disk has
  auto store = AuditStore::open(options);
  CHECK_FALSE(store->record_durable(decision_event("no-room")));
  CHECK_FALSE(store->healthy());
  CHECK(store->stats().dropped_events == 1);
}
