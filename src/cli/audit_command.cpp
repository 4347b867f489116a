// `egress audit query|tail|stats|verify|export|prune`: flags to audit-layer
// calls and exit codes. Filtering, SQL, merging, formatting, verification
// and pruning live in src/audit/ (egress/audit/log.h, maintenance.h).
//
// Exit codes: 0 ok; 1 `verify` found a broken chain; 2 bad usage, or a --db
// that is missing, not an egress audit database, or from a newer egress.
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <memory>
#include <thread>

#include "cli/commands.h"
#include "egress/audit/central.h"
#include "egress/audit/log.h"
#include "egress/audit/maintenance.h"
#include "egress/audit/replicator.h"
#include "egress/audit/store.h"

namespace egress::cli {
namespace {

constexpr int kExitTampered = 1;  // `verify`: the chain is broken
constexpr auto kFollowPoll = std::chrono::milliseconds(200);

struct AuditFlags {
  std::vector<std::string> dbs;
  std::string replica;                  // --replica (central store only)
  std::vector<std::string> names;       // each db's name in output; replicas for a central store
  std::shared_ptr<audit::CentralMirror> central;  // when --db is postgresql://
  std::string since, until, format, output, older_than;
  audit::Filter filter;
  std::size_t lines = 20, top = 10;
  bool follow = false;
};

volatile sig_atomic_t g_stop = 0;  // set by SIGINT/SIGTERM during `tail -f`
void on_stop_signal(int) { g_stop = 1; }

void add_db_option(CLI::App* cmd, AuditFlags& f) {
  cmd->add_option("--db", f.dbs,
                  "audit database(s); several are read as one log (default egress-audit.db), or one central "
                  "store postgresql://user@host/db (password: PGPASSFILE)");
  cmd->add_option("--replica", f.replica, "with a postgresql:// --db: only this replica (default: all)");
}

/// A postgresql:// --db: its rows copied into one private SQLite file per
/// replica (egress/audit/central.h), which every subcommand then reads as
/// it reads local files, the replica's name in the "replica" column.
void open_central(AuditFlags& f, bool whole_log) {
  const auto central = std::count_if(f.dbs.begin(), f.dbs.end(), [](const auto& d) { return audit::is_central_dsn(d); });
  if (central == 0) {
    if (!f.replica.empty()) throw std::invalid_argument("--replica needs a postgresql:// --db (a central store)");
    f.names = f.dbs.size() > 1 ? f.dbs : std::vector<std::string>{};
    return;
  }
  if (f.dbs.size() != 1) {
    throw std::invalid_argument("--db postgresql://... reads one central store; give it alone (no other --db)");
  }
  if (audit::dsn_has_password(f.dbs[0])) {
    throw std::invalid_argument("--db " + audit::redact_dsn(f.dbs[0]) +
                                ": holds a password; remove it and put the password in PGPASSFILE");
  }
  // stdout carries the rows: the mirror files' migration notes are not
  // wanted there (warnings still go to stderr).
  spdlog::set_default_logger(spdlog::stderr_color_mt("egress-audit"));
  spdlog::set_level(spdlog::level::warn);
  // since pushes down safely: a request's close is never older than its
  // decision. verify always reads every row.
  f.central = std::make_shared<audit::CentralMirror>(
      audit::CentralOptions{f.dbs[0], "", f.replica, whole_log ? std::string() : f.filter.since});
  f.dbs = f.central->paths();
  f.names = f.central->replicas();
}

void add_filter_options(CLI::App* cmd, AuditFlags& f) {
  cmd->add_option("--since", f.since, "from this time: 15m, 2h, 7d (ago) or ISO-8601 (UTC unless zoned)");
  cmd->add_option("--until", f.until, "before this time (same forms as --since)");
  cmd->add_option("--role", f.filter.role, "worker role(s), comma-separated");
  cmd->add_option("--client", f.filter.client, "worker address: IP (any port) or IP:PORT");
  cmd->add_option("--host", f.filter.host, "host: exact, .domain (and subdomains) or a glob (*.github.com)");
  cmd->add_option("--decision", f.filter.decision, "allow | deny | report (comma-separated)");
  cmd->add_option("--kind", f.filter.kind, "http | connect | inspected (comma-separated)");
  cmd->add_option("--status", f.filter.status, "HTTP status(es) sent to the worker, comma-separated");
  cmd->add_option("--reason", f.filter.reason, "reason code(s), e.g. not-allowed (comma-separated)");
  cmd->add_option("--request-id", f.filter.request_id, "one request (X-Egress-Request-Id)");
}

/// Resolves times and defaults; throws std::invalid_argument on bad flags.
void finish_flags(AuditFlags& f) {
  if (f.dbs.empty()) f.dbs.emplace_back("egress-audit.db");
  const auto now = std::chrono::system_clock::now();
  auto time = [&](const std::string& flag, const std::string& text) -> std::string {
    if (text.empty()) return "";
    auto parsed = audit::parse_time(text, now);
    if (!parsed) {
      throw std::invalid_argument(flag + " '" + text +
                                  "': use an age (30s, 15m, 2h, 7d, 2w) or ISO-8601 such as "
                                  "2026-11-27T19:54:58Z");
    }
    return *parsed;
  };
  f.filter.since = time("--since", f.since);
  f.filter.until = time("--until", f.until);
}

audit::Format format_or_throw(const std::string& text, std::initializer_list<audit::Format> allowed,
                              const std::string& choices) {
  const auto format = audit::format_from_string(text);
  if (!format || std::find(allowed.begin(), allowed.end(), *format) == allowed.end()) {
    throw std::invalid_argument("--format '" + text + "': use " + choices);
  }
  return *format;
}

const std::vector<std::string>& db_names(const AuditFlags& f) { return f.names; }
const char* db_column(const AuditFlags& f) { return f.central ? "replica" : "db"; }

// Columns a terminal can show; json and csv get every column.
const std::vector<std::string> kQueryTableColumns = {
    "ts", "request_id", "role", "client_addr", "kind", "method", "host", "port", "path",
    "sni", "alpn", "decision", "reason", "status", "bytes_up", "bytes_down"};
const std::vector<std::string> kTailTableColumns = {
    "id", "ts", "event", "request_id", "role", "client_addr", "kind", "method", "host", "port",
    "decision", "reason", "status", "bytes_up", "bytes_down"};

int run_query(AuditFlags& f) {
  const auto format = format_or_throw(f.format, {audit::Format::Table, audit::Format::Json, audit::Format::Csv},
                                      "table, json or csv");
  audit::LogSet log(f.dbs);
  if (format == audit::Format::Table) {
    const auto rows = log.select(f.filter, audit::Source::Requests);
    audit::write_rows(std::cout, format, audit::project(rows, kQueryTableColumns), db_names(f), true, db_column(f));
    std::cerr << rows.rows.size() << " request(s)\n";
    return kExitOk;
  }
  bool first = true;
  log.scan(f.filter, audit::Source::Requests, [&](const audit::Rows& chunk) {
    audit::write_rows(std::cout, format, chunk, db_names(f), first, db_column(f));
    first = false;
  });
  return kExitOk;
}

int run_tail(AuditFlags& f) {
  const auto format = format_or_throw(f.format, {audit::Format::Table, audit::Format::Json, audit::Format::Csv},
                                      "table, json or csv");
  audit::LogSet log(f.dbs);
  std::vector<std::int64_t> cursor;
  auto print = [&](const audit::Rows& rows, bool header) {
    audit::write_rows(std::cout, format,
                      format == audit::Format::Table ? audit::project(rows, kTailTableColumns) : rows,
                      db_names(f), header, db_column(f));
    std::cout << std::flush;
  };
  print(log.newest(f.filter, f.lines, cursor), true);
  if (!f.follow) return kExitOk;

  // Follow until SIGINT/SIGTERM: each poll is one short read transaction,
  // so the writer is never blocked; the poll interval bounds the latency.
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  while (!g_stop) {
    if (f.central) f.central->refresh();
    const auto rows = log.follow(f.filter, cursor);
    if (!rows.rows.empty()) print(rows, false);
    std::this_thread::sleep_for(kFollowPoll);
  }
  return kExitOk;
}

int run_stats(AuditFlags& f) {
  const auto format = format_or_throw(f.format, {audit::Format::Table, audit::Format::Json}, "table or json");
  audit::LogSet log(f.dbs);
  const auto sections = log.stats(f.filter, f.top);
  if (format == audit::Format::Json) {
    // One JSON object per section row, tagged with its section.
    for (const auto& [title, rows] : sections) {
      audit::Rows tagged = rows;
      tagged.columns.insert(tagged.columns.begin(), "section");
      for (auto& row : tagged.rows) row.insert(row.begin(), audit::Value(title));
      audit::write_rows(std::cout, format, tagged, {});
    }
    return kExitOk;
  }
  std::cout << "window: " << (f.filter.since.empty() ? "start" : f.filter.since) << " .. "
            << (f.filter.until.empty() ? "now" : f.filter.until) << "\n";
  for (const auto& [title, rows] : sections) {
    std::cout << "\n== " << title << " ==\n";
    if (rows.rows.empty()) {
      std::cout << "(none)\n";
    } else {
      audit::write_rows(std::cout, format, rows, {});
    }
  }
  return kExitOk;
}

int run_verify(AuditFlags& f) {
  int code = kExitOk;
  for (std::size_t i = 0; i < f.dbs.size(); ++i) {
    const auto report = audit::verify(f.dbs[i]);
    const std::string path = f.central ? f.central->target() + " replica " + f.names[i] : f.dbs[i];
    if (report.ok) {
      std::cout << path << ": ok: " << report.rows << " row(s) verified";
      if (report.rows) std::cout << " (ids " << report.first_id << ".." << report.last_id << ")";
      if (report.anchors) {
        std::cout << "; " << report.pruned_rows << " pruned row(s) accounted for by " << report.anchors
                  << " anchor(s)";
      }
      std::cout << "\n";
    } else {
      std::cout << path << ": TAMPERED: " << report.problem << " (" << report.rows
                << " row(s) before it verified)\n";
      code = kExitTampered;
    }
  }
  return code;
}

int run_export(AuditFlags& f) {
  const auto format = format_or_throw(f.format, {audit::Format::Json, audit::Format::Csv}, "jsonl or csv");
  audit::LogSet log(f.dbs);
  std::ofstream file;
  if (!f.output.empty() && f.output != "-") {
    file.open(f.output, std::ios::out | std::ios::trunc);
    if (!file) throw std::invalid_argument("--output " + f.output + ": cannot create the file");
  }
  std::ostream& out = file.is_open() ? static_cast<std::ostream&>(file) : std::cout;
  bool first = true;
  std::size_t count = 0;
  log.scan(f.filter, audit::Source::Events, [&](const audit::Rows& chunk) {
    audit::write_rows(out, format, chunk, db_names(f), first, db_column(f));
    first = false;
    count += chunk.rows.size();
  });
  out.flush();
  if (!out) throw audit::AuditError("export: writing the output failed (disk full?)");
  std::cerr << "exported " << count << " event(s)\n";
  return kExitOk;
}

int run_prune(AuditFlags& f) {
  if (f.older_than.empty()) throw std::invalid_argument("--older-than is required, e.g. --older-than 90d");
  const auto cutoff = audit::parse_time(f.older_than, std::chrono::system_clock::now());
  if (!cutoff) throw std::invalid_argument("--older-than '" + f.older_than + "': use an age such as 90d or ISO-8601");
  if (f.central) throw std::invalid_argument("prune works on local files; the central store is pruned with SQL "
                                             "(docs/audit-fleet.md)");
  for (const auto& path : f.dbs) {
    audit::PruneOptions options;
    options.older_than = *cutoff;
    const auto r = audit::prune(path, options);
    std::cout << path << ": pruned " << r.pruned_rows << " event(s) older than " << *cutoff;
    if (r.pruned_rows) std::cout << " (ids " << r.first_id << ".." << r.last_id << "), anchored";
    std::cout << "\n";
    if (r.held_rows) {
      std::cout << path << ": kept " << r.held_rows << " older event(s) (ids above " << r.shipped_id
                << "): not yet replicated to " << r.held_for << "; they are pruned once shipped\n";
    }
  }
  return kExitOk;
}

/// A serve killed before its writer committed everything leaves events in
/// its journal that the database lacks until the next serve ingests them;
/// a security team reading the file meanwhile should know.
void warn_of_journals_left(const char* name, const std::vector<std::string>& dbs) {
  for (const auto& path : dbs) {
    const auto left = audit::journal_files_left(path);
    if (left.empty()) continue;
    std::cerr << "egress audit " << name << ": note: " << path << ": " << left.size()
              << " journal file(s) in " << audit::journal_directory(path)
              << " hold events a stopped serve had not committed yet; they are not in this output until the next "
                 "`egress serve` on this database ingests them\n";
  }
}

/// Runs one subcommand; maps errors to messages and exit codes.
int guarded(const char* name, AuditFlags& f, int (*body)(AuditFlags&)) {
  try {
    finish_flags(f);
    // stats' default window, set before a central store is copied so only
    // that window is.
    if (std::string_view(name) == "stats" && f.since.empty()) {
      f.filter.since = *audit::parse_time("24h", std::chrono::system_clock::now());
    }
    open_central(f, std::string_view(name) == "verify");
    if (!f.central) warn_of_journals_left(name, f.dbs);
    return body(f);
  } catch (const std::invalid_argument& e) {
    std::cerr << "egress audit " << name << ": " << e.what() << "\n";
    return kExitUsage;
  } catch (const audit::AuditError& e) {
    std::cerr << "egress audit " << name << ": " << e.what() << "\n";
    return kExitUsage;
  }
}

}  // namespace

void add_audit_command(CLI::App& app, int& exit_code) {
  auto* audit = app.add_subcommand("audit", "Query, follow, summarise, verify, export and prune the audit log");
  audit->require_subcommand(1);
  auto add = [&](const char* name, const char* help, int (*body)(AuditFlags&)) {
    auto flags = std::make_shared<AuditFlags>();
    auto* cmd = audit->add_subcommand(name, help);
    add_db_option(cmd, *flags);
    cmd->callback([flags, name, body, &exit_code] { exit_code = guarded(name, *flags, body); });
    return std::make_pair(cmd, flags);
  };

  auto [query, qf] = add("query", "requests matching filters, oldest first (one row per request)", run_query);
  add_filter_options(query, *qf);
  query->add_option("--limit", qf->filter.limit, "at most this many requests");
  query->add_option("--format", qf->format, "table | json | csv")->default_val("table");

  auto [tail, tf] = add("tail", "the newest events; -f follows new commits until Ctrl-C", run_tail);
  add_filter_options(tail, *tf);
  tail->add_option("-n,--lines", tf->lines, "how many of the newest events")->default_val(20);
  tail->add_flag("-f,--follow", tf->follow, "keep printing events as they are committed");
  tail->add_option("--format", tf->format, "table | json | csv")->default_val("table");

  auto [stats, sf] = add("stats", "requests by decision, top hosts, denials, bytes, busiest clients", run_stats);
  add_filter_options(stats, *sf);
  stats->add_option("--top", sf->top, "rows per section")->default_val(10);
  stats->add_option("--format", sf->format, "table | json (default window: --since 24h)")->default_val("table");

  add("verify", "walk the hash chain; exit 1 naming the first edited, deleted or reordered row", run_verify);

  auto [exp, ef] = add("export", "every event in a time range as JSON lines or CSV", run_export);
  add_filter_options(exp, *ef);
  exp->add_option("--format", ef->format, "jsonl | csv")->default_val("jsonl");
  exp->add_option("-o,--output", ef->output, "write here instead of stdout");

  auto [prune, pf] = add("prune", "remove events older than an age, recording an anchor so verify passes", run_prune);
  prune->add_option("--older-than", pf->older_than, "age (90d) or ISO-8601 time")->required();
}

}  // namespace egress::cli
