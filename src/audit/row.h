// An event as the `events` table stores it: the content columns in table
// order, each NULL, an integer or text. The writer binds these values, the
// hash chain serialises them (chain.h), and the JSON-lines stream and
// `egress audit export` print them, so all three agree on what a row is.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "egress/audit/event.h"
#include "egress/audit/log.h"

namespace egress::audit {

/// The content columns of `events`, in table order: every column except
/// id, prev_hash and hash. Must match schema/001_events.sql (a test checks).
inline constexpr std::array<std::string_view, 22> kContentColumns = {
    "ts",     "request_id", "event",    "mode",          "role",   "client_addr",
    "kind",   "method",     "scheme",   "host",          "port",   "path",
    "sni",    "decision",   "rule",     "reason",        "upstream_addr",
    "status", "bytes_up",   "bytes_down", "duration_ms", "error"};

/// The event's content columns, in kContentColumns order. Empty strings and
/// empty optionals become NULL (the schema's convention).
std::vector<Value> row_values(const Event& event);

/// Where a row sits in the table and in the hash chain.
struct RowMeta {
  std::int64_t id = 0;
  std::string_view prev_hash;
  std::string_view hash;
};

/// One JSON object on one line (no trailing newline): "id", the content
/// columns, "prev_hash", "hash". NULL columns are JSON null, so every line
/// has every key.
std::string to_json_line(const std::vector<Value>& content, const RowMeta& meta);
std::string to_json_line(const Event& event, const RowMeta& meta);

}  // namespace egress::audit
