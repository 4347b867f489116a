// The admin HTTP listener (see egress/admin/server.h). One small coroutine
// per connection; requests are tiny and answered from memory, so each
// connection gets a short deadline and a small head limit.
#include "egress/admin/server.h"

#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <thread>

#include "egress/config/config.h"

namespace egress::admin {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

http::response<http::string_body> answer(const http::request<http::string_body>& request, Metrics& metrics) {
  http::response<http::string_body> response;
  response.version(request.version());
  response.keep_alive(request.keep_alive());
  response.set(http::field::content_type, "text/plain; charset=utf-8");
  const auto target = request.target();
  const auto path = target.substr(0, target.find('?'));
  if (path != "/healthz" && path != "/readyz" && path != "/metrics") {
    response.result(http::status::not_found);
    response.body() = "not found; try /healthz, /readyz or /metrics\n";
  } else if (request.method() != http::verb::get && request.method() != http::verb::head) {
    response.result(http::status::method_not_allowed);
    response.set(http::field::allow, "GET, HEAD");
    response.body() = "use GET\n";
  } else if (path == "/healthz") {
    response.result(http::status::ok);
    response.body() = "ok\n";
  } else if (path == "/readyz") {
    const auto readiness = metrics.readiness();
    response.result(readiness.ready ? http::status::ok : http::status::service_unavailable);
    response.body() = readiness.text + "\n";
  } else {
    response.result(http::status::ok);
    response.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
    response.body() = metrics.render();
  }
  response.prepare_payload();  // HEAD: the same Content-Length, the body is not written
  return response;
}

asio::awaitable<void> serve_connection(tcp::socket socket, Metrics& metrics) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  for (;;) {
    stream.expires_after(std::chrono::seconds(10));
    http::request_parser<http::string_body> parser;
    parser.header_limit(8 * 1024);
    parser.body_limit(1024);
    auto [ec, n] = co_await http::async_read(stream, buffer, parser, use_nothrow);
    if (ec) break;
    const auto& request = parser.get();
    auto response = answer(request, metrics);
    const bool keep_alive = response.keep_alive();
    http::serializer<false, http::string_body> serializer(response);
    if (request.method() == http::verb::head) {
      auto [wec, wn] = co_await http::async_write_header(stream, serializer, use_nothrow);
      if (wec) break;
    } else {
      auto [wec, wn] = co_await http::async_write(stream, serializer, use_nothrow);
      if (wec) break;
    }
    if (!keep_alive) break;
  }
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
}

asio::awaitable<void> accept_loop(tcp::acceptor& acceptor, Metrics& metrics) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(use_nothrow);
    if (!acceptor.is_open()) co_return;
    if (ec) continue;
    asio::co_spawn(acceptor.get_executor(), serve_connection(std::move(socket), metrics), asio::detached);
  }
}

}  // namespace

struct AdminServer::Impl {
  asio::io_context ioc{1};
  tcp::acceptor acceptor{ioc};
  std::string address;
  std::thread thread;
};

AdminServer::AdminServer(const std::string& listen, Metrics& metrics) : impl_(std::make_unique<Impl>()) {
  const auto host_port = config::parse_host_port(listen);
  if (!host_port) throw std::runtime_error("admin listener '" + listen + "': expected HOST:PORT");
  beast::error_code ec;
  const auto ip = asio::ip::make_address(host_port->host, ec);
  if (ec) throw std::runtime_error("admin listener '" + listen + "': '" + host_port->host + "' is not an IP address");
  const tcp::endpoint endpoint(ip, host_port->port);
  auto& acceptor = impl_->acceptor;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) throw std::runtime_error("admin listener cannot listen on " + listen + ": " + ec.message());
  const auto bound = acceptor.local_endpoint();
  impl_->address = (bound.address().is_v6() ? "[" + bound.address().to_string() + "]" : bound.address().to_string()) +
                   ":" + std::to_string(bound.port());
  asio::co_spawn(impl_->ioc, accept_loop(acceptor, metrics), asio::detached);
  impl_->thread = std::thread([impl = impl_.get()] {
    try {
      impl->ioc.run();
    } catch (const std::exception& e) {
      spdlog::error("admin listener stopped: {}", e.what());
    }
  });
}

AdminServer::~AdminServer() {
  asio::post(impl_->ioc, [impl = impl_.get()] {
    beast::error_code ignored;
    impl->acceptor.close(ignored);
  });
  impl_->ioc.stop();
  impl_->thread.join();
}

const std::string& AdminServer::address() const { return impl_->address; }

}  // namespace egress::admin
