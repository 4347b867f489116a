// One HTTP/1.1 exchange, written once for every client stream: a plain
// worker connection (beast::tcp_stream) and the worker-side TLS stream of an
// inspected tunnel, in the shape of Beast's run_session<Stream>. Every check
// of one path is a check of the other (docs/security.md):
//
//   read head (deadline from the first byte, strict raw check, limits)
//   → target → body limit → identify → decide → secrets → commit
//   → connect or reuse → 100-continue → relay the request
//   → response head (1xx dropped; a kept-alive upstream that turns out
//     closed is retried once on a new connection when that is safe)
//   → relay the response, or after 101 Switching Protocols relay both ways
//     as a tunnel → close.
//
// What differs between the two lives in a Route, which owns the upstream
// connection and lends it to one exchange at a time:
//   kind                    the attempt's kind (http or inspected)
//   start(attempt)          what the route knows before the head: kind, and
//                           inside a tunnel its role and host
//   parse_target(request)   absolute-form, or inside a tunnel origin-form
//                           with a Host that names the tunnel's host
//   identify(...)           from Proxy-Authorization / the source; inside a
//                           tunnel the CONNECT's role
//   decide(...)             evaluate (resolve, check) / decide_inspected
//                           against the address the tunnel is connected to
//   connect(attempt, ...)   reuse or open an upstream (checked addresses only:
//                           invariant 3); null after attempt.fail()
//   reconnect(attempt)      a new connection after a kept-alive one closed
//   reused()                the upstream carried an earlier exchange
//   done(reusable)          the exchange is over with the upstream
//   kAcceptsConnect         CONNECT is served by the caller (plain only)
#pragma once

#include <atomic>
#include <optional>

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include "egress/proxy/evaluate.h"
#include "proxy/attempt.h"
#include "proxy/head_reader.h"
#include "proxy/http_rules.h"
#include "proxy/injection.h"
#include "proxy/relay.h"
#include "proxy/scrub_relay.h"
#include "proxy/worker.h"

namespace egress::proxy {

/// How an exchange left the client connection.
enum class ExchangeEnd {
  KeepAlive,  // ready for the next request
  Close,      // over: the response ended the connection or something failed
  Refused,    // over after a refusal: let the worker read it before closing
  Connect,    // a CONNECT head is in the parser, for the caller to serve
};

/// The client side of an exchange: the stream, what has been read of it,
/// and whether it is waiting for a request to start (connection_limits.h).
template <class Stream>
struct ClientSide {
  Stream& stream;
  beast::flat_buffer& buffer;
  IdleWait& idle;
  const std::string& address;
};

/// True when the worker asks to switch protocols (RFC 9110 §7.8): an
/// Upgrade header, and Connection naming it.
bool wants_upgrade(const http::request_header<>& request);

/// Puts `Connection: upgrade` and `Upgrade: protocols` back on a head whose
/// hop-by-hop headers were removed: they are the one hop-by-hop pair a
/// proxy forwards, on the request that asks and the 101 that agrees.
void keep_upgrade(http::fields& head, std::string_view protocols);

/// Whether a request may be sent again on a new connection after its
/// kept-alive one failed before any response: no body (a body streams
/// through from the worker and is gone once sent), and a method that is
/// safe to repeat, or an idempotency key saying so (as Go's net/http).
bool is_replayable(const RequestParser& parser);

/// A failure that a connection closed by its upstream while it sat idle
/// gives on first use (and that no live upstream gives before its response
/// has begun).
bool is_closed_connection(const beast::error_code& ec);

template <class Stream, class Route>
class Exchange {
 public:
  using ResponseParser = http::response_parser<http::buffer_body>;

  Exchange(Worker& worker, ClientSide<Stream> client, Route& route, HeadOrdinal ordinal)
      : worker_(worker),
        limits_(worker.shared.config.limits),
        client_(client),
        route_(route),
        ordinal_(ordinal) {}

