// The hash chain's canonical row serialisation and SHA-256 (see chain.h).
#include "audit/chain.h"

#include <openssl/evp.h>

#include <memory>
#include <stdexcept>

namespace egress::audit {

namespace {

void append_value(std::string& out, const Value& v) {
  if (std::holds_alternative<std::monostate>(v)) {
    out += "N;";
  } else if (const auto* i = std::get_if<std::int64_t>(&v)) {
    out += 'I';
    out += std::to_string(*i);
    out += ';';
  } else {
    const auto& s = std::get<std::string>(v);
    out += 'T';
    out += std::to_string(s.size());
    out += ':';
    out += s;
    out += ';';
  }
}

}  // namespace

std::string canonical_content(const std::vector<Value>& content) {
  std::string out;
  for (std::size_t i = 0; i < content.size(); ++i) {
    const Value& v = content[i];
    if (i >= kChainBaseColumns) {
      // An added column: only when present, and named (see chain.h).
      if (std::holds_alternative<std::monostate>(v)) continue;
      out += i < kContentColumns.size() ? kContentColumns[i] : std::string_view("?");
      out += '=';
    }
    append_value(out, v);
  }
  return out;
}

std::string chain_hash(std::string_view prev_hash, const std::vector<Value>& content) {
  const std::string body = canonical_content(content);
  // Fetched once, and one context per thread: OpenSSL 3 looks EVP_sha256()
  // up in its provider store under a lock on every init, which was the
  // largest part of the writer's time that was not SQLite.
  static EVP_MD* const sha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  thread_local const std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!sha256 || !ctx || EVP_DigestInit_ex(ctx.get(), sha256, nullptr) != 1 ||
      EVP_DigestUpdate(ctx.get(), prev_hash.data(), prev_hash.size()) != 1 ||
      EVP_DigestUpdate(ctx.get(), body.data(), body.size()) != 1 ||
      EVP_DigestFinal_ex(ctx.get(), digest, &len) != 1) {
    // Only on allocation failure or a broken OpenSSL build.
    throw std::runtime_error("audit chain: OpenSSL SHA-256 failed");
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * len);
  for (unsigned int i = 0; i < len; ++i) {
    hex += kHex[digest[i] >> 4];
    hex += kHex[digest[i] & 0x0f];
  }
  return hex;
}

}  // namespace egress::audit
