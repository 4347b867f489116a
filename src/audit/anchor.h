// Prune anchors (schema/002_prune_anchors.sql): the record of a removed
// range of events, written by prune and checked by verify.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "audit/database.h"

namespace egress::audit {

struct Anchor {
  std::int64_t id = 0;
  std::string ts;          // when the run started
  std::string older_than;  // its cutoff
  std::int64_t first_id = 0;
  std::int64_t last_id = 0;
  std::int64_t pruned_rows = 0;
  std::string first_prev_hash;
  std::string last_hash;
  std::string hash;
};

/// hex SHA-256 of first_prev_hash + the canonical content (ts, older_than,
/// first_id, last_id, pruned_rows, last_hash), as chain.h defines it.
std::string anchor_hash(const Anchor& anchor);

/// Every anchor in id order; none if the table does not exist (schema v1).
std::vector<Anchor> read_anchors(sqlite3* db, const std::string& path);

}  // namespace egress::audit
