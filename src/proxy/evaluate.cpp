// Request-target parsing (Boost.URL) and the decide → resolve → check
// pipeline. See egress/proxy/evaluate.h.
#include "egress/proxy/evaluate.h"

#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

#include "proxy/origin_form.h"

namespace egress::proxy {
namespace {

namespace asio = boost::asio;
using policy::Reason;

ParsedTarget refuse(Reason reason, std::string error) {
  ParsedTarget out;
  out.reason = reason;
  out.error = std::move(error);
  return out;
}

asio::ip::address to_asio_address(const policy::IpAddress& address) {
  if (address.is_v4()) {
    return asio::ip::address_v4({address.bytes[0], address.bytes[1], address.bytes[2], address.bytes[3]});
  }
  return asio::ip::address_v6(address.bytes);
}

Reason reason_for(dns::ResolveStatus status) {
  switch (status) {
    case dns::ResolveStatus::NxDomain:
    case dns::ResolveStatus::NoData:
      return Reason::DnsNxdomain;
    case dns::ResolveStatus::Timeout:
      return Reason::DnsTimeout;
    default:
      return Reason::DnsFailure;
  }
}

/// Splits a Host header value into host and optional port ("h", "h:8443",
/// "[::1]:8443"); false when it is not of that shape.
bool split_host_header(std::string_view value, std::string_view& host, std::optional<std::uint16_t>& port) {
  std::string_view port_text;
  if (value.starts_with('[')) {
    const auto close = value.find(']');
    if (close == std::string_view::npos) return false;
    host = value.substr(0, close + 1);
    const auto rest = value.substr(close + 1);
    if (!rest.empty() && !rest.starts_with(':')) return false;
    port_text = rest.empty() ? rest : rest.substr(1);
  } else {
    const auto colon = value.find(':');
    host = value.substr(0, colon);
    if (colon != std::string_view::npos) port_text = value.substr(colon + 1);
    if (port_text.find(':') != std::string_view::npos) return false;
  }
  if (port_text.empty()) return !host.empty();
  unsigned number = 0;
  for (const char c : port_text) {
    if (c < '0' || c > '9' || number > 65535) return false;
    number = number * 10 + static_cast<unsigned>(c - '0');
  }
  if (number == 0 || number > 65535) return false;
  port = static_cast<std::uint16_t>(number);
  return !host.empty();
}

/// "" when `authority` (a Host header or an absolute URI's host[:port])
/// names the tunnel's host; otherwise why not.
std::string authority_mismatch(std::string_view authority, const policy::Target& tunnel) {
  std::string_view host;
  std::optional<std::uint16_t> port;
  if (!split_host_header(authority, host, port)) return "'" + std::string(authority) + "' is not a host[:port]";
  const auto normalized = policy::normalize_host(host);
  if (!normalized.host || normalized.host->host != tunnel.host.host) {
    return "Host '" + std::string(authority) + "' but the tunnel's TLS server name is " + tunnel.host.host;
  }
  if (port && *port != tunnel.port) {
    return "Host '" + std::string(authority) + "' but the tunnel goes to port " + std::to_string(tunnel.port);
  }
  return {};
}

}  // namespace

dns::ResolverOptions resolver_options(const config::DnsConfig& dns) {
  dns::ResolverOptions options;
  options.servers = dns.servers;
  options.use_hosts_file = dns.use_hosts_file;
  options.timeout = dns.timeout;
  options.min_ttl = dns.min_ttl;
  options.max_ttl = dns.max_ttl;
  options.negative_ttl = dns.negative_ttl;
  for (const auto& [name, addresses] : dns.hosts) {
    auto& out = options.static_hosts[name];
    for (const auto& text : addresses) {
      boost::system::error_code ec;
      out.push_back(asio::ip::make_address(text, ec));
      if (ec) throw std::runtime_error("dns.hosts: '" + text + "' for " + name + " is not an IP address");
    }
  }
  return options;
}

policy::IpAddress to_policy_address(const asio::ip::address& address) {
  if (address.is_v4()) return policy::IpAddress::v4(address.to_v4().to_uint());
  return policy::IpAddress::v6(address.to_v6().to_bytes());
}

std::string endpoint_text(const asio::ip::tcp::endpoint& endpoint) {
  const auto address = endpoint.address();
  // append: GCC 12 at -O3 reports a false -Wstringop-overflow on ":" + std::string&&
  std::string text = address.is_v6() ? std::string("[").append(address.to_string()).append("]") : address.to_string();
  return text.append(":").append(std::to_string(endpoint.port()));
}

ParsedTarget parse_absolute_target(std::string_view target) {
  if (target.starts_with('/')) {
    return refuse(Reason::OriginForm,
                  "this is a forward proxy: send the absolute URL (GET http://host/path), "
                  "or use CONNECT host:443 for HTTPS");
  }
  // parse_uri, not parse_absolute_uri: a fragment is tolerated and dropped
  // (it is never sent upstream), as curl and browsers do.
  const auto parsed = boost::urls::parse_uri(target);
  if (!parsed) return refuse(Reason::BadRequest, "the request target is not a valid absolute URL");
  const boost::urls::url_view url = *parsed;
  // Boost.URL 1.81 accepts an authority followed by a path that does not
  // start with '/' ("http://1.2.3.4.evil.com/" as host 1.2.3.4, path
  // ".evil.com/"; "http://h:8o/" as port 8). RFC 3986 path-abempty forbids
  // it; refuse rather than decide on a host the worker did not mean.
  if (url.has_authority() && !url.encoded_path().empty() && !url.encoded_path().starts_with('/')) {
    return refuse(Reason::BadRequest, "the request target is not a valid absolute URL");
  }

  // Schemes are case-insensitive ("HTTP://" is http): compare scheme_id().
  const auto scheme = url.scheme();
  if (url.scheme_id() == boost::urls::scheme::https) {
    return refuse(Reason::UnsupportedScheme, "send https:// URLs through a CONNECT tunnel (set HTTPS_PROXY)");
  }
  if (url.scheme_id() != boost::urls::scheme::http) {
    return refuse(Reason::UnsupportedScheme, "scheme '" + std::string(scheme) + "' is not proxied; only http (and https via CONNECT)");
  }
  if (!url.has_authority() || url.encoded_host().empty()) {
    return refuse(Reason::BadRequest, "the URL names no host");
  }
  if (url.has_userinfo()) {
    return refuse(Reason::BadRequest, "URLs with user:password@ are refused; send credentials in headers");
  }

  RequestTarget out;
  out.kind = policy::RequestKind::Http;
  out.scheme = "http";
  out.raw_host = std::string(url.encoded_host());
  auto host = policy::normalize_host(out.raw_host);
  if (!host.host) return refuse(Reason::InvalidHost, host.error);
  out.target.host = std::move(*host.host);

  out.target.port = 80;
  if (url.has_port() && !url.port().empty()) {
    const auto port = url.port_number();
    if (port == 0 || std::to_string(port) != url.port()) return refuse(Reason::BadRequest, "the port must be 1-65535");
    out.target.port = port;
  }
  set_path_and_origin_form(out, url);

  ParsedTarget result;
  result.request = std::move(out);
  return result;
}

ParsedTarget parse_connect_target(std::string_view authority) {
  auto parsed = policy::parse_authority(authority);
  if (!parsed.target) return refuse(Reason::InvalidHost, parsed.error);
  RequestTarget out;
  out.kind = policy::RequestKind::Connect;
  out.raw_host = std::string(authority);
  out.target = std::move(*parsed.target);
  ParsedTarget result;
  result.request = std::move(out);
  return result;
}

asio::awaitable<Evaluation> evaluate(const policy::Policy& policy, dns::Resolver& resolver,
                                     const RequestTarget& request, std::string_view method,
                                     std::string_view role) {
  const policy::DecideArgs args{request.target, request.kind, method, request.path, role};
  Evaluation out;
  out.decision = policy.decide(args);

  const auto& host = request.target.host;
  if (out.decision.needs_addresses) {
    auto resolution = co_await resolver.resolve(host.host);
    out.from_dns_cache = resolution.from_cache;
    if (resolution.status != dns::ResolveStatus::Ok) {
      // A name the policy refused was looked up only to see whether an
      // internal cidr would rescue it; failing that, the refusal stands
      // (403, its own reason), not a DNS error.
      if (!out.decision.allows()) {
        out.decision.needs_addresses = false;
        co_return out;
      }
      policy::Decision failed = out.decision;
      failed.verdict = policy::Verdict::Deny;
      failed.reason = reason_for(resolution.status);
      failed.detail = host.host + ": " + resolution.error;
      out.decision = std::move(failed);
      co_return out;
    }
    std::vector<policy::IpAddress> addresses;
    for (const auto& a : resolution.addresses) addresses.push_back(to_policy_address(a));
    out.decision = policy.check_addresses(out.decision, args, addresses);
    if (out.decision.allows()) {
      for (const auto& a : resolution.addresses) out.endpoints.emplace_back(a, request.target.port);
    }
  } else if (out.decision.allows() && host.address) {
    out.endpoints.emplace_back(to_asio_address(*host.address), request.target.port);
  }
  if (out.decision.allows() && out.endpoints.empty()) {
    // A decision that allows but names nothing to connect to would be a
    // policy bug; refuse rather than guess.
    policy::Decision refused = out.decision;
    refused.verdict = policy::Verdict::Deny;
    refused.reason = Reason::DnsFailure;
    refused.detail = "no address to connect to";
    out.decision = std::move(refused);
  }
  co_return out;
}

policy::Decision decide_inspected(const policy::Policy& policy, const RequestTarget& request, std::string_view method,
                                  std::string_view role, const boost::asio::ip::address& upstream) {
  const policy::DecideArgs args{request.target, policy::RequestKind::Inspected, method, request.path, role};
  const auto decision = policy.decide(args);
  if (!decision.needs_addresses) return decision;
  const policy::IpAddress address = to_policy_address(upstream);
  return policy.check_addresses(decision, args, std::span<const policy::IpAddress>(&address, 1));
}

ParsedTarget parse_inspected_target(std::string_view request_target, std::string_view host_header, unsigned version,
                                    const policy::Target& tunnel) {
  RequestTarget out;
  out.kind = policy::RequestKind::Inspected;
  out.scheme = "https";
  out.target = tunnel;
  out.raw_host = tunnel.host.host;
  boost::urls::url_view url;
  if (request_target.starts_with('/')) {
    const auto parsed = boost::urls::parse_origin_form(request_target);
    if (!parsed) return refuse(Reason::BadRequest, "the request target is not a valid path");
    url = *parsed;
  } else {
    const auto parsed = boost::urls::parse_absolute_uri(request_target);
    if (!parsed) return refuse(Reason::BadRequest, "the request target is neither a path nor an https URL");
    url = *parsed;
    if (url.scheme_id() != boost::urls::scheme::https || !url.has_authority() || url.has_userinfo()) {
      return refuse(Reason::BadRequest, "an absolute request target in an HTTPS tunnel must be https://host/…");
    }
    if (!url.encoded_path().empty() && !url.encoded_path().starts_with('/')) {
      return refuse(Reason::BadRequest, "the request target is not a valid https URL");
    }
    if (auto why = authority_mismatch(url.encoded_authority(), tunnel); !why.empty()) {
      return refuse(Reason::HostMismatch, std::move(why));
    }
  }
  if (host_header.empty()) {
    if (version >= 11) return refuse(Reason::BadRequest, "an HTTP/1.1 request needs a Host header");
  } else if (auto why = authority_mismatch(host_header, tunnel); !why.empty()) {
    return refuse(Reason::HostMismatch, std::move(why));
  }
  set_path_and_origin_form(out, url);
  ParsedTarget result;
  result.request = std::move(out);
  return result;
}

}  // namespace egress::proxy
