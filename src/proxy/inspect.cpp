// The inspected tunnel: both TLS handshakes and the HTTP/1.1 request loop
// inside. See inspect.h for the phases.
#include "proxy/inspect.h"

#include <spdlog/spdlog.h>

#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/core/flat_stream.hpp>

#include "proxy/audit_events.h"
#include "proxy/head_reader.h"
#include "proxy/http_rules.h"
#include "proxy/injection.h"
#include "proxy/relay.h"
#include "proxy/scrub_relay.h"

namespace egress::proxy {
namespace {

using namespace asio::experimental::awaitable_operators;
using policy::Reason;
using policy::status_for;

/// A failure that a connection closed by its upstream while it sat in the
/// pool gives on first use (and that no live upstream gives before its
/// response has begun).
bool is_closed_connection(const beast::error_code& ec) {
  return ec == asio::error::eof || ec == http::error::end_of_stream || ec == asio::ssl::error::stream_truncated ||
         ec == asio::error::connection_reset || ec == asio::error::broken_pipe;
}

/// Whether a request may be sent again on a new connection after its
/// kept-alive one failed before any response: no body (a body streams
/// through from the worker and is gone once sent), and a method that is
/// safe to repeat, or an idempotency key saying so (as Go's net/http).
bool is_replayable(const RequestParser& parser) {
  if (!parser.is_done()) return false;
  const auto& request = parser.get();
  switch (request.method()) {
    case http::verb::get:
    case http::verb::head:
    case http::verb::options:
    case http::verb::trace:
      return true;
    default:
      return request.count("Idempotency-Key") > 0 || request.count("X-Idempotency-Key") > 0;
  }
}

/// TLS over a connected TCP stream to the tunnel's upstream, handshake still
/// to do. Throws tls::CaError.
UpstreamTlsPtr tls_to_upstream(const InspectedTunnel& args, beast::tcp_stream tcp, asio::ip::tcp::endpoint endpoint) {
  const auto& host = args.target.target.host;
  auto ssl = args.worker.shared.inspection->new_upstream_ssl(host.host, host.type != policy::HostType::Name);
  return std::make_unique<UpstreamTls>(std::move(tcp), std::move(ssl), authority_of(args.target.target, 0),
                                       std::move(endpoint));
}

class Inspector {
 public:
  /// `upstream` is handshaken when `pooled`.
  Inspector(InspectedTunnel& args, tls::SslPtr client_ssl, UpstreamTlsPtr upstream, bool pooled)
      : args_(args),
        limits_(args.worker.shared.config.limits),
        client_(args.client, client_ssl.release()),
        upstream_(std::move(upstream)),
        upstream_reused_(pooled) {}

  asio::awaitable<void> run(Attempt::Outcome& outcome) {
    const bool shaken = co_await handshake(outcome);
    if (shaken) {
      const auto active = admin::metrics().track_tunnel();
      for (bool first = true;; first = false) {
        const bool keep_alive = co_await serve_request(first);
        if (!keep_alive) break;
      }
      co_await close_client();
    }
    if (upstream_reusable_) args_.worker.upstream_tls.put(std::move(upstream_), std::chrono::steady_clock::now());
  }

 private:
  asio::awaitable<beast::error_code> client_handshake() {
    beast::get_lowest_layer(client_).expires_after(limits_.header_timeout);
    auto [ec, used] = co_await client_.next_layer().async_handshake(asio::ssl::stream_base::server,
                                                                    args_.client_hello.data(), use_nothrow);
    args_.client_hello.consume(args_.client_hello.size());
    co_return ec;
  }

  /// The handshake of a new upstream connection; on failure the reason is
  /// noted for the worker's first request (and the tunnel's close row).
  asio::awaitable<beast::error_code> upstream_handshake() {
    upstream_->tcp().expires_after(limits_.connect_timeout);
    auto [ec] = co_await upstream_->stream().next_layer().async_handshake(asio::ssl::stream_base::client, use_nothrow);
    if (ec) {
      note_upstream_failure(ec);
    } else {
      upstream_reusable_ = true;
      admin::metrics().count_upstream_tls(false);
    }
    co_return ec;
  }

