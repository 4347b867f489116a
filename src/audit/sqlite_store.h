// SqliteAuditStore: the AuditStore over one SQLite file, with one writer
// thread doing group commit (store.h describes the contract).
//
// STATES of the store (healthy_):
//
//   Healthy ──commit fails──> Unhealthy ──a later commit (or, when idle, a
//                                          probe every second) succeeds──> Healthy
//
//   There is no "stopped on error" state: every batch is a fresh attempt,
//   so a store whose disk filled up heals as soon as a commit goes through.
//   While Unhealthy the proxy refuses new connections (invariant 2).
//
// INVARIANTS (check_invariants() asserts the countable ones, with mu_ held):
//
//   (1) An event is in exactly one place: queue_, the writer's batch
//       (in_flight_), or processed (committed or failed), so
//       queue_.size() + in_flight_ == accepted_ - processed_.
//   (2) queue_.size() <= queue_limit. record() never blocks: beyond the
//       limit it refuses (done(false), dropped_events, warn log).
//   (3) Every accepted event's callback runs exactly once, on the writer
//       thread, after its transaction has committed (true) or rolled back
//       (false). A refused event's callback runs once, on the caller's.
//   (4) A batch is all or nothing: one BEGIN IMMEDIATE ... COMMIT. On any
//       error it is rolled back, so no row of a failed batch exists and the
//       chain head (the newest stored row's hash) has not moved.
//   (5) Rows are chained in id order: the writer reads the chain head inside
//       the batch's write transaction, so even a second writer on the same
//       file (not the intended use) cannot fork the chain.
//   (6) Only the writer thread touches db_ and the statements after the
//       constructor returns; the thread start orders the hand-over.
//   (7) The stream sees only committed rows, after their callbacks ran.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <memory>
#include <thread>
#include <vector>

#include "audit/checkpointer.h"
#include "audit/database.h"
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
  void record(Event event, CommitCallback done) override;
  void record(Event event) override;
  /// Must not be called from a CommitCallback or the stream (they run on the
  /// writer thread, which flush() waits for).
  void flush() override;
  bool healthy() const override { return healthy_.load(); }
  std::size_t backlog() const override { return backlog_.load(std::memory_order_relaxed); }
  StoreStats stats() const override;

 private:
  struct Pending {
    Event event;
    CommitCallback done;  // may be empty
  };

  void enqueue(Event&& event, CommitCallback&& done);
  void run();  // the writer thread
  void process(std::vector<Pending>& batch);
  // One transaction for the whole batch. On success fills `lines` (when
  // streaming) and returns true; on failure rolls back, sets `error`.
  bool commit(const std::vector<Pending>& batch, std::vector<std::string>& lines,
              std::string& error);
  bool check_invariants() const;  // mu_ held
  void mark_healthy();            // writer thread
  void probe();                   // writer thread: an empty write transaction; healthy if it commits

  const StoreOptions options_;
  DbPtr db_;            // declared before the statements, so closed after them
  StmtPtr insert_;      // the one INSERT, reused for every row
  StmtPtr chain_head_;  // SELECT hash of the newest row
  int schema_version_ = 0;  // PRAGMA user_version, rewritten unchanged by probe()

  mutable std::mutex mu_;
  std::condition_variable work_cv_;     // writer waits: queue_ non-empty or stopping_
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
