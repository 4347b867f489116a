// Fuzzes target normalisation (invariant 1): normalize_host() and
// parse_authority() on arbitrary bytes. Whatever they accept must already be
// canonical: lower case, no trailing dot, printable, and a fixed point of
// normalisation (normalising the output again gives the same host, type and
// address), so two spellings of one host can never compare unequal.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "egress/policy/target.h"
#include "fuzz_check.h"

using namespace egress::policy;

namespace {

std::string as_authority_host(const NormalizedHost& host) {
  return host.type == HostType::Ipv6 ? "[" + host.host + "]" : host.host;
}

void check_canonical(const NormalizedHost& host) {
  FUZZ_CHECK(!host.host.empty(), "an accepted host is not empty");
  FUZZ_CHECK(host.host.back() != '.', "no trailing dot");
  for (char c : host.host) {
    FUZZ_CHECK(!(c >= 'A' && c <= 'Z'), "lower case");
    FUZZ_CHECK(c > 0x20 && c < 0x7f, "printable ASCII only");
  }
  FUZZ_CHECK(host.address.has_value() == (host.type != HostType::Name), "address set exactly for IP literals");
  if (host.address) FUZZ_CHECK(host.address->to_string() == host.host, "an IP literal's text is its address");

  auto again = normalize_host(as_authority_host(host));
  FUZZ_CHECK(again.host.has_value(), "normalised output normalises again");
  FUZZ_CHECK(again.host->host == host.host, "normalisation is idempotent");
  FUZZ_CHECK(again.host->type == host.type, "normalisation keeps the type");
  FUZZ_CHECK(again.host->address == host.address, "normalisation keeps the address");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);

  auto host = normalize_host(input);
  FUZZ_CHECK(host.host.has_value() != !host.error.empty(), "a host or an error, never both or neither");
  if (host.host) check_canonical(*host.host);

  auto authority = parse_authority(input);
  FUZZ_CHECK(authority.target.has_value() != !authority.error.empty(), "a target or an error");
  if (authority.target) {
    const Target& target = *authority.target;
    FUZZ_CHECK(target.port != 0, "port 1..65535");
    check_canonical(target.host);
    std::string canonical = as_authority_host(target.host) + ":" + std::to_string(target.port);
    auto again = parse_authority(canonical);
    FUZZ_CHECK(again.target.has_value(), "a canonical authority parses");
    FUZZ_CHECK(again.target->host.host == target.host.host && again.target->port == target.port,
               "parse_authority is idempotent");
  }
  return 0;
}
