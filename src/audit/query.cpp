// Filters to SQL, and LogSet: queries over several read-only databases
// merged into one time-ordered log (see log.h).
//
// SQL SAFETY: the statement text is assembled only from constants in this
// file; every value from the command line is a bound parameter. The tests
// check that a hostile value appears among the parameters and never in the
// text.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <deque>
#include <numeric>
#include <stdexcept>

#include "audit/log_impl.h"
#include "egress/audit/store.h"

namespace egress::audit {
namespace {

constexpr const char* kRequestColumns =
    "request_id, ts, closed_ts, mode, role, client_addr, kind, method, scheme, host, port, path, "
    "sni, alpn, decision, rule, reason, upstream_addr, status, bytes_up, bytes_down, duration_ms, "
    "error, injected, scrubbed, decision_id, close_id";
constexpr const char* kEventColumns =
    "id, ts, request_id, event, mode, role, client_addr, kind, method, scheme, host, port, path, "
    "sni, alpn, decision, rule, reason, upstream_addr, status, bytes_up, bytes_down, duration_ms, "
    "error, injected, scrubbed, prev_hash, hash";

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = std::min(text.find(',', start), text.size());
    if (comma > start) out.push_back(text.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

// A GLOB pattern matching `text` literally: *, ? and [ become classes.
std::string glob_literal(const std::string& text) {
  std::string out;
  for (const char c : text) {
    if (c == '*' || c == '?' || c == '[') {
      out += '[';
      out += c;
      out += ']';
    } else {
      out += c;
    }
  }
  return out;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

[[noreturn]] void bad(const std::string& flag, const std::string& value, const std::string& fix) {
  throw std::invalid_argument(flag + " '" + value + "': " + fix);
}

// "column IN (?, ?, …)" for a comma list, each value checked by `valid`.
template <typename Valid>
std::string in_list(const char* column, const std::string& flag, const std::string& text,
                    std::vector<Value>& params, Valid valid, const std::string& fix) {
  const auto items = split_list(text);
  if (items.empty()) bad(flag, text, fix);
  std::string sql = std::string(column) + " IN (";
  for (std::size_t i = 0; i < items.size(); ++i) {
    Value v = items[i];
    if (!valid(items[i], v)) bad(flag, items[i], fix);
    params.push_back(std::move(v));
    sql += i ? ", ?" : "?";
  }
  return sql + ")";
}

bool one_of(const std::string& s, std::initializer_list<const char*> allowed) {
  return std::any_of(allowed.begin(), allowed.end(), [&](const char* a) { return s == a; });
}

}  // namespace

std::string where_clause(const Filter& f, std::vector<Value>& params) {
  std::vector<std::string> conds;
  auto text = [&](std::string_view cond, Value v) {
    conds.emplace_back(cond);
    params.push_back(std::move(v));
  };
  if (!f.since.empty()) text("ts >= ?", f.since);
  if (!f.until.empty()) text("ts < ?", f.until);
  if (!f.role.empty()) {
    conds.push_back(in_list("role", "--role", f.role, params,
                            [](const std::string&, Value&) { return true; },
                            "name a role, or several separated by commas"));
  }
  if (!f.client.empty()) {
    // "ip" matches every port of that address; "ip:port" exactly.
    conds.emplace_back("(client_addr = ? OR client_addr GLOB ?)");
    params.emplace_back(f.client);
    params.emplace_back(glob_literal(f.client) + ":*");
  }
  if (!f.host.empty()) {
    const std::string host = lower(f.host);
    if (host.find_first_of("*?") != std::string::npos) {
      text("host GLOB ?", host);
    } else if (host.size() > 1 && host[0] == '.') {
      conds.emplace_back("(host = ? OR host GLOB ?)");
      params.emplace_back(host.substr(1));
      params.emplace_back("*" + glob_literal(host));
    } else if (host == ".") {
      bad("--host", f.host, "name a host (github.com), a domain (.github.com) or a glob");
    } else {
      text("host = ?", host);
    }
  }
  if (!f.decision.empty()) {
    conds.push_back(in_list("decision", "--decision", f.decision, params,
                            [](const std::string& s, Value&) { return one_of(s, {"allow", "deny", "report"}); },
                            "use allow, deny or report (comma-separated for several)"));
  }
  if (!f.kind.empty()) {
    conds.push_back(in_list("kind", "--kind", f.kind, params,
                            [](const std::string& s, Value&) { return one_of(s, {"http", "connect", "inspected"}); },
                            "use http, connect or inspected (comma-separated for several)"));
  }
  if (!f.reason.empty()) {
    conds.push_back(in_list("reason", "--reason", f.reason, params,
                            [](const std::string&, Value&) { return true; },
                            "name a reason code such as not-allowed"));
  }
  if (!f.status.empty()) {
    conds.push_back(in_list("status", "--status", f.status, params,
                            [](const std::string& s, Value& v) {
                              int code = 0;
                              const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), code);
                              if (ec != std::errc{} || end != s.data() + s.size() || code < 100 || code > 999) {
                                return false;
                              }
                              v = static_cast<std::int64_t>(code);
                              return true;
                            },
                            "use an HTTP status code such as 403 (comma-separated for several)"));
  }
  if (!f.request_id.empty()) text("request_id = ?", f.request_id);
  if (conds.empty()) return "1";
  std::string out;
  for (const auto& c : conds) out += (out.empty() ? "" : " AND ") + c;
  return out;
}

Sql build_select(const Filter& filter, Source source) {
  Sql sql;
  const bool requests = source == Source::Requests;
  sql.text = std::string("SELECT ") + (requests ? kRequestColumns : kEventColumns) +
             (requests ? " FROM requests WHERE " : " FROM events WHERE ") +
             where_clause(filter, sql.params) +
             (requests ? " ORDER BY ts, decision_id" : " ORDER BY ts, id");
  if (filter.limit != 0) {
    sql.text += " LIMIT ?";
    sql.params.emplace_back(static_cast<std::int64_t>(filter.limit));
  }
  return sql;
}

std::vector<std::vector<Value>> run_sql(sqlite3* db, const Sql& sql, const std::string& path,
                                        std::vector<std::string>* columns) {
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db, sql.text.c_str(), -1, &raw, nullptr) != SQLITE_OK) {
    throw AuditError(path + ": cannot query the audit database: " + sqlite3_errmsg(db));
  }
  StmtPtr stmt(raw);
  for (std::size_t i = 0; i < sql.params.size(); ++i) {
    bind_value(raw, static_cast<int>(i) + 1, sql.params[i]);
  }
  const int n = sqlite3_column_count(raw);
  if (columns) {
    columns->clear();
    for (int i = 0; i < n; ++i) columns->emplace_back(sqlite3_column_name(raw, i));
  }
  std::vector<std::vector<Value>> rows;
  int rc = 0;
  while ((rc = sqlite3_step(raw)) == SQLITE_ROW) {
    std::vector<Value> row;
    row.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) row.push_back(column_value(raw, i));
    rows.push_back(std::move(row));
  }
  if (rc != SQLITE_DONE) {
    throw AuditError(path + ": reading the audit database failed: " + sqlite3_errmsg(db));
  }
  return rows;
}

