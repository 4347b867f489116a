// The inspected tunnel: both TLS handshakes, and the route of the
// exchanges inside (exchange.h). See inspect.h for the phases.
#include "proxy/inspect.h"

#include <spdlog/spdlog.h>

#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/core/flat_stream.hpp>

#include "proxy/exchange.h"

namespace egress::proxy {
namespace {

using namespace asio::experimental::awaitable_operators;
using policy::Reason;
using policy::status_for;

/// TLS over a connected TCP stream to the tunnel's upstream, handshake still
/// to do. Throws tls::CaError.
UpstreamTlsPtr tls_to_upstream(const InspectedTunnel& args, beast::tcp_stream tcp, asio::ip::tcp::endpoint endpoint) {
  const auto& host = args.target.target.host;
  auto ssl = args.worker.shared.inspection->new_upstream_ssl(host.host, host.type != policy::HostType::Name);
  return std::make_unique<UpstreamTls>(std::move(tcp), std::move(ssl), authority_of(args.target.target, 0),
                                       std::move(endpoint));
}

/// The inspected tunnel: both handshakes, then the exchange's route
/// (exchange.h) for the requests inside, owning the upstream connection.
class Inspector {
 public:
  using Upstream = UpstreamTls;
  static constexpr auto kind = policy::RequestKind::Inspected;
  static constexpr bool kAcceptsConnect = false;
  static constexpr bool kClosesOnBadTarget = false;

  /// `upstream` is handshaken when `pooled`.
  Inspector(InspectedTunnel& args, tls::SslPtr client_ssl, UpstreamTlsPtr upstream, bool pooled)
      : args_(args),
        limits_(args.worker.shared.config.limits),
        client_(args.client, client_ssl.release()),
        upstream_(std::move(upstream)),
        endpoint_(upstream_->endpoint()),
        reused_(pooled) {}

  asio::awaitable<void> run(Attempt::Outcome& outcome) {
    const bool shaken = co_await handshake(outcome);
    if (shaken) {
      const auto active = args_.worker.metrics.track_tunnel();
      for (auto ordinal = HeadOrdinal::First;; ordinal = HeadOrdinal::Later) {
        co_await keep_pace_with_audit_writer(args_.worker.shared.audit);
        RequestParser parser;
        Exchange<UpstreamTls::Stream, Inspector> exchange(
            args_.worker, ClientSide<UpstreamTls::Stream>{client_, client_buffer_, idle_, args_.client_addr},
            *this, ordinal);
        const auto end = co_await exchange.run(parser);
        if (end != ExchangeEnd::KeepAlive) break;
      }
      co_await close_client();
    }
    if (upstream_ && reusable_) args_.worker.upstream_tls.put(std::move(upstream_), args_.worker.now());
  }

  // The route (exchange.h).
  void start(Attempt& attempt, std::string_view) const {
    attempt.set_kind(kind);
    attempt.set_role(args_.tunnel.role());
    attempt.set_sni(args_.target.target.host.host);
    attempt.set_raw_target(args_.target.target.host.host);
  }
  ParsedTarget parse_target(const http::request_header<>& request) const {
    return parse_inspected_target(request.target(), request[http::field::host], request.version(),
                                  args_.target.target);
  }
  bool identify(const policy::Policy&, const http::request_header<>&, Attempt&) const {
    return true;  // the CONNECT's role, set in start()
  }
  /// Methods and paths are visible now. The addresses were resolved and
  /// checked for the CONNECT; the request is checked against the address
  /// this tunnel is connected to (invariant 3: no new lookup).
  asio::awaitable<Evaluation> decide(const policy::Policy& policy, Attempt& attempt, const RequestTarget& target,
                                     std::string_view method) {
    Evaluation out;
    const auto& endpoint = upstream_ ? upstream_->endpoint() : endpoint_;
    attempt.set_upstream(endpoint_text(endpoint));
    out.decision = decide_inspected(policy, target, method, attempt.role(), endpoint.address());
    attempt.decide(out.decision);
    co_return out;
  }
  asio::awaitable<UpstreamTls*> connect(Attempt& attempt, const RequestTarget&,
                                        std::span<const asio::ip::tcp::endpoint>) {
    if (upstream_reason_) {
      attempt.fail(*upstream_reason_, upstream_error_);
      co_return nullptr;
    }
    if (!upstream_) co_return co_await reconnect(attempt);
    reusable_ = false;  // until a response has been relayed whole
    co_return upstream_.get();
  }
  /// A new TCP connection to one of the tunnel's checked addresses and a
  /// verified handshake; null (the attempt failed) when that fails.
  asio::awaitable<UpstreamTls*> reconnect(Attempt& attempt) {
    const bool reopened = co_await reopen_upstream();
    if (!reopened) {
      attempt.fail(*upstream_reason_, upstream_error_);
      co_return nullptr;
    }
    attempt.set_upstream(endpoint_text(upstream_->endpoint()));
    reusable_ = false;
    co_return upstream_.get();
  }
  bool reused() const { return reused_; }
  void done(bool reusable, bool reset) {
    if (!upstream_) return;
    if (reset) reset_connection(upstream_->tcp());
    if (!reusable) {
      upstream_.reset();
      return;
    }
    reusable_ = reused_ = true;
    release_room(upstream_->buffer());
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
      reusable_ = true;
      args_.worker.metrics.count_upstream(admin::Metrics::UpstreamKind::Tls, admin::Metrics::UpstreamSource::New);
    }
    co_return ec;
  }

