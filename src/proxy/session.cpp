// A worker connection: the request loop, plain-HTTP forwarding (the
// exchange, exchange.h) and CONNECT tunnels. See session.h for the phases
// and states.
#include "proxy/session.h"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>

#include "proxy/client_hello.h"
#include "proxy/exchange.h"
#include "proxy/http_rules.h"
#include "proxy/inspect.h"
#include "proxy/relay.h"
#include "proxy/splice_relay.h"
#include "proxy/upstream_pool.h"

namespace egress::proxy {
namespace {

using tcp = asio::ip::tcp;
using policy::Reason;

}  // namespace

Session::Session(Worker& worker, tcp::socket socket, ConnectionLimiter::Admission admission)
    : worker_(worker),
      ticket_(std::move(admission.ticket)),
      limit_refusal_(admission.refusal),
      client_(std::move(socket)),
      route_(worker, client_ip_) {
  beast::error_code ec;
  const auto remote = client_.socket().remote_endpoint(ec);
  client_addr_ = ec ? "unknown" : endpoint_text(remote);
  if (!ec) client_ip_ = to_policy_address(remote.address());
  registration_ = worker_.sessions.insert(worker_.sessions.end(), this);
  ++worker_.shared.active_sessions;
  if (ticket_) {
    idle_.ticket = &*ticket_;
    // Runs on the admitting thread, maybe another worker's: post the close
    // to this session's own, where it may have ended meanwhile.
    ticket_->on_yield([&metrics = worker_.metrics, executor = client_.get_executor(),
                       alive = std::weak_ptr<Session*>(self_)] {
      metrics.count_yielded_connection();
      asio::post(executor, [alive] {
        if (const auto self = alive.lock()) (*self)->close_if_idle();
      });
    });
  }
}

Session::~Session() {
  worker_.sessions.erase(registration_);
  --worker_.shared.active_sessions;
}

void Session::close_if_idle() {
  if (!idle_.awaiting) return;
  beast::error_code ignored;
  client_.socket().close(ignored);
}

void Session::abort() {
  beast::error_code ignored;
  client_.socket().close(ignored);
  route_.abort();
}

asio::awaitable<void> Session::run() {
  if (!ticket_) {
    co_await refuse_connection();
    co_return;
  }
  for (auto ordinal = HeadOrdinal::First;; ordinal = HeadOrdinal::Later) {
    co_await keep_pace_with_audit_writer(worker_.shared.audit);
    RequestParser parser;
    Exchange<beast::tcp_stream, PlainRoute> exchange(
        worker_, ClientSide<beast::tcp_stream>{client_, client_buffer_, idle_, client_addr_}, route_,
        ordinal);
    const auto end = co_await exchange.run(parser);
    switch (end) {
      case ExchangeEnd::KeepAlive:
        continue;
      case ExchangeEnd::Refused:
        co_await linger_close();
        co_return;
      case ExchangeEnd::Close:
        co_return;
      case ExchangeEnd::Connect:
        co_await serve_connect(parser);
        co_return;
    }
  }
}

asio::awaitable<bool> Session::check_client_hello(Attempt& attempt, const RequestTarget& target,
                                                  const policy::Decision& decision) {
  const auto refuse_tunnel = [&](Reason reason, std::string detail) {
    policy::Decision refused;
    refused.verdict = policy::Verdict::Deny;
    refused.reason = reason;
    refused.detail = std::move(detail);
    attempt.decide(refused);
    return false;
  };
  client_.expires_after(worker_.shared.config.limits.header_timeout);
  for (;;) {
    const auto data = client_buffer_.cdata();
    const auto parsed =
        parse_client_hello({static_cast<const std::uint8_t*>(data.data()), data.size()});
    switch (parsed.status) {
      case HelloStatus::Complete: {
        attempt.set_sni(parsed.hello.sni);
        attempt.set_alpn(parsed.hello.alpn);
        if (parsed.hello.sni.empty()) {
          if (decision.allow_no_sni) co_return true;
          co_return refuse_tunnel(Reason::SniMissing, "the ClientHello has no server name");
        }
        const auto sni = policy::normalize_host(parsed.hello.sni);
        if (!sni.host || sni.host->host != target.target.host.host) {
          co_return refuse_tunnel(Reason::SniMismatch, "SNI '" + parsed.hello.sni + "' but CONNECT " +
                                                           target.target.host.host);
        }
        co_return true;
      }
      case HelloStatus::NotTls:
        // raw_tcp admits a protocol that is not TLS at all (SSH to a git
        // host); a hello that is TLS but broken stays refused, since a
        // lenient server might read a name from it that was never checked.
        if (decision.raw_tcp) co_return true;
        co_return refuse_tunnel(Reason::NotTls, parsed.error);
      case HelloStatus::Malformed:
        co_return refuse_tunnel(Reason::NotTls, parsed.error);
      case HelloStatus::NeedMore:
        break;
    }
    const auto want = std::max<std::size_t>(parsed.bytes_needed, 512);
    auto [ec, n] = co_await client_.async_read_some(client_buffer_.prepare(want), use_nothrow);
    if (ec) {
      co_return refuse_tunnel(ec == beast::error::timeout ? Reason::ClientTimeout : Reason::NotTls,
                              "reading the TLS ClientHello: " + ec.message());
    }
    client_buffer_.commit(n);
  }
}

// Results of co_await are kept in named locals throughout this file rather
// than used inside `if (!co_await …)`: GCC 12 miscompiled that form here (the
// callee's frame saw a garbage reference and crashed).
asio::awaitable<void> Session::serve_connect(RequestParser& parser) {
  auto& request = parser.get();
  const auto snapshot = worker_.shared.policy.load();
  Attempt attempt(sink(), client_addr_, snapshot->mode());
  attempt.set_kind(policy::RequestKind::Connect);
  attempt.set_method("CONNECT");
  const unsigned version = request.version();

  auto parsed = parse_connect_target(request.target());
  if (!parsed.request) {
    attempt.set_raw_target(std::string(request.target()));
    attempt.refuse(parsed.reason, parsed.error);
    co_await refuse(attempt, version);
    co_return;
  }
  const RequestTarget& target = *parsed.request;
  attempt.set_target(target);
  if (!identify_worker(*snapshot, client_ip_, request, attempt)) {
    co_await refuse(attempt, version);
    co_return;
  }
  const auto evaluation = co_await route_.decide(*snapshot, attempt, target, "CONNECT");
  if (!evaluation.decision.allows()) {
    attempt.set_deny_message(std::string(snapshot->deny_message(attempt.role())));
    co_await refuse(attempt, version);
    co_return;
  }
  // The upstream TCP connection is opened before the 200 so that a dead
  // upstream is a clean 502; no payload goes to it before the ClientHello
  // is checked and the decision committed. An inspected tunnel may instead
  // take an idle TLS connection to the same upstream (upstream_pool.h).
  UpstreamTlsPtr pooled;
  if (evaluation.decision.inspect) {
    pooled = worker_.upstream_tls.take(authority_of(target.target, 0), evaluation.endpoints,
                                       worker_.now());
  }
  if (pooled) {
    attempt.set_upstream(endpoint_text(pooled->endpoint()));
  } else {
    const auto* upstream = co_await route_.connect_tunnel(attempt, target, evaluation.endpoints);
    if (!upstream) {
      co_await refuse(attempt, version);
      co_return;
    }
  }
  Attempt::Outcome outcome{200, 0, 0, ""};
  co_await serve_tunnel(attempt, target, evaluation, std::move(pooled), outcome);
  attempt.finish(outcome);
}

asio::awaitable<void> Session::serve_tunnel(Attempt& attempt, const RequestTarget& target,
                                            const Evaluation& evaluation, UpstreamTlsPtr pooled,
                                            Attempt::Outcome& outcome) {
  const auto established =
      "HTTP/1.1 200 Connection established\r\nX-Egress-Request-Id: " + attempt.request_id() + "\r\n\r\n";
  client_.expires_after(worker_.shared.config.limits.idle_timeout);
  auto [ec, n] = co_await asio::async_write(client_, asio::buffer(established), use_nothrow);
  if (ec) {
    outcome.error = "sending 200 to the worker: " + ec.message();
    co_return;
  }
  outcome.bytes_down = n;
  const bool hello_ok = co_await check_client_hello(attempt, target, evaluation.decision);
  if (!hello_ok) {
    outcome.error = attempt.error_text();
    co_return;
  }
  const bool committed = co_await attempt.commit();
  if (!committed) {
    outcome.error = attempt.error_text();
    co_return;
  }
  if (evaluation.decision.inspect) {
    // TLS inspection (inspect.h): the request loop inside logs each request.
    // A named local: GCC 12 mis-destroys a braced temporary passed to a coroutine.
    InspectedTunnel tunnel{worker_,          client_,  client_buffer_, std::move(pooled), route_.take(),
                           evaluation.endpoints, attempt, target,        client_addr_};
    co_await inspect_tunnel(tunnel, outcome);
    co_return;
  }
  auto upstream = route_.take();
  const auto idle = worker_.shared.config.limits.tunnel_idle_timeout;
  // Past the SNI check egress reads nothing of a plain tunnel: the kernel
  // moves its bytes (splice_relay.h).
  const bool idled = co_await relay_tcp_tunnel(client_, client_buffer_, upstream->stream(), upstream->buffer(),
                                               outcome.bytes_up, outcome.bytes_down, idle, worker_.pipes,
                                               worker_.metrics);
  if (idled) outcome.error = idle_text(idle);
}

}  // namespace egress::proxy
