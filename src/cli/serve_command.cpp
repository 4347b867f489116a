// `egress serve`: configuration file, then flags on top; the policy; the
// audit store; then the proxy until a stop signal.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>
#include <stdexcept>

#include "cli/commands.h"
#include "cli/guarded.h"
#include "cli/serve_config.h"
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

// An error that stops serve before it serves: what failed, with the step's
// name in front (main prints it after "egress serve: ").
[[noreturn]] void fail_step(const std::string& step, const std::exception& e) {
  throw std::runtime_error(step + e.what());
}

// One `egress serve` run: each step below opens one part, in this order, and
// throws (with what failed) when it cannot. Members are declared in the
// order they are made, so that what is made later goes first; run() ends
// the servers, then the store, explicitly and in this order.
class ServeRun {
 public:
  explicit ServeRun(config::ServeConfig config) : config_(std::move(config)), policy_tracker_(config_.policy_file) {}

  int run() {
    load_inspection();
    load_first_policy();
    load_secrets();
    open_store();
    start_background();
    start_admin();
    start_console();
    return serve();
  }

 private:
  // The CA is checked before anything else is opened: a key with loose
  // permissions or a CA that does not load stops serve here, saying why.
  void load_inspection() {
    const auto& tls = config_.tls;
    if (tls.ca_cert.empty()) return;
    try {
      inspection_ = tls::Inspection::load({tls.ca_cert, tls.ca_key, tls.upstream_ca, tls.cert_cache_size, std::chrono::hours(24)});
    } catch (const std::exception& e) {
      fail_step("TLS inspection: ", e);
    }
    spdlog::info("TLS inspection CA {} ({}) loaded", tls.ca_cert, inspection_->minter().authority().subject());
  }

  // Every load (the first, SIGHUP, a changed file) is recorded for the
  // console's Health page and rule suggestions.
  void load_first_policy() {
    load_policy_ = [this, have_ca = inspection_ != nullptr] {
      try {
        auto loaded = config_.policy_file.empty() ? policy::default_policy(config_.mode)
                                                  : policy::load_policy_file(config_.policy_file, config_.mode);
        require_ca_for_inspection(*loaded, have_ca);
        policy_tracker_.loaded(loaded);
        return loaded;
      } catch (const std::exception& e) {
        policy_tracker_.failed(e.what());
        throw;
      }
    };
    first_policy_ = load_policy_();  // a PolicyLoadError is reported as "the policy has errors"
  }

  // Secrets are read before anything listens: a file egress must not trust
  // stops serve here, naming the file (never the value).
  void load_secrets() {
    if (config_.secrets_dir.empty()) return;
    load_secrets_ = [this] {
      return std::make_shared<const secrets::SecretStore>(secrets::SecretStore::load(config_.secrets_dir));
    };
    const auto names = load_secrets_()->names();
    spdlog::info("{} secret(s) loaded from {}", names.size(), config_.secrets_dir);
  }

  void open_store() {
    try {
      audit::StoreOptions options;
      options.path = config_.audit_db;
      options.sync = config_.audit_sync == config::AuditSync::Full ? audit::StoreOptions::Sync::Full
                                                                   : audit::StoreOptions::Sync::Normal;
      options.stream = open_stream(config_.audit_stream);
      options.stream_format =
          config_.audit_stream_format == "ocsf" ? audit::StreamFormat::Ocsf : audit::StreamFormat::Rows;
      if (!config_.console.listen.empty()) {
        options.stream = [file = std::move(options.stream), this](const std::string& line) {
          if (file) file(line);
          console_hub_.publish(line);
        };
      }
      store_ = audit::AuditStore::open(options);
    } catch (const std::exception& e) {
      fail_step("cannot open the audit database: ", e);
    }
  }

  // Retention prunes on its own connection in small transactions between
  // the writer's commits; every tenth of the retention, at most 10 minutes.
  // The shipper reads committed rows on its own thread and connections;
  // nothing on the request path waits for either.
  void start_background() {
    if (config_.retention.count() > 0) {
      const auto interval = std::clamp<std::chrono::milliseconds>(config_.retention / 10, std::chrono::seconds(1),
                                                                  std::chrono::minutes(10));
      retention_ = std::make_unique<audit::Retention>(
          config_.audit_db, std::chrono::duration_cast<std::chrono::seconds>(config_.retention), interval);
    }
    if (config_.replication.replicate_to.empty()) return;
    try {
      audit::ReplicationOptions options;
      options.db_path = config_.audit_db;
      options.dsn = config_.replication.replicate_to;
      options.password_file = config_.replication.password_file;
      options.replica = config_.replication.replica;
      replicator_ = std::make_unique<audit::Replicator>(options);
    } catch (const std::exception& e) {
      fail_step("audit replication: ", e);
    }
  }

  // The admin listener reads the audit store's state at scrape time. On
  // the default address a port in use only costs the listener; an address
  // the admin chose must work.
  void start_admin() {
    audit_probe_ = admin::metrics().watch_audit([this] {
      admin::AuditState state{store_->healthy(), store_->stats(), std::nullopt, config_.replication.max_backlog};
      if (replicator_) state.replication = replicator_->stats();
      return state;
    });
    if (config_.admin_listen.empty() || config_.admin_listen == "off") return;
    try {
      admin_server_ = std::make_unique<admin::AdminServer>(config_.admin_listen, admin::metrics());
      spdlog::info("admin listener on http://{} (/healthz, /readyz, /metrics)", admin_server_->address());
    } catch (const std::exception& e) {
      if (config_.admin_listen != config::kDefaultAdminListen) throw;
      spdlog::warn("{}; serving without the admin listener (set admin_listen or --admin-listen)", e.what());
    }
  }

  void start_console() {
    const auto& console = config_.console;
    if (console.listen.empty()) return;
    console_server_ = std::make_unique<console::ConsoleServer>(
        console::ConsoleOptions{console.listen, console.secret_hashes, console.secure_cookie, console.session_ttl,
                                config_.audit_db, &policy_tracker_, [] { return admin::metrics().render(); }},
        console_hub_);
    spdlog::info("console on http://{}/ (read-only; log in with a secret whose hash is in console.secret_hashes)",
                 console_server_->address());
  }

  int serve() {
    const int code = proxy::serve(
        config_, load_policy_, *store_,
        [this](const std::string& address) { print_banner(config_, *first_policy_, address); }, inspection_,
        load_secrets_);
    console_server_.reset();
    admin_server_.reset();
    retention_.reset();
    replicator_.reset();  // before the store: its last marker write needs the file
    store_.reset();  // flushes every queued event before exit
    spdlog::info("stopped; audit log flushed");
    return code;
  }

  const config::ServeConfig config_;
  std::shared_ptr<const tls::Inspection> inspection_;
  console::PolicyTracker policy_tracker_;
  proxy::PolicyLoader load_policy_;
  policy::PolicySnapshot first_policy_;
  proxy::SecretsLoader load_secrets_;
  // Declared before the store, whose writer publishes into it until the
  // store is gone.
  console::EventHub console_hub_;
  audit::AuditStorePtr store_;
  std::unique_ptr<audit::Retention> retention_;
  std::unique_ptr<audit::Replicator> replicator_;
  admin::ProbeGuard audit_probe_;  // withdrawn before the store goes
  std::unique_ptr<admin::AdminServer> admin_server_;
  std::unique_ptr<console::ConsoleServer> console_server_;
};

int run_serve(const ServeFlags& flags) {
  return run_reporting_errors("egress serve", [&] {
    auto config = effective_config(flags);
    setup_logging(config);
    return ServeRun(std::move(config)).run();
  });
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
