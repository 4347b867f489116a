#include "proxy/plain_route.h"

#include <algorithm>

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

asio::awaitable<UpstreamTcp*> PlainRoute::connect(Attempt& attempt, const RequestTarget& target,
                                                  std::span<const asio::ip::tcp::endpoint> endpoints) {
  endpoints_.assign(endpoints.begin(), endpoints.end());
  key_ = authority_of(target.target, 0);
  reused_ = upstream_ && upstream_->key() == key_ && still_open(upstream_->tcp().socket()) &&
            std::find(endpoints_.begin(), endpoints_.end(), upstream_->endpoint()) != endpoints_.end();
  if (!reused_) co_return co_await reconnect(attempt);
  attempt.set_upstream(endpoint_text(upstream_->endpoint()));
  co_return &*upstream_;
}

asio::awaitable<UpstreamTcp*> PlainRoute::reconnect(Attempt& attempt) {
  upstream_.reset();
  reused_ = false;
  auto connected = co_await connect_checked(endpoints_, worker_.shared.config.limits.connect_timeout);
  if (connected.ec) {
    attempt.fail(connected.reason(), connected.failure(key_));
    co_return nullptr;
  }
  upstream_.emplace(std::move(connected.stream), key_, connected.endpoint);
  attempt.set_upstream(endpoint_text(upstream_->endpoint()));
  co_return &*upstream_;
}

void PlainRoute::done(bool reusable, bool reset) {
  if (!upstream_) return;
  if (reset) reset_connection(upstream_->tcp());
  if (reusable) {
    release_room(upstream_->buffer());
  } else {
    upstream_.reset();
  }
}

void PlainRoute::abort() {
  beast::error_code ignored;
  if (upstream_) upstream_->tcp().socket().close(ignored);
}

}  // namespace egress::proxy
