// The audit stream as OCSF events (serve --audit-stream-format ocsf), the
// shape security data lakes ingest. Pure: one committed row in, one JSON
// line out. The field mapping is documented in docs/audit-fleet.md.
//
//   kind http | inspected  -> HTTP Activity    (class_uid 4002)
//   kind connect           -> Network Activity (class_uid 4001)
#pragma once

#include <string>
#include <vector>

#include "audit/row.h"

namespace egress::audit {

inline constexpr int kOcsfHttpActivity = 4002;
inline constexpr int kOcsfNetworkActivity = 4001;
inline constexpr const char* kOcsfVersion = "1.1.0";

/// One OCSF event object on one line (no trailing newline) for a row's
/// content (kContentColumns order) and place in the chain.
std::string to_ocsf_line(const std::vector<Value>& content, const RowMeta& meta);

}  // namespace egress::audit
