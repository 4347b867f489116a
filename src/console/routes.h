// Routing of one console request: who is asking (session cookie or bearer
// secret), which page or endpoint, and the response with the security
// headers every console response carries. No I/O except the audit reads
// of the API; the event stream is answered by the server (server.cpp).
#pragma once

#include <boost/beast/http.hpp>
#include <string>

#include "console/auth.h"
#include "egress/console/server.h"

namespace egress::console {

namespace http = boost::beast::http;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

/// The console's state, owned by its one thread.
struct State {
  State(ConsoleOptions o, EventHub& h)
      : options(std::move(o)), hub(h), sessions(options.session_ttl) {}
  ConsoleOptions options;
  EventHub& hub;
  Sessions sessions;
  LoginLimiter limiter;
};

inline constexpr std::string_view kEventStreamPath = "/api/events";

/// Content-Security-Policy and the other headers of every response.
void add_security_headers(Response& response);
void add_security_headers(http::response<http::empty_body>& response);

/// Whether the request carries a live session or a right bearer secret.
/// A wrong bearer secret counts as a failed login of `source`.
bool authenticated(State& state, const Request& request, const std::string& source);

/// The response to anything but an authenticated event stream.
Response route(State& state, const Request& request, const std::string& source);

}  // namespace egress::console
