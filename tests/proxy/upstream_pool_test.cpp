// The per-thread pool of idle upstream connections, for both kinds it keeps
// (plain TCP for HTTP requests, TLS for inspected tunnels): which
// connection a request may take (same host:port, a checked address, still
// open, not idle too long), and the bounds. Real loopback TCP connections,
// so "closed by the upstream" is a real FIN; no TLS handshake is needed for
// any of it.
#include <catch2/catch.hpp>

#include <poll.h>
#include <cerrno>
#include <sys/socket.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/write.hpp>

#include "proxy/upstream_pool.h"

using namespace egress;
using namespace egress::proxy;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

tcp::endpoint endpoint(const char* address, unsigned short port) { return {asio::ip::make_address(address), port}; }

/// Loopback connections whose far ends the test holds: closing a far end
/// is the upstream closing the connection.
class Loopback {
 public:
  Loopback() : acceptor_(ioc_, endpoint("127.0.0.1", 0)), ctx_(SSL_CTX_new(TLS_client_method())) {
    REQUIRE(ctx_);
  }

  /// A connection as the pool sees it: `key` and `recorded` are what the
  /// request that opened it checked (the socket itself goes to loopback).
  template <class Connection>
  std::unique_ptr<Connection> connect(const std::string& key, const tcp::endpoint& recorded) {
    tcp::socket socket(ioc_);
    socket.connect(acceptor_.local_endpoint());
    far_ends_.push_back(acceptor_.accept());
    boost::beast::tcp_stream stream(std::move(socket));
    if constexpr (std::is_same_v<Connection, UpstreamTls>) {
      tls::SslPtr ssl(SSL_new(ctx_.get()));
      REQUIRE(ssl);
      return std::make_unique<UpstreamTls>(std::move(stream), std::move(ssl), key, recorded);
    } else {
      return std::make_unique<Connection>(std::move(stream), key, recorded);
    }
  }

  /// The upstream's side of the n-th connection made.
  tcp::socket& far_end(std::size_t n) { return far_ends_.at(n); }

  /// Whether the n-th connection's far end sees it closed within a second:
  /// EOF, or a reset when the pool closed it with unread data. Bounded, so
  /// a pool that keeps a connection fails the test rather than hanging it.
  bool closed_by_pool(std::size_t n) {
    pollfd watch{far_end(n).native_handle(), POLLIN, 0};
    if (::poll(&watch, 1, 1000) != 1) return false;
    char byte;
    const auto got = ::recv(watch.fd, &byte, 1, MSG_DONTWAIT);
    return got == 0 || (got < 0 && errno == ECONNRESET);
  }

 private:
  asio::io_context ioc_;
  tcp::acceptor acceptor_;
  tls::SslCtxPtr ctx_;
  std::vector<tcp::socket> far_ends_;
};

const auto t0 = std::chrono::steady_clock::time_point{} + 1h;

}  // namespace

// Every case runs for both kinds: one template keeps both, under one set of rules.
TEMPLATE_TEST_CASE("A request takes only a pooled connection to its host:port on one of its checked addresses",
                   "[proxy]", UpstreamTcp, UpstreamTls) {
  const auto e1 = endpoint("10.0.0.1", 443), e2 = endpoint("10.0.0.2", 443), e3 = endpoint("10.0.0.3", 443);
  struct Case {
    const char* what;
    const char* key;
    std::vector<tcp::endpoint> allowed;
    int expected;  // index of the connection taken (order pooled below), -1 for none
  };
  const auto c = GENERATE_COPY(
      Case{"newest first among equals", "a.test:443", {e1, e2}, 1},
      Case{"only the checked address", "a.test:443", {e1}, 0},
      Case{"the other checked address", "a.test:443", {e2}, 1},
      Case{"an address no longer checked", "a.test:443", {e3}, -1},
      Case{"no checked address at all", "a.test:443", {}, -1},
      Case{"another name on the same address", "b.test:443", {e1}, 2},
      Case{"that name's connection is not on this address", "b.test:443", {e2}, -1},
      Case{"another port", "a.test:8443", {e1, e2}, -1},
      Case{"a name that is a prefix of a pooled key", "a.test:44", {e1, e2}, -1});
  INFO(c.what);
  Loopback net;
  UpstreamPool<TestType> pool(8, 4s);
  std::vector<TestType*> pooled;
  for (const auto& [key, ep] : std::vector<std::pair<std::string, tcp::endpoint>>{
           {"a.test:443", e1}, {"a.test:443", e2}, {"b.test:443", e1}}) {
    auto connection = net.connect<TestType>(key, ep);
    pooled.push_back(connection.get());
    pool.put(std::move(connection), t0);
  }
  auto taken = pool.take(c.key, c.allowed, t0 + 1s);
  if (c.expected < 0) {
    CHECK(taken == nullptr);
    CHECK(pool.size() == 3);
  } else {
    CHECK(taken.get() == pooled[static_cast<std::size_t>(c.expected)]);
    CHECK(pool.size() == 2);
  }
}

