// Everything TLS inspection needs that is shared by all proxy threads and
// fixed for the life of `serve`: the CA, the leaf minter, the server-side
// SSL_CTX that terminates a worker's TLS and the client-side SSL_CTX that
// verifies upstreams. Built once at startup; read-only afterwards, so every
// thread uses it without locks (SSL_new on a configured SSL_CTX is
// thread-safe). The proxy owns the sockets; this hands it SSL objects.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "egress/tls/ca.h"
#include "egress/tls/leaf.h"
#include "egress/tls/openssl.h"

namespace egress::tls {

struct InspectionOptions {
  std::string ca_cert;      // PEM CA certificate
  std::string ca_key;       // PEM key, unencrypted, mode 0600
  std::string upstream_ca;  // extra PEM bundle trusted for upstreams, besides the system store; "" for none
  std::size_t cert_cache_size = 1000;  // leaf certificates cached per proxy thread
  std::chrono::seconds leaf_validity = std::chrono::hours(24);
};

class Inspection {
 public:
  /// Loads and checks the CA, generates the shared leaf key and builds both
  /// contexts. Throws CaError naming the file and the problem.
  static std::shared_ptr<const Inspection> load(const InspectionOptions& options);

  const LeafMinter& minter() const { return minter_; }
  const InspectionOptions& options() const { return options_; }

  /// An SSL for one worker connection that presents `leaf` (with the CA
  /// certificate as its chain) and negotiates ALPN http/1.1 only.
  SslPtr new_server_ssl(X509* leaf) const;

  /// An SSL for one upstream connection: SNI set to `host` (unless it is an
  /// IP literal) and the certificate verified against the system trust
  /// store plus the extra bundle, for `host` (name or IP).
  SslPtr new_upstream_ssl(const std::string& host, bool is_ip_literal) const;

  Inspection(const InspectionOptions& options, std::shared_ptr<const Authority> ca);

 private:
  InspectionOptions options_;
  LeafMinter minter_;
  SslCtxPtr server_ctx_;
  SslCtxPtr upstream_ctx_;
};

/// Why a TLS handshake failed, in the terms the audit log uses.
enum class HandshakeFailure {
  CertificateRejected,  // the peer refused our certificate (unknown CA, bad certificate, …)
  Other,                // anything else: protocol, cipher, closed connection
};

/// Classifies an OpenSSL error code (as ERR_get_error() returned it) that
/// ended a handshake: the alerts a client sends when it does not trust the
/// certificate it was shown are CertificateRejected.
HandshakeFailure classify_handshake_error(unsigned long openssl_error);

/// The upstream certificate verification error of a finished (or failed)
/// handshake as a sentence ("certificate has expired"), or "" when the
/// certificate verified (or verification never ran).
std::string verification_error(const SSL* ssl);

}  // namespace egress::tls
