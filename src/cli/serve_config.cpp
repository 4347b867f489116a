// See serve_config.h.
#include "cli/serve_config.h"

#include "egress/audit/replicator.h"
#include "egress/policy/policy.h"

namespace egress::cli {
namespace {

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

}  // namespace

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

}  // namespace egress::cli
