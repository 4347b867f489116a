// The strict raw request-head check (see request_head.h). One pass over the
// lines; the first problem found is the answer.
#include "proxy/request_head.h"

#include <algorithm>

namespace egress::proxy {
namespace {

using policy::Reason;

bool is_tchar(unsigned char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  static constexpr std::string_view kSymbols = "!#$%&'*+-.^_`|~";
  return c != 0 && kSymbols.find(static_cast<char>(c)) != std::string_view::npos;
}

bool is_token(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return is_tchar(static_cast<unsigned char>(c)); });
}

bool is_control(unsigned char c) { return c < 0x20 || c == 0x7f; }

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
           return lower(x) == lower(y);
         });
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

std::string hex(unsigned char c) {
  static constexpr char kHex[] = "0123456789abcdef";
  return std::string("0x") + kHex[c >> 4] + kHex[c & 0xf];
}

/// One line of the head, without its line ending.
struct Line {
  std::string_view text;
  bool crlf = false;  // ended in CRLF (not a bare LF)
};

/// Takes the next line off `rest`; the head always ends in a line ending,
/// so every line has one.
Line next_line(std::string_view& rest) {
  const auto lf = rest.find('\n');
  Line line;
  line.text = rest.substr(0, lf);
  rest = lf == std::string_view::npos ? std::string_view{} : rest.substr(lf + 1);
  line.crlf = !line.text.empty() && line.text.back() == '\r';
  if (line.crlf) line.text.remove_suffix(1);
  return line;
}

HeadProblem problem(Reason reason, std::string detail) { return {reason, std::move(detail)}; }

struct RequestLine {
  std::string_view method, target, version;
};

std::optional<HeadProblem> check_request_line(const Line& line, const HeadLimits& limits, RequestLine& out) {
  if (!line.crlf) return problem(Reason::BadRequest, "the request line does not end in CRLF");
  const auto first_space = line.text.find(' ');
  const auto last_space = line.text.rfind(' ');
  if (first_space == std::string_view::npos) {
    return problem(Reason::BadRequest, "the request line is not 'METHOD TARGET HTTP/1.1'");
  }
  if (first_space == last_space) {  // "GET /path": HTTP/0.9's request line has no version
    return problem(Reason::UnsupportedVersion,
                   "the request line has no HTTP version (HTTP/0.9); egress speaks HTTP/1.0 and HTTP/1.1");
  }
  out.method = line.text.substr(0, first_space);
  out.target = line.text.substr(first_space + 1, last_space - first_space - 1);
  out.version = line.text.substr(last_space + 1);
  if (!is_token(out.method)) return problem(Reason::BadRequest, "the request method is not an HTTP token");
  if (out.version != "HTTP/1.1" && out.version != "HTTP/1.0") {
    // Only the version's printable form goes into the detail.
    const bool printable = std::none_of(out.version.begin(), out.version.end(),
                                        [](char c) { return is_control(static_cast<unsigned char>(c)) || (c & 0x80); });
    return problem(Reason::UnsupportedVersion,
                   "HTTP version " + (printable ? "'" + std::string(out.version.substr(0, 32)) + "'" : std::string("(binary)")) +
                       " is not supported; egress speaks HTTP/1.0 and HTTP/1.1");
  }
  if (out.target.size() > limits.max_target_length) {
    return problem(Reason::TargetTooLong,
                   "the request target is " + std::to_string(out.target.size()) + " bytes; the limit is " +
                       std::to_string(limits.max_target_length));
  }
  if (out.target.empty()) return problem(Reason::InvalidTarget, "the request target is empty");
  for (std::size_t i = 0; i < out.target.size(); ++i) {
    const auto c = static_cast<unsigned char>(out.target[i]);
    if (c == ' ' || is_control(c) || c > 0x7e) {
      return problem(Reason::InvalidTarget,
                     "the request target has byte " + hex(c) + " at offset " + std::to_string(i) +
                         "; spaces, control characters and non-ASCII bytes must be percent-encoded");
    }
  }
  return std::nullopt;
}

/// What the header lines say about body framing.
struct Framing {
  int content_lengths = 0;
  int transfer_encodings = 0;
  std::string_view content_length;
  std::string_view transfer_encoding;
};

