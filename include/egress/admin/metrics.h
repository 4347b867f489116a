// Process metrics for the admin listener (/metrics, /readyz). Every metric
// family is declared once, in EGRESS_ADMIN_METRICS below; the Prometheus
// names, HELP and TYPE lines are generated from that table, and the reason
// label's values from EGRESS_REASONS (policy/reason.h).
//
// The request path only touches atomics (relaxed fetch_add into fixed
// arrays indexed by enum values), except the by-role family; see
// Metrics::count_request. Values owned by other components (the audit
// store's queue and commits, the policy reload counters in the proxy's
// Shared state, the open connections) are read at scrape time through
// probes that their owners register for as long as they live.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "egress/audit/event.h"
#include "egress/audit/replicator.h"
#include "egress/audit/store.h"
#include "egress/dns/resolver.h"
#include "egress/policy/policy.h"
#include "egress/policy/reason.h"

namespace egress::admin {

enum class MetricType { Counter, Gauge, Histogram };

// X(Id, Type, "component_name", "label,names", "help"). Exposed as
// egress_<component_name>. Labels are listed for the HELP reader and the
// tests; the values come from the enums named in the comments.
#define EGRESS_ADMIN_METRICS(X)                                                                                  \
  X(Requests, Counter, "proxy_requests_total", "mode,kind,verdict,reason",                                       \
    "Attempts (HTTP requests and CONNECT tunnels) by mode, kind, verdict and decision reason, counted when they " \
    "close")                                                                                                     \
  X(RequestsByRole, Counter, "proxy_requests_by_role_total", "role,verdict",                                     \
    "Attempts by worker role (\"\" when none) and verdict, counted when they close")                             \
  X(Failures, Counter, "proxy_failures_total", "reason",                                                         \
    "Attempts that failed after their decision (upstream unreachable or timed out, audit unavailable)")          \
  X(ActiveConnections, Gauge, "proxy_active_connections", "", "Open worker connections")                         \
  X(ThreadConnections, Gauge, "proxy_thread_connections", "thread",                                             \
    "Open worker connections per proxy thread (each new one goes to the thread with the fewest)")               \
  X(ActiveTunnels, Gauge, "proxy_active_tunnels", "", "CONNECT tunnels currently relaying")                      \
  X(TunnelsRelayed, Counter, "proxy_tunnels_relayed_total", "relay",                                            \
    "Plain CONNECT tunnels by how their bytes were relayed: splice (the kernel moves them through a pipe) or "   \
    "copy (read and written through a buffer, where splice is not possible)")                                   \
  X(ConnectionsYielded, Counter, "proxy_connections_yielded_total", "",                                          \
    "Idle worker connections closed at a connection limit to give their place to a new one")                    \
  X(BytesUp, Counter, "proxy_bytes_up_total", "", "Bytes sent from workers to upstreams (at attempt close)")    \
  X(BytesDown, Counter, "proxy_bytes_down_total", "", "Bytes sent to workers (at attempt close)")               \
  X(DnsCacheHits, Counter, "dns_cache_hits_total", "", "Name lookups answered from the resolver cache")          \
  X(DnsCacheMisses, Counter, "dns_cache_misses_total", "",                                                       \
    "Name lookups not answered from the cache (DNS queries and static host entries)")                           \
  X(DnsLookups, Counter, "dns_lookups_total", "status", "Name lookups not answered from the cache, by outcome")  \
  X(DnsLookupDuration, Histogram, "dns_lookup_duration_seconds", "",                                             \
    "Duration of name lookups not answered from the cache")                                                      \
  X(AuditHealthy, Gauge, "audit_healthy", "", "1 while audit commits succeed, 0 after a failed commit")         \
  X(AuditQueueDepth, Gauge, "audit_queue_depth", "", "Audit events waiting for the writer")                      \
  X(AuditCommits, Counter, "audit_commits_total", "", "Audit transactions committed")                            \
  X(AuditCommittedEvents, Counter, "audit_committed_events_total", "", "Audit events committed")                 \
  X(AuditCommitFailures, Counter, "audit_commit_failures_total", "", "Audit transactions that failed")           \
  X(AuditDroppedEvents, Counter, "audit_dropped_events_total", "", "Audit events refused: queue full")           \
  X(AuditLastCommitDuration, Gauge, "audit_last_commit_duration_seconds", "",                                    \
    "Duration of the latest audit transaction (group commit)")                                                   \
  X(AuditReplicationConnected, Gauge, "audit_replication_connected", "",                                         \
    "1 while the shipper reaches the central PostgreSQL store (absent without audit.replicate_to)")             \
  X(AuditReplicationBacklog, Gauge, "audit_replication_backlog_rows", "",                                        \
    "Audit events committed locally and not yet in the central store")                                          \
  X(AuditReplicationLag, Gauge, "audit_replication_lag_seconds", "",                                             \
    "Age of the oldest audit event not yet in the central store (0 when none waits)")                           \
  X(AuditReplicationShipped, Counter, "audit_replication_shipped_rows_total", "",                                \
    "Audit events this process inserted into the central store")                                                \
  X(AuditReplicationFailures, Counter, "audit_replication_failures_total", "",                                   \
    "Failed connects or batches to the central store")                                                          \
  X(TlsCertCacheHits, Counter, "tls_cert_cache_hits_total", "",                                                  \
    "Inspected tunnels whose leaf certificate came from the per-thread cache")                                   \
  X(TlsCertCacheMisses, Counter, "tls_cert_cache_misses_total", "",                                              \
    "Leaf certificates minted for inspected tunnels (cache misses)")                                             \
  X(TlsHandshakeFailures, Counter, "tls_handshake_failures_total", "stage",                                      \
    "Failed TLS handshakes in inspected tunnels, by stage (client, upstream)")                                   \
  X(HttpUpstreamConnections, Counter, "proxy_upstream_connections_total", "reused",                              \
    "Upstream TCP connections of plain HTTP requests: new, or reused from the per-thread pool")                  \
  X(TlsUpstreamConnections, Counter, "tls_upstream_connections_total", "reused",                                 \
    "Upstream TLS connections of inspected tunnels: new (handshake done) or reused from the per-thread pool")    \
  X(PolicyLoaded, Gauge, "policy_loaded", "", "1 while a policy is in force")                                    \
  X(PolicyReloads, Counter, "policy_reloads_total", "result", "Policy reloads by result (success, failure)")

enum class MetricId {
#define EGRESS_ADMIN_METRIC_ENUM(id, type, name, labels, help) id,
  EGRESS_ADMIN_METRICS(EGRESS_ADMIN_METRIC_ENUM)
#undef EGRESS_ADMIN_METRIC_ENUM
};

struct MetricInfo {
  MetricId id;
  MetricType type;
  std::string_view name;    // without the "egress_" prefix
  std::string_view labels;  // "a,b" or ""
  std::string_view help;
};

inline constexpr MetricInfo kMetrics[] = {
#define EGRESS_ADMIN_METRIC_INFO(id, type, name, labels, help) {MetricId::id, MetricType::type, name, labels, help},
    EGRESS_ADMIN_METRICS(EGRESS_ADMIN_METRIC_INFO)
#undef EGRESS_ADMIN_METRIC_INFO
};

/// Upper bounds (seconds) of the DNS lookup histogram buckets; +Inf is implied.
inline constexpr std::array<double, 12> kDnsBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                       0.05,   0.1,   0.25,   0.5,   1,     2.5};

