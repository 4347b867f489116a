// A small HTTP listener's plumbing, shared by the admin listener and the
// console: the address parsed and bound, an io_context on a thread of its
// own (so a busy proxy does not delay it, nor it the proxy), an accept loop
// that hands each connection to the owner's coroutine, and a stop that
// closes the acceptor and joins the thread.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <functional>
#include <memory>
#include <string>

namespace egress::admin {

class Listener {
 public:
  /// Serves one accepted connection; runs on the listener's thread.
  using Connection = std::function<boost::asio::awaitable<void>(boost::asio::ip::tcp::socket)>;

  /// Binds `listen` ("HOST:PORT", HOST an IP address; port 0 picks one) and
  /// starts accepting on a new thread. `name` ("admin", "console") names
  /// the listener in errors and logs. Throws std::runtime_error naming the
  /// address when it cannot listen.
  Listener(const std::string& name, const std::string& listen, Connection serve);
  ~Listener();  // stops the thread; open connections are closed
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  /// The bound address, e.g. "127.0.0.1:9128" or "[::1]:9128".
  const std::string& address() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace egress::admin
