// The parts of the exchange that do not depend on the stream.
#include "proxy/exchange.h"

#include <boost/asio/ssl/error.hpp>

namespace egress::proxy {

bool wants_upgrade(const http::request_header<>& request) {
  if (request[http::field::upgrade].empty()) return false;
  return http::token_list(request[http::field::connection]).exists("upgrade");
}

void keep_upgrade(http::fields& head, std::string_view protocols) {
  head.set(http::field::connection, "upgrade");
  head.set(http::field::upgrade, protocols);
}

bool is_replayable(const RequestParser& parser) {
  if (!parser.is_done()) return false;
  const auto& request = parser.get();
  switch (request.method()) {
    case http::verb::get:
    case http::verb::head:
    case http::verb::options:
    case http::verb::trace:
      return true;
    default:
      return request.count("Idempotency-Key") > 0 || request.count("X-Idempotency-Key") > 0;
  }
}

bool is_closed_connection(const beast::error_code& ec) {
  return ec == asio::error::eof || ec == http::error::end_of_stream || ec == asio::ssl::error::stream_truncated ||
         ec == asio::error::connection_reset || ec == asio::error::broken_pipe;
}

}  // namespace egress::proxy
