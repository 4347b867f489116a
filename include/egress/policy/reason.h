// Reason codes: why egress allowed or refused an attempt. Each code is a
// stable, kebab-case string that appears in 403 bodies, the audit log and
// metrics, and is documented in docs/operating.md ("Reason codes"). The list is
// declared once here; everything else (enum, to_string, parsing, metric
// labels) is generated from it.
#pragma once

#include <optional>
#include <string_view>

namespace egress::policy {

// X(Enumerator, "code")
#define EGRESS_REASONS(X)                                                         \
  /* allowed */                                                                   \
  X(AllowRule, "allow-rule")               /* an allow rule matched */            \
  X(InternalRule, "internal-rule")         /* an internal rule matched */         \
  X(DeveloperMode, "developer-mode")       /* developer mode allows public */     \
  /* refused by policy */                                                         \
  X(DenyRule, "deny-rule")                 /* a deny rule matched */              \
  X(NotAllowed, "not-allowed")             /* no allow rule matched */            \
  X(NotInternal, "not-internal")           /* production: not internal */         \
  X(PortNotAllowed, "port-not-allowed")    /* host matched, port did not */       \
  X(PathNotAllowed, "path-not-allowed")    /* host and port matched, path not */  \
  X(MethodNotAllowed, "method-not-allowed") /* host and port matched, method not */\
  X(PrivateAddress, "private-address")     /* resolves to a non-public address */ \
  X(InvalidHost, "invalid-host")           /* target could not be normalised */   \
  X(SniMismatch, "sni-mismatch")           /* TLS SNI names another host */       \
  X(SniMissing, "sni-missing")             /* TLS ClientHello without SNI */      \
  X(NotTls, "not-tls")                     /* tunnel bytes are not a TLS hello */ \
  X(UnknownToken, "unknown-token")         /* Proxy-Authorization matches no role */ \
  X(HostMismatch, "host-mismatch")         /* inspected request's Host is not the SNI */ \
  /* refused before or after the decision */                                      \
  X(UnsupportedScheme, "unsupported-scheme")                                      \
  X(OriginForm, "origin-form")             /* not a proxy request */              \
  X(BadRequest, "bad-request")                                                    \
  X(HeaderTooLarge, "header-too-large")                                           \
  X(AmbiguousFraming, "ambiguous-framing") /* CL+TE, duplicate CL, TE not chunked */ \
  X(InvalidHeader, "invalid-header")       /* obs-fold, bad name, control char */ \
  X(InvalidTarget, "invalid-target")       /* control, space or 8-bit in target */ \
  X(TargetTooLong, "target-too-long")      /* over limits.max_target_length */    \
  X(TooManyHeaders, "too-many-headers")    /* over limits.max_header_count */     \
  X(BodyTooLarge, "body-too-large")        /* over limits.max_body_bytes */       \
  X(UnsupportedVersion, "unsupported-version") /* not HTTP/1.0 or 1.1 (HTTP/2 preface) */ \
  X(ConnectionLimit, "connection-limit")   /* over limits.max_connections */      \
  X(ClientConnectionLimit, "client-connection-limit") /* over max_connections_per_client */ \
  X(ClientTimeout, "client-timeout")       /* request head not sent in time */    \
  X(DnsNxdomain, "dns-nxdomain")                                                  \
  X(DnsFailure, "dns-failure")                                                    \
  X(DnsTimeout, "dns-timeout")                                                    \
  X(UpstreamUnreachable, "upstream-unreachable")                                  \
  X(UpstreamTimeout, "upstream-timeout")                                          \
  X(UpstreamCertInvalid, "upstream-cert-invalid") /* inspected upstream failed verification */ \
  X(ClientRejectedCertificate, "client-rejected-certificate") /* worker does not trust the CA */ \
  X(ClientHandshakeFailed, "client-handshake-failed") /* worker's TLS to egress failed otherwise */ \
  X(AuditUnavailable, "audit-unavailable")                                        \
  X(SecretUnavailable, "secret-unavailable") /* an inject: rule's secret is missing */

enum class Reason {
#define EGRESS_REASON_ENUM(name, code) name,
  EGRESS_REASONS(EGRESS_REASON_ENUM)
#undef EGRESS_REASON_ENUM
};

/// The stable code, e.g. "private-address".
std::string_view to_string(Reason reason);

/// Parses a code back; nullopt for an unknown code.
std::optional<Reason> reason_from_string(std::string_view code);

/// One sentence for a person reading a 403 body: what happened and what to do.
std::string_view explain(Reason reason);

}  // namespace egress::policy
