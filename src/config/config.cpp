// Loading `serve --config FILE`: YAML → ServeConfig, collecting every
// problem with its line so an operator fixes the file in one pass.
#include "egress/config/config.h"

#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <type_traits>

namespace egress::config {
namespace {

class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  void problem(const YAML::Node& node, const std::string& message) {
    problems_.push_back(file_ + ":" + std::to_string(node.Mark().line + 1) + ": " + message);
  }

  void check_keys(const YAML::Node& map, const std::set<std::string>& known, const std::string& where) {
    for (const auto& entry : map) {
      const auto key = entry.first.as<std::string>();
      if (known.count(key) == 0) {
        std::string list;
        for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
        problem(entry.first, "unknown key '" + key + "' in " + where + "; valid keys: " + list);
      }
    }
  }

  std::string string(const YAML::Node& node, const std::string& what) {
    if (!node.IsScalar()) {
      problem(node, what + " must be a string");
      return {};
    }
    return node.as<std::string>();
  }

  milliseconds duration(const YAML::Node& node, const std::string& what) {
    if (node.IsScalar()) {
      if (auto parsed = parse_duration(node.as<std::string>())) return *parsed;
    }
    problem(node, what + " must be a duration such as 250ms, 10s, 5m or 1h");
    return {};
  }

  std::uint64_t number(const YAML::Node& node, const std::string& what, std::uint64_t max) {
    std::uint64_t value = 0;
    const auto text = node.IsScalar() ? node.as<std::string>() : std::string{};
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || value > max) {
      problem(node, what + " must be a whole number from 0 to " + std::to_string(max));
      return 0;
    }
    return value;
  }

  bool boolean(const YAML::Node& node, const std::string& what) {
    const auto text = node.IsScalar() ? node.as<std::string>() : std::string{};
    if (text == "true") return true;
    if (text != "false") problem(node, what + " must be true or false");
    return false;
  }

  std::vector<std::string> strings(const YAML::Node& node, const std::string& what) {
    std::vector<std::string> out;
    if (!node.IsSequence()) {
      problem(node, what + " must be a list of strings");
      return out;
    }
    for (const auto& item : node) out.push_back(string(item, what + " entry"));
    return out;
  }

  const std::vector<std::string>& problems() const { return problems_; }

 private:
  std::string file_;
  std::vector<std::string> problems_;
};

void read_dns(Reader& r, const YAML::Node& node, DnsConfig& dns) {
  r.check_keys(node, {"servers", "hosts", "hosts_file", "timeout", "min_ttl", "max_ttl", "negative_ttl"}, "dns");
  if (node["servers"]) dns.servers = r.strings(node["servers"], "dns.servers");
  if (const auto hosts = node["hosts"]) {
    if (!hosts.IsMap()) {
      r.problem(hosts, "dns.hosts must map names to lists of addresses");
    } else {
      for (const auto& entry : hosts) {
        dns.hosts[entry.first.as<std::string>()] = r.strings(entry.second, "dns.hosts." + entry.first.as<std::string>());
      }
    }
  }
  if (node["hosts_file"]) dns.use_hosts_file = r.boolean(node["hosts_file"], "dns.hosts_file");
  if (node["timeout"]) dns.timeout = r.duration(node["timeout"], "dns.timeout");
  const auto seconds = [&](const char* key, std::chrono::seconds& out) {
    if (node[key]) out = std::chrono::duration_cast<std::chrono::seconds>(r.duration(node[key], std::string("dns.") + key));
  };
  seconds("min_ttl", dns.min_ttl);
  seconds("max_ttl", dns.max_ttl);
  seconds("negative_ttl", dns.negative_ttl);
}

