// Target normalisation (invariant 1). Every host a worker names is reduced to
// one canonical spelling before any rule sees it: lower case, trailing dot
// removed, IDNA labels converted to A-labels (libidn2, IDNA 2008 with UTS#46
// transitional-free mapping), and every IPv4 literal spelling (decimal
// "2130706433", octal "0177.0.0.1", hex "0x7f.1", short "127.1") folded to
// its dotted quad. Pure functions; no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "egress/policy/ip.h"

namespace egress::policy {

enum class HostType { Name, Ipv4, Ipv6 };

struct NormalizedHost {
  std::string host;  // canonical text: "example.com", "127.0.0.1", "::1" (no brackets)
  HostType type = HostType::Name;
  std::optional<IpAddress> address;  // set for Ipv4 / Ipv6
};

/// Result of normalisation: either a host or a reason it was refused.
struct HostOrError {
  std::optional<NormalizedHost> host;
  std::string error;  // set when !host: what is wrong, for the 403 body and audit row
};

/// Normalises a host as it appears in a URI authority or CONNECT target.
/// Accepts "[v6]" with brackets. Refuses (error set) empty hosts, bad
/// characters (anything outside letters, digits, '-', '.', '_' after IDNA,
/// percent-signs, NUL, spaces, backslashes), labels over 63 octets, names
/// over 253, empty labels ("a..b"), IPv6 zone ids, and hosts whose last
/// label is numeric but that are not a valid IPv4 literal ("1.2.3.999",
/// "a.0x1g") — as the WHATWG URL standard does.
HostOrError normalize_host(std::string_view raw);

/// A normalised destination: host plus port.
struct Target {
  NormalizedHost host;
  std::uint16_t port = 0;
};

/// Parses "host:port" as in a CONNECT request line ("[::1]:443" for v6).
/// The port is required and must be 1..65535.
struct TargetOrError {
  std::optional<Target> target;
  std::string error;
};
TargetOrError parse_authority(std::string_view authority);

}  // namespace egress::policy