  /// The worker's handshake, and a new upstream connection's at the same
  /// time (the worker waits for one round trip less). False when the
  /// tunnel is over: the worker's side failed.
  asio::awaitable<bool> handshake(Attempt::Outcome& outcome) {
    beast::error_code client_ec;
    if (upstream_reused_) {
      admin::metrics().count_upstream_tls(true);
      upstream_reusable_ = true;
      client_ec = co_await client_handshake();
    } else {
      auto [client_result, upstream_ec] = co_await (client_handshake() && upstream_handshake());
      client_ec = client_result;
      if (upstream_ec) outcome.error = args_.tunnel.error_text();
    }
    if (!client_ec) co_return true;
    admin::metrics().count_tls_handshake_failure(admin::Metrics::TlsStage::Client);
    const bool rejected =
        client_ec.category() == asio::error::get_ssl_category() &&
        tls::classify_handshake_error(static_cast<unsigned long>(client_ec.value())) ==
            tls::HandshakeFailure::CertificateRejected;
    std::string why = client_ec == asio::ssl::error::stream_truncated || client_ec == asio::error::eof
                          ? std::string("the worker closed the connection")
                          : client_ec.message();
    args_.tunnel.set_failure(rejected ? Reason::ClientRejectedCertificate : Reason::ClientHandshakeFailed,
                             "TLS handshake with the worker (stage client) failed: " + why);
    outcome.error = args_.tunnel.error_text();
    spdlog::warn("inspected tunnel {} to {}: {}", args_.tunnel.request_id(), args_.tunnel.host(), outcome.error);
    co_return false;
  }

  void note_upstream_failure(const beast::error_code& ec) {
    admin::metrics().count_tls_handshake_failure(admin::Metrics::TlsStage::Upstream);
    const auto verify = tls::verification_error(upstream_->stream().next_layer().native_handle());
    if (!verify.empty()) {
      upstream_reason_ = Reason::UpstreamCertInvalid;
      upstream_error_ = "the certificate of " + args_.target.target.host.host + " failed verification: " + verify;
    } else {
      upstream_reason_ = ec == beast::error::timeout ? Reason::UpstreamTimeout : Reason::UpstreamUnreachable;
      upstream_error_ = "TLS handshake with the upstream (stage upstream) failed: " + ec.message();
    }
    args_.tunnel.set_failure(*upstream_reason_, upstream_error_);
    spdlog::warn("inspected tunnel {} to {}: {}", args_.tunnel.request_id(), args_.tunnel.host(),
                 args_.tunnel.error_text());
  }

  /// Replaces a kept-alive connection that turned out closed: a new TCP
  /// connection to one of the tunnel's checked addresses and a verified
  /// handshake. False (the reason noted) when that fails.
  asio::awaitable<bool> reopen_upstream() {
    upstream_.reset();
    upstream_reusable_ = upstream_reused_ = false;
    auto connected = co_await connect_checked(args_.endpoints, limits_.connect_timeout);
    if (connected.ec) {
      upstream_reason_ = connected.reason();
      upstream_error_ = connected.failure(authority_of(args_.target.target, 0));
      co_return false;
    }
    try {
      upstream_ = tls_to_upstream(args_, std::move(connected.stream), connected.endpoint);
    } catch (const tls::CaError& e) {
      upstream_reason_ = Reason::UpstreamUnreachable;
      upstream_error_ = std::string("preparing TLS towards the upstream: ") + e.what();
      co_return false;
    }
    const auto handshake_ec = co_await upstream_handshake();
    co_return !handshake_ec;
  }

  /// One request: false when the connection is over. The head is read and
  /// checked exactly as on a plain connection (head_reader.h).
  asio::awaitable<bool> serve_request(bool first) {
    co_await keep_pace_with_audit_writer(args_.worker.shared.audit);
    RequestParser parser;
    bool awaiting = false;
    const auto read = co_await read_request_head(client_, client_buffer_, parser, limits_,
                                                 first ? HeadOrdinal::First : HeadOrdinal::Later,
                                                 args_.worker.shared.draining, awaiting);
    if (!read.ok() && !read.problem) co_return false;
    const auto snapshot = args_.worker.shared.policy.load();
    Attempt attempt(args_.client_addr, snapshot->mode());
    attempt.set_kind(policy::RequestKind::Inspected);
    attempt.set_role(args_.tunnel.role());
    attempt.set_sni(args_.target.target.host.host);
    attempt.set_raw_target(args_.target.target.host.host);
    if (read.problem) {
      attempt.set_method(std::string(head_method(client_buffer_)));
      co_return co_await refuse_problem(attempt, *read.problem);
    }
    co_return co_await decide_and_forward(*snapshot, attempt, parser);
  }