void read_limits(Reader& r, const YAML::Node& node, Limits& limits) {
  r.check_keys(node,
               {"header_bytes", "header_timeout", "idle_timeout", "tunnel_idle_timeout", "connect_timeout",
                "upstream_timeout", "shutdown_grace", "max_target_length", "max_header_count", "max_body_bytes",
                "max_connections", "max_connections_per_client"},
               "limits");
  if (node["header_bytes"]) limits.header_bytes = r.number(node["header_bytes"], "limits.header_bytes", 1 << 20);
  // Counts that must be at least 1: a zero would refuse every request or
  // connection, which is never what an operator means.
  const auto positive = [&r, &node](const char* key, std::uint64_t max, auto& out) {
    if (!node[key]) return;
    const auto what = std::string("limits.") + key;
    const auto value = r.number(node[key], what, max);
    if (value == 0) {  // a malformed value is already reported, as 0
      if (node[key].IsScalar() && node[key].Scalar() == "0") r.problem(node[key], what + " must be at least 1");
      return;
    }
    out = static_cast<std::remove_reference_t<decltype(out)>>(value);
  };
  positive("max_target_length", 1 << 20, limits.max_target_length);
  positive("max_header_count", 10'000, limits.max_header_count);
  positive("max_connections", 1'000'000, limits.max_connections);
  positive("max_connections_per_client", 1'000'000, limits.max_connections_per_client);
  if (node["max_body_bytes"]) {
    limits.max_body_bytes = r.number(node["max_body_bytes"], "limits.max_body_bytes", std::uint64_t{1} << 50);
  }
  const std::pair<const char*, milliseconds*> durations[] = {
      {"header_timeout", &limits.header_timeout},   {"idle_timeout", &limits.idle_timeout},
      {"tunnel_idle_timeout", &limits.tunnel_idle_timeout}, {"connect_timeout", &limits.connect_timeout},
      {"upstream_timeout", &limits.upstream_timeout}, {"shutdown_grace", &limits.shutdown_grace},
  };
  for (const auto& [key, out] : durations) {
    if (node[key]) *out = r.duration(node[key], std::string("limits.") + key);
  }
}

void read_tls(Reader& r, const YAML::Node& node, TlsConfig& tls) {
  r.check_keys(node,
               {"ca_cert", "ca_key", "upstream_ca", "cert_cache_size", "upstream_pool_size", "upstream_pool_idle"},
               "tls");
  if (node["ca_cert"]) tls.ca_cert = r.string(node["ca_cert"], "tls.ca_cert");
  if (node["ca_key"]) tls.ca_key = r.string(node["ca_key"], "tls.ca_key");
  if (node["upstream_ca"]) tls.upstream_ca = r.string(node["upstream_ca"], "tls.upstream_ca");
  if (node["cert_cache_size"]) {
    tls.cert_cache_size = r.number(node["cert_cache_size"], "tls.cert_cache_size", 1'000'000);
    if (tls.cert_cache_size == 0) r.problem(node["cert_cache_size"], "tls.cert_cache_size must be at least 1");
  }
  if (node["upstream_pool_size"]) {
    tls.upstream_pool_size = r.number(node["upstream_pool_size"], "tls.upstream_pool_size", 100'000);
  }
  if (node["upstream_pool_idle"]) {
    tls.upstream_pool_idle = r.duration(node["upstream_pool_idle"], "tls.upstream_pool_idle");
  }
  if (tls.ca_cert.empty() != tls.ca_key.empty()) {
    r.problem(node, "tls needs both ca_cert and ca_key (or neither, for no inspection)");
  }
}

void read_audit(Reader& r, const YAML::Node& node, AuditReplication& rep) {
  r.check_keys(node, {"replicate_to", "password_file", "replica", "max_backlog"}, "audit");
  if (node["replicate_to"]) rep.replicate_to = r.string(node["replicate_to"], "audit.replicate_to");
  if (node["password_file"]) rep.password_file = r.string(node["password_file"], "audit.password_file");
  if (node["replica"]) rep.replica = r.string(node["replica"], "audit.replica");
  if (node["max_backlog"]) rep.max_backlog = r.number(node["max_backlog"], "audit.max_backlog", std::uint64_t{1} << 40);
}

void read_console(Reader& r, const YAML::Node& node, ConsoleConfig& console) {
  r.check_keys(node, {"listen", "secret_hashes", "secure_cookie", "session_ttl"}, "console");
  if (node["listen"]) {
    console.listen = r.string(node["listen"], "console.listen");
    if (console.listen == "off") console.listen.clear();
    if (!console.listen.empty() && !parse_host_port(console.listen)) {
      r.problem(node["listen"], "console.listen must be HOST:PORT (e.g. 127.0.0.1:9130), or off");
    }
  }
  if (node["secret_hashes"]) console.secret_hashes = r.strings(node["secret_hashes"], "console.secret_hashes");
  for (std::size_t i = 0; i < console.secret_hashes.size(); ++i) {
    const auto& hash = console.secret_hashes[i];
    const bool ok = hash.size() == 71 && hash.rfind("sha256:", 0) == 0 &&
                    hash.find_first_not_of("0123456789abcdef", 7) == std::string::npos;
    if (!ok) {
      r.problem(node["secret_hashes"][i],
                "console.secret_hashes entries must be sha256:<64 lower-case hex>; make one with "
                "`egress policy hash-token`");
    }
  }
  if (node["secure_cookie"]) console.secure_cookie = r.boolean(node["secure_cookie"], "console.secure_cookie");
  if (node["session_ttl"]) console.session_ttl = r.duration(node["session_ttl"], "console.session_ttl");
}

void read_root(Reader& r, const YAML::Node& root, ServeConfig& config) {
  r.check_keys(root,
               {"listen", "admin_listen", "policy", "policy_poll_interval", "mode", "audit_db", "audit_sync", "audit_stream", "audit_stream_format", "secrets_dir", "audit", "retention", "threads", "dns", "limits", "tls", "log_level", "log_format", "console"},
               "the configuration");
  if (root["listen"]) {
    config.listen = r.string(root["listen"], "listen");
    if (!parse_host_port(config.listen)) r.problem(root["listen"], "listen must be HOST:PORT, e.g. 127.0.0.1:3128");
  }
  if (root["admin_listen"]) {
    config.admin_listen = r.string(root["admin_listen"], "admin_listen");
    if (!config.admin_listen.empty() && config.admin_listen != "off" && !parse_host_port(config.admin_listen)) {
      r.problem(root["admin_listen"], "admin_listen must be HOST:PORT (e.g. 127.0.0.1:9128), or off");
    }
  }
  if (root["policy"]) config.policy_file = r.string(root["policy"], "policy");
  if (root["policy_poll_interval"]) {
    config.policy_poll_interval = r.duration(root["policy_poll_interval"], "policy_poll_interval");
  }
  if (root["mode"]) {
    config.mode = policy::mode_from_string(r.string(root["mode"], "mode"));
    if (!config.mode) r.problem(root["mode"], "mode must be production, self-hosted or developer");
  }
  if (root["audit_db"]) config.audit_db = r.string(root["audit_db"], "audit_db");
  if (root["audit_sync"]) {
    const auto sync = r.string(root["audit_sync"], "audit_sync");
    if (sync == "full") config.audit_sync = AuditSync::Full;
    else if (sync != "normal") r.problem(root["audit_sync"], "audit_sync must be normal or full");
  }
  if (root["audit_stream"]) config.audit_stream = r.string(root["audit_stream"], "audit_stream");
  if (root["secrets_dir"]) config.secrets_dir = r.string(root["secrets_dir"], "secrets_dir");
  if (root["audit_stream_format"]) {
    config.audit_stream_format = r.string(root["audit_stream_format"], "audit_stream_format");
    if (config.audit_stream_format != "rows" && config.audit_stream_format != "ocsf") {
      r.problem(root["audit_stream_format"], "audit_stream_format must be rows or ocsf");
    }
  }
  if (root["retention"]) config.retention = r.duration(root["retention"], "retention");
  if (root["threads"]) config.threads = static_cast<unsigned>(r.number(root["threads"], "threads", 256));
  // A section that is not a map would make yaml-cpp throw on lookup; say
  // what is wrong instead. An empty section ("dns:") keeps the defaults.
  const auto section = [&r](const YAML::Node& node, const char* name) {
    if (!node || node.IsNull()) return false;
    if (!node.IsMap()) r.problem(node, std::string(name) + " must be a map of settings");
    return node.IsMap();
  };
  if (section(root["dns"], "dns")) read_dns(r, root["dns"], config.dns);
  if (section(root["limits"], "limits")) read_limits(r, root["limits"], config.limits);
  if (section(root["tls"], "tls")) read_tls(r, root["tls"], config.tls);
  if (section(root["audit"], "audit")) read_audit(r, root["audit"], config.replication);
  if (section(root["console"], "console")) read_console(r, root["console"], config.console);
  if (root["log_level"]) {
    config.log_level = r.string(root["log_level"], "log_level");
    if (!valid_log_level(config.log_level)) {
      r.problem(root["log_level"], "log_level must be trace, debug, info, warn, error or off");
    }
  }
  if (root["log_format"]) {
    const auto format = parse_log_format(r.string(root["log_format"], "log_format"));
    if (format) config.log_format = *format;
    else r.problem(root["log_format"], "log_format must be text or json");
  }
}

}  // namespace

bool valid_log_level(std::string_view level) {
  for (const std::string_view known : {"trace", "debug", "info", "warn", "error", "off"}) {
    if (level == known) return true;
  }
  return false;
}

std::optional<LogFormat> parse_log_format(std::string_view text) {
  if (text == "text") return LogFormat::Text;
  if (text == "json") return LogFormat::Json;
  return std::nullopt;
}

std::optional<milliseconds> parse_duration(std::string_view text) {
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end == text.data()) return std::nullopt;
  const std::string_view unit(end, static_cast<std::size_t>(text.data() + text.size() - end));
  if (value > 1'000'000'000) return std::nullopt;
  if (unit == "ms") return milliseconds(value);
  if (unit == "s") return milliseconds(value * 1000);
  if (unit == "m") return milliseconds(value * 60'000);
  if (unit == "h") return milliseconds(value * 3'600'000);
  if (unit == "d") return milliseconds(value * 86'400'000);  // retention: "90d"
  return std::nullopt;
}

std::optional<HostPort> parse_host_port(std::string_view text) {
  HostPort out;
  std::string_view port_text;
  if (text.starts_with('[')) {
    const auto close = text.find("]:");
    if (close == std::string_view::npos) return std::nullopt;
    out.host = std::string(text.substr(1, close - 1));
    port_text = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos || text.find(':') != colon) return std::nullopt;
    out.host = std::string(text.substr(0, colon));
    port_text = text.substr(colon + 1);
  }
  unsigned port = 0;
  const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (out.host.empty() || port_text.empty() || ec != std::errc{} || end != port_text.data() + port_text.size() ||
      port > 65535) {
    return std::nullopt;
  }
  out.port = static_cast<std::uint16_t>(port);
  return out;
}

ServeConfig load_config_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError(path + ":0: cannot read the configuration file: " + std::strerror(errno));
  std::stringstream text;
  text << in.rdbuf();

  ServeConfig config;
  Reader reader(path);
  try {
    const auto root = YAML::Load(text.str());
    if (!root.IsMap()) throw ConfigError(path + ":1: the configuration must be a YAML map of settings");
    read_root(reader, root, config);
  } catch (const YAML::Exception& e) {
    throw ConfigError(path + ":" + std::to_string(e.mark.line + 1) + ": YAML syntax error: " + e.msg);
  }
  if (!reader.problems().empty()) {
    std::string all;
    for (const auto& p : reader.problems()) all += (all.empty() ? "" : "\n") + p;
    throw ConfigError(all);
  }
  return config;
}

}  // namespace egress::config
