// Keeping an audit log trustworthy and bounded: `egress audit verify` walks
// the hash chain, `egress audit prune` removes old rows and records an
// anchor for them (schema/002_prune_anchors.sql), and Retention runs that
// prune in serve's background in small transactions. And what a killed
// serve left in its journal (src/audit/journal.h) that the file lacks.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "egress/audit/periodic.h"

namespace egress::audit {

struct VerifyReport {
  bool ok = false;
  std::int64_t rows = 0;          // event rows checked
  std::int64_t first_id = 0;      // first and last event id checked (0 if none)
  std::int64_t last_id = 0;
  std::int64_t anchors = 0;       // prune anchors checked
  std::int64_t pruned_rows = 0;   // rows the anchors account for
  /// When !ok: the first bad row's id (0 for an anchor problem) and what is
  /// wrong with it, for a person: "row 42 (2026-…Z, request 9f…) was edited:
  /// its content no longer matches its hash".
  std::int64_t bad_id = 0;
  std::string problem;
};

/// Recomputes every anchor's and every event's hash in id order. Throws
/// AuditError if `path` cannot be opened as an egress audit database.
/// With `newest_rows` > 0 only the newest that many rows are checked (each
/// row's hash, and each link after the first), anchors not at all: a quick
/// look for the console's health page, not a substitute for a full verify.
VerifyReport verify(const std::string& path, std::int64_t newest_rows = 0);

struct PruneOptions {
  /// Rows whose ts is before this (parse_time output) are removed, as a
  /// prefix in id order; the newest row is always kept.
  std::string older_than;
  std::size_t batch_rows = 2000;  // rows per transaction (>= 1)
  /// Pause between transactions, so serve's writer takes the lock between
  /// batches rather than waiting for the whole run.
  std::chrono::milliseconds pause{0};
  std::chrono::milliseconds busy_timeout{5000};
};

struct PruneResult {
  std::int64_t pruned_rows = 0;
  std::int64_t first_id = 0;  // range removed (0 when nothing was)
  std::int64_t last_id = 0;
  std::int64_t batches = 0;
  /// Rows older than the cutoff kept because they are not yet in the
  /// central store (schema/004_replication.sql), and which store.
  std::int64_t held_rows = 0;
  std::string held_for;
  std::int64_t shipped_id = 0;
};

/// Removes old rows from `path` (which must exist) and records one anchor
/// for the run. Safe while serve writes the same file. Throws AuditError.
/// `stop` (may be null) is checked between batches.
PruneResult prune(const std::string& path, const PruneOptions& options,
                  const std::atomic<bool>* stop = nullptr);

/// Serve's `retention`: every `interval`, prunes rows older than `max_age`
/// in batches of PruneOptions::batch_rows with a pause between them, on its
/// own thread and its own connection. Failures are logged at warn and
/// retried at the next interval; requests are never failed by it.
class Retention {
 public:
  Retention(std::string path, std::chrono::seconds max_age, std::chrono::milliseconds interval);
  // The destructor stops between batches and joins.
  Retention(const Retention&) = delete;
  Retention& operator=(const Retention&) = delete;

  /// Wakes the thread for an immediate pass (tests).
  void run_now();

 private:
  void pass();

  const std::string path_;
  const std::chrono::seconds max_age_;
  const std::chrono::milliseconds interval_;
  Periodic thread_;  // last: starts after everything above is initialised
};

/// The journal directory of the database at `path`: beside the real file
/// (symlinks resolved, as SQLite places its WAL), "<file>-journals".
std::string journal_directory(const std::string& path);

/// The journal files a stopped serve left for the database at `path`: their
/// events are not all in the database until the next serve ingests them.
/// Empty while a serve holds the journal's lock (its journals are live).
std::vector<std::string> journal_files_left(const std::string& path);

}  // namespace egress::audit
