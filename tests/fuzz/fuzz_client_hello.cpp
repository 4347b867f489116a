// Fuzzes the ClientHello parser (src/proxy/client_hello.h) and checks that it
// is monotone, which the tunnel relies on when it parses again as bytes
// arrive: once a prefix of the input gets a final answer (Complete, NotTls,
// Malformed), the whole input gets the same one, with the same SNI and ALPN;
// while the whole input needs more, so does every prefix. A prefix that is
// Complete with another SNI than the whole would let a client show the check
// one name and the upstream another.
#include <cstddef>
#include <cstdint>
#include <span>

#include "fuzz_check.h"
#include "proxy/client_hello.h"

using namespace egress::proxy;

namespace {

void check_result(const HelloParse& parse) {
  switch (parse.status) {
    case HelloStatus::Complete:
      FUZZ_CHECK(parse.error.empty(), "Complete carries no error");
      for (char c : parse.hello.sni) {
        FUZZ_CHECK(c > 0x20 && c < 0x7f && !(c >= 'A' && c <= 'Z'), "SNI is printable lower-case ASCII");
      }
      for (const auto& protocol : parse.hello.alpn) FUZZ_CHECK(!protocol.empty(), "ALPN names are not empty");
      break;
    case HelloStatus::NeedMore:
      FUZZ_CHECK(parse.bytes_needed > 0, "NeedMore asks for at least one byte");
      break;
    case HelloStatus::NotTls:
    case HelloStatus::Malformed:
      FUZZ_CHECK(!parse.error.empty(), "a refusal says why");
      break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::span<const std::uint8_t> input(data, size);
  const HelloParse whole = parse_client_hello(input);
  check_result(whole);

  // Every prefix for small inputs; for larger ones, a spread of about 64 plus
  // the last eight, so one run stays fast.
  std::size_t step = size <= 64 ? 1 : size / 64;
  for (std::size_t length = 0; length < size; length += (length + 8 >= size ? 1 : step)) {
    const HelloParse prefix = parse_client_hello(input.first(length));
    check_result(prefix);
    if (whole.status == HelloStatus::NeedMore) {
      FUZZ_CHECK(prefix.status == HelloStatus::NeedMore, "a prefix of NeedMore needs more too");
      FUZZ_CHECK(length + prefix.bytes_needed <= size + whole.bytes_needed,
                 "bytes_needed never overshoots");
    }
    if (prefix.status == HelloStatus::NeedMore) continue;
    FUZZ_CHECK(prefix.status == whole.status, "a final answer on a prefix stays final");
    FUZZ_CHECK(prefix.hello.sni == whole.hello.sni, "a prefix is never Complete with another SNI");
    FUZZ_CHECK(prefix.hello.alpn == whole.hello.alpn, "a prefix is never Complete with other ALPN");
    FUZZ_CHECK(prefix.hello.legacy_version == whole.hello.legacy_version, "same legacy_version");
  }
  return 0;
}
