// The read side: time parsing, filters to parameterised SQL, several files
// read as one log, following new commits, stats and output formats.
#include <catch2/catch.hpp>

#include <sstream>

#include "egress/audit/log.h"
#include "egress/audit/store.h"
#include "fakes.h"

using namespace egress::audit;
using namespace egress::audit::testing;
using Catch::Matchers::Contains;

namespace {

const auto kNow = sample_time(24 * 60);  // 2026-11-29T00:00:00Z

std::string text(const Value& v) {
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  if (const auto* i = std::get_if<std::int64_t>(&v)) return std::to_string(*i);
  return "<NULL>";
}

std::vector<std::string> column(const Rows& rows, const std::string& name) {
  std::vector<std::string> out;
  const auto it = std::find(rows.columns.begin(), rows.columns.end(), name);
  REQUIRE(it != rows.columns.end());
  const auto c = static_cast<std::size_t>(it - rows.columns.begin());
  for (const auto& r : rows.rows) out.push_back(text(r[c]));
  return out;
}

// Three requests in one file: github allowed at 00:10, evil denied at
// 00:20, api.github allowed at 00:30.
std::string sample_db(const TempDir& dir, const std::string& name = "a.db", int offset = 0,
                      const std::string& prefix = "r") {
  const std::string path = dir.file(name);
  std::vector<Event> all;
  for (const auto& [id, minute, host, decision, status] :
       std::vector<std::tuple<std::string, int, std::string, std::string, int>>{
           {prefix + "1", 10 + offset, "github.com", "allow", 200},
           {prefix + "2", 20 + offset, "evil.test", "deny", 403},
           {prefix + "3", 30 + offset, "api.github.com", "allow", 200}}) {
    for (auto& e : request_pair(id, minute, host, decision, status)) all.push_back(e);
  }
  write_events(path, all);
  return path;
}

}  // namespace

TEST_CASE("parse_age reads seconds, minutes, hours, days and weeks", "[audit]") {
  CHECK(parse_age("30s") == std::chrono::seconds(30));
  CHECK(parse_age("15m") == std::chrono::seconds(900));
  CHECK(parse_age("2h") == std::chrono::seconds(7200));
  CHECK(parse_age("7d") == std::chrono::seconds(7 * 86400));
  CHECK(parse_age("2w") == std::chrono::seconds(14 * 86400));
  for (const char* bad : {"", "15", "m", "-5m", "5 m", "5y", "1.5h", "99999999999999d"}) {
    INFO(bad);
    CHECK_FALSE(parse_age(bad));
  }
}

TEST_CASE("parse_time turns ages and ISO-8601 into the stored ts form", "[audit]") {
  CHECK(parse_time("15m", kNow) == "2026-11-28T23:45:00.000000Z");
  CHECK(parse_time("7d", kNow) == "2026-11-22T00:00:00.000000Z");
  CHECK(parse_time("2026-11-27", kNow) == "2026-11-27T00:00:00.000000Z");
  CHECK(parse_time("2026-11-27T19:54", kNow) == "2026-11-27T19:54:00.000000Z");
  CHECK(parse_time("2026-11-27 19:54:58Z", kNow) == "2026-11-27T19:54:58.000000Z");
  CHECK(parse_time("2026-11-27T19:54:58.123456789Z", kNow) == "2026-11-27T19:54:58.123456Z");
  CHECK(parse_time("2026-11-27T19:54:58.5", kNow) == "2026-11-27T19:54:58.500000Z");
  CHECK(parse_time("2026-11-27T21:54:58+02:00", kNow) == "2026-11-27T19:54:58.000000Z");
  CHECK(parse_time("2026-11-27T14:54:58-0500", kNow) == "2026-11-27T19:54:58.000000Z");
  CHECK(parse_time("2026-11-28T01:00+03", kNow) == "2026-11-27T22:00:00.000000Z");
  for (const char* bad : {"yesterday", "2026-13-01", "2026-02-30", "2026-11-27T24:00",
                          "2026-11-27T19:54:58.Z", "2026-11-27T19", "2026-11-27Tx", "26-11-27",
                          "2026-11-27T19:54:58+2", "2026-11-27 junk", "0999-01-01", "9999-12-31"}) {
    INFO(bad);
    CHECK_FALSE(parse_time(bad, kNow));
  }
}

