#include "audit/row.h"

#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include "audit/chain.h"
#include "fakes.h"

using namespace egress::audit;
using namespace egress::audit::testing;

TEST_CASE("row_values stores empty strings and empty optionals as NULL", "[audit]") {
  Event e;
  e.request_id = "r1";
  const auto values = row_values(e);
  REQUIRE(values.size() == kContentColumns.size());
  CHECK(std::get<std::string>(values[0]) == "1970-01-01T00:00:00.000000Z");
  CHECK(std::get<std::string>(values[1]) == "r1");
  CHECK(std::get<std::string>(values[2]) == "decision");
  for (std::size_t i = 3; i < values.size(); ++i) {
    INFO(kContentColumns[i]);
    CHECK(std::holds_alternative<std::monostate>(values[i]));
  }
}

TEST_CASE("row_values puts each field under its column", "[audit]") {
  const auto values = row_values(close_event("r2"));
  auto at = [&](std::string_view column) {
    for (std::size_t i = 0; i < kContentColumns.size(); ++i) {
      if (kContentColumns[i] == column) return values[i];
    }
    FAIL("no column " << column);
    return Value{};
  };
  CHECK(std::get<std::string>(at("event")) == "close");
  CHECK(std::get<std::int64_t>(at("port")) == 443);
  CHECK(std::get<std::int64_t>(at("status")) == 200);
  CHECK(std::get<std::int64_t>(at("bytes_up")) == 517);
  CHECK(std::get<std::int64_t>(at("bytes_down")) == 123456789012);
  CHECK(std::get<std::int64_t>(at("duration_ms")) == 877);
  CHECK(std::get<std::string>(at("upstream_addr")) == "140.82.112.3:443");
  CHECK(std::holds_alternative<std::monostate>(at("decision")));
}

TEST_CASE("to_json_line writes every column, NULL as null, on one line", "[audit]") {
  const std::string hash(64, 'a');
  const std::string line =
      to_json_line(decision_event("r\"1\n"), RowMeta{42, kGenesisHash, hash});
  CHECK(line.find('\n') == std::string::npos);
  const auto obj = boost::json::parse(line).as_object();
  CHECK(obj.size() == kContentColumns.size() + 3);
  CHECK(obj.at("id").as_int64() == 42);
  CHECK(obj.at("request_id").as_string() == "r\"1\n");
  CHECK(obj.at("event").as_string() == "decision");
  CHECK(obj.at("ts").as_string() == "2026-11-28T19:54:58.123456Z");
  CHECK(obj.at("port").as_int64() == 443);
  CHECK(obj.at("decision").as_string() == "allow");
  CHECK(obj.at("status").is_null());
  CHECK(obj.at("method").is_null());
  CHECK(obj.at("prev_hash").as_string() == std::string(kGenesisHash));
  CHECK(obj.at("hash").as_string() == hash);
}

TEST_CASE("to_json_line replaces invalid UTF-8 so the stream stays valid JSON", "[audit]") {
  Event e = decision_event("r1");
  e.host = "a\xff" "b\xc3(" "\xe2\x82\xac";  // bad byte, truncated sequence, then a valid euro sign
  const auto obj = boost::json::parse(to_json_line(e, RowMeta{1, kGenesisHash, kGenesisHash}))
                       .as_object();
  CHECK(obj.at("host").as_string() == "a\xEF\xBF\xBD" "b\xEF\xBF\xBD(\xe2\x82\xac");
}
