// See egress/admin/listener.h.
#include "egress/admin/listener.h"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <stdexcept>
#include <thread>

#include "egress/config/config.h"

namespace egress::admin {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

tcp::endpoint parse_endpoint(const std::string& name, const std::string& listen) {
  const auto host_port = config::parse_host_port(listen);
  if (!host_port) throw std::runtime_error(name + " listener '" + listen + "': expected HOST:PORT");
  boost::system::error_code ec;
  const auto ip = asio::ip::make_address(host_port->host, ec);
  if (ec) throw std::runtime_error(name + " listener '" + listen + "': '" + host_port->host + "' is not an IP address");
  return {ip, host_port->port};
}

void bind_and_listen(tcp::acceptor& acceptor, const tcp::endpoint& endpoint, const std::string& name,
                     const std::string& listen) {
  boost::system::error_code ec;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) throw std::runtime_error(name + " listener cannot listen on " + listen + ": " + ec.message());
}

std::string to_address(const tcp::endpoint& bound) {
  const auto ip = bound.address();
  return (ip.is_v6() ? "[" + ip.to_string() + "]" : ip.to_string()) + ":" + std::to_string(bound.port());
}

asio::awaitable<void> accept_loop(tcp::acceptor& acceptor, const Listener::Connection& serve) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(use_nothrow);
    if (!acceptor.is_open()) co_return;
    if (ec) {
      // Out of descriptors and the like: do not spin.
      asio::steady_timer pause(acceptor.get_executor(), std::chrono::milliseconds(100));
      co_await pause.async_wait(use_nothrow);
      continue;
    }
    asio::co_spawn(acceptor.get_executor(), serve(std::move(socket)), asio::detached);
  }
}

}  // namespace

struct Listener::Impl {
  asio::io_context ioc{1};
  tcp::acceptor acceptor{ioc};
  Connection serve;
  std::string address;
  std::thread thread;
};

Listener::Listener(const std::string& name, const std::string& listen, Connection serve)
    : impl_(std::make_unique<Impl>()) {
  bind_and_listen(impl_->acceptor, parse_endpoint(name, listen), name, listen);
  impl_->address = to_address(impl_->acceptor.local_endpoint());
  impl_->serve = std::move(serve);
  asio::co_spawn(impl_->ioc, accept_loop(impl_->acceptor, impl_->serve), asio::detached);
  impl_->thread = std::thread([impl = impl_.get(), name] {
    try {
      impl->ioc.run();
    } catch (const std::exception& e) {
      spdlog::error("{} listener stopped: {}", name, e.what());
    }
  });
}

Listener::~Listener() {
  asio::post(impl_->ioc, [impl = impl_.get()] {
    boost::system::error_code ignored;
    impl->acceptor.close(ignored);
  });
  impl_->ioc.stop();
  impl_->thread.join();
}

const std::string& Listener::address() const { return impl_->address; }

}  // namespace egress::admin
