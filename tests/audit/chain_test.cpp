#include "audit/chain.h"

#include <catch2/catch.hpp>

using namespace egress::audit;

TEST_CASE("canonical_content tags types and length-prefixes text", "[audit]") {
  CHECK(canonical_content({std::monostate{}, std::int64_t{443}, std::string("github.com"),
                           std::string()}) == "N;I443;T10:github.com;T0:;");
  CHECK(canonical_content({std::int64_t{-5}}) == "I-5;");
}

TEST_CASE("canonical_content never serialises two different rows alike", "[audit]") {
  const std::vector<std::vector<Value>> rows = {
      {std::monostate{}},
      {std::string()},
      {std::int64_t{7}},
      {std::string("7")},
      {std::string("ab"), std::string("c")},
      {std::string("a"), std::string("bc")},
      {std::string("a;T1:b")},
      {std::string("a"), std::string("b")},
      {std::string("N;"), std::monostate{}},
      {std::monostate{}, std::string("N;")},
  };
  for (std::size_t i = 0; i < rows.size(); ++i) {
    for (std::size_t j = i + 1; j < rows.size(); ++j) {
      INFO("rows " << i << " and " << j);
      CHECK(canonical_content(rows[i]) != canonical_content(rows[j]));
    }
  }
}

TEST_CASE("chain_hash is hex SHA-256 over prev_hash then the canonical content", "[audit]") {
  // Pinned: python3 -c "import hashlib; print(hashlib.sha256(b'0'*64 +
  //   b'N;I443;T10:github.com;T0:;').hexdigest())"
  const std::vector<Value> content = {std::monostate{}, std::int64_t{443},
                                      std::string("github.com"), std::string()};
  CHECK(chain_hash(kGenesisHash, content) ==
        "3b4fb3b1e4eafbdda00161cf6a8f6555a8f36da46fe10d7c6ef46d2a56621e6e");
  CHECK(chain_hash(std::string(64, '1'), content) != chain_hash(kGenesisHash, content));
  CHECK(kGenesisHash.size() == 64);
}
