// One audit event: a row of the `events` table (schema/001_events.sql). Plain
// data, filled by the proxy, written by the audit store. Field names are the
// column names, and the canonical log line uses the same names.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace egress::audit {

enum class EventType { Decision, Close };

struct Event {
  std::chrono::system_clock::time_point ts;  // when it happened (stored as UTC ISO-8601, µs)
  std::string request_id;                    // joins a decision to its close
  EventType event = EventType::Decision;
  std::string mode;         // production | self-hosted | developer
  std::string role;         // "" when the worker has no role
  std::string client_addr;  // "ip:port" of the worker
  std::string kind;         // http | connect | inspected
  std::string method;       // "" for CONNECT
  std::string scheme;       // http | https ("" for CONNECT)
  std::string host;         // normalised target host (or the raw text if it could not be)
  std::optional<int> port;
  std::string path;
  std::string sni;
  std::string alpn;  // ALPN protocols the TLS ClientHello offered, comma-separated, as offered
  std::string decision;  // allow | deny | report
  std::string rule;      // "FILE:LINE", "mode:developer", "default", ""
  std::string reason;    // reason code (policy/reason.h)
  std::string upstream_addr;  // "ip:port" actually connected to
  std::optional<int> status;  // HTTP status sent to the worker (close events)
  std::optional<std::int64_t> bytes_up;    // worker → upstream (close events)
  std::optional<std::int64_t> bytes_down;  // upstream → worker (close events)
  std::optional<std::int64_t> duration_ms; // close events
  std::string error;  // what went wrong, for a person ("" if nothing)
  std::string injected;  // decision events: names of the secrets egress added, comma-separated
  std::optional<std::int64_t> scrubbed;  // close events: injected secrets replaced in the response
};

std::string to_string(EventType type);  // "decision" | "close"

/// UTC ISO-8601 with microseconds: "2026-11-27T19:54:58.123456Z".
std::string format_timestamp(std::chrono::system_clock::time_point ts);

/// `s` with each invalid UTF-8 sequence replaced by U+FFFD. Text fields can
/// hold a worker's raw bytes; every JSON writer (stream, export, JSON log)
/// passes them through this, while the database keeps the bytes the hash
/// covers.
std::string valid_utf8(const std::string& s);

}  // namespace egress::audit
