// Header hygiene and refusal responses. Hop-by-hop headers are defined by
// RFC 9110 §7.6.1; Proxy-Authorization is consumed here and never forwarded
// (invariant 6).
#include "proxy/http_rules.h"

#include <boost/beast/http/field.hpp>

#include <array>
#include <string>
#include <vector>

namespace egress::proxy {
namespace {

constexpr std::string_view kVia = "1.1 egress";

void remove_hop_by_hop(http::fields& fields) {
  // Headers named by Connection are hop-by-hop too; collect them before
  // erasing Connection itself.
  std::vector<std::string> named;
  const auto [first, last] = fields.equal_range(http::field::connection);
  for (auto it = first; it != last; ++it) {
    std::string_view list = it->value();
    while (!list.empty()) {
      const auto comma = list.find(',');
      auto token = list.substr(0, comma);
      while (!token.empty() && (token.front() == ' ' || token.front() == '\t')) token.remove_prefix(1);
      while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.remove_suffix(1);
      if (!token.empty()) named.emplace_back(token);
      list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
    }
  }
  for (const auto& name : named) {
    // Framing stays under the parser's and serializer's control.
    if (!boost::beast::iequals(name, "transfer-encoding") && !boost::beast::iequals(name, "content-length")) {
      fields.erase(name);
    }
  }
  static constexpr std::array kHopByHop = {
      http::field::connection,        http::field::keep_alive, http::field::proxy_connection,
      http::field::proxy_authorization, http::field::proxy_authenticate, http::field::te,
      http::field::trailer,           http::field::upgrade,
  };
  for (const auto f : kHopByHop) fields.erase(f);
}

/// Connection was removed with the hop-by-hop headers; state persistence
/// explicitly only where the version's default differs.
void set_keep_alive(http::fields& fields, unsigned version, bool keep_alive) {
  if (version >= 11 && !keep_alive) fields.set(http::field::connection, "close");
  if (version < 11 && keep_alive) fields.set(http::field::connection, "keep-alive");
}

}  // namespace

std::string authority_of(const policy::Target& target, std::uint16_t default_port) {
  std::string out = target.host.type == policy::HostType::Ipv6 ? "[" + target.host.host + "]" : target.host.host;
  // append: GCC 12 at -O3 reports a false -Wstringop-overflow on ":" + std::string&&
  if (target.port != default_port) out.append(":").append(std::to_string(target.port));
  return out;
}

void prepare_upstream_request(http::request_header<>& head, const RequestTarget& target) {
  remove_hop_by_hop(head);
  head.erase(http::field::expect);
  head.target(target.origin_form);
  head.set(http::field::host, authority_of(target.target, target.scheme == "https" ? 443 : 80));
  head.insert(http::field::via, kVia);
  head.version(11);
}

void prepare_client_response(http::response_header<>& head, unsigned client_version, bool keep_alive) {
  remove_hop_by_hop(head);
  head.insert(http::field::via, kVia);
  head.version(client_version == 10 ? 10 : 11);
  set_keep_alive(head, head.version(), keep_alive);
}

http::response<http::string_body> refusal_response(int status, const Attempt& attempt, unsigned version,
                                                   bool keep_alive) {
  http::response<http::string_body> res{static_cast<http::status>(status), version == 10 ? 10u : 11u};
  std::string body = "egress refused this request\n";
  const auto line = [&body](std::string_view name, std::string_view value) {
    if (value.empty()) return;
    body += "  ";
    body += name;
    body += value;
    body += '\n';
  };
  line("message:    ", attempt.deny_message());
  line("host:       ", attempt.host());
  line("role:       ", attempt.role().empty() ? "(none)" : attempt.role());
  line("mode:       ", attempt.mode());
  line("reason:     ", policy::to_string(attempt.refusal_reason()));
  line("detail:     ", attempt.detail());
  line("what to do: ", policy::explain(attempt.refusal_reason()));
  line("request id: ", attempt.request_id());
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  res.set(http::field::cache_control, "no-store");
  res.set("X-Egress-Request-Id", attempt.request_id());
  res.set("X-Egress-Reason", policy::to_string(attempt.refusal_reason()));
  res.set(http::field::via, kVia);
  if (status == 407) res.set(http::field::proxy_authenticate, "Basic realm=\"egress\"");
  res.body() = std::move(body);
  res.keep_alive(keep_alive);
  res.prepare_payload();
  return res;
}

}  // namespace egress::proxy
