// The audit writer: journals, queue, writer thread, batched transactions,
// hash chain, crash recovery and JSON-lines stream (see sqlite_store.h for
// states and invariants).
#include "audit/sqlite_store.h"

#include <fcntl.h>
#include <pthread.h>
#include <spdlog/spdlog.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>

#include "audit/chain.h"
#include "audit/ocsf.h"
#include "audit/row.h"

namespace egress::audit {

/// How long events nobody waits on may wait for others to share their
/// transaction (see SqliteAuditStore::run()).
constexpr std::chrono::milliseconds kLingerForCompany{2};
/// How often an unhealthy store with nothing to write tries a probe commit.
constexpr std::chrono::milliseconds kProbeInterval{1000};
/// How soon a batch whose commit failed is tried again.
constexpr std::chrono::milliseconds kRetryInterval{100};
namespace {

using Clock = std::chrono::steady_clock;

// Calls `callback`, logging (not passing on) what it throws, as `what`.
template <class Callback>
void call_logging_throws(std::string_view what, Callback&& callback) {
  try {
    callback();
  } catch (const std::exception& e) {
    spdlog::error("audit: {} threw: {}", what, e.what());
  } catch (...) {
    spdlog::error("audit: {} threw a non-exception", what);
  }
}

// While the queue stays full or commits keep failing, warn at most this
// often (with a count) rather than once per event.
constexpr auto kDropLogInterval = std::chrono::seconds(1);
constexpr auto kFailureLogInterval = std::chrono::seconds(5);

// Columns in kContentColumns order, then prev_hash, hash.
constexpr const char* kInsertSql =
    "INSERT INTO events (ts, request_id, event, mode, role, client_addr, kind, method, scheme, "
    "host, port, path, sni, decision, rule, reason, upstream_addr, status, bytes_up, "
    "bytes_down, duration_ms, error, alpn, injected, scrubbed, prev_hash, hash) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, "
    "?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27)";
constexpr int kPrevHashParam = static_cast<int>(kContentColumns.size()) + 1;
constexpr int kHashParam = kPrevHashParam + 1;

constexpr const char* kChainHeadSql = "SELECT hash FROM events ORDER BY id DESC LIMIT 1";
constexpr const char* kStoredSql = "SELECT 1 FROM events WHERE request_id = ?1 AND event = ?2 LIMIT 1";

std::atomic<std::uint64_t> next_generation{1};

std::int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

int bind(sqlite3_stmt* stmt, int index, const Value& value) {
  if (const auto* i = std::get_if<std::int64_t>(&value)) {
    return sqlite3_bind_int64(stmt, index, *i);
  }
  if (const auto* s = std::get_if<std::string>(&value)) {
    return sqlite3_bind_text(stmt, index, s->data(), static_cast<int>(s->size()), SQLITE_STATIC);
  }
  return sqlite3_bind_null(stmt, index);
}

int bind_text(sqlite3_stmt* stmt, int index, std::string_view s) {
  return sqlite3_bind_text(stmt, index, s.data(), static_cast<int>(s.size()), SQLITE_STATIC);
}

}  // namespace

AuditStorePtr AuditStore::open(const StoreOptions& options) {
  return std::make_unique<SqliteAuditStore>(options);
}

SqliteAuditStore::SqliteAuditStore(const StoreOptions& options)
    : options_(options), journal_dir_(journal_directory(options.path)), generation_(next_generation++) {
  if (options_.max_batch == 0 || options_.queue_limit == 0) {
    throw AuditError(options_.path + ": audit max_batch and queue_limit must be at least 1");
  }
  db_ = open_database(options_.path, options_.busy_timeout);
  sqlite3* db = db_.get();

  // PRAGMA journal_mode answers with the mode now in force; a filesystem
  // without shared memory (some network mounts) silently keeps the old one.
  StmtPtr wal = prepare(db, "PRAGMA journal_mode=WAL", options_.path);
  const bool is_wal = sqlite3_step(wal.get()) == SQLITE_ROW &&
                      std::string_view(reinterpret_cast<const char*>(
                          sqlite3_column_text(wal.get(), 0))) == "wal";
  wal.reset();
  if (!is_wal) {
    throw AuditError(options_.path + ": cannot switch the audit database to WAL journal mode (" +
                     sqlite3_errmsg(db) + "); put it on a local filesystem");
  }
  exec(db,
       options_.sync == StoreOptions::Sync::Full ? "PRAGMA synchronous=FULL"
                                                 : "PRAGMA synchronous=NORMAL",
       options_.path, "cannot set PRAGMA synchronous");
  // Checkpoints run on their own thread (checkpointer.h), not inside commits.
  exec(db, "PRAGMA wal_autocheckpoint=0", options_.path, "cannot turn off automatic checkpoints");

  StmtPtr version = prepare(db, "PRAGMA user_version", options_.path);
  if (sqlite3_step(version.get()) == SQLITE_ROW) schema_version_ = sqlite3_column_int(version.get(), 0);
  version.reset();

  insert_ = prepare(db, kInsertSql, options_.path);
  chain_head_ = prepare(db, kChainHeadSql, options_.path);

  std::error_code ec;
  std::filesystem::create_directories(journal_dir_, ec);
  const std::string lock_path = journal_dir_ + "/lock";
  journal_lock_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (journal_lock_ < 0) {
    throw AuditError(lock_path + ": cannot create the audit journal's lock file: " + std::strerror(errno));
  }
  if (!lock_journal(journal_lock_)) {
    ::close(journal_lock_);
    throw AuditError(options_.path + ": another egress serve writes this audit database (" + lock_path +
                     " is locked); give each serve its own audit_db");
  }
  try {
    recover();
  } catch (...) {
    ::close(journal_lock_);
    throw;
  }
  journal_prefix_ = std::to_string(std::chrono::system_clock::now().time_since_epoch().count());
  writer_ = std::thread([this] { run(); });
  checkpointer_ = std::make_unique<Checkpointer>(options_.path, options_.busy_timeout, std::chrono::milliseconds(500));
}

SqliteAuditStore::~SqliteAuditStore() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  writer_.join();  // the writer drains the queue (or gives up on a failing disk) before it returns
  checkpointer_.reset();
  if (committed_everything_) {
    for (auto& [thread, journal] : journals_) journal->remove_all();
  }
  ::close(journal_lock_);
}

