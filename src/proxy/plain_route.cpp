// Plain HTTP forwarding's route, and the pooled upstream connections it
// lends to each exchange. See plain_route.h.
#include "proxy/plain_route.h"

#include "proxy/http_rules.h"
#include "proxy/identity.h"
#include "proxy/relay.h"

namespace egress::proxy {

bool identify_worker(const policy::Policy& policy, const policy::IpAddress& source,
                     const http::request_header<>& request, Attempt& attempt) {
  const auto identity = identify(policy, source, request[http::field::proxy_authorization]);
  attempt.set_role(identity.role);
  if (!identity.rejected) return true;
  attempt.refuse(policy::Reason::UnknownToken, identity.error);
  return false;
}

void PlainRoute::start(Attempt& attempt, std::string_view method) const {
  attempt.set_kind(method == "CONNECT" ? policy::RequestKind::Connect : kind);
}

ParsedTarget PlainRoute::parse_target(const http::request_header<>& request) const {
  return parse_absolute_target(request.target());
}

asio::awaitable<Evaluation> PlainRoute::decide(const policy::Policy& policy, Attempt& attempt,
                                               const RequestTarget& target, std::string_view method) {
  auto evaluation = co_await evaluate(policy, *worker_.resolver, target, method, attempt.role());
  attempt.decide(evaluation.decision);
  co_return evaluation;
}

using UpstreamKind = admin::Metrics::UpstreamKind;
using UpstreamSource = admin::Metrics::UpstreamSource;

void PlainRoute::aim(const RequestTarget& target, std::span<const asio::ip::tcp::endpoint> endpoints) {
  upstream_.reset();
  reused_ = false;
  endpoints_.assign(endpoints.begin(), endpoints.end());
  key_ = authority_of(target.target, 0);
}

asio::awaitable<UpstreamTcp*> PlainRoute::connect(Attempt& attempt, const RequestTarget& target,
                                                  std::span<const asio::ip::tcp::endpoint> endpoints) {
  aim(target, endpoints);
  upstream_ = worker_.upstream_tcp.take(key_, endpoints_, worker_.now());
  if (!upstream_) co_return co_await reconnect(attempt);
  reused_ = true;
  worker_.metrics.count_upstream(UpstreamKind::Http, UpstreamSource::Pooled);
  attempt.set_upstream(endpoint_text(upstream_->endpoint()));
  co_return upstream_.get();
}

asio::awaitable<UpstreamTcp*> PlainRoute::reconnect(Attempt& attempt) {
  auto* opened = co_await open(attempt);
  if (opened) worker_.metrics.count_upstream(UpstreamKind::Http, UpstreamSource::New);
  co_return opened;
}

asio::awaitable<UpstreamTcp*> PlainRoute::connect_tunnel(Attempt& attempt, const RequestTarget& target,
                                                         std::span<const asio::ip::tcp::endpoint> endpoints) {
  aim(target, endpoints);
  co_return co_await open(attempt);
}

asio::awaitable<UpstreamTcp*> PlainRoute::open(Attempt& attempt) {
  upstream_.reset();
  reused_ = false;
  auto connected = co_await connect_checked(endpoints_, worker_.shared.config.limits.connect_timeout);
  if (connected.ec) {
    attempt.fail(connected.reason(), connected.failure(key_));
    co_return nullptr;
  }
  upstream_ = std::make_unique<UpstreamTcp>(std::move(connected.stream), key_, connected.endpoint);
  attempt.set_upstream(endpoint_text(upstream_->endpoint()));
  co_return upstream_.get();
}

void PlainRoute::done(bool reusable, bool reset) {
  if (!upstream_) return;
  if (reset) reset_connection(upstream_->tcp());
  if (reusable) {
    release_room(upstream_->buffer());
    worker_.upstream_tcp.put(std::move(upstream_), worker_.now());
  }
  upstream_.reset();
}

void PlainRoute::abort() {
  beast::error_code ignored;
  if (upstream_) upstream_->tcp().socket().close(ignored);
}

}  // namespace egress::proxy
