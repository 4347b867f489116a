// `egress serve`: configuration file, then flags on top; the policy; the
// audit store; then the proxy until a stop signal.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "cli/logging.h"
#include "egress/admin/metrics.h"
#include "egress/admin/server.h"
#include "egress/audit/maintenance.h"
#include "egress/audit/replicator.h"
#include "egress/audit/store.h"
#include "egress/config/config.h"
#include "egress/console/hub.h"
#include "egress/console/server.h"
#include "egress/policy/policy.h"
#include "egress/proxy/server.h"
#include "egress/tls/inspection.h"

namespace egress::cli {
namespace {

struct ServeFlags {
  std::string config_file, mode, policy_file, listen, admin_listen, console_listen, audit_db, audit_stream, secrets_dir,
      retention, log_level,
      log_format;
  std::string ca_cert, ca_key, upstream_ca;
  std::string stream_format, replicate_to, replica, password_file;
  std::int64_t max_backlog = -1;  // -1: not given
  unsigned threads = 0;
};

/// The audit stream format and replication flags on top of the file's
/// `audit:` section. A DSN with a password in it is refused wherever it
/// came from: the password belongs in a file (never argv, never logs).
void apply_audit_flags(const ServeFlags& flags, config::ServeConfig& config) {
  if (!flags.stream_format.empty()) config.audit_stream_format = flags.stream_format;
  if (config.audit_stream_format != "rows" && config.audit_stream_format != "ocsf") {
    throw config::ConfigError("--audit-stream-format " + config.audit_stream_format + ": use rows or ocsf");
  }
  auto& rep = config.replication;
  if (!flags.replicate_to.empty()) rep.replicate_to = flags.replicate_to;
  if (!flags.replica.empty()) rep.replica = flags.replica;
  if (!flags.password_file.empty()) rep.password_file = flags.password_file;
  if (flags.max_backlog >= 0) rep.max_backlog = static_cast<std::uint64_t>(flags.max_backlog);
  if (rep.replicate_to.empty()) return;
  if (!audit::is_central_dsn(rep.replicate_to)) {
    throw config::ConfigError("audit.replicate_to " + audit::redact_dsn(rep.replicate_to) +
                              ": expected a postgresql:// URI, e.g. postgresql://egress@db.internal/audit");
  }
  if (audit::dsn_has_password(rep.replicate_to)) {
    throw config::ConfigError("audit.replicate_to " + audit::redact_dsn(rep.replicate_to) +
                              ": holds a password; remove it and put the password in a file named by "
                              "--audit-replicate-password-file (audit.password_file) or in PGPASSFILE");
  }
  if (rep.replica.empty()) rep.replica = audit::default_replica_name();
}

/// The configuration file (if any) with the flags on top. Throws
/// config::ConfigError.
config::ServeConfig effective_config(const ServeFlags& flags) {
  auto config = flags.config_file.empty() ? config::ServeConfig{} : config::load_config_file(flags.config_file);
  if (!flags.mode.empty()) {
    config.mode = policy::mode_from_string(flags.mode);
    if (!config.mode) throw config::ConfigError("--mode " + flags.mode + ": use production, self-hosted or developer");
  }
  if (!flags.policy_file.empty()) config.policy_file = flags.policy_file;
  if (!flags.listen.empty()) {
    if (!config::parse_host_port(flags.listen)) {
      throw config::ConfigError("--listen " + flags.listen + ": expected HOST:PORT, e.g. 127.0.0.1:3128");
    }
    config.listen = flags.listen;
  }
  if (!flags.admin_listen.empty()) {
    if (flags.admin_listen != "off" && !config::parse_host_port(flags.admin_listen)) {
      throw config::ConfigError("--admin-listen " + flags.admin_listen + ": expected HOST:PORT, e.g. 127.0.0.1:9128, or off");
    }
    config.admin_listen = flags.admin_listen;
  }
  if (!flags.console_listen.empty()) {
    if (flags.console_listen != "off" && !config::parse_host_port(flags.console_listen)) {
      throw config::ConfigError("--console-listen " + flags.console_listen +
                                ": expected HOST:PORT, e.g. 127.0.0.1:9130, or off");
    }
    config.console.listen = flags.console_listen == "off" ? "" : flags.console_listen;
  }
  if (!flags.audit_db.empty()) config.audit_db = flags.audit_db;
  if (!flags.audit_stream.empty()) config.audit_stream = flags.audit_stream;
  if (!flags.secrets_dir.empty()) config.secrets_dir = flags.secrets_dir;
  apply_audit_flags(flags, config);
  // The console's live feed is the audit writer's row stream (one hook), so
  // it cannot run beside an OCSF-shaped stream yet.
  if (!config.console.listen.empty() && config.audit_stream_format == "ocsf") {
    throw config::ConfigError("the console (console.listen) reads the audit stream's row format; it cannot run with "
                              "audit_stream_format ocsf: drop one of them");
  }
  if (!flags.retention.empty()) {
    const auto retention = config::parse_duration(flags.retention);
    if (!retention) throw config::ConfigError("--retention " + flags.retention + ": expected a duration such as 90d or 12h");
    config.retention = *retention;
  }
  if (!flags.log_level.empty()) {
    if (!config::valid_log_level(flags.log_level)) {
      throw config::ConfigError("--log-level " + flags.log_level + ": expected trace, debug, info, warn, error or off");
    }
    config.log_level = flags.log_level;
  }
  if (!flags.log_format.empty()) {
    const auto format = config::parse_log_format(flags.log_format);
    if (!format) throw config::ConfigError("--log-format " + flags.log_format + ": expected text or json");
    config.log_format = *format;
  }
  if (flags.threads) config.threads = flags.threads;
  if (!flags.ca_cert.empty()) config.tls.ca_cert = flags.ca_cert;
  if (!flags.ca_key.empty()) config.tls.ca_key = flags.ca_key;
  if (!flags.upstream_ca.empty()) config.tls.upstream_ca = flags.upstream_ca;
  if (config.tls.ca_cert.empty() != config.tls.ca_key.empty()) {
    throw config::ConfigError("TLS inspection needs both --ca-cert and --ca-key (or tls.ca_cert and tls.ca_key)");
  }
  return config;
}

/// The first rule with `inspect: true` in the policy (global or a role's),
/// or nullptr.
const policy::Rule* first_inspect_rule(const policy::PolicyModel& model) {
  const auto scan = [](const std::vector<policy::Rule>& rules) -> const policy::Rule* {
    for (const auto& rule : rules) {
      if (rule.inspect) return &rule;
    }
    return nullptr;
  };
  for (const auto* rules : {&model.allow, &model.internal}) {
    if (const auto* rule = scan(*rules)) return rule;
  }
  for (const auto& role : model.roles) {
    for (const auto* rules : {&role.allow, &role.internal}) {
      if (const auto* rule = scan(*rules)) return rule;
    }
  }
  return nullptr;
}

/// Without a CA an inspect rule cannot be honoured, and passing its tunnels
/// through uninspected would skip the path rules the admin asked for: such
/// a policy is refused (at startup and on reload) like any other bad one.
void require_ca_for_inspection(const policy::Policy& policy, bool have_ca) {
  if (have_ca) return;
  if (const auto* rule = first_inspect_rule(policy.model())) {
    throw policy::PolicyLoadError({policy::PolicyProblem{
        policy.source(), rule->line,
        "inspect: true needs the TLS inspection CA, and serve has none; create one with `egress ca init` and "
        "start serve with --ca-cert certs/ca.crt --ca-key certs/ca.key (or tls.ca_cert / tls.ca_key in the "
        "configuration), or remove inspect from the rule"}});
  }
}

/// The JSON-lines audit stream (serve --audit-stream): stdout or a file.
/// Written by the audit writer thread only.
std::function<void(const std::string&)> open_stream(const std::string& target) {
  if (target.empty()) return {};
  std::shared_ptr<std::FILE> out;
  if (target == "stdout") {
    out.reset(stdout, [](std::FILE*) {});
  } else {
    out.reset(std::fopen(target.c_str(), "a"), [](std::FILE* f) {
      if (f) std::fclose(f);
    });
    if (!out) throw config::ConfigError("--audit-stream " + target + ": cannot open: " + std::strerror(errno));
  }
  return [out](const std::string& line) {
    std::fwrite(line.data(), 1, line.size(), out.get());
    std::fputc('\n', out.get());
    std::fflush(out.get());
  };
}

void print_banner(const config::ServeConfig& config, const policy::Policy& policy, const std::string& address) {
  // With the audit stream on stdout, stdout belongs to the stream.
  auto& out = config.audit_stream == "stdout" ? std::cerr : std::cout;
  const auto url = "http://" + address;
  out << "egress listening on " << address << " (mode " << policy::to_string(policy.mode()) << ", policy "
      << policy.source() << ", audit " << config.audit_db << ")\n"
      << "Point a worker at it:\n"
      << "  export HTTP_PROXY=" << url << " HTTPS_PROXY=" << url << " http_proxy=" << url << " https_proxy=" << url
      << "\n"
      << "  curl -x " << url << " https://example.com/\n"
      << "Stop with Ctrl-C (SIGINT) or SIGTERM; SIGHUP reloads the policy.\n"
      << std::flush;
}

int run_serve(const ServeFlags& flags) {
  config::ServeConfig config;
  try {
    config = effective_config(flags);
  } catch (const config::ConfigError& e) {
    std::cerr << "egress serve: " << e.what() << "\n";
    return kExitUsage;
  }
  setup_logging(config);

  // The CA is checked before anything else is opened: a key with loose
  // permissions or a CA that does not load stops serve here, saying why.
  std::shared_ptr<const tls::Inspection> inspection;
  if (!config.tls.ca_cert.empty()) {
    try {
      inspection = tls::Inspection::load({config.tls.ca_cert, config.tls.ca_key, config.tls.upstream_ca,
                                          config.tls.cert_cache_size, std::chrono::hours(24)});
    } catch (const std::exception& e) {
      std::cerr << "egress serve: TLS inspection: " << e.what() << "\n";
      return kExitUsage;
    }
    spdlog::info("TLS inspection CA {} ({}) loaded", config.tls.ca_cert, inspection->minter().authority().subject());
  }

  // Every load (the first, SIGHUP, a changed file) is recorded for the
  // console's Health page and rule suggestions.
  console::PolicyTracker policy_tracker(config.policy_file);
  const proxy::PolicyLoader load_policy = [&config, &policy_tracker, have_ca = inspection != nullptr] {
    try {
      auto loaded = config.policy_file.empty() ? policy::default_policy(config.mode)
                                               : policy::load_policy_file(config.policy_file, config.mode);
      require_ca_for_inspection(*loaded, have_ca);
      policy_tracker.loaded(loaded);
      return loaded;
    } catch (const std::exception& e) {
      policy_tracker.failed(e.what());
      throw;
    }
  };
  policy::PolicySnapshot first_policy;
  try {
    first_policy = load_policy();
  } catch (const policy::PolicyLoadError& e) {
    std::cerr << "egress serve: the policy has errors:\n" << e.what() << "\n";
    return kExitUsage;
  }
  // Secrets are read before anything listens: a file egress must not trust
  // stops serve here, naming the file (never the value).
  proxy::SecretsLoader load_secrets;
  if (!config.secrets_dir.empty()) {
    load_secrets = [&config] {
      return std::make_shared<const secrets::SecretStore>(secrets::SecretStore::load(config.secrets_dir));
    };
    try {
      const auto names = load_secrets()->names();
      spdlog::info("{} secret(s) loaded from {}", names.size(), config.secrets_dir);
    } catch (const secrets::SecretsError& e) {
      std::cerr << "egress serve: " << e.what() << "\n";
      return kExitUsage;
    }
  }

  // Declared before the store, whose writer publishes into it until the
  // store is gone.
  console::EventHub console_hub;
  audit::AuditStorePtr store;
  try {
    audit::StoreOptions options;
    options.path = config.audit_db;
    options.sync = config.audit_sync == config::AuditSync::Full ? audit::StoreOptions::Sync::Full
                                                                : audit::StoreOptions::Sync::Normal;
    options.stream = open_stream(config.audit_stream);
    options.stream_format =
        config.audit_stream_format == "ocsf" ? audit::StreamFormat::Ocsf : audit::StreamFormat::Rows;
    if (!config.console.listen.empty()) {
      options.stream = [file = std::move(options.stream), &console_hub](const std::string& line) {
        if (file) file(line);
        console_hub.publish(line);
      };
    }
    store = audit::AuditStore::open(options);
  } catch (const std::exception& e) {
    std::cerr << "egress serve: cannot open the audit database: " << e.what() << "\n";
    return kExitUsage;
  }

  // Retention prunes on its own connection in small transactions between
  // the writer's commits; every tenth of the retention, at most 10 minutes.
  std::unique_ptr<audit::Retention> retention;
  if (config.retention.count() > 0) {
    const auto interval = std::clamp<std::chrono::milliseconds>(config.retention / 10, std::chrono::seconds(1),
                                                                std::chrono::minutes(10));
    retention = std::make_unique<audit::Retention>(
        config.audit_db, std::chrono::duration_cast<std::chrono::seconds>(config.retention), interval);
  }

  // The shipper reads committed rows on its own thread and connections;
  // nothing on the request path waits for it.
  std::unique_ptr<audit::Replicator> replicator;
  if (!config.replication.replicate_to.empty()) {
    try {
      audit::ReplicationOptions options;
      options.db_path = config.audit_db;
      options.dsn = config.replication.replicate_to;
      options.password_file = config.replication.password_file;
      options.replica = config.replication.replica;
      replicator = std::make_unique<audit::Replicator>(options);
    } catch (const std::exception& e) {
      std::cerr << "egress serve: audit replication: " << e.what() << "\n";
      return kExitUsage;
    }
  }

  // The admin listener reads the audit store's state at scrape time; the
  // probe is withdrawn (guard) before the store goes.
  const auto audit_probe = admin::metrics().watch_audit([&store, &replicator, &config] {
    admin::AuditState state{store->healthy(), store->stats(), std::nullopt, config.replication.max_backlog};
    if (replicator) state.replication = replicator->stats();
    return state;
  });
  std::unique_ptr<admin::AdminServer> admin_server;
  if (!config.admin_listen.empty() && config.admin_listen != "off") {
    try {
      admin_server = std::make_unique<admin::AdminServer>(config.admin_listen, admin::metrics());
      spdlog::info("admin listener on http://{} (/healthz, /readyz, /metrics)", admin_server->address());
    } catch (const std::exception& e) {
      if (config.admin_listen != config::kDefaultAdminListen) {
        std::cerr << "egress serve: " << e.what() << "\n";
        return kExitUsage;
      }
      spdlog::warn("{}; serving without the admin listener (set admin_listen or --admin-listen)", e.what());
    }
  }

  std::unique_ptr<console::ConsoleServer> console_server;
  if (!config.console.listen.empty()) {
    try {
      console_server = std::make_unique<console::ConsoleServer>(
          console::ConsoleOptions{config.console.listen, config.console.secret_hashes, config.console.secure_cookie,
                                  config.console.session_ttl, config.audit_db, &policy_tracker,
                                  [] { return admin::metrics().render(); }},
          console_hub);
      spdlog::info("console on http://{}/ (read-only; log in with a secret whose hash is in console.secret_hashes)",
                   console_server->address());
    } catch (const std::exception& e) {
      std::cerr << "egress serve: " << e.what() << "\n";
      return kExitUsage;
    }
  }

  try {
    const int code = proxy::serve(
        config, load_policy, *store,
        [&](const std::string& address) { print_banner(config, *first_policy, address); }, inspection,
        load_secrets);
    console_server.reset();
    admin_server.reset();
    retention.reset();
    replicator.reset();  // before the store: its last marker write needs the file
    store.reset();  // flushes every queued event before exit
    spdlog::info("stopped; audit log flushed");
    return code;
  } catch (const std::exception& e) {
    std::cerr << "egress serve: " << e.what() << "\n";
    return kExitUsage;
  }
}

}  // namespace

void add_serve_command(CLI::App& app, int& exit_code) {
  auto flags = std::make_shared<ServeFlags>();
  auto* serve = app.add_subcommand("serve", "Run the proxy (no flags: developer mode on 127.0.0.1:3128)");
  serve->add_option("--config", flags->config_file, "YAML configuration file (flags override it)")->check(CLI::ExistingFile);
  serve->add_option("--mode", flags->mode, "production | self-hosted | developer (overrides the policy's mode)");
  serve->add_option("--policy", flags->policy_file, "policy file (default: embedded developer-mode policy)");
  serve->add_option("--listen", flags->listen, "HOST:PORT to listen on (default 127.0.0.1:3128)");
  serve->add_option("--admin-listen", flags->admin_listen,
                    "HOST:PORT for /healthz, /readyz and /metrics, or off (default 127.0.0.1:9128)");
  serve->add_option("--console-listen", flags->console_listen,
                    "HOST:PORT for the read-only web console, or off (default off; see docs/console.md)");
  serve->add_option("--audit-db", flags->audit_db, "SQLite audit database (default egress-audit.db)");
  serve->add_option("--audit-stream", flags->audit_stream, "also write audit events as JSON lines: stdout or a file");
  serve->add_option("--secrets-dir", flags->secrets_dir,
                    "directory of secrets for inject: rules, one file per secret, mode 0600 (names only are logged)");
  serve->add_option("--audit-stream-format", flags->stream_format,
                    "rows | ocsf (default rows): ocsf writes OCSF HTTP Activity / Network Activity events");
  serve->add_option("--audit-replicate-to", flags->replicate_to,
                    "ship every audit event to this PostgreSQL store (postgresql://user@host/db, no password)");
  serve->add_option("--audit-replica", flags->replica, "this replica's name in the central store (default: host name)");
  serve->add_option("--audit-replicate-password-file", flags->password_file,
                    "file holding the PostgreSQL password (default: PGPASSFILE / ~/.pgpass)");
  serve->add_option("--audit-max-backlog", flags->max_backlog,
                    "/readyz reports not ready while more events than this wait to be shipped (default: never)");
  serve->add_option("--retention", flags->retention, "prune audit events older than this (e.g. 90d) in the background");
  serve->add_option("--threads", flags->threads, "worker threads (default: one per core)");
  serve->add_option("--log-level", flags->log_level, "trace | debug | info | warn | error | off (default info)");
  serve->add_option("--log-format", flags->log_format,
                    "text | json (default text): json writes one object per line, the request line with the audit "
                    "table's field names");
  serve->add_option("--ca-cert", flags->ca_cert, "TLS inspection CA certificate (PEM; egress ca init makes one)");
  serve->add_option("--ca-key", flags->ca_key, "its key (PEM, unencrypted, mode 0600)");
  serve->add_option("--upstream-ca", flags->upstream_ca,
                    "extra PEM bundle trusted for inspected upstreams, besides the system store");
  serve->callback([flags, &exit_code] { exit_code = run_serve(*flags); });
}

}  // namespace egress::cli
