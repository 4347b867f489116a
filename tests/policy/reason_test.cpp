// Reason codes: every code round-trips and has an explanation.
#include <catch2/catch.hpp>

#include "egress/policy/reason.h"

using namespace egress::policy;

TEST_CASE("Every reason code parses back to its reason and has a one-sentence explanation", "[policy]") {
#define EGRESS_CHECK_REASON(name, code)                          \
  SECTION(code) {                                                \
    CHECK(to_string(Reason::name) == code);                      \
    CHECK(reason_from_string(code) == Reason::name);             \
    auto text = explain(Reason::name);                           \
    CHECK(text.size() > 20);                                     \
    CHECK(text.back() == '.');                                   \
  }
  EGRESS_REASONS(EGRESS_CHECK_REASON)
#undef EGRESS_CHECK_REASON
}

TEST_CASE("An unknown reason code does not parse", "[policy]") {
  CHECK_FALSE(reason_from_string("allow"));
  CHECK_FALSE(reason_from_string(""));
  CHECK_FALSE(reason_from_string("Deny-Rule"));
}