namespace {

// Merges per-file results, each already in time order, into one: by ts,
// then file, then id; keeps at most `limit` rows (0 = all).
Rows merge(std::vector<std::vector<std::vector<Value>>>&& per_db, std::vector<std::string> columns,
           std::size_t ts_col, std::size_t id_col, std::size_t limit) {
  Rows out;
  out.columns = std::move(columns);
  std::vector<std::pair<std::size_t, std::size_t>> order;  // (db, row)
  for (std::size_t d = 0; d < per_db.size(); ++d) {
    for (std::size_t r = 0; r < per_db[d].size(); ++r) order.emplace_back(d, r);
  }
  auto key = [&](const std::pair<std::size_t, std::size_t>& p) -> const std::vector<Value>& {
    return per_db[p.first][p.second];
  };
  std::stable_sort(order.begin(), order.end(), [&](const auto& a, const auto& b) {
    const auto& ra = key(a);
    const auto& rb = key(b);
    if (ra[ts_col] != rb[ts_col]) return ra[ts_col] < rb[ts_col];
    if (a.first != b.first) return a.first < b.first;
    return ra[id_col] < rb[id_col];
  });
  if (limit != 0 && order.size() > limit) order.resize(limit);
  for (const auto& p : order) {
    out.rows.push_back(std::move(per_db[p.first][p.second]));
    out.db.push_back(p.first);
  }
  return out;
}

}  // namespace

