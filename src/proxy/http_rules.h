// Pure rewriting of HTTP heads as they pass through the proxy (header
// hygiene), and the refusal responses a worker gets. No I/O.
#pragma once

#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include "egress/proxy/evaluate.h"
#include "proxy/attempt.h"

namespace egress::proxy {

namespace http = boost::beast::http;

/// Turns a worker's absolute-form request head into what the upstream gets:
/// origin-form target, Host set from the URI's authority (never the
/// worker's Host header), hop-by-hop and Proxy-* headers removed (including
/// every header the Connection header names), Expect removed (the proxy
/// answers 100-continue itself), Via added, HTTP/1.1 keep-alive.
void prepare_upstream_request(http::request_header<>& head, const RequestTarget& target);

/// Cleans an upstream response head for the worker: hop-by-hop headers
/// removed, Via added, keep-alive set as the worker's connection allows.
void prepare_client_response(http::response_header<>& head, unsigned client_version, bool keep_alive);

/// The text/plain answer for a refused attempt: host, role, mode, reason
/// and what to do, with X-Egress-Request-Id and X-Egress-Reason headers.
http::response<http::string_body> refusal_response(int status, const Attempt& attempt, unsigned version,
                                                   bool keep_alive);

/// "host" or "host:port" (with brackets for IPv6) as a Host header value.
std::string authority_of(const policy::Target& target, std::uint16_t default_port);

}  // namespace egress::proxy
