// Micro-benchmarks for the ClientHello parser behind the CONNECT tunnel's
// SNI check, over genuine hellos captured from Python's ssl module and
// OpenSSL's s_client (tests/proxy/testdata/*.hex; that directory's README
// says how they were captured). Cases: the hello whole in one record; the
// same handshake message re-framed into several TLS records; and the way the
// tunnel really calls the parser, once per TCP read on everything received
// so far, when the hello arrives in small segments.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "proxy/client_hello.h"

using namespace egress::proxy;

namespace {

using Bytes = std::vector<std::uint8_t>;

Bytes load_hex(const std::string& name) {
  const std::string path = std::string(EGRESS_HELLO_FIXTURES) + "/" + name;
  std::ifstream in(path);
  std::string hex;
  if (!(in >> hex) || hex.size() % 2 != 0) throw std::runtime_error("cannot read fixture " + path);
  Bytes out;
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    out.push_back(static_cast<std::uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

/// The fixture's handshake message re-framed into TLS records of at most
/// `record_size` bytes of payload each. The fixtures hold one record, so the
/// message is everything after the 5-byte record header.
Bytes reframe(const Bytes& single_record, std::size_t record_size) {
  Bytes out;
  for (std::size_t at = 5; at < single_record.size(); at += record_size) {
    const std::size_t n = std::min(record_size, single_record.size() - at);
    out.insert(out.end(), {0x16, 0x03, 0x01, static_cast<std::uint8_t>(n >> 8), static_cast<std::uint8_t>(n)});
    out.insert(out.end(), single_record.begin() + static_cast<std::ptrdiff_t>(at),
               single_record.begin() + static_cast<std::ptrdiff_t>(at + n));
  }
  return out;
}

void check_complete(benchmark::State& state, const Bytes& bytes) {
  const auto parsed = parse_client_hello(bytes);
  if (parsed.status != HelloStatus::Complete || parsed.hello.sni != "x.test") {
    state.SkipWithError(("fixture did not parse to sni x.test: " + parsed.error).c_str());
  }
}

void run_parse(benchmark::State& state, const Bytes& bytes) {
  check_complete(state, bytes);
  for (auto _ : state) {
    HelloParse parsed = parse_client_hello(bytes);
    benchmark::DoNotOptimize(parsed);
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(bytes.size()));
  state.SetItemsProcessed(state.iterations());
  state.counters["hello_bytes"] = static_cast<double>(bytes.size());
}

void BM_hello_whole(benchmark::State& state, const char* fixture) { run_parse(state, load_hex(fixture)); }
BENCHMARK_CAPTURE(BM_hello_whole, python_ssl, "python_ssl.hex");
BENCHMARK_CAPTURE(BM_hello_whole, openssl_s_client, "openssl_s_client.hex");

/// The handshake message split over records of range(0) payload bytes.
void BM_hello_split_records(benchmark::State& state, const char* fixture) {
  run_parse(state, reframe(load_hex(fixture), static_cast<std::size_t>(state.range(0))));
}
BENCHMARK_CAPTURE(BM_hello_split_records, python_ssl, "python_ssl.hex")->Arg(256)->Arg(64)->Arg(1);
BENCHMARK_CAPTURE(BM_hello_split_records, openssl_s_client, "openssl_s_client.hex")->Arg(256)->Arg(64);

/// One item = the whole hello seen by a caller that parses again after each
/// TCP read of range(0) bytes (NeedMore until the last), as the tunnel does.
void BM_hello_incremental_reads(benchmark::State& state, const char* fixture) {
  const Bytes bytes = load_hex(fixture);
  const auto segment = static_cast<std::size_t>(state.range(0));
  check_complete(state, bytes);
  for (auto _ : state) {
    HelloParse parsed;
    for (std::size_t have = std::min(segment, bytes.size());; have = std::min(have + segment, bytes.size())) {
      parsed = parse_client_hello(std::span(bytes.data(), have));
      if (parsed.status != HelloStatus::NeedMore || have == bytes.size()) break;
    }
    benchmark::DoNotOptimize(parsed);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK_CAPTURE(BM_hello_incremental_reads, python_ssl, "python_ssl.hex")->Arg(128)->Arg(16);

}  // namespace