LogSet::LogSet(const std::vector<std::string>& paths) : paths_(paths), impl_(std::make_unique<Impl>()) {
  if (paths_.empty()) throw AuditError("no audit database given; pass --db FILE");
  for (const auto& path : paths_) {
    impl_->dbs.push_back(open_readonly(path));
    impl_->versions.push_back(schema_version(impl_->dbs.back().get(), path));
  }
}

LogSet::~LogSet() = default;
LogSet::LogSet(LogSet&&) noexcept = default;

void LogSet::scan(const Filter& filter, Source source, const RowSink& sink,
                  std::size_t chunk_rows) const {
  // A k-way merge over per-file keyset pages: each file is read in pages of
  // kPage rows ordered by (ts, id), starting after the last key it gave, so
  // memory stays bounded however large the range (export of months).
  constexpr std::int64_t kPage = 5000;
  const bool requests = source == Source::Requests;
  const std::size_t ts_col = 1, id_col = requests ? 25 : 0;  // decision_id's place in kRequestColumns
  const char* id_name = requests ? "decision_id" : "id";
  struct Reader {
    std::deque<std::vector<Value>> buffer;
    bool done = false;
    Value last_ts, last_id;
  };
  std::vector<Reader> readers(impl_->dbs.size());
  std::vector<std::string> columns;
  auto refill = [&](std::size_t i) {
    Reader& r = readers[i];
    Filter page_filter = filter;
    page_filter.limit = 0;
    Sql sql;
    sql.text = "SELECT " + select_list(requests ? kRequestColumns : kEventColumns, impl_->versions[i]) +
               (requests ? " FROM requests WHERE " : " FROM events WHERE ") + where_clause(page_filter, sql.params);
    if (!std::holds_alternative<std::monostate>(r.last_ts)) {
      sql.text += std::string(" AND (ts > ? OR (ts = ? AND ") + id_name + " > ?))";
      sql.params.push_back(r.last_ts);
      sql.params.push_back(r.last_ts);
      sql.params.push_back(r.last_id);
    }
    sql.text += std::string(" ORDER BY ts, ") + id_name + " LIMIT ?";
    sql.params.emplace_back(kPage);
    auto rows = run_sql(impl_->dbs[i].get(), sql, paths_[i], &columns);
    r.done = static_cast<std::int64_t>(rows.size()) < kPage;
    if (!rows.empty()) {
      r.last_ts = rows.back()[ts_col];
      r.last_id = rows.back()[id_col];
    }
    for (auto& row : rows) r.buffer.push_back(std::move(row));
  };
  for (std::size_t i = 0; i < readers.size(); ++i) refill(i);

  Rows chunk;
  chunk.columns = columns;
  std::size_t emitted = 0;
  for (;;) {
    std::size_t best = readers.size();
    for (std::size_t i = 0; i < readers.size(); ++i) {
      if (readers[i].buffer.empty() && !readers[i].done) refill(i);
      if (readers[i].buffer.empty()) continue;
      if (best == readers.size()) {
        best = i;
        continue;
      }
      const auto& a = readers[i].buffer.front();
      const auto& b = readers[best].buffer.front();
      if (a[ts_col] < b[ts_col]) best = i;  // ties keep the earlier file
    }
    if (best == readers.size() || (filter.limit != 0 && emitted == filter.limit)) break;
    chunk.rows.push_back(std::move(readers[best].buffer.front()));
    chunk.db.push_back(best);
    readers[best].buffer.pop_front();
    ++emitted;
    if (chunk.rows.size() >= chunk_rows) {
      sink(chunk);
      chunk.rows.clear();
      chunk.db.clear();
    }
  }
  if (!chunk.rows.empty() || emitted == 0) sink(chunk);
}

