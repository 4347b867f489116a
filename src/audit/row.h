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

/// The content columns of `events`: every column except id, prev_hash and
/// hash, in table order. The first kChainBaseColumns come from
/// schema/001_events.sql; later migrations append columns after `hash`
/// (003_alpn.sql: alpn; 005_secrets.sql: injected, scrubbed), and they
/// follow here in migration order (a test checks the table against this list).
inline constexpr std::array<std::string_view, 25> kContentColumns = {
    "ts",     "request_id", "event",    "mode",          "role",   "client_addr",
    "kind",   "method",     "scheme",   "host",          "port",   "path",
    "sni",    "decision",   "rule",     "reason",        "upstream_addr",
    "status", "bytes_up",   "bytes_down", "duration_ms", "error",
    "alpn",   "injected", "scrubbed"};

/// How many content columns the hash chain was defined over (001_events.sql);
/// columns after these enter a row's hash only when not NULL (chain.h).
inline constexpr std::size_t kChainBaseColumns = 22;

/// The first schema version (PRAGMA user_version) whose `events` has alpn,
/// and the first with injected and scrubbed.
inline constexpr std::int64_t kAlpnSchemaVersion = 3;
inline constexpr std::int64_t kSecretsSchemaVersion = 5;

/// `columns` ("a, b, c") as a SELECT list for a database at schema
/// `version`: a column that version does not have yet reads as NULL, so
/// older files stay readable with the same column list.
std::string select_list(std::string_view columns, std::int64_t version);

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