  /// The worker's handshake, and a new upstream connection's at the same
  /// time (the worker waits for one round trip less). False when the
  /// tunnel is over: the worker's side failed.
  asio::awaitable<bool> handshake(Attempt::Outcome& outcome) {
    beast::error_code client_ec;
    if (reused_) {
      args_.worker.metrics.count_upstream(admin::Metrics::UpstreamKind::Tls, admin::Metrics::UpstreamSource::Pooled);
      reusable_ = true;
      client_ec = co_await client_handshake();
    } else {
      auto [client_result, upstream_ec] = co_await (client_handshake() && upstream_handshake());
      client_ec = client_result;
      if (upstream_ec) outcome.error = args_.tunnel.error_text();
    }
    if (!client_ec) co_return true;
    args_.worker.metrics.count_tls_handshake_failure(admin::Metrics::TlsStage::Client);
    const bool rejected =
        client_ec.category() == asio::error::get_ssl_category() &&
        tls::classify_handshake_error(static_cast<unsigned long>(client_ec.value())) ==
            tls::HandshakeFailure::CertificateRejected;
    std::string why = client_ec == asio::ssl::error::stream_truncated || client_ec == asio::error::eof
                          ? std::string("the worker closed the connection")
                          : client_ec.message();
    args_.tunnel.fail(rejected ? Reason::ClientRejectedCertificate : Reason::ClientHandshakeFailed,
                             "TLS handshake with the worker (stage client) failed: " + why);
    outcome.error = args_.tunnel.error_text();
    spdlog::warn("inspected tunnel {} to {}: {}", args_.tunnel.request_id(), args_.tunnel.host(), outcome.error);
    co_return false;
  }

  void note_upstream_failure(const beast::error_code& ec) {
    args_.worker.metrics.count_tls_handshake_failure(admin::Metrics::TlsStage::Upstream);
    const auto verify = tls::verification_error(upstream_->stream().next_layer().native_handle());
    if (!verify.empty()) {
      upstream_reason_ = Reason::UpstreamCertInvalid;
      upstream_error_ = "the certificate of " + args_.target.target.host.host + " failed verification: " + verify;
    } else {
      upstream_reason_ = ec == beast::error::timeout ? Reason::UpstreamTimeout : Reason::UpstreamUnreachable;
      upstream_error_ = "TLS handshake with the upstream (stage upstream) failed: " + ec.message();
    }
    args_.tunnel.fail(*upstream_reason_, upstream_error_);
    spdlog::warn("inspected tunnel {} to {}: {}", args_.tunnel.request_id(), args_.tunnel.host(),
                 args_.tunnel.error_text());
  }

  /// Replaces a kept-alive connection that turned out closed: a new TCP
  /// connection to one of the tunnel's checked addresses and a verified
  /// handshake. False (the reason noted) when that fails.
  asio::awaitable<bool> reopen_upstream() {
    upstream_.reset();
    reusable_ = reused_ = false;
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
  IdleWait idle_;  // no ticket: the tunnel keeps its connection busy
  UpstreamTlsPtr upstream_;  // null after the upstream closed it: the next request opens another
  asio::ip::tcp::endpoint endpoint_;  // the address the tunnel connected to first
  bool reused_;  // carried an earlier exchange (maybe another tunnel's): it may be closed by now
  bool reusable_ = false;  // idle after a complete exchange: may go back to the pool
  std::optional<Reason> upstream_reason_;  // set when the upstream cannot be used
  std::string upstream_error_;
};

}  // namespace

asio::awaitable<void> inspect_tunnel(InspectedTunnel& args, Attempt::Outcome& outcome) {
  const auto& inspection = args.worker.shared.inspection;
  const auto& host = args.target.target.host;
  if (!inspection) {
    // serve refuses inspect rules without a CA, so this is a bug; fail closed.
    args.tunnel.fail(Reason::ClientHandshakeFailed, "inspection requested but no CA is configured");
    outcome.error = args.tunnel.error_text();
    co_return;
  }
  std::optional<Inspector> inspector;
  try {
    const auto now = std::chrono::system_clock::now();
    const auto& minter = inspection->minter();
    auto leaf = args.worker.cert_cache.get(host.host, now, minter.validity(),
                                           [&](std::string_view name) { return minter.mint(name, now); });
    args.worker.metrics.count_cert_cache(leaf.hit);
    if (!leaf.hit) spdlog::debug("minted a leaf certificate for {} (certificate cache miss)", host.host);
    const bool pooled = args.pooled != nullptr;
    auto upstream =
        pooled ? std::move(args.pooled) : tls_to_upstream(args, std::move(args.fresh->tcp()), args.fresh->endpoint());
    inspector.emplace(args, inspection->new_server_ssl(leaf.cert.get()), std::move(upstream), pooled);
  } catch (const tls::CaError& e) {
    args.tunnel.fail(Reason::ClientHandshakeFailed, std::string("preparing TLS: ") + e.what());
    outcome.error = args.tunnel.error_text();
    co_return;
  }
  co_await inspector->run(outcome);
}

}  // namespace egress::proxy
