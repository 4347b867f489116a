// The service configuration (`serve --config FILE` and the flags that
// override it): where to listen, where the policy and the audit database
// are, DNS, limits and timeouts. Kept apart from the policy (what may leave)
// and from runtime state. Parsing and validation only; no sockets.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "egress/policy/policy.h"

namespace egress::config {

using std::chrono::milliseconds;

struct Limits {
  std::size_t header_bytes = 32 * 1024;              // request head; over → 431
  milliseconds header_timeout{10'000};               // first request head (slowloris)
  milliseconds idle_timeout{60'000};                 // keep-alive wait for the next request
  milliseconds tunnel_idle_timeout{300'000};         // CONNECT tunnel with no bytes either way
  milliseconds connect_timeout{10'000};              // upstream TCP connect
  milliseconds upstream_timeout{60'000};             // upstream response head, and each read/write
  milliseconds shutdown_grace{10'000};               // SIGTERM: in-flight work may finish
  std::size_t max_target_length = 8192;              // request target bytes; over → 414
  std::size_t max_header_count = 100;                // header fields per request; over → 431
  std::uint64_t max_body_bytes = 0;                  // forwarded request body; over → 413; 0 = unlimited
  std::size_t max_connections = 4096;                // open worker connections, all threads; over → 503
  std::size_t max_connections_per_client = 256;      // open connections per client IP; over → 503
};

struct DnsConfig {
  std::vector<std::string> servers;  // "ip" / "ip:port"; empty = /etc/resolv.conf
  std::map<std::string, std::vector<std::string>> hosts;  // static name → addresses
  bool use_hosts_file = true;
  milliseconds timeout{5000};
  std::chrono::seconds min_ttl{5};
  std::chrono::seconds max_ttl{300};
  std::chrono::seconds negative_ttl{5};
};

/// TLS inspection (rules with `inspect: true`); off while ca_cert is empty.
struct TlsConfig {
  std::string ca_cert;      // PEM CA certificate (egress ca init makes one)
  std::string ca_key;       // its unencrypted PEM key; mode 0600 or serve refuses to start
  std::string upstream_ca;  // extra PEM bundle trusted for upstreams, besides the system store
  std::size_t cert_cache_size = 1000;  // minted leaf certificates kept per proxy thread
  /// Idle upstream TLS connections kept per proxy thread for the next
  /// inspected tunnel to the same host:port; 0 = a new connection per tunnel.
  std::size_t upstream_pool_size = 64;
  /// How long a pooled connection may wait; below the common 5 s server
  /// keep-alive timeout, so egress usually closes first.
  milliseconds upstream_pool_idle{4000};
};

enum class AuditSync { Normal, Full };

/// The web console (serve --console-listen; docs/console.md). Off while
/// listen is empty. Read-only; a login with a secret whose hash is listed.
struct ConsoleConfig {
  std::string listen;  // HOST:PORT (HOST an IP address), "" = off
  /// "sha256:<hex>" of each accepted secret (a password or a bearer token),
  /// made by `egress policy hash-token`, as roles' tokens are.
  std::vector<std::string> secret_hashes;
  /// Mark the session cookie Secure: set when the console is reached over
  /// TLS (an ingress that terminates it). A request that arrives with
  /// X-Forwarded-Proto: https gets a Secure cookie either way.
  bool secure_cookie = false;
  milliseconds session_ttl{8 * 3600 * 1000};  // a session ends this long after login
};

/// How serve's log lines look on stderr: spdlog's text lines (the request
/// line as key=value pairs) or one JSON object per line (log pipelines).
enum class LogFormat { Text, Json };

/// The admin listener's default address: loopback only. When this default
/// is taken, serve warns and runs without the admin listener; an address
/// set explicitly that cannot be bound is an error.
inline constexpr std::string_view kDefaultAdminListen = "127.0.0.1:9128";

/// Shipping the audit log to a central PostgreSQL store (the `audit:`
/// section; docs/audit-fleet.md).
struct AuditReplication {
  std::string replicate_to;   // "" = off; postgresql://... without a password
  std::string password_file;  // the password's file; "" = PGPASSFILE / ~/.pgpass
  std::string replica;        // "" = the host name
  std::uint64_t max_backlog = 0;  // /readyz unready past this many unshipped rows; 0 = never
};

struct ServeConfig {
  std::string listen = "127.0.0.1:3128";
  /// /healthz, /readyz, /metrics: HOST:PORT, or "" / "off" for none.
  std::string admin_listen{kDefaultAdminListen};
  std::string policy_file;  // "" = the embedded default policy
  /// How often serve checks the policy file for changes (including a
  /// ConfigMap-style symlink swap) and reloads it; 0 = only on SIGHUP.
  milliseconds policy_poll_interval{1000};
  std::optional<policy::Mode> mode;  // overrides the policy file's mode
  std::string audit_db = "egress-audit.db";
  AuditSync audit_sync = AuditSync::Normal;
  std::string audit_stream;  // "" = off, "stdout", or a file path (JSON lines)
  /// Credentials for `inject:` rules: one file per secret (secrets/secrets.h);
  /// "" = none (an injecting rule's requests are refused secret-unavailable).
  std::string secrets_dir;
  std::string audit_stream_format = "rows";  // rows | ocsf
  AuditReplication replication;
  milliseconds retention{0};  // audit events older than this are pruned in the background; 0 = keep all
  unsigned threads = 0;      // 0 = one per core
  DnsConfig dns;
  Limits limits;
  TlsConfig tls;
  std::string log_level = "info";  // trace | debug | info | warn | error | off
  LogFormat log_format = LogFormat::Text;
  ConsoleConfig console;
};

/// A problem in the configuration file, as "FILE:LINE: what; fix".
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Reads a YAML configuration file on top of the defaults. Throws
/// ConfigError listing every problem (unknown keys, bad durations, …).
ServeConfig load_config_file(const std::string& path);

/// spdlog's level names that serve accepts: trace … error, off.
bool valid_log_level(std::string_view level);
/// "text" | "json"; nullopt otherwise.
std::optional<LogFormat> parse_log_format(std::string_view text);

/// "250ms", "10s", "5m", "1h", "90d" → milliseconds; nullopt if malformed.
std::optional<milliseconds> parse_duration(std::string_view text);

/// "host:port" / "[v6]:port" as used by --listen: splits and checks it.
struct HostPort {
  std::string host;
  std::uint16_t port = 0;
};
std::optional<HostPort> parse_host_port(std::string_view text);

}  // namespace egress::config
