// The metrics registry: counting on the request path, rendering the
// Prometheus text format (0.0.4) at scrape time, and readiness.
#include "egress/admin/metrics.h"

#include <charconv>

namespace egress::admin {
namespace {

template <typename Enum, std::size_t N>
std::optional<std::size_t> index_of(std::string_view text, const std::array<Enum, N>& values) {
  for (std::size_t i = 0; i < N; ++i) {
    if (policy::to_string(values[i]) == text) return i;
  }
  return std::nullopt;
}

constexpr std::array<policy::Mode, 3> kModesList = {policy::Mode::Production, policy::Mode::SelfHosted,
                                                policy::Mode::Developer};
constexpr std::array<policy::RequestKind, 3> kKindsList = {policy::RequestKind::Http, policy::RequestKind::Connect,
                                                       policy::RequestKind::Inspected};
constexpr std::array<policy::Verdict, 3> kVerdictsList = {policy::Verdict::Allow, policy::Verdict::Deny,
                                                      policy::Verdict::Report};
constexpr std::array<dns::ResolveStatus, 6> kStatusesList = {dns::ResolveStatus::Ok,       dns::ResolveStatus::NxDomain,
                                                         dns::ResolveStatus::NoData,   dns::ResolveStatus::ServFail,
                                                         dns::ResolveStatus::Timeout, dns::ResolveStatus::Error};

/// A label value, escaped as the text format requires (\\, \", \n).
void append_label_value(std::string& out, std::string_view value) {
  for (const char c : value) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

/// The shortest text that reads back as the same double ("0.0005", not
/// "0.00050000000000000001"), as Prometheus clients write le labels.
void append_number(std::string& out, double value) {
  char buffer[32];
  const auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, value, std::chars_format::general);
  out.append(buffer, ec == std::errc{} ? end : buffer);
}

void append_number(std::string& out, std::uint64_t value) { out += std::to_string(value); }
void append_number(std::string& out, std::int64_t value) { out += std::to_string(value); }

/// `egress_NAME{k="v",...} VALUE\n`; labels as alternating key, value.
template <typename Value>
void sample(std::string& out, std::string_view name, std::initializer_list<std::string_view> labels, Value value) {
  out += "egress_";
  out += name;
  if (labels.size() > 0) {
    out += '{';
    bool first = true;
    for (auto it = labels.begin(); it != labels.end(); it += 2) {
      if (!first) out += ',';
      first = false;
      out += *it;
      out += "=\"";
      append_label_value(out, *(it + 1));
      out += '"';
    }
    out += '}';
  }
  out += ' ';
  append_number(out, value);
  out += '\n';
}

std::string_view type_name(MetricType type) {
  switch (type) {
    case MetricType::Counter: return "counter";
    case MetricType::Gauge: return "gauge";
    case MetricType::Histogram: return "histogram";
  }
  return "untyped";
}

/// HELP text escaping: backslash and newline only.
void append_help(std::string& out, std::string_view help) {
  for (const char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

std::uint64_t load(const std::atomic<std::uint64_t>& counter) { return counter.load(std::memory_order_relaxed); }

std::size_t upstream_index(Metrics::UpstreamKind kind, Metrics::UpstreamSource source) {
  return static_cast<std::size_t>(kind) * 2 + static_cast<std::size_t>(source);
}

}  // namespace

ProbeGuard& ProbeGuard::operator=(ProbeGuard&& other) noexcept {
  if (this != &other) {
    if (clear_) clear_();
    clear_ = std::exchange(other.clear_, nullptr);
  }
  return *this;
}

ProbeGuard::~ProbeGuard() {
  if (clear_) clear_();
}

Metrics::Metrics() = default;

void Metrics::count_request(const audit::Event& event, policy::Reason shown_reason) {
  constexpr auto relaxed = std::memory_order_relaxed;
  bytes_up_.fetch_add(static_cast<std::uint64_t>(event.bytes_up.value_or(0)), relaxed);
  bytes_down_.fetch_add(static_cast<std::uint64_t>(event.bytes_down.value_or(0)), relaxed);
  const auto mode = index_of(event.mode, kModesList);
  const auto kind = index_of(event.kind, kKindsList);
  const auto verdict = index_of(event.decision, kVerdictsList);
  const auto reason = policy::reason_from_string(event.reason);
  // Every attempt carries a decision or a refusal before it closes; an
  // event without one would be a proxy bug and is left out rather than
  // counted under a made-up label.
  if (!mode || !kind || !verdict || !reason) return;
  const auto r = static_cast<std::size_t>(*reason);
  requests_[((*mode * kKindsList.size() + *kind) * kVerdictsList.size() + *verdict) * kReasons + r].fetch_add(1, relaxed);
  if (shown_reason != *reason) failures_[static_cast<std::size_t>(shown_reason)].fetch_add(1, relaxed);
  role_counters(event.role).by_verdict[*verdict].fetch_add(1, relaxed);
}

Metrics::RoleCounters& Metrics::role_counters(const std::string& role) {
  {
    std::shared_lock lock(roles_mutex_);
    if (const auto it = roles_.find(role); it != roles_.end()) return *it->second;
  }
  std::unique_lock lock(roles_mutex_);
  const std::string key = roles_.size() >= kMaxRoles && !roles_.count(role) ? std::string("_other") : role;
  auto& slot = roles_[key];
  if (!slot) slot = std::make_unique<RoleCounters>();
  return *slot;
}

ProbeGuard Metrics::track_tunnel() {
  active_tunnels_.fetch_add(1, std::memory_order_relaxed);
  return ProbeGuard([this] { active_tunnels_.fetch_sub(1, std::memory_order_relaxed); });
}

void Metrics::count_tunnel_relay(TunnelRelay relay) {
  tunnel_relays_[static_cast<std::size_t>(relay)].fetch_add(1, std::memory_order_relaxed);
}

void Metrics::count_yielded_connection() { yielded_connections_.fetch_add(1, std::memory_order_relaxed); }

void Metrics::count_cert_cache(bool hit) {
  (hit ? cert_hits_ : cert_misses_).fetch_add(1, std::memory_order_relaxed);
}

void Metrics::count_tls_handshake_failure(TlsStage stage) {
  tls_failures_[static_cast<std::size_t>(stage)].fetch_add(1, std::memory_order_relaxed);
}

void Metrics::count_upstream(UpstreamKind kind, UpstreamSource source) {
  upstream_connections_[upstream_index(kind, source)].fetch_add(1, std::memory_order_relaxed);
}

void Metrics::count_lookup(const dns::Resolution& resolution, std::chrono::nanoseconds took) {
  constexpr auto relaxed = std::memory_order_relaxed;
  if (resolution.from_cache) {
    dns_hits_.fetch_add(1, relaxed);
    return;
  }
  dns_misses_.fetch_add(1, relaxed);
  const auto status = static_cast<std::size_t>(resolution.status);
  if (status < kDnsStatuses) dns_lookups_[status].fetch_add(1, relaxed);
  dns_last_status_.store(static_cast<int>(status), relaxed);
  const double seconds = std::chrono::duration<double>(took).count();
  std::size_t bucket = 0;
  while (bucket < kDnsBuckets.size() && seconds > kDnsBuckets[bucket]) ++bucket;
  dns_buckets_[bucket].fetch_add(1, relaxed);
  dns_nanos_.fetch_add(static_cast<std::uint64_t>(took.count()), relaxed);
}

ProbeGuard Metrics::watch_serve(std::function<ServeState()> probe) {
  std::lock_guard lock(probes_mutex_);
  serve_probe_ = std::move(probe);
  return ProbeGuard([this] {
    std::lock_guard lock(probes_mutex_);
    serve_probe_ = nullptr;
  });
}

ProbeGuard Metrics::watch_audit(std::function<AuditState()> probe) {
  std::lock_guard lock(probes_mutex_);
  audit_probe_ = std::move(probe);
  return ProbeGuard([this] {
    std::lock_guard lock(probes_mutex_);
    audit_probe_ = nullptr;
  });
}

Metrics::ProbeStates Metrics::probe() const {
  // The probes are called under the lock so their owners cannot go away
  // meanwhile (their guards take the same lock).
  ProbeStates states;
  std::lock_guard lock(probes_mutex_);
  if (serve_probe_) states.serve = serve_probe_();
  if (audit_probe_) states.audit = audit_probe_();
  return states;
}

std::string Metrics::render() const {
  const auto [serve, audit] = probe();
  std::string out;
  out.reserve(8192);
  for (const auto& info : kMetrics) {
    out += "# HELP egress_";
    out += info.name;
    out += ' ';
    append_help(out, info.help);
    out += "\n# TYPE egress_";
    out += info.name;
    out += ' ';
    out += type_name(info.type);
    out += '\n';
    write_family(out, info, serve ? &*serve : nullptr, audit ? &*audit : nullptr);
  }
  return out;
}

// One case per family: where its samples come from. Families whose label
// sets are large (requests, failures) show only the non-zero series; the
// others show every series, zeros included.
void Metrics::write_family(std::string& out, const MetricInfo& info, const ServeState* serve,
                           const AuditState* audit) const {
  const auto name = info.name;
  const AuditState no_audit;
  const auto& a = audit ? *audit : no_audit;
  switch (info.id) {
    case MetricId::Requests:
      for (std::size_t m = 0; m < kModesList.size(); ++m) {
        for (std::size_t k = 0; k < kKindsList.size(); ++k) {
          for (std::size_t v = 0; v < kVerdictsList.size(); ++v) {
            for (std::size_t r = 0; r < kReasons; ++r) {
              const auto value = load(requests_[((m * kKindsList.size() + k) * kVerdictsList.size() + v) * kReasons + r]);
              if (value == 0) continue;
              sample(out, name,
                     {"mode", policy::to_string(kModesList[m]), "kind", policy::to_string(kKindsList[k]), "verdict",
                      policy::to_string(kVerdictsList[v]), "reason", policy::to_string(static_cast<policy::Reason>(r))},
                     value);
            }
          }
        }
      }
      break;
    case MetricId::RequestsByRole: {
      std::shared_lock lock(roles_mutex_);
      for (const auto& [role, counters] : roles_) {
        for (std::size_t v = 0; v < kVerdictsList.size(); ++v) {
          const auto value = load(counters->by_verdict[v]);
          if (value == 0) continue;
          sample(out, name, {"role", role, "verdict", policy::to_string(kVerdictsList[v])}, value);
        }
      }
      break;
    }
    case MetricId::Failures:
      for (std::size_t r = 0; r < kReasons; ++r) {
        if (const auto value = load(failures_[r])) {
          sample(out, name, {"reason", policy::to_string(static_cast<policy::Reason>(r))}, value);
        }
      }
      break;
    case MetricId::ActiveConnections:
      sample(out, name, {}, serve ? serve->active_connections : std::int64_t{0});
      break;
    case MetricId::ThreadConnections:
      if (serve)
        for (std::size_t i = 0; i < serve->thread_connections.size(); ++i)
          sample(out, name, {"thread", std::to_string(i)}, serve->thread_connections[i]);
      break;
    case MetricId::ActiveTunnels:
      sample(out, name, {}, static_cast<std::int64_t>(active_tunnels_.load(std::memory_order_relaxed)));
      break;
    case MetricId::BytesUp: sample(out, name, {}, load(bytes_up_)); break;
    case MetricId::BytesDown: sample(out, name, {}, load(bytes_down_)); break;
    case MetricId::DnsCacheHits: sample(out, name, {}, load(dns_hits_)); break;
    case MetricId::DnsCacheMisses: sample(out, name, {}, load(dns_misses_)); break;
    case MetricId::DnsLookups:
      for (std::size_t s = 0; s < kStatusesList.size(); ++s) {
        sample(out, name, {"status", dns::to_string(kStatusesList[s])}, load(dns_lookups_[s]));
      }
      break;
    case MetricId::DnsLookupDuration: {
      std::uint64_t cumulative = 0;
      const std::string bucket_name = std::string(name) + "_bucket";
      for (std::size_t b = 0; b < kDnsBuckets.size(); ++b) {
        cumulative += load(dns_buckets_[b]);
        std::string le;
        append_number(le, kDnsBuckets[b]);
        sample(out, bucket_name, {"le", le}, cumulative);
      }
      cumulative += load(dns_buckets_[kDnsBuckets.size()]);
      sample(out, bucket_name, {"le", "+Inf"}, cumulative);
      sample(out, std::string(name) + "_sum", {}, static_cast<double>(load(dns_nanos_)) / 1e9);
      sample(out, std::string(name) + "_count", {}, cumulative);
      break;
    }
    case MetricId::AuditHealthy: sample(out, name, {}, std::uint64_t{audit && a.healthy ? 1u : 0u}); break;
    case MetricId::AuditQueueDepth: sample(out, name, {}, std::uint64_t{a.stats.queue_depth}); break;
    case MetricId::AuditCommits: sample(out, name, {}, a.stats.commits); break;
    case MetricId::AuditCommittedEvents: sample(out, name, {}, a.stats.committed_events); break;
    case MetricId::AuditCommitFailures: sample(out, name, {}, a.stats.commit_failures); break;
    case MetricId::AuditDroppedEvents: sample(out, name, {}, a.stats.dropped_events); break;
    case MetricId::AuditLastCommitDuration: sample(out, name, {}, a.stats.last_commit_ms / 1000.0); break;
    case MetricId::AuditReplicationConnected:
      if (a.replication) sample(out, name, {}, std::uint64_t{a.replication->connected ? 1u : 0u});
      break;
    case MetricId::AuditReplicationBacklog:
      if (a.replication) sample(out, name, {}, a.replication->backlog_rows);
      break;
    case MetricId::AuditReplicationLag:
      if (a.replication) sample(out, name, {}, a.replication->lag_seconds);
      break;
    case MetricId::AuditReplicationShipped:
      if (a.replication) sample(out, name, {}, a.replication->shipped_rows);
      break;
    case MetricId::AuditReplicationFailures:
      if (a.replication) sample(out, name, {}, a.replication->failures);
      break;
    case MetricId::TunnelsRelayed:
      sample(out, name, {"relay", "splice"}, load(tunnel_relays_[static_cast<std::size_t>(TunnelRelay::Splice)]));
      sample(out, name, {"relay", "copy"}, load(tunnel_relays_[static_cast<std::size_t>(TunnelRelay::Copy)]));
      break;
    case MetricId::ConnectionsYielded: sample(out, name, {}, load(yielded_connections_)); break;
    case MetricId::TlsCertCacheHits: sample(out, name, {}, load(cert_hits_)); break;
    case MetricId::TlsCertCacheMisses: sample(out, name, {}, load(cert_misses_)); break;
    case MetricId::TlsHandshakeFailures:
      sample(out, name, {"stage", "client"}, load(tls_failures_[static_cast<std::size_t>(TlsStage::Client)]));
      sample(out, name, {"stage", "upstream"}, load(tls_failures_[static_cast<std::size_t>(TlsStage::Upstream)]));
      break;
    case MetricId::HttpUpstreamConnections:
    case MetricId::TlsUpstreamConnections: {
      const auto kind = info.id == MetricId::HttpUpstreamConnections ? UpstreamKind::Http : UpstreamKind::Tls;
      sample(out, name, {"reused", "no"}, load(upstream_connections_[upstream_index(kind, UpstreamSource::New)]));
      sample(out, name, {"reused", "yes"},
             load(upstream_connections_[upstream_index(kind, UpstreamSource::Pooled)]));
      break;
    }
    case MetricId::PolicyLoaded:
      sample(out, name, {}, std::uint64_t{serve && serve->policy_loaded ? 1u : 0u});
      break;
    case MetricId::PolicyReloads:
      sample(out, name, {"result", "success"}, serve ? serve->policy_reloads : 0);
      sample(out, name, {"result", "failure"}, serve ? serve->policy_reload_failures : 0);
      break;
  }
}

Readiness Metrics::readiness() const {
  const auto [serve, audit] = probe();
  std::string why;
  const auto add = [&why](std::string_view reason) {
    if (!why.empty()) why += "; ";
    why += reason;
  };
  if (!serve || !serve->policy_loaded) add("no policy loaded");
  if (!audit) {
    add("no audit store");
  } else if (!audit->healthy) {
    add("the audit store cannot record events (see the log: disk full or unwritable)");
  }
  // Replication trouble alone keeps serve ready (events wait locally),
  // unless the operator bounded the backlog.
  if (audit && audit->replication && audit->max_backlog > 0 &&
      audit->replication->backlog_rows > static_cast<std::int64_t>(audit->max_backlog)) {
    add("the audit replication backlog (" + std::to_string(audit->replication->backlog_rows) +
        " events) exceeds audit.max_backlog " + std::to_string(audit->max_backlog));
  }
  const int last = dns_last_status_.load(std::memory_order_relaxed);
  if (last >= 0) {
    const auto status = static_cast<dns::ResolveStatus>(last);
    const bool answered = status == dns::ResolveStatus::Ok || status == dns::ResolveStatus::NxDomain ||
                          status == dns::ResolveStatus::NoData;
    if (!answered) add("the last DNS lookup failed (" + std::string(dns::to_string(status)) + ")");
  }
  if (why.empty()) return {true, "ready"};
  return {false, "not ready: " + why};
}

Metrics& metrics() {
  static Metrics registry;
  return registry;
}

}  // namespace egress::admin
