// The refusals of reading a request head (head_reader.h): pure functions
// from what went wrong to the status, reason and sentence to answer with.
#include "proxy/head_reader.h"

#include <string>
#include <utility>

#include <boost/asio/ssl/error.hpp>

namespace egress::proxy {
namespace {

using policy::Reason;

/// A Beast parse error of a head that passed check_request_head() (which
/// catches these shapes first; this keeps the reasons precise if Beast is
/// stricter somewhere).
Reason parse_error_reason(beast::error_code ec) {
  if (ec == http::error::header_limit) return Reason::HeaderTooLarge;
  if (ec == http::error::bad_transfer_encoding || ec == http::error::bad_content_length ||
      ec == http::error::multiple_content_length) {
    return Reason::AmbiguousFraming;
  }
  if (ec == http::error::bad_field || ec == http::error::bad_value) return Reason::InvalidHeader;
  if (ec == http::error::bad_target) return Reason::InvalidTarget;
  if (ec == http::error::bad_version) return Reason::UnsupportedVersion;
  return Reason::BadRequest;
}

bool is_quiet_end(const beast::error_code& ec) {
  return ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::operation_aborted ||
         ec == asio::error::connection_reset || ec == asio::ssl::error::stream_truncated;
}

}  // namespace

std::optional<HeadProblem> unreadable_head(beast::error_code ec, bool started, const config::Limits& limits) {
  // A connection closed or idle between requests is normal; only a request
  // that started and could not be read is an attempt worth an answer.
  if (is_quiet_end(ec) || !started) return std::nullopt;
  if (ec == beast::error::timeout) {
    // tcp_stream closes the socket when its deadline passes, so there is
    // no 408 to send; the attempt is still logged.
    return HeadProblem{Reason::ClientTimeout,
                       "the request head did not arrive within " + std::to_string(limits.header_timeout.count()) +
                           " ms"};
  }
  const auto reason = parse_error_reason(ec);
  if (reason == Reason::HeaderTooLarge) {
    return HeadProblem{reason, "the request head is over " + std::to_string(limits.header_bytes) + " bytes"};
  }
  return HeadProblem{reason, "malformed request: " + ec.message()};
}

std::optional<HeadProblem> announced_body_problem(RequestParser& parser, std::uint64_t max_body_bytes) {
  if (max_body_bytes == 0) return std::nullopt;
  parser.body_limit(max_body_bytes);
  const auto length = parser.content_length();
  if (!length || *length <= max_body_bytes) return std::nullopt;
  return HeadProblem{Reason::BodyTooLarge,
                     "Content-Length " + std::to_string(*length) + " is over " + std::to_string(max_body_bytes) +
                         " bytes (limits.max_body_bytes)"};
}

HeadProblem streamed_body_problem(std::uint64_t max_body_bytes) {
  return HeadProblem{Reason::BodyTooLarge,
                     "the chunked request body went over " + std::to_string(max_body_bytes) +
                         " bytes (limits.max_body_bytes); the upstream connection was aborted"};
}

}  // namespace egress::proxy
