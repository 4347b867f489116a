// Fuzzes the audit journal's record decoder (src/audit/journal.h), which a
// start after a crash runs over whatever the killed run's files hold: torn
// tails, power-loss garbage. It must never read out of bounds, and what it
// accepts must be exactly what the encoder writes: re-encoding the decoded
// records gives back the bytes they were decoded from.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "audit/journal.h"
#include "fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  std::size_t good = 0;
  const auto records = egress::audit::decode_records(bytes, &good);
  FUZZ_CHECK(good <= bytes.size(), "the decoded records lie inside the input");
  std::string again;
  for (const auto& values : records) again += egress::audit::encode_record(values);
  FUZZ_CHECK(again == bytes.substr(0, good), "decoding accepts exactly what encoding writes");
  return 0;
}
