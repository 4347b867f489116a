// The strict check of a raw request head, before Beast parses it. Beast 1.81
// already refuses some smuggling shapes (Content-Length after
// Transfer-Encoding: chunked, conflicting Content-Length values, control
// bytes in the target, bad header-name characters) but accepts others: it
// unfolds obsolete line folding, takes "Content-Length: 5, 5" and a repeated
// equal Content-Length, any Transfer-Encoding other than chunked next to a
// Content-Length, 8-bit bytes in the target, and any number of headers.
// Rather than patch around the parser's choices one by one, egress checks the
// raw bytes here against one strict reading of RFC 9112, and only a head
// that passes is handed to Beast. Pure: bytes in, verdict out; fuzzed in
// tests/fuzz/fuzz_request_head.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "egress/policy/reason.h"

namespace egress::proxy {

/// The limits check_request_head() enforces (from config::Limits).
struct HeadLimits {
  std::size_t max_target_length = 8192;
  std::size_t max_header_count = 100;
};

/// Why a head is refused: the reason code (its HTTP status is the reason
/// table's: policy::status_for) and a sentence for the refusal body and the
/// audit row's error.
struct HeadProblem {
  policy::Reason reason = policy::Reason::BadRequest;
  std::string detail;
  int status() const { return policy::status_for(reason); }
};

/// The length of the request head at the start of `bytes` (request line,
/// header lines and the empty line that ends them), or npos while no empty
/// line has arrived. A bare-LF empty line also ends the head, so a client
/// that uses bare LF is answered (and refused) rather than left waiting.
/// `from` is how many bytes were already searched (a resumed search).
std::size_t find_head_end(std::string_view bytes, std::size_t from = 0);

/// Checks a whole head (as delimited by find_head_end). In order:
///   request line: "METHOD SP TARGET SP VERSION CRLF" else bad-request;
///   VERSION other than HTTP/1.0 or HTTP/1.1 → 505 unsupported-version
///   (this includes the HTTP/2 preface "PRI * HTTP/2.0");
///   TARGET longer than max_target_length → 414 target-too-long;
///   TARGET with a space, a control byte or a byte over 0x7e → invalid-target;
///   header lines: more than max_header_count → 431 too-many-headers; a
///   line not ending in CRLF, a continuation line (obs-fold), a name that
///   is empty or not an RFC 9110 token, or a control byte other than HTAB
///   in the value → invalid-header;
///   framing: Content-Length with Transfer-Encoding, Content-Length given
///   more than once or not a plain decimal, Transfer-Encoding given more
///   than once or other than exactly "chunked", or Transfer-Encoding in an
///   HTTP/1.0 request (RFC 9112 §6.1) → ambiguous-framing.
std::optional<HeadProblem> check_request_head(std::string_view head, const HeadLimits& limits);

}  // namespace egress::proxy
