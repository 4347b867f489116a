// The ClientHello parser over genuine hellos from OpenSSL, curl and Python
// (testdata/*.hex, captured as testdata/README.md says), every split and
// truncation of them, and hand-built hellos for the shapes clients should
// never send.
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "proxy/client_hello.h"

using namespace egress::proxy;

namespace {

using Bytes = std::vector<std::uint8_t>;

std::string testdata(const std::string& name) {
  if (const char* dir = std::getenv("EGRESS_TESTDATA"); dir && *dir) return std::string(dir) + "/" + name;
  std::string here = __FILE__;
  return here.substr(0, here.rfind('/')) + "/testdata/" + name;
}

Bytes load_hex(const std::string& name) {
  std::ifstream in(testdata(name));
  REQUIRE(in);
  std::string hex;
  in >> hex;
  REQUIRE(hex.size() % 2 == 0);
  Bytes out;
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    out.push_back(static_cast<std::uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

Bytes bytes_of(std::string_view text) { return Bytes(text.begin(), text.end()); }

HelloParse parse(const Bytes& bytes) { return parse_client_hello(bytes); }

void append(Bytes& out, const Bytes& more) { out.insert(out.end(), more.begin(), more.end()); }
void put16(Bytes& out, std::size_t value) {
  out.push_back(static_cast<std::uint8_t>(value >> 8));
  out.push_back(static_cast<std::uint8_t>(value));
}
void put24(Bytes& out, std::size_t value) {
  out.push_back(static_cast<std::uint8_t>(value >> 16));
  put16(out, value & 0xffff);
}

struct Extension {
  std::uint16_t type;
  Bytes data;
};

Extension sni_ext(std::initializer_list<std::pair<std::uint8_t, std::string>> names) {
  Bytes list;
  for (const auto& [type, name] : names) {
    list.push_back(type);
    put16(list, name.size());
    append(list, bytes_of(name));
  }
  Bytes data;
  put16(data, list.size());
  append(data, list);
  return {0, data};
}
Extension sni_ext(const std::string& name) { return sni_ext({{0, name}}); }

Extension alpn_ext(std::initializer_list<std::string> protocols) {
  Bytes list;
  for (const auto& protocol : protocols) {
    list.push_back(static_cast<std::uint8_t>(protocol.size()));
    append(list, bytes_of(protocol));
  }
  Bytes data;
  put16(data, list.size());
  append(data, list);
  return {16, data};
}

/// A ClientHello body: TLS 1.2 legacy version, zero random, empty session
/// id, one cipher suite, null compression, then `extensions` (none: no block).
Bytes hello_body(const std::vector<Extension>& extensions, bool with_block = true) {
  Bytes body{0x03, 0x03};
  body.resize(2 + 32, 0);
  body.push_back(0);            // session id
  append(body, {0, 2, 0x13, 0x01});  // cipher_suites
  append(body, {1, 0});         // compression_methods
  if (!with_block) return body;
  Bytes block;
  for (const auto& ext : extensions) {
    put16(block, ext.type);
    put16(block, ext.data.size());
    append(block, ext.data);
  }
  put16(body, block.size());
  append(body, block);
  return body;
}

Bytes handshake(const Bytes& body, std::uint8_t type = 1) {
  Bytes message{type};
  put24(message, body.size());
  append(message, body);
  return message;
}

/// `message` in TLS handshake records, cut at the offsets in `cuts` (ascending).
Bytes records(const Bytes& message, const std::vector<std::size_t>& cuts = {}) {
  Bytes out;
  std::size_t start = 0;
  auto bounds = cuts;
  bounds.push_back(message.size());
  for (std::size_t end : bounds) {
    append(out, {22, 3, 1});
    put16(out, end - start);
    out.insert(out.end(), message.begin() + static_cast<std::ptrdiff_t>(start),
               message.begin() + static_cast<std::ptrdiff_t>(end));
    start = end;
  }
  return out;
}

Bytes hello(const std::vector<Extension>& extensions) { return records(handshake(hello_body(extensions))); }

/// The handshake message of a one-record capture.
Bytes message_of(const Bytes& capture) {
  REQUIRE(capture.size() > 5);
  REQUIRE(capture[0] == 22);
  REQUIRE(std::size_t{capture[3]} * 256 + capture[4] == capture.size() - 5);
  return Bytes(capture.begin() + 5, capture.end());
}

struct Fixture {
  std::string file;
  std::string sni;
  std::vector<std::string> alpn;
};

const std::vector<Fixture>& fixtures() {
  static const std::vector<Fixture> all{
      {"openssl_s_client.hex", "x.test", {"h2", "http/1.1"}},
      {"curl.hex", "x.test", {"h2", "http/1.1"}},
      {"python_ssl.hex", "x.test", {"h2", "http/1.1"}},
      {"openssl_no_sni.hex", "", {}},
      {"openssl_tls12.hex", "upper.x.test", {}},
  };
  return all;
}

void require_same_hello(const HelloParse& got, const Fixture& fixture) {
  INFO(got.error);
  REQUIRE(got.status == HelloStatus::Complete);
  CHECK(got.hello.sni == fixture.sni);
  CHECK(got.hello.alpn == fixture.alpn);
  CHECK(got.hello.legacy_version == 0x0303);
}

}  // namespace

TEST_CASE("genuine ClientHellos from OpenSSL, curl and Python parse to their SNI and ALPN", "[client_hello]") {
  for (const auto& fixture : fixtures()) {
    INFO(fixture.file);
    require_same_hello(parse(load_hex(fixture.file)), fixture);
  }
}

TEST_CASE("every prefix of a genuine hello needs more, and says at most how much", "[client_hello]") {
  for (const auto& fixture : fixtures()) {
    const Bytes capture = load_hex(fixture.file);
    for (std::size_t length = 0; length < capture.size(); ++length) {
      INFO(fixture.file << " cut at " << length);
      auto got = parse_client_hello(std::span(capture).first(length));
      REQUIRE(got.status == HelloStatus::NeedMore);
      REQUIRE(got.bytes_needed > 0);
      // bytes_needed never overshoots: the whole hello is at least that far.
      REQUIRE(length + got.bytes_needed <= capture.size() + 1);
    }
  }
}

TEST_CASE("a hello split over two and three TLS records at every boundary parses the same", "[client_hello]") {
  for (const auto& fixture : fixtures()) {
    const Bytes message = message_of(load_hex(fixture.file));
    for (std::size_t cut = 1; cut < message.size(); ++cut) {
      INFO(fixture.file << " two records, cut at " << cut);
      const Bytes split = records(message, {cut});
      require_same_hello(parse(split), fixture);
      // The first record alone, or the second cut short, is not enough.
      REQUIRE(parse(Bytes(split.begin(), split.begin() + 5 + static_cast<std::ptrdiff_t>(cut))).status ==
              HelloStatus::NeedMore);
      REQUIRE(parse(Bytes(split.begin(), split.end() - 1)).status == HelloStatus::NeedMore);
    }
    for (std::size_t cut = 1; cut + 1 < message.size(); cut += 7) {
      for (std::size_t second = cut + 1; second < message.size(); second += 5) {
        INFO(fixture.file << " three records, cuts at " << cut << " and " << second);
        require_same_hello(parse(records(message, {cut, second})), fixture);
      }
    }
  }
}

TEST_CASE("a hello in one-byte records parses, and every prefix of that needs more", "[client_hello]") {
  const Fixture& fixture = fixtures()[0];
  const Bytes message = message_of(load_hex(fixture.file));
  std::vector<std::size_t> cuts;
  for (std::size_t i = 1; i < message.size(); ++i) cuts.push_back(i);
  const Bytes split = records(message, cuts);
  require_same_hello(parse(split), fixture);
  for (std::size_t length = 0; length < split.size(); ++length) {
    INFO("cut at " << length);
    REQUIRE(parse_client_hello(std::span(split).first(length)).status == HelloStatus::NeedMore);
  }
}

TEST_CASE("bytes after the hello are not read", "[client_hello]") {
  for (const auto& fixture : fixtures()) {
    INFO(fixture.file);
    Bytes capture = load_hex(fixture.file);
    append(capture, {23, 3, 3, 0, 3, 'a', 'b', 'c'});  // early application data
    require_same_hello(parse(capture), fixture);
    capture.push_back(0xff);  // even garbage
    require_same_hello(parse(capture), fixture);
  }
  // The hello may end inside a record that carries more: only the hello counts.
  Bytes message = message_of(load_hex("curl.hex"));
  append(message, {20, 0, 0, 0});
  require_same_hello(parse(records(message)), fixtures()[1]);
}

TEST_CASE("a hello whose lengths claim it ends early is malformed, except at the end of the fixed fields",
          "[client_hello]") {
  for (const auto& fixture : fixtures()) {
    const Bytes full = message_of(load_hex(fixture.file));
    const Bytes whole_body(full.begin() + 4, full.end());
    // legacy_version, random, session id, cipher suites, compression methods.
    std::size_t session_end = 2 + 32 + 1 + whole_body[34];
    std::size_t ciphers_end = session_end + 2 + whole_body[session_end] * 256u + whole_body[session_end + 1];
    std::size_t fixed_end = ciphers_end + 1 + whole_body[ciphers_end];
    for (std::size_t length = 0; length < whole_body.size(); ++length) {
      INFO(fixture.file << " body truncated to " << length);
      auto got = parse(records(handshake(Bytes(whole_body.begin(), whole_body.begin() + static_cast<std::ptrdiff_t>(length)))));
      if (length == fixed_end) {
        REQUIRE(got.status == HelloStatus::Complete);  // a hello without extensions
        CHECK(got.hello.sni.empty());
      } else {
        REQUIRE(got.status == HelloStatus::Malformed);
        CHECK(!got.error.empty());
      }
    }
  }
}

TEST_CASE("hand-built hellos: SNI shapes", "[client_hello]") {
  SECTION("a name is lower-cased") {
    auto got = parse(hello({sni_ext("WWW.Example.COM")}));
    REQUIRE(got.status == HelloStatus::Complete);
    CHECK(got.hello.sni == "www.example.com");
  }
  SECTION("an IP literal is returned as sent, for the tunnel to compare with the CONNECT host") {
    auto got = parse(hello({sni_ext("127.0.0.1")}));
    REQUIRE(got.status == HelloStatus::Complete);
    CHECK(got.hello.sni == "127.0.0.1");
  }
  SECTION("a trailing dot is kept: the tunnel normalises before comparing") {
    CHECK(parse(hello({sni_ext("example.com.")})).hello.sni == "example.com.");
  }
  SECTION("no extensions at all, and extensions without server_name, mean no SNI") {
    auto bare = parse(records(handshake(hello_body({}, false))));
    REQUIRE(bare.status == HelloStatus::Complete);
    CHECK(bare.hello.sni.empty());
    auto alpn_only = parse(hello({alpn_ext({"h2"})}));
    REQUIRE(alpn_only.status == HelloStatus::Complete);
    CHECK(alpn_only.hello.sni.empty());
    CHECK(alpn_only.hello.alpn == std::vector<std::string>{"h2"});
  }
  SECTION("other name types are skipped") {
    auto got = parse(hello({sni_ext({{7, "ignored"}, {0, "a.test"}})}));
    REQUIRE(got.status == HelloStatus::Complete);
    CHECK(got.hello.sni == "a.test");
    auto none = parse(hello({sni_ext({{7, "ignored"}})}));
    REQUIRE(none.status == HelloStatus::Complete);
    CHECK(none.hello.sni.empty());
  }
  SECTION("refused shapes") {
    const std::vector<std::pair<std::string, Bytes>> cases{
        {"two host_names", hello({sni_ext({{0, "allowed.test"}, {0, "evil.test"}})})},
        {"two identical host_names", hello({sni_ext({{0, "a.test"}, {0, "a.test"}})})},
        {"empty name", hello({sni_ext("")})},
        {"NUL inside", hello({sni_ext(std::string("allowed.test\0.evil.test", 23))})},
        {"NUL at the end", hello({sni_ext(std::string("allowed.test\0", 13))})},
        {"a space", hello({sni_ext("allowed.test evil.test")})},
        {"a control byte", hello({sni_ext("a\x01.test")})},
        {"DEL", hello({sni_ext("a\x7f.test")})},
        {"8-bit bytes (UTF-8 instead of A-labels)", hello({sni_ext("b\xc3\xbc" "cher.test")})},
        {"a name over 255 bytes", hello({sni_ext(std::string(256, 'a'))})},
        {"two server_name extensions", hello({sni_ext("a.test"), sni_ext("b.test")})},
        {"empty server_name list", hello({{0, {0, 0}}})},
        {"server_name with no list length", hello({{0, {}}})},
        {"server_name list longer than the extension", hello({{0, {0, 9, 0, 0, 1, 'a'}}})},
        {"server_name list shorter than the extension", hello({{0, {0, 4, 0, 0, 1, 'a', 0}}})},
        {"server_name entry longer than the list", hello({{0, {0, 4, 0, 0, 5, 'a'}}})},
    };
    for (const auto& [name, bytes] : cases) {
      INFO(name);
      auto got = parse(bytes);
      CHECK(got.status == HelloStatus::Malformed);
      CHECK(got.hello.sni.empty());
    }
  }
  SECTION("a name of exactly 255 bytes is accepted") {
    CHECK(parse(hello({sni_ext(std::string(255, 'a'))})).status == HelloStatus::Complete);
  }
}

TEST_CASE("hand-built hellos: ALPN and extension shapes", "[client_hello]") {
  auto got = parse(hello({alpn_ext({"h2", "http/1.1", "acme-tls/1"}), sni_ext("a.test"), {0xff01, {0}}}));
  REQUIRE(got.status == HelloStatus::Complete);
  CHECK(got.hello.alpn == std::vector<std::string>{"h2", "http/1.1", "acme-tls/1"});
  CHECK(got.hello.sni == "a.test");

  const std::vector<std::pair<std::string, Bytes>> cases{
      {"empty ALPN list", hello({{16, {0, 0}}})},
      {"empty ALPN protocol name", hello({alpn_ext({"h2", ""})})},
      {"ALPN name longer than its list", hello({{16, {0, 3, 5, 'h', '2'}}})},
      {"two ALPN extensions", hello({alpn_ext({"h2"}), alpn_ext({"http/1.1"})})},
      {"duplicate unknown extension", hello({{0x1234, {}}, {0x1234, {}}})},
      {"extension longer than the block", [] {
         Bytes body = hello_body({{0x1234, {1, 2, 3}}});
         body[body.size() - 4] = 0x10;  // that extension's length: 3 → 0x1003
         return records(handshake(body));
       }()},
      {"extensions block shorter than the hello", [] {
         Bytes body = hello_body({{0x1234, {}}});
         body.push_back(0);
         return records(handshake(body));
       }()},
      {"extensions block with one stray byte", [] {
         Bytes body = hello_body({{0x1234, {}}});
         body.push_back(0);
         body[body.size() - 6] += 1;  // block length covers the stray byte
         return records(handshake(body));
       }()},
  };
  for (const auto& [name, bytes] : cases) {
    INFO(name);
    CHECK(parse(bytes).status == HelloStatus::Malformed);
  }
}

TEST_CASE("hand-built hellos: fixed fields", "[client_hello]") {
  auto with = [](auto change) {
    Bytes body = hello_body({sni_ext("a.test")});
    change(body);
    return parse(records(handshake(body))).status;
  };
  CHECK(with([](Bytes&) {}) == HelloStatus::Complete);
  CHECK(with([](Bytes& b) { b[0] = 2; }) == HelloStatus::Malformed);     // legacy_version 2.3
  CHECK(with([](Bytes& b) { b[34] = 33; }) == HelloStatus::Malformed);   // session id over 32
  CHECK(with([](Bytes& b) { b[36] = 3; }) == HelloStatus::Malformed);    // odd cipher_suites length
  CHECK(with([](Bytes& b) { b[36] = 0; b.erase(b.begin() + 37, b.begin() + 39); }) == HelloStatus::Malformed);
  CHECK(with([](Bytes& b) { b[39] = 0; b.erase(b.begin() + 40); }) == HelloStatus::Malformed);  // no compression
  CHECK(with([](Bytes& b) { b[39] = 200; }) == HelloStatus::Malformed);  // compression runs off the end
  CHECK(parse(records(handshake(hello_body({sni_ext("a.test")}), 2))).status == HelloStatus::Malformed);
}

TEST_CASE("record layer: what is not TLS, what is malformed, what needs more", "[client_hello]") {
  SECTION("not TLS") {
    const std::vector<std::pair<std::string, Bytes>> cases{
        {"HTTP request", bytes_of("GET / HTTP/1.1\r\nHost: x.test\r\n\r\n")},
        {"HTTP, one byte", bytes_of("G")},
        {"SSH banner", bytes_of("SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")},
        {"HTTP/2 preface", bytes_of("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")},
        {"SSLv2-style hello", {0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10}},
        {"TLS alert record", {21, 3, 1, 0, 2, 2, 40}},
        {"application data record", {23, 3, 3, 0, 1, 0}},
        {"handshake type with version 2", {22, 2}},
        {"handshake type with version 4", {22, 4, 1, 0, 1}},
        {"NUL", {0}},
    };
    for (const auto& [name, bytes] : cases) {
      INFO(name);
      auto got = parse(bytes);
      CHECK(got.status == HelloStatus::NotTls);
      CHECK(!got.error.empty());
    }
  }
  SECTION("malformed") {
    const std::vector<std::pair<std::string, Bytes>> cases{
        {"empty record", {22, 3, 1, 0, 0}},
        {"record over 16 KiB + 2048", {22, 3, 1, 0x48, 0x01}},
        {"handshake over 64 KiB", {22, 3, 1, 0x40, 0x00, 1, 0x01, 0x00, 0x01}},
        {"handshake length 16 MiB", {22, 3, 1, 0x40, 0x00, 1, 0xff, 0xff, 0xff}},
        {"ServerHello", {22, 3, 1, 0, 4, 2, 0, 0, 0}},
        {"ServerHello, type byte only", {22, 3, 1, 0x10, 0x00, 2}},
        {"change_cipher_spec between fragments", [] {
           Bytes split = records(handshake(hello_body({sni_ext("a.test")})), {10});
           split.insert(split.begin() + 15, {20, 3, 3, 0, 1, 1});
           return split;
         }()},
        {"second record version 2", [] {
           Bytes split = records(handshake(hello_body({sni_ext("a.test")})), {10});
           split[16] = 2;
           return split;
         }()},
        {"garbage after the record header", {22, 3, 1, 0, 8, 0xde, 0xad, 0xbe, 0xef, 0xde, 0xad, 0xbe, 0xef}},
    };
    for (const auto& [name, bytes] : cases) {
      INFO(name);
      auto got = parse(bytes);
      CHECK(got.status == HelloStatus::Malformed);
      CHECK(!got.error.empty());
    }
  }
  SECTION("needs more") {
    CHECK(parse({}).status == HelloStatus::NeedMore);
    CHECK(parse({22}).status == HelloStatus::NeedMore);
    CHECK(parse({22, 3}).status == HelloStatus::NeedMore);
    CHECK(parse({22, 3, 1, 0x48}).status == HelloStatus::NeedMore);
    auto at_limit = parse({22, 3, 1, 0x48, 0x00, 1});  // a record of exactly 16 KiB + 2048
    CHECK(at_limit.status == HelloStatus::NeedMore);
    CHECK(at_limit.bytes_needed >= 3);
    auto header_only = parse({22, 3, 1, 0x01, 0x00, 1, 0x00, 0x02, 0x00});  // hello of 512 in a 256-byte record
    CHECK(header_only.status == HelloStatus::NeedMore);
    CHECK(header_only.bytes_needed == 0x100 - 4);
    // The handshake header is cut inside a long record: the hello's length is
    // not known, so only the header's missing bytes are sure to be needed.
    // (Found by fuzz_client_hello: this used to ask for the whole record.)
    auto header_cut = parse({22, 3, 1, 0x03, 0x01, 1, 0});
    CHECK(header_cut.status == HelloStatus::NeedMore);
    CHECK(header_cut.bytes_needed == 2);
    auto at_hello_limit = parse({22, 3, 1, 0x40, 0x00, 1, 0x01, 0x00, 0x00});  // exactly 64 KiB
    CHECK(at_hello_limit.status == HelloStatus::NeedMore);
  }
}

TEST_CASE("a 64 KiB hello in many records parses", "[client_hello]") {
  Bytes padding(kMaxHelloBytes - hello_body({sni_ext("big.test"), {21, {}}}).size(), 0);
  Bytes body = hello_body({sni_ext("big.test"), {21, padding}});
  REQUIRE(body.size() == kMaxHelloBytes);
  Bytes message = handshake(body);
  std::vector<std::size_t> cuts;
  for (std::size_t at = 16384; at < message.size(); at += 16384) cuts.push_back(at);
  auto got = parse(records(message, cuts));
  REQUIRE(got.status == HelloStatus::Complete);
  CHECK(got.hello.sni == "big.test");

  body.push_back(0);  // one byte over
  CHECK(parse(records(handshake(body), cuts)).status == HelloStatus::Malformed);
}
