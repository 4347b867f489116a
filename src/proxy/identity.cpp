// Worker identity from Proxy-Authorization or the source address.
#include "proxy/identity.h"

#include <openssl/evp.h>

#include <vector>

namespace egress::proxy {
namespace {

bool iequals_prefix(std::string_view text, std::string_view prefix) {
  if (text.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(text[i])) != prefix[i]) return false;
  }
  return true;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

/// Standard base64 with padding, as Basic credentials use; nullopt if malformed.
std::optional<std::string> decode_base64(std::string_view text) {
  if (text.empty() || text.size() % 4 != 0 || text.size() > 4096) return std::nullopt;
  std::vector<unsigned char> out(text.size() / 4 * 3);
  const int n = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(text.data()),
                                static_cast<int>(text.size()));
  if (n < 0) return std::nullopt;
  std::size_t length = static_cast<std::size_t>(n);
  // EVP_DecodeBlock counts padding as zero bytes; drop them.
  if (text.ends_with("==")) length -= 2;
  else if (text.ends_with('=')) length -= 1;
  return std::string(reinterpret_cast<const char*>(out.data()), length);
}

/// The secret a worker presents: the password of Basic credentials, or a
/// Bearer token. nullopt when the header is malformed.
std::optional<std::string> presented_secret(std::string_view header) {
  header = trim(header);
  if (iequals_prefix(header, "bearer ")) {
    auto token = trim(header.substr(7));
    if (token.empty()) return std::nullopt;
    return std::string(token);
  }
  if (iequals_prefix(header, "basic ")) {
    auto decoded = decode_base64(trim(header.substr(6)));
    if (!decoded) return std::nullopt;
    const auto colon = decoded->find(':');
    if (colon == std::string::npos || colon + 1 == decoded->size()) return std::nullopt;
    return decoded->substr(colon + 1);
  }
  return std::nullopt;
}

}  // namespace

Identity identify(const policy::Policy& policy, const policy::IpAddress& source,
                  std::string_view proxy_authorization) {
  Identity out;
  if (proxy_authorization.empty()) {
    out.role = policy.role_for_source(source);
    return out;
  }
  const auto secret = presented_secret(proxy_authorization);
  if (!secret) {
    out.rejected = true;
    out.error = "Proxy-Authorization must be 'Basic base64(user:token)' or 'Bearer token'";
    return out;
  }
  if (auto role = policy.role_for_token(*secret)) {
    out.role = std::move(*role);
    return out;
  }
  out.rejected = true;
  out.error = "the token in Proxy-Authorization matches no role in the policy";
  return out;
}

}  // namespace egress::proxy