  /// Serves one request; the parser holds its head afterwards.
  asio::awaitable<ExchangeEnd> run(RequestParser& parser) {
    parser_ = &parser;
    const auto read = co_await read_request_head(client_.stream, client_.buffer, parser, limits_, ordinal_,
                                                 worker_.shared.draining, client_.idle);
    if (!read.ok() && !read.problem) co_return ExchangeEnd::Close;
    if (Route::kAcceptsConnect && read.ok() && parser.get().method() == http::verb::connect) {
      co_return ExchangeEnd::Connect;
    }
    // From here on the request exists: its attempt (and clock) starts now,
    // under the policy in force now.
    snapshot_ = worker_.shared.policy.load();
    attempt_.emplace(worker_.sink(), client_.address,
                     snapshot_->mode());
    const std::string_view method = read.problem ? head_method(client_.buffer) : std::string_view(parser.get().method_string());
    attempt_->set_method(std::string(method));
    route_.start(*attempt_, method);
    if (read.problem) co_return co_await refuse_head(*read.problem);
    auto& request = parser.get();
    version_ = request.version();
    keep_alive_ = request.keep_alive() && !draining();
    const bool admitted = co_await admit();
    if (!admitted) co_return end_;
    const bool answered = co_await send_request();
    if (!answered) co_return end_;
    co_return co_await relay_response();
  }

 private:
  bool draining() const { return worker_.shared.draining.load(std::memory_order_relaxed); }

  /// A head the checks refused: audited, answered (unless it timed out:
  /// the socket is gone) and the connection closed, never resynchronised,
  /// since the bytes after it may be a smuggled request.
  asio::awaitable<ExchangeEnd> refuse_head(const HeadProblem& problem) {
    attempt_->refuse(problem.reason, problem.detail);
    if (problem.status() == 0) {
      attempt_->finish({0, 0, 0, attempt_->error_text()});
      co_return ExchangeEnd::Close;
    }
    version_ = 11;
    co_return co_await refuse(false);
  }

  /// Target, body limit, identity, decision, secrets and the committed
  /// decision event; false once refused (end_ says how).
  asio::awaitable<bool> admit() {
    auto& request = parser_->get();
    auto parsed = route_.parse_target(request);
    if (!parsed.request) {
      attempt_->set_raw_target(std::string(request.target()));
      attempt_->refuse(parsed.reason, parsed.error);
      // Malformed input like a bad head: close rather than read on.
      end_ = co_await refuse(Route::kClosesOnBadTarget ? false : can_continue());
      co_return false;
    }
    target_ = std::move(*parsed.request);
    attempt_->set_target(target_);
    if (const auto problem = announced_body_problem(*parser_, limits_.max_body_bytes)) {
      attempt_->refuse(problem->reason, problem->detail);
      end_ = co_await refuse(false);
      co_return false;
    }
    if (!route_.identify(*snapshot_, request, *attempt_)) {
      end_ = co_await refuse(can_continue());
      co_return false;
    }
    evaluation_ = co_await route_.decide(*snapshot_, *attempt_, target_, request.method_string());
    if (!evaluation_.decision.allows()) {
      attempt_->set_deny_message(std::string(snapshot_->deny_message(attempt_->role())));
      end_ = co_await refuse(can_continue());
      co_return false;
    }
    co_return co_await commit();
  }

  /// The secrets this request carries, then the decision event on disk
  /// before anything goes upstream (invariant 2).
  asio::awaitable<bool> commit() {
    injection_ = plan_injection(evaluation_.decision, Route::kind, parser_->get(), worker_.shared.secrets.load());
    if (injection_.plan.missing) {
      attempt_->refuse(policy::Reason::SecretUnavailable, secret_missing_detail(*injection_.plan.missing));
      end_ = co_await refuse(can_continue());
      co_return false;
    }
    attempt_->set_injected(injection_.plan.injected_names());
    const bool committed = co_await attempt_->commit();
    if (!committed) end_ = co_await refuse(false);
    co_return committed;
  }

