// Upstream connections: opening one (to checked addresses only), the two
// kinds egress keeps (UpstreamTcp for plain HTTP, UpstreamTls for inspected
// tunnels), and the per-thread pool that keeps idle ones of either kind
// between requests of different worker connections.
//
// A worker that opens a new connection for every request (most HTTP
// clients in a script) would otherwise cost egress, and the upstream, a
// new TCP connection per request, and inside an inspected tunnel a full
// TLS handshake on egress's side too. Egress sees whole requests and
// responses on both paths, so once a response has been relayed completely
// the upstream connection is idle and can carry the next request of any
// worker connection on the same thread, as a plain HTTP/1.1 client library
// would.
//
// A pooled connection is taken again only when (invariants):
//   1. the new request names the same upstream: key "host:port" (for TLS
//      the name the certificate was verified for, under the same trust:
//      one upstream SSL_CTX serves the whole process);
//   2. its address is one of the new request's checked addresses, under
//      the policy in force now (docs/security.md, invariant 3: no
//      unchecked address), so a reload that no longer allows the address
//      leaves the connection unused;
//   3. it is still open (the upstream did not close it or send anything)
//      and has been idle for less than the idle timeout.
// Requests are never interleaved: a connection is owned by one exchange (or
// one inspected tunnel) at a time, and it goes back only after a complete,
// self-delimited response. A connection that turns out closed on first use
// anyway (the upstream closed it just as the request went out) is the
// exchange's to handle: it resends only what is safe (exchange.h,
// is_replayable). One pool of each kind per proxy thread (the connections
// belong to its io_context), so nothing here takes a lock.
#pragma once

#include <chrono>
#include <cstddef>
#include <list>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/flat_stream.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include "egress/policy/reason.h"
#include "egress/tls/openssl.h"

namespace egress::proxy {

/// True while nothing is waiting to be read and the peer has not closed:
/// a non-blocking peek that would block.
bool still_open(boost::asio::ip::tcp::socket& socket);

/// A TCP connection to an upstream, or why there is none.
struct CheckedConnection {
  boost::beast::tcp_stream stream;
  boost::asio::ip::tcp::endpoint endpoint;  // the address that answered
  boost::beast::error_code ec;

  /// On failure: upstream-timeout or upstream-unreachable.
  policy::Reason reason() const;
  /// On failure: "connecting to KEY: timed out" (or the error).
  std::string failure(std::string_view key) const;
};

/// Connects to the first of `endpoints` that answers within `timeout`, with
/// TCP_NODELAY. `endpoints` are the addresses a decision checked, and only
/// those (invariant 3: connect to what was checked).
boost::asio::awaitable<CheckedConnection> connect_checked(std::span<const boost::asio::ip::tcp::endpoint> endpoints,
                                                          std::chrono::milliseconds timeout);

/// A TCP connection from egress to an upstream (plain HTTP forwarding, and
/// a CONNECT tunnel's until it is relayed or inspected). The same
/// accessors as UpstreamTls, so one exchange (exchange.h) drives both and
/// one pool keeps both.
class UpstreamTcp {
 public:
  UpstreamTcp(boost::beast::tcp_stream tcp, std::string key, boost::asio::ip::tcp::endpoint endpoint)
      : tcp_(std::move(tcp)), key_(std::move(key)), endpoint_(std::move(endpoint)) {}

  boost::beast::tcp_stream& stream() { return tcp_; }
  boost::beast::tcp_stream& tcp() { return tcp_; }
  boost::beast::flat_buffer& buffer() { return buffer_; }
  const std::string& key() const { return key_; }
  const boost::asio::ip::tcp::endpoint& endpoint() const { return endpoint_; }

 private:
  boost::beast::tcp_stream tcp_;
  boost::beast::flat_buffer buffer_;
  std::string key_;
  boost::asio::ip::tcp::endpoint endpoint_;
};

/// Closes with a reset rather than a FIN, so an upstream cannot take a
/// cut-off request body for a complete one.
void reset_connection(boost::beast::tcp_stream& stream);

/// A TLS connection from egress to an upstream. It owns the TCP stream
/// beneath, so it can outlive the tunnel that opened it.
class UpstreamTls {
 public:
  // flat_stream coalesces Beast's small head/body buffers into one TLS record.
  using Stream = boost::beast::flat_stream<boost::asio::ssl::stream<boost::beast::tcp_stream&>>;

  /// `tcp` is connected to `endpoint`; `ssl` is set up for `key`'s host
  /// (SNI, name to verify). The handshake is still to be done.
  UpstreamTls(boost::beast::tcp_stream tcp, tls::SslPtr ssl, std::string key,
              boost::asio::ip::tcp::endpoint endpoint);
  UpstreamTls(const UpstreamTls&) = delete;
  UpstreamTls& operator=(const UpstreamTls&) = delete;

  Stream& stream() { return stream_; }
  boost::beast::tcp_stream& tcp() { return tcp_; }
  boost::beast::flat_buffer& buffer() { return buffer_; }
  const std::string& key() const { return key_; }
  const boost::asio::ip::tcp::endpoint& endpoint() const { return endpoint_; }

 private:
  boost::beast::tcp_stream tcp_;  // before stream_, which refers to it
  Stream stream_;
  boost::beast::flat_buffer buffer_;
  std::string key_;
  boost::asio::ip::tcp::endpoint endpoint_;
};

using UpstreamTcpPtr = std::unique_ptr<UpstreamTcp>;
using UpstreamTlsPtr = std::unique_ptr<UpstreamTls>;

/// Idle connections of one kind (UpstreamTcp or UpstreamTls: anything with
/// key(), endpoint() and tcp()), under the invariants above.
template <class Connection>
class UpstreamPool {
 public:
  using Clock = std::chrono::steady_clock;
  using ConnectionPtr = std::unique_ptr<Connection>;

  /// Keeps at most `capacity` idle connections (0: none, every request or
  /// tunnel opens its own), each for at most `idle_timeout`.
  UpstreamPool(std::size_t capacity, std::chrono::milliseconds idle_timeout);

  /// Keeps an idle connection (for TLS: handshaken) whose last response was
  /// relayed completely. When full, the connection idle longest is closed.
  void put(ConnectionPtr connection, Clock::time_point now);

  /// The connection pooled most recently for `key` whose address is in
  /// `allowed`, still open and idle for less than the timeout; null when
  /// there is none. Stale connections met on the way are closed.
  ConnectionPtr take(std::string_view key, std::span<const boost::asio::ip::tcp::endpoint> allowed,
                     Clock::time_point now);

  /// Closes the connections idle past the timeout or closed by their
  /// upstream (a proxy thread calls this every second).
  void sweep(Clock::time_point now);

  /// Closes every pooled connection (shutdown).
  void clear() { idle_.clear(); }

  std::size_t size() const { return idle_.size(); }

 private:
  struct Idle {
    ConnectionPtr connection;
    Clock::time_point since;
  };

  std::size_t capacity_;
  std::chrono::milliseconds idle_timeout_;
  void sweep_expired(Clock::time_point now);

  std::list<Idle> idle_;  // oldest first
};

// Defined in upstream_pool.cpp for the two kinds there are.
extern template class UpstreamPool<UpstreamTcp>;
extern template class UpstreamPool<UpstreamTls>;

/// Plain HTTP's idle upstream connections, and inspected tunnels'.
using UpstreamTcpPool = UpstreamPool<UpstreamTcp>;
using UpstreamTlsPool = UpstreamPool<UpstreamTls>;

}  // namespace egress::proxy
