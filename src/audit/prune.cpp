// `egress audit prune` and serve's `retention`: remove the oldest events in
// small transactions, each one recording (or extending) the run's anchor so
// `egress audit verify` still passes (schema/002_prune_anchors.sql).
//
// INVARIANTS
//   (1) Only a prefix in id order is removed, and never the newest row: the
//       writer's chain head (its newest row's hash) never moves, so serve
//       keeps chaining correctly while a prune runs on another connection.
//   (2) Each batch is one BEGIN IMMEDIATE transaction: the delete, the
//       anchor and the dropped-and-restored delete trigger commit together,
//       so no reader ever sees rows gone without an anchor, or the table
//       without its trigger.
//   (3) Prune checks the chain of every row it removes and refuses to remove
//       a broken range: otherwise pruning would erase the evidence of
//       tampering that `verify` is there to show.
//   (4) A row not yet shipped to a central store (schema/004_replication.sql:
//       id above the smallest shipped_id) is never removed, so a backlog
//       waiting for PostgreSQL survives retention.
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "audit/anchor.h"
#include "audit/chain.h"
#include "audit/log_impl.h"
#include "audit/reader.h"
#include "audit/row.h"
#include "egress/audit/event.h"
#include "egress/audit/maintenance.h"
#include "egress/audit/store.h"

