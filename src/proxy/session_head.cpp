// A worker connection's way in: admission under the connection limits,
// reading each request head under its deadlines (idle between requests,
// header_timeout for the head itself), the strict head check, and the
// refusals that end a connection (a bad head, a body over the limit, a
// connection over a limit), each answered, audited and lingered over so
// the worker reads the answer before the close. See session.h.
#include <spdlog/spdlog.h>

#include <array>

#include "proxy/head_reader.h"
#include "proxy/http_rules.h"
#include "proxy/relay.h"
#include "proxy/session.h"

namespace egress::proxy {
namespace {

using tcp = asio::ip::tcp;
using policy::Reason;

/// How long a refused connection is drained before it is closed, and how
/// much of what the worker still sends is read meanwhile.
constexpr auto kLingerTime = std::chrono::milliseconds(500);
constexpr std::size_t kLingerBytes = 64 * 1024;

}  // namespace

asio::awaitable<bool> Session::read_request(RequestParser& parser, bool first) {
  const auto read = co_await read_request_head(client_, client_buffer_, parser, worker_.shared.config.limits,
                                               first ? HeadOrdinal::First : HeadOrdinal::Later,
                                               worker_.shared.draining, awaiting_request_);
  if (read.ok()) co_return true;
  if (read.problem) co_await refuse_head(*read.problem);
  co_return false;
}

asio::awaitable<void> Session::refuse_head(const HeadProblem& problem) {
  const auto snapshot = worker_.shared.policy.load();
  Attempt attempt = new_attempt(snapshot->mode());
  const auto method = head_method(client_buffer_);
  attempt.set_kind(method == "CONNECT" ? policy::RequestKind::Connect : policy::RequestKind::Http);
  attempt.set_method(std::string(method));
  attempt.set_refusal(problem.reason, problem.detail);
  worker_.shared.audit.record(attempt.decision_event());
  if (problem.status == 0) {  // timed out: the socket is closed, nothing to answer
    record_close(attempt, {0, 0, 0, attempt.error_text()});
    co_return;
  }
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
  const auto problem = announced_body_problem(parser, worker_.shared.config.limits.max_body_bytes);
  if (!problem) co_return false;
  attempt.set_refusal(problem->reason, problem->detail);
  worker_.shared.audit.record(attempt.decision_event());
  co_await refuse(attempt, problem->status, parser.get().version(), false);
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
