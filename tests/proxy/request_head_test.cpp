// The strict raw request-head check: every smuggling shape of the contract
// (docs/operating.md "Reason codes") is refused with its status and reason, and the
// ordinary heads curl and browsers send pass. Table-driven.
#include <catch2/catch.hpp>

#include <string>

#include "proxy/request_head.h"

using namespace egress::proxy;
using egress::policy::Reason;

namespace {

const HeadLimits kLimits{64, 5};

std::string head(std::string request_line, std::string headers = "Host: a.test\r\n") {
  return request_line + "\r\n" + headers + "\r\n";
}

}  // namespace

TEST_CASE("Ordinary request heads pass the strict check", "[proxy]") {
  auto text = GENERATE(values<std::string>({
      head("GET http://a.test/ HTTP/1.1"),
      head("GET http://a.test/x?y=%20z HTTP/1.0", ""),
      head("CONNECT a.test:443 HTTP/1.1"),
      head("POST http://a.test/ HTTP/1.1", "Host: a.test\r\nContent-Length: 5\r\n"),
      head("POST http://a.test/ HTTP/1.1", "Transfer-Encoding: chunked\r\n"),
      head("POST http://a.test/ HTTP/1.1", "transfer-encoding:   Chunked  \r\n"),
      head("GET http://a.test/ HTTP/1.1", "X-Tab:\tvalue\twith tabs\r\nX-Empty:\r\n"),
      head("GET http://a.test/ HTTP/1.1", "X-Latin: caf\xc3\xa9\r\n"),  // obs-text is allowed in values
  }));
  CAPTURE(text);
  CHECK(find_head_end(text) == text.size());
  const auto problem = check_request_head(text, kLimits);
  CHECK_FALSE(problem.has_value());
}

