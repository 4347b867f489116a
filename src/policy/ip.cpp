// IpAddress and Cidr parsing and printing, and classify(): the table of IANA
// special-purpose IPv4 and IPv6 ranges that invariant 3 keeps workers away
// from unless a rule names them. IPv6 forms that embed an IPv4 address are
// classified by that address, because that is where the packet ends up.
#include "egress/policy/ip.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>

namespace egress::policy {
namespace {

std::uint32_t v4_value(const IpAddress& a) {
  return (std::uint32_t{a.bytes[0]} << 24) | (std::uint32_t{a.bytes[1]} << 16) |
         (std::uint32_t{a.bytes[2]} << 8) | std::uint32_t{a.bytes[3]};
}

IpAddress v4_from_bytes(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) {
  IpAddress out;
  out.family = IpAddress::Family::V4;
  out.bytes[0] = a;
  out.bytes[1] = b;
  out.bytes[2] = c;
  out.bytes[3] = d;
  return out;
}

// True when the first `bits` bits of `bytes` equal those of `prefix`.
bool has_prefix(const std::array<std::uint8_t, 16>& bytes,
                const std::array<std::uint8_t, 16>& prefix, int bits) {
  int full = bits / 8;
  if (!std::equal(bytes.begin(), bytes.begin() + full, prefix.begin())) return false;
  int rest = bits % 8;
  if (rest == 0) return true;
  auto mask = static_cast<std::uint8_t>(0xFF << (8 - rest));
  return (bytes[full] & mask) == (prefix[full] & mask);
}

struct V4Range {
  std::uint32_t network;
  int prefix_len;
  IpClass ip_class;
};

constexpr std::uint32_t ip4(int a, int b, int c, int d) {
  return (std::uint32_t(a) << 24) | (std::uint32_t(b) << 16) | (std::uint32_t(c) << 8) |
         std::uint32_t(d);
}

// Most specific first: the first matching range wins.
constexpr V4Range kV4Special[] = {
    {ip4(169, 254, 169, 254), 32, IpClass::Metadata},
    {ip4(255, 255, 255, 255), 32, IpClass::Broadcast},
    {ip4(0, 0, 0, 0), 8, IpClass::Unspecified},
    {ip4(10, 0, 0, 0), 8, IpClass::Private},
    {ip4(100, 64, 0, 0), 10, IpClass::SharedCgnat},
    {ip4(127, 0, 0, 0), 8, IpClass::Loopback},
    {ip4(169, 254, 0, 0), 16, IpClass::LinkLocal},
    {ip4(172, 16, 0, 0), 12, IpClass::Private},
    {ip4(192, 0, 0, 0), 24, IpClass::Reserved},    // IETF protocol assignments
    {ip4(192, 0, 2, 0), 24, IpClass::Reserved},    // TEST-NET-1
    {ip4(192, 88, 99, 0), 24, IpClass::Reserved},  // 6to4 relay anycast (deprecated)
    {ip4(192, 168, 0, 0), 16, IpClass::Private},
    {ip4(198, 18, 0, 0), 15, IpClass::Reserved},     // benchmarking
    {ip4(198, 51, 100, 0), 24, IpClass::Reserved},   // TEST-NET-2
    {ip4(203, 0, 113, 0), 24, IpClass::Reserved},    // TEST-NET-3
    {ip4(224, 0, 0, 0), 4, IpClass::Multicast},
    {ip4(240, 0, 0, 0), 4, IpClass::Reserved},  // future use
};

IpClass classify_v4(std::uint32_t value) {
  for (const auto& range : kV4Special) {
    std::uint32_t mask = range.prefix_len == 0 ? 0 : ~std::uint32_t{0} << (32 - range.prefix_len);
    if ((value & mask) == range.network) return range.ip_class;
  }
  return IpClass::Public;
}

using Bytes16 = std::array<std::uint8_t, 16>;

constexpr Bytes16 kV4Mapped = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
constexpr Bytes16 kNat64 = {0x00, 0x64, 0xff, 0x9b};
constexpr Bytes16 kNat64Local = {0x00, 0x64, 0xff, 0x9b, 0x00, 0x01};
constexpr Bytes16 k6to4 = {0x20, 0x02};
constexpr Bytes16 kZero = {};
constexpr Bytes16 kLoopback6 = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
constexpr Bytes16 kMetadata6 = {0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54};

struct V6Range {
  Bytes16 network;
  int prefix_len;
  IpClass ip_class;
};

const V6Range kV6Special[] = {
    {{0x01, 0x00}, 64, IpClass::Reserved},              // 100::/64 discard-only
    {{0x20, 0x01, 0x0d, 0xb8}, 32, IpClass::Reserved},  // documentation
    {{0x20, 0x01}, 23, IpClass::Reserved},  // IETF protocol assignments, Teredo 2001::/32
    {{0x3f, 0xff}, 20, IpClass::Reserved},  // documentation (RFC 9637)
    {{0xfc}, 7, IpClass::UniqueLocal},
    {{0xfe, 0x80}, 10, IpClass::LinkLocal},
    {{0xfe, 0xc0}, 10, IpClass::Reserved},  // deprecated site-local
    {{0xff}, 8, IpClass::Multicast},
    {kZero, 96, IpClass::Reserved},  // deprecated IPv4-compatible ::a.b.c.d
};

IpClass classify_v6(const IpAddress& a) {
  if (a.bytes == kZero) return IpClass::Unspecified;
  if (a.bytes == kLoopback6) return IpClass::Loopback;
  if (a.bytes == kMetadata6) return IpClass::Metadata;
  if (auto v4 = embedded_v4(a)) {
    IpClass inner = classify_v4(v4_value(*v4));
    // The local-use NAT64 prefix is itself not globally reachable (RFC 8215),
    // so even a public embedded address stays non-public.
    if (inner == IpClass::Public && has_prefix(a.bytes, kNat64Local, 48)) return IpClass::Reserved;
    return inner;
  }
  for (const auto& range : kV6Special) {
    if (has_prefix(a.bytes, range.network, range.prefix_len)) return range.ip_class;
  }
  // Every global unicast assignment lies in 2000::/3; anything else is
  // unassigned today and refused rather than guessed at.
  if ((a.bytes[0] & 0xE0) != 0x20) return IpClass::Reserved;
  return IpClass::Public;
}

}  // namespace

IpAddress IpAddress::v4(std::uint32_t host_order) {
  return v4_from_bytes(static_cast<std::uint8_t>(host_order >> 24),
                       static_cast<std::uint8_t>(host_order >> 16),
                       static_cast<std::uint8_t>(host_order >> 8),
                       static_cast<std::uint8_t>(host_order));
}

IpAddress IpAddress::v6(const std::array<std::uint8_t, 16>& bytes) {
  IpAddress out;
  out.family = Family::V6;
  out.bytes = bytes;
  return out;
}

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  // inet_pton needs a NUL-terminated string; an embedded NUL must not cut the
  // text short and make "1.2.3.4\0junk" look valid.
  if (text.empty() || text.size() > 45 || text.find('\0') != std::string_view::npos) {
    return std::nullopt;
  }
  std::string copy(text);
  IpAddress out;
  if (copy.find(':') == std::string::npos) {
    out.family = Family::V4;
    if (inet_pton(AF_INET, copy.c_str(), out.bytes.data()) != 1) return std::nullopt;
  } else {
    out.family = Family::V6;
    if (inet_pton(AF_INET6, copy.c_str(), out.bytes.data()) != 1) return std::nullopt;
  }
  return out;
}

