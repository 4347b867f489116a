// --since / --until / --older-than: relative ages and ISO-8601 times, turned
// into the fixed-width UTC text the `ts` column stores, so every time filter
// is a plain text comparison that can use the ts indexes.
#include <charconv>
#include <cstdio>

#include "egress/audit/event.h"
#include "egress/audit/log.h"

namespace egress::audit {
namespace {

using namespace std::chrono;

// Reads exactly `width` digits at `pos`; advances pos.
std::optional<int> digits(std::string_view text, std::size_t& pos, std::size_t width) {
  if (pos + width > text.size()) return std::nullopt;
  int value = 0;
  for (std::size_t i = 0; i < width; ++i) {
    const char c = text[pos + i];
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
  }
  pos += width;
  return value;
}

bool eat(std::string_view text, std::size_t& pos, char c) {
  if (pos < text.size() && text[pos] == c) {
    ++pos;
    return true;
  }
  return false;
}

// "Z", "+HH:MM", "+HHMM", "-HH" → offset east of UTC; absent → 0 (UTC).
std::optional<minutes> zone(std::string_view text, std::size_t& pos) {
  if (pos == text.size() || eat(text, pos, 'Z') || eat(text, pos, 'z')) return minutes(0);
  const char sign = text[pos];
  if (sign != '+' && sign != '-') return std::nullopt;
  ++pos;
  const auto h = digits(text, pos, 2);
  if (!h || *h > 23) return std::nullopt;
  int m = 0;
  if (pos < text.size()) {
    eat(text, pos, ':');
    const auto mm = digits(text, pos, 2);
    if (!mm || *mm > 59) return std::nullopt;
    m = *mm;
  }
  const minutes offset(*h * 60 + m);
  return sign == '+' ? offset : -offset;
}

std::optional<system_clock::time_point> iso8601(std::string_view text) {
  std::size_t pos = 0;
  const auto y = digits(text, pos, 4);
  // system_clock counts nanoseconds in 64 bits (about 1678..2262), and ts
  // never predates 1970: refuse years that would overflow instead of wrapping.
  if (!y || *y < 1970 || *y > 2200 || !eat(text, pos, '-')) return std::nullopt;
  const auto mo = digits(text, pos, 2);
  if (!mo || !eat(text, pos, '-')) return std::nullopt;
  const auto d = digits(text, pos, 2);
  if (!d) return std::nullopt;
  const year_month_day date{year(*y), month(static_cast<unsigned>(*mo)),
                            day(static_cast<unsigned>(*d))};
  if (!date.ok()) return std::nullopt;
  int hh = 0, mi = 0, ss = 0;
  microseconds frac(0);
  if (pos < text.size() && (text[pos] == 'T' || text[pos] == 't' || text[pos] == ' ')) {
    ++pos;
    const auto h = digits(text, pos, 2);
    if (!h || !eat(text, pos, ':')) return std::nullopt;
    const auto m = digits(text, pos, 2);
    if (!m) return std::nullopt;
    hh = *h, mi = *m;
    if (eat(text, pos, ':')) {
      const auto s = digits(text, pos, 2);
      if (!s) return std::nullopt;
      ss = *s;
      if (eat(text, pos, '.')) {
        // Up to microseconds; further digits are accepted and truncated.
        std::size_t n = 0;
        std::int64_t us = 0;
        while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
          if (n < 6) us = us * 10 + (text[pos] - '0');
          ++n, ++pos;
        }
        if (n == 0) return std::nullopt;
        for (std::size_t i = n; i < 6; ++i) us *= 10;
        frac = microseconds(us);
      }
    }
    if (hh > 23 || mi > 59 || ss > 59) return std::nullopt;
  }
  const auto offset = zone(text, pos);
  if (!offset || pos != text.size()) return std::nullopt;
  return sys_days(date) + hours(hh) + minutes(mi) + seconds(ss) + frac - *offset;
}

}  // namespace

std::optional<seconds> parse_age(std::string_view text) {
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end == text.data()) return std::nullopt;
  const std::string_view unit(end, static_cast<std::size_t>(text.data() + text.size() - end));
  constexpr std::uint64_t kMaxSeconds = 100ULL * 366 * 86400;  // a century is plenty
  std::uint64_t scale = 0;
  if (unit == "s") scale = 1;
  else if (unit == "m") scale = 60;
  else if (unit == "h") scale = 3600;
  else if (unit == "d") scale = 86400;
  else if (unit == "w") scale = 7 * 86400;
  else return std::nullopt;
  if (value > kMaxSeconds / scale) return std::nullopt;
  return seconds(static_cast<std::int64_t>(value * scale));
}

std::optional<std::string> parse_time(std::string_view text, system_clock::time_point now) {
  if (const auto age = parse_age(text)) return format_timestamp(now - *age);
  const auto at = iso8601(text);
  if (!at) return std::nullopt;
  return format_timestamp(*at);
}

}  // namespace egress::audit
