// The admin HTTP listener (see egress/admin/server.h). One small coroutine
// per connection; requests are tiny and answered from memory, so each
// connection gets a short deadline and a small head limit.
#include "egress/admin/server.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "egress/admin/http_exchange.h"
#include "egress/admin/listener.h"

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

// Requests are tiny and answered from memory: a short deadline and small limits.
constexpr RequestLimits kLimits{std::chrono::seconds(10), 8 * 1024, 1024};

asio::awaitable<void> serve_connection(tcp::socket socket, Metrics& metrics) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  while (auto request = co_await read_request(stream, buffer, kLimits)) {
    auto response = answer(*request, metrics);
    if (!co_await write_response(stream, *request, response)) break;
  }
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
}

}  // namespace

struct AdminServer::Impl {
  explicit Impl(const std::string& listen, Metrics& metrics)
      : listener("admin", listen, [&metrics](tcp::socket socket) { return serve_connection(std::move(socket), metrics); }) {}
  Listener listener;
};

AdminServer::AdminServer(const std::string& listen, Metrics& metrics)
    : impl_(std::make_unique<Impl>(listen, metrics)) {}

AdminServer::~AdminServer() = default;

const std::string& AdminServer::address() const { return impl_->listener.address(); }

}  // namespace egress::admin
