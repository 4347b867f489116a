// Prune anchors: hashing and reading them (see anchor.h).
#include "audit/anchor.h"

#include "audit/chain.h"
#include "audit/log_impl.h"

namespace egress::audit {

std::string anchor_hash(const Anchor& a) {
  return chain_hash(a.first_prev_hash, {a.ts, a.older_than, a.first_id, a.last_id, a.pruned_rows,
                                        a.last_hash});
}

std::vector<Anchor> read_anchors(sqlite3* db, const std::string& path) {
  const auto exists = run_sql(
      db, {"SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'prune_anchors'", {}},
      path);
  if (std::get<std::int64_t>(exists.at(0).at(0)) == 0) return {};
  const auto rows = run_sql(db,
                            {"SELECT id, ts, older_than, first_id, last_id, pruned_rows, "
                             "first_prev_hash, last_hash, hash FROM prune_anchors ORDER BY id",
                             {}},
                            path);
  auto text = [](const Value& v) {
    const auto* s = std::get_if<std::string>(&v);
    return s ? *s : std::string();
  };
  auto integer = [](const Value& v) {
    const auto* i = std::get_if<std::int64_t>(&v);
    return i ? *i : 0;
  };
  std::vector<Anchor> out;
  for (const auto& r : rows) {
    out.push_back(Anchor{integer(r[0]), text(r[1]), text(r[2]), integer(r[3]), integer(r[4]),
                         integer(r[5]), text(r[6]), text(r[7]), text(r[8])});
  }
  return out;
}

}  // namespace egress::audit