void SqliteAuditStore::recover() {
  const std::vector<std::string> files = journal_files(journal_dir_);
  if (files.empty()) return;
  StmtPtr stored = prepare(db_.get(), kStoredSql, options_.path);
  const auto is_stored = [&](const std::vector<Value>& values) {
    sqlite3_reset(stored.get());
    bind(stored.get(), 1, values[1]);
    bind(stored.get(), 2, values[2]);
    const bool found = sqlite3_step(stored.get()) == SQLITE_ROW;
    sqlite3_reset(stored.get());
    return found;
  };
  std::vector<Pending> missing;
  std::size_t journaled = 0;
  std::size_t torn = 0;
  for (const std::string& file : files) {
    std::ifstream in(file, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::size_t good = 0;
    for (auto& values : decode_records(bytes, &good)) {
      ++journaled;
      if (values.size() > kContentColumns.size() || values.size() < 3) continue;
      values.resize(kContentColumns.size());  // a record from an older binary lacks the newer columns
      if (!is_stored(values)) missing.push_back(Pending{std::move(values), nullptr, nullptr, 0});
    }
    if (good != bytes.size()) ++torn;
  }
  stored.reset();
  // In the order they happened, as far as the journals tell (ts first).
  std::stable_sort(missing.begin(), missing.end(),
                   [](const Pending& a, const Pending& b) { return a.values[0] < b.values[0]; });
  for (std::size_t at = 0; at < missing.size(); at += options_.max_batch) {
    std::vector<Pending> batch(std::make_move_iterator(missing.begin() + static_cast<std::ptrdiff_t>(at)),
                               std::make_move_iterator(missing.begin() + static_cast<std::ptrdiff_t>(
                                   std::min(missing.size(), at + options_.max_batch))));
    std::vector<std::string> lines;
    std::string error;
    if (!commit(batch, lines, error)) {
      throw AuditError(options_.path + ": cannot ingest the audit journal left in " + journal_dir_ + ": " + error +
                       "; free space (or fix permissions) and start again: the journal stays until it is ingested");
    }
    for (const std::string& line : lines) call_logging_throws("event stream", [&] { options_.stream(line); });
  }
  for (const std::string& file : files) ::unlink(file.c_str());
  spdlog::info("audit: {}: ingested {} event(s) from {} journal file(s) an earlier run left ({} already stored{})",
               options_.path, missing.size(), files.size(), journaled - missing.size(),
               torn ? fmt::format(", {} file(s) ended in a torn record", torn) : "");
}

Journal& SqliteAuditStore::this_threads_journal() {
  struct Cached {
    std::uint64_t generation = 0;
    Journal* journal = nullptr;
  };
  thread_local Cached cached;
  if (cached.generation == generation_) return *cached.journal;
  std::lock_guard lock(journals_mu_);
  auto& journal = journals_[std::this_thread::get_id()];
  if (!journal) {
    journal = std::make_unique<Journal>(journal_dir_, journal_prefix_ + "-t" + std::to_string(journals_.size()),
                                        options_.min_free_bytes);
  }
  cached = Cached{generation_, journal.get()};
  return *journal;
}

bool SqliteAuditStore::record_durable(Event event) { return append(std::move(event), nullptr); }

void SqliteAuditStore::record(Event event, CommitCallback done) {
  if (!append(std::move(event), std::move(done)) && done) done(false);
}

void SqliteAuditStore::record(Event event) { append(std::move(event), nullptr); }

void SqliteAuditStore::note_journal_failure(const std::string& error) {
  const bool was_refusing = journal_refusing_.exchange(true);
  if (!was_refusing) {
    { std::lock_guard lock(mu_); }  // the writer is waiting or sees the flag
    work_cv_.notify_all();
  }
  const std::int64_t now = steady_ns();
  std::int64_t last = last_journal_log_ns_.load(std::memory_order_relaxed);
  const auto interval = std::chrono::duration_cast<std::chrono::nanoseconds>(kFailureLogInterval).count();
  if ((was_refusing && now - last < interval) || !last_journal_log_ns_.compare_exchange_strong(last, now)) return;
  spdlog::warn("audit: {}: {}; the store is unhealthy and refuses new connections until the journal can be "
               "written again (free disk space, check permissions)",
               options_.path, error);
}

bool SqliteAuditStore::append(Event&& event, CommitCallback&& done) {
  std::uint64_t drops_to_log = 0;
  // Nothing is journaled that will not be queued: an event refused here is
  // not recorded anywhere (the proxy refuses its connection). A failing
  // commit does not refuse by itself: the journal makes the event durable,
  // the writer keeps retrying, and the queue limit bounds what waits.
  if (queue_room_.load(std::memory_order_relaxed)) {
    std::vector<Value> values = row_values(event);
    Journal& journal = this_threads_journal();
    std::uint64_t seq = 0;
    std::string error;
    if (!journal.append(encode_record(values), seq, error)) {
      note_journal_failure(error);
    } else {
      if (journal_refusing_.load(std::memory_order_relaxed) && journal_refusing_.exchange(false)) {
        spdlog::info("audit: {}: the journal takes appends again; healthy", options_.path);
      }
      std::lock_guard lock(mu_);
      if (done) ++waited_for_;
      const bool wake = writer_waiting_ || done || queue_.size() + 1 >= options_.max_batch;
      queue_.push_back(Pending{std::move(values), std::move(done), &journal, seq});
      ++accepted_;
      backlog_.store(accepted_ - processed_, std::memory_order_relaxed);
      queue_room_.store(queue_.size() < options_.queue_limit, std::memory_order_relaxed);
      // The writer lingers for company (run()); waking it for every event
      // would cost a futex call and a context switch per event.
      if (wake) {
        writer_waiting_ = false;
        work_cv_.notify_one();
      }
      return true;
    }
  }
  {
    std::lock_guard lock(mu_);
    ++dropped_events_;
    ++drops_since_log_;
    const auto now = Clock::now();
    if (!queue_room_.load() && now - last_drop_log_ >= kDropLogInterval) {
      drops_to_log = drops_since_log_;
      drops_since_log_ = 0;
      last_drop_log_ = now;
    }
  }
  if (drops_to_log != 0) {
    spdlog::warn(
        "audit: {}: queue full ({} events); refused {} event(s) since the last warning: "
        "their connections fail closed, refused close events are not logged. The writer is "
        "not keeping up: check disk latency or raise the queue limit",
        options_.path, options_.queue_limit, drops_to_log);
  }
  return false;
}

void SqliteAuditStore::flush() {
  std::unique_lock lock(mu_);
  const std::uint64_t target = accepted_;
  ++flushing_;
  writer_waiting_ = false;
  work_cv_.notify_one();  // no lingering for company (see run())
  // A failing disk keeps the batch for a retry; flush does not wait for
  // the disk to recover.
  flushed_cv_.wait(lock, [&] { return processed_ >= target || !healthy_.load(); });
  --flushing_;
}

StoreStats SqliteAuditStore::stats() const {
  StoreStats s;
  {
    std::lock_guard lock(mu_);
    s.queue_depth = queue_.size();
  }
  s.committed_events = committed_events_.load();
  s.commits = commits_.load();
  s.commit_failures = commit_failures_.load();
  s.dropped_events = dropped_events_.load();
  s.last_commit_ms = last_commit_ms_.load();
  return s;
}

bool SqliteAuditStore::check_invariants() const {
  assert(queue_.size() + in_flight_ == accepted_ - processed_);  // (1)
  assert(queue_.size() <= options_.queue_limit);                 // (2)
  assert(in_flight_ <= options_.max_batch);
  return true;
}

void SqliteAuditStore::run() {
  pthread_setname_np(pthread_self(), "egress-audit");
  std::vector<Pending> batch;  // kept while its commit fails
  batch.reserve(std::min<std::size_t>(options_.max_batch, 4096));
  std::unique_lock lock(mu_);
  for (;;) {
    if (!batch.empty()) {
      // The last commit failed: try the same events again soon (they are
      // journaled and their sessions went on), at once when stopping.
      work_cv_.wait_for(lock, kRetryInterval, [&] { return stopping_; });
    } else {
      const auto has_work = [&] { return !queue_.empty() || stopping_; };
      writer_waiting_ = true;
      if (healthy()) {
        // A journal that starts refusing wakes the writer, to probe.
        work_cv_.wait(lock, [&] { return has_work() || !healthy(); });
        if (!has_work()) continue;
      } else if (!work_cv_.wait_for(lock, kProbeInterval, has_work)) {
        // Unhealthy and idle: find out whether the disk has room again
        // without waiting for traffic (a load balancer that stops sending
        // it while /readyz says 503 would otherwise never see it recover).
        writer_waiting_ = false;
        lock.unlock();
        probe();
        lock.lock();
        continue;
      }
      writer_waiting_ = false;
      if (queue_.empty()) return;  // stopping, and everything is processed
      // Events nobody waits on (all of them with Sync::Normal: the journal
      // made them durable) linger up to kLingerForCompany for others: a
      // transaction costs about ten page writes to the WAL however few rows
      // it holds. A session waiting on its commit, a flush, a full batch or
      // shutdown ends the wait at once.
      if (waited_for_ == 0) {
        work_cv_.wait_for(lock, kLingerForCompany, [&] {
          return waited_for_ > 0 || flushing_ > 0 || stopping_ || queue_.size() >= options_.max_batch;
        });
      }
    }
    const std::size_t n = std::min(queue_.size(), options_.max_batch - batch.size());
    for (std::size_t i = 0; i < n; ++i) {
      if (queue_.front().done) --waited_for_;
      batch.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    in_flight_ = batch.size();
    queue_room_.store(queue_.size() < options_.queue_limit, std::memory_order_relaxed);
    const bool last_try = stopping_;
    lock.unlock();

    const bool committed = process(batch);
    if (!committed && last_try) {
      spdlog::error("audit: {}: stopping with {} event(s) not in the database; they stay in {} and the next "
                    "start ingests them",
                    options_.path, batch.size(), journal_dir_);
      committed_everything_ = false;
    }

    lock.lock();
    if (committed || last_try) {
      processed_ += batch.size();
      batch.clear();
      in_flight_ = 0;
      backlog_.store(accepted_ - processed_, std::memory_order_relaxed);
    }
    assert(check_invariants());
    flushed_cv_.notify_all();
  }
}

bool SqliteAuditStore::process(std::vector<Pending>& batch) {
  std::vector<std::string> lines;
  std::string error;
  const auto start = Clock::now();
  const bool ok = commit(batch, lines, error);
  const auto now = Clock::now();

  if (ok) {
    ++commits_;
    committed_events_ += batch.size();
    last_commit_ms_ = std::chrono::duration<double, std::milli>(now - start).count();
    mark_healthy();
    // The batch holds a prefix of each journal (invariant 3): the last
    // record of each journal in it is that journal's committed position.
    std::map<Journal*, std::uint64_t> newest;
    for (const Pending& p : batch)
      if (p.journal) newest[p.journal] = p.seq;
    for (const auto& [journal, seq] : newest) journal->committed(seq);
  } else {
    ++commit_failures_;
    ++failures_since_log_;
    const bool was_healthy = healthy_.exchange(false);
    if (was_healthy || now - last_failure_log_ >= kFailureLogInterval) {
      spdlog::warn(
          "audit: {}: commit of {} event(s) failed: {}; {} failed batch(es) so far; the store "
          "is unhealthy and refuses new connections until a commit succeeds (check free disk "
          "space and file permissions); the events stay journaled and are tried again",
          options_.path, batch.size(), error, failures_since_log_);
      last_failure_log_ = now;
    }
  }

  // A throwing callback or stream must not kill the writer: every other
  // waiting session depends on it.
  for (Pending& p : batch) {
    if (p.done) call_logging_throws("commit callback", [&] { p.done(ok); });
    p.done = nullptr;
  }
  for (const std::string& line : lines) call_logging_throws("event stream", [&] { options_.stream(line); });
  return ok;
}

void SqliteAuditStore::mark_healthy() {
  if (healthy_.exchange(true)) return;
  spdlog::info("audit: {}: commits succeed again after {} failed batch(es); healthy", options_.path,
               failures_since_log_);
  failures_since_log_ = 0;
  last_failure_log_ = {};
}

void SqliteAuditStore::probe() {
  if (journal_refusing_.load()) {
    struct statfs fs {};
    if (::statfs(journal_dir_.c_str(), &fs) == 0 &&
        static_cast<std::uint64_t>(fs.f_bavail) * static_cast<std::uint64_t>(fs.f_bsize) >= options_.min_free_bytes &&
        journal_refusing_.exchange(false)) {
      spdlog::info("audit: {}: the journal's filesystem has room again; healthy", options_.path);
    }
  }
  // A write transaction that changes nothing but still appends page 1 to
  // the WAL: it fails exactly when a commit of events would.
  const std::string sql = "BEGIN IMMEDIATE; PRAGMA user_version = " + std::to_string(schema_version_) + "; COMMIT";
  sqlite3* db = db_.get();
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK) {
    mark_healthy();
    return;
  }
  if (!sqlite3_get_autocommit(db)) sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
}

bool SqliteAuditStore::commit(const std::vector<Pending>& batch, std::vector<std::string>& lines,
                              std::string& error) {
  sqlite3* db = db_.get();
  sqlite3_stmt* insert = insert_.get();
  sqlite3_stmt* head_stmt = chain_head_.get();
  auto fail = [&](std::string_view stage) {
    error = std::string(stage) + ": " + sqlite3_errmsg(db);
    sqlite3_reset(insert);
    sqlite3_clear_bindings(insert);
    sqlite3_reset(head_stmt);
    // After some errors (SQLITE_FULL, SQLITE_IOERR) SQLite has already
    // rolled back; only a transaction still open needs it.
    if (!sqlite3_get_autocommit(db)) sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    lines.clear();
    return false;
  };

  if (sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK) {
    return fail("BEGIN IMMEDIATE");
  }
  std::string head;
  const int rc = sqlite3_step(head_stmt);
  if (rc == SQLITE_ROW) {
    const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(head_stmt, 0));
    head.assign(text ? text : "", static_cast<std::size_t>(sqlite3_column_bytes(head_stmt, 0)));
  } else if (rc == SQLITE_DONE) {
    head = kGenesisHash;
  } else {
    return fail("read chain head");
  }
  sqlite3_reset(head_stmt);

  for (const Pending& p : batch) {
    const std::vector<Value>& values = p.values;
    std::string hash = chain_hash(head, values);
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (bind(insert, static_cast<int>(i) + 1, values[i]) != SQLITE_OK) return fail("bind");
    }
    if (bind_text(insert, kPrevHashParam, head) != SQLITE_OK ||
        bind_text(insert, kHashParam, hash) != SQLITE_OK) {
      return fail("bind");
    }
    if (sqlite3_step(insert) != SQLITE_DONE) return fail("INSERT");
    sqlite3_reset(insert);
    if (options_.stream) {
      const RowMeta meta{sqlite3_last_insert_rowid(db), head, hash};
      lines.push_back(options_.stream_format == StreamFormat::Ocsf ? to_ocsf_line(values, meta)
                                                                   : to_json_line(values, meta));
    }
    head = std::move(hash);
  }
  sqlite3_clear_bindings(insert);  // the bound text lives in `values`, gone after return

  if (sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) return fail("COMMIT");
  return true;
}

}  // namespace egress::audit