std::optional<HeadProblem> check_header_line(const Line& line, std::size_t number, Framing& framing) {
  const std::string where = std::string("header line ").append(std::to_string(number));
  if (!line.crlf) return problem(Reason::InvalidHeader, where + " does not end in CRLF");
  if (!line.text.empty() && (line.text.front() == ' ' || line.text.front() == '\t')) {
    return problem(Reason::InvalidHeader, where + " is a continuation line (obsolete line folding)");
  }
  const auto colon = line.text.find(':');
  const auto name = line.text.substr(0, colon);
  if (colon == std::string_view::npos || !is_token(name)) {
    return problem(Reason::InvalidHeader, where + " has no valid field name (an HTTP token followed by ':')");
  }
  const auto value = line.text.substr(colon + 1);
  for (const char ch : value) {
    const auto c = static_cast<unsigned char>(ch);
    if (is_control(c) && c != '\t') {
      return problem(Reason::InvalidHeader,
                     where + " (" + std::string(name.substr(0, 64)) + ") has control character " + hex(c) + " in its value");
    }
  }
  if (iequals(name, "content-length")) {
    ++framing.content_lengths;
    framing.content_length = trim(value);
  } else if (iequals(name, "transfer-encoding")) {
    ++framing.transfer_encodings;
    framing.transfer_encoding = trim(value);
  }
  return std::nullopt;
}

std::optional<HeadProblem> check_framing(const Framing& f, std::string_view version) {
  const auto ambiguous = [](std::string detail) { return problem(Reason::AmbiguousFraming, std::move(detail)); };
  if (f.content_lengths > 0 && f.transfer_encodings > 0) {
    return ambiguous("the request has both Content-Length and Transfer-Encoding");
  }
  if (f.content_lengths > 1) return ambiguous("Content-Length is given " + std::to_string(f.content_lengths) + " times");
  if (f.content_lengths == 1) {
    const auto& v = f.content_length;
    const bool decimal = !v.empty() && v.size() <= 18 && std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!decimal) return ambiguous("Content-Length is not one decimal number");
  }
  if (f.transfer_encodings > 1) {
    return ambiguous("Transfer-Encoding is given " + std::to_string(f.transfer_encodings) + " times");
  }
  if (f.transfer_encodings == 1) {
    if (!iequals(f.transfer_encoding, "chunked")) {
      return ambiguous("Transfer-Encoding must be exactly 'chunked'");
    }
    if (version == "HTTP/1.0") return ambiguous("Transfer-Encoding in an HTTP/1.0 request (RFC 9112 section 6.1)");
  }
  return std::nullopt;
}

}  // namespace

std::size_t find_head_end(std::string_view bytes, std::size_t from) {
  // Step back over a line ending the previous search may have cut in half.
  for (std::size_t i = from >= 2 ? from - 2 : 0; i < bytes.size(); ++i) {
    if (bytes[i] != '\n') continue;
    if (i + 1 < bytes.size() && bytes[i + 1] == '\n') return i + 2;
    if (i + 2 < bytes.size() && bytes[i + 1] == '\r' && bytes[i + 2] == '\n') return i + 3;
  }
  return std::string_view::npos;
}

std::optional<HeadProblem> check_request_head(std::string_view head, const HeadLimits& limits) {
  std::string_view rest = head;
  RequestLine request;
  if (auto bad = check_request_line(next_line(rest), limits, request)) return bad;
  Framing framing;
  std::size_t count = 0;
  for (;;) {
    if (rest.empty()) return problem(Reason::InvalidHeader, "the request head does not end with an empty line");
    const Line line = next_line(rest);
    if (line.text.empty()) {
      if (!line.crlf) return problem(Reason::InvalidHeader, "the empty line ending the head is a bare LF");
      break;
    }
    if (++count > limits.max_header_count) {
      return problem(Reason::TooManyHeaders,
                     "the request has more than " + std::to_string(limits.max_header_count) + " header fields");
    }
    if (auto bad = check_header_line(line, count, framing)) return bad;
  }
  return check_framing(framing, request.version);
}

}  // namespace egress::proxy
