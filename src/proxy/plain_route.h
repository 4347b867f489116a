// Plain HTTP forwarding's side of the exchange (exchange.h): absolute-form
// targets, the worker's role from its Proxy-Authorization or source, a
// decision that resolves and checks the addresses, and the upstream TCP
// connection, kept alive between a connection's requests to the same
// host:port at a still-checked address. The session's CONNECT uses the
// same identify, decide and connect.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http/message.hpp>

#include "egress/policy/policy.h"
#include "egress/proxy/evaluate.h"
#include "proxy/attempt.h"
#include "proxy/upstream_pool.h"
#include "proxy/worker.h"

namespace egress::proxy {

/// Sets the attempt's role from the request's credentials or source; false
/// (the attempt refused with unknown-token: 407) when a presented token
/// matches no role.
bool identify_worker(const policy::Policy& policy, const policy::IpAddress& source,
                     const boost::beast::http::request_header<>& request, Attempt& attempt);

class PlainRoute {
 public:
  using Upstream = UpstreamTcp;
  static constexpr auto kind = policy::RequestKind::Http;
  static constexpr bool kAcceptsConnect = true;
  static constexpr bool kClosesOnBadTarget = true;  // a bad target is malformed input: close

  PlainRoute(Worker& worker, const policy::IpAddress& client_ip) : worker_(worker), client_ip_(client_ip) {}

  /// A head that was read: `method` as sent (a refused head's, too).
  void start(Attempt& attempt, std::string_view method) const;
  ParsedTarget parse_target(const boost::beast::http::request_header<>& request) const;
  bool identify(const policy::Policy& policy, const boost::beast::http::request_header<>& request,
                Attempt& attempt) const {
    return identify_worker(policy, client_ip_, request, attempt);
  }
  /// Decides on the attempt (resolving and checking the addresses).
  boost::asio::awaitable<Evaluation> decide(const policy::Policy& policy, Attempt& attempt,
                                            const RequestTarget& target, std::string_view method);
  /// The kept-alive connection when it goes to the same host:port at one
  /// of `endpoints` and is still open, else a new one to `endpoints`; null
  /// after attempt.fail() (upstream-unreachable or -timeout).
  boost::asio::awaitable<UpstreamTcp*> connect(Attempt& attempt, const RequestTarget& target,
                                               std::span<const boost::asio::ip::tcp::endpoint> endpoints);
  /// A new connection to the last connect()'s endpoints.
  boost::asio::awaitable<UpstreamTcp*> reconnect(Attempt& attempt);
  bool reused() const { return reused_; }
  /// The exchange is over: keep the connection for the next request only
  /// when `reusable`; `reset` closes it with a reset (a cut-off body).
  void done(bool reusable, bool reset);

  /// Hands the connection over (to a CONNECT tunnel or its inspection).
  std::optional<UpstreamTcp> take() { return std::exchange(upstream_, std::nullopt); }
  /// Closes the connection now (shutdown after the grace period).
  void abort();

 private:
  Worker& worker_;
  const policy::IpAddress& client_ip_;
  std::optional<UpstreamTcp> upstream_;
  std::vector<boost::asio::ip::tcp::endpoint> endpoints_;  // the last decision's checked addresses
  std::string key_;                                         // "host:port" they belong to
  bool reused_ = false;
};

}  // namespace egress::proxy