  /// Connects (or reuses), sends the request and reads the final response
  /// head into response_; false once refused or closed (end_ says how).
  asio::awaitable<bool> send_request() {
    upstream_ = co_await route_.connect(*attempt_, target_, evaluation_.endpoints);
    if (!upstream_) {
      end_ = co_await refuse(false);
      co_return false;
    }
    auto& request = parser_->get();
    if (beast::iequals(request[http::field::expect], "100-continue")) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      co_await asio::async_write(client_.stream, asio::buffer(kContinue), use_nothrow);
    }
    upgrade_ = wants_upgrade(request);
    const std::string upgrade(request[http::field::upgrade]);
    prepare_upstream_request(request, target_);
    if (upgrade_) keep_upgrade(request, upgrade);
    apply_injection(injection_.plan, request);
    bool may_resend = route_.reused() && is_replayable(*parser_);
    for (;;) {
      const auto ec = co_await send_once();
      if (!ec) co_return true;
      if (end_ != ExchangeEnd::KeepAlive) co_return false;  // the worker's side failed: already handled
      const bool retry = may_resend && !interim_seen_ && upstream_->buffer().size() == 0 && is_closed_connection(ec);
      if (!retry) co_return co_await fail_upstream(ec);
      may_resend = false;
      upstream_ = co_await route_.reconnect(*attempt_);
      if (!upstream_) {
        end_ = co_await refuse(false);
        co_return false;
      }
    }
  }

  /// One try: the request upstream, then the response head. The error is
  /// the upstream's; a failure on the worker's side sets end_ instead.
  asio::awaitable<beast::error_code> send_once() {
    auto sent = co_await relay_message(client_.stream, client_.buffer, *parser_, upstream_->stream(),
                                       limits_.idle_timeout, limits_.upstream_timeout);
    outcome_.bytes_up = sent.bytes_written;
    reading_response_ = false;
    if (sent.failed == RelayResult::Failed::Writing) co_return sent.ec;
    if (sent.failed == RelayResult::Failed::Reading) {
      // The upstream has a cut-off request: reset it, so it cannot take
      // what it got for a whole one.
      route_.done(false, true);
      upstream_ = nullptr;
      if (sent.ec == http::error::body_limit) {
        const auto problem = streamed_body_problem(limits_.max_body_bytes);
        attempt_->fail(problem.reason, problem.detail);
        end_ = co_await refuse(false);
      } else {
        outcome_.error = "reading the request body: " + sent.ec.message();
        attempt_->finish(outcome_);
        end_ = ExchangeEnd::Close;
      }
      co_return asio::error::operation_aborted;
    }
    reading_response_ = true;
    co_return co_await read_response_head();
  }

  /// Reads the final response head; interim 1xx responses are dropped (the
  /// proxy answered 100-continue itself), 101 is final.
  asio::awaitable<beast::error_code> read_response_head() {
    make_room_to_read(upstream_->buffer());
    for (;;) {
      response_.emplace();
      response_->header_limit(64 * 1024);
      response_->body_limit(boost::none);
      if (parser_->get().method() == http::verb::head) response_->skip(true);
      beast::get_lowest_layer(upstream_->stream()).expires_after(limits_.upstream_timeout);
      auto [ec, n] = co_await http::async_read_header(upstream_->stream(), upstream_->buffer(), *response_,
                                                      use_nothrow);
      if (ec) co_return ec;
      const auto status = response_->get().result_int();
      if (status < 100 || status >= 200 || status == 101) co_return ec;
      interim_seen_ = true;
    }
  }

  asio::awaitable<bool> fail_upstream(const beast::error_code& ec) {
    const bool timed_out = ec == beast::error::timeout;
    const auto reason = timed_out ? policy::Reason::UpstreamTimeout : policy::Reason::UpstreamUnreachable;
    const std::string what = reading_response_ ? "reading the upstream response: " : "sending the request upstream: ";
    attempt_->fail(reason, what + (timed_out ? std::string("timed out") : ec.message()));
    route_.done(false, false);
    upstream_ = nullptr;
    end_ = co_await refuse(false);
    co_return false;
  }

