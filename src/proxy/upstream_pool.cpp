// Opening upstream connections, and the per-thread pool of idle ones (plain
// TCP and TLS alike). See upstream_pool.h.
#include "proxy/upstream_pool.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include <boost/asio/connect.hpp>
#include <boost/asio/this_coro.hpp>

#include "proxy/relay.h"  // use_nothrow

namespace egress::proxy {

bool still_open(boost::asio::ip::tcp::socket& socket) {
  char byte;
  const auto n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

policy::Reason CheckedConnection::reason() const {
  return ec == boost::beast::error::timeout ? policy::Reason::UpstreamTimeout : policy::Reason::UpstreamUnreachable;
}

std::string CheckedConnection::failure(std::string_view key) const {
  return "connecting to " + std::string(key) + ": " +
         (ec == boost::beast::error::timeout ? std::string("timed out") : ec.message());
}

boost::asio::awaitable<CheckedConnection> connect_checked(std::span<const boost::asio::ip::tcp::endpoint> endpoints,
                                                          std::chrono::milliseconds timeout) {
  // The executor in a named local: with the co_await inside the braced
  // initializer, GCC 12 handed back a stream whose socket was already closed
  // (every request failed with "Bad file descriptor").
  const auto executor = co_await boost::asio::this_coro::executor;
  CheckedConnection out{boost::beast::tcp_stream(executor), {}, {}};
  out.stream.expires_after(timeout);
  auto [ec, endpoint] = co_await out.stream.async_connect(endpoints, use_nothrow);
  out.ec = ec;
  out.endpoint = endpoint;
  if (!ec) out.stream.socket().set_option(boost::asio::ip::tcp::no_delay(true));
  co_return out;
}

void reset_connection(boost::beast::tcp_stream& stream) {
  boost::beast::error_code ignored;
  stream.socket().set_option(boost::asio::socket_base::linger(true, 0), ignored);
  stream.socket().close(ignored);
}

UpstreamTls::UpstreamTls(boost::beast::tcp_stream tcp, tls::SslPtr ssl, std::string key,
                         boost::asio::ip::tcp::endpoint endpoint)
    : tcp_(std::move(tcp)), stream_(tcp_, ssl.release()), key_(std::move(key)), endpoint_(std::move(endpoint)) {}

template <class Connection>
UpstreamPool<Connection>::UpstreamPool(std::size_t capacity, std::chrono::milliseconds idle_timeout)
    : capacity_(capacity), idle_timeout_(idle_timeout) {}

template <class Connection>
void UpstreamPool<Connection>::put(ConnectionPtr connection, Clock::time_point now) {
  if (capacity_ == 0 || !connection) return;
  sweep_expired(now);
  connection->tcp().expires_never();
  if (idle_.size() >= capacity_) idle_.pop_front();
  idle_.push_back(Idle{std::move(connection), now});
}

template <class Connection>
auto UpstreamPool<Connection>::take(std::string_view key, std::span<const boost::asio::ip::tcp::endpoint> allowed,
                                    Clock::time_point now) -> ConnectionPtr {
  sweep_expired(now);
  for (auto it = idle_.end(); it != idle_.begin();) {  // newest first
    --it;
    const auto& connection = *it->connection;
    if (connection.key() != key || std::find(allowed.begin(), allowed.end(), connection.endpoint()) == allowed.end()) {
      continue;
    }
    ConnectionPtr out = std::move(it->connection);
    it = idle_.erase(it);
    // A connection the upstream closed (or sent something unasked on) is
    // dropped, and the search goes on.
    if (still_open(out->tcp().socket())) return out;
  }
  return nullptr;
}

template <class Connection>
void UpstreamPool<Connection>::sweep(Clock::time_point now) {
  sweep_expired(now);
  std::erase_if(idle_, [](Idle& idle) { return !still_open(idle.connection->tcp().socket()); });
}

template <class Connection>
void UpstreamPool<Connection>::sweep_expired(Clock::time_point now) {
  while (!idle_.empty() && now - idle_.front().since >= idle_timeout_) idle_.pop_front();
}

template class UpstreamPool<UpstreamTcp>;
template class UpstreamPool<UpstreamTls>;

}  // namespace egress::proxy
