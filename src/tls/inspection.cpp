// The shared TLS state of inspection: the SSL_CTX that faces workers (minted
// leaves, ALPN http/1.1 only) and the one that faces upstreams (full
// verification, SNI). See egress/tls/inspection.h.
#include "egress/tls/inspection.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

namespace egress::tls {
namespace {

constexpr const char* kTls13Suites = "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384";
constexpr unsigned char kHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

/// Server-side ALPN: http/1.1 when the worker offers it; otherwise no ALPN
/// at all (the worker then speaks HTTP/1.1 by default), never h2, which the
/// inspected request loop does not speak.
int select_http11(SSL*, const unsigned char** out, unsigned char* out_length, const unsigned char* in,
                  unsigned int in_length, void*) {
  unsigned char* selected = nullptr;
  const int found = SSL_select_next_proto(&selected, out_length, kHttp11, sizeof kHttp11, in, in_length);
  if (found != OPENSSL_NPN_NEGOTIATED) return SSL_TLSEXT_ERR_NOACK;
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

SslCtxPtr server_context(const LeafMinter& minter) {
  SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) throw CaError(openssl_error("creating the worker-facing TLS context"));
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  // AES-128 first (OpenSSL's default puts AES-256-GCM-SHA384 first): as
  // strong as the minted P-256 key, and SHA-256 makes every step of the
  // TLS 1.3 key schedule cheaper.
  if (SSL_CTX_set_ciphersuites(ctx.get(), kTls13Suites) != 1) {
    throw CaError(openssl_error("setting the TLS 1.3 cipher suites"));
  }
  // No session resumption towards workers: each handshake is cheap with
  // ECDSA, and tickets would need a key rotated and shared across threads.
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(ctx.get(), 0);
  if (SSL_CTX_use_PrivateKey(ctx.get(), minter.key()) != 1) {
    throw CaError(openssl_error("installing the leaf key"));
  }
  // An intermediate (enterprise) CA goes out as the chain, so workers can
  // validate up to the root they trust. A root CA (self-signed, as `egress
  // ca init` makes) does not: workers must have it already, and sending it
  // only costs every handshake bytes and a certificate parse.
  X509* ca = minter.authority().cert();
  const bool root = X509_self_signed(ca, 0) == 1;
  if (!root && SSL_CTX_add1_chain_cert(ctx.get(), ca) != 1) {
    throw CaError(openssl_error("installing the CA certificate as the chain"));
  }
  // Nothing to look up either way: without this, OpenSSL would try to
  // build a chain from the (empty) store on every handshake.
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_NO_AUTO_CHAIN);
  SSL_CTX_set_alpn_select_cb(ctx.get(), select_http11, nullptr);
  return ctx;
}

SslCtxPtr upstream_context(const std::string& extra_bundle) {
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) throw CaError(openssl_error("creating the upstream TLS context"));
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION);
  if (SSL_CTX_set_default_verify_paths(ctx.get()) != 1) ERR_clear_error();  // no system store: the bundle may do
  if (!extra_bundle.empty() && SSL_CTX_load_verify_locations(ctx.get(), extra_bundle.c_str(), nullptr) != 1) {
    throw CaError(openssl_error("--upstream-ca " + extra_bundle + ": cannot load the certificates (a PEM bundle is expected)"));
  }
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  // A pooled connection waits with its 34 KiB of record buffers freed.
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_alpn_protos(ctx.get(), kHttp11, sizeof kHttp11);
  return ctx;
}

}  // namespace

Inspection::Inspection(const InspectionOptions& options, std::shared_ptr<const Authority> ca)
    : options_(options),
      minter_(std::move(ca), options.leaf_validity),
      server_ctx_(server_context(minter_)),
      upstream_ctx_(upstream_context(options.upstream_ca)) {}

std::shared_ptr<const Inspection> Inspection::load(const InspectionOptions& options) {
  if (options.ca_cert.empty() || options.ca_key.empty()) {
    throw CaError("TLS inspection needs both the CA certificate and its key (--ca-cert and --ca-key)");
  }
  auto ca = Authority::load(options.ca_cert, options.ca_key);
  return std::make_shared<const Inspection>(options, std::move(ca));
}

SslPtr Inspection::new_server_ssl(X509* leaf) const {
  SslPtr ssl(SSL_new(server_ctx_.get()));
  if (!ssl || SSL_use_certificate(ssl.get(), leaf) != 1) {
    throw CaError(openssl_error("preparing TLS towards the worker"));
  }
  return ssl;
}

SslPtr Inspection::new_upstream_ssl(const std::string& host, bool is_ip_literal) const {
  SslPtr ssl(SSL_new(upstream_ctx_.get()));
  if (!ssl) throw CaError(openssl_error("preparing TLS towards the upstream"));
  bool ok = true;
  if (is_ip_literal) {
    // No SNI for addresses (RFC 6066 §3); the certificate must name the IP.
    ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl.get()), host.c_str()) == 1;
  } else {
    SSL_set_hostflags(ssl.get(), X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    ok = SSL_set_tlsext_host_name(ssl.get(), host.c_str()) == 1 && SSL_set1_host(ssl.get(), host.c_str()) == 1;
  }
  if (!ok) throw CaError(openssl_error("setting the upstream name " + host));
  return ssl;
}

HandshakeFailure classify_handshake_error(unsigned long openssl_error) {
  if (ERR_GET_LIB(openssl_error) != ERR_LIB_SSL) return HandshakeFailure::Other;
  switch (ERR_GET_REASON(openssl_error)) {
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    case SSL_R_TLSV1_ALERT_DECRYPT_ERROR:  // a pinned key that did not match, for some clients
      return HandshakeFailure::CertificateRejected;
    default:
      return HandshakeFailure::Other;
  }
}

std::string verification_error(const SSL* ssl) {
  // SSL_new starts at X509_V_OK, and a failed verification leaves its
  // code here even when the handshake was aborted because of it.
  if (!ssl) return {};
  const long result = SSL_get_verify_result(ssl);
  if (result == X509_V_OK) return {};
  return X509_verify_cert_error_string(result);
}

}  // namespace egress::tls
