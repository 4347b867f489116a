// CentralMirror: central PostgreSQL rows -> private SQLite files, one per
// replica, for the shared read side (see egress/audit/central.h).
#include "egress/audit/central.h"

#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "audit/database.h"
#include "audit/log_impl.h"
#include "audit/pg_rows.h"
#include "audit/reader.h"
#include "egress/audit/replicator.h"
#include "egress/audit/store.h"

namespace egress::audit {
namespace {

constexpr int kPage = 5000;

std::string make_private_dir() {
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/egress-central-XXXXXX";
  if (!::mkdtemp(templ.data())) {
    throw AuditError(templ + ": cannot create a temporary directory for the central rows: " +
                     std::strerror(errno) + "; set TMPDIR to a writable directory");
  }
  return templ;  // mkdtemp makes it 0700
}

}  // namespace

struct CentralMirror::Impl {
  CentralOptions options;
  PgConnection pg;
  std::string dir;
  std::vector<std::string> replicas, paths;
  std::vector<DbPtr> files;           // write connections, one per replica
  std::vector<std::int64_t> copied;   // highest id copied per replica

  explicit Impl(const CentralOptions& o) : options(o), pg(o.dsn, o.password_file), dir(make_private_dir()) {}
  ~Impl() {
    files.clear();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }

  void list_replicas();
  void copy(std::size_t i);
};

void CentralMirror::Impl::list_replicas() {
  auto version = pg.exec("SELECT to_regclass('egress_schema') IS NOT NULL", {}, "checking the schema");
  if (pg_value(version.get(), 0, 0).value_or("f") != "t") {
    throw AuditError(pg.target() + ": not an egress central audit store (no egress_schema table); point "
                     "--db at the database serve's audit.replicate_to writes");
  }
  auto r = pg.exec("SELECT DISTINCT replica FROM events ORDER BY 1", {}, "listing replicas");
  std::string known;
  for (int row = 0; row < PQntuples(r.get()); ++row) {
    const std::string name = pg_value(r.get(), row, 0).value_or("");
    known += (known.empty() ? "" : ", ") + name;
    if (options.replica.empty() || options.replica == name) replicas.push_back(name);
  }
  if (replicas.empty()) {
    throw AuditError(pg.target() + (options.replica.empty() ? ": holds no events yet"
                                                            : ": no events from replica '" + options.replica +
                                                                  "'; replicas there: " +
                                                                  (known.empty() ? "(none)" : known)));
  }
}

void CentralMirror::Impl::copy(std::size_t i) {
  std::string insert = "INSERT INTO events (" + central_select_columns() + ") VALUES (?";
  for (std::size_t c = 1; c < kParamsPerRow - 1; ++c) insert += ", ?";
  insert += ")";
  const std::vector<std::string_view> names = [] {
    std::vector<std::string_view> n = {"id"};
    n.insert(n.end(), kContentColumns.begin(), kContentColumns.end());
    n.push_back("prev_hash");
    n.push_back("hash");
    return n;
  }();
  sqlite3* db = files[i].get();
  for (;;) {
    std::vector<PgParam> params = {replicas[i], std::to_string(copied[i]), std::to_string(kPage)};
    std::string sql = "SELECT " + central_select_columns() + " FROM events WHERE replica = $1 AND id > $2";
    if (!options.since.empty()) {
      sql += " AND ts >= $4";
      params.emplace_back(options.since);
    }
    auto r = pg.exec(sql + " ORDER BY id LIMIT $3", params, "reading replica " + replicas[i]);
    const int rows = PQntuples(r.get());
    exec(db, "BEGIN", paths[i], "mirror: begin");
    StmtPtr stmt = prepare(db, insert, paths[i]);
    for (int row = 0; row < rows; ++row) {
      for (std::size_t c = 0; c < names.size(); ++c) {
        bind_value(stmt.get(), static_cast<int>(c) + 1, from_pg(names[c], pg_value(r.get(), row, static_cast<int>(c))));
      }
      if (sqlite3_step(stmt.get()) != SQLITE_DONE) {
        throw AuditError(paths[i] + ": copying central rows failed: " + sqlite3_errmsg(db));
      }
      sqlite3_reset(stmt.get());
    }
    stmt.reset();
    exec(db, "COMMIT", paths[i], "mirror: commit");
    if (rows > 0) copied[i] = std::stoll(pg_value(r.get(), rows - 1, 0).value_or("0"));
    if (rows < kPage) return;
  }
}

CentralMirror::CentralMirror(const CentralOptions& options) : impl_(std::make_unique<Impl>(options)) {
  impl_->list_replicas();
  for (std::size_t i = 0; i < impl_->replicas.size(); ++i) {
    impl_->paths.push_back(impl_->dir + "/replica-" + std::to_string(i) + ".db");
    impl_->files.push_back(open_database(impl_->paths.back(), std::chrono::milliseconds(5000)));
    exec(impl_->files.back().get(), "PRAGMA synchronous = OFF", impl_->paths.back(), "mirror: pragma");
    impl_->copied.push_back(0);
    impl_->copy(i);
  }
}

CentralMirror::~CentralMirror() = default;

const std::vector<std::string>& CentralMirror::paths() const { return impl_->paths; }
const std::vector<std::string>& CentralMirror::replicas() const { return impl_->replicas; }
const std::string& CentralMirror::target() const { return impl_->pg.target(); }

void CentralMirror::refresh() {
  for (std::size_t i = 0; i < impl_->replicas.size(); ++i) impl_->copy(i);
}

}  // namespace egress::audit
