// What every session can reach: state shared by all threads (the policy
// snapshot, the audit store, the configuration) and the per-thread Worker
// (its io_context, resolver and listener). Shared state is either immutable
// or owned by one component behind a small thread-safe API; a Worker is
// touched only from its own thread.
#pragma once

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <optional>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "egress/admin/metrics.h"
#include "egress/audit/store.h"
#include "egress/config/config.h"
#include "egress/dns/resolver.h"
#include "egress/policy/policy.h"
#include "egress/secrets/secrets.h"
#include "proxy/attempt.h"
#include "proxy/connection_limits.h"
#include "proxy/splice_relay.h"
#include "proxy/upstream_pool.h"
#include "egress/tls/cert_cache.h"
#include "egress/tls/inspection.h"

namespace egress::proxy {

struct Shared {
  Shared(const config::ServeConfig& config, policy::PolicySnapshot policy, audit::AuditStore& audit)
      : config(config),
        policy(std::move(policy)),
        audit(audit),
        connections(config.limits.max_connections, config.limits.max_connections_per_client) {}

  const config::ServeConfig& config;
  /// Swapped whole on reload (invariant 5); each request loads it once.
  std::atomic<policy::PolicySnapshot> policy;
  audit::AuditStore& audit;
  std::atomic<int> active_sessions{0};
  /// Open connections per worker thread, in thread order (Worker::load):
  /// a deque, so adding a thread's counter moves no other.
  std::deque<std::atomic<int>> thread_connections;
  /// Set once on SIGTERM/SIGINT: sessions finish the request in hand, answer
  /// it with `Connection: close`, and read no further request.
  std::atomic<bool> draining{false};
  /// limits.max_connections and max_connections_per_client, over all threads.
  ConnectionLimiter connections;
  std::atomic<std::uint64_t> policy_reloads{0};
  std::atomic<std::uint64_t> policy_reload_failures{0};
  /// The secrets of `inject:` rules, swapped whole on reload like the
  /// policy; each request that injects loads it once.
  std::atomic<secrets::SecretsSnapshot> secrets{std::make_shared<const secrets::SecretStore>()};
  /// TLS inspection (CA, leaf key, contexts); null when no CA is configured.
  std::shared_ptr<const tls::Inspection> inspection;
};

class Session;

/// What a Worker takes from outside, so tests can give it fakes: its
/// resolver (made for the worker's own executor), the metrics it counts
/// into and the clock its pools and tunnels read.
struct WorkerParts {
  using ResolverFactory = std::function<dns::ResolverPtr(boost::asio::any_io_executor)>;
  using Clock = std::chrono::steady_clock::time_point (*)();
  ResolverFactory make_resolver;
  admin::Metrics& metrics = admin::metrics();
  Clock now = &std::chrono::steady_clock::now;
};

/// The parts `serve` runs with: the c-ares resolver, counted into the
/// process metrics.
inline WorkerParts serving_parts(const dns::ResolverOptions& dns_options) {
  return {[dns_options](boost::asio::any_io_executor executor) {
            return admin::count_lookups(dns::make_cares_resolver(executor, dns_options));
          }};
}

struct Worker {
  Worker(Shared& shared, const WorkerParts& parts)
      : shared(shared),
        load(shared.thread_connections.emplace_back(0)),
        resolver(parts.make_resolver(ioc.get_executor())),
        metrics(parts.metrics),
        now(parts.now) {}

  boost::asio::io_context ioc{1};  // one thread: no locking inside
  Shared& shared;
  /// Connections this thread serves, counting those handed to it that have
  /// not started yet: the accept loops hand each new connection to the
  /// thread with the fewest (server.cpp).
  std::atomic<int>& load;
  dns::ResolverPtr resolver;
  admin::Metrics& metrics;
  WorkerParts::Clock now;
  /// Where this thread's attempts record their events.
  AttemptSink sink() const { return {shared.audit, shared.config.log_format, metrics}; }
  std::optional<boost::asio::ip::tcp::acceptor> acceptor;
  std::list<Session*> sessions;  // live sessions, for the forced close after the grace period
  /// Minted leaf certificates of this thread's inspected tunnels: per
  /// thread, so a lookup takes no lock.
  tls::CertCache cert_cache{shared.config.tls.cert_cache_size};
  /// Idle upstream connections of this thread's plain HTTP requests and of
  /// its inspected tunnels (upstream_pool.h), under the same two limits;
  /// after ioc, so their sockets close before the io_context goes.
  UpstreamTcpPool upstream_tcp{shared.config.tls.upstream_pool_size, shared.config.tls.upstream_pool_idle};
  UpstreamTlsPool upstream_tls{shared.config.tls.upstream_pool_size, shared.config.tls.upstream_pool_idle};
  /// Empty pipes for this thread's spliced tunnels (splice_relay.h).
  PipePool pipes;
};

}  // namespace egress::proxy