namespace egress::audit {
namespace {

// The oldest replication target's position (schema/004_replication.sql).
struct ReplicationHold {
  bool active = false;
  std::int64_t shipped_id = 0;
  std::string target;
};

ReplicationHold replication_hold(sqlite3* db, const std::string& path) {
  ReplicationHold hold;
  if (schema_version(db, path) < 4) return hold;
  const auto rows = run_sql(db, {"SELECT shipped_id, target FROM replication ORDER BY shipped_id LIMIT 1", {}}, path);
  if (rows.empty()) return hold;
  hold.active = true;
  hold.shipped_id = std::get<std::int64_t>(rows[0][0]);
  if (const auto* t = std::get_if<std::string>(&rows[0][1])) hold.target = *t;
  return hold;
}

struct Candidate {
  std::int64_t id;
  std::string prev_hash;
  std::string hash;
};

// The rows this batch may remove: the oldest, up to `limit`, while ts is
// before the cutoff, checked link by link from `expected_prev`.
std::vector<Candidate> candidates(sqlite3* db, const std::string& path, const PruneOptions& options,
                                  const std::string& expected_prev, const ReplicationHold& hold) {
  std::string sql = "SELECT id";
  for (auto column : kContentColumns) sql += ", " + std::string(column);
  sql += ", prev_hash, hash FROM events ORDER BY id LIMIT ?";
  const auto rows = run_sql(db, {sql, {static_cast<std::int64_t>(options.batch_rows)}}, path);
  const auto newest = run_sql(db, {"SELECT coalesce(max(id), 0) FROM events", {}}, path);
  const std::int64_t newest_id = std::get<std::int64_t>(newest.at(0).at(0));

  std::vector<Candidate> out;
  std::string prev = expected_prev;
  const std::size_t n = kContentColumns.size();
  for (const auto& row : rows) {
    const std::int64_t id = std::get<std::int64_t>(row[0]);
    const auto* ts = std::get_if<std::string>(&row[1]);
    if (id == newest_id || !ts || *ts >= options.older_than || (hold.active && id > hold.shipped_id)) break;
    const std::vector<Value> content(row.begin() + 1, row.begin() + 1 + static_cast<std::ptrdiff_t>(n));
    const auto* prev_hash = std::get_if<std::string>(&row[n + 1]);
    const auto* hash = std::get_if<std::string>(&row[n + 2]);
    if (!prev_hash || !hash || *prev_hash != prev || *hash != chain_hash(prev, content)) {
      throw AuditError(path + ": row " + std::to_string(id) +
                       " breaks the hash chain; prune refuses to remove evidence of tampering. "
                       "Run `egress audit verify --db " + path + "` and investigate first");
    }
    out.push_back({id, *prev_hash, *hash});
    prev = *hash;
  }
  return out;
}

std::string trigger_sql(sqlite3* db, const std::string& path) {
  const auto rows = run_sql(
      db, {"SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'events_no_delete'", {}},
      path);
  if (rows.empty()) return "";
  const auto* s = std::get_if<std::string>(&rows[0][0]);
  return s ? *s : "";
}

// One transaction: removes `batch` and records it in the run's anchor.
void remove_batch(sqlite3* db, const std::string& path, const std::vector<Candidate>& batch,
                  Anchor& anchor) {
  const std::string trigger = trigger_sql(db, path);
  if (!trigger.empty()) exec(db, "DROP TRIGGER events_no_delete", path, "prune: drop trigger");
  run_sql(db, {"DELETE FROM events WHERE id BETWEEN ? AND ?", {batch.front().id, batch.back().id}},
          path);
  if (!trigger.empty()) exec(db, trigger.c_str(), path, "prune: restore trigger");

  if (anchor.id == 0) {
    anchor.first_id = batch.front().id;
    anchor.first_prev_hash = batch.front().prev_hash;
  }
  anchor.last_id = batch.back().id;
  anchor.last_hash = batch.back().hash;
  anchor.pruned_rows += static_cast<std::int64_t>(batch.size());
  anchor.hash = anchor_hash(anchor);
  if (anchor.id == 0) {
    run_sql(db,
            {"INSERT INTO prune_anchors (ts, older_than, first_id, last_id, pruned_rows, "
             "first_prev_hash, last_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
             {anchor.ts, anchor.older_than, anchor.first_id, anchor.last_id, anchor.pruned_rows,
              anchor.first_prev_hash, anchor.last_hash, anchor.hash}},
            path);
    anchor.id = sqlite3_last_insert_rowid(db);
  } else {
    run_sql(db,
            {"UPDATE prune_anchors SET last_id = ?, pruned_rows = ?, last_hash = ?, hash = ? "
             "WHERE id = ?",
             {anchor.last_id, anchor.pruned_rows, anchor.last_hash, anchor.hash, anchor.id}},
            path);
  }
}

}  // namespace

PruneResult prune(const std::string& path, const PruneOptions& options,
                  const std::atomic<bool>* stop) {
  if (options.older_than.empty() || options.batch_rows == 0) {
    throw AuditError(path + ": prune needs a cutoff time and a batch size of at least 1");
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    throw AuditError(path + ": cannot prune: " + std::strerror(errno) +
                     "; pass the file `egress serve --audit-db` writes");
  }
  { open_readonly(path); }  // refuses a foreign or newer file before anything writes to it
  DbPtr owner = open_database(path, options.busy_timeout);
  sqlite3* db = owner.get();

  PruneResult result;
  Anchor anchor;
  anchor.ts = format_timestamp(std::chrono::system_clock::now());
  anchor.older_than = options.older_than;
  for (;;) {
    if (stop && stop->load()) break;
    exec(db, "BEGIN IMMEDIATE", path, "prune: cannot lock the audit database");
    try {
      const auto anchors = read_anchors(db, path);
      const std::string expected =
          anchors.empty() ? std::string(kGenesisHash) : anchors.back().last_hash;
      // Another prune (the CLI next to serve's retention) anchored since our
      // last batch: continue the chain of anchors with a new one.
      if (anchor.id != 0 && anchors.back().id != anchor.id) {
        anchor.id = 0;
        anchor.pruned_rows = 0;
      }
      const auto hold = replication_hold(db, path);
      const auto batch = candidates(db, path, options, expected, hold);
      if (batch.empty()) {
        exec(db, "COMMIT", path, "prune: commit");
        break;
      }
      remove_batch(db, path, batch, anchor);
      exec(db, "COMMIT", path, "prune: commit");
      if (result.first_id == 0) result.first_id = batch.front().id;
      result.last_id = batch.back().id;
      result.pruned_rows += static_cast<std::int64_t>(batch.size());
      ++result.batches;
    } catch (...) {
      if (!sqlite3_get_autocommit(db)) sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
      throw;
    }
    if (options.pause.count() > 0) std::this_thread::sleep_for(options.pause);
  }
  // What the cutoff would have removed but replication holds back.
  if (const auto hold = replication_hold(db, path); hold.active) {
    const auto held = run_sql(db, {"SELECT count(*) FROM events WHERE id > ? AND ts < ?",
                                   {hold.shipped_id, options.older_than}}, path);
    result.held_rows = std::get<std::int64_t>(held.at(0).at(0));
    result.held_for = hold.target;
    result.shipped_id = hold.shipped_id;
  }
  return result;
}

Retention::Retention(std::string path, std::chrono::seconds max_age, std::chrono::milliseconds interval)
    : path_(std::move(path)), max_age_(max_age), interval_(interval), thread_("egress-retain", interval, [this] { pass(); }) {}

void Retention::run_now() { thread_.run_now(); }

void Retention::pass() {
  // Small transactions with a pause between them: the writer waits at most
  // one batch (a few ms) for the lock, never the whole run.
  PruneOptions options;
  options.batch_rows = 1000;
  options.pause = std::chrono::milliseconds(20);
  try {
    options.older_than = format_timestamp(std::chrono::system_clock::now() - max_age_);
    const PruneResult r = prune(path_, options, &thread_.stopping());
    if (r.held_rows > 0) {
      spdlog::info("audit: {}: retention keeps {} event(s) older than {}: not yet replicated to {}", path_,
                   r.held_rows, options.older_than, r.held_for);
    }
    if (r.pruned_rows > 0) {
      spdlog::info("audit: {}: retention removed {} event(s) older than {} (ids {}..{}), anchored", path_,
                   r.pruned_rows, options.older_than, r.first_id, r.last_id);
    }
  } catch (const std::exception& e) {
    spdlog::warn("audit: {}: retention pass failed: {}; retrying in {} s", path_, e.what(),
                 std::chrono::duration_cast<std::chrono::seconds>(interval_).count());
  }
}

}  // namespace egress::audit
