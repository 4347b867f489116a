// `egress policy lint|hash-token|diff|suggest|import`: the admins' tools.
// The logic lives in src/policy/ (lint.h, suggest.h, squid_import.h) as pure
// functions; this file reads files and audit databases (read-only), prints,
// and maps outcomes to exit codes: 0 fine, 1 for `diff` when decisions
// change, 2 for bad usage, unreadable input or a policy with errors.
#include <sqlite3.h>

#include <chrono>
#include <ctime>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>

#include "cli/commands.h"
#include "cli/guarded.h"
#include "egress/policy/policy.h"
#include "egress/proxy/evaluate.h"
#include "egress/secrets/secrets.h"
#include "policy/lint.h"
#include "policy/squid_import.h"
#include "policy/suggest.h"

namespace egress::cli {
namespace {

struct PolicyFlags {
  std::vector<std::string> files, audit_dbs, targets;
  std::string secret, old_policy, new_policy, role, since, squid_conf, secrets_dir;
};

std::optional<std::string> read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

int run_lint(const PolicyFlags& flags) {
  int errors = 0;
  std::optional<std::vector<std::string>> secret_names;
  if (!flags.secrets_dir.empty()) {
    try {
      secret_names = secrets::SecretStore::load(flags.secrets_dir).names();
    } catch (const secrets::SecretsError& e) {
      std::cout << flags.secrets_dir << ":0: error: " << e.what() << "\n";
      return kExitUsage;
    }
  }
  for (const std::string& file : flags.files) {
    auto text = read_text(file);
    if (!text) {
      std::cout << file << ":0: error: cannot read the file; check the path and its permissions\n";
      ++errors;
      continue;
    }
    int file_errors = 0, warnings = 0;
    for (const auto& finding : policy::lint_policy_text(*text, file, secret_names)) {
      std::cout << finding.to_string() << "\n";
      (finding.severity == policy::Severity::Error ? file_errors : warnings)++;
    }
    std::cerr << file << ": " << file_errors << " error(s), " << warnings << " warning(s)\n";
    errors += file_errors;
  }
  return errors ? kExitUsage : kExitOk;
}

int run_hash_token(const PolicyFlags& flags) {
  std::string secret = flags.secret;
  if (secret.empty()) {
    secret.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
  }
  if (secret.empty()) {
    std::cerr << "egress policy hash-token: the secret is empty; pass it on stdin (preferred: it stays out of "
                 "the process list) or as the argument\n";
    return kExitUsage;
  }
  std::cout << policy::hash_token(secret) << "\n";
  return kExitOk;
}

// ---- reading the audit database ----

using Db = std::unique_ptr<sqlite3, decltype(&sqlite3_close)>;

Db open_audit(const std::string& path) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
  Db handle(db, &sqlite3_close);
  if (rc != SQLITE_OK) {
    throw std::runtime_error(path + ": cannot open the audit database read-only: " +
                             (db ? sqlite3_errmsg(db) : "out of memory") + "; check the path");
  }
  sqlite3_busy_timeout(db, 5000);
  return handle;
}

/// Runs `sql` with text parameters, calling `row` for each result row.
template <typename Row>
void query(const std::string& path, const std::string& sql, const std::vector<std::string>& params, Row&& row) {
  Db db = open_audit(path);
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db.get(), sql.c_str(), -1, &raw, nullptr) != SQLITE_OK) {
    throw std::runtime_error(path + ": not an egress audit database (" + sqlite3_errmsg(db.get()) + ")");
  }
  std::unique_ptr<sqlite3_stmt, decltype(&sqlite3_finalize)> stmt(raw, &sqlite3_finalize);
  for (std::size_t i = 0; i < params.size(); ++i) {
    sqlite3_bind_text(raw, static_cast<int>(i + 1), params[i].c_str(), -1, SQLITE_TRANSIENT);
  }
  int rc;
  while ((rc = sqlite3_step(raw)) == SQLITE_ROW) row(raw);
  if (rc != SQLITE_DONE) throw std::runtime_error(path + ": reading failed: " + sqlite3_errmsg(db.get()));
}

std::string column_text(sqlite3_stmt* stmt, int column) {
  auto text = sqlite3_column_text(stmt, column);
  return text ? reinterpret_cast<const char*>(text) : "";
}

// ---- diff ----

struct DiffTarget {
  std::string label, role;
  proxy::RequestTarget request;
};

std::optional<policy::RequestKind> kind_from_string(std::string_view text) {
  for (auto kind : {policy::RequestKind::Http, policy::RequestKind::Connect, policy::RequestKind::Inspected}) {
    if (policy::to_string(kind) == text) return kind;
  }
  return std::nullopt;
}

