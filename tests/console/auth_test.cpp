// The console's login pieces (console/auth.h): secret check, sessions,
// the failed-login limiter, the origin check and the cookie. Fake clock.
#include <catch2/catch.hpp>

#include "console/auth.h"
#include "egress/policy/policy.h"

using namespace egress::console;
using namespace std::chrono_literals;

TEST_CASE("a secret matches only the hashes it was hashed into", "[console]") {
  const std::vector<std::string> hashes = {egress::policy::hash_token("right-secret"),
                                           egress::policy::hash_token("other")};
  struct Case { const char* secret; bool match; };
  for (const Case c : {Case{"right-secret", true}, Case{"other", true}, Case{"wrong", false}, Case{"", false},
                       Case{"right-secret ", false}}) {
    INFO(c.secret);
    CHECK(secret_matches(c.secret, hashes) == c.match);
  }
  CHECK_FALSE(secret_matches("right-secret", {}));
}

TEST_CASE("sessions are random, expire after their ttl and close on logout", "[console]") {
  Sessions sessions(10s, 2);
  const auto t0 = Clock::time_point{} + 1h;
  const auto a = sessions.open(t0);
  const auto b = sessions.open(t0 + 1s);
  CHECK(a.size() == 64);
  CHECK(a != b);
  CHECK(sessions.valid(a, t0 + 9s));
  CHECK_FALSE(sessions.valid(a, t0 + 10s));
  CHECK_FALSE(sessions.valid("not-a-session", t0));
  sessions.close(b);
  CHECK_FALSE(sessions.valid(b, t0 + 2s));
  // At the cap the oldest goes.
  Sessions capped(1h, 2);
  const auto x = capped.open(t0), y = capped.open(t0 + 1s), z = capped.open(t0 + 2s);
  CHECK_FALSE(capped.valid(x, t0 + 3s));
  CHECK(capped.valid(y, t0 + 3s));
  CHECK(capped.valid(z, t0 + 3s));
}

TEST_CASE("five failed logins within a minute lock the source out until the oldest is a minute old", "[console]") {
  LoginLimiter limiter(5, 60s);
  const auto t0 = Clock::time_point{} + 1h;
  for (int i = 0; i < 4; ++i) limiter.failed("10.0.0.1", t0 + std::chrono::seconds(i));
  CHECK(limiter.wait("10.0.0.1", t0 + 5s) == Clock::duration::zero());
  limiter.failed("10.0.0.1", t0 + 5s);
  CHECK(limiter.wait("10.0.0.1", t0 + 6s) == 54s);
  CHECK(limiter.wait("10.0.0.2", t0 + 6s) == Clock::duration::zero());
  CHECK(limiter.wait("10.0.0.1", t0 + 60s) == Clock::duration::zero());
}

TEST_CASE("state-changing requests must come from the console's own origin", "[console]") {
  struct Case { const char* host; const char* origin; const char* site; bool ok; };
  for (const Case c : {
           Case{"127.0.0.1:9130", "http://127.0.0.1:9130", "same-origin", true},
           Case{"console.example", "https://console.example", "", true},
           Case{"127.0.0.1:9130", "", "", true},  // curl, scripts
           Case{"127.0.0.1:9130", "", "none", true},
           Case{"127.0.0.1:9130", "http://evil.example", "", false},
           Case{"127.0.0.1:9130", "null", "", false},
           Case{"127.0.0.1:9130", "", "cross-site", false},
           Case{"127.0.0.1:9130", "http://127.0.0.1:9130", "same-site", false},
           Case{"", "http://127.0.0.1:9130", "", false},
       }) {
    INFO(c.host << " " << c.origin << " " << c.site);
    CHECK(same_origin({c.host, c.origin, c.site}) == c.ok);
  }
}

TEST_CASE("the session cookie is HttpOnly and SameSite=Strict, Secure when asked", "[console]") {
  CHECK(session_cookie("abc", 3600s, false) == "egress_console=abc; Path=/; Max-Age=3600; HttpOnly; SameSite=Strict");
  CHECK(session_cookie("abc", 3600s, true).ends_with("; Secure"));
  CHECK(session_cookie("", 3600s, false).find("Max-Age=0") != std::string::npos);
  CHECK(cookie_value("a=1; egress_console=xyz; b=2", "egress_console") == "xyz");
  CHECK(cookie_value("egress_console_x=1", "egress_console").empty());
  CHECK(cookie_value("", "egress_console").empty());
}
