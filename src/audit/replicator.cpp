// The shipper thread: local SQLite rows -> central PostgreSQL (see
// egress/audit/replicator.h, docs/audit-fleet.md).
//
// STATES
//   Disconnected --connect + migrate + resume point read--> Shipping
//   Shipping --a statement fails--> Disconnected (back-off 0.5 s doubling to retry_max)
//
// INVARIANTS
//   (1) The resume point is what the central store holds (max(id) for this
//       replica), read after every (re)connect: a batch committed centrally
//       just before a crash is never sent as new, and one that was not is
//       sent again. A batch that meets rows already there (a replica name
//       two egresses share) goes as INSERT ... ON CONFLICT DO NOTHING.
//   (2) Rows go in id order, each batch a contiguous id range in one
//       transaction: the central copy is always a prefix of the local log.
//   (3) The local `replication` row (schema/004_replication.sql) only moves
//       after the central COMMIT, so prune never removes an unshipped row.
//   (4) Failing and recovering are logged once each, not per batch.
#include "egress/audit/replicator.h"

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>
#include <spdlog/spdlog.h>

#include "audit/log_impl.h"
#include "audit/pg_rows.h"
#include "audit/reader.h"
#include "egress/audit/event.h"
#include "egress/audit/store.h"

namespace egress::audit {
namespace {

// Where SCHED_IDLE is refused (a seccomp filter, an old kernel): the
// lowest nice value a thread can give itself.
constexpr int kShipperNice = 19;

// Shipping never gates a request, so the shipper takes only CPU that the
// threads serving workers leave: SCHED_IDLE runs it when a core would
// otherwise idle, and any woken thread of normal policy preempts it at once
// (nice 19 alone still holds the core for a scheduler slice, which costs a
// latency-bound proxy throughput). At full load the backlog grows, locally,
// nothing lost, and drains when the load falls (docs/audit-fleet.md).
// Both calls apply to the calling thread only on Linux.
void yield_cpu_to_serving() {
  const sched_param param{};
  if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &param) != 0) {
    setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), kShipperNice);
  }
}

}  // namespace

struct Replicator::Impl {
  explicit Impl(ReplicationOptions o) : options(std::move(o)), target(redact_dsn(options.dsn)) {}

  void run();
  void connect();
  std::vector<ShippedRow> read_batch(std::int64_t after);
  void ship(const std::vector<ShippedRow>& batch);
  void note_shipped(bool force);
  void check_collision(const std::vector<ShippedRow>& batch);
  void check_same_log(PgConnection& conn, std::int64_t resume);
  void update_backlog();
  void failed(const std::string& why);
  void wait(std::chrono::milliseconds d);
  void wait_backoff(std::chrono::milliseconds d);

  const ReplicationOptions options;
  const std::string target;
  DbPtr local;   // read-only: the rows
  DbPtr marker;  // read-write: the replication row only
  std::int64_t schema = 0;
  std::unique_ptr<PgConnection> pg;  // guarded by pg_mu for cancel()
  std::mutex pg_mu;

  mutable std::mutex mu;  // stats, stop
  std::condition_variable cv;
  bool stop = false;
  bool done = false;  // run() has returned
  std::condition_variable done_cv;
  ReplicationStats stats;
  bool failing = false;
  bool collision_logged = false;  // shipper thread only
  std::chrono::steady_clock::time_point failing_since;
  std::int64_t marked_id = -1;
  std::chrono::steady_clock::time_point marked_at;
  std::thread thread;
};

Replicator::Replicator(ReplicationOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  Impl& s = *impl_;
  s.local = open_readonly(s.options.db_path);
  s.schema = schema_version(s.local.get(), s.options.db_path);
  s.marker = open_database(s.options.db_path, std::chrono::milliseconds(1000));
  // Registered before anything ships, so prune holds every row from now on.
  run_sql(s.marker.get(),
          {"INSERT OR IGNORE INTO replication (target, replica, shipped_id, updated_ts) VALUES (?, ?, 0, ?)",
           {s.target, s.options.replica, format_timestamp(std::chrono::system_clock::now())}},
          s.options.db_path);
  s.thread = std::thread([&s] { s.run(); });
}