std::vector<DiffTarget> diff_targets(const PolicyFlags& flags) {
  std::vector<DiffTarget> targets;
  for (const std::string& db : flags.audit_dbs) {
    query(db,
          "SELECT DISTINCT COALESCE(role, ''), host, port, kind FROM events WHERE event = 'decision' "
          "AND host IS NOT NULL AND port IS NOT NULL ORDER BY host, port, kind",
          {}, [&](sqlite3_stmt* row) {
            auto host = policy::normalize_host(column_text(row, 1));
            auto kind = kind_from_string(column_text(row, 3));
            int port = sqlite3_column_int(row, 2);
            if (!host.host || !kind || port < 1 || port > 65535) return;  // refused before any decision
            DiffTarget t;
            t.role = column_text(row, 0);
            t.request.kind = *kind;
            t.request.target = {*host.host, static_cast<std::uint16_t>(port)};
            t.label = host.host->host + ":" + std::to_string(port) + " (" + std::string(policy::to_string(*kind));
            targets.push_back(std::move(t));
          });
  }
  for (const std::string& text : flags.targets) {
    auto parsed = text.find("://") != std::string::npos ? proxy::parse_absolute_target(text)
                                                        : proxy::parse_connect_target(text);
    if (!parsed.request) throw std::runtime_error("target " + text + ": " + parsed.error);
    targets.push_back({text + " (" + std::string(policy::to_string(parsed.request->kind)), flags.role,
                       *parsed.request});
  }
  for (auto& t : targets) t.label += t.role.empty() ? ")" : ", role " + t.role + ")";
  return targets;
}

int run_diff(const PolicyFlags& flags) {
  policy::PolicySnapshot old_policy = policy::load_policy_file(flags.old_policy);
  policy::PolicySnapshot new_policy = policy::load_policy_file(flags.new_policy);
  auto targets = diff_targets(flags);
  if (targets.empty()) {
    std::cerr << "egress policy diff: no targets; give --from-audit DB or targets (HOST:PORT or http:// URLs)\n";
    return kExitUsage;
  }
  std::cerr << "note: decisions are host-level, without DNS lookups: a name whose final decision depends on "
               "its addresses (private-address, internal cidrs) is shown as its host rules decide it\n";
  int changed = 0;
  for (const DiffTarget& t : targets) {
    const auto method = t.request.kind == policy::RequestKind::Connect ? "" : "GET";
    policy::DecideArgs args{t.request.target, t.request.kind, method, t.request.path, t.role};
    auto before = old_policy->decide(args);
    auto after = new_policy->decide(args);
    // A new reason for the same verdict (deny-rule → not-allowed) is not a
    // change a worker would notice; a new verdict is.
    if (before.verdict == after.verdict) continue;
    ++changed;
    std::cout << t.label << ": " << policy::describe(before) << " -> " << policy::describe(after) << "\n";
  }
  std::cout << changed << " of " << targets.size() << " targets change decision\n";
  return changed ? kExitDenied : kExitOk;
}

// ---- suggest ----

/// "7d" → the UTC timestamp 7 days ago, in the audit log's text form.
std::string since_cutoff(const std::string& since) {
  if (since.size() >= 10 && since[4] == '-') return since;  // already a date / timestamp
  std::size_t used = 0;
  long amount = -1;
  try {
    amount = std::stol(since, &used);
  } catch (const std::exception&) {
  }
  const std::string unit = since.substr(used);
  long seconds = unit == "s" ? 1 : unit == "m" ? 60 : unit == "h" ? 3600 : unit == "d" ? 86400 : unit == "w" ? 604800 : 0;
  if (amount < 0 || seconds == 0) {
    throw std::invalid_argument("--since " + since + ": write a duration such as 30m, 12h, 7d, 2w, or a date "
                                "such as 2026-01-31");
  }
  std::time_t cutoff = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now()) - amount * seconds;
  std::tm utc{};
  gmtime_r(&cutoff, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
  return text;
}

