// Building audit events and the canonical log line from an Attempt.
#include "proxy/attempt.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <random>

#include <cassert>
#include <memory>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>
#include <spdlog/spdlog.h>

#include "egress/proxy/evaluate.h"

namespace egress::proxy {

std::string new_request_id() {
  // Time first, like a UUIDv7: ids sort by creation, so the audit log's
  // request_id index grows at its end instead of taking each insert on a
  // random page (that halved the WAL pages written per commit).
  // 11 hex digits of Unix milliseconds (enough until the year 2527), then
  // 13 of randomness: ids made in the same millisecond differ by 52 random
  // bits. The generator is seeded from 128 bits: one random_device word
  // (32 bits) would allow only 2^32 distinct streams, so threads and
  // replicas would repeat each other's ids after some tens of thousands of
  // starts.
  thread_local std::mt19937_64 generator = [] {
    std::random_device device;
    std::seed_seq seed{device(), device(), device(), device()};
    return std::mt19937_64(seed);
  }();
  static constexpr char kHex[] = "0123456789abcdef";
  static constexpr std::size_t kTimeDigits = 11;
  const auto ms = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
  std::string id(kRequestIdLength, '0');
  for (std::size_t i = 0; i < kTimeDigits; ++i) id[i] = kHex[(ms >> (4 * (kTimeDigits - 1 - i))) & 0xf];
  auto bits = generator();
  for (std::size_t i = kTimeDigits; i < id.size(); ++i) {
    id[i] = kHex[bits & 0xf];
    bits >>= 4;
  }
  return id;
}

namespace {

/// True once `event` is durable, false when the store cannot record it.
/// With audit_sync: normal the session's own journal write makes it so, on
/// this thread; with full, the fsynced commit does, and the coroutine
/// resumes on its executor once the writer has run it.
boost::asio::awaitable<bool> commit_event(audit::AuditStore& store, audit::Event event) {
  namespace asio = boost::asio;
  if (!store.waits_for_commit()) co_return store.record_durable(std::move(event));
  co_return co_await asio::async_initiate<decltype(asio::use_awaitable), void(bool)>(
      [&store](auto handler, audit::Event event) {
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        store.record(std::move(event), [shared](bool committed) {
          auto executor = asio::get_associated_executor(*shared);
          asio::post(executor, [shared, committed]() mutable { std::move(*shared)(committed); });
        });
      },
      asio::use_awaitable, std::move(event));
}

}  // namespace

Attempt::Attempt(AttemptSink sink, std::string client_addr, policy::Mode mode) : sink_(sink) {
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

void Attempt::decide(const policy::Decision& decision) {
  assert(!decision_recorded_ && "an attempt's decision is made before it is recorded");
  event_.decision = std::string(policy::to_string(decision.verdict));
  event_.reason = std::string(policy::to_string(decision.reason));
  event_.rule = decision.rule;
  refusal_reason_ = decision.reason;
  detail_ = decision.detail;
  if (!decision.allows()) record_decision();
}

void Attempt::refuse(policy::Reason reason, std::string detail) {
  assert(!decision_recorded_ && "a refusal before the decision comes before any decision is recorded");
  event_.decision = std::string(policy::to_string(policy::Verdict::Deny));
  event_.reason = std::string(policy::to_string(reason));
  refusal_reason_ = reason;
  detail_ = std::move(detail);
  record_decision();
}

void Attempt::fail(policy::Reason reason, std::string detail) {
  refusal_reason_ = reason;
  detail_ = std::move(detail);
  failed_ = true;
}

boost::asio::awaitable<bool> Attempt::commit() {
  assert(!decision_recorded_ && "an attempt's decision is committed once");
  decision_recorded_ = true;
  const bool committed = co_await commit_event(sink_.audit, decision_event());
  // Fail closed: nothing leaves unless its decision is on disk.
  if (!committed) fail(policy::Reason::AuditUnavailable, "the audit log cannot be written; egress refuses new traffic");
  co_return committed;
}

void Attempt::record_decision() {
  assert(!decision_recorded_ && "an attempt's decision is recorded once");
  decision_recorded_ = true;
  sink_.audit.record(decision_event());
}

void Attempt::finish(const Outcome& outcome) {
  assert(!finished_ && "an attempt is finished once");
  if (finished_) return;
  finished_ = true;
  // An attempt that ended before its decision was recorded (the worker
  // went away before the tunnel's ClientHello) still gets one.
  if (!decision_recorded_) record_decision();
  auto event = close_event(outcome);
  sink_.metrics.count_request(event, refusal_reason_);
  sink_.audit.record(std::move(event));
  // Built only when it will be written: at log_level warn the line is work for nothing.
  if (spdlog::should_log(spdlog::level::info)) spdlog::info("{}", log_line(outcome, sink_.log_format));
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
  out.injected.clear();  // the decision event names them
  if (!event_.injected.empty()) out.scrubbed = static_cast<std::int64_t>(outcome.scrubbed);
  return out;
}

namespace {

// `key=value`, quoted and escaped where needed: one attempt, one line, and
// no value can break the line or forge fields. Control characters and every
// non-ASCII byte (a worker's raw bytes need not be UTF-8) become \xHH, so
// the line is plain ASCII.
void append_logfmt(std::string& line, std::string_view name, std::string_view value) {
  const auto is_control = [](char c) {
    const auto byte = static_cast<unsigned char>(c);
    return byte < 0x20 || byte >= 0x7f;
  };
  if (!line.empty()) line += ' ';
  line += name;
  line += '=';
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
}

// `"key":value` for a JSON object's body; numbers stay numbers.
void append_json(std::string& line, std::string_view name, std::string_view value, bool number) {
  if (!line.empty()) line += ',';
  line += '"';
  line += name;  // our own field names: nothing to escape
  line += "\":";
  if (number) {
    line += value;
  } else {
    line += boost::json::serialize(boost::json::string(audit::valid_utf8(std::string(value))));
  }
}

}  // namespace

std::string Attempt::log_line(const Outcome& outcome, config::LogFormat format) const {
  const auto duration = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started_);
  std::string line;
  const auto field = [&](std::string_view name, std::string_view value, bool number = false) {
    if (value.empty()) return;
    if (format == config::LogFormat::Json) {
      append_json(line, name, value, number);
    } else {
      append_logfmt(line, name, value);
    }
  };
  field("request_id", event_.request_id);
  field("kind", event_.kind);
  field("client_addr", event_.client_addr);
  field("role", event_.role);
  field("mode", event_.mode);
  field("method", event_.method);
  field("host", event_.host);
  field("port", event_.port ? std::to_string(*event_.port) : "", true);
  field("path", event_.path);
  field("sni", event_.sni);
  field("alpn", event_.alpn);
  field("injected", event_.injected);
  if (!event_.injected.empty()) field("scrubbed", std::to_string(outcome.scrubbed), true);
  field("decision", event_.decision);
  field("reason", event_.reason);
  field("rule", event_.rule);
  field("upstream_addr", event_.upstream_addr);
  field("status", std::to_string(outcome.status), true);
  field("bytes_up", std::to_string(outcome.bytes_up), true);
  field("bytes_down", std::to_string(outcome.bytes_down), true);
  field("duration_ms", std::to_string(duration.count()), true);
  field("error", outcome.error);
  return line;
}

}  // namespace egress::proxy