Replicator::~Replicator() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stop = true;
  }
  impl_->cv.notify_all();
  {
    std::lock_guard lock(impl_->pg_mu);
    if (impl_->pg) impl_->pg->cancel_async();
  }
  // A PostgreSQL that is stopped (SIGSTOP, a frozen VM) answers neither the
  // statement nor the cancel; serve's shutdown must not wait for it. Every
  // shipped row is central already and the rest is in the local file, so
  // the thread is left behind with its state (the process is exiting).
  std::unique_lock lock(impl_->mu);
  if (!impl_->done_cv.wait_for(lock, std::chrono::seconds(5), [&] { return impl_->done; })) {
    lock.unlock();
    spdlog::warn("audit: replication to {} did not stop within 5 s (PostgreSQL not answering); leaving it",
                 impl_->target);
    impl_->thread.detach();
    static_cast<void>(impl_.release());
    return;
  }
  lock.unlock();
  impl_->thread.join();
}

ReplicationStats Replicator::stats() const {
  std::lock_guard lock(impl_->mu);
  return impl_->stats;
}

void Replicator::Impl::wait(std::chrono::milliseconds d) {
  std::unique_lock lock(mu);
  cv.wait_for(lock, d, [&] { return stop; });
}

// While PostgreSQL is away the backlog metrics keep moving: the local
// head is re-read every half second of the back-off.
void Replicator::Impl::wait_backoff(std::chrono::milliseconds d) {
  const auto until = std::chrono::steady_clock::now() + d;
  for (auto now = std::chrono::steady_clock::now(); now < until; now = std::chrono::steady_clock::now()) {
    wait(std::min<std::chrono::milliseconds>(std::chrono::milliseconds(500),
                                             std::chrono::duration_cast<std::chrono::milliseconds>(until - now)));
    {
      std::lock_guard lock(mu);
      if (stop) return;
    }
    try {
      update_backlog();
    } catch (const std::exception&) {
      // the local file's problems are the writer's to report
    }
  }
}

void Replicator::Impl::run() {
  pthread_setname_np(pthread_self(), "egress-ship");
  yield_cpu_to_serving();
  auto backoff = std::chrono::milliseconds(500);
  for (;;) {
    {
      std::lock_guard lock(mu);
      if (stop) break;
    }
    try {
      if (!pg) connect();
      update_backlog();
      const auto batch = read_batch(stats.shipped_id);
      if (batch.empty()) {
        note_shipped(false);
        wait(options.poll);
        continue;
      }
      ship(batch);
      backoff = std::chrono::milliseconds(500);
      // A short batch means the shipper has caught up: let rows gather for
      // one poll interval, so that at a high event rate each transaction
      // carries many rows instead of a few (the per-batch round trips and
      // commit are most of the cost, on both sides).
      if (batch.size() < options.batch_rows) wait(options.poll);
    } catch (const std::exception& e) {
      failed(e.what());
      wait_backoff(backoff);
      backoff = std::min(backoff * 2, options.retry_max);
    }
  }
  note_shipped(true);
  std::lock_guard lock(mu);
  done = true;
  done_cv.notify_all();
}

void Replicator::Impl::connect() {
  auto conn = std::make_unique<PgConnection>(options.dsn, options.password_file);
  conn->migrate();
  auto r = conn->exec("SELECT coalesce(max(id), 0) FROM events WHERE replica = $1", {options.replica},
                      "reading where to resume");
  const std::int64_t resume = std::stoll(pg_value(r.get(), 0, 0).value_or("0"));
  check_same_log(*conn, resume);
  {
    std::lock_guard lock(pg_mu);
    pg = std::move(conn);
  }
  std::lock_guard lock(mu);
  stats.connected = true;
  stats.shipped_id = resume;
  if (failing) {
    const auto secs = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() -
                                                                       failing_since).count();
    spdlog::info("audit: replication to {} recovered after {} s; shipping the backlog from id {}", target, secs,
                 resume + 1);
    failing = false;
  } else {
    spdlog::info("audit: replicating {} to {} as replica '{}', from id {}", options.db_path, target,
                 options.replica, resume + 1);
  }
}

