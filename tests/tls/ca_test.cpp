// The inspection CA: creation, refusal to overwrite, key file modes,
// description, and every reason `serve` refuses a CA.
#include <catch2/catch.hpp>

#include <fstream>
#include <sys/stat.h>

#include "egress/tls/ca.h"
#include "fakes.h"

using namespace egress::tls;
using egress::tls::testing::file_mode;
using egress::tls::testing::TempDir;
using egress::tls::testing::TestCa;

TEST_CASE("ca init writes a CA certificate and a 0600 key of the chosen type", "[tls]") {
  struct Case {
    KeyType type;
    const char* key;
  };
  const auto c = GENERATE(Case{KeyType::EcdsaP256, "ECDSA P-256"}, Case{KeyType::Rsa3072, "RSA 3072"});
  CAPTURE(c.key);
  TempDir dir;
  CaOptions options;
  options.key_type = c.type;
  options.days = 30;
  const auto files = create_ca(dir.file("certs"), options, Overwrite::Refuse);
  CHECK(file_mode(files.key) == 0600);
  CHECK(file_mode(files.cert) == 0644);

  const auto info = describe_certificate(files.cert);
  CHECK(info.key == c.key);
  CHECK(info.is_ca);
  CHECK_FALSE(info.expired);
  CHECK(info.subject.find("CN = egress inspection CA") != std::string::npos);
  CHECK(info.subject == info.issuer);  // self-signed
  CHECK(info.sha256_fingerprint.size() == 32 * 3 - 1);
  CHECK(info.name_constraints.empty());

  const auto ca = Authority::load(files.cert, files.key);
  const auto lifetime = ca->not_after() - ca->not_before();
  CHECK(lifetime >= std::chrono::hours(24 * 30));
  CHECK(lifetime <= std::chrono::hours(24 * 30 + 2));
}

TEST_CASE("ca init refuses to replace an existing CA unless forced", "[tls]") {
  TempDir dir;
  const auto first = create_ca(dir.path(), {}, Overwrite::Refuse);
  const auto before = describe_certificate(first.cert).sha256_fingerprint;
  try {
    create_ca(dir.path(), {}, Overwrite::Refuse);
    FAIL("a second ca init overwrote the CA");
  } catch (const CaError& e) {
    CHECK_THAT(e.what(), Catch::Contains("already exists") && Catch::Contains("--force"));
  }
  CHECK(describe_certificate(first.cert).sha256_fingerprint == before);

  const auto second = create_ca(dir.path(), {}, Overwrite::Replace);
  CHECK(describe_certificate(second.cert).sha256_fingerprint != before);
  CHECK(file_mode(second.key) == 0600);
}

TEST_CASE("ca init adds name constraints only when domains are permitted", "[tls]") {
  CaOptions options;
  options.permitted_domains = {".huggingface.co", "github.com"};
  TestCa ca(options);
  const auto info = describe_certificate(ca.files.cert);
  CHECK_THAT(info.name_constraints, Catch::Contains("DNS:huggingface.co") && Catch::Contains("DNS:github.com") &&
                                        Catch::Contains("Excluded"));
}

TEST_CASE("ca init rejects bad options", "[tls]") {
  TempDir dir;
  CaOptions options;
  options.days = 0;
  CHECK_THROWS_WITH(create_ca(dir.path(), options, Overwrite::Refuse), Catch::Contains("--days"));
  options.days = 10;
  options.permitted_domains = {"bad domain"};
  CHECK_THROWS_WITH(create_ca(dir.path(), options, Overwrite::Refuse), Catch::Contains("--permit"));
}

TEST_CASE("serve refuses a CA key that group or others can read, naming the fix", "[tls]") {
  TestCa ca;
  for (const mode_t mode : {0640, 0604, 0660, 0644}) {
    CAPTURE(mode);
    REQUIRE(::chmod(ca.files.key.c_str(), mode) == 0);
    CHECK_THAT(key_permission_problem(ca.files.key), Catch::Contains("chmod 600"));
    CHECK_THROWS_WITH(Authority::load(ca.files.cert, ca.files.key),
                      Catch::Contains(ca.files.key) && Catch::Contains("group or others"));
  }
  REQUIRE(::chmod(ca.files.key.c_str(), 0400) == 0);
  CHECK(key_permission_problem(ca.files.key).empty());
  CHECK(Authority::load(ca.files.cert, ca.files.key));
}

TEST_CASE("serve refuses a CA whose key does not match, a non-CA, and unreadable files", "[tls]") {
  TestCa one, two;
  CHECK_THROWS_WITH(Authority::load(one.files.cert, two.files.key), Catch::Contains("does not belong"));
  CHECK_THROWS_WITH(Authority::load(one.dir.file("missing.crt"), one.files.key), Catch::Contains("missing.crt"));

  TempDir dir;
  const auto garbage = dir.file("garbage.key");
  { std::ofstream(garbage) << "not a key\n"; }
  ::chmod(garbage.c_str(), 0600);
  CHECK_THROWS_WITH(Authority::load(one.files.cert, garbage), Catch::Contains("no PEM private key"));
}

TEST_CASE("no CA error message contains the key's PEM text", "[tls]") {
  TestCa one, two;
  std::string message;
  try {
    Authority::load(one.files.cert, two.files.key);
  } catch (const CaError& e) {
    message = e.what();
  }
  CHECK_FALSE(message.empty());
  CHECK(message.find("PRIVATE KEY") == std::string::npos);
}