  asio::awaitable<ExchangeEnd> relay_response() {
    auto& head = response_->get();
    outcome_.status = head.result_int();
    if (outcome_.status == 101 && upgrade_) co_return co_await relay_upgraded();
    const bool self_delimited = response_->is_done() || response_->chunked() || response_->content_length();
    // Checked again here: a drain that began while this request was upstream
    // closes the connection after this response.
    bool keep_alive = keep_alive_ && self_delimited && !draining();
    const bool upstream_keeps = head.keep_alive() && self_delimited;
    prepare_client_response(head, version_, keep_alive);
    head.set("X-Egress-Request-Id", attempt_->request_id());
    auto received = co_await relay_response_to_worker(upstream_->stream(), upstream_->buffer(), *response_,
                                                      client_.stream, injection_.scrubber, version_, keep_alive,
                                                      limits_.upstream_timeout, limits_.idle_timeout);
    outcome_.bytes_down = received.bytes_written;
    outcome_.scrubbed = injection_.scrubber.replacements();
    const bool whole = received.failed == RelayResult::Failed::Nothing;
    if (!whole) {
      outcome_.error = (received.failed == RelayResult::Failed::Reading ? "reading the upstream response body: "
                                                                        : "sending the response to the worker: ") +
                       received.ec.message();
    }
    // Anything the upstream sent beyond the response is not ours to pass on.
    route_.done(upstream_keeps && whole && upstream_->buffer().size() == 0, false);
    attempt_->finish(outcome_);
    co_return keep_alive && whole ? ExchangeEnd::KeepAlive : ExchangeEnd::Close;
  }

  /// 101 Switching Protocols (WebSocket): the head goes to the worker, then
  /// both sides are relayed as a tunnel until one ends or nothing moves for
  /// limits.tunnel_idle_timeout. The connection is the upgraded protocol's
  /// from here on, so it ends with it.
  asio::awaitable<ExchangeEnd> relay_upgraded() {
    auto& head = response_->get();
    const std::string upgrade(head[http::field::upgrade]);
    prepare_client_response(head, version_, true);
    keep_upgrade(head, upgrade);
    head.set("X-Egress-Request-Id", attempt_->request_id());
    http::response<http::empty_body> switching(std::move(head.base()));
    beast::get_lowest_layer(client_.stream).expires_after(limits_.idle_timeout);
    auto [ec, n] = co_await http::async_write(client_.stream, switching, use_nothrow);
    outcome_.bytes_down = n;
    if (ec) {
      outcome_.error = "sending the response to the worker: " + ec.message();
    } else {
      const auto idle = co_await relay_both_ways(client_.stream, client_.buffer, upstream_->stream(),
                                                 upstream_->buffer(), outcome_.bytes_up, outcome_.bytes_down,
                                                 limits_.tunnel_idle_timeout, worker_.metrics);
      if (idle) outcome_.error = idle_text(limits_.tunnel_idle_timeout);
    }
    route_.done(false, false);
    attempt_->finish(outcome_);
    co_return ExchangeEnd::Close;
  }

  bool can_continue() const { return keep_alive_ && parser_->is_done(); }

  /// Answers the attempt's refusal (status from its reason) and finishes it.
  asio::awaitable<ExchangeEnd> refuse(bool keep_alive) {
    const int status = policy::status_for(attempt_->refusal_reason());
    auto response = refusal_response(status, *attempt_, version_, keep_alive);
    beast::get_lowest_layer(client_.stream).expires_after(limits_.idle_timeout);
    auto [ec, n] = co_await http::async_write(client_.stream, response, use_nothrow);
    attempt_->finish({status, 0, n, ec ? "writing the refusal: " + ec.message() : attempt_->error_text()});
    co_return keep_alive && !ec ? ExchangeEnd::KeepAlive : ExchangeEnd::Refused;
  }

  Worker& worker_;
  const config::Limits& limits_;
  ClientSide<Stream> client_;
  Route& route_;
  HeadOrdinal ordinal_;
  policy::PolicySnapshot snapshot_;  // one per request: a reload mid-request changes nothing here
  std::optional<Attempt> attempt_;
  RequestParser* parser_ = nullptr;
  unsigned version_ = 11;
  bool keep_alive_ = false;  // the worker's wish (and no drain)
  bool upgrade_ = false;
  bool interim_seen_ = false;     // a 1xx came: the upstream is live, no retry
  bool reading_response_ = false;  // the request was sent whole
  RequestTarget target_;
  Evaluation evaluation_;
  RequestInjection injection_;
  typename Route::Upstream* upstream_ = nullptr;  // lent by the route for this exchange
  std::optional<ResponseParser> response_;
  Attempt::Outcome outcome_;
  ExchangeEnd end_ = ExchangeEnd::KeepAlive;
};

}  // namespace egress::proxy
