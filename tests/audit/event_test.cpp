#include "egress/audit/event.h"

#include <catch2/catch.hpp>

using namespace egress::audit;
using std::chrono::microseconds;
using std::chrono::system_clock;

TEST_CASE("format_timestamp writes UTC ISO-8601 with microseconds", "[audit]") {
  CHECK(format_timestamp(system_clock::time_point{}) == "1970-01-01T00:00:00.000000Z");
  CHECK(format_timestamp(system_clock::time_point(microseconds(1795895698123456))) ==
        "2026-11-28T19:54:58.123456Z");
  CHECK(format_timestamp(system_clock::time_point(microseconds(1))) ==
        "1970-01-01T00:00:00.000001Z");
}

TEST_CASE("format_timestamp truncates below a microsecond and floors before 1970", "[audit]") {
  const auto t = system_clock::time_point(microseconds(1795895698123456)) +
                 std::chrono::duration_cast<system_clock::duration>(std::chrono::nanoseconds(999));
  CHECK(format_timestamp(t) == "2026-11-28T19:54:58.123456Z");
  CHECK(format_timestamp(system_clock::time_point(microseconds(-1))) ==
        "1969-12-31T23:59:59.999999Z");
}

TEST_CASE("to_string names the event types as the schema does", "[audit]") {
  CHECK(to_string(EventType::Decision) == "decision");
  CHECK(to_string(EventType::Close) == "close");
}
