// Fuzzes the request-head path of a session: arbitrary bytes go through the
// same Beast parser the proxy uses (same header limit), and the request
// target of every head it accepts goes through parse_absolute_target() or
// parse_connect_target(), as Session does. A target that parses must be safe
// to act on: a canonical host (normalising it again changes nothing), a real
// port, and an origin-form that can be written into the upstream request
// line without splitting it (no spaces, no control bytes).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <boost/beast/core/error.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>

#include "egress/config/config.h"
#include "egress/policy/target.h"
#include "egress/proxy/evaluate.h"
#include "fuzz_check.h"

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

void check_target(const proxy::ParsedTarget& parsed) {
  FUZZ_CHECK(parsed.request.has_value() != (parsed.status != 0), "a target or a refusal status");
  if (!parsed.request) {
    FUZZ_CHECK(parsed.status >= 400 && parsed.status < 600, "refused with an error status");
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
  static const std::uint32_t header_limit = static_cast<std::uint32_t>(config::Limits{}.header_bytes);
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
  std::string_view target = head.target();
  if (head.method() == http::verb::connect) {
    check_target(proxy::parse_connect_target(target));
  } else {
    check_target(proxy::parse_absolute_target(target));
  }
  return 0;
}