  /// A head or body refused by the checks: audited, answered (unless it
  /// timed out: the socket is gone) and the tunnel closed, never
  /// resynchronised, since the bytes after it may be a smuggled request.
  asio::awaitable<bool> refuse_problem(Attempt& attempt, const HeadProblem& problem) {
    attempt.set_refusal(problem.reason, problem.detail);
    args_.worker.shared.audit.record(attempt.decision_event());
    if (problem.status == 0) {
      record_close(args_.worker, attempt, {0, 0, 0, attempt.error_text()});
      co_return false;
    }
    co_await refuse(attempt, problem.status, 11, false);
    co_return false;
  }

  asio::awaitable<bool> decide_and_forward(const policy::Policy& policy, Attempt& attempt, RequestParser& parser) {
    auto& request = parser.get();
    attempt.set_method(std::string(request.method_string()));
    const unsigned version = request.version();
    const bool can_continue = request.keep_alive() && parser.is_done();
    auto parsed = parse_inspected_target(request.target(), request[http::field::host], version, args_.target.target);
    if (!parsed.request) {
      attempt.set_refusal(parsed.reason, parsed.error);
      args_.worker.shared.audit.record(attempt.decision_event());
      co_return co_await refuse(attempt, parsed.status, version, can_continue);
    }
    const RequestTarget& target = *parsed.request;
    attempt.set_target(target);
    if (const auto problem = announced_body_problem(parser, limits_.max_body_bytes)) {
      co_return co_await refuse_problem(attempt, *problem);
    }
    const auto upstream_endpoint = upstream_ ? upstream_->endpoint() : args_.fresh_endpoint;
    attempt.set_upstream(endpoint_text(upstream_endpoint));
    // Methods and paths are visible now. The addresses were resolved and
    // checked for the CONNECT; the inner request is checked against the
    // address this tunnel is connected to (invariant 3: no new lookup).
    const auto decision =
        decide_inspected(policy, target, request.method_string(), attempt.role(), upstream_endpoint.address());
    attempt.set_decision(decision);
    if (!decision.allows()) {
      attempt.set_deny_message(std::string(policy.deny_message(attempt.role())));
      args_.worker.shared.audit.record(attempt.decision_event());
      co_return co_await refuse(attempt, 403, version, can_continue);
    }
    RequestInjection injection = plan_injection(decision, policy::RequestKind::Inspected, request,
                                         args_.worker.shared.secrets.load());
    if (injection.plan.missing) {
      attempt.set_refusal(Reason::SecretUnavailable, secret_missing_detail(*injection.plan.missing));
      args_.worker.shared.audit.record(attempt.decision_event());
      co_return co_await refuse(attempt, 503, version, can_continue);
    }
    attempt.set_injected(injection.plan.injected_names());
    const bool committed = co_await commit_event(args_.worker.shared.audit, attempt.decision_event());
    if (!committed) {
      attempt.set_failure(Reason::AuditUnavailable, "the audit log cannot be written; egress refuses new traffic");
      co_return co_await refuse(attempt, 503, version, false);
    }
    if (upstream_reason_) {
      attempt.set_failure(*upstream_reason_, upstream_error_);
      co_return co_await refuse(attempt, status_for(*upstream_reason_), version, false);
    }
    co_return co_await forward(attempt, parser, target, injection);
  }

  using ResponseParser = http::response_parser<http::buffer_body>;

  /// Reads the final response head into `response`; interim 1xx responses
  /// are dropped, as in plain HTTP forwarding. `interim` counts them.
  asio::awaitable<beast::error_code> read_response_head(std::optional<ResponseParser>& response, bool head_request,
                                                        int& interim) {
    make_room_to_read(upstream_->buffer());
    for (;; ++interim) {
      response.emplace();
      response->header_limit(64 * 1024);
      response->body_limit(boost::none);
      if (head_request) response->skip(true);
      upstream_->tcp().expires_after(limits_.upstream_timeout);
      auto [ec, n] = co_await http::async_read_header(upstream_->stream(), upstream_->buffer(), *response, use_nothrow);
      if (ec) co_return ec;
      const auto status = response->get().result_int();
      if (status < 100 || status >= 200 || status == 101) co_return ec;
    }
  }

