// Minting the leaf certificates egress presents to workers in an inspected
// tunnel: one per host, signed by the inspection CA, all sharing one ECDSA
// P-256 key generated at startup (a key pair per host would cost a key
// generation per miss and buys nothing: the key never leaves the process).
#pragma once

#include <chrono>
#include <memory>
#include <string_view>

#include "egress/tls/ca.h"
#include "egress/tls/openssl.h"

namespace egress::tls {

struct Leaf {
  X509Ptr cert;
  std::chrono::system_clock::time_point not_after;
};

class LeafMinter {
 public:
  /// Leaves are valid from an hour before minting (clients whose clocks lag
  /// a little) for `validity`, and never beyond the CA's notAfter.
  explicit LeafMinter(std::shared_ptr<const Authority> ca,
                      std::chrono::seconds validity = std::chrono::hours(24));

  /// A certificate for `host` (a normalised host name, or an IP literal: the
  /// SAN is then an IP address), serial random, CN = host when it fits.
  /// Throws CaError when OpenSSL fails (out of memory, mostly).
  Leaf mint(std::string_view host, std::chrono::system_clock::time_point now) const;

  /// The key every leaf certifies.
  EVP_PKEY* key() const { return key_.get(); }
  const Authority& authority() const { return *ca_; }
  std::chrono::seconds validity() const { return validity_; }

 private:
  std::shared_ptr<const Authority> ca_;
  KeyPtr key_;
  std::chrono::seconds validity_;
};

/// A new ECDSA P-256 or RSA 3072 key.
KeyPtr generate_key(KeyType type);

}  // namespace egress::tls
