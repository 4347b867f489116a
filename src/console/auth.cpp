// Secrets, sessions, the login limiter and the origin check (auth.h).
#include "console/auth.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <stdexcept>

#include "egress/policy/policy.h"

namespace egress::console {

bool secret_matches(std::string_view secret, const std::vector<std::string>& hashes) {
  if (secret.empty()) return false;
  const std::string hash = policy::hash_token(secret);
  bool match = false;
  for (const auto& want : hashes) {
    const bool same = want.size() == hash.size() && CRYPTO_memcmp(want.data(), hash.data(), hash.size()) == 0;
    match = match || same;
  }
  return match;
}

std::string Sessions::open(Clock::time_point now) {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof bytes) != 1) {
    throw std::runtime_error("console: OpenSSL's random generator failed; cannot open a session");
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id;
  for (unsigned char b : bytes) {
    id += kHex[b >> 4];
    id += kHex[b & 0xf];
  }
  for (auto it = expiry_.begin(); it != expiry_.end();) {
    it = it->second <= now ? expiry_.erase(it) : std::next(it);
  }
  if (expiry_.size() >= max_) {
    auto oldest = expiry_.begin();
    for (auto it = expiry_.begin(); it != expiry_.end(); ++it) {
      if (it->second < oldest->second) oldest = it;
    }
    expiry_.erase(oldest);
  }
  expiry_.emplace(id, now + ttl_);
  return id;
}

bool Sessions::valid(std::string_view id, Clock::time_point now) {
  if (id.size() != 64) return false;
  const auto it = expiry_.find(id);
  if (it == expiry_.end()) return false;
  if (it->second > now) return true;
  expiry_.erase(it);
  return false;
}

void Sessions::close(std::string_view id) {
  if (const auto it = expiry_.find(id); it != expiry_.end()) expiry_.erase(it);
}

Clock::duration LoginLimiter::wait(const std::string& source, Clock::time_point now) {
  const auto it = failures_.find(source);
  if (it == failures_.end()) return Clock::duration::zero();
  auto& times = it->second;
  while (!times.empty() && times.front() + window_ <= now) times.pop_front();
  if (times.empty()) {
    failures_.erase(it);
    return Clock::duration::zero();
  }
  return times.size() >= limit_ ? times.front() + window_ - now : Clock::duration::zero();
}

void LoginLimiter::failed(const std::string& source, Clock::time_point now) {
  if (failures_.size() >= max_sources_ && !failures_.count(source)) {
    // Many sources failing at once: forget the quietest rather than grow.
    failures_.erase(failures_.begin());
  }
  auto& times = failures_[source];
  times.push_back(now);
  while (times.size() > limit_) times.pop_front();
}

bool same_origin(const RequestOrigin& r) {
  if (!r.sec_fetch_site.empty() && r.sec_fetch_site != "same-origin" && r.sec_fetch_site != "none") return false;
  if (r.origin.empty()) return true;
  if (r.host.empty()) return false;
  const std::string http = "http://" + std::string(r.host), https = "https://" + std::string(r.host);
  return r.origin == http || r.origin == https;
}

std::string_view cookie_value(std::string_view header, std::string_view name) {
  while (!header.empty()) {
    const auto end = header.find(';');
    auto pair = header.substr(0, end);
    while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
    if (pair.size() > name.size() && pair.substr(0, name.size()) == name && pair[name.size()] == '=') {
      return pair.substr(name.size() + 1);
    }
    if (end == std::string_view::npos) break;
    header.remove_prefix(end + 1);
  }
  return {};
}

std::string session_cookie(std::string_view id, Clock::duration ttl, bool secure) {
  const auto max_age = id.empty() ? 0 : std::chrono::duration_cast<std::chrono::seconds>(ttl).count();
  return std::string(kCookieName) + "=" + std::string(id) + "; Path=/; Max-Age=" + std::to_string(max_age) +
         "; HttpOnly; SameSite=Strict" + (secure ? "; Secure" : "");
}

}  // namespace egress::console