  asio::awaitable<bool> forward(Attempt& attempt, RequestParser& parser, const RequestTarget& target,
                                RequestInjection& injection) {
    auto& request = parser.get();
    const unsigned version = request.version();
    const bool client_keep_alive = request.keep_alive();
    const bool head_request = request.method() == http::verb::head;
    if (beast::iequals(request[http::field::expect], "100-continue")) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      co_await asio::async_write(client_, asio::buffer(kContinue), use_nothrow);
    }
    prepare_upstream_request(request, target);
    apply_injection(injection.plan, request);
    bool may_resend = upstream_reused_ && is_replayable(parser);
    upstream_reusable_ = false;  // until a response has been relayed whole
    Attempt::Outcome outcome;
    std::optional<ResponseParser> response;
    for (;;) {
      auto sent = co_await relay_message(client_, client_buffer_, parser, upstream_->stream(), limits_.idle_timeout,
                                         limits_.upstream_timeout);
      outcome.bytes_up = sent.bytes_written;
      if (sent.failed == RelayResult::Failed::Reading && sent.ec == http::error::body_limit) {
        // The upstream has a cut-off request: reset it, so it cannot take
        // what it got for a whole one, and never pool it.
        abort_upstream();
        const auto problem = streamed_body_problem(limits_.max_body_bytes);
        attempt.set_failure(problem.reason, problem.detail);
        co_return co_await refuse(attempt, problem.status, version, false);
      }
      if (sent.failed == RelayResult::Failed::Reading) {
        outcome.error = "reading the request body: " + sent.ec.message();
        record_close(args_.worker, attempt, outcome);
        co_return false;
      }
      int interim = 0;
      const auto ec = sent.failed == RelayResult::Failed::Writing
                          ? sent.ec
                          : co_await read_response_head(response, head_request, interim);
      if (!ec) break;
      if (may_resend && interim == 0 && upstream_->buffer().size() == 0 && is_closed_connection(ec)) {
        may_resend = false;
        spdlog::debug("inspected request {}: the kept-alive connection to {} was closed ({}); sending it again "
                      "on a new one",
                      attempt.request_id(), upstream_->key(), ec.message());
        const bool reopened = co_await reopen_upstream();
        if (reopened) continue;
        attempt.set_failure(*upstream_reason_, upstream_error_);
        co_return co_await refuse(attempt, status_for(*upstream_reason_), version, false);
      }
      const bool timed_out = ec == beast::error::timeout;
      const auto reason = timed_out ? Reason::UpstreamTimeout : Reason::UpstreamUnreachable;
      const std::string what = sent.failed == RelayResult::Failed::Writing ? "sending the request upstream: "
                                                                            : "reading the upstream response: ";
      attempt.set_failure(reason, what + (timed_out ? std::string("timed out") : ec.message()));
      co_return co_await refuse(attempt, status_for(reason), version, false);
    }
    auto& head = response->get();
    // The tunnel has this one upstream connection: when it cannot carry
    // another request, the worker's connection ends with it.
    const bool self_delimited = response->is_done() || response->chunked() || response->content_length().has_value();
    // A drain (SIGTERM) ends the tunnel after this response, as it ends a
    // plain kept-alive connection.
    bool keep_alive = client_keep_alive && self_delimited && head.keep_alive() &&
                            !args_.worker.shared.draining.load(std::memory_order_relaxed);
    const bool upstream_keeps = self_delimited && head.keep_alive();
    outcome.status = head.result_int();
    prepare_client_response(head, version, keep_alive);
    head.set("X-Egress-Request-Id", attempt.request_id());
    auto received = co_await relay_response_to_worker(upstream_->stream(), upstream_->buffer(), *response, client_,
                                                      injection.scrubber, version, keep_alive,
                                                      limits_.upstream_timeout, limits_.idle_timeout);
    outcome.bytes_down = received.bytes_written;
    outcome.scrubbed = injection.scrubber.replacements();
    if (received.failed != RelayResult::Failed::Nothing) {
      outcome.error = (received.failed == RelayResult::Failed::Reading ? "reading the upstream response body: "
                                                                       : "sending the response to the worker: ") +
                      received.ec.message();
    }
    // Anything the upstream sent beyond the response is not ours to pass on.
    upstream_reusable_ =
        upstream_keeps && received.failed == RelayResult::Failed::Nothing && upstream_->buffer().size() == 0;
    upstream_reused_ = true;
    release_room(upstream_->buffer());
    record_close(args_.worker, attempt, outcome);
    co_return keep_alive && received.failed == RelayResult::Failed::Nothing;
  }

