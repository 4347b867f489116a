// Event helpers: the text forms of an event's type and timestamp, as stored
// in the `events` table and streamed as JSON lines.
#include "egress/audit/event.h"

#include <cstdio>
#include <ctime>

namespace egress::audit {

std::string to_string(EventType type) {
  switch (type) {
    case EventType::Decision: return "decision";
    case EventType::Close: return "close";
  }
  return "unknown";  // not reachable for a valid enumerator
}

std::string format_timestamp(std::chrono::system_clock::time_point ts) {
  using namespace std::chrono;
  // floor, not duration_cast: a time before 1970 must not round towards it.
  const auto us = floor<microseconds>(ts.time_since_epoch());
  const auto secs = floor<seconds>(us);
  const auto frac = (us - secs).count();  // 0..999999
  const std::time_t t = static_cast<std::time_t>(secs.count());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];  // roomy enough that -Wformat-truncation can prove it
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<long long>(frac));
  return buf;
}

}  // namespace egress::audit