std::vector<ShippedRow> Replicator::Impl::read_batch(std::int64_t after) {
  std::string columns;
  for (auto c : kContentColumns) columns += (columns.empty() ? "" : ", ") + std::string(c);
  const auto rows = run_sql(local.get(),
                            {"SELECT id, " + select_list(columns, schema) +
                                 ", prev_hash, hash FROM events WHERE id > ? ORDER BY id LIMIT ?",
                             {after, static_cast<std::int64_t>(options.batch_rows)}},
                            options.db_path);
  std::vector<ShippedRow> out;
  out.reserve(rows.size());
  const std::size_t n = kContentColumns.size();
  for (const auto& row : rows) {
    ShippedRow r;
    r.id = std::get<std::int64_t>(row[0]);
    r.content.assign(row.begin() + 1, row.begin() + 1 + static_cast<std::ptrdiff_t>(n));
    const auto* prev = std::get_if<std::string>(&row[n + 1]);
    const auto* hash = std::get_if<std::string>(&row[n + 2]);
    r.prev_hash = prev ? *prev : "";
    r.hash = hash ? *hash : "";
    out.push_back(std::move(r));
  }
  return out;
}

void Replicator::Impl::ship(const std::vector<ShippedRow>& batch) {
  // COPY costs PostgreSQL a fraction of what a 1000-row INSERT with 28,000
  // parameters does to parse and plan (docs/audit-fleet.md). It fails on a
  // key that is central already, which only a replica name shared by two
  // egresses causes (invariant 1); that batch then goes as an INSERT that
  // skips those rows, and check_collision says whose they are.
  std::string data;
  for (const auto& row : batch) append_copy_row(data, options.replica, row);
  pg->exec("BEGIN", {}, "begin a batch");
  if (pg->copy_in(central_copy_sql(), data, "copying a batch")) {
    pg->exec("COMMIT", {}, "committing a batch");
  } else {
    pg->exec("ROLLBACK", {}, "rolling back a batch");
    std::vector<PgParam> params;
    params.reserve(batch.size() * kParamsPerRow);
    for (const auto& row : batch) append_row_params(params, options.replica, row);
    auto inserted = pg->exec(central_insert_sql(batch.size()), params, "inserting a batch");
    if (std::stoul(PQcmdTuples(inserted.get())) < batch.size()) check_collision(batch);
  }
  {
    std::lock_guard lock(mu);
    if (stats.shipped_id != 0 && batch.front().id != stats.shipped_id + 1) {
      spdlog::error("audit: replication to {}: local rows {}..{} are missing (removed before they were shipped); "
                    "the central copy of replica '{}' has a gap there that verify will report",
                    target, stats.shipped_id + 1, batch.front().id - 1, options.replica);
    }
    stats.shipped_id = batch.back().id;
    stats.shipped_rows += batch.size();
  }
  note_shipped(false);
}

// The central rows of this replica name must be this file's: their newest
// must exist here with the same hash. Otherwise another egress ships under
// the same name (or the file was replaced), and resuming after its rows
// would skip this file's; nothing is shipped until that is fixed (the
// rows wait locally, prune keeps them).
void Replicator::Impl::check_same_log(PgConnection& conn, std::int64_t resume) {
  if (resume == 0) return;
  const auto local_row = run_sql(local.get(), {"SELECT hash FROM events WHERE id = ?", {resume}}, options.db_path);
  const auto head = run_sql(local.get(), {"SELECT coalesce(max(id), 0) FROM events", {}}, options.db_path);
  const auto local_head = std::get<std::int64_t>(head.at(0).at(0));
  auto central = conn.exec("SELECT hash FROM events WHERE replica = $1 AND id = $2",
                           {options.replica, std::to_string(resume)}, "checking the resume point");
  const auto* local_hash = local_row.empty() ? nullptr : std::get_if<std::string>(&local_row[0][0]);
  const bool pruned_here = local_row.empty() && resume < local_head;
  if (pruned_here || (local_hash && pg_value(central.get(), 0, 0).value_or("") == *local_hash)) return;
  throw AuditError("replica '" + options.replica + "' there holds rows up to id " + std::to_string(resume) +
                   " that are not " + options.db_path + "'s (which ends at id " + std::to_string(local_head) +
                   "): another egress ships under the same name, or this file was replaced. Give every replica "
                   "its own --audit-replica (audit.replica); until then nothing is shipped and events wait locally");
}

