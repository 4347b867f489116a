// The audit store: an append-only SQLite database (WAL) with one writer
// thread, and a journal per calling thread (src/audit/journal.h). Every
// event is first appended to the caller's journal with one write(2), then
// queued; the writer commits the queue in batches (group commit: every
// event queued while one transaction runs goes into the next).
//
// Invariant 2 ("no unlogged egress") rests on record_durable(): the proxy
// sends nothing upstream until it has returned true (Sync::Normal), or until
// record(event, done) has run `done(true)` after the fsynced commit
// (Sync::Full, waits_for_commit()). When the journal cannot be written
// (disk full, less than the reserve free) the store refuses new events
// (fail closed) and reports unhealthy. When a commit fails it reports
// unhealthy too, keeps the batch and tries it again; new events are still
// taken while the journal makes them durable, up to the queue limit. So
// nothing journaled is lost and the store heals by itself.
// the journals hold that the database does not.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>

#include "egress/audit/event.h"

namespace egress::audit {

/// Thrown by AuditStore::open(): names the path and what is wrong.
class AuditError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The stream's line shape: the table's rows (row.h to_json_line) or OCSF
/// events (HTTP Activity 4002 / Network Activity 4001; src/audit/ocsf.h,
/// docs/audit-fleet.md).
enum class StreamFormat { Rows, Ocsf };

struct StoreOptions {
  /// PRAGMA synchronous for the WAL database. Normal (the default) makes a
  /// committed event survive a crash of the egress process, SIGKILL
  /// included, which is what commit-before-connect (invariant 2) needs: the
  /// OS holds the written WAL. Full also fsyncs the WAL on every commit, so
  /// events survive power loss and kernel panics, at a cost of one fsync
  /// per batch.
  enum class Sync { Normal, Full };

  std::string path;                  // SQLite file; created with the schema if missing
  /// New events are refused while the filesystem of the journal (beside
  /// the database) has less than this free: room to ingest what is journaled.
  std::uint64_t min_free_bytes = 1 << 20;
  std::size_t max_batch = 4096;      // events per transaction at most (>= 1)
  std::size_t queue_limit = 262144;  // queued events at most (>= 1); beyond: refused, counted
  Sync sync = Sync::Normal;
  /// How long a commit waits for another connection's write lock (e.g. a
  /// running `egress audit prune`) before it fails and the store turns
  /// unhealthy.
  std::chrono::milliseconds busy_timeout{5000};
  /// When set, every committed event is also written here as one JSON line
  /// (serve --audit-stream). Called on the writer thread.
  std::function<void(const std::string& json_line)> stream;
  StreamFormat stream_format = StreamFormat::Rows;
};

/// Called on the writer thread once the event's transaction has committed
/// (true) or failed (false). Must be cheap: post the result to your executor.
using CommitCallback = std::function<void(bool committed)>;

struct StoreStats {
  std::size_t queue_depth = 0;
  std::uint64_t committed_events = 0;
  std::uint64_t commits = 0;
  std::uint64_t commit_failures = 0;
  std::uint64_t dropped_events = 0;  // refused: queue full or journal unwritable
  double last_commit_ms = 0;
};

class AuditStore {
 public:
  /// Opens (creating and migrating if needed) the database and starts the
  /// writer thread. Throws AuditError naming the path and the OS/SQLite
  /// error; refuses a database whose schema is newer than this binary's.
  static std::unique_ptr<AuditStore> open(const StoreOptions& options);

  virtual ~AuditStore() = default;  // flushes, then stops the writer

  /// Journals and queues `event`. True: it survives a crash of egress from
  /// now on (the journal holds it). False: it is not recorded at all (the
  /// journal cannot be written, or the queue is full). Never blocks on the
  /// writer.
  virtual bool record_durable(Event event) = 0;

  /// Like record_durable(), then `done` runs (on the writer thread) once
  /// the event's transaction has committed (true) or failed (false); when
  /// the event is refused, `done(false)` runs at once on the caller's thread.
  virtual void record(Event event, CommitCallback done) = 0;

  /// record_durable() for events nobody waits on (close events, refusals).
  virtual void record(Event event) = 0;

  /// True with Sync::Full: a decision is durable (power loss included)
  /// only once its fsynced commit has run, so the proxy waits for `done`.
  virtual bool waits_for_commit() const = 0;

  /// Blocks until every event queued so far is committed or failed.
  virtual void flush() = 0;

  /// False after a failed commit until a commit succeeds again, and while
  /// the journal refuses appends (until one succeeds or the writer's probe
  /// finds room again).
  virtual bool healthy() const = 0;
  /// Events queued or being written, not yet committed. Cheap (an atomic):
  /// sessions read it between requests to slow down while the writer
  /// catches up, so a flood of refusals cannot grow the queue without bound.
  virtual std::size_t backlog() const = 0;

  virtual StoreStats stats() const = 0;
};

using AuditStorePtr = std::unique_ptr<AuditStore>;

}  // namespace egress::audit