/// Read at scrape time from the running server (proxy::serve).
struct ServeState {
  bool policy_loaded = false;
  std::uint64_t policy_reloads = 0;
  std::uint64_t policy_reload_failures = 0;
  std::int64_t active_connections = 0;
  std::vector<std::int64_t> thread_connections;  // per proxy thread, in thread order
};

/// Read at scrape time from the audit store.
struct AuditState {
  bool healthy = false;
  audit::StoreStats stats;
  std::optional<audit::ReplicationStats> replication;  // when serve replicates
  std::uint64_t max_backlog = 0;  // readiness bound on replication backlog rows; 0 = none
};

struct Readiness {
  bool ready = false;
  std::string text;  // "ready" or "not ready: why; why"
};

/// Clears a probe when its owner goes away. Movable, not copyable.
class ProbeGuard {
 public:
  ProbeGuard() = default;
  explicit ProbeGuard(std::function<void()> clear) : clear_(std::move(clear)) {}
  ProbeGuard(ProbeGuard&& other) noexcept : clear_(std::exchange(other.clear_, nullptr)) {}
  ProbeGuard& operator=(ProbeGuard&& other) noexcept;
  ProbeGuard(const ProbeGuard&) = delete;
  ProbeGuard& operator=(const ProbeGuard&) = delete;
  ~ProbeGuard();

 private:
  std::function<void()> clear_;
};

class Metrics {
 public:
  Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // --- request path -------------------------------------------------------

  /// One closed attempt, from its close event (mode, kind, decision, reason,
  /// role, bytes: the audit row's own values). `shown_reason` is the reason
  /// the worker was given; when it differs from the decision's, the attempt
  /// failed after its decision and is also counted in proxy_failures_total.
  void count_request(const audit::Event& close_event, policy::Reason shown_reason);

  /// Counts a relaying CONNECT tunnel as active until the guard goes.
  [[nodiscard]] ProbeGuard track_tunnel();

