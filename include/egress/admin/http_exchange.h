// One request and its answer on a small listener's connection (the admin
// listener's and the console's): the request read under a deadline and
// size limits, the response written (only its head for HEAD). Both
// listeners answer from memory, so their loops differ only in limits and
// in what they answer.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include <chrono>
#include <cstddef>
#include <optional>

namespace egress::admin {

using HttpRequest = boost::beast::http::request<boost::beast::http::string_body>;
using HttpResponse = boost::beast::http::response<boost::beast::http::string_body>;

struct RequestLimits {
  std::chrono::seconds deadline;  // for the whole request, from when the read starts
  std::size_t header_bytes;
  std::size_t body_bytes;
};

/// The next request, or nullopt when the peer closed, was too slow, or sent
/// one over the limits (the connection is then to be closed).
boost::asio::awaitable<std::optional<HttpRequest>> read_request(boost::beast::tcp_stream& stream,
                                                                boost::beast::flat_buffer& buffer,
                                                                const RequestLimits& limits);

/// Writes `response` (its head only when `request` is a HEAD). True when
/// the connection may carry another request: written, and keep-alive.
boost::asio::awaitable<bool> write_response(boost::beast::tcp_stream& stream, const HttpRequest& request,
                                            HttpResponse& response);

}  // namespace egress::admin
