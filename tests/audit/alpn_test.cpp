// The alpn column (schema/003_alpn.sql): in the hash chain only when not
// NULL, so rows and databases from before it verify unchanged; written,
// queried and verified on new databases; and a database still at schema v2
// is read with alpn as NULL, then migrated in place without breaking its
// chain.
#include <catch2/catch.hpp>

#include "audit/chain.h"
#include "audit/migrations.h"
#include "audit/row.h"
#include "egress/audit/log.h"
#include "egress/audit/maintenance.h"
#include "fakes.h"

using namespace egress::audit;
using namespace egress::audit::testing;
using namespace std::chrono_literals;

namespace {

Value column(const Rows& rows, std::size_t row, const std::string& name) {
  const auto it = std::find(rows.columns.begin(), rows.columns.end(), name);
  REQUIRE(it != rows.columns.end());
  return rows.rows.at(row).at(static_cast<std::size_t>(it - rows.columns.begin()));
}

/// Turns a fresh database back into what schema v2 wrote: no alpn column
/// (nor the later injected and scrubbed), the 001 `requests` view,
/// user_version 2.
void downgrade_to_v2(const std::string& path) {
  const std::string v1 = std::string(migrations().at(0).sql);
  const auto start = v1.find("CREATE VIEW requests");
  const auto end = v1.find(';', v1.find("WHERE d.event = 'decision'"));
  REQUIRE(start != std::string::npos);
  DbPtr db = open_reader(path);
  run_sql(db.get(), "DROP TABLE IF EXISTS replication; DROP VIEW requests; ALTER TABLE events DROP COLUMN alpn; ALTER TABLE events DROP COLUMN injected; "
                        "ALTER TABLE events DROP COLUMN scrubbed; " + v1.substr(start, end - start + 1) +
                        " PRAGMA user_version = 2;");
}

}  // namespace

TEST_CASE("A NULL alpn leaves a row's canonical form as it was before the column existed", "[audit]") {
  Event e = decision_event("r1");
  auto values = row_values(e);
  REQUIRE(values.size() == kContentColumns.size());
  const std::vector<Value> before(values.begin(), values.begin() + kChainBaseColumns);
  CHECK(canonical_content(values) == canonical_content(before));

  e.alpn = "h2,http/1.1";
  values = row_values(e);
  CHECK(canonical_content(values) == canonical_content(before) + "alpn=T11:h2,http/1.1;");
  CHECK(chain_hash(kGenesisHash, values) != chain_hash(kGenesisHash, before));
}

TEST_CASE("alpn is written, queried from events and requests, and verified", "[audit]") {
  TempDir dir;
  const auto path = dir.file("audit.db");
  auto pair = request_pair("r1", 1, "github.com", "allow", 200);
  pair[0].alpn = "h2,http/1.1";
  write_events(path, pair);
  CHECK(verify(path).ok);
  LogSet log({path});
  const auto requests = log.select({}, Source::Requests);
  REQUIRE(requests.rows.size() == 1);
  CHECK(column(requests, 0, "alpn") == Value(std::string("h2,http/1.1")));
  const auto events = log.select({}, Source::Events);
  REQUIRE(events.rows.size() == 2);
  CHECK(column(events, 0, "alpn") == Value(std::string("h2,http/1.1")));
  CHECK(std::holds_alternative<std::monostate>(column(events, 1, "alpn")));

  // Editing the alpn breaks the chain at that row.
  DbPtr db = open_reader(path);
  run_sql(db.get(), "DROP TRIGGER events_no_update; UPDATE events SET alpn = 'http/1.1' WHERE id = 1");
  const auto report = verify(path);
  CHECK_FALSE(report.ok);
  CHECK(report.bad_id == 1);
}

TEST_CASE("A schema v2 database is read with alpn NULL, then migrated with its chain intact", "[audit]") {
  TempDir dir;
  const auto path = dir.file("audit.db");
  write_events(path, request_pair("old", 1, "github.com", "allow", 200));
  downgrade_to_v2(path);
  {
    CHECK(verify(path).ok);
    LogSet log({path});
    const auto requests = log.select({}, Source::Requests);
    REQUIRE(requests.rows.size() == 1);
    CHECK(std::holds_alternative<std::monostate>(column(requests, 0, "alpn")));
    CHECK(log.select({}, Source::Events).rows.size() == 2);
  }
  auto pair = request_pair("new", 2, "github.com", "allow", 200);
  pair[0].alpn = "h2";
  write_events(path, pair);  // the writer migrates v2 → v3 first
  const auto report = verify(path);
  CHECK(report.ok);
  CHECK(report.rows == 4);
  DbPtr db = open_reader(path);
  CHECK(query_int(db.get(), "PRAGMA user_version") == static_cast<std::int64_t>(migrations().size()));
  CHECK(query_text(db.get(), "SELECT alpn FROM requests WHERE request_id = 'new'") == "h2");
}
