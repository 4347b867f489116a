// Worker tokens (docs/security.md, invariant 6): a policy stores only
// "sha256:<hex>" of each worker's proxy secret. hash_token() is the one
// place that form is made, for `egress policy hash-token` and for
// Policy::role_for_token() to compare against.
#include <openssl/evp.h>

#include <stdexcept>

#include "egress/policy/policy.h"

namespace egress::policy {

std::string hash_token(std::string_view secret) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(secret.data(), secret.size(), digest, &length, EVP_sha256(), nullptr) != 1 || length != 32) {
    // Only a broken OpenSSL install gets here; never return a guessable hash.
    throw std::runtime_error("SHA-256 is unavailable from OpenSSL; check the libcrypto installation");
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "sha256:";
  out.reserve(7 + 64);
  for (unsigned int i = 0; i < length; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 0xf];
  }
  return out;
}

}  // namespace egress::policy
