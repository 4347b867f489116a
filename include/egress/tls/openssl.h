// Owning pointers for the OpenSSL objects the tls component hands out, and
// the one helper that turns OpenSSL's error queue into a sentence. Kept
// apart so the other tls headers (and their users) share one set of types.
#pragma once

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <memory>
#include <string>

namespace egress::tls {

struct OpenSslFree {
  void operator()(X509* p) const { X509_free(p); }
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(SSL_CTX* p) const { SSL_CTX_free(p); }
  void operator()(SSL* p) const { SSL_free(p); }
};

using X509Ptr = std::unique_ptr<X509, OpenSslFree>;
using KeyPtr = std::unique_ptr<EVP_PKEY, OpenSslFree>;
using SslCtxPtr = std::unique_ptr<SSL_CTX, OpenSslFree>;
using SslPtr = std::unique_ptr<SSL, OpenSslFree>;

/// A new owning reference to `cert` (X509_up_ref): the cache keeps its own.
X509Ptr share(X509* cert);

/// The OpenSSL error queue as "what: first error; second error", emptied.
/// `what` says what was being done ("reading certs/ca.key").
std::string openssl_error(const std::string& what);

}  // namespace egress::tls
