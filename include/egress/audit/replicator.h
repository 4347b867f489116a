// Shipping the local audit log to a central PostgreSQL store
// (docs/audit-fleet.md). serve's audit.replicate_to starts a Replicator: one
// thread that reads committed rows from the local SQLite file in id order
// and inserts them in batches into the central `events` table
// (schema/postgresql/), keyed by (replica, id), with each row's chain hash.
//
// The local commit stays the one that gates a worker's connection
// (invariant 2): the shipper only reads what the writer has committed, on
// its own connections and thread, so a slow or absent PostgreSQL never
// delays a request. While PostgreSQL is away the rows wait in the local
// file (prune keeps them, schema/004_replication.sql) and ship when it is
// back.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

namespace egress::audit {

/// `dsn` with any password replaced by "***" (URI userinfo and
/// password=... keywords), for logs and error messages.
std::string redact_dsn(std::string_view dsn);

/// True when `dsn` carries a password (userinfo or a password keyword);
/// serve and `egress audit` refuse such a DSN: use a password file.
bool dsn_has_password(std::string_view dsn);

/// True for "postgresql://..." and "postgres://..." (a central store),
/// false for a file path.
bool is_central_dsn(std::string_view text);

/// The default replica name: the host name (in Kubernetes the pod's name).
std::string default_replica_name();

struct ReplicationOptions {
  std::string db_path;        // the local SQLite file serve writes
  std::string dsn;            // postgresql://... without a password
  std::string password_file;  // "" = libpq's PGPASSFILE / ~/.pgpass
  std::string replica;        // the rows' replica name centrally
  std::size_t batch_rows = 1000;                     // rows per central transaction
  std::chrono::milliseconds poll{200};               // idle wait for new local rows
  std::chrono::milliseconds retry_max{5000};         // back-off ceiling while PostgreSQL is away
};

struct ReplicationStats {
  bool connected = false;        // the last attempt reached PostgreSQL
  std::int64_t local_head = 0;   // newest local id seen
  std::int64_t shipped_id = 0;   // every row up to this id is central
  std::int64_t backlog_rows = 0; // committed locally, not yet central
  double lag_seconds = 0;        // age of the oldest unshipped row (0 when none)
  std::uint64_t shipped_rows = 0;  // rows inserted by this process
  std::uint64_t failures = 0;      // failed connects or batches
};

class Replicator {
 public:
  /// Starts the shipper thread; it connects (and migrates the central
  /// schema) in the background. Throws AuditError if the local file cannot
  /// be opened.
  explicit Replicator(ReplicationOptions options);
  ~Replicator();  // stops between batches (cancelling a hung statement) and joins
  Replicator(const Replicator&) = delete;
  Replicator& operator=(const Replicator&) = delete;

  ReplicationStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace egress::audit