int run_suggest(const PolicyFlags& flags) {
  std::string sql =
      "SELECT host, port, reason = 'internal-rule', COUNT(*) FROM events WHERE event = 'decision' "
      "AND decision IN ('allow', 'report') AND host IS NOT NULL AND port IS NOT NULL";
  std::vector<std::string> params;
  if (!flags.role.empty()) {
    sql += " AND role = ?";
    params.push_back(flags.role);
  }
  if (!flags.since.empty()) {
    sql += " AND ts >= ?";
    params.push_back(since_cutoff(flags.since));
  }
  sql += " GROUP BY host, port, reason = 'internal-rule'";
  std::vector<policy::UsedTarget> used;
  std::string sources;
  for (const std::string& db : flags.audit_dbs) {
    sources += (sources.empty() ? "" : ", ") + db;
    query(db, sql, params, [&](sqlite3_stmt* row) {
      policy::UsedTarget t;
      t.host = column_text(row, 0);
      t.port = static_cast<std::uint16_t>(sqlite3_column_int(row, 1));
      t.via = sqlite3_column_int(row, 2) ? policy::UsedTarget::Via::Internal : policy::UsedTarget::Via::Allow;
      t.count = static_cast<std::uint64_t>(sqlite3_column_int64(row, 3));
      used.push_back(std::move(t));
    });
  }
  std::cout << policy::suggest_policy(used, {sources, flags.role, flags.since});
  if (used.empty()) std::cerr << "egress policy suggest: no allowed decisions matched; the policy allows nothing\n";
  return kExitOk;
}

// ---- import ----

int run_import(const PolicyFlags& flags) {
  auto conf = read_text(flags.squid_conf);
  if (!conf) {
    std::cerr << "egress policy import: cannot read " << flags.squid_conf << "; check the path\n";
    return kExitUsage;
  }
  const std::string dir = flags.squid_conf.find('/') == std::string::npos
                              ? std::string(".")
                              : flags.squid_conf.substr(0, flags.squid_conf.rfind('/'));
  auto imported = policy::import_squid(*conf, flags.squid_conf, [&](const std::string& path) {
    return read_text(path.starts_with("/") ? path : dir + "/" + path);
  });
  for (const auto& report : imported.reports) std::cerr << report << "\n";
  // The output must load as it is; a converter bug shows here, not at deploy.
  policy::load_policy_string(imported.policy_yaml, "<imported policy>");
  std::cout << imported.policy_yaml;
  std::cerr << "egress policy import: " << imported.reports.size() << " line(s) not (fully) converted\n";
  return kExitOk;
}

}  // namespace

void add_policy_command(CLI::App& app, int& exit_code) {
  auto flags = std::make_shared<PolicyFlags>();
  auto* policy = app.add_subcommand("policy", "Admin tools for policy files: lint, hash-token, diff, suggest, import");
  policy->require_subcommand(1);
  auto bind = [&, flags](CLI::App* sub, const char* name, int (*run)(const PolicyFlags&)) {
    sub->callback([flags, &exit_code, name, run] {
      exit_code = run_reporting_errors(std::string("egress policy ") + name, [&] { return run(*flags); });
    });
  };

  auto* lint = policy->add_subcommand("lint", "Every problem and warning of policy files, as FILE:LINE: severity: "
                                              "problem; fix (exit 2 on errors)");
  lint->add_option("file", flags->files, "policy file(s)")->required();
  lint->add_option("--secrets-dir", flags->secrets_dir,
                   "serve's secrets directory: also report inject: secrets that are not there");
  bind(lint, "lint", run_lint);

  auto* hash = policy->add_subcommand("hash-token", "Print sha256:<hex> of a worker secret, for a role's tokens");
  hash->add_option("secret", flags->secret, "the secret (default: read from stdin, which keeps it out of `ps`)");
  bind(hash, "hash-token", run_hash_token);

  auto* diff = policy->add_subcommand("diff", "Which targets change decision between two policies (exit 1 if any)");
  diff->add_option("old", flags->old_policy, "the policy in force")->required()->check(CLI::ExistingFile);
  diff->add_option("new", flags->new_policy, "the candidate policy")->required()->check(CLI::ExistingFile);
  diff->add_option("targets", flags->targets, "HOST:PORT or http:// URLs to decide (as well as the audit's)");
  diff->add_option("--from-audit", flags->audit_dbs, "audit database(s): decide every (role, host, port, kind) seen")
      ->check(CLI::ExistingFile);
  diff->add_option("--role", flags->role, "role for the command-line targets");
  bind(diff, "diff", run_diff);

  auto* suggest = policy->add_subcommand("suggest", "A policy that allows what workers used, from the audit log");
  suggest->add_option("--from-audit", flags->audit_dbs, "audit database(s)")->required()->check(CLI::ExistingFile);
  suggest->add_option("--role", flags->role, "only this role's decisions");
  suggest->add_option("--since", flags->since, "only this recent: 30m, 12h, 7d, 2w, or a date (2026-01-31)");
  bind(suggest, "suggest", run_suggest);

  auto* import = policy->add_subcommand("import", "Convert a squid.conf's dstdomain allowlist to a policy file");
  import->add_option("--from-squid", flags->squid_conf, "squid.conf to convert")->required();
  bind(import, "import", run_import);
}

}  // namespace egress::cli
