// Reason codes: the string form, parsing, and the one-sentence explanation a
// worker's operator reads in a 403 body. Codes and enumerators come from the
// EGRESS_REASONS X-macro in reason.h so the three can never drift apart; only
// the explanations are written here, in the macro's order.
#include "egress/policy/reason.h"

#include <array>
#include <cstddef>

namespace egress::policy {
namespace {

constexpr std::array<std::string_view, 0
#define EGRESS_REASON_COUNT(name, code, status) +1
                                           EGRESS_REASONS(EGRESS_REASON_COUNT)
#undef EGRESS_REASON_COUNT
                                       >
    kCodes = {
#define EGRESS_REASON_CODE(name, code, status) std::string_view{code},
        EGRESS_REASONS(EGRESS_REASON_CODE)
#undef EGRESS_REASON_CODE
};

constexpr std::array<int, kCodes.size()> kStatuses = {
#define EGRESS_REASON_STATUS(name, code, status) status,
    EGRESS_REASONS(EGRESS_REASON_STATUS)
#undef EGRESS_REASON_STATUS
};

}  // namespace

int status_for(Reason reason) {
  auto index = static_cast<std::size_t>(reason);
  return index < kStatuses.size() ? kStatuses[index] : 500;
}

std::string_view to_string(Reason reason) {
  auto index = static_cast<std::size_t>(reason);
  return index < kCodes.size() ? kCodes[index] : std::string_view{"unknown"};
}

std::optional<Reason> reason_from_string(std::string_view code) {
  for (std::size_t i = 0; i < kCodes.size(); ++i) {
    if (kCodes[i] == code) return static_cast<Reason>(i);
  }
  return std::nullopt;
}

// A switch rather than a table so the compiler (-Wswitch under -Werror) flags
// a reason added to the macro without an explanation.
std::string_view explain(Reason reason) {
  switch (reason) {
    case Reason::AllowRule:
      return "An allow rule in the egress policy permits this destination.";
    case Reason::InternalRule:
      return "An internal rule in the egress policy permits this internal destination.";
    case Reason::DeveloperMode:
      return "Developer mode permits public destinations; every attempt is logged.";
    case Reason::DenyRule:
      return "A deny rule in the egress policy blocks this destination; ask an admin to "
             "change the rule if the destination is needed.";
    case Reason::NotAllowed:
      return "No allow rule matches this destination; ask an admin to add it to the "
             "policy's allow list.";
    case Reason::NotInternal:
      return "Production mode only permits internal destinations; ask an admin to add an "
             "internal rule if this service is part of the deployment.";
    case Reason::PortNotAllowed:
      return "The host is allowed but not on this port; ask an admin to add the port to "
             "the rule's ports.";
    case Reason::PathNotAllowed:
      return "The host and port are allowed but not this path; ask an admin to add the "
             "path prefix to the rule's paths.";
    case Reason::MethodNotAllowed:
      return "The host is allowed but not for this HTTP method; ask an admin to add the "
             "method to the rule's methods.";
    case Reason::PrivateAddress:
      return "The destination resolves to a non-public address (loopback, private, "
             "link-local or metadata); add an internal rule naming it if it is intended.";
    case Reason::InvalidHost:
      return "The destination host is malformed or ambiguous; use a plain DNS name or IP "
             "address.";
    case Reason::SniMismatch:
      return "The TLS ClientHello names a different host than the CONNECT request (domain "
             "fronting); connect to the host you name in CONNECT.";
    case Reason::SniMissing:
      return "The TLS ClientHello carries no server name (SNI); egress needs it to check the "
             "tunnel's destination. Use a host name, not an IP address, in the URL.";
    case Reason::NotTls:
      return "The tunnel's first bytes are not a TLS ClientHello; egress only tunnels TLS. "
             "Ask an admin if a raw TCP protocol is needed.";
    case Reason::UnknownToken:
      return "The Proxy-Authorization token matches no role in the policy; check the worker's "
             "token, or ask an admin for one (egress policy hash-token makes the stored form).";
    case Reason::HostMismatch:
      return "Inside an inspected tunnel, the request's Host names another host than the tunnel's TLS server "
             "name; send each host's requests on a connection of its own.";
    case Reason::UnsupportedScheme:
      return "Only http URLs and CONNECT tunnels are proxied; use http:// or https:// "
             "through the proxy.";
    case Reason::OriginForm:
      return "This is a proxy: send absolute-form requests (GET http://host/path) or "
             "CONNECT host:port.";
    case Reason::BadRequest:
      return "The request could not be parsed; check the client sends valid HTTP/1.1.";
    case Reason::HeaderTooLarge:
      return "The request headers exceed the proxy's size limit; send smaller headers.";
    case Reason::AmbiguousFraming:
      return "The request's body framing is ambiguous (Content-Length together with "
             "Transfer-Encoding, Content-Length given twice, or a Transfer-Encoding other than "
             "chunked); egress refuses it because proxies and servers could read it differently. "
             "Send one Content-Length or Transfer-Encoding: chunked.";
    case Reason::InvalidHeader:
      return "A request header is malformed (folded onto a continuation line, a name with "
             "characters outside the HTTP token set, or a control character in its value); "
             "fix the client's headers.";
    case Reason::InvalidTarget:
      return "The request target contains spaces, control characters or non-ASCII bytes; "
             "percent-encode them in the URL.";
    case Reason::TargetTooLong:
      return "The request target (URL) is longer than the proxy allows; shorten the URL or "
             "ask an admin to raise limits.max_target_length.";
    case Reason::TooManyHeaders:
      return "The request has more header fields than the proxy allows; send fewer headers or "
             "ask an admin to raise limits.max_header_count.";
    case Reason::BodyTooLarge:
      return "The request body is larger than the proxy allows; send a smaller body or ask an "
             "admin to raise limits.max_body_bytes.";
    case Reason::UnsupportedVersion:
      return "Only HTTP/1.0 and HTTP/1.1 are accepted by this proxy (no HTTP/2 prior "
             "knowledge); configure the client for HTTP/1.1 proxying.";
    case Reason::ConnectionLimit:
      return "The proxy has reached its limit of concurrent connections; retry later, or ask "
             "an admin to raise limits.max_connections.";
    case Reason::ClientConnectionLimit:
      return "This client address has too many open connections to the proxy; close idle "
             "connections or reuse them, or ask an admin to raise "
             "limits.max_connections_per_client.";
    case Reason::ClientTimeout:
      return "The client did not send its request in time; send the request promptly "
             "after connecting.";
    case Reason::DnsNxdomain:
      return "The destination name does not exist in DNS; check the spelling.";
    case Reason::DnsFailure:
      return "The destination name could not be resolved; retry later or check the "
             "proxy's DNS servers.";
    case Reason::DnsTimeout:
      return "Resolving the destination name timed out; retry later or check the "
             "proxy's DNS servers.";
    case Reason::UpstreamUnreachable:
      return "The destination refused or could not be reached; check that the service "
             "is up.";
    case Reason::UpstreamTimeout:
      return "The destination did not answer in time; retry later.";
    case Reason::UpstreamCertInvalid:
      return "The destination's TLS certificate failed verification (expired, wrong name or untrusted issuer), "
             "so egress did not send the request; fix the server's certificate, or ask an admin to add its CA "
             "with --upstream-ca.";
    case Reason::ClientRejectedCertificate:
      return "The worker refused the certificate egress presents for this inspected host; install the egress "
             "inspection CA in the worker (egress ca show prints how), or ask an admin to turn inspection off "
             "for the host.";
    case Reason::ClientHandshakeFailed:
      return "The worker's TLS handshake with egress failed (no common protocol or cipher, or the connection "
             "closed mid-handshake); check the worker's TLS settings.";
    case Reason::AuditUnavailable:
      return "The audit log cannot be written, so egress refuses new connections (fail "
             "closed); an operator must restore the audit store.";
    case Reason::SecretUnavailable:
      return "The rule that allows this request adds a credential from egress's secrets directory, and that "
             "secret is missing or unreadable, so egress refuses rather than send the request without it; an "
             "operator must add the secret file (mode 0600) and reload.";
  }
  return "Unknown reason.";
}

}  // namespace egress::policy