Rows LogSet::select(const Filter& filter, Source source) const {
  Rows all;
  scan(filter, source, [&](const Rows& chunk) {
    all.columns = chunk.columns;
    all.rows.insert(all.rows.end(), chunk.rows.begin(), chunk.rows.end());
    all.db.insert(all.db.end(), chunk.db.begin(), chunk.db.end());
  });
  return all;
}

namespace {

/// Runs `body` in one read transaction, so every SELECT in it sees the same
/// snapshot of a database that serve keeps writing.
template <class Body>
void in_read_transaction(sqlite3* db, const std::string& path, Body&& body) {
  exec(db, "BEGIN", path, "cannot start a read transaction");
  try {
    body();
  } catch (...) {
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
  exec(db, "COMMIT", path, "cannot end a read transaction");
}

/// The newest event id of `db` (0 when it has none), in the caller's
/// transaction.
std::int64_t newest_id(sqlite3* db, const std::string& path) {
  const auto head = run_sql(db, {"SELECT coalesce(max(id), 0) FROM events", {}}, path);
  return std::get<std::int64_t>(head.at(0).at(0));
}

/// "SELECT <the event columns of this schema version> FROM events WHERE
/// <filter>"; the caller appends its own bounds, order and limit.
Sql select_events(const Filter& filter, std::int64_t version) {
  Sql sql;
  sql.text = "SELECT " + select_list(kEventColumns, version) + " FROM events WHERE " + where_clause(filter, sql.params);
  return sql;
}

}  // namespace

Rows LogSet::newest(const Filter& filter, std::size_t n, std::vector<std::int64_t>& cursor) const {
  cursor.assign(impl_->dbs.size(), 0);
  std::vector<std::vector<std::vector<Value>>> per_db;
  std::vector<std::string> columns;
  for (std::size_t i = 0; i < impl_->dbs.size(); ++i) {
    sqlite3* db = impl_->dbs[i].get();
    // The cursor is the newest id at this moment, read in the same
    // transaction as the rows so follow() neither repeats nor skips one.
    in_read_transaction(db, paths_[i], [&] {
      cursor[i] = newest_id(db, paths_[i]);
      Sql sql = select_events(filter, impl_->versions[i]);
      sql.text = "SELECT * FROM (" + sql.text + " AND id <= ? ORDER BY id DESC LIMIT ?) ORDER BY id";
      sql.params.emplace_back(cursor[i]);
      sql.params.emplace_back(static_cast<std::int64_t>(n));
      per_db.push_back(run_sql(db, sql, paths_[i], &columns));
    });
  }
  Rows all = merge(std::move(per_db), std::move(columns), 1, 0, 0);
  if (all.rows.size() > n) {  // the newest n over all files
    const auto drop = static_cast<std::ptrdiff_t>(all.rows.size() - n);
    all.rows.erase(all.rows.begin(), all.rows.begin() + drop);
    all.db.erase(all.db.begin(), all.db.begin() + drop);
  }
  return all;
}

Rows LogSet::follow(const Filter& filter, std::vector<std::int64_t>& cursor) const {
  constexpr std::int64_t kMaxRowsPerPoll = 10000;
  std::vector<std::vector<std::vector<Value>>> per_db;
  std::vector<std::string> columns;
  for (std::size_t i = 0; i < impl_->dbs.size(); ++i) {
    sqlite3* db = impl_->dbs[i].get();
    // Rows up to the head seen in this read transaction; the cursor moves
    // to that head even past rows the filter drops, so they are not scanned
    // again on the next poll.
    in_read_transaction(db, paths_[i], [&] {
      const std::int64_t head = newest_id(db, paths_[i]);
      Sql sql = select_events(filter, impl_->versions[i]);
      sql.text += " AND id > ? AND id <= ? ORDER BY id LIMIT ?";
      sql.params.emplace_back(cursor[i]);
      sql.params.emplace_back(head);
      sql.params.emplace_back(kMaxRowsPerPoll);
      auto rows = run_sql(db, sql, paths_[i], &columns);
      cursor[i] = static_cast<std::int64_t>(rows.size()) == kMaxRowsPerPoll
                      ? std::get<std::int64_t>(rows.back()[0])
                      : head;
      per_db.push_back(std::move(rows));
    });
  }
  return merge(std::move(per_db), std::move(columns), 1, 0, 0);
}

}  // namespace egress::audit
