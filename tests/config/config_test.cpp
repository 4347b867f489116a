// The serve configuration: every key read onto the defaults, every problem
// reported with FILE:LINE (all of them at once), and the duration and
// host:port parsers as tables.
#include <catch2/catch.hpp>

#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "egress/config/config.h"

using namespace egress::config;
using namespace std::chrono_literals;

namespace {

/// A configuration file in a fresh temporary directory, removed afterwards.
class ConfigFile {
 public:
  explicit ConfigFile(const std::string& text) {
    std::string tmpl = "/tmp/egress-config-XXXXXX";
    const int fd = mkstemp(tmpl.data());
    if (fd < 0) throw std::runtime_error("mkstemp failed");
    ::close(fd);
    path_ = tmpl;
    std::ofstream(path_) << text;
  }
  ~ConfigFile() { ::unlink(path_.c_str()); }
  ConfigFile(const ConfigFile&) = delete;
  ConfigFile& operator=(const ConfigFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

/// The ConfigError message for `text`, or "" if it loaded.
std::string error_for(const std::string& text, std::string* path = nullptr) {
  ConfigFile file(text);
  if (path) *path = file.path();
  try {
    load_config_file(file.path());
  } catch (const ConfigError& e) {
    return e.what();
  }
  return {};
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    const auto end = text.find('\n', start);
    out.push_back(text.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

}  // namespace

TEST_CASE("An empty map of settings leaves every default in place", "[config]") {
  ConfigFile file("{}\n");
  const auto config = load_config_file(file.path());
  const ServeConfig defaults;
  CHECK(config.listen == "127.0.0.1:3128");
  CHECK(config.policy_file.empty());
  CHECK_FALSE(config.mode);
  CHECK(config.audit_db == defaults.audit_db);
  CHECK(config.audit_sync == AuditSync::Normal);
  CHECK(config.audit_stream.empty());
  CHECK(config.threads == 0);
  CHECK(config.dns.servers.empty());
  CHECK(config.dns.hosts.empty());
  CHECK(config.dns.use_hosts_file);
  CHECK(config.dns.timeout == 5000ms);
  CHECK(config.limits.header_bytes == defaults.limits.header_bytes);
  CHECK(config.limits.header_timeout == defaults.limits.header_timeout);
  CHECK(config.log_level == "info");
}

TEST_CASE("Empty sections keep their defaults", "[config]") {
  ConfigFile file("dns:\nlimits:\n");
  const auto config = load_config_file(file.path());
  CHECK(config.dns.timeout == 5000ms);
  CHECK(config.limits.idle_timeout == 60'000ms);
}

TEST_CASE("Every configuration key is read", "[config]") {
  ConfigFile file(R"(# a full configuration
listen: "[::1]:8080"
policy: /etc/egress/policy.yaml
mode: production
audit_db: /var/lib/egress/audit.db
audit_sync: full
audit_stream: stdout
threads: 4
log_level: debug
log_format: json
dns:
  servers: [10.0.0.2, "10.0.0.3:5353"]
  hosts:
    artifacts.internal: [10.20.0.5, 10.20.0.6]
  hosts_file: false
  timeout: 750ms
  min_ttl: 2s
  max_ttl: 1h
  negative_ttl: 1m
limits:
  header_bytes: 65536
  header_timeout: 3s
  idle_timeout: 2m
  tunnel_idle_timeout: 1h
  connect_timeout: 1500ms
  upstream_timeout: 90s
  shutdown_grace: 20s
  max_target_length: 4096
  max_header_count: 50
  max_body_bytes: 1048576
  max_connections: 1000
  max_connections_per_client: 20
)");
  const auto config = load_config_file(file.path());
  CHECK(config.listen == "[::1]:8080");
  CHECK(config.policy_file == "/etc/egress/policy.yaml");
  REQUIRE(config.mode);
  CHECK(*config.mode == egress::policy::Mode::Production);
  CHECK(config.audit_db == "/var/lib/egress/audit.db");
  CHECK(config.audit_sync == AuditSync::Full);
  CHECK(config.audit_stream == "stdout");
  CHECK(config.threads == 4);
  CHECK(config.log_level == "debug");
  CHECK(config.log_format == egress::config::LogFormat::Json);
  CHECK(config.dns.servers == std::vector<std::string>{"10.0.0.2", "10.0.0.3:5353"});
  REQUIRE(config.dns.hosts.count("artifacts.internal") == 1);
  CHECK(config.dns.hosts.at("artifacts.internal") == std::vector<std::string>{"10.20.0.5", "10.20.0.6"});
  CHECK_FALSE(config.dns.use_hosts_file);
  CHECK(config.dns.timeout == 750ms);
  CHECK(config.dns.min_ttl == 2s);
  CHECK(config.dns.max_ttl == 1h);
  CHECK(config.dns.negative_ttl == 1min);
  CHECK(config.limits.header_bytes == 65536);
  CHECK(config.limits.header_timeout == 3s);
  CHECK(config.limits.idle_timeout == 2min);
  CHECK(config.limits.tunnel_idle_timeout == 1h);
  CHECK(config.limits.connect_timeout == 1500ms);
  CHECK(config.limits.upstream_timeout == 90s);
  CHECK(config.limits.shutdown_grace == 20s);
  CHECK(config.limits.max_target_length == 4096);
  CHECK(config.limits.max_header_count == 50);
  CHECK(config.limits.max_body_bytes == 1048576);
  CHECK(config.limits.max_connections == 1000);
  CHECK(config.limits.max_connections_per_client == 20);
}

TEST_CASE("The hardening limits default to safe values", "[config]") {
  const Limits limits;
  CHECK(limits.max_target_length == 8192);
  CHECK(limits.max_header_count == 100);
  CHECK(limits.max_body_bytes == 0);  // unlimited
  CHECK(limits.max_connections == 4096);
  CHECK(limits.max_connections_per_client == 256);
}

TEST_CASE("Each mode and audit_sync spelling is accepted", "[config]") {
  struct Case {
    const char* yaml;
    std::optional<egress::policy::Mode> mode;
    AuditSync sync;
  };
  using egress::policy::Mode;
  auto c = GENERATE(values<Case>({
      {"mode: production\n", Mode::Production, AuditSync::Normal},
      {"mode: self-hosted\n", Mode::SelfHosted, AuditSync::Normal},
      {"mode: developer\n", Mode::Developer, AuditSync::Normal},
      {"audit_sync: normal\n", std::nullopt, AuditSync::Normal},
      {"audit_sync: full\n", std::nullopt, AuditSync::Full},
  }));
  INFO(c.yaml);
  ConfigFile file(c.yaml);
  const auto config = load_config_file(file.path());
  CHECK(config.mode == c.mode);
  CHECK(config.audit_sync == c.sync);
}

TEST_CASE("A bad configuration names the file, the line and what to change", "[config]") {
  struct Case {
    const char* name;
    std::string yaml;
    int line;
    std::vector<std::string> wanted;  // substrings of the message
  };
  auto c = GENERATE(values<Case>({
      {"unknown top-level key", "listen: 127.0.0.1:3128\nlisten_port: 80\n", 2,
       {"unknown key 'listen_port' in the configuration", "valid keys:", "audit_db", "listen", "limits",
        "log_level", "threads"}},
      {"unknown dns key", "dns:\n  timeout: 1s\n  server: [1.1.1.1]\n", 3,
       {"unknown key 'server' in dns", "valid keys:", "servers", "hosts_file", "negative_ttl"}},
      {"unknown limits key", "limits:\n\n  header_size: 100\n", 3,
       {"unknown key 'header_size' in limits", "valid keys:", "header_bytes", "shutdown_grace"}},
      {"duration without a unit", "limits:\n  idle_timeout: 10\n", 2,
       {"limits.idle_timeout must be a duration such as 250ms, 10s, 5m or 1h"}},
      {"duration with an unknown unit", "dns:\n  timeout: 5x\n", 2, {"dns.timeout must be a duration"}},
      {"negative duration", "limits:\n  connect_timeout: -1s\n", 2, {"limits.connect_timeout must be a duration"}},
      {"empty duration", "limits:\n  shutdown_grace: \"\"\n", 2, {"limits.shutdown_grace must be a duration"}},
      {"duration as a list", "dns:\n  max_ttl: [1s]\n", 2, {"dns.max_ttl must be a duration"}},
      {"number with a unit", "limits:\n  header_bytes: 32k\n", 2,
       {"limits.header_bytes must be a whole number from 0 to 1048576"}},
      {"number too large", "limits:\n  header_bytes: 1048577\n", 2, {"limits.header_bytes must be a whole number"}},
      {"negative number", "threads: -1\n", 1, {"threads must be a whole number from 0 to 256"}},
      {"fractional number", "threads: 1.5\n", 1, {"threads must be a whole number"}},
      {"too many threads", "threads: 257\n", 1, {"threads must be a whole number from 0 to 256"}},
      {"boolean spelled yes", "dns:\n  hosts_file: yes\n", 2, {"dns.hosts_file must be true or false"}},
      {"unknown mode", "mode: open\n", 1, {"mode must be production, self-hosted or developer"}},
      {"unknown audit_sync", "audit_sync: always\n", 1, {"audit_sync must be normal or full"}},
      {"unknown log_format", "log_format: xml\n", 1, {"log_format must be text or json"}},
      {"unknown audit key", "audit:\n  replicate: postgresql://h/db\n", 2,
       {"unknown key 'replicate' in audit", "replicate_to", "password_file", "replica", "max_backlog"}},
      {"unknown audit_stream_format", "audit_stream_format: cef\n", 1, {"audit_stream_format must be rows or ocsf"}},
      {"audit not a map", "audit: postgresql://h/db\n", 1, {"audit must be a map"}},
      {"unknown log_level", "log_level: verbose\n", 1, {"log_level must be trace, debug, info, warn, error or off"}},
      {"listen without a port", "listen: 127.0.0.1\n", 1, {"listen must be HOST:PORT"}},
      {"listen with a bare v6 address", "listen: \"::1:3128\"\n", 1, {"listen must be HOST:PORT"}},
      {"string given a map", "policy:\n  file: x\n", 2, {"policy must be a string"}},
      {"servers not a list", "dns:\n  servers: 1.1.1.1\n", 2, {"dns.servers must be a list of strings"}},
      {"hosts not a map", "dns:\n  hosts: [10.0.0.1]\n", 2, {"dns.hosts must map names to lists of addresses"}},
      {"host addresses not a list", "dns:\n  hosts:\n    a.internal: 10.0.0.1\n", 3,
       {"dns.hosts.a.internal must be a list of strings"}},
      {"dns not a map", "dns: 8.8.8.8\n", 1, {"dns must be a map"}},
      {"dns given a list", "dns:\n  - 8.8.8.8\n", 2, {"dns must be a map"}},
      {"limits not a map", "limits: fast\n", 1, {"limits must be a map"}},
      {"zero connections", "limits:\n  max_connections: 0\n", 2, {"limits.max_connections must be at least 1"}},
      {"zero headers", "limits:\n  max_header_count: 0\n", 2, {"limits.max_header_count must be at least 1"}},
      {"per-client limit not a number", "limits:\n  max_connections_per_client: many\n", 2,
       {"limits.max_connections_per_client must be a whole number"}},
      {"tls key without a certificate", "tls:\n  ca_key: ca.key\n", 2, {"tls needs both ca_cert and ca_key"}},
      {"unknown tls key", "tls:\n  ca_cert: a\n  ca_key: b\n  ca: c\n", 4,
       {"unknown key 'ca' in tls", "upstream_ca", "cert_cache_size", "upstream_pool_size", "upstream_pool_idle"}},
      {"empty certificate cache", "tls:\n  cert_cache_size: 0\n", 2, {"tls.cert_cache_size must be at least 1"}},
      {"upstream pool size not a number", "tls:\n  upstream_pool_size: lots\n", 2,
       {"tls.upstream_pool_size must be a whole number from 0 to 100000"}},
      {"upstream pool idle without a unit", "tls:\n  upstream_pool_idle: 4\n", 2,
       {"tls.upstream_pool_idle must be a duration"}},
      {"YAML syntax error", "listen: 127.0.0.1:3128\ndns:\n  servers: [1.1.1.1\n", 4, {"YAML syntax error"}},
      {"tab indentation", "dns:\n  timeout: 1s\n\tservers: []\n", 3, {"YAML syntax error"}},
      {"root is a list", "- listen\n", 1, {"the configuration must be a YAML map of settings"}},
      {"root is a scalar", "listen\n", 1, {"the configuration must be a YAML map of settings"}},
      {"empty file", "", 1, {"the configuration must be a YAML map of settings"}},
  }));
  INFO(c.name << "\n---\n" << c.yaml << "---");
  std::string path;
  const auto message = error_for(c.yaml, &path);
  INFO("message: " << message);
  REQUIRE_FALSE(message.empty());
  CHECK(message.rfind(path + ":" + std::to_string(c.line) + ": ", 0) == 0);
  for (const auto& w : c.wanted) {
    INFO("wanted: " << w);
    CHECK(message.find(w) != std::string::npos);
  }
  // One problem, one line: nothing reported twice.
  CHECK(lines_of(message).size() == 1);
}

TEST_CASE("Every problem in a configuration file is reported together", "[config]") {
  std::string path;
  const auto message = error_for(
      "listen: nowhere\n"       // 1
      "mode: strict\n"          // 2
      "threads: many\n"         // 3
      "colour: blue\n"          // 4
      "dns:\n"                  // 5
      "  timeout: 10\n"         // 6
      "limits:\n"               // 7
      "  idle_timeout: 5x\n"    // 8
      "  header_bytes: -4\n",   // 9
      &path);
  const auto lines = lines_of(message);
  INFO(message);
  REQUIRE(lines.size() == 7);
  const std::pair<int, const char*> expected[] = {
      {1, "listen must be HOST:PORT"},
      {2, "mode must be production"},
      {3, "threads must be a whole number"},
      {4, "unknown key 'colour'"},
      {6, "dns.timeout must be a duration"},
      {8, "limits.idle_timeout must be a duration"},
      {9, "limits.header_bytes must be a whole number"},
  };
  for (const auto& [line, text] : expected) {
    const auto prefix = path + ":" + std::to_string(line) + ": ";
    INFO(prefix << text);
    bool found = false;
    for (const auto& l : lines) found = found || (l.rfind(prefix, 0) == 0 && l.find(text) != std::string::npos);
    CHECK(found);
  }
}

TEST_CASE("A missing configuration file is reported with its path", "[config]") {
  try {
    load_config_file("/nonexistent/egress.yaml");
    FAIL("loaded a file that does not exist");
  } catch (const ConfigError& e) {
    const std::string message = e.what();
    CHECK(message.rfind("/nonexistent/egress.yaml:0: cannot read", 0) == 0);
  }
}

TEST_CASE("Log levels and formats: the accepted spellings and nothing else", "[config]") {
  using egress::config::LogFormat;
  for (const auto* level : {"trace", "debug", "info", "warn", "error", "off"}) CHECK(egress::config::valid_log_level(level));
  for (const auto* level : {"", "INFO", "warning", "critical", "err", "info "}) CHECK_FALSE(egress::config::valid_log_level(level));
  CHECK(egress::config::parse_log_format("text") == LogFormat::Text);
  CHECK(egress::config::parse_log_format("json") == LogFormat::Json);
  for (const auto* format : {"", "JSON", "jsonl", "logfmt", "text "}) CHECK_FALSE(egress::config::parse_log_format(format));
  CHECK(load_config_file(ConfigFile("listen: 127.0.0.1:3128\n").path()).log_format == LogFormat::Text);
}

TEST_CASE("Durations parse in ms, s, m and h", "[config]") {
  struct Case {
    std::string text;
    std::optional<milliseconds> expected;
  };
  auto c = GENERATE(values<Case>({
      {"0ms", 0ms},
      {"250ms", 250ms},
      {"1s", 1000ms},
      {"10s", 10'000ms},
      {"5m", 300'000ms},
      {"1h", 3'600'000ms},
      {"1000000000h", milliseconds(1'000'000'000LL * 3'600'000)},  // the largest accepted value
      {"1000000001ms", std::nullopt},                               // over the cap
      {"99999999999999999999s", std::nullopt},                       // overflows 64 bits
      {"10", std::nullopt},
      {"5x", std::nullopt},
      {"-1s", std::nullopt},
      {"+1s", std::nullopt},
      {"", std::nullopt},
      {"s", std::nullopt},
      {"ms", std::nullopt},
      {" 1s", std::nullopt},
      {"1s ", std::nullopt},
      {"1 s", std::nullopt},
      {"1.5s", std::nullopt},
      {"1S", std::nullopt},
      {"1sec", std::nullopt},
      {"1ms5", std::nullopt},
  }));
  INFO("'" << c.text << "'");
  CHECK(parse_duration(c.text) == c.expected);
}

TEST_CASE("Listen addresses split into host and port", "[config]") {
  struct Case {
    std::string text;
    bool ok;
    std::string host;
    std::uint16_t port;
  };
  auto c = GENERATE(values<Case>({
      {"127.0.0.1:3128", true, "127.0.0.1", 3128},
      {"0.0.0.0:80", true, "0.0.0.0", 80},
      {"[::1]:8080", true, "::1", 8080},
      {"[::]:3128", true, "::", 3128},
      {"[fe80::1]:1", true, "fe80::1", 1},
      {"localhost:3128", true, "localhost", 3128},
      {"127.0.0.1:0", true, "127.0.0.1", 0},  // an ephemeral port (tests)
      {"127.0.0.1:65535", true, "127.0.0.1", 65535},
      {"127.0.0.1:65536", false, "", 0},
      {"127.0.0.1:99999999999", false, "", 0},
      {"127.0.0.1", false, "", 0},
      {"127.0.0.1:", false, "", 0},
      {":3128", false, "", 0},
      {"[]:3128", false, "", 0},
      {"[::1]", false, "", 0},
      {"[::1]:", false, "", 0},
      {"[::1", false, "", 0},
      {"::1:3128", false, "", 0},  // a bare v6 address: where does the port start?
      {"::1", false, "", 0},
      {"127.0.0.1:-1", false, "", 0},
      {"127.0.0.1:+80", false, "", 0},
      {"127.0.0.1:80x", false, "", 0},
      {"127.0.0.1: 80", false, "", 0},
      {"", false, "", 0},
  }));
  INFO("'" << c.text << "'");
  const auto parsed = parse_host_port(c.text);
  REQUIRE(parsed.has_value() == c.ok);
  if (parsed) {
    CHECK(parsed->host == c.host);
    CHECK(parsed->port == c.port);
  }
}

TEST_CASE("The tls section sets the inspection CA, upstream trust, cache and pool sizes", "[config]") {
  ConfigFile file("tls:\n  ca_cert: certs/ca.crt\n  ca_key: certs/ca.key\n  upstream_ca: corp.pem\n"
                  "  cert_cache_size: 50\n  upstream_pool_size: 0\n  upstream_pool_idle: 1500ms\n");
  const auto config = load_config_file(file.path());
  CHECK(config.tls.ca_cert == "certs/ca.crt");
  CHECK(config.tls.ca_key == "certs/ca.key");
  CHECK(config.tls.upstream_ca == "corp.pem");
  CHECK(config.tls.cert_cache_size == 50);
  CHECK(config.tls.upstream_pool_size == 0);  // 0 is allowed: no reuse
  CHECK(config.tls.upstream_pool_idle == std::chrono::milliseconds(1500));
  const ServeConfig defaults;
  CHECK(defaults.tls.ca_cert.empty());  // inspection is off by default
  CHECK(defaults.tls.upstream_pool_size == 64);
  CHECK(defaults.tls.upstream_pool_idle == std::chrono::seconds(4));
}

TEST_CASE("The audit section sets replication to a central store and the stream format", "[config]") {
  ConfigFile file("audit_stream_format: ocsf\naudit:\n  replicate_to: postgresql://egress@db/egress\n"
                  "  password_file: /etc/egress/pw\n  replica: egress-a\n  max_backlog: 50000\n");
  const auto config = load_config_file(file.path());
  CHECK(config.audit_stream_format == "ocsf");
  CHECK(config.replication.replicate_to == "postgresql://egress@db/egress");
  CHECK(config.replication.password_file == "/etc/egress/pw");
  CHECK(config.replication.replica == "egress-a");
  CHECK(config.replication.max_backlog == 50000);
  const ServeConfig defaults;
  CHECK(defaults.replication.replicate_to.empty());  // replication is off by default
  CHECK(defaults.replication.max_backlog == 0);
  CHECK(defaults.audit_stream_format == "rows");
}
