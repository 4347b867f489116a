// The decision pipeline shared by `egress serve` and `egress check`: parse
// what the worker asked for, normalise it, decide, resolve, check the
// addresses. `check` answers "what would serve do" from this same code, so
// the what-if can never drift from the real thing.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "egress/config/config.h"
#include "egress/dns/resolver.h"
#include "egress/policy/policy.h"

namespace egress::proxy {

/// What a worker asked to reach, parsed from a request line.
struct RequestTarget {
  policy::RequestKind kind = policy::RequestKind::Http;
  std::string scheme;        // "http" for forwarded requests, "" for CONNECT
  std::string raw_host;      // as the worker wrote it (for the audit row if it fails)
  policy::Target target;     // normalised host + port
  std::string path;          // encoded path ("/" if empty); "" for CONNECT
  std::string origin_form;   // path + "?query" to send upstream; "" for CONNECT
};

/// Either a parsed target or why it was refused (reason + text; the HTTP
/// status is the reason's: policy::status_for).
struct ParsedTarget {
  std::optional<RequestTarget> request;
  policy::Reason reason = policy::Reason::BadRequest;
  std::string error;
};

/// An absolute-form request target ("http://host[:port]/path?q"). Origin-form
/// ("/path") is refused with reason origin-form, other schemes with
/// unsupported-scheme, userinfo and unparsable hosts with bad-request /
/// invalid-host.
ParsedTarget parse_absolute_target(std::string_view target);

/// A CONNECT authority ("host:port", "[v6]:port").
ParsedTarget parse_connect_target(std::string_view authority);

/// The target of a request inside an inspected tunnel (pure; tested alone):
/// origin-form ("/path?q") or absolute-form with https and the tunnel's
/// host. The Host header, when present (required for HTTP/1.1), must name
/// the tunnel's host (and port, if it gives one): otherwise status 421 with
/// reason host-mismatch. Anything else is 400 bad-request.
ParsedTarget parse_inspected_target(std::string_view request_target, std::string_view host_header,
                                    unsigned version, const policy::Target& tunnel);

/// The decision for a request inside an inspected tunnel: decided with its
/// method and path, and the one address the tunnel is connected to checked
/// again where the rule needs addresses (invariant 3: no new lookup).
policy::Decision decide_inspected(const policy::Policy& policy, const RequestTarget& request, std::string_view method,
                                  std::string_view role, const boost::asio::ip::address& upstream);

/// The resolver settings of a serve configuration (static hosts parsed).
/// Throws std::runtime_error naming a dns.hosts entry that is not an address.
dns::ResolverOptions resolver_options(const config::DnsConfig& dns);

/// An Asio address as the policy's plain value type.
policy::IpAddress to_policy_address(const boost::asio::ip::address& address);

/// "ip:port" or "[v6]:port", as audit rows and logs write an endpoint.
std::string endpoint_text(const boost::asio::ip::tcp::endpoint& endpoint);

/// The outcome of evaluate(): the final decision and, when it allows, the
/// exact endpoints to connect to (invariant 3: never resolved again).
struct Evaluation {
  policy::Decision decision;
  std::vector<boost::asio::ip::tcp::endpoint> endpoints;
  bool from_dns_cache = false;
};

/// Decides `request` for `role` under `policy`, resolving through `resolver`
/// when the decision depends on the addresses.
boost::asio::awaitable<Evaluation> evaluate(const policy::Policy& policy, dns::Resolver& resolver,
                                            const RequestTarget& request, std::string_view method,
                                            std::string_view role);

}  // namespace egress::proxy
