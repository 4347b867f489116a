// The refusals that end a worker connection outside an exchange (a
// connection over a limit, a refused CONNECT), each answered, audited and
// lingered over so the worker reads the answer before the close.
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

asio::awaitable<void> Session::refuse_connection() {
  const auto snapshot = worker_.shared.policy.load();
  Attempt attempt(sink(), client_addr_, snapshot->mode());
  attempt.set_kind(policy::RequestKind::Http);
  const auto& limits = worker_.shared.config.limits;
  attempt.refuse(limit_refusal_, limit_refusal_ == Reason::ClientConnectionLimit
                                          ? "this client already has " +
                                                std::to_string(limits.max_connections_per_client) +
                                                " open connections (limits.max_connections_per_client)"
                                          : "egress already has " + std::to_string(limits.max_connections) +
                                                " open connections (limits.max_connections)");
  co_await refuse(attempt, 11);
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

asio::awaitable<void> Session::refuse(Attempt& attempt, unsigned version) {
  const int status = policy::status_for(attempt.refusal_reason());
  auto response = refusal_response(status, attempt, version, false);
  client_.expires_after(worker_.shared.config.limits.idle_timeout);
  auto [ec, n] = co_await http::async_write(client_, response, use_nothrow);
  attempt.finish({status, 0, n, ec ? "writing the refusal: " + ec.message() : attempt.error_text()});
  co_await linger_close();
}

}  // namespace egress::proxy