TEMPLATE_TEST_CASE("A pooled connection is taken only before its idle timeout", "[proxy]", UpstreamTcp, UpstreamTls) {
  const auto e1 = endpoint("10.0.0.1", 443);
  const std::vector<tcp::endpoint> allowed{e1};
  struct Case {
    std::chrono::milliseconds idle_for;
    bool taken;
  };
  const auto c = GENERATE(Case{0ms, true}, Case{3999ms, true}, Case{4000ms, false}, Case{60s, false});
  INFO("idle for " << c.idle_for.count() << " ms");
  Loopback net;
  UpstreamPool<TestType> pool(8, 4s);
  pool.put(net.connect<TestType>("a.test:443", e1), t0);
  CHECK((pool.take("a.test:443", allowed, t0 + c.idle_for) != nullptr) == c.taken);
  CHECK(pool.size() == 0);
  if (!c.taken) CHECK(net.closed_by_pool(0));
}

TEMPLATE_TEST_CASE("A connection its upstream closed or wrote to is never handed out", "[proxy]", UpstreamTcp,
                   UpstreamTls) {
  const auto e1 = endpoint("10.0.0.1", 443);
  const std::vector<tcp::endpoint> allowed{e1};
  Loopback net;
  UpstreamPool<TestType> pool(8, 4s);
  pool.put(net.connect<TestType>("a.test:443", e1), t0);  // 0: will stay open
  pool.put(net.connect<TestType>("a.test:443", e1), t0);  // 1: the upstream sends something unasked
  pool.put(net.connect<TestType>("a.test:443", e1), t0);  // 2: the upstream closes it
  net.far_end(2).close();
  asio::write(net.far_end(1), asio::buffer(std::string("HTTP/1.1 408 Request Timeout\r\n\r\n")));
  std::this_thread::sleep_for(20ms);  // loopback delivers at once; leave room for a busy machine

  auto taken = pool.take("a.test:443", allowed, t0 + 1s);
  REQUIRE(taken != nullptr);
  CHECK(still_open(taken->tcp().socket()));
  CHECK(pool.size() == 0);  // the two stale ones were dropped on the way
  CHECK(net.closed_by_pool(1));
  CHECK(pool.take("a.test:443", allowed, t0 + 1s) == nullptr);
}

TEMPLATE_TEST_CASE("The pool holds at most its capacity, dropping the connection idle longest", "[proxy]", UpstreamTcp,
                   UpstreamTls) {
  const auto e1 = endpoint("10.0.0.1", 443);
  const std::vector<tcp::endpoint> allowed{e1};
  Loopback net;
  SECTION("capacity 2") {
    UpstreamPool<TestType> pool(2, 4s);
    for (int i = 0; i < 3; ++i) pool.put(net.connect<TestType>("a.test:443", e1), t0 + std::chrono::seconds(i));
    CHECK(pool.size() == 2);
    CHECK(net.closed_by_pool(0));
  }
  SECTION("capacity 0 keeps nothing") {
    UpstreamPool<TestType> pool(0, 4s);
    pool.put(net.connect<TestType>("a.test:443", e1), t0);
    CHECK(pool.size() == 0);
    CHECK(pool.take("a.test:443", allowed, t0) == nullptr);
    CHECK(net.closed_by_pool(0));
  }
}

TEMPLATE_TEST_CASE("A sweep closes expired connections and those their upstream closed", "[proxy]", UpstreamTcp,
                   UpstreamTls) {
  const auto e1 = endpoint("10.0.0.1", 443);
  const std::vector<tcp::endpoint> allowed{e1};
  Loopback net;
  UpstreamPool<TestType> pool(8, 4s);
  pool.put(net.connect<TestType>("a.test:443", e1), t0);       // 0: expired at the sweep
  pool.put(net.connect<TestType>("a.test:443", e1), t0 + 3s);  // 1: closed by its upstream
  pool.put(net.connect<TestType>("a.test:443", e1), t0 + 3s);  // 2: fine
  net.far_end(1).close();
  std::this_thread::sleep_for(20ms);
  pool.sweep(t0 + 5s);
  CHECK(pool.size() == 1);
  CHECK(net.closed_by_pool(0));
  pool.clear();
  CHECK(pool.size() == 0);
  CHECK(net.closed_by_pool(2));
}
