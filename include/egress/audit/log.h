// The read side of the audit log, as `egress audit` uses it: time parsing,
// filters, queries over one or several databases read as one log, stats,
// and output as an aligned table, JSON lines or CSV. Every database is
// opened read-only (a WAL reader never blocks serve's writer), and every
// user-supplied value reaches SQL as a bound parameter, never as SQL text.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace egress::audit {

/// A column value as SQLite stores it. monostate is NULL.
using Value = std::variant<std::monostate, std::int64_t, std::string>;

// ---- Time -----------------------------------------------------------------

/// "15m", "2h", "7d", "30s", "2w" → that age; nullopt if malformed.
std::optional<std::chrono::seconds> parse_age(std::string_view text);

/// A point in time for --since/--until/--older-than, as the fixed-width UTC
/// text stored in `ts` ("2026-11-27T19:54:58.000000Z"), so it compares with
/// `ts` as text. Accepts an age (parse_age: that long before `now`) or
/// ISO-8601: "2026-11-27", "2026-11-27T19:54", "…:58", "…:58.123456",
/// with "Z" or "+02:00"/"-0500" (no zone means UTC; a space may replace T).
/// nullopt if malformed or out of range.
std::optional<std::string> parse_time(std::string_view text,
                                      std::chrono::system_clock::time_point now);

// ---- Filters --------------------------------------------------------------

/// What `audit query|tail|stats|export` select. Empty fields match all.
/// List fields take comma-separated alternatives ("deny,report").
struct Filter {
  std::string since;  // ts >= since (parse_time output)
  std::string until;  // ts <  until
  std::string role;
  /// "ip:port" exactly, or "ip" for every port of that address.
  std::string client;
  /// "github.com" exactly; ".github.com" the domain and its subdomains;
  /// any pattern with * or ? is a glob ("*.github.com": subdomains only).
  std::string host;
  std::string decision;  // list: allow | deny | report
  std::string kind;      // list: http | connect | inspected
  std::string reason;    // list of reason codes
  std::string status;    // list of HTTP status codes
  std::string request_id;
  std::size_t limit = 0;  // 0 = no limit
};

/// A statement with its parameters, built from a Filter. Exposed so tests
/// can check that user input only ever appears among the parameters.
struct Sql {
  std::string text;
  std::vector<Value> params;
};

/// Which rows a query reads: `requests` (one row per request, the view)
/// or `events` (every stored row, with id and hashes).
enum class Source { Requests, Events };

/// Validates and renders the WHERE clause for `filter` over `source`.
/// Throws std::invalid_argument naming the bad flag and value.
Sql build_select(const Filter& filter, Source source);

// ---- Results --------------------------------------------------------------

/// Rows from one or more databases. `db` is the index of the database
/// (in LogSet order) each row came from.
struct Rows {
  std::vector<std::string> columns;
  std::vector<std::vector<Value>> rows;
  std::vector<std::size_t> db;
};

enum class Format { Table, Json, Csv };

/// Parses "table" | "json" | "jsonl" | "csv".
std::optional<Format> format_from_string(std::string_view text);

/// Writes `rows`: Table aligned (NULL as "-"), Json one object per line
/// (NULL as null), Csv with a header line (NULL empty, RFC 4180 quoting).
/// With `db_names` non-empty a leading `db_column` column names each row's
/// file ("replica" for a central store: each mirror file is one replica).
void write_rows(std::ostream& out, Format format, const Rows& rows,
                const std::vector<std::string>& db_names, bool header = true,
                std::string_view db_column = "db");

/// `rows` with only the named columns that it has, in the order given.
Rows project(const Rows& rows, const std::vector<std::string>& columns);

// ---- Reading --------------------------------------------------------------

/// Several audit databases (one per replica) read as one log: each query
/// runs on every file and the results are merged in (ts, file, id) order.
class LogSet {
 public:
  /// Opens every path read-only. Throws AuditError naming the first path
  /// that is missing, not an egress audit database, or from a newer egress.
  explicit LogSet(const std::vector<std::string>& paths);
  ~LogSet();
  LogSet(LogSet&&) noexcept;

  const std::vector<std::string>& paths() const { return paths_; }

  /// The requests (Source::Requests) or events matching `filter`, oldest
  /// first; `filter.limit` applies to the merged result.
  Rows select(const Filter& filter, Source source) const;

  /// Like select(), streamed: `sink` gets the merged rows in chunks of at
  /// most `chunk_rows` (at least one call, possibly with no rows), so an
  /// export of months never holds the whole range in memory.
  using RowSink = std::function<void(const Rows& chunk)>;
  void scan(const Filter& filter, Source source, const RowSink& sink,
            std::size_t chunk_rows = 1000) const;

  /// The newest `n` events matching `filter` (oldest first), and in
  /// `cursor` each file's highest id read, for follow().
  Rows newest(const Filter& filter, std::size_t n, std::vector<std::int64_t>& cursor) const;

  /// Events committed after `cursor` (per file), merged by time; advances
  /// `cursor`.
  Rows follow(const Filter& filter, std::vector<std::int64_t>& cursor) const;

  /// One titled table per stats section (see stats.cpp), `top` rows each.
  std::vector<std::pair<std::string, Rows>> stats(const Filter& filter, std::size_t top) const;

  /// Requests and refusals per (time bucket, role), summed over the files,
  /// in bucket order (summary.cpp). A bucket is the first `bucket_chars`
  /// characters of `ts`: 16 a minute, 15 ten minutes, 13 an hour, 10 a day.
  /// Columns: bucket, role, requests, refused.
  Rows timeline(const Filter& filter, std::size_t bucket_chars) const;

  /// Refused destinations: (role, host, port, kind, reason) with how often,
  /// most refused first, `top` rows at most. Columns: role, host, port,
  /// kind, reason, requests, last_ts.
  Rows refused(const Filter& filter, std::size_t top) const;

 private:
  struct Impl;
  std::vector<std::string> paths_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace egress::audit
