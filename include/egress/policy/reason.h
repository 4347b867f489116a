// Reason codes: why egress allowed or refused an attempt. Each code is a
// stable, kebab-case string that appears in 403 bodies, the audit log and
// metrics, and is documented in docs/operating.md ("Reason codes"). The list is
// declared once here; everything else (enum, to_string, parsing, metric
// labels) is generated from it.
#pragma once

#include <optional>
#include <string_view>

namespace egress::policy {

// X(Enumerator, "code", HTTP status a refusal for this reason is answered
// with; 0 = none: the reason allows, or the connection is closed without an
// answer). status_for() reads this column, so every path answers a reason
// with the same status; tests/integration/test_docs.py checks the docs'
// reason table against it.
#define EGRESS_REASONS(X)                                                         \
  /* allowed */                                                                   \
  X(AllowRule, "allow-rule", 0)               /* an allow rule matched */            \
  X(InternalRule, "internal-rule", 0)         /* an internal rule matched */         \
  X(DeveloperMode, "developer-mode", 0)       /* developer mode allows public */     \
  /* refused by policy */                                                         \
  X(DenyRule, "deny-rule", 403)                 /* a deny rule matched */              \
  X(NotAllowed, "not-allowed", 403)             /* no allow rule matched */            \
  X(NotInternal, "not-internal", 403)           /* production: not internal */         \
  X(PortNotAllowed, "port-not-allowed", 403)    /* host matched, port did not */       \
  X(PathNotAllowed, "path-not-allowed", 403)    /* host and port matched, path not */  \
  X(MethodNotAllowed, "method-not-allowed", 403) /* host and port matched, method not */\
  X(PrivateAddress, "private-address", 403)     /* resolves to a non-public address */ \
  X(InvalidHost, "invalid-host", 400)           /* target could not be normalised */   \
  X(SniMismatch, "sni-mismatch", 0)           /* TLS SNI names another host */       \
  X(SniMissing, "sni-missing", 0)             /* TLS ClientHello without SNI */      \
  X(NotTls, "not-tls", 0)                     /* tunnel bytes are not a TLS hello */ \
  X(UnknownToken, "unknown-token", 407)         /* Proxy-Authorization matches no role */ \
  X(HostMismatch, "host-mismatch", 421)         /* inspected request's Host is not the SNI */ \
  /* refused before or after the decision */                                      \
  X(UnsupportedScheme, "unsupported-scheme", 400)                                      \
  X(OriginForm, "origin-form", 400)             /* not a proxy request */              \
  X(BadRequest, "bad-request", 400)                                                    \
  X(HeaderTooLarge, "header-too-large", 431)                                           \
  X(AmbiguousFraming, "ambiguous-framing", 400) /* CL+TE, duplicate CL, TE not chunked */ \
  X(InvalidHeader, "invalid-header", 400)       /* obs-fold, bad name, control char */ \
  X(InvalidTarget, "invalid-target", 400)       /* control, space or 8-bit in target */ \
  X(TargetTooLong, "target-too-long", 414)      /* over limits.max_target_length */    \
  X(TooManyHeaders, "too-many-headers", 431)    /* over limits.max_header_count */     \
  X(BodyTooLarge, "body-too-large", 413)        /* over limits.max_body_bytes */       \
  X(UnsupportedVersion, "unsupported-version", 505) /* not HTTP/1.0 or 1.1 (HTTP/2 preface) */ \
  X(ConnectionLimit, "connection-limit", 503)   /* over limits.max_connections */      \
  X(ClientConnectionLimit, "client-connection-limit", 503) /* over max_connections_per_client */ \
  X(ClientTimeout, "client-timeout", 0)       /* request head not sent in time */    \
  X(DnsNxdomain, "dns-nxdomain", 502)                                                  \
  X(DnsFailure, "dns-failure", 502)                                                    \
  X(DnsTimeout, "dns-timeout", 504)                                                    \
  X(UpstreamUnreachable, "upstream-unreachable", 502)                                  \
  X(UpstreamTimeout, "upstream-timeout", 504)                                          \
  X(UpstreamCertInvalid, "upstream-cert-invalid", 502) /* inspected upstream failed verification */ \
  X(ClientRejectedCertificate, "client-rejected-certificate", 0) /* worker does not trust the CA */ \
  X(ClientHandshakeFailed, "client-handshake-failed", 0) /* worker's TLS to egress failed otherwise */ \
  X(AuditUnavailable, "audit-unavailable", 503)                                        \
  X(SecretUnavailable, "secret-unavailable", 503) /* an inject: rule's secret is missing */

enum class Reason {
#define EGRESS_REASON_ENUM(name, code, status) name,
  EGRESS_REASONS(EGRESS_REASON_ENUM)
#undef EGRESS_REASON_ENUM
};

/// The stable code, e.g. "private-address".
std::string_view to_string(Reason reason);

/// Parses a code back; nullopt for an unknown code.
std::optional<Reason> reason_from_string(std::string_view code);

/// The HTTP status a refusal for `reason` is answered with (the table's
/// third column); 0 when there is no answer (an allowing reason, or a
/// tunnel or connection that is closed instead).
int status_for(Reason reason);

/// One sentence for a person reading a 403 body: what happened and what to do.
std::string_view explain(Reason reason);

}  // namespace egress::policy
