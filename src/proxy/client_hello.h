// The TLS ClientHello parser behind the CONNECT tunnel's SNI check
// (invariant 4). Pure: it reads the bytes a client has sent so far and says
// whether they hold a whole ClientHello, need more, or are not TLS at all. No
// sockets, no OpenSSL, no Asio, so it is tested over every split and
// truncation of real hellos and fuzzed on its own (tests/fuzz/).
//
// Everything the client controls is bounds-checked, and the work is bounded:
// a handshake message over kMaxHelloBytes or a record over kMaxRecordBytes is
// Malformed, whatever the rest says.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace egress::proxy {

/// What the tunnel needs from a ClientHello.
struct ClientHello {
  std::string sni;                // server_name (host_name type), lower-cased as sent; "" if absent
  std::vector<std::string> alpn;  // ALPN protocol names in order; empty if no ALPN extension
  std::uint16_t legacy_version = 0;  // ClientHello.legacy_version (0x0303 for TLS 1.2 and 1.3)
};

enum class HelloStatus {
  Complete,   // a whole, well-formed ClientHello; `hello` is set
  NeedMore,   // a valid prefix: read at least `bytes_needed` more bytes and parse again
  NotTls,     // the first bytes cannot start a TLS handshake record (HTTP, SSH, SSLv2, ...)
  Malformed,  // a TLS handshake record, but not a well-formed ClientHello; `error` says why
};

struct HelloParse {
  HelloStatus status = HelloStatus::NeedMore;
  ClientHello hello;
  std::string error;             // set for NotTls and Malformed
  std::size_t bytes_needed = 0;  // NeedMore: the least number of further bytes that can help
};

/// Largest handshake message body accepted (the 24-bit length field allows 16 MiB).
inline constexpr std::size_t kMaxHelloBytes = 64 * 1024;
/// Largest TLS record fragment accepted: 2^14 plus the 2048 bytes RFC 8446
/// allows for ciphertext expansion.
inline constexpr std::size_t kMaxRecordBytes = 16 * 1024 + 2048;

/// Parses the TLS records at the start of `bytes` (everything the client has
/// sent so far). A ClientHello may be split over several TLS handshake records
/// and over any number of TCP segments: NeedMore until the whole handshake
/// message is present. NotTls when the first byte(s) cannot start a TLS
/// handshake record (content type 22, version 3.x). Bounded: a handshake
/// message over 64 KiB (or a record over 16 KiB + 2048) is Malformed.
///
/// Monotone: once a prefix of some input is Complete, NotTls or Malformed,
/// every longer input with that prefix gets the same answer (bytes after the
/// ClientHello are never read), so a caller may parse again as bytes arrive.
///
/// Malformed, besides broken lengths: a handshake message other than
/// ClientHello, records of another content type before the hello is whole,
/// duplicate extensions, a server_name list with two host_name entries, an
/// empty name, or a name with bytes outside printable ASCII (NUL, controls,
/// space, 8-bit), an empty ALPN list or protocol name.
HelloParse parse_client_hello(std::span<const std::uint8_t> bytes);

}  // namespace egress::proxy
