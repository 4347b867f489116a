// The audit hash chain: what a row's `hash` is computed from. Pure functions,
// shared by the writer (which computes hashes) and `egress audit verify`
// (which recomputes them from the stored rows).
//
//   hash = hex(SHA-256(prev_hash || canonical(content)))
//
// `prev_hash` is the previous row's `hash` as 64 lower-case hex characters
// (kGenesisHash for the first row); `content` is the row's content columns
// in kContentColumns order (row.h). The canonical form is injective: each
// value is tagged with its type and text is length-prefixed, so NULL, "",
// 7 and "7" all differ, and no value can run into the next.
//
//   NULL     -> "N;"
//   integer  -> "I" decimal ";"           e.g. "I443;"
//   text     -> "T" byte-length ":" bytes ";"   e.g. "T10:github.com;"
//
// Columns added by later migrations (kContentColumns after
// kChainBaseColumns; so far only `alpn`) are serialised only when not NULL,
// each as its column name, '=', and its tagged value:
//
//   "alpn=T11:h2,http/1.1;"
//
// Rows written before a column existed read it as NULL, so their canonical
// form, and hash, is exactly what it was when they were written: old
// databases keep verifying, with no chain version to track per row. The
// name keeps the form injective however many optional columns follow (a
// value in one cannot pass for a value in another), and a NULL column
// cannot be confused with an empty one (the writer stores "" as NULL).
//
// Changing any of this makes every existing database fail verification, so
// don't: add a versioned scheme instead.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "audit/row.h"

namespace egress::audit {

/// prev_hash of the first row in a database.
inline constexpr std::string_view kGenesisHash =
    "0000000000000000000000000000000000000000000000000000000000000000";

/// The canonical serialisation of a row's content columns.
std::string canonical_content(const std::vector<Value>& content);

/// hex(SHA-256(prev_hash || canonical_content(content))), lower case.
std::string chain_hash(std::string_view prev_hash, const std::vector<Value>& content);

}  // namespace egress::audit
