// libpq connection, statements and migrations (see pg_connection.h).
#include "audit/pg_connection.h"

#include <fstream>
#include <thread>

#include "egress/audit/replicator.h"
#include "egress/audit/store.h"

namespace egress::audit {
namespace {

// One trailing newline (and \r) is not part of a password file's secret.
std::string read_password(const std::string& path, const std::string& target) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) {
    throw AuditError(target + ": cannot read the password file " + path +
                     "; it must hold the password on its first line");
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

std::string message(PGconn* conn) {
  std::string m = conn ? PQerrorMessage(conn) : "out of memory";
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  return m;
}

}  // namespace

PgConnection::PgConnection(const std::string& dsn, const std::string& password_file,
                           std::chrono::seconds connect_timeout)
    : target_(redact_dsn(dsn)) {
  const std::string password = password_file.empty() ? "" : read_password(password_file, target_);
  const std::string timeout = std::to_string(connect_timeout.count());
  std::vector<const char*> keys = {"dbname", "connect_timeout", "application_name"};
  std::vector<const char*> values = {dsn.c_str(), timeout.c_str(), "egress"};
  if (!password_file.empty()) {
    keys.push_back("password");
    values.push_back(password.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  conn_ = PQconnectdbParams(keys.data(), values.data(), /*expand_dbname=*/1);
  if (!conn_ || PQstatus(conn_) != CONNECTION_OK) {
    const std::string why = message(conn_);
    PQfinish(conn_);
    conn_ = nullptr;
    throw AuditError(target_ + ": cannot connect to PostgreSQL: " + why);
  }
}

PgConnection::~PgConnection() { PQfinish(conn_); }

void PgConnection::cancel_async() {
  // The PGcancel is a copy of what the request needs, owned by the thread,
  // so the connection may go away while the request is still out.
  PGcancel* request = PQgetCancel(conn_);
  if (!request) return;
  std::thread([request] {
    char buf[256];
    PQcancel(request, buf, sizeof buf);
    PQfreeCancel(request);
  }).detach();
}

// unique_violation: https://www.postgresql.org/docs/15/errcodes-appendix.html
constexpr std::string_view kUniqueViolation = "23505";

void PgConnection::fail(const PGresult* result, std::string_view what) const {
  std::string why = result ? PQresultErrorMessage(result) : "";
  if (why.empty()) why = message(conn_);
  while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
  throw AuditError(target_ + ": " + std::string(what) + ": " + why);
}

bool PgConnection::copy_in(std::string_view sql, std::string_view data, std::string_view what) {
  const std::string text(sql);
  PgResultPtr started(PQexec(conn_, text.c_str()));
  if (!started || PQresultStatus(started.get()) != PGRES_COPY_IN) fail(started.get(), what);
  // A blocking connection: put waits until libpq has buffered or sent it all.
  if (PQputCopyData(conn_, data.data(), static_cast<int>(data.size())) != 1 || PQputCopyEnd(conn_, nullptr) != 1) {
    fail(nullptr, what);
  }
  // The COPY's own result, then nullptr: reading to the end keeps the
  // connection usable for the next statement.
  bool duplicate = false;
  PgResultPtr error;
  for (PgResultPtr r(PQgetResult(conn_)); r; r.reset(PQgetResult(conn_))) {
    if (PQresultStatus(r.get()) == PGRES_COMMAND_OK) continue;
    const char* state = PQresultErrorField(r.get(), PG_DIAG_SQLSTATE);
    if (state && state == kUniqueViolation) {
      duplicate = true;
    } else if (!error) {
      error = std::move(r);
    }
  }
  if (error) fail(error.get(), what);
  return !duplicate;
}

PgResultPtr PgConnection::exec(std::string_view sql, const std::vector<PgParam>& params, std::string_view what) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
  const std::string text(sql);
  // Without parameters the simple protocol, which also runs a migration's
  // several statements; with them the extended one (one statement).
  PgResultPtr result(params.empty() ? PQexec(conn_, text.c_str())
                                    : PQexecParams(conn_, text.c_str(), static_cast<int>(values.size()), nullptr,
                                                   values.data(), nullptr, nullptr, 0));
  const auto status = result ? PQresultStatus(result.get()) : PGRES_FATAL_ERROR;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) fail(result.get(), what);
  return result;
}

void PgConnection::migrate() {
  // Up to date already (every start but the first): nothing to lock or
  // create, so a shipper role needs only SELECT and INSERT.
  auto current = exec("SELECT to_regclass('egress_schema') IS NOT NULL", {}, "migrate: check schema");
  if (pg_value(current.get(), 0, 0).value_or("f") == "t") {
    auto r = exec("SELECT coalesce(max(version), 0) FROM egress_schema", {}, "migrate: read version");
    if (std::stoll(pg_value(r.get(), 0, 0).value_or("0")) == static_cast<long long>(pg_migrations().size())) return;
  }
  // One transaction: the lock, the check and every missing migration, so a
  // half-applied schema is never visible and two replicas never both apply.
  exec("BEGIN", {}, "migrate: begin");
  try {
    exec("SELECT pg_advisory_xact_lock(4542525301)", {}, "migrate: lock");
    exec("CREATE TABLE IF NOT EXISTS egress_schema (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
         "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
         {}, "migrate: create egress_schema");
    auto r = exec("SELECT coalesce(max(version), 0) FROM egress_schema", {}, "migrate: read version");
    const auto version = std::stoll(pg_value(r.get(), 0, 0).value_or("0"));
    const auto& all = pg_migrations();
    if (version > static_cast<long long>(all.size())) {
      throw AuditError(target_ + ": the central audit store has schema v" + std::to_string(version) +
                       ", from a newer egress; this binary knows up to v" + std::to_string(all.size()) +
                       "; upgrade egress");
    }
    for (auto i = static_cast<std::size_t>(version); i < all.size(); ++i) {
      exec(all[i].sql, {}, "migration " + std::string(all[i].name));
      exec("INSERT INTO egress_schema (version, name) VALUES ($1, $2)",
           {std::to_string(i + 1), std::string(all[i].name)}, "migrate: record version");
    }
    exec("COMMIT", {}, "migrate: commit");
  } catch (...) {
    PgResultPtr(PQexec(conn_, "ROLLBACK"));
    throw;
  }
}

PgParam pg_value(const PGresult* result, int row, int column) {
  if (PQgetisnull(result, row, column)) return std::nullopt;
  return std::string(PQgetvalue(result, row, column), static_cast<std::size_t>(PQgetlength(result, row, column)));
}

}  // namespace egress::audit
