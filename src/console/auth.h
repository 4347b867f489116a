// Who may see the console: the secret check (a password or bearer token
// whose sha256 the configuration lists, hashed as roles' tokens are), the
// sessions a successful login opens, the per-source limit on failed logins,
// and the same-origin check that makes the login and logout POSTs proof
// against cross-site requests. Pure and single-threaded (the console's one
// thread owns them); the clock is passed in, so tests need no sleeping.
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace egress::console {

using Clock = std::chrono::steady_clock;

/// Whether sha256(secret) is one of `hashes` ("sha256:<hex>"). Every hash
/// is compared in constant time, whatever matches.
bool secret_matches(std::string_view secret, const std::vector<std::string>& hashes);

/// Open sessions: random 256-bit ids, each valid for `ttl` after login.
class Sessions {
 public:
  explicit Sessions(Clock::duration ttl, std::size_t max_sessions = 1024) : ttl_(ttl), max_(max_sessions) {}
  /// A new session id (64 hex characters). The oldest session goes when
  /// `max_sessions` are open.
  std::string open(Clock::time_point now);
  bool valid(std::string_view id, Clock::time_point now);
  void close(std::string_view id);
  std::size_t size() const { return expiry_.size(); }

 private:
  Clock::duration ttl_;
  std::size_t max_;
  std::map<std::string, Clock::time_point, std::less<>> expiry_;
};

/// Failed logins per source address: `limit` within `window`, then every
/// attempt from there is refused (right or wrong) until the oldest failure
/// is older than `window`.
class LoginLimiter {
 public:
  explicit LoginLimiter(std::size_t limit = 5, Clock::duration window = std::chrono::minutes(1),
                        std::size_t max_sources = 4096)
      : limit_(limit), window_(window), max_sources_(max_sources) {}
  /// How long `source` must wait; zero when it may try now.
  Clock::duration wait(const std::string& source, Clock::time_point now);
  void failed(const std::string& source, Clock::time_point now);

 private:
  std::size_t limit_;
  Clock::duration window_;
  std::size_t max_sources_;
  std::map<std::string, std::deque<Clock::time_point>> failures_;
};

/// What a browser says about where a request comes from.
struct RequestOrigin {
  std::string_view host;            // Host header
  std::string_view origin;          // Origin header, "" when absent
  std::string_view sec_fetch_site;  // Sec-Fetch-Site, "" when absent
};

/// True when a state-changing request may be from the console's own page:
/// Sec-Fetch-Site, when sent, is same-origin or none; Origin, when sent,
/// names this Host (http or https). Clients that send neither (curl,
/// scripts with a bearer token) pass: they hold no ambient cookie of a
/// victim, and SameSite=Strict keeps the session cookie off cross-site
/// requests anyway.
bool same_origin(const RequestOrigin& request);

/// The value of cookie `name` in a Cookie header, or "".
std::string_view cookie_value(std::string_view header, std::string_view name);

/// The Set-Cookie value for a session (HttpOnly, SameSite=Strict, Path=/,
/// Max-Age; Secure when `secure`), or for ending it (empty id, Max-Age=0).
std::string session_cookie(std::string_view id, Clock::duration ttl, bool secure);

inline constexpr std::string_view kCookieName = "egress_console";

}  // namespace egress::console
