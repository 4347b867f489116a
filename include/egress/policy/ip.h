// IP addresses as plain values, CIDR ranges, and the classification of an
// address as public or one of the special-purpose ranges that egress refuses
// unless a rule names them (invariant 3). No sockets, no Asio: the proxy
// converts its endpoints to IpAddress before asking the policy.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace egress::policy {

struct IpAddress {
  enum class Family { V4, V6 };
  Family family = Family::V4;
  // V4 uses bytes[0..3]; V6 uses all 16. Network byte order.
  std::array<std::uint8_t, 16> bytes{};

  static IpAddress v4(std::uint32_t host_order);
  static IpAddress v6(const std::array<std::uint8_t, 16>& bytes);

  /// Strict textual forms only: dotted-quad IPv4 ("1.2.3.4") or IPv6 as
  /// inet_pton accepts it (no brackets, no zone). For the lenient IPv4
  /// spellings that URLs allow, see normalize_host() in target.h.
  static std::optional<IpAddress> parse(std::string_view text);

  /// Canonical text: dotted quad, or RFC 5952 IPv6 (lower case, "::").
  std::string to_string() const;

  bool is_v4() const { return family == Family::V4; }
  friend bool operator==(const IpAddress&, const IpAddress&) = default;
};

struct Cidr {
  IpAddress network;  // host bits cleared
  int prefix_len = 0;

  /// "10.0.0.0/8", "fd00::/8", or a bare address (a /32 or /128).
  /// nullopt if malformed or if host bits are set ("10.0.0.1/8").
  static std::optional<Cidr> parse(std::string_view text);
  bool contains(const IpAddress& address) const;
  std::string to_string() const;
  friend bool operator==(const Cidr&, const Cidr&) = default;
};

// Special-purpose ranges (IANA IPv4/IPv6 special-purpose registries). An
// IPv6 address that embeds an IPv4 one (v4-mapped ::ffff:0:0/96, NAT64
// 64:ff9b::/96, 6to4 2002::/16) is classified by the embedded address, so
// ::ffff:127.0.0.1 is Loopback, not Public.
enum class IpClass {
  Public,
  Unspecified,     // 0.0.0.0/8, ::
  Loopback,        // 127.0.0.0/8, ::1
  Private,         // 10/8, 172.16/12, 192.168/16
  SharedCgnat,     // 100.64.0.0/10
  LinkLocal,       // 169.254.0.0/16 (but see Metadata), fe80::/10
  Metadata,        // 169.254.169.254, fd00:ec2::254 (cloud instance metadata)
  UniqueLocal,     // fc00::/7
  Multicast,       // 224.0.0.0/4, ff00::/8
  Broadcast,       // 255.255.255.255
  Reserved,        // 240.0.0.0/4, 192.0.0.0/24, TEST-NETs, 198.18.0.0/15, 2001:db8::/32, ...
};

IpClass classify(const IpAddress& address);

/// The IPv4 address an IPv6 one carries by construction: v4-mapped
/// (::ffff:a.b.c.d), NAT64 (64:ff9b::/96, 64:ff9b:1::/48, last 32 bits) or
/// 6to4 (2002:aabb:ccdd::/16). nullopt for IPv4 input and other IPv6.
std::optional<IpAddress> embedded_v4(const IpAddress& address);

/// `address` itself, or the IPv4 address it denotes when it is v4-mapped
/// (::ffff:a.b.c.d reaches exactly a.b.c.d through a dual-stack socket).
IpAddress unmap_v4(const IpAddress& address);
std::string_view to_string(IpClass ip_class);  // "loopback", "private", ...

}  // namespace egress::policy
