// The ClientHello parser: record reassembly, then a bounds-checked walk of
// the handshake message (RFC 8446 §4.1.2, RFC 6066 §3 server_name, RFC 7301
// ALPN). Two layers:
//
//   reassemble()  TLS records → the handshake message bytes, or why not yet
//   parse_body()  the ClientHello body → ClientHello, or Malformed
//
// Every read goes through Reader, which never reads past its span and turns a
// short read into a failed state, so a broken length can only ever produce
// Malformed.
#include "proxy/client_hello.h"

#include <algorithm>
#include <bitset>
#include <optional>
#include <string_view>

namespace egress::proxy {
namespace {

constexpr std::uint8_t kContentHandshake = 22;
constexpr std::uint8_t kHandshakeClientHello = 1;
constexpr std::size_t kRecordHeaderBytes = 5;
constexpr std::size_t kHandshakeHeaderBytes = 4;
constexpr std::uint16_t kExtServerName = 0;
constexpr std::uint16_t kExtAlpn = 16;
constexpr std::uint8_t kNameTypeHostName = 0;
constexpr std::size_t kMaxSniBytes = 255;  // a DNS name is at most 253 (254 with the root dot)

HelloParse need_more(std::size_t bytes) {
  HelloParse parse;
  parse.status = HelloStatus::NeedMore;
  parse.bytes_needed = bytes;
  return parse;
}

HelloParse failed(HelloStatus status, std::string error) {
  HelloParse parse;
  parse.status = status;
  parse.error = std::move(error);
  return parse;
}

HelloParse malformed(std::string error) { return failed(HelloStatus::Malformed, std::move(error)); }

std::string hex_byte(std::uint8_t byte) {
  static constexpr char kHex[] = "0123456789abcdef";
  return std::string{kHex[byte >> 4], kHex[byte & 0xf]};
}

std::uint32_t read_be(std::span<const std::uint8_t> bytes) {
  std::uint32_t value = 0;
  for (std::uint8_t byte : bytes) value = (value << 8) | byte;
  return value;
}

// A cursor over untrusted bytes. A read past the end sets ok() false and
// returns zeros / empty spans from then on; callers check ok() once per item.
class Reader {
 public:
  explicit Reader(std::span<const std::uint8_t> bytes) : bytes_(bytes) {}

  bool ok() const { return ok_; }
  bool empty() const { return bytes_.empty(); }
  std::size_t size() const { return bytes_.size(); }

  std::span<const std::uint8_t> take(std::size_t count) {
    if (!ok_ || count > bytes_.size()) {
      ok_ = false;
      bytes_ = {};
      return {};
    }
    auto head = bytes_.first(count);
    bytes_ = bytes_.subspan(count);
    return head;
  }
  std::uint32_t number(std::size_t width) {
    auto field = take(width);
    return ok_ ? read_be(field) : 0;
  }
  std::uint8_t u8() { return static_cast<std::uint8_t>(number(1)); }
  std::uint16_t u16() { return static_cast<std::uint16_t>(number(2)); }
  /// A vector with a `width`-byte length prefix.
  Reader prefixed(std::size_t width) {
    std::size_t length = number(width);
    auto body = take(length);
    return Reader(body);
  }

