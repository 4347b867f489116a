// DSN helpers for the central store (see egress/audit/replicator.h). Pure
// text functions: a password never leaves them except as "***".
#include <unistd.h>

#include <cctype>

#include "egress/audit/replicator.h"

namespace egress::audit {
namespace {

constexpr std::string_view kMask = "***";

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  }
  return true;
}

// Masks every "password=VALUE" (key=value strings and URI query
// parameters); VALUE ends at '&' in a URI, at a space (or a closing
// quote) otherwise.
std::string mask_keywords(std::string s, bool uri, bool& found) {
  for (std::size_t pos = 0; (pos = s.find("password=", pos)) != std::string::npos;) {
    const bool at_key = pos == 0 || s[pos - 1] == ' ' || s[pos - 1] == '?' || s[pos - 1] == '&';
    pos += 9;
    if (!at_key) continue;
    std::size_t end = pos;
    if (!uri && end < s.size() && s[end] == '\'') {
      for (++end; end < s.size() && s[end] != '\''; ++end) {
        if (s[end] == '\\') ++end;
      }
      end = std::min(end + 1, s.size());
    } else {
      while (end < s.size() && s[end] != (uri ? '&' : ' ')) ++end;
    }
    found = found || end > pos;
    s.replace(pos, end - pos, kMask);
    pos += kMask.size();
  }
  return s;
}

std::string redact(std::string_view dsn, bool& found) {
  found = false;
  if (!is_central_dsn(dsn)) return mask_keywords(std::string(dsn), false, found);
  std::string s(dsn);
  const std::size_t start = s.find("://") + 3;
  const std::size_t auth_end = s.find_first_of("/?", start);
  const std::size_t at = s.rfind('@', auth_end == std::string::npos ? s.size() : auth_end);
  if (at != std::string::npos && at >= start) {
    const std::size_t colon = s.find(':', start);
    if (colon != std::string::npos && colon + 1 < at) {
      found = true;
      s.replace(colon + 1, at - colon - 1, kMask);
    }
  }
  return mask_keywords(std::move(s), true, found);
}

}  // namespace

bool is_central_dsn(std::string_view text) {
  return starts_with_ci(text, "postgresql://") || starts_with_ci(text, "postgres://");
}

std::string redact_dsn(std::string_view dsn) {
  bool found = false;
  return redact(dsn, found);
}

bool dsn_has_password(std::string_view dsn) {
  bool found = false;
  redact(dsn, found);
  return found;
}

std::string default_replica_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "egress";
  return name;
}

}  // namespace egress::audit
