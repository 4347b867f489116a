// A worker connection: the request loop, plain-HTTP forwarding and CONNECT
// tunnels. See session.h for the phases and states.
#include "proxy/session.h"

#include <spdlog/spdlog.h>

#include "proxy/audit_events.h"
#include "proxy/client_hello.h"
#include "proxy/head_reader.h"
#include "proxy/http_rules.h"
#include "proxy/identity.h"
#include "proxy/injection.h"
#include "proxy/inspect.h"
#include "proxy/relay.h"
#include "proxy/scrub_relay.h"
#include "proxy/upstream_pool.h"

namespace egress::proxy {
namespace {

using namespace asio::experimental::awaitable_operators;
using tcp = asio::ip::tcp;
using policy::Reason;

bool expects_continue(const http::request_header<>& head) {
  const auto expect = head[http::field::expect];
  return beast::iequals(expect, "100-continue");
}

/// Closes the upstream with a reset rather than a FIN, so the upstream
/// cannot take a cut-off request body for a complete one.
void abort_connection(beast::tcp_stream& stream) {
  beast::error_code ignored;
  stream.socket().set_option(asio::socket_base::linger(true, 0), ignored);
  stream.socket().close(ignored);
}

}  // namespace

Session::Session(Worker& worker, tcp::socket socket, ConnectionLimiter::Admission admission)
    : worker_(worker),
      ticket_(std::move(admission.ticket)),
      limit_refusal_(admission.refusal),
      client_(std::move(socket)) {
  beast::error_code ec;
  const auto remote = client_.socket().remote_endpoint(ec);
  client_addr_ = ec ? "unknown" : endpoint_text(remote);
  if (!ec) client_ip_ = to_policy_address(remote.address());
  registration_ = worker_.sessions.insert(worker_.sessions.end(), this);
  ++worker_.shared.active_sessions;
}

Session::~Session() {
  worker_.sessions.erase(registration_);
  --worker_.shared.active_sessions;
}

void Session::close_if_idle() {
  if (!awaiting_request_) return;
  beast::error_code ignored;
  client_.socket().close(ignored);
}

void Session::abort() {
  beast::error_code ignored;
  client_.socket().close(ignored);
  if (upstream_) upstream_->stream.socket().close(ignored);
}

bool Session::identify_worker(const policy::Policy& policy, const http::request_header<>& request,
                              Attempt& attempt) {
  const auto identity = identify(policy, client_ip_, request[http::field::proxy_authorization]);
  attempt.set_role(identity.role);
  if (!identity.rejected) return true;
  attempt.set_refusal(Reason::UnknownToken, identity.error);
  worker_.shared.audit.record(attempt.decision_event());
  return false;
}

void Session::record_close(const Attempt& attempt, const Attempt::Outcome& outcome) {
  proxy::record_close(worker_, attempt, outcome);
}

asio::awaitable<void> Session::run() {
  if (!ticket_) {
    co_await refuse_connection();
    co_return;
  }
  bool first = true;
  for (;;) {
    co_await keep_pace_with_audit_writer(worker_.shared.audit);
    RequestParser parser;
    const bool have_request = co_await read_request(parser, first);
    if (!have_request) co_return;
    first = false;
    if (parser.get().method() == http::verb::connect) {
      co_await serve_connect(parser);
      co_return;
    }
    const bool keep_alive = co_await serve_request(parser);
    if (!keep_alive) co_return;
  }
}

asio::awaitable<Session::Admission> Session::decide(const policy::Policy& policy, Attempt& attempt,
                                                    const RequestTarget& target, std::string_view method) {
  Admission out;
  out.evaluation = co_await evaluate(policy, *worker_.resolver, target, method, attempt.role());
  out.refusal_status = out.evaluation.refusal_status;
  attempt.set_decision(out.evaluation.decision);
  if (!out.evaluation.decision.allows()) {
    attempt.set_deny_message(std::string(policy.deny_message(attempt.role())));
    worker_.shared.audit.record(attempt.decision_event());
    co_return out;
  }
  out.admitted = true;
  co_return out;
}

// Results of co_await are kept in named locals throughout this file rather
// than used inside `if (!co_await …)`: GCC 12 miscompiled that form here (the
// callee's frame saw a garbage reference and crashed).
asio::awaitable<bool> Session::commit_decision(Attempt& attempt) {
  auto event = attempt.decision_event();
  const bool committed = co_await commit_event(worker_.shared.audit, std::move(event));
  if (committed) co_return true;
  // Fail closed: nothing leaves unless its decision is on disk.
  attempt.set_failure(Reason::AuditUnavailable, "the audit log cannot be written; egress refuses new traffic");
  co_return false;
}

asio::awaitable<bool> Session::check_client_hello(Attempt& attempt, const RequestTarget& target,
                                                  const policy::Decision& decision) {
  const auto refuse_tunnel = [&](Reason reason, std::string detail) {
    policy::Decision refused;
    refused.verdict = policy::Verdict::Deny;
    refused.reason = reason;
    refused.detail = std::move(detail);
    attempt.set_decision(refused);
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

asio::awaitable<int> Session::connect_upstream(Attempt& attempt, const RequestTarget& target,
                                               const Evaluation& evaluation) {
  const auto key = authority_of(target.target, 0);
  const auto& endpoints = evaluation.endpoints;
  const bool reusable = upstream_ && upstream_->key == key && still_open(upstream_->stream.socket()) &&
                        std::find(endpoints.begin(), endpoints.end(), upstream_->endpoint) != endpoints.end();
  if (!reusable) {
    upstream_.reset();
    auto connected = co_await connect_checked(endpoints, worker_.shared.config.limits.connect_timeout);
    if (connected.ec) {
      attempt.set_failure(connected.reason(), connected.failure(key));
      co_return policy::status_for(connected.reason());
    }
    upstream_.emplace(Upstream{std::move(connected.stream), {}, key, connected.endpoint});
  }
  attempt.set_upstream(endpoint_text(upstream_->endpoint));
  co_return 0;
}

asio::awaitable<bool> Session::serve_request(RequestParser& parser) {
  const auto& limits = worker_.shared.config.limits;
  auto& request = parser.get();
  // One snapshot per request: a reload mid-request does not change the
  // rules this request is decided and identified under.
  const auto snapshot = worker_.shared.policy.load();
  Attempt attempt = new_attempt(snapshot->mode());
  attempt.set_kind(policy::RequestKind::Http);
  attempt.set_method(std::string(request.method_string()));
  const unsigned version = request.version();
  const bool client_keep_alive = request.keep_alive() && !worker_.shared.draining.load(std::memory_order_relaxed);

  auto parsed = parse_absolute_target(request.target());
  if (!parsed.request) {
    attempt.set_raw_target(std::string(request.target()));
    attempt.set_refusal(parsed.reason, parsed.error);
    worker_.shared.audit.record(attempt.decision_event());
    // A target that cannot be parsed (userinfo, a bad host) is malformed
    // input like a bad head: close rather than read on from there.
    co_return co_await refuse(attempt, parsed.status, version, false);
  }
  const RequestTarget& target = *parsed.request;
  attempt.set_target(target);
  const bool body_refused = co_await refuse_large_body(parser, attempt);
  if (body_refused) co_return false;
  if (!identify_worker(*snapshot, request, attempt)) {
    co_return co_await refuse(attempt, 407, version, client_keep_alive && parser.is_done());
  }

  const auto admission = co_await decide(*snapshot, attempt, target, request.method_string());
  if (!admission.admitted) {
    co_return co_await refuse(attempt, admission.refusal_status, version, client_keep_alive && parser.is_done());
  }
  RequestInjection injection = plan_injection(admission.evaluation.decision, policy::RequestKind::Http, request,
                                              worker_.shared.secrets.load());
  if (injection.plan.missing) {
    attempt.set_refusal(Reason::SecretUnavailable, secret_missing_detail(*injection.plan.missing));
    worker_.shared.audit.record(attempt.decision_event());
    co_return co_await refuse(attempt, 503, version, client_keep_alive && parser.is_done());
  }
  attempt.set_injected(injection.plan.injected_names());
  const bool committed = co_await commit_decision(attempt);
  if (!committed) co_return co_await refuse(attempt, 503, version, client_keep_alive && parser.is_done());
  if (const int status = co_await connect_upstream(attempt, target, admission.evaluation)) {
    co_return co_await refuse(attempt, status, version, false);
  }

  if (expects_continue(request)) {
    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    co_await asio::async_write(client_, asio::buffer(kContinue), use_nothrow);
  }
  prepare_upstream_request(request, target);
  apply_injection(injection.plan, request);
  Attempt::Outcome outcome;
  auto sent = co_await relay_message(client_, client_buffer_, parser, upstream_->stream, limits.idle_timeout,
                                     limits.upstream_timeout);
  outcome.bytes_up = sent.bytes_written;
  if (sent.failed != RelayResult::Failed::Nothing) {
    abort_connection(upstream_->stream);
    upstream_.reset();
    if (sent.failed == RelayResult::Failed::Reading && sent.ec == http::error::body_limit) {
      const auto problem = streamed_body_problem(limits.max_body_bytes);
      attempt.set_failure(problem.reason, problem.detail);
      co_return co_await refuse(attempt, problem.status, version, false);
    }
    if (sent.failed == RelayResult::Failed::Reading) {
      outcome.error = "reading the request body: " + sent.ec.message();
      record_close(attempt, outcome);
      co_return false;
    }
    attempt.set_failure(Reason::UpstreamUnreachable, "sending the request upstream: " + sent.ec.message());
    co_return co_await refuse(attempt, 502, version, false);
  }

  // Interim 1xx responses are dropped: the proxy answered 100-continue
  // itself, and Upgrade was removed, so none needs forwarding.
  std::optional<http::response_parser<http::buffer_body>> response;
  make_room_to_read(upstream_->buffer);
  for (;;) {
    response.emplace();
    response->header_limit(64 * 1024);
    response->body_limit(boost::none);
    if (request.method() == http::verb::head) response->skip(true);
    upstream_->stream.expires_after(limits.upstream_timeout);
    auto [ec, n] = co_await http::async_read_header(upstream_->stream, upstream_->buffer, *response, use_nothrow);
    if (ec) {
      const bool timed_out = ec == beast::error::timeout;
      attempt.set_failure(timed_out ? Reason::UpstreamTimeout : Reason::UpstreamUnreachable,
                          "reading the upstream response: " + (timed_out ? std::string("timed out") : ec.message()));
      upstream_.reset();
      co_return co_await refuse(attempt, timed_out ? 504 : 502, version, false);
    }
    const auto status = response->get().result_int();
    if (status < 100 || status >= 200 || status == 101) break;
  }

  auto& head = response->get();
  const bool self_delimited = response->is_done() || response->chunked() || response->content_length().has_value();
  // Checked again here: a drain that began while this request was upstream
  // closes the connection after this response.
  bool keep_alive = client_keep_alive && self_delimited && !worker_.shared.draining.load(std::memory_order_relaxed);
  const bool upstream_reusable = head.keep_alive() && self_delimited;
  outcome.status = head.result_int();
  prepare_client_response(head, version, keep_alive);
  head.set("X-Egress-Request-Id", attempt.request_id());
  auto received = co_await relay_response_to_worker(upstream_->stream, upstream_->buffer, *response, client_,
                                                    injection.scrubber, version, keep_alive, limits.upstream_timeout,
                                                    limits.idle_timeout);
  outcome.bytes_down = received.bytes_written;
  outcome.scrubbed = injection.scrubber.replacements();
  if (received.failed != RelayResult::Failed::Nothing) {
    outcome.error = (received.failed == RelayResult::Failed::Reading ? "reading the upstream response body: "
                                                                     : "sending the response to the worker: ") +
                    received.ec.message();
  }
  if (!upstream_reusable || received.failed != RelayResult::Failed::Nothing) {
    upstream_.reset();
  } else {
    release_room(upstream_->buffer);
  }
  record_close(attempt, outcome);
  co_return keep_alive && received.failed == RelayResult::Failed::Nothing;
}

asio::awaitable<void> Session::serve_connect(RequestParser& parser) {
  auto& request = parser.get();
  const auto snapshot = worker_.shared.policy.load();
  Attempt attempt = new_attempt(snapshot->mode());
  attempt.set_kind(policy::RequestKind::Connect);
  attempt.set_method("CONNECT");
  const unsigned version = request.version();

  auto parsed = parse_connect_target(request.target());
  if (!parsed.request) {
    attempt.set_raw_target(std::string(request.target()));
    attempt.set_refusal(parsed.reason, parsed.error);
    worker_.shared.audit.record(attempt.decision_event());
    co_await refuse(attempt, parsed.status, version, false);
    co_return;
  }
  const RequestTarget& target = *parsed.request;
  attempt.set_target(target);
  if (!identify_worker(*snapshot, request, attempt)) {
    co_await refuse(attempt, 407, version, false);
    co_return;
  }

  const auto admission = co_await decide(*snapshot, attempt, target, "CONNECT");
  if (!admission.admitted) {
    co_await refuse(attempt, admission.refusal_status, version, false);
    co_return;
  }
  // The upstream TCP connection is opened before the 200 so that a dead
  // upstream is a clean 502; no payload goes to it before the ClientHello
  // is checked and the decision committed. An inspected tunnel may instead
  // take an idle TLS connection to the same upstream (upstream_pool.h).
  const bool inspect = admission.evaluation.decision.inspect;
  UpstreamTlsPtr pooled;
  if (inspect) {
    pooled = worker_.upstream_tls.take(authority_of(target.target, 0), admission.evaluation.endpoints,
                                       std::chrono::steady_clock::now());
  }
  if (pooled) {
    attempt.set_upstream(endpoint_text(pooled->endpoint()));
  } else if (const int status = co_await connect_upstream(attempt, target, admission.evaluation)) {
    worker_.shared.audit.record(attempt.decision_event());
    co_await refuse(attempt, status, version, false);
    co_return;
  }

  const auto established =
      "HTTP/1.1 200 Connection established\r\nX-Egress-Request-Id: " + attempt.request_id() + "\r\n\r\n";
  Attempt::Outcome outcome{200, 0, 0, ""};
  client_.expires_after(worker_.shared.config.limits.idle_timeout);
  auto [ec, n] = co_await asio::async_write(client_, asio::buffer(established), use_nothrow);
  if (ec) {
    outcome.error = "sending 200 to the worker: " + ec.message();
    worker_.shared.audit.record(attempt.decision_event());
    record_close(attempt, outcome);
    co_return;
  }
  outcome.bytes_down = n;
  const bool hello_ok = co_await check_client_hello(attempt, target, admission.evaluation.decision);
  if (!hello_ok) {
    worker_.shared.audit.record(attempt.decision_event());
    outcome.error = attempt.error_text();
    record_close(attempt, outcome);
    co_return;
  }
  const bool committed = co_await commit_decision(attempt);
  if (!committed) {
    outcome.error = attempt.error_text();
    record_close(attempt, outcome);
    co_return;
  }
  if (inspect) {
    // TLS inspection (inspect.h): the request loop inside logs each request.
    // A named local: GCC 12 mis-destroys a braced temporary passed to a coroutine.
    const bool fresh = !pooled;
    InspectedTunnel tunnel{worker_,
                           client_,
                           client_buffer_,
                           std::move(pooled),
                           fresh ? &upstream_->stream : nullptr,
                           fresh ? upstream_->endpoint : tcp::endpoint(),
                           admission.evaluation.endpoints,
                           attempt,
                           target,
                           client_addr_};
    co_await inspect_tunnel(tunnel, outcome);
    upstream_.reset();  // its stream, if any, was handed to the inspection
  } else {
    co_await relay_tunnel(outcome);
  }
  record_close(attempt, outcome);
}

asio::awaitable<void> Session::relay_tunnel(Attempt::Outcome& outcome) {
  auto& client = client_.socket();
  auto& upstream = upstream_->stream.socket();
  // Bytes the worker sent right behind its CONNECT head (a TLS
  // ClientHello, usually) are already in our buffer: they go first.
  client_.expires_never();
  upstream_->stream.expires_never();
  if (client_buffer_.size() > 0) {
    auto [ec, n] = co_await asio::async_write(upstream, client_buffer_.data(), use_nothrow);
    outcome.bytes_up += n;
    client_buffer_.consume(client_buffer_.size());
    if (ec) {
      outcome.error = "sending to the upstream: " + ec.message();
      co_return;
    }
  }
  const auto active = admin::metrics().track_tunnel();
  auto last_activity = std::chrono::steady_clock::now();
  const auto idle = worker_.shared.config.limits.tunnel_idle_timeout;
  auto result = co_await ((pump(client, upstream, outcome.bytes_up, last_activity) &&
                           pump(upstream, client, outcome.bytes_down, last_activity)) ||
                          idle_watchdog(last_activity, idle));
  if (result.index() == 1) outcome.error = std::string("tunnel idle for ").append(std::to_string(idle.count())).append(" ms");
}

}  // namespace egress::proxy
