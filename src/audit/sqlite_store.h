// SqliteAuditStore: the AuditStore over one SQLite file, with a journal per
// calling thread and one writer thread doing group commit (store.h
// describes the contract, journal.h the journal).
//
// STATES of the store (healthy()):
//
//   Healthy ──commit fails, or a journal append fails──> Unhealthy
//   Unhealthy ──the kept batch commits and the journals take appends
//               (a probe every second finds room when idle)──> Healthy
//
//   There is no "stopped on error" state: a failed batch is kept and tried
//   again every kRetryInterval, so a store whose disk filled up heals as
//   soon as a commit goes through. New events are refused (and the proxy
//   refuses their connections, invariant 2) while the journal refuses
//   appends or the queue is full; a failing commit alone refuses nothing,
//   since the journal holds what waits.
//
// INVARIANTS (check_invariants() asserts the countable ones, with mu_ held):
//
//   (1) An event is in exactly one place: queue_, the writer's batch
//       (in_flight_, kept across failed commits), or processed (committed,
//       or given up at shutdown and left in the journal), so
//       queue_.size() + in_flight_ == accepted_ - processed_.
//   (2) queue_.size() <= queue_limit. Nothing blocks on the writer: beyond
//       the limit an event is refused (done(false), dropped_events, warn).
//   (3) Every accepted event is in its thread's journal before it is
//       queued, and events of one thread are queued in journal order, so
//       the writer commits a prefix of each journal; a journal segment is
//       deleted only once all its records are committed.
//   (4) Every callback runs exactly once: on the writer thread after the
//       event's first commit attempt (true/false), or on the caller's
//       thread when the event is refused.
//   (5) A batch is all or nothing: one BEGIN IMMEDIATE ... COMMIT. On any
//       error it is rolled back, so the chain head has not moved.
//   (6) Rows are chained in id order: the writer reads the chain head inside
//       the batch's write transaction.
//   (7) Only the writer thread touches db_ and the statements after the
//       constructor returns; the thread start orders the hand-over.
//   (8) The stream sees only committed rows, after their callbacks ran.
//   (9) One store per journal directory: the constructor holds its lock
//       file, so no process ingests (and deletes) another's live journal.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "audit/checkpointer.h"
#include "audit/database.h"
#include "audit/journal.h"
#include "egress/audit/store.h"

namespace egress::audit {

class SqliteAuditStore final : public AuditStore {
 public:
  /// Opens and migrates the database, then starts the writer. Throws AuditError.
  explicit SqliteAuditStore(const StoreOptions& options);
  ~SqliteAuditStore() override;  // drains the queue, then closes the file

  SqliteAuditStore(const SqliteAuditStore&) = delete;
  SqliteAuditStore& operator=(const SqliteAuditStore&) = delete;

  // AuditStore
  bool record_durable(Event event) override;
  void record(Event event, CommitCallback done) override;
  void record(Event event) override;
  bool waits_for_commit() const override { return options_.sync == StoreOptions::Sync::Full; }
  /// Must not be called from a CommitCallback or the stream (they run on the
  /// writer thread, which flush() waits for).
  void flush() override;
  bool healthy() const override { return healthy_.load() && !journal_refusing_.load(); }
  std::size_t backlog() const override { return backlog_.load(std::memory_order_relaxed); }
  StoreStats stats() const override;

 private:
  struct Pending {
    std::vector<Value> values;  // row_values(event)
    CommitCallback done;        // may be empty
    Journal* journal = nullptr;  // where it is journaled (nullptr: recovered)
    std::uint64_t seq = 0;       // its position there
  };

  // Journals and queues; false (nothing recorded) if refused.
  bool append(Event&& event, CommitCallback&& done);
  Journal& this_threads_journal();
  void note_journal_failure(const std::string& error);
  void recover();  // constructor: ingests what earlier runs left in the journals
  void run();      // the writer thread
  // Commits `batch`; runs and clears the callbacks either way. True if committed.
  bool process(std::vector<Pending>& batch);
  // One transaction for the whole batch. On success fills `lines` (when
  // streaming) and returns true; on failure rolls back, sets `error`.
  bool commit(const std::vector<Pending>& batch, std::vector<std::string>& lines,
              std::string& error);
  bool check_invariants() const;  // mu_ held
  void mark_healthy();            // writer thread
  void probe();                   // writer thread: an empty write transaction; healthy if it commits

  const StoreOptions options_;
  const std::string journal_dir_;
  int journal_lock_ = -1;   // flock'ed for the store's life (invariant 9)
  const std::uint64_t generation_;  // tells this store's journals from an earlier store's (thread_local cache)
  std::string journal_prefix_;      // this run's segment names start with it
  std::mutex journals_mu_;
  std::unordered_map<std::thread::id, std::unique_ptr<Journal>> journals_;
  DbPtr db_;            // declared before the statements, so closed after them
  StmtPtr insert_;      // the one INSERT, reused for every row
  StmtPtr chain_head_;  // SELECT hash of the newest row
  int schema_version_ = 0;  // PRAGMA user_version, rewritten unchanged by probe()

  mutable std::mutex mu_;
  std::condition_variable work_cv_;     // writer waits: queue_ non-empty or stopping_
  bool writer_waiting_ = false;          // idle in work_cv_: the next event wakes it
  std::condition_variable flushed_cv_;  // flush() waits: processed_ advanced
  std::deque<Pending> queue_;
  std::size_t in_flight_ = 0;
  std::size_t waited_for_ = 0;   // queued events with a callback (a session waits on it)
  int flushing_ = 0;             // flush() calls waiting
  std::uint64_t accepted_ = 0;   // events ever queued
  std::uint64_t processed_ = 0;  // events whose callbacks have run
  bool stopping_ = false;
  // Rate limit of the queue-full warning (mu_ held).
  std::chrono::steady_clock::time_point last_drop_log_{};
  std::uint64_t drops_since_log_ = 0;

  // Writer-thread only: rate limit of the commit-failure warning.
  std::chrono::steady_clock::time_point last_failure_log_{};
  std::uint64_t failures_since_log_ = 0;

  std::atomic<bool> healthy_{true};
  std::atomic<bool> journal_refusing_{false};
  std::atomic<bool> queue_room_{true};  // queue_.size() < queue_limit, for a check without mu_
  bool committed_everything_ = true;    // writer thread; read after it is joined
  std::atomic<std::int64_t> last_journal_log_ns_{0};
  std::atomic<std::size_t> backlog_{0};  // accepted_ - processed_, for lock-free reads
  std::atomic<std::uint64_t> committed_events_{0};
  std::atomic<std::uint64_t> commits_{0};
  std::atomic<std::uint64_t> commit_failures_{0};
  std::atomic<std::uint64_t> dropped_events_{0};
  std::atomic<double> last_commit_ms_{0};

  std::thread writer_;  // starts after everything above is initialised
  std::unique_ptr<Checkpointer> checkpointer_;  // started after the writer, stopped after it
};

}  // namespace egress::audit
