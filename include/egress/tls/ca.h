// The inspection CA: creating one (`egress ca init`), describing one
// (`egress ca show`), and loading one for `serve` (its own, or an existing
// enterprise CA). Only files and OpenSSL; no sockets.
//
// Invariant 6: the key is read from a file that only its owner can read
// (mode 0600 or stricter) and is never logged: no message here contains key
// material, only the file's path.
#pragma once

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "egress/tls/openssl.h"

namespace egress::tls {

/// A CA that cannot be created or used; what() names the file, what is
/// wrong and what to do.
class CaError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class KeyType { EcdsaP256, Rsa3072 };

struct CaOptions {
  KeyType key_type = KeyType::EcdsaP256;
  int days = 365;
  std::string common_name = "egress inspection CA";
  /// DNS name constraints (critical, permitted subtrees): each entry is a
  /// domain and every subdomain ("huggingface.co" or ".huggingface.co").
  /// When set, IP addresses are excluded entirely. Empty: no constraints,
  /// because the hosts a policy inspects are not known when the CA is made
  /// and change with every policy edit.
  std::vector<std::string> permitted_domains;
};

enum class Overwrite { Refuse, Replace };

struct CaFiles {
  std::string cert;  // DIR/ca.crt (0644)
  std::string key;   // DIR/ca.key (0600)
};

/// Creates DIR (if needed), DIR/ca.crt and DIR/ca.key. With Overwrite::Refuse
/// an existing ca.crt or ca.key is an error. Throws CaError.
CaFiles create_ca(const std::string& dir, const CaOptions& options, Overwrite overwrite);

/// What `egress ca show` prints about a certificate.
struct CertificateInfo {
  std::string subject;             // "CN=egress inspection CA, O=egress"
  std::string issuer;
  std::string sha256_fingerprint;  // "AB:CD:…" (32 bytes)
  std::string not_before;          // "2025-01-31 12:00:00 UTC"
  std::string not_after;
  std::string key;                 // "ECDSA P-256", "RSA 3072"
  bool is_ca = false;
  std::string name_constraints;    // "" when none
  bool expired = false;
};

/// Reads a PEM certificate and describes it. Throws CaError.
CertificateInfo describe_certificate(const std::string& cert_path);

/// "" when the key file is readable by its owner only; otherwise why not
/// and the chmod that fixes it.
std::string key_permission_problem(const std::string& key_path);

/// A loaded CA certificate and its key, checked: the key is private to its
/// owner, matches the certificate, the certificate is a CA and is valid now.
class Authority {
 public:
  /// Throws CaError naming the file and the problem.
  static std::shared_ptr<const Authority> load(const std::string& cert_path, const std::string& key_path);

  X509* cert() const { return cert_.get(); }
  EVP_PKEY* key() const { return key_.get(); }
  std::chrono::system_clock::time_point not_before() const { return not_before_; }
  std::chrono::system_clock::time_point not_after() const { return not_after_; }
  const std::string& subject() const { return subject_; }

  Authority(X509Ptr cert, KeyPtr key);  // use load(); public for tests

 private:
  X509Ptr cert_;
  KeyPtr key_;
  std::chrono::system_clock::time_point not_before_, not_after_;
  std::string subject_;
};

/// An ASN1_TIME as a time point (tests and the minter clamp validity with it).
std::chrono::system_clock::time_point to_time_point(const ASN1_TIME* time);

}  // namespace egress::tls