TEST_CASE("build_select binds every user value and never puts it in the SQL text", "[audit]") {
  Filter f;
  const std::string hostile = "x' OR '1'='1'; DROP TABLE events; --";
  f.role = hostile;
  f.client = hostile;
  f.host = hostile;
  f.reason = hostile;
  f.request_id = hostile;
  f.since = "2026-01-01T00:00:00.000000Z";
  f.limit = 5;
  const Sql sql = build_select(f, Source::Requests);
  CHECK(sql.text.find("DROP") == std::string::npos);
  CHECK(sql.text.find('\'') == std::string::npos);
  CHECK(sql.text.find("1=1") == std::string::npos);
  CHECK(std::count(sql.text.begin(), sql.text.end(), '?') ==
        static_cast<std::ptrdiff_t>(sql.params.size()));
  CHECK(std::find(sql.params.begin(), sql.params.end(), Value(std::string(hostile))) !=
        sql.params.end());
  CHECK(sql.params.back() == Value(std::int64_t{5}));
  CHECK_THAT(sql.text, Contains("FROM requests WHERE") && Contains("ORDER BY ts, decision_id") &&
                           Contains("LIMIT ?"));
}

TEST_CASE("build_select renders each host form and list", "[audit]") {
  auto where = [](Filter f) { return build_select(f, Source::Events); };
  Filter f;
  f.host = "GitHub.com";
  auto sql = where(f);
  CHECK_THAT(sql.text, Contains("host = ?"));
  CHECK(sql.params == std::vector<Value>{std::string("github.com")});
  f.host = ".github.com";
  sql = where(f);
  CHECK_THAT(sql.text, Contains("(host = ? OR host GLOB ?)"));
  CHECK(sql.params == std::vector<Value>{std::string("github.com"), std::string("*.github.com")});
  f.host = "*.git?ub.com";
  sql = where(f);
  CHECK_THAT(sql.text, Contains("host GLOB ?"));
  CHECK(sql.params == std::vector<Value>{std::string("*.git?ub.com")});
  f = {};
  f.decision = "deny,report";
  f.status = "403,503";
  sql = where(f);
  CHECK_THAT(sql.text, Contains("decision IN (?, ?)") && Contains("status IN (?, ?)"));
  CHECK(sql.params == std::vector<Value>{std::string("deny"), std::string("report"),
                                         std::int64_t{403}, std::int64_t{503}});
  f = {};
  f.client = "10.0.0.[5]";
  sql = where(f);
  CHECK(sql.params == std::vector<Value>{std::string("10.0.0.[5]"), std::string("10.0.0.[[]5]:*")});
}

TEST_CASE("build_select rejects bad filter values naming the flag", "[audit]") {
  Filter f;
  f.decision = "allowed";
  CHECK_THROWS_WITH(build_select(f, Source::Requests), Contains("--decision 'allowed'"));
  f = {};
  f.kind = "ftp";
  CHECK_THROWS_WITH(build_select(f, Source::Requests), Contains("--kind 'ftp'"));
  f = {};
  f.status = "2xx";
  CHECK_THROWS_WITH(build_select(f, Source::Requests), Contains("--status '2xx'"));
  f = {};
  f.host = ".";
  CHECK_THROWS_WITH(build_select(f, Source::Requests), Contains("--host"));
}

TEST_CASE("select filters requests by time, host form, decision and status", "[audit]") {
  TempDir dir;
  LogSet log({sample_db(dir)});
  Filter f;
  CHECK(column(log.select(f, Source::Requests), "request_id") ==
        std::vector<std::string>{"r1", "r2", "r3"});
  f.host = ".github.com";
  CHECK(column(log.select(f, Source::Requests), "request_id") == std::vector<std::string>{"r1", "r3"});
  f.host = "*.github.com";
  CHECK(column(log.select(f, Source::Requests), "request_id") == std::vector<std::string>{"r3"});
  f = {};
  f.since = "2026-11-28T00:15:00.000000Z";
  f.until = "2026-11-28T00:30:00.000000Z";
  auto rows = log.select(f, Source::Requests);
  CHECK(column(rows, "request_id") == std::vector<std::string>{"r2"});
  CHECK(column(rows, "status") == std::vector<std::string>{"403"});
  f = {};
  f.decision = "deny";
  CHECK(column(log.select(f, Source::Requests), "host") == std::vector<std::string>{"evil.test"});
  f = {};
  f.status = "200";
  f.limit = 1;
  CHECK(column(log.select(f, Source::Requests), "request_id") == std::vector<std::string>{"r1"});
  f = {};
  f.client = "172.20.1.5";
  CHECK(log.select(f, Source::Events).rows.size() == 6);
  f.client = "172.20.1.50";
  CHECK(log.select(f, Source::Events).rows.empty());
}

