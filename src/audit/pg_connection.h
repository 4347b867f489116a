// A PostgreSQL connection for the central audit store (libpq): RAII handles,
// one call that runs a parameterised statement, and the migration runner for
// schema/postgresql/*.sql. Used by the shipper (replicator.cpp) and by
// `egress audit ... --db postgresql://...` (central.cpp).
//
// Every value reaches SQL as a parameter in text format; NULL is nullopt.
// Errors (AuditError) carry the DSN without its password (redact_dsn), never
// the DSN itself.
#pragma once

#include <libpq-fe.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "audit/migrations.h"

namespace egress::audit {

/// The central store's migrations, compiled in from schema/postgresql/.
const std::vector<Migration>& pg_migrations();

struct PgResultFree {
  void operator()(PGresult* r) const { PQclear(r); }
};
using PgResultPtr = std::unique_ptr<PGresult, PgResultFree>;

using PgParam = std::optional<std::string>;  // nullopt is NULL

class PgConnection {
 public:
  /// Connects to `dsn` (a postgresql:// URI or key=value string). The
  /// password comes from `password_file` when given (its first line),
  /// otherwise from libpq's usual places (PGPASSFILE, ~/.pgpass).
  /// Throws AuditError naming the redacted DSN and libpq's message.
  PgConnection(const std::string& dsn, const std::string& password_file,
               std::chrono::seconds connect_timeout = std::chrono::seconds(5));
  ~PgConnection();
  PgConnection(const PgConnection&) = delete;
  PgConnection& operator=(const PgConnection&) = delete;

  /// Runs `sql` with `params` ($1, $2, ...); the rows when it returns any.
  /// Throws AuditError with `what` and the server's message.
  PgResultPtr exec(std::string_view sql, const std::vector<PgParam>& params, std::string_view what);

  /// Runs the COPY ... FROM STDIN statement `sql` with `data` in COPY's
  /// text format, inside the caller's transaction. False when a row's key
  /// is there already (unique_violation; the transaction is then aborted);
  /// any other failure throws AuditError with `what` and the server's message.
  bool copy_in(std::string_view sql, std::string_view data, std::string_view what);

  /// Applies the migrations the database lacks, under an advisory lock so
  /// replicas starting together do not race. Refuses a newer schema.
  void migrate();

  /// Asks the server to cancel the statement running now, from a detached
  /// thread of its own (a stopped server may never answer the request), so
  /// this returns at once. Any thread.
  void cancel_async();

  const std::string& target() const { return target_; }

 private:
  /// Throws AuditError with `what` and the result's (else the connection's) message.
  [[noreturn]] void fail(const PGresult* result, std::string_view what) const;

  PGconn* conn_ = nullptr;
  std::string target_;  // redacted DSN, for messages
};

/// The text of a result cell; nullopt for NULL.
PgParam pg_value(const PGresult* result, int row, int column);

}  // namespace egress::audit