TEST_CASE("Each smuggling and malformed shape is refused with its status and reason", "[proxy]") {
  struct Case {
    const char* name;
    std::string text;
    int status;
    Reason reason;
  };
  const std::string big_target = "http://a.test/" + std::string(60, 'x');
  auto c = GENERATE_COPY(values<Case>({
      {"CL and TE", head("POST http://a.test/ HTTP/1.1", "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"), 400,
       Reason::AmbiguousFraming},
      {"TE and CL", head("POST http://a.test/ HTTP/1.1", "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"), 400,
       Reason::AmbiguousFraming},
      {"duplicate equal CL", head("POST http://a.test/ HTTP/1.1", "Content-Length: 5\r\nContent-Length: 5\r\n"), 400,
       Reason::AmbiguousFraming},
      {"conflicting CL", head("POST http://a.test/ HTTP/1.1", "Content-Length: 5\r\ncontent-length: 6\r\n"), 400,
       Reason::AmbiguousFraming},
      {"CL list", head("POST http://a.test/ HTTP/1.1", "Content-Length: 5, 5\r\n"), 400, Reason::AmbiguousFraming},
      {"CL sign", head("POST http://a.test/ HTTP/1.1", "Content-Length: +5\r\n"), 400, Reason::AmbiguousFraming},
      {"CL empty", head("POST http://a.test/ HTTP/1.1", "Content-Length:\r\n"), 400, Reason::AmbiguousFraming},
      {"TE gzip, chunked", head("POST http://a.test/ HTTP/1.1", "Transfer-Encoding: gzip, chunked\r\n"), 400,
       Reason::AmbiguousFraming},
      {"TE identity", head("POST http://a.test/ HTTP/1.1", "Transfer-Encoding: identity\r\n"), 400,
       Reason::AmbiguousFraming},
      {"TE chunked twice", head("POST http://a.test/ HTTP/1.1", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"),
       400, Reason::AmbiguousFraming},
      {"TE xchunked", head("POST http://a.test/ HTTP/1.1", "Transfer-Encoding: xchunked\r\n"), 400,
       Reason::AmbiguousFraming},
      {"TE in HTTP/1.0", head("POST http://a.test/ HTTP/1.0", "Transfer-Encoding: chunked\r\n"), 400,
       Reason::AmbiguousFraming},
      {"obs-fold", head("GET http://a.test/ HTTP/1.1", "X-A: one\r\n two\r\n"), 400, Reason::InvalidHeader},
      {"obs-fold tab", head("GET http://a.test/ HTTP/1.1", "X-A: one\r\n\ttwo\r\n"), 400, Reason::InvalidHeader},
      {"space before colon", head("GET http://a.test/ HTTP/1.1", "Transfer-Encoding : chunked\r\n"), 400,
       Reason::InvalidHeader},
      {"bad name char", head("GET http://a.test/ HTTP/1.1", "X(A): 1\r\n"), 400, Reason::InvalidHeader},
      {"empty name", head("GET http://a.test/ HTTP/1.1", ": 1\r\n"), 400, Reason::InvalidHeader},
      {"no colon", head("GET http://a.test/ HTTP/1.1", "garbage\r\n"), 400, Reason::InvalidHeader},
      {"NUL in value", head("GET http://a.test/ HTTP/1.1", std::string("X-A: a\0b\r\n", 10)), 400, Reason::InvalidHeader},
      {"bare CR in value", head("GET http://a.test/ HTTP/1.1", "X-A: a\rb\r\n"), 400, Reason::InvalidHeader},
      {"DEL in value", head("GET http://a.test/ HTTP/1.1", "X-A: a\x7f\r\n"), 400, Reason::InvalidHeader},
      {"bare LF header line", "GET http://a.test/ HTTP/1.1\r\nHost: a\n\r\n", 400, Reason::InvalidHeader},
      {"bare LF end", "GET http://a.test/ HTTP/1.1\r\nHost: a\r\n\n", 400, Reason::InvalidHeader},
      {"space in target", head("GET http://a.test/a b HTTP/1.1"), 400, Reason::InvalidTarget},
      {"tab in target", head("GET http://a.test/a\tb HTTP/1.1"), 400, Reason::InvalidTarget},
      {"NUL in target", head(std::string("GET http://a.test/a\0b HTTP/1.1", 30)), 400, Reason::InvalidTarget},
      {"8-bit in target", head("GET http://a.test/caf\xc3\xa9 HTTP/1.1"), 400, Reason::InvalidTarget},
      {"DEL in target", head("GET http://a.test/\x7f HTTP/1.1"), 400, Reason::InvalidTarget},
      {"target too long", head("GET " + big_target + " HTTP/1.1"), 414, Reason::TargetTooLong},
      {"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, Reason::UnsupportedVersion},
      {"HTTP/1.2", head("GET http://a.test/ HTTP/1.2"), 505, Reason::UnsupportedVersion},
      {"HTTP/0.9 style", head("GET http://a.test/ HTTP/0.9"), 505, Reason::UnsupportedVersion},
      {"lower-case version", head("GET http://a.test/ http/1.1"), 505, Reason::UnsupportedVersion},
      {"no version (HTTP/0.9 request line)", head("GET http://a.test/"), 505, Reason::UnsupportedVersion},
      {"no target, no version", head("GET"), 400, Reason::BadRequest},
      {"bad method", head("G(T http://a.test/ HTTP/1.1"), 400, Reason::BadRequest},
      {"bare LF request line", "GET http://a.test/ HTTP/1.1\n\n", 400, Reason::BadRequest},
      {"too many headers", head("GET http://a.test/ HTTP/1.1", "A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\nF: 6\r\n"), 431,
       Reason::TooManyHeaders},
  }));
  CAPTURE(c.name);
  const auto end = find_head_end(c.text);
  REQUIRE(end != std::string::npos);
  const auto problem = check_request_head(std::string_view(c.text).substr(0, end), kLimits);
  REQUIRE(problem.has_value());
  CHECK(problem->status() == c.status);
  CHECK(problem->reason == c.reason);
  CHECK_FALSE(problem->detail.empty());
}

TEST_CASE("find_head_end finds the empty line however the bytes arrive", "[proxy]") {
  const std::string text = "GET http://a.test/ HTTP/1.1\r\nHost: a\r\n\r\nbody";
  CHECK(find_head_end(text) == text.size() - 4);
  CHECK(find_head_end(std::string_view(text).substr(0, 38)) == std::string::npos);
  // A search resumed after every byte finds the same end.
  std::size_t searched = 0, found = std::string::npos;
  for (std::size_t n = 1; n <= text.size() && found == std::string::npos; ++n) {
    found = find_head_end(std::string_view(text).substr(0, n), searched);
    searched = n;
  }
  CHECK(found == text.size() - 4);
  CHECK(find_head_end("GET / HTTP/1.1\n\n") == 16);
}

TEST_CASE("Exactly max_header_count headers and max_target_length bytes of target pass", "[proxy]") {
  const std::string target = "http://a.test/" + std::string(64 - 14, 'x');
  const std::string text = head("GET " + target + " HTTP/1.1", "A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n");
  CHECK_FALSE(check_request_head(text, kLimits).has_value());
}