  /// How a plain CONNECT tunnel relays its bytes (proxy/splice_relay.h).
  enum class TunnelRelay { Splice, Copy };
  void count_tunnel_relay(TunnelRelay relay);

  /// One leaf certificate lookup of an inspected tunnel.
  void count_cert_cache(bool hit);
  /// An idle connection gave its place to a new one at a connection limit.
  void count_yielded_connection();

  enum class TlsStage { Client, Upstream };
  /// One failed TLS handshake of an inspected tunnel.
  void count_tls_handshake_failure(TlsStage stage);

  /// The two kinds of upstream connection egress pools (upstream_pool.h).
  enum class UpstreamKind { Http, Tls };
  enum class UpstreamSource { New, Pooled };
  /// One upstream connection a request went over: taken from the
  /// per-thread idle pool, or new (for a plain HTTP request: connected;
  /// for an inspected tunnel: connected with a successful handshake).
  void count_upstream(UpstreamKind kind, UpstreamSource source);

  /// One name lookup and how long it took.
  void count_lookup(const dns::Resolution& resolution, std::chrono::nanoseconds took);

  // --- scrape time ---------------------------------------------------------

  /// Registers the source of ServeState / AuditState until the guard goes.
  [[nodiscard]] ProbeGuard watch_serve(std::function<ServeState()> probe);
  [[nodiscard]] ProbeGuard watch_audit(std::function<AuditState()> probe);

  /// Prometheus text exposition format 0.0.4.
  std::string render() const;

  /// Ready when a policy is loaded, the audit store is healthy and the last
  /// lookup that went past the cache got an answer (ok, nxdomain, nodata:
  /// a server replied) or none has been made yet. Sends no queries itself.
  Readiness readiness() const;

 private:
  static constexpr std::size_t kModes = 3, kKinds = 3, kVerdicts = 3;
  static constexpr std::size_t kReasons = []{
    std::size_t n = 0;
#define EGRESS_ADMIN_COUNT_REASON(name, code, status) ++n;
    EGRESS_REASONS(EGRESS_ADMIN_COUNT_REASON)
#undef EGRESS_ADMIN_COUNT_REASON
    return n;
  }();
  static constexpr std::size_t kDnsStatuses = 6;  // dns::ResolveStatus
  static constexpr std::size_t kMaxRoles = 256;    // beyond: role="_other"

  using Counter = std::atomic<std::uint64_t>;
  struct RoleCounters {
    std::array<Counter, kVerdicts> by_verdict{};
  };

  struct ProbeStates {
    std::optional<ServeState> serve;
    std::optional<AuditState> audit;
  };
  /// What the registered probes report now (absent: none registered).
  ProbeStates probe() const;

  void write_family(std::string& out, const MetricInfo& info, const ServeState* serve, const AuditState* audit) const;
  RoleCounters& role_counters(const std::string& role);

  std::array<Counter, kModes * kKinds * kVerdicts * kReasons> requests_{};
  std::array<Counter, kReasons> failures_{};
  Counter bytes_up_{0}, bytes_down_{0};
  std::atomic<std::int64_t> active_tunnels_{0};
  Counter dns_hits_{0}, dns_misses_{0};
  Counter cert_hits_{0}, cert_misses_{0};
  Counter yielded_connections_{0};
  std::array<Counter, 2> tunnel_relays_{};  // TunnelRelay
  std::array<Counter, 2> tls_failures_{};  // TlsStage
  std::array<Counter, 4> upstream_connections_{};  // UpstreamKind × UpstreamSource
  std::array<Counter, kDnsStatuses> dns_lookups_{};
  std::array<Counter, kDnsBuckets.size() + 1> dns_buckets_{};  // non-cumulative; last = +Inf
  Counter dns_nanos_{0};
  /// Status of the latest lookup past the cache; -1 before the first.
  std::atomic<int> dns_last_status_{-1};

  // Roles are free text from the policy, so they cannot index an array.
  // A reader lock on a small map (bounded by the policy's role names and
  // kMaxRoles) and then a relaxed atomic: the writer lock is taken once per
  // new role name only. Kept to role × verdict so the map stays small.
  mutable std::shared_mutex roles_mutex_;
  std::map<std::string, std::unique_ptr<RoleCounters>, std::less<>> roles_;

  mutable std::mutex probes_mutex_;
  std::function<ServeState()> serve_probe_;
  std::function<AuditState()> audit_probe_;
};

/// The process-wide registry the proxy counts into and /metrics renders.
Metrics& metrics();

/// Wraps a resolver so each lookup is counted in `metrics` (cache hit or
/// miss, outcome, duration). Same thread rules as the wrapped resolver.
dns::ResolverPtr count_lookups(dns::ResolverPtr inner, Metrics& metrics = admin::metrics());

}  // namespace egress::admin