// Rows already central that this batch did not insert: after a crash
// between COMMIT and the resume point that is the same rows again, but
// different hashes mean another egress ships under the same replica name,
// and these rows of this file are not central. Said once, loudly.
void Replicator::Impl::check_collision(const std::vector<ShippedRow>& batch) {
  auto r = pg->exec("SELECT id, hash FROM events WHERE replica = $1 AND id BETWEEN $2 AND $3 ORDER BY id",
                    {options.replica, std::to_string(batch.front().id), std::to_string(batch.back().id)},
                    "checking rows that were already central");
  std::size_t clashes = 0, i = 0;
  for (int row = 0; row < PQntuples(r.get()); ++row) {
    const auto id = std::stoll(pg_value(r.get(), row, 0).value_or("0"));
    while (i < batch.size() && batch[i].id < id) ++i;
    if (i < batch.size() && batch[i].id == id && pg_value(r.get(), row, 1).value_or("") != batch[i].hash) ++clashes;
  }
  if (clashes == 0 || collision_logged) return;
  collision_logged = true;
  spdlog::error("audit: replication to {}: {} row(s) with ids {}..{} of {} are NOT central: replica '{}' already has "
                "different rows under those ids, so another egress ships under the same name. Give every replica "
                "its own --audit-replica (audit.replica); verify of the central store reports the mix",
                target, clashes, batch.front().id, batch.back().id, options.db_path, options.replica);
}

// At most once a second (the marker write takes the local write lock for a
// moment, which the audit writer then waits for).
void Replicator::Impl::note_shipped(bool force) {
  const auto now = std::chrono::steady_clock::now();
  const std::int64_t id = [&] {
    std::lock_guard lock(mu);
    return stats.shipped_id;
  }();
  if (id == marked_id || (!force && now - marked_at < std::chrono::seconds(1))) return;
  try {
    run_sql(marker.get(),
            {"UPDATE replication SET shipped_id = max(shipped_id, ?), updated_ts = ? WHERE target = ?",
             {id, format_timestamp(std::chrono::system_clock::now()), target}},
            options.db_path);
    marked_id = id;
  } catch (const std::exception& e) {
    // Not a replication failure: the rows are central. Prune just holds
    // them a little longer; the next note retries.
    spdlog::debug("audit: {}: noting shipped id {} failed: {}", options.db_path, id, e.what());
  }
  marked_at = now;
}

void Replicator::Impl::update_backlog() {
  std::int64_t after = 0;
  {
    std::lock_guard lock(mu);
    after = stats.shipped_id;
  }
  const auto head = run_sql(local.get(), {"SELECT coalesce(max(id), 0) FROM events", {}}, options.db_path);
  const auto lag = run_sql(local.get(),
                           {"SELECT (julianday('now') - julianday(ts)) * 86400.0 FROM events WHERE id > ? "
                            "ORDER BY id LIMIT 1",
                            {after}},
                           options.db_path);
  std::lock_guard lock(mu);
  stats.local_head = std::get<std::int64_t>(head.at(0).at(0));
  stats.backlog_rows = std::max<std::int64_t>(0, stats.local_head - after);
  stats.lag_seconds = 0;
  if (!lag.empty()) {
    // julianday() gives a REAL, which run_sql reads as text.
    if (const auto* s = std::get_if<std::string>(&lag[0][0])) stats.lag_seconds = std::max(0.0, std::stod(*s));
  }
}

void Replicator::Impl::failed(const std::string& why) {
  {
    std::lock_guard lock(pg_mu);
    pg.reset();
  }
  try {
    update_backlog();
  } catch (const std::exception&) {
    // the local file is the writer's; its problems are reported there
  }
  std::lock_guard lock(mu);
  stats.connected = false;
  ++stats.failures;
  if (stop || failing) return;
  failing = true;
  failing_since = std::chrono::steady_clock::now();
  spdlog::warn("audit: replication to {} is failing: {}; events keep committing to {} and wait there "
               "({} row(s) behind), retrying every {} s at most; this is logged once until it recovers",
               target, why, options.db_path, stats.backlog_rows,
               std::chrono::duration_cast<std::chrono::seconds>(options.retry_max).count());
}

}  // namespace egress::audit
