// Plain HTTP forwarding's side of the exchange (exchange.h): absolute-form
// targets, the worker's role from its Proxy-Authorization or source, a
// decision that resolves and checks the addresses, and the upstream TCP
// connection. That connection is lent by the thread's pool of idle ones
// (upstream_pool.h: same host:port, a still-checked address, still open,
// young) for one exchange and given back after a complete response, so
// the worker connections of one thread share them. The session's CONNECT
// uses the same identify and decide, and a connection of its own.
#pragma once

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
  /// An idle connection from the thread's pool when one goes to the same
  /// host:port at one of `endpoints` and is still open, else a new one to
  /// `endpoints`; null after attempt.fail() (upstream-unreachable or
  /// -timeout). The attempt records the address of the one it gets.
  boost::asio::awaitable<UpstreamTcp*> connect(Attempt& attempt, const RequestTarget& target,
                                               std::span<const boost::asio::ip::tcp::endpoint> endpoints);
  /// A new connection to the last connect()'s endpoints.
  boost::asio::awaitable<UpstreamTcp*> reconnect(Attempt& attempt);
  bool reused() const { return reused_; }
  /// The exchange is over: the connection goes back to the thread's pool
  /// only when `reusable`; `reset` closes it with a reset (a cut-off body).
  void done(bool reusable, bool reset);

  /// A new connection for a CONNECT tunnel, never a pooled one (the tunnel
  /// carries bytes egress does not frame, so its connection is never given
  /// back either); null after attempt.fail().
  boost::asio::awaitable<UpstreamTcp*> connect_tunnel(Attempt& attempt, const RequestTarget& target,
                                                      std::span<const boost::asio::ip::tcp::endpoint> endpoints);
  /// Hands the connection over (to a CONNECT tunnel or its inspection).
  UpstreamTcpPtr take() { return std::exchange(upstream_, nullptr); }
  /// Closes the connection now (shutdown after the grace period).
  void abort();

 private:
  /// Drops a connection not given back (it is not known to be idle) and
  /// notes where the next one must go.
  void aim(const RequestTarget& target, std::span<const boost::asio::ip::tcp::endpoint> endpoints);
  /// A new connection to endpoints_, not counted in the metrics.
  boost::asio::awaitable<UpstreamTcp*> open(Attempt& attempt);

  Worker& worker_;
  const policy::IpAddress& client_ip_;
  UpstreamTcpPtr upstream_;  // lent to the current exchange, or a tunnel's
  std::vector<boost::asio::ip::tcp::endpoint> endpoints_;  // the last decision's checked addresses
  std::string key_;                                         // "host:port" they belong to
  bool reused_ = false;
};

}  // namespace egress::proxy