 private:
  std::span<const std::uint8_t> bytes_;
  bool ok_ = true;
};

// The outcome of reassembly: the whole handshake message (header included),
// or a finished HelloParse (NeedMore / NotTls / Malformed).
struct Reassembled {
  std::vector<std::uint8_t> message;
  std::optional<HelloParse> early;
};

// Checks the handshake header as soon as it is visible, so a wrong message
// type or an oversized length is refused without waiting for more bytes.
std::optional<HelloParse> check_handshake_prefix(const std::vector<std::uint8_t>& message) {
  if (!message.empty() && message[0] != kHandshakeClientHello) {
    return malformed("handshake message type " + std::to_string(message[0]) + " is not ClientHello (1)");
  }
  if (message.size() >= kHandshakeHeaderBytes) {
    std::size_t length = read_be(std::span(message).subspan(1, 3));
    if (length > kMaxHelloBytes) {
      return malformed("ClientHello of " + std::to_string(length) + " bytes is over the " +
                       std::to_string(kMaxHelloBytes) + "-byte limit");
    }
  }
  return std::nullopt;
}

Reassembled reassemble(std::span<const std::uint8_t> bytes) {
  Reassembled out;
  std::size_t pos = 0;
  bool first = true;
  for (;;) {
    // How much of the handshake message is still missing, when known.
    std::optional<std::size_t> message_missing;
    if (out.message.size() >= kHandshakeHeaderBytes) {
      std::size_t total = kHandshakeHeaderBytes + read_be(std::span(out.message).subspan(1, 3));
      if (out.message.size() >= total) {
        out.message.resize(total);  // bytes after the hello in its last record are not ours
        return out;
      }
      message_missing = total - out.message.size();
    }

    std::span<const std::uint8_t> rest = bytes.subspan(pos);
    // The record header, checked byte by byte so NotTls is answered from the
    // first byte that gives it away.
    if (!rest.empty() && rest[0] != kContentHandshake) {
      if (first) {
        out.early = failed(HelloStatus::NotTls, "first byte 0x" + hex_byte(rest[0]) +
                                                    " does not start a TLS handshake record");
      } else {
        out.early = malformed("TLS record of content type " + std::to_string(rest[0]) +
                              " before the ClientHello is complete");
      }
      return out;
    }
    if (rest.size() >= 2 && rest[1] != 3) {
      out.early = first ? failed(HelloStatus::NotTls, "record version major " + std::to_string(rest[1]) + " is not 3")
                        : malformed("record version major " + std::to_string(rest[1]) + " is not 3");
      return out;
    }
    if (rest.size() < kRecordHeaderBytes) {
      std::size_t missing = kRecordHeaderBytes - rest.size() + 1;  // header plus at least one byte
      out.early = need_more(missing);
      return out;
    }
    std::size_t record_length = read_be(rest.subspan(3, 2));
    if (record_length == 0) {
      // RFC 8446 §5.1: zero-length handshake fragments are not allowed.
      out.early = malformed("empty TLS handshake record");
      return out;
    }
    if (record_length > kMaxRecordBytes) {
      out.early = malformed("TLS record of " + std::to_string(record_length) + " bytes is over the " +
                            std::to_string(kMaxRecordBytes) + "-byte limit");
      return out;
    }
    std::span<const std::uint8_t> fragment = rest.subspan(kRecordHeaderBytes);
    bool record_whole = fragment.size() >= record_length;
    if (record_whole) fragment = fragment.first(record_length);

    // Only as much of the fragment as the message can still use is copied,
    // so a record far larger than a small hello costs nothing extra.
    std::size_t room = kHandshakeHeaderBytes + kMaxHelloBytes - out.message.size();
    if (message_missing) room = *message_missing;
    auto useful = fragment.first(std::min(fragment.size(), room));
    out.message.insert(out.message.end(), useful.begin(), useful.end());
    if (auto verdict = check_handshake_prefix(out.message)) {
      out.early = std::move(verdict);
      return out;
    }
    if (!record_whole) {
      // The record is cut short. Ask only for what is sure to be needed: up
      // to the end of this record, of the hello, or of the handshake header,
      // whichever comes first.
      std::size_t record_missing = record_length - fragment.size();
      if (out.message.size() >= kHandshakeHeaderBytes) {
        std::size_t total = kHandshakeHeaderBytes + read_be(std::span(out.message).subspan(1, 3));
        if (out.message.size() >= total) {
          out.message.resize(total);
          return out;
        }
        record_missing = std::min(record_missing, total - out.message.size());
      } else {
        // The message's length is not known yet: it may end right after it.
        record_missing = std::min(record_missing, kHandshakeHeaderBytes - out.message.size());
      }
      out.early = need_more(record_missing);
      return out;
    }
    pos += kRecordHeaderBytes + record_length;
    first = false;
  }
}

bool printable_host_byte(std::uint8_t byte) { return byte > 0x20 && byte < 0x7f; }

// server_name (RFC 6066 §3): a list of (name_type, name); egress reads the
// single host_name entry. Other name types are skipped, as the RFC asks.
std::optional<std::string> parse_server_name(Reader ext, ClientHello& hello) {
  Reader list = ext.prefixed(2);
  if (!ext.ok() || !ext.empty()) return "server_name extension length does not match its list";
  if (list.empty()) return "empty server_name list";
  bool have_host_name = false;
  while (!list.empty()) {
    std::uint8_t type = list.u8();
    Reader name = list.prefixed(2);
    if (!list.ok()) return "server_name entry runs past its list";
    if (type != kNameTypeHostName) continue;
    if (have_host_name) return "server_name lists more than one host_name";
    have_host_name = true;
    if (name.empty()) return "empty server_name host_name";
    if (name.size() > kMaxSniBytes) return std::string("server_name host_name over ").append(std::to_string(kMaxSniBytes)).append(" bytes");
    auto bytes = name.take(name.size());
    std::string sni;
    sni.reserve(bytes.size());
    for (std::uint8_t byte : bytes) {
      if (!printable_host_byte(byte)) return "server_name host_name has a byte outside printable ASCII";
      sni.push_back(static_cast<char>(byte >= 'A' && byte <= 'Z' ? byte - 'A' + 'a' : byte));
    }
    hello.sni = std::move(sni);
  }
  return std::nullopt;
}

// application_layer_protocol_negotiation (RFC 7301 §3.1): a non-empty list of
// non-empty protocol names.
std::optional<std::string> parse_alpn(Reader ext, ClientHello& hello) {
  Reader list = ext.prefixed(2);
  if (!ext.ok() || !ext.empty()) return "ALPN extension length does not match its list";
  if (list.empty()) return "empty ALPN list";
  while (!list.empty()) {
    Reader name = list.prefixed(1);
    if (!list.ok()) return "ALPN protocol name runs past its list";
    if (name.empty()) return "empty ALPN protocol name";
    auto bytes = name.take(name.size());
    hello.alpn.emplace_back(bytes.begin(), bytes.end());
  }
  return std::nullopt;
}

// The ClientHello body (after the 4-byte handshake header).
HelloParse parse_body(std::span<const std::uint8_t> body) {
  HelloParse parse;
  parse.status = HelloStatus::Complete;
  ClientHello& hello = parse.hello;
  Reader in(body);

  hello.legacy_version = in.u16();
  in.take(32);  // random
  Reader session_id = in.prefixed(1);
  Reader cipher_suites = in.prefixed(2);
  Reader compression = in.prefixed(1);
  if (!in.ok()) return malformed("ClientHello ends inside its fixed fields");
  if (hello.legacy_version >> 8 != 3) return malformed("ClientHello legacy_version major is not 3");
  if (session_id.size() > 32) return malformed("session id over 32 bytes");
  if (cipher_suites.empty() || cipher_suites.size() % 2 != 0) return malformed("bad cipher_suites length");
  if (compression.empty()) return malformed("empty compression_methods");
  if (in.empty()) return parse;  // no extensions (allowed before TLS 1.3)

  Reader extensions = in.prefixed(2);
  if (!in.ok() || !in.empty()) return malformed("extensions length does not match the ClientHello");
  std::bitset<65536> seen;
  while (!extensions.empty()) {
    std::uint16_t type = extensions.u16();
    Reader ext = extensions.prefixed(2);
    if (!extensions.ok()) return malformed("extension runs past the extensions block");
    if (seen.test(type)) return malformed("duplicate extension " + std::to_string(type));
    seen.set(type);
    std::optional<std::string> error;
    if (type == kExtServerName) error = parse_server_name(ext, hello);
    if (type == kExtAlpn) error = parse_alpn(ext, hello);
    if (error) return malformed(std::move(*error));
  }
  return parse;
}

}  // namespace

HelloParse parse_client_hello(std::span<const std::uint8_t> bytes) {
  if (bytes.empty()) return need_more(kRecordHeaderBytes + 1);
  Reassembled message = reassemble(bytes);
  if (message.early) return std::move(*message.early);
  return parse_body(std::span(message.message).subspan(kHandshakeHeaderBytes));
}

}  // namespace egress::proxy
