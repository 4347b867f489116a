// A worker connection's way in: admission under the connection limits,
// reading each request head under its deadlines (idle between requests,
// header_timeout for the head itself), the strict head check, and the
// refusals that end a connection (a bad head, a body over the limit, a
// connection over a limit), each answered, audited and lingered over so
// the worker reads the answer before the close. See session.h.
#include <spdlog/spdlog.h>

#include <array>

#include "proxy/http_rules.h"
#include "proxy/relay.h"
#include "proxy/session.h"

namespace egress::proxy {
namespace {

using tcp = asio::ip::tcp;
using policy::Reason;

/// Bytes asked for per read while a head arrives.
constexpr std::size_t kHeadReadBytes = 4096;
/// How long a refused connection is drained before it is closed, and how
/// much of what the worker still sends is read meanwhile.
constexpr auto kLingerTime = std::chrono::milliseconds(500);
constexpr std::size_t kLingerBytes = 64 * 1024;

std::string_view buffered(const beast::flat_buffer& buffer) {
  const auto data = buffer.cdata();
  return {static_cast<const char*>(data.data()), data.size()};
}

/// A Beast parse error of a head that passed check_request_head() (which
/// catches these shapes first; this keeps the reasons precise if Beast is
/// stricter somewhere): status and reason.
std::pair<int, Reason> parse_error_reason(beast::error_code ec) {
  if (ec == http::error::header_limit) return {431, Reason::HeaderTooLarge};
  if (ec == http::error::bad_transfer_encoding || ec == http::error::bad_content_length ||
      ec == http::error::multiple_content_length) {
    return {400, Reason::AmbiguousFraming};
  }
  if (ec == http::error::bad_field || ec == http::error::bad_value) return {400, Reason::InvalidHeader};
  if (ec == http::error::bad_target) return {400, Reason::InvalidTarget};
  if (ec == http::error::bad_version) return {505, Reason::UnsupportedVersion};
  return {400, Reason::BadRequest};
}

}  // namespace

asio::awaitable<bool> Session::read_request(RequestParser& parser, bool first) {
  const auto& limits = worker_.shared.config.limits;
  const auto read_ec = co_await read_head(first);
  if (read_ec) {
    co_await refuse_unreadable(read_ec);
    co_return false;
  }
  const auto bytes = buffered(client_buffer_);
  const auto head = bytes.substr(0, find_head_end(bytes));
  const auto problem = check_request_head(head, {limits.max_target_length, limits.max_header_count});
  if (problem) {
    co_await refuse_head(*problem);
    co_return false;
  }
  // The whole head is buffered, so this parses without reading.
  parser.header_limit(static_cast<std::uint32_t>(limits.header_bytes));
  parser.body_limit(boost::none);
  auto [ec, n] = co_await http::async_read_header(client_, client_buffer_, parser, use_nothrow);
  if (ec) {
    co_await refuse_unreadable(ec);
    co_return false;
  }
  co_return true;
}

asio::awaitable<beast::error_code> Session::read_head(bool first) {
  const auto& limits = worker_.shared.config.limits;
  // One deadline for the whole head, not per read: a byte a second must not
  // keep a connection alive. The first head's deadline counts from accept;
  // a later one's from its first byte, which may take idle_timeout to come.
  client_.expires_after(first ? limits.header_timeout : limits.idle_timeout);
  if (client_buffer_.size() == 0) {
    if (worker_.shared.draining.load(std::memory_order_relaxed)) co_return asio::error::operation_aborted;
    awaiting_request_ = true;  // close_if_idle() may end this wait
    auto [ec, n] = co_await client_.async_read_some(client_buffer_.prepare(kHeadReadBytes), use_nothrow);
    awaiting_request_ = false;
    if (ec) co_return ec;
    client_buffer_.commit(n);
  }
  if (!first) client_.expires_after(limits.header_timeout);
  std::size_t searched = 0;
  for (;;) {
    const auto bytes = buffered(client_buffer_);
    if (find_head_end(bytes, searched) != std::string_view::npos) co_return beast::error_code{};
    if (bytes.size() >= limits.header_bytes) co_return beast::error_code(http::error::header_limit);
    searched = bytes.size();
    auto [ec, n] = co_await client_.async_read_some(client_buffer_.prepare(kHeadReadBytes), use_nothrow);
    if (ec) co_return ec;
    client_buffer_.commit(n);
  }
}

asio::awaitable<void> Session::refuse_head(const HeadProblem& problem) {
  const auto snapshot = worker_.shared.policy.load();
  Attempt attempt = new_attempt(snapshot->mode());
  const auto bytes = buffered(client_buffer_);
  const bool connect = bytes.starts_with("CONNECT ");
  attempt.set_kind(connect ? policy::RequestKind::Connect : policy::RequestKind::Http);
  const auto method = bytes.substr(0, std::min<std::size_t>(bytes.find(' '), 32));
  attempt.set_method(std::string(method));
  attempt.set_refusal(problem.reason, problem.detail);
  worker_.shared.audit.record(attempt.decision_event());
  co_await refuse(attempt, problem.status, 11, false);
}

asio::awaitable<void> Session::refuse_connection() {
  const auto snapshot = worker_.shared.policy.load();
  Attempt attempt = new_attempt(snapshot->mode());
  attempt.set_kind(policy::RequestKind::Http);
  const auto& limits = worker_.shared.config.limits;
  attempt.set_refusal(limit_refusal_, limit_refusal_ == Reason::ClientConnectionLimit
                                          ? "this client already has " +
                                                std::to_string(limits.max_connections_per_client) +
                                                " open connections (limits.max_connections_per_client)"
                                          : "egress already has " + std::to_string(limits.max_connections) +
                                                " open connections (limits.max_connections)");
  worker_.shared.audit.record(attempt.decision_event());
  co_await refuse(attempt, 503, 11, false);
}

asio::awaitable<bool> Session::refuse_large_body(RequestParser& parser, Attempt& attempt) {
  const auto max = worker_.shared.config.limits.max_body_bytes;
  if (max == 0) co_return false;
  // Chunked bodies are cut by the parser as they stream (relay_message
  // fails with body_limit); an announced length is refused up front.
  parser.body_limit(max);
  const auto length = parser.content_length();
  if (!length || *length <= max) co_return false;
  attempt.set_refusal(Reason::BodyTooLarge, "Content-Length " + std::to_string(*length) + " is over " +
                                                std::to_string(max) + " bytes (limits.max_body_bytes)");
  worker_.shared.audit.record(attempt.decision_event());
  co_await refuse(attempt, 413, parser.get().version(), false);
  co_return true;
}

asio::awaitable<void> Session::linger_close() {
  beast::error_code ignored;
  client_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  client_.expires_after(kLingerTime);
  std::array<char, 4096> sink;
  std::size_t drained = 0;
  while (drained < kLingerBytes) {
    auto [ec, n] = co_await client_.async_read_some(asio::buffer(sink), use_nothrow);
    if (ec) break;
    drained += n;
  }
  client_.socket().close(ignored);
}

asio::awaitable<void> Session::refuse_unreadable(beast::error_code ec) {
  // A connection closed or idle between requests is normal; only a request
  // that started and could not be read is an attempt worth an answer.
  const bool started = client_buffer_.size() > 0;
  if (ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::operation_aborted ||
      ec == asio::error::connection_reset || !started) {
    co_return;
  }
  const auto snapshot = worker_.shared.policy.load();
  Attempt attempt = new_attempt(snapshot->mode());
  attempt.set_kind(policy::RequestKind::Http);
  if (ec == beast::error::timeout) {
    // tcp_stream closes the socket when its deadline passes, so there is
    // no 408 to send; the attempt is still logged.
    attempt.set_refusal(Reason::ClientTimeout,
                        "the request head did not arrive within " +
                            std::to_string(worker_.shared.config.limits.header_timeout.count()) + " ms");
    worker_.shared.audit.record(attempt.decision_event());
    record_close(attempt, {0, 0, 0, attempt.error_text()});
    co_return;
  }
  const auto [status, reason] = parse_error_reason(ec);
  if (reason == Reason::HeaderTooLarge) {
    attempt.set_refusal(reason, "the request head is over " +
                                    std::to_string(worker_.shared.config.limits.header_bytes) + " bytes");
  } else {
    attempt.set_refusal(reason, "malformed request: " + ec.message());
  }
  worker_.shared.audit.record(attempt.decision_event());
  co_await refuse(attempt, status, 11, false);
}

asio::awaitable<bool> Session::refuse(Attempt& attempt, int status, unsigned version, bool keep_alive) {
  auto response = refusal_response(status, attempt, version, keep_alive);
  client_.expires_after(worker_.shared.config.limits.idle_timeout);
  auto [ec, n] = co_await http::async_write(client_, response, use_nothrow);
  record_close(attempt, {status, 0, n, ec ? "writing the refusal: " + ec.message() : attempt.error_text()});
  if (keep_alive && !ec) co_return true;
  co_await linger_close();
  co_return false;
}

}  // namespace egress::proxy
