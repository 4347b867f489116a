// Target normalisation (invariant 1): every spelling of a host a worker can
// send is reduced to one canonical form before a rule sees it. IPv4 literals
// follow the WHATWG URL standard's IPv4 parser (decimal, octal, hex, short
// forms) because that is what clients such as curl and browsers send to the
// network; names go through a fast ASCII path or libidn2 (UTS#46,
// non-transitional) when they hold Unicode or A-labels.
#include "egress/policy/target.h"

#include <idn2.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <vector>

namespace egress::policy {
namespace {

constexpr std::size_t kMaxRawHost = 1024;  // bounds the work before IDNA
constexpr std::size_t kMaxName = 253;
constexpr std::size_t kMaxLabel = 63;

HostOrError refuse(std::string message) { return HostOrError{std::nullopt, std::move(message)}; }

bool is_ascii_digit(char c) { return c >= '0' && c <= '9'; }
bool is_ascii_hex(char c) {
  return is_ascii_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// Characters that can never be part of a host, whatever the encoding: URL
// delimiters, escapes and whitespace that upstream parsers disagree about.
std::optional<std::string> forbidden_character(std::string_view host) {
  for (unsigned char c : host) {
    if (c < 0x20 || c == 0x7f) return "a control character";
    switch (c) {
      case ' ': return "a space";
      case '%': return "a percent sign (percent-encoding is not accepted in hosts)";
      case '\\': return "a backslash";
      case '@': return "an '@' (userinfo is not part of a host)";
      case ':': return "a ':' (only bracketed IPv6 addresses may contain ':')";
      case '/': case '?': case '#': case '[': case ']': case '<': case '>': case '^':
      case '|': case '"': case '\'': case '`': case '{': case '}': case '*': case '+':
      case ',': case ';': case '=': case '!': case '$': case '&': case '(': case ')':
      case '~':
        return std::string("the character '") + static_cast<char>(c) + "'";
      default: break;
    }
  }
  return std::nullopt;
}

std::vector<std::string_view> split_dots(std::string_view text) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  while (true) {
    auto dot = text.find('.', start);
    parts.push_back(text.substr(start, dot == std::string_view::npos ? dot : dot - start));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return parts;
}

// WHATWG "ends in a number", made slightly stricter: the last label (ignoring
// one trailing empty one) is all digits or starts with "0x". WHATWG would take
// "a.0x1g" as a name; no real TLD looks like that, so we refuse it instead of
// guessing which reading a client used.
bool ends_in_number(std::string_view host) {
  auto parts = split_dots(host);
  if (parts.back().empty()) {
    if (parts.size() == 1) return false;
    parts.pop_back();
  }
  auto last = parts.back();
  if (!last.empty() && std::all_of(last.begin(), last.end(), is_ascii_digit)) return true;
  return last.size() >= 2 && last[0] == '0' && (last[1] == 'x' || last[1] == 'X');
}

// WHATWG IPv4 number parser: "0x" prefix is hex, a leading "0" is octal.
// Values are capped just above 2^32 so long inputs cannot overflow.
std::optional<std::uint64_t> parse_ipv4_number(std::string_view part) {
  if (part.empty()) return std::nullopt;
  int radix = 10;
  if (part.size() >= 2 && part[0] == '0' && (part[1] == 'x' || part[1] == 'X')) {
    radix = 16;
    part.remove_prefix(2);
  } else if (part.size() >= 2 && part[0] == '0') {
    radix = 8;
    part.remove_prefix(1);
  }
  std::uint64_t value = 0;
  for (char c : part) {
    int digit;
    if (is_ascii_digit(c)) {
      digit = c - '0';
    } else if (radix == 16 && is_ascii_hex(c)) {
      digit = ascii_lower(c) - 'a' + 10;
    } else {
      return std::nullopt;
    }
    if (digit >= radix) return std::nullopt;
    value = value * static_cast<std::uint64_t>(radix) + static_cast<std::uint64_t>(digit);
    if (value > 0xFFFFFFFFull) value = 0x100000000ull;  // overflow marker, stays > 2^32-1
  }
  return value;
}

std::optional<std::uint32_t> parse_ipv4_literal(std::string_view host) {
  auto parts = split_dots(host);
  if (parts.size() > 1 && parts.back().empty()) parts.pop_back();
  if (parts.size() > 4) return std::nullopt;
  std::vector<std::uint64_t> numbers;
  for (auto part : parts) {
    auto number = parse_ipv4_number(part);
    if (!number) return std::nullopt;
    numbers.push_back(*number);
  }
  for (std::size_t i = 0; i + 1 < numbers.size(); ++i) {
    if (numbers[i] > 255) return std::nullopt;
  }
  // The last part fills every byte the earlier parts did not.
  std::size_t free_bytes = 5 - numbers.size();
  if (numbers.back() >= (std::uint64_t{1} << (8 * free_bytes))) return std::nullopt;
  std::uint64_t address = numbers.back();
  for (std::size_t i = 0; i + 1 < numbers.size(); ++i) {
    address += numbers[i] << (8 * (3 - i));
  }
  return static_cast<std::uint32_t>(address);
}

bool needs_idna(std::string_view host) {
  for (std::size_t i = 0; i < host.size(); ++i) {
    if (static_cast<unsigned char>(host[i]) >= 0x80) return true;
    bool label_start = i == 0 || host[i - 1] == '.';
    if (label_start && i + 4 <= host.size() && ascii_lower(host[i]) == 'x' &&
        ascii_lower(host[i + 1]) == 'n' && host[i + 2] == '-' && host[i + 3] == '-') {
      return true;
    }
  }
  return false;
}

std::optional<std::string> to_ascii(std::string_view host, std::string& error) {
  std::string input(host);
  char* output = nullptr;
  int rc = idn2_lookup_u8(reinterpret_cast<const uint8_t*>(input.c_str()),
                          reinterpret_cast<uint8_t**>(&output),
                          IDN2_NONTRANSITIONAL | IDN2_NFC_INPUT);
  std::unique_ptr<char, decltype(&idn2_free)> owned(output, &idn2_free);
  if (rc != IDN2_OK) {
    error = std::string("is not a valid internationalised name (") + idn2_strerror(rc) + ")";
    return std::nullopt;
  }
  std::string ascii(owned.get());
  std::transform(ascii.begin(), ascii.end(), ascii.begin(), ascii_lower);
  return ascii;
}

HostOrError normalize_ipv6(std::string_view inner, std::string_view raw) {
  if (inner.find('%') != std::string_view::npos) {
    return refuse("host '" + std::string(raw) + "' has an IPv6 zone id; zones are not accepted");
  }
  auto address = IpAddress::parse(inner);
  if (!address || address->is_v4()) {
    return refuse("host '" + std::string(raw) + "' is not a valid IPv6 address");
  }
  return HostOrError{NormalizedHost{address->to_string(), HostType::Ipv6, address}, {}};
}

}  // namespace

HostOrError normalize_host(std::string_view raw) {
  if (raw.empty()) return refuse("host is empty");
  if (raw.size() > kMaxRawHost) return refuse("host is longer than 253 characters");
  if (raw.front() == '[') {
    if (raw.size() < 3 || raw.back() != ']') {
      return refuse("host '" + std::string(raw) + "' opens '[' but is not a bracketed IPv6 address");
    }
    return normalize_ipv6(raw.substr(1, raw.size() - 2), raw);
  }
  // A bare IPv6 address (as written in policy entries or `egress check`) is
  // unambiguous on its own; authorities require the brackets (parse_authority).
  if (raw.find(':') != std::string_view::npos &&
      (raw.find('%') != std::string_view::npos || IpAddress::parse(raw))) {
    return normalize_ipv6(raw, raw);
  }
  std::string quoted = "host '" + std::string(raw) + "'";
  if (auto bad = forbidden_character(raw)) return refuse(quoted + " contains " + *bad);

  std::string host;
  if (needs_idna(raw)) {
    std::string error;
    auto ascii = to_ascii(raw, error);
    if (!ascii) return refuse(quoted + " " + error);
    host = std::move(*ascii);
    if (auto bad = forbidden_character(host)) return refuse(quoted + " contains " + *bad + " after IDNA mapping");
  } else {
    host.assign(raw);
    std::transform(host.begin(), host.end(), host.begin(), ascii_lower);
  }

  if (host.size() > 1 && host.back() == '.') host.pop_back();
  if (host.empty() || host == ".") return refuse(quoted + " has no labels");

  if (ends_in_number(host)) {
    auto value = parse_ipv4_literal(host);
    if (!value) {
      return refuse(quoted + " ends in a number but is not a valid IPv4 address");
    }
    auto address = IpAddress::v4(*value);
    return HostOrError{NormalizedHost{address.to_string(), HostType::Ipv4, address}, {}};
  }

  if (host.size() > kMaxName) return refuse(quoted + " is longer than 253 characters");
  for (auto label : split_dots(host)) {
    if (label.empty()) return refuse(quoted + " has an empty label");
    if (label.size() > kMaxLabel) return refuse(quoted + " has a label longer than 63 characters");
    for (char c : label) {
      bool ok = (c >= 'a' && c <= 'z') || is_ascii_digit(c) || c == '-' || c == '_';
      if (!ok) return refuse(quoted + " contains the character '" + std::string(1, c) + "'");
    }
  }
  return HostOrError{NormalizedHost{std::move(host), HostType::Name, std::nullopt}, {}};
}

TargetOrError parse_authority(std::string_view authority) {
  auto fail = [&](std::string message) { return TargetOrError{std::nullopt, std::move(message)}; };
  std::string quoted = "authority '" + std::string(authority) + "'";
  std::string_view host_part;
  std::string_view port_part;
  if (!authority.empty() && authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos) return fail(quoted + " opens '[' without closing ']'");
    if (close + 1 >= authority.size() || authority[close + 1] != ':') {
      return fail(quoted + " needs a port after the IPv6 address, e.g. [::1]:443");
    }
    host_part = authority.substr(0, close + 1);
    port_part = authority.substr(close + 2);
  } else {
    auto colon = authority.rfind(':');
    if (colon == std::string_view::npos) return fail(quoted + " has no port; write host:port");
    host_part = authority.substr(0, colon);
    port_part = authority.substr(colon + 1);
    if (host_part.find(':') != std::string_view::npos) {
      return fail(quoted + " must put an IPv6 address in brackets, e.g. [::1]:443");
    }
  }
  if (port_part.empty() || port_part.size() > 5 ||
      !std::all_of(port_part.begin(), port_part.end(), is_ascii_digit)) {
    return fail(quoted + " has an invalid port; use a number from 1 to 65535");
  }
  int port = std::atoi(std::string(port_part).c_str());
  if (port < 1 || port > 65535) return fail(quoted + " has port " + std::to_string(port) + "; use 1 to 65535");
  auto host = normalize_host(host_part);
  if (!host.host) return fail(host.error);
  return TargetOrError{Target{std::move(*host.host), static_cast<std::uint16_t>(port)}, {}};
}

}  // namespace egress::policy
