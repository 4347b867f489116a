// Leaf certificates: they chain to the CA with the host as SAN, share the
// one leaf key, and never outlive the CA.
#include <catch2/catch.hpp>

#include <openssl/x509v3.h>

#include "egress/tls/leaf.h"
#include "fakes.h"

using namespace egress::tls;
using egress::tls::testing::TestCa;
using Clock = std::chrono::system_clock;

namespace {

/// OpenSSL's own chain verification of `leaf` against `ca` as a TLS server
/// certificate for `host` ("" when it verifies, else the error).
std::string verify(X509* leaf, X509* ca, const std::string& host, bool is_ip) {
  X509_STORE* store = X509_STORE_new();
  X509_STORE_add_cert(store, ca);
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  X509_STORE_CTX_init(ctx, store, leaf, nullptr);
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx);
  X509_VERIFY_PARAM_set_purpose(param, X509_PURPOSE_SSL_SERVER);
  if (is_ip) {
    X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str());
  } else {
    X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0);
  }
  const int ok = X509_verify_cert(ctx);
  std::string error = ok == 1 ? "" : X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx));
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  return error;
}

}  // namespace

TEST_CASE("A minted leaf verifies against the CA for its host and no other", "[tls]") {
  static TestCa ca;  // one CA for every row
  LeafMinter minter(ca.authority);
  struct Case {
    const char* host;
    bool is_ip;
    const char* other;
  };
  const auto c = GENERATE(Case{"allowed.test", false, "other.test"}, Case{"huggingface.co", false, "evil.co"},
                          Case{"127.0.0.1", true, "127.0.0.2"}, Case{"::1", true, "::2"});
  CAPTURE(c.host);
  const auto leaf = minter.mint(c.host, Clock::now());
  CHECK(verify(leaf.cert.get(), ca.authority->cert(), c.host, c.is_ip).empty());
  CHECK_FALSE(verify(leaf.cert.get(), ca.authority->cert(), c.other, c.is_ip).empty());
  CHECK(EVP_PKEY_eq(X509_get0_pubkey(leaf.cert.get()), minter.key()) == 1);
  CHECK(X509_check_ca(leaf.cert.get()) == 0);
}

TEST_CASE("Leaves are short-lived, distinct and never outlive the CA", "[tls]") {
  SECTION("a day by default") {
    TestCa ca;
    LeafMinter minter(ca.authority);
    const auto now = Clock::now();
    const auto a = minter.mint("a.test", now);
    const auto b = minter.mint("a.test", now);
    CHECK(ASN1_INTEGER_cmp(X509_get0_serialNumber(a.cert.get()), X509_get0_serialNumber(b.cert.get())) != 0);
    const auto not_after = to_time_point(X509_get0_notAfter(a.cert.get()));
    CHECK(not_after == a.not_after);
    CHECK(std::chrono::abs(not_after - (now + std::chrono::hours(24))) < std::chrono::seconds(2));
  }
  SECTION("clamped to the CA's notAfter") {
    CaOptions options;
    options.days = 1;
    TestCa ca(options);
    LeafMinter minter(ca.authority, std::chrono::hours(24 * 30));
    const auto leaf = minter.mint("a.test", Clock::now());
    CHECK(to_time_point(X509_get0_notAfter(leaf.cert.get())) <= ca.authority->not_after());
    CHECK(leaf.not_after == ca.authority->not_after());
  }
}

TEST_CASE("A host too long for a CN still gets its SAN", "[tls]") {
  TestCa ca;
  LeafMinter minter(ca.authority);
  const std::string host = std::string(60, 'a') + ".example.com";
  const auto leaf = minter.mint(host, Clock::now());
  CHECK(verify(leaf.cert.get(), ca.authority->cert(), host, false).empty());
}
