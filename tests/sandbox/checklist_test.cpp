// The probe's output parsed and combined into checklist lines: a check that
// is missing fails its line and says why (exit code, the probe's last words).
#include <catch2/catch.hpp>

#include "sandbox/checklist.h"

using namespace egress::sandbox;

TEST_CASE("combine: verdicts and details of probe checks", "[sandbox]") {
  const auto probe = parse_probe_output(
      "CHECK|dns|PASS|getaddrinfo -> EAI_NONAME\n"
      "some chatter\n"
      "CHECK|caps|FAIL|CapEff=1\n"
      "Traceback (most recent call last):\n"
      "TimeoutExpired: Command 'nslookup' timed out after 20 seconds\n");
  struct Row {
    std::initializer_list<const char*> ids;
    const char* verdict;
    const char* detail;
  };
  const Row rows[] = {
      {{"dns"}, "PASS", "getaddrinfo -> EAI_NONAME"},
      {{"caps"}, "FAIL", "CapEff=1"},
      {{"dns", "caps"}, "FAIL", "getaddrinfo -> EAI_NONAME; CapEff=1"},
      {{"kernel"}, "FAIL",
       "kernel: no result (probe exit 1, its last words: TimeoutExpired: Command 'nslookup' timed out after 20 "
       "seconds)"},
  };
  for (const auto& row : rows) {
    const Line line = combine(probe, row.ids, 1);
    CHECK(line.verdict == row.verdict);
    CHECK(line.detail == row.detail);
  }
}

TEST_CASE("combine: a missing check without other output names only the exit code", "[sandbox]") {
  const Line line = combine(parse_probe_output("CHECK|dns|PASS|ok\n"), {"pid1"}, 137);
  CHECK(line.verdict == "FAIL");
  CHECK(line.detail == "pid1: no result (probe exit 137)");
}
