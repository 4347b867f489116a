// See egress/admin/http_exchange.h.
#include "egress/admin/http_exchange.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http.hpp>

namespace egress::admin {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

}  // namespace

asio::awaitable<std::optional<HttpRequest>> read_request(boost::beast::tcp_stream& stream,
                                                         boost::beast::flat_buffer& buffer,
                                                         const RequestLimits& limits) {
  stream.expires_after(limits.deadline);
  http::request_parser<http::string_body> parser;
  parser.header_limit(static_cast<std::uint32_t>(limits.header_bytes));
  parser.body_limit(limits.body_bytes);
  auto [ec, n] = co_await http::async_read(stream, buffer, parser, use_nothrow);
  if (ec) co_return std::nullopt;
  co_return parser.release();
}

asio::awaitable<bool> write_response(boost::beast::tcp_stream& stream, const HttpRequest& request,
                                     HttpResponse& response) {
  const bool keep_alive = response.keep_alive();
  http::serializer<false, http::string_body> serializer(response);
  auto [ec, n] = request.method() == http::verb::head
                     ? co_await http::async_write_header(stream, serializer, use_nothrow)
                     : co_await http::async_write(stream, serializer, use_nothrow);
  co_return !ec && keep_alive;
}

}  // namespace egress::admin
