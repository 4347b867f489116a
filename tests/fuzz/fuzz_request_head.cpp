// Fuzzes the request-head path of a session: arbitrary bytes go through the
// strict raw-head check (request_head.h) and, as Session does only when
// that check passes, the same Beast parser the proxy uses (same header
// limit). A head the check passes must leave no framing ambiguity in what
// Beast parsed: not both Content-Length and Transfer-Encoding, at most one
// of each, Transfer-Encoding exactly chunked. Then the request
// target of every head it accepts goes through parse_absolute_target() or
// parse_connect_target(), as Session does. A target that parses must be safe
// to act on: a canonical host (normalising it again changes nothing), a real
// port, and an origin-form that can be written into the upstream request
// line without splitting it (no spaces, no control bytes).
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <string_view>

#include <boost/beast/core/error.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>

#include "egress/config/config.h"
#include "egress/policy/target.h"
#include "egress/proxy/evaluate.h"
#include "fuzz_check.h"
#include "proxy/request_head.h"

namespace http = boost::beast::http;
using namespace egress;

namespace {

bool splits_request_line(std::string_view text) {
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    if (byte <= 0x20 || byte == 0x7f) return true;
  }
  return false;
}

void check_framing(const http::request_header<>& head) {
  const auto count = [&head](http::field f) {
    const auto [first, last] = head.equal_range(f);
    return std::distance(first, last);
  };
  const auto lengths = count(http::field::content_length);
  const auto encodings = count(http::field::transfer_encoding);
  FUZZ_CHECK(lengths <= 1 && encodings <= 1, "each framing header at most once");
  FUZZ_CHECK(lengths == 0 || encodings == 0, "never Content-Length and Transfer-Encoding together");
  if (encodings == 1) {
    FUZZ_CHECK(boost::beast::iequals(head[http::field::transfer_encoding], "chunked"),
               "Transfer-Encoding is exactly chunked");
  }
}

void check_target(const proxy::ParsedTarget& parsed) {
  if (!parsed.request) {
    const int status = policy::status_for(parsed.reason);
    FUZZ_CHECK(status >= 400 && status < 600 && !parsed.error.empty(), "refused with an error status and a reason");
    return;
  }
  const proxy::RequestTarget& request = *parsed.request;
  const policy::NormalizedHost& host = request.target.host;
  FUZZ_CHECK(request.target.port != 0, "port 1..65535");
  auto again = policy::normalize_host(host.type == policy::HostType::Ipv6 ? "[" + host.host + "]" : host.host);
  FUZZ_CHECK(again.host && again.host->host == host.host, "the parsed host is already canonical");
  if (request.kind == policy::RequestKind::Connect) {
    FUZZ_CHECK(request.path.empty() && request.origin_form.empty(), "CONNECT has no path");
  } else {
    FUZZ_CHECK(!request.path.empty() && request.path.front() == '/', "path starts with '/'");
    FUZZ_CHECK(request.origin_form.starts_with(request.path), "origin-form starts with the path");
    FUZZ_CHECK(!splits_request_line(request.origin_form), "origin-form cannot split the request line");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const config::Limits limits;
  static const std::uint32_t header_limit = static_cast<std::uint32_t>(limits.header_bytes);
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const auto end = proxy::find_head_end(bytes);
  if (end == std::string_view::npos) return 0;
  const auto problem =
      proxy::check_request_head(bytes.substr(0, end), {limits.max_target_length, limits.max_header_count});
  if (problem) {
    FUZZ_CHECK(problem->status() >= 400 && problem->status() < 600 && !problem->detail.empty(),
               "a refused head has an error status and a detail");
    return 0;
  }
  http::request_parser<http::empty_body> parser;
  parser.header_limit(header_limit);
  boost::beast::error_code ec;
  std::size_t used = 0;
  while (used < size && !parser.is_header_done()) {
    std::size_t n = parser.put(boost::asio::buffer(data + used, size - used), ec);
    if (ec == http::error::need_more) {
      ec = {};
      if (n == 0) break;  // Beast wants more than the input holds
    }
    if (ec) return 0;
    used += n;
  }
  if (!parser.is_header_done()) return 0;

  const auto& head = parser.get();
  check_framing(head);
  std::string_view target = head.target();
  if (head.method() == http::verb::connect) {
    check_target(proxy::parse_connect_target(target));
  } else {
    check_target(proxy::parse_absolute_target(target));
  }
  return 0;
}
