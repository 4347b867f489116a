// The console's summary queries over the `requests` view (log.h): a
// timeline of requests and refusals per role, and the refused destinations
// with their reasons. Like stats.cpp, each runs per file with GROUP BY and
// the groups are merged across files by adding their counts.
#include <algorithm>
#include <map>

#include "audit/log_impl.h"

namespace egress::audit {
namespace {

std::int64_t as_int(const Value& v) {
  const auto* i = std::get_if<std::int64_t>(&v);
  return i ? *i : 0;
}

std::string as_text(const Value& v) {
  const auto* s = std::get_if<std::string>(&v);
  return s ? *s : std::string();
}

}  // namespace

Rows LogSet::timeline(const Filter& filter, std::size_t bucket_chars) const {
  Sql sql;
  sql.text = "SELECT substr(ts, 1, " + std::to_string(std::clamp<std::size_t>(bucket_chars, 4, 27)) +
             ") AS bucket, coalesce(role, '') AS role, count(*) AS requests, "
             "coalesce(sum(decision = 'deny'), 0) AS refused FROM requests WHERE " +
             where_clause(filter, sql.params) + " GROUP BY 1, 2";
  std::map<std::pair<std::string, std::string>, std::pair<std::int64_t, std::int64_t>> totals;
  Rows out;
  for (std::size_t i = 0; i < impl_->dbs.size(); ++i) {
    for (const auto& row : run_sql(impl_->dbs[i].get(), sql, paths_[i], &out.columns)) {
      auto& t = totals[{as_text(row[0]), as_text(row[1])}];
      t.first += as_int(row[2]);
      t.second += as_int(row[3]);
    }
  }
  for (const auto& [key, t] : totals) out.rows.push_back({key.first, key.second, t.first, t.second});
  return out;
}

Rows LogSet::refused(const Filter& filter, std::size_t top) const {
  Sql sql;
  sql.text =
      "SELECT coalesce(role, '') AS role, coalesce(host, '') AS host, port, coalesce(kind, '') AS kind, "
      "coalesce(reason, '') AS reason, count(*) AS requests, max(ts) AS last_ts FROM requests WHERE " +
      where_clause(filter, sql.params) + " AND decision = 'deny' GROUP BY 1, 2, 3, 4, 5";
  std::map<std::vector<Value>, std::pair<std::int64_t, std::string>> totals;
  Rows out;
  for (std::size_t i = 0; i < impl_->dbs.size(); ++i) {
    for (const auto& row : run_sql(impl_->dbs[i].get(), sql, paths_[i], &out.columns)) {
      auto& t = totals[std::vector<Value>(row.begin(), row.begin() + 5)];
      t.first += as_int(row[5]);
      t.second = std::max(t.second, as_text(row[6]));
    }
  }
  for (const auto& [key, t] : totals) {
    auto row = key;
    row.emplace_back(t.first);
    row.emplace_back(t.second);
    out.rows.push_back(std::move(row));
  }
  // Most refused first; ties in key order, so the page is stable.
  std::stable_sort(out.rows.begin(), out.rows.end(),
                   [](const auto& a, const auto& b) { return as_int(a[5]) > as_int(b[5]); });
  if (top != 0 && out.rows.size() > top) out.rows.resize(top);
  return out;
}

}  // namespace egress::audit
