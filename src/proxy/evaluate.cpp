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
  out.status = 400;
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
      out.refusal_status = policy::status_for(out.decision.reason);
      co_return out;
    }
    std::vector<policy::IpAddress> addresses;
    for (const auto& a : resolution.addresses) addresses.push_back(to_policy_address(a));
    out.decision = policy.check_addresses(out.decision, args, addresses);
    if (out.decision.reason == Reason::DnsFailure) out.refusal_status = policy::status_for(Reason::DnsFailure);  // an empty answer
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
    out.refusal_status = policy::status_for(Reason::DnsFailure);
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

}  // namespace egress::proxy
