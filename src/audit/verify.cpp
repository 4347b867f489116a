// `egress audit verify`: recompute the hash chain and name the first row
// that breaks it. All reads happen in one read transaction, so a database
// that serve is writing is checked as one consistent snapshot.
//
// How a break is classified, for the row R where the walk stops (P is the
// row before it, or the newest anchor, or the genesis hash):
//   * R's hash does not match prev_hash + content   -> R was edited
//   * R matches itself, but R.prev_hash != P.hash, and
//       - ids between P and R are missing            -> rows were deleted
//       - R.prev_hash is the hash of another row X   -> R is out of order
//         (moved, swapped or inserted; it belongs after X)
//       - otherwise                                  -> R was inserted
#include <sqlite3.h>

#include <utility>

#include "audit/anchor.h"
#include "audit/chain.h"
#include "audit/log_impl.h"
#include "audit/reader.h"
#include "audit/row.h"
#include "egress/audit/maintenance.h"
#include "egress/audit/store.h"

namespace egress::audit {
namespace {

std::string describe(std::int64_t id, const std::vector<Value>& content) {
  // content[0] is ts, content[1] request_id (kContentColumns order).
  auto text = [](const Value& v) {
    const auto* s = std::get_if<std::string>(&v);
    return s ? *s : std::string("?");
  };
  return "row " + std::to_string(id) + " (" + text(content[0]) + ", request " + text(content[1]) + ")";
}

bool check_anchors(const std::vector<Anchor>& anchors, VerifyReport& report) {
  std::string prev(kGenesisHash);
  std::int64_t prev_last = 0;
  for (std::size_t i = 0; i < anchors.size(); ++i) {
    const Anchor& a = anchors[i];
    const std::string where = "prune anchor " + std::to_string(a.id) + " (rows " +
                              std::to_string(a.first_id) + ".." + std::to_string(a.last_id) + ")";
    if (a.hash != anchor_hash(a)) {
      report.problem = where + " was edited: its content no longer matches its hash";
      return false;
    }
    if (a.first_prev_hash != prev || (i > 0 && a.first_id != prev_last + 1)) {
      report.problem = where + " does not continue the previous anchor's range: an anchor was "
                               "deleted, or rows were removed outside `egress audit prune`";
      return false;
    }
    prev = a.last_hash;
    prev_last = a.last_id;
    report.pruned_rows += a.pruned_rows;
    ++report.anchors;
  }
  return true;
}

// The id of the row whose hash is `hash`, or 0.
std::int64_t row_with_hash(sqlite3* db, const std::string& hash, const std::string& path) {
  const auto rows = run_sql(db, {"SELECT id FROM events WHERE hash = ? LIMIT 1", {hash}}, path);
  return rows.empty() ? 0 : std::get<std::int64_t>(rows[0][0]);
}

}  // namespace

VerifyReport verify(const std::string& path, std::int64_t newest_rows) {
  DbPtr owner = open_readonly(path);
  sqlite3* db = owner.get();
  exec(db, "BEGIN", path, "cannot start a read transaction");
  VerifyReport report;
  const auto anchors = newest_rows > 0 ? std::vector<Anchor>{} : read_anchors(db, path);
  if (!check_anchors(anchors, report)) return report;

  std::string expected_prev = anchors.empty() ? std::string(kGenesisHash) : anchors.back().last_hash;
  std::int64_t prev_id = anchors.empty() ? 0 : anchors.back().last_id;
  std::string prev_name = anchors.empty() ? "the start of the log"
                                          : "the newest prune anchor (row " + std::to_string(prev_id) + ")";

  std::string columns;
  for (auto column : kContentColumns) columns += (columns.empty() ? "" : ", ") + std::string(column);
  const std::string sql =
      "SELECT id, " + select_list(columns, schema_version(db, path)) + ", prev_hash, hash FROM events" +
      (newest_rows > 0 ? " WHERE id > (SELECT coalesce(max(id), 0) FROM events) - " + std::to_string(newest_rows)
                       : std::string()) +
      " ORDER BY id";
  StmtPtr stmt = prepare(db, sql, path);
  // The newest rows only: the first one's link to its predecessor is taken
  // as given, every later link and every row's own hash is checked.
  bool trust_first_link = newest_rows > 0;
  const int n = static_cast<int>(kContentColumns.size());
  std::vector<Value> content(kContentColumns.size());
  int rc = 0;
  while ((rc = sqlite3_step(stmt.get())) == SQLITE_ROW) {
    const std::int64_t id = sqlite3_column_int64(stmt.get(), 0);
    for (int i = 0; i < n; ++i) content[static_cast<std::size_t>(i)] = column_value(stmt.get(), i + 1);
    const Value prev_v = column_value(stmt.get(), n + 1);
    const Value hash_v = column_value(stmt.get(), n + 2);
    const auto* prev_hash = std::get_if<std::string>(&prev_v);
    const auto* hash = std::get_if<std::string>(&hash_v);
    const bool self_ok = prev_hash && hash && *hash == chain_hash(*prev_hash, content);
    if (std::exchange(trust_first_link, false) && prev_hash) {
      expected_prev = *prev_hash;
      prev_id = id - 1;
    }
    if (self_ok && *prev_hash == expected_prev) {
      if (report.rows++ == 0) report.first_id = id;
      report.last_id = id;
      expected_prev = *hash;
      prev_id = id;
      prev_name = "row " + std::to_string(id);
      continue;
    }
    report.bad_id = id;
    const std::string name = describe(id, content);
    if (!self_ok) {
      report.problem = name + " was edited: its content no longer matches its hash";
    } else if (id != prev_id + 1) {
      report.problem = name + " does not follow " + prev_name + ": row(s) " +
                       std::to_string(prev_id + 1) +
                       (id - 1 > prev_id + 1 ? ".." + std::to_string(id - 1) : "") +
                       " were deleted";
    } else if (const std::int64_t after = row_with_hash(db, *prev_hash, path); after != 0) {
      report.problem = name + " is out of order: its prev_hash links it after row " +
                       std::to_string(after) + ", not after " + prev_name +
                       " (rows were swapped, moved or inserted)";
    } else {
      report.problem = name + " does not follow " + prev_name +
                       ": it was inserted, or the rows before it were deleted and renumbered";
    }
    break;
  }
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
    throw AuditError(path + ": reading the audit database failed: " + sqlite3_errmsg(db));
  }
  stmt.reset();
  sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
  report.ok = report.problem.empty();
  return report;
}

}  // namespace egress::audit