  void abort_upstream() {
    beast::error_code ignored;
    upstream_->tcp().socket().set_option(asio::socket_base::linger(true, 0), ignored);
    upstream_->tcp().socket().close(ignored);
    upstream_reusable_ = false;
  }

  asio::awaitable<bool> refuse(Attempt& attempt, int status, unsigned version, bool keep_alive) {
    auto response = refusal_response(status, attempt, version, keep_alive);
    beast::get_lowest_layer(client_).expires_after(limits_.idle_timeout);
    auto [ec, n] = co_await http::async_write(client_, response, use_nothrow);
    record_close(args_.worker, attempt,
                 {status, 0, n, ec ? "writing the refusal: " + ec.message() : attempt.error_text()});
    co_return keep_alive && !ec;
  }

  /// Ends the worker's TLS session with close_notify, so a worker reading to
  /// the end of the stream sees a clean end rather than a truncation. The
  /// worker's own close_notify is not waited for (RFC 8446 §6.1 lets the
  /// side that closes first close at once): marking it received makes the
  /// shutdown send ours and return.
  asio::awaitable<void> close_client() {
    SSL_set_shutdown(client_.next_layer().native_handle(), SSL_RECEIVED_SHUTDOWN);
    beast::get_lowest_layer(client_).expires_after(std::chrono::seconds(1));
    // Any outcome is fine here: the requests are logged and the tunnel ends.
    co_await client_.next_layer().async_shutdown(use_nothrow);
    beast::get_lowest_layer(client_).expires_never();
  }

  InspectedTunnel& args_;
  const config::Limits& limits_;
  UpstreamTls::Stream client_;  // the same TLS-over-TCP stack as the upstream side
  beast::flat_buffer client_buffer_;
  UpstreamTlsPtr upstream_;
  bool upstream_reused_;  // carried an earlier exchange (maybe another tunnel's): it may be closed by now
  bool upstream_reusable_ = false;  // idle after a complete exchange: may go back to the pool
  std::optional<Reason> upstream_reason_;  // set when the upstream cannot be used
  std::string upstream_error_;
};

}  // namespace

asio::awaitable<void> inspect_tunnel(InspectedTunnel& args, Attempt::Outcome& outcome) {
  const auto& inspection = args.worker.shared.inspection;
  const auto& host = args.target.target.host;
  if (!inspection) {
    // serve refuses inspect rules without a CA, so this is a bug; fail closed.
    args.tunnel.set_failure(Reason::ClientHandshakeFailed, "inspection requested but no CA is configured");
    outcome.error = args.tunnel.error_text();
    co_return;
  }
  std::optional<Inspector> inspector;
  try {
    const auto now = std::chrono::system_clock::now();
    const auto& minter = inspection->minter();
    auto leaf = args.worker.cert_cache.get(host.host, now, minter.validity(),
                                           [&](std::string_view name) { return minter.mint(name, now); });
    admin::metrics().count_cert_cache(leaf.hit);
    if (!leaf.hit) spdlog::debug("minted a leaf certificate for {} (certificate cache miss)", host.host);
    const bool pooled = args.pooled != nullptr;
    auto upstream =
        pooled ? std::move(args.pooled) : tls_to_upstream(args, std::move(*args.fresh), args.fresh_endpoint);
    inspector.emplace(args, inspection->new_server_ssl(leaf.cert.get()), std::move(upstream), pooled);
  } catch (const tls::CaError& e) {
    args.tunnel.set_failure(Reason::ClientHandshakeFailed, std::string("preparing TLS: ") + e.what());
    outcome.error = args.tunnel.error_text();
    co_return;
  }
  co_await inspector->run(outcome);
}

}  // namespace egress::proxy
