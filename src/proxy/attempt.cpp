// Building audit events and the canonical log line from an Attempt.
#include "proxy/attempt.h"

#include <algorithm>
#include <random>

#include "egress/proxy/evaluate.h"

namespace egress::proxy {

std::string new_request_id() {
  // Seeded from 128 bits: one random_device word (32 bits) would allow only
  // 2^32 distinct id streams, so threads and replicas would repeat each
  // other's ids after some tens of thousands of starts.
  thread_local std::mt19937_64 generator = [] {
    std::random_device device;
    std::seed_seq seed{device(), device(), device(), device()};
    return std::mt19937_64(seed);
  }();
  static constexpr char kHex[] = "0123456789abcdef";
  auto bits = generator();
  std::string id(16, '0');
  for (auto& c : id) {
    c = kHex[bits & 0xf];
    bits >>= 4;
  }
  return id;
}

Attempt::Attempt(std::string client_addr, policy::Mode mode) {
  event_.request_id = new_request_id();
  event_.ts = std::chrono::system_clock::now();
  event_.client_addr = std::move(client_addr);
  event_.mode = std::string(policy::to_string(mode));
}

void Attempt::set_target(const RequestTarget& target) {
  event_.kind = std::string(policy::to_string(target.kind));
  event_.scheme = target.scheme;
  event_.host = target.target.host.host;
  event_.port = target.target.port;
  event_.path = target.path;
}

void Attempt::set_alpn(const std::vector<std::string>& protocols) {
  // As offered, comma-separated (RFC 7301 names are opaque bytes; a comma
  // inside one is the client's own ambiguity, and the row keeps it).
  std::string joined;
  for (const auto& protocol : protocols) {
    if (!joined.empty()) joined += ',';
    joined += protocol;
  }
  event_.alpn = std::move(joined);
}

void Attempt::set_decision(const policy::Decision& decision) {
  event_.decision = std::string(policy::to_string(decision.verdict));
  event_.reason = std::string(policy::to_string(decision.reason));
  event_.rule = decision.rule;
  refusal_reason_ = decision.reason;
  detail_ = decision.detail;
}

void Attempt::set_refusal(policy::Reason reason, std::string detail) {
  event_.decision = std::string(policy::to_string(policy::Verdict::Deny));
  event_.reason = std::string(policy::to_string(reason));
  refusal_reason_ = reason;
  detail_ = std::move(detail);
}

void Attempt::set_failure(policy::Reason reason, std::string detail) {
  refusal_reason_ = reason;
  detail_ = std::move(detail);
  failed_ = true;
}

std::string Attempt::error_text() const {
  if (!failed_) return detail_;
  return std::string(policy::to_string(refusal_reason_)) + (detail_.empty() ? "" : ": " + detail_);
}

audit::Event Attempt::decision_event() const {
  audit::Event out = event_;
  out.event = audit::EventType::Decision;
  out.upstream_addr.clear();
  out.error = detail_;
  return out;
}

audit::Event Attempt::close_event(const Outcome& outcome) const {
  audit::Event out = event_;
  out.event = audit::EventType::Close;
  out.ts = std::chrono::system_clock::now();
  if (outcome.status != 0) out.status = outcome.status;  // 0: nothing was sent
  out.bytes_up = static_cast<std::int64_t>(outcome.bytes_up);
  out.bytes_down = static_cast<std::int64_t>(outcome.bytes_down);
  out.duration_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started_).count();
  out.error = outcome.error;
  return out;
}

std::string Attempt::log_line(const Outcome& outcome) const {
  const auto field = [](std::string& line, std::string_view name, std::string_view value) {
    if (value.empty()) return;
    line += ' ';
    line += name;
    line += '=';
    // One attempt, one line: control characters are escaped so no value
    // can break the line or forge fields.
    const auto is_control = [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; };
    const bool quote = value.find_first_of(" \"=") != std::string_view::npos ||
                       std::any_of(value.begin(), value.end(), is_control);
    if (quote) line += '"';
    for (const char c : value) {
      if (c == '"' || c == '\\') {
        line += '\\';
        line += c;
      } else if (c == '\n') {
        line += "\\n";
      } else if (c == '\r') {
        line += "\\r";
      } else if (c == '\t') {
        line += "\\t";
      } else if (is_control(c)) {
        static constexpr char kHex[] = "0123456789abcdef";
        line += "\\x";
        line += kHex[static_cast<unsigned char>(c) >> 4];
        line += kHex[static_cast<unsigned char>(c) & 0xf];
      } else {
        line += c;
      }
    }
    if (quote) line += '"';
  };
  const auto duration = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started_);
  std::string line = "request_id=" + event_.request_id;
  field(line, "kind", event_.kind);
  field(line, "client_addr", event_.client_addr);
  field(line, "role", event_.role);
  field(line, "mode", event_.mode);
  field(line, "method", event_.method);
  field(line, "host", event_.host);
  field(line, "port", event_.port ? std::to_string(*event_.port) : "");
  field(line, "path", event_.path);
  field(line, "sni", event_.sni);
  field(line, "alpn", event_.alpn);
  field(line, "decision", event_.decision);
  field(line, "reason", event_.reason);
  field(line, "rule", event_.rule);
  field(line, "upstream_addr", event_.upstream_addr);
  field(line, "status", std::to_string(outcome.status));
  field(line, "bytes_up", std::to_string(outcome.bytes_up));
  field(line, "bytes_down", std::to_string(outcome.bytes_down));
  field(line, "duration_ms", std::to_string(duration.count()));
  field(line, "error", outcome.error);
  return line;
}

}  // namespace egress::proxy
