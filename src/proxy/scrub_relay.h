// Relaying a response to a request that carried an injected secret: every
// header value and every body byte goes through the Scrubber, so an upstream
// that echoes the credential (an error page, an echo service) never hands
// it to the worker. The scrubbed body's length is not the upstream's, so a
// body goes out chunked (HTTP/1.1) or close-delimited (HTTP/1.0); nothing is
// buffered beyond one read and the scrubber's held-back tail.
#pragma once

#include <string>
#include <vector>

#include "egress/secrets/secrets.h"
#include "proxy/relay.h"

namespace egress::proxy {

/// Scrubs the response head in place.
inline void scrub_head(http::response<http::buffer_body>& response, secrets::Scrubber& scrubber) {
  std::vector<std::pair<std::string, std::string>> changed;
  for (const auto& field : response) {
    std::string scrubbed = scrubber.scrub(field.value());
    if (scrubbed != field.value()) changed.emplace_back(std::string(field.name_string()), std::move(scrubbed));
  }
  for (auto& [name, value] : changed) response.set(name, value);
}

/// Prepares the head for a body of unknown length: chunked for an HTTP/1.1
/// worker, close-delimited for HTTP/1.0. Returns whether the connection may
/// stay open afterwards.
inline bool reframe_for_scrubbing(http::response<http::buffer_body>& response, unsigned worker_version,
                                  bool keep_alive) {
  if (worker_version >= 11) {
    response.chunked(true);
    return keep_alive;
  }
  response.erase(http::field::content_length);
  response.erase(http::field::transfer_encoding);
  response.keep_alive(false);
  return false;
}

/// The response to the worker, scrubbed of injected secrets when the
/// request carried one (scrubber active), else relayed as it came. May clear
/// `keep_alive`: an HTTP/1.0 worker's scrubbed body ends with the connection.
template <class InStream, class OutStream>
asio::awaitable<RelayResult> relay_response_to_worker(InStream& in, beast::flat_buffer& in_buffer,
                                                      http::response_parser<http::buffer_body>& response,
                                                      OutStream& out, secrets::Scrubber& scrubber,
                                                      unsigned worker_version, bool& keep_alive,
                                                      std::chrono::milliseconds read_timeout,
                                                      std::chrono::milliseconds write_timeout) {
  if (!scrubber.active()) {
    co_return co_await relay_message(in, in_buffer, response, out, read_timeout, write_timeout);
  }
  scrub_head(response.get(), scrubber);
  if (!response.is_done()) keep_alive = reframe_for_scrubbing(response.get(), worker_version, keep_alive);
  std::string scrubbed;
  co_return co_await relay_parsed_message(in, in_buffer, response, out, read_timeout, write_timeout,
                                          [&scrubber, &scrubbed](std::string_view read, bool last) {
                                            scrubbed.clear();
                                            scrubber.feed(read, scrubbed);
                                            if (last) scrubber.finish(scrubbed);
                                            return std::string_view(scrubbed);
                                          });
}

}  // namespace egress::proxy