std::string IpAddress::to_string() const {
  char buffer[INET6_ADDRSTRLEN] = {};
  int af = is_v4() ? AF_INET : AF_INET6;
  if (inet_ntop(af, bytes.data(), buffer, sizeof buffer) == nullptr) return "?";
  return buffer;
}

std::optional<Cidr> Cidr::parse(std::string_view text) {
  auto slash = text.find('/');
  auto address = IpAddress::parse(text.substr(0, slash));
  if (!address) return std::nullopt;
  int max_len = address->is_v4() ? 32 : 128;
  int prefix_len = max_len;
  if (slash != std::string_view::npos) {
    auto digits = text.substr(slash + 1);
    if (digits.empty() || digits.size() > 3 ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return std::nullopt;
    }
    std::from_chars(digits.data(), digits.data() + digits.size(), prefix_len);
    if (prefix_len > max_len) return std::nullopt;
  }
  Cidr cidr{*address, prefix_len};
  // Host bits set ("10.0.0.1/8") usually means a typo; refuse instead of
  // silently widening or narrowing what the admin wrote.
  IpAddress cleared = *address;
  for (int bit = prefix_len; bit < max_len; ++bit) {
    cleared.bytes[bit / 8] &= static_cast<std::uint8_t>(~(0x80 >> (bit % 8)));
  }
  if (!(cleared == *address)) return std::nullopt;
  return cidr;
}

bool Cidr::contains(const IpAddress& address) const {
  if (address.family != network.family) return false;
  return has_prefix(address.bytes, network.bytes, prefix_len);
}

std::string Cidr::to_string() const {
  return network.to_string() + "/" + std::to_string(prefix_len);
}

std::optional<IpAddress> embedded_v4(const IpAddress& a) {
  if (a.is_v4()) return std::nullopt;
  const auto& b = a.bytes;
  if (has_prefix(b, kV4Mapped, 96) || has_prefix(b, kNat64, 96) || has_prefix(b, kNat64Local, 48)) {
    return v4_from_bytes(b[12], b[13], b[14], b[15]);
  }
  if (has_prefix(b, k6to4, 16)) return v4_from_bytes(b[2], b[3], b[4], b[5]);
  return std::nullopt;
}

IpAddress unmap_v4(const IpAddress& a) {
  if (!a.is_v4() && has_prefix(a.bytes, kV4Mapped, 96)) {
    return v4_from_bytes(a.bytes[12], a.bytes[13], a.bytes[14], a.bytes[15]);
  }
  return a;
}

IpClass classify(const IpAddress& address) {
  return address.is_v4() ? classify_v4(v4_value(address)) : classify_v6(address);
}

std::string_view to_string(IpClass ip_class) {
  switch (ip_class) {
    case IpClass::Public: return "public";
    case IpClass::Unspecified: return "unspecified";
    case IpClass::Loopback: return "loopback";
    case IpClass::Private: return "private";
    case IpClass::SharedCgnat: return "shared-cgnat";
    case IpClass::LinkLocal: return "link-local";
    case IpClass::Metadata: return "metadata";
    case IpClass::UniqueLocal: return "unique-local";
    case IpClass::Multicast: return "multicast";
    case IpClass::Broadcast: return "broadcast";
    case IpClass::Reserved: return "reserved";
  }
  return "unknown";
}

}  // namespace egress::policy