TEST_CASE("several files are read as one log ordered by time", "[audit]") {
  TempDir dir;
  const auto a = sample_db(dir, "a.db", 0, "a");
  const auto b = sample_db(dir, "b.db", 5, "b");
  LogSet log({a, b});
  auto rows = log.select({}, Source::Requests);
  CHECK(column(rows, "request_id") == std::vector<std::string>{"a1", "b1", "a2", "b2", "a3", "b3"});
  CHECK(rows.db == std::vector<std::size_t>{0, 1, 0, 1, 0, 1});
  Filter f;
  f.limit = 3;
  CHECK(column(log.select(f, Source::Requests), "request_id") == std::vector<std::string>{"a1", "b1", "a2"});
  // Streaming in small chunks gives the same order.
  std::vector<std::string> streamed;
  log.scan({}, Source::Events, [&](const Rows& chunk) {
    for (auto& id : column(chunk, "request_id")) streamed.push_back(id);
  }, 2);
  CHECK(streamed == std::vector<std::string>{"a1", "a1", "b1", "b1", "a2", "a2", "b2", "b2", "a3",
                                             "a3", "b3", "b3"});
}

TEST_CASE("newest and follow see exactly the rows committed after the cursor", "[audit]") {
  TempDir dir;
  const auto path = sample_db(dir);
  LogSet log({path});
  std::vector<std::int64_t> cursor;
  auto rows = log.newest({}, 2, cursor);
  CHECK(column(rows, "id") == std::vector<std::string>{"5", "6"});
  CHECK(cursor == std::vector<std::int64_t>{6});
  CHECK(log.follow({}, cursor).rows.empty());
  write_events(path, request_pair("r4", 40, "github.com", "allow", 200));
  Filter deny_only;
  deny_only.decision = "deny";
  auto cursor2 = cursor;
  CHECK(log.follow(deny_only, cursor2).rows.empty());
  CHECK(cursor2 == std::vector<std::int64_t>{8});  // moved past rows the filter dropped
  rows = log.follow({}, cursor);
  CHECK(column(rows, "request_id") == std::vector<std::string>{"r4", "r4"});
  CHECK(column(rows, "event") == std::vector<std::string>{"decision", "close"});
}

TEST_CASE("stats sums each section over every file", "[audit]") {
  TempDir dir;
  LogSet log({sample_db(dir, "a.db", 0, "a"), sample_db(dir, "b.db", 5, "b")});
  const auto sections = log.stats({}, 1);
  REQUIRE(sections.size() == 6);
  CHECK(sections[0].first == "requests by decision");
  CHECK(column(sections[0].second, "decision") == std::vector<std::string>{"allow", "deny"});
  CHECK(column(sections[0].second, "requests") == std::vector<std::string>{"4", "2"});
  CHECK(column(sections[1].second, "host") == std::vector<std::string>{"api.github.com"});  // top 1, tie by key
  CHECK(column(sections[2].second, "host") == std::vector<std::string>{"evil.test"});
  CHECK(column(sections[3].second, "reason") == std::vector<std::string>{"not-allowed"});
  CHECK(column(sections[3].second, "role") == std::vector<std::string>{"comfyui"});
  CHECK(column(sections[4].second, "bytes_down") == std::vector<std::string>{"246913578024"});
  CHECK(column(sections[5].second, "client") == std::vector<std::string>{"172.20.1.5"});
  CHECK(column(sections[5].second, "requests") == std::vector<std::string>{"6"});
  CHECK(column(sections[5].second, "denied") == std::vector<std::string>{"2"});
}

TEST_CASE("write_rows prints an aligned table, JSON lines and quoted CSV", "[audit]") {
  Rows rows;
  rows.columns = {"host", "port", "error"};
  rows.rows = {{std::string("a.test"), std::int64_t{443}, std::monostate{}},
               {std::string("longer.example"), std::monostate{}, std::string("said \"no\", twice\n")}};
  rows.db = {0, 1};
  std::ostringstream table, json, csv;
  write_rows(table, Format::Table, rows, {});
  CHECK(table.str() ==
        "host            port  error\n"
        "a.test          443   -\n"
        "longer.example  -     said \"no\", twice\\x0a\n");
  write_rows(json, Format::Json, rows, {"x.db", "y.db"});
  CHECK(json.str() ==
        "{\"db\":\"x.db\",\"host\":\"a.test\",\"port\":443,\"error\":null}\n"
        "{\"db\":\"y.db\",\"host\":\"longer.example\",\"port\":null,\"error\":\"said \\\"no\\\", twice\\n\"}\n");
  write_rows(csv, Format::Csv, rows, {});
  CHECK(csv.str() == "host,port,error\r\na.test,443,\r\nlonger.example,,\"said \"\"no\"\", twice\n\"\r\n");
}
