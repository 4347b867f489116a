// Reason codes: every code round-trips and has an explanation.
#include <catch2/catch.hpp>

#include "egress/policy/reason.h"

using namespace egress::policy;

TEST_CASE("Every reason code parses back to its reason and has a one-sentence explanation", "[policy]") {
#define EGRESS_CHECK_REASON(name, code, status)                          \
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

TEST_CASE("Each reason's status is the one the docs' reason table shows", "[policy]") {
  struct Case {
    Reason reason;
    int status;
  };
  const Case cases[] = {
      {Reason::AllowRule, 0},         {Reason::DenyRule, 403},         {Reason::PathNotAllowed, 403},
      {Reason::SniMismatch, 0},       {Reason::UnknownToken, 407},     {Reason::HostMismatch, 421},
      {Reason::HeaderTooLarge, 431},  {Reason::TargetTooLong, 414},    {Reason::BodyTooLarge, 413},
      {Reason::UnsupportedVersion, 505}, {Reason::ClientTimeout, 0},   {Reason::DnsTimeout, 504},
      {Reason::DnsNxdomain, 502},     {Reason::UpstreamTimeout, 504},  {Reason::AuditUnavailable, 503},
  };
  for (const auto& c : cases) {
    INFO(to_string(c.reason));
    CHECK(status_for(c.reason) == c.status);
  }
}
