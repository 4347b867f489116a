// `egress audit stats`: aggregate sections over the `requests` view for a
// filter, computed per file with GROUP BY and merged across files (counts
// and bytes add up), then cut to the top N of each section.
#include <algorithm>
#include <map>

#include "audit/log_impl.h"

namespace egress::audit {
namespace {

struct Section {
  const char* title;
  const char* select;  // "SELECT keys…, sums… FROM requests WHERE "
  const char* extra;   // more conditions (constants only), after the filter's
  const char* group;   // " GROUP BY …"
  std::size_t keys;    // leading key columns; the rest are summed
  std::vector<std::size_t> rank;  // summed columns whose total orders the rows
  bool top;            // cut to the top N
};

// Where a client connects from matters, not its ephemeral port:
// "10.0.0.5:40000" and "[::1]:5000" group as "10.0.0.5" and "[::1]".
const std::vector<Section>& sections() {
  static const std::vector<Section> all = {
      {"requests by decision",
       "SELECT coalesce(decision, '-') AS decision, count(*) AS requests FROM requests WHERE ", "",
       " GROUP BY 1", 1, {1}, false},
      {"top hosts allowed",
       "SELECT coalesce(host, '-') AS host, count(*) AS requests FROM requests WHERE ",
       " AND decision IN ('allow', 'report')", " GROUP BY 1", 1, {1}, true},
      {"top hosts denied",
       "SELECT coalesce(host, '-') AS host, count(*) AS requests FROM requests WHERE ",
       " AND decision = 'deny'", " GROUP BY 1", 1, {1}, true},
      {"denials by role and reason",
       "SELECT coalesce(role, '-') AS role, coalesce(reason, '-') AS reason, count(*) AS requests "
       "FROM requests WHERE ",
       " AND decision = 'deny'", " GROUP BY 1, 2", 2, {2}, true},
      {"bytes by role and host",
       "SELECT coalesce(role, '-') AS role, coalesce(host, '-') AS host, count(*) AS requests, "
       "coalesce(sum(bytes_up), 0) AS bytes_up, coalesce(sum(bytes_down), 0) AS bytes_down "
       "FROM requests WHERE ",
       "", " GROUP BY 1, 2", 2, {3, 4}, true},
      {"busiest clients",
       "SELECT coalesce(rtrim(rtrim(client_addr, '0123456789'), ':'), '-') AS client, "
       "count(*) AS requests, coalesce(sum(decision = 'deny'), 0) AS denied FROM requests WHERE ",
       "", " GROUP BY 1", 1, {1}, true},
  };
  return all;
}

std::int64_t as_int(const Value& v) {
  const auto* i = std::get_if<std::int64_t>(&v);
  return i ? *i : 0;
}

}  // namespace

std::vector<std::pair<std::string, Rows>> LogSet::stats(const Filter& filter, std::size_t top) const {
  std::vector<std::pair<std::string, Rows>> out;
  for (const Section& section : sections()) {
    Sql sql;
    sql.text = std::string(section.select) + where_clause(filter, sql.params) + section.extra +
               section.group;
    std::map<std::vector<Value>, std::vector<std::int64_t>> totals;
    std::vector<std::string> columns;
    for (std::size_t i = 0; i < impl_->dbs.size(); ++i) {
      for (auto& row : run_sql(impl_->dbs[i].get(), sql, paths_[i], &columns)) {
        std::vector<Value> key(row.begin(), row.begin() + static_cast<std::ptrdiff_t>(section.keys));
        auto& sums = totals[key];
        sums.resize(row.size() - section.keys);
        for (std::size_t c = section.keys; c < row.size(); ++c) sums[c - section.keys] += as_int(row[c]);
      }
    }
    std::vector<std::vector<Value>> rows;
    for (auto& [key, sums] : totals) {
      std::vector<Value> row = key;
      for (const auto s : sums) row.emplace_back(s);
      rows.push_back(std::move(row));
    }
    auto rank = [&](const std::vector<Value>& row) {
      std::int64_t total = 0;
      for (const auto c : section.rank) total += as_int(row[c]);
      return total;
    };
    // Biggest first; ties in key order, so the output is deterministic.
    std::stable_sort(rows.begin(), rows.end(),
                     [&](const auto& a, const auto& b) { return rank(a) > rank(b); });
    if (section.top && top != 0 && rows.size() > top) rows.resize(top);
    Rows table;
    table.columns = std::move(columns);
    table.rows = std::move(rows);
    out.emplace_back(section.title, std::move(table));
  }
  return out;
}

}  // namespace egress::audit
