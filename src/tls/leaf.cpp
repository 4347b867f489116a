// Minting per-host leaf certificates. See egress/tls/leaf.h.
#include "egress/tls/leaf.h"

#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>

#include <algorithm>
#include <ctime>

namespace egress::tls {
namespace {

using Clock = std::chrono::system_clock;

void set_time(ASN1_TIME* field, Clock::time_point when) {
  ASN1_TIME_set(field, Clock::to_time_t(when));
}

void add_conf_extension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (!ext || !X509_add_ext(cert, ext, -1)) {
    X509_EXTENSION_free(ext);
    throw CaError(openssl_error(std::string("adding ") + OBJ_nid2sn(nid) + " to a leaf certificate"));
  }
  X509_EXTENSION_free(ext);
}

/// subjectAltName with exactly one name, built directly rather than through
/// the config-string parser: the host is data, never syntax.
void add_subject_alt_name(X509* cert, std::string_view host) {
  GENERAL_NAME* name = GENERAL_NAME_new();
  unsigned char ip[16];
  const std::string text(host);
  if (inet_pton(AF_INET, text.c_str(), ip) == 1 || inet_pton(AF_INET6, text.c_str(), ip) == 1) {
    const int length = text.find(':') == std::string::npos ? 4 : 16;
    ASN1_OCTET_STRING* octets = ASN1_OCTET_STRING_new();
    ASN1_OCTET_STRING_set(octets, ip, length);
    GENERAL_NAME_set0_value(name, GEN_IPADD, octets);
  } else {
    ASN1_IA5STRING* dns = ASN1_IA5STRING_new();
    ASN1_STRING_set(dns, text.data(), static_cast<int>(text.size()));
    GENERAL_NAME_set0_value(name, GEN_DNS, dns);
  }
  GENERAL_NAMES* names = sk_GENERAL_NAME_new_null();
  sk_GENERAL_NAME_push(names, name);
  const int ok = X509_add1_ext_i2d(cert, NID_subject_alt_name, names, 0, X509V3_ADD_DEFAULT);
  GENERAL_NAMES_free(names);
  if (ok != 1) throw CaError(openssl_error("adding the subjectAltName for " + text));
}

}  // namespace

KeyPtr generate_key(KeyType type) {
  KeyPtr key(type == KeyType::Rsa3072 ? EVP_RSA_gen(3072) : EVP_EC_gen("P-256"));
  if (!key) throw CaError(openssl_error("generating a key"));
  return key;
}

LeafMinter::LeafMinter(std::shared_ptr<const Authority> ca, std::chrono::seconds validity)
    : ca_(std::move(ca)), key_(generate_key(KeyType::EcdsaP256)), validity_(validity) {}

Leaf LeafMinter::mint(std::string_view host, Clock::time_point now) const {
  X509Ptr cert(X509_new());
  if (!cert) throw CaError(openssl_error("creating a leaf certificate"));
  X509_set_version(cert.get(), X509_VERSION_3);

  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof serial) != 1) throw CaError(openssl_error("drawing a serial number"));
  serial[0] = static_cast<unsigned char>((serial[0] & 0x7f) | 0x01);
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);

  // Never outside the CA's own validity: a client checks each certificate
  // of the chain, and a leaf outliving its CA would only fail later.
  // Whole seconds, as the certificate stores them.
  const auto not_before = std::chrono::floor<std::chrono::seconds>(std::max(now - std::chrono::hours(1), ca_->not_before()));
  const auto not_after = std::chrono::floor<std::chrono::seconds>(std::min(now + validity_, ca_->not_after()));
  set_time(X509_getm_notBefore(cert.get()), not_before);
  set_time(X509_getm_notAfter(cert.get()), not_after);

  X509_NAME* subject = X509_get_subject_name(cert.get());
  if (host.size() <= 64) {  // ub-common-name; the SAN is what clients check anyway
    X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(host.data()),
                               static_cast<int>(host.size()), -1, 0);
  }
  X509_set_issuer_name(cert.get(), X509_get_subject_name(ca_->cert()));
  X509_set_pubkey(cert.get(), key_.get());

  add_conf_extension(cert.get(), ca_->cert(), NID_basic_constraints, "critical,CA:FALSE");
  add_conf_extension(cert.get(), ca_->cert(), NID_key_usage, "critical,digitalSignature");
  add_conf_extension(cert.get(), ca_->cert(), NID_ext_key_usage, "serverAuth");
  add_conf_extension(cert.get(), ca_->cert(), NID_authority_key_identifier, "keyid:always");
  add_subject_alt_name(cert.get(), host);

  if (X509_sign(cert.get(), ca_->key(), EVP_sha256()) <= 0) {
    throw CaError(openssl_error("signing the leaf certificate for " + std::string(host)));
  }
  return Leaf{std::move(cert), not_after};
}

}  // namespace egress::tls
