// The target of a request inside an inspected tunnel: which forms are
// accepted, and Host must name the tunnel's host (invariant 4).
#include <catch2/catch.hpp>

#include <string>

#include "proxy/inspect.h"

using namespace egress;
using namespace egress::proxy;
using policy::Reason;

namespace {

policy::Target tunnel_to(const std::string& authority) {
  auto parsed = policy::parse_authority(authority);
  REQUIRE(parsed.target);
  return *parsed.target;
}

}  // namespace

TEST_CASE("Requests inside an inspected tunnel are parsed against the tunnel's host", "[proxy]") {
  struct Case {
    const char* tunnel;
    const char* target;
    const char* host;
    unsigned version;
    int status;  // 0 = accepted
    Reason reason;
    const char* path;
    const char* origin_form;
  };
  const auto c = GENERATE(
      // accepted
      Case{"allowed.test:443", "/api/models/x", "allowed.test", 11, 0, {}, "/api/models/x", "/api/models/x"},
      Case{"allowed.test:443", "/a?b=1", "ALLOWED.test.", 11, 0, {}, "/a", "/a?b=1"},
      Case{"allowed.test:8443", "/", "allowed.test:8443", 11, 0, {}, "/", "/"},
      Case{"allowed.test:443", "https://allowed.test/x?y", "allowed.test", 11, 0, {}, "/x", "/x?y"},
      Case{"allowed.test:443", "/old", "", 10, 0, {}, "/old", "/old"},  // HTTP/1.0 may omit Host
      Case{"[::1]:443", "/", "[::1]", 11, 0, {}, "/", "/"},
      Case{"127.0.0.1:443", "/", "127.0.0.1:443", 11, 0, {}, "/", "/"},
      // Host names another host, or another port: 421 host-mismatch
      Case{"allowed.test:443", "/", "other.test", 11, 421, Reason::HostMismatch, "", ""},
      Case{"allowed.test:443", "/", "allowed.test:444", 11, 421, Reason::HostMismatch, "", ""},
      Case{"allowed.test:443", "/", "allowed.test.evil", 11, 421, Reason::HostMismatch, "", ""},
      Case{"allowed.test:443", "https://other.test/", "allowed.test", 11, 421, Reason::HostMismatch, "", ""},
      Case{"allowed.test:443", "https://allowed.test/", "other.test", 11, 421, Reason::HostMismatch, "", ""},
      // malformed: 400 bad-request (or 421 for an unreadable Host)
      Case{"allowed.test:443", "/", "", 11, 400, Reason::BadRequest, "", ""},
      Case{"allowed.test:443", "http://allowed.test/", "allowed.test", 11, 400, Reason::BadRequest, "", ""},
      Case{"allowed.test:443", "*", "allowed.test", 11, 400, Reason::BadRequest, "", ""},
      Case{"allowed.test:443", "https://u:p@allowed.test/", "allowed.test", 11, 400, Reason::BadRequest, "", ""},
      Case{"allowed.test:443", "/", "allowed.test:0", 11, 421, Reason::HostMismatch, "", ""},
      Case{"allowed.test:443", "/", "allowed.test:x", 11, 421, Reason::HostMismatch, "", ""});
  CAPTURE(c.tunnel, c.target, c.host, c.version);
  const auto parsed = parse_inspected_target(c.target, c.host, c.version, tunnel_to(c.tunnel));
  if (c.status == 0) {
    REQUIRE(parsed.request);
    CHECK(parsed.request->kind == policy::RequestKind::Inspected);
    CHECK(parsed.request->scheme == "https");
    CHECK(parsed.request->path == c.path);
    CHECK(parsed.request->origin_form == c.origin_form);
    CHECK(parsed.request->target.host.host == tunnel_to(c.tunnel).host.host);
  } else {
    REQUIRE_FALSE(parsed.request);
    CHECK(policy::status_for(parsed.reason) == c.status);
    CHECK(parsed.reason == c.reason);
    CHECK_FALSE(parsed.error.empty());
  }
}
