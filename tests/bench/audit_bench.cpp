// Audit benchmarks (figures in docs/performance.md; commands in audit_bench.sh).
//
//   audit_bench writer DB [SECONDS] [SESSIONS]
//     Sustained writer throughput with commit-before-upstream on: SESSIONS
//     simulated sessions each record a decision event, wait for its commit
//     (as a session waits before connecting upstream), then record the
//     close event without waiting and start the next request. Prints
//     events/s, requests/s and the commit wait (what the guarantee adds to
//     each request) at p50/p99/max.
//
//   audit_bench generate DB [EVENTS]
//     A database of EVENTS events (default 10 million: decision + close
//     pairs over the 7 days before now, 200 hosts) built with SQL in one
//     transaction, indexes created after the insert. The hash columns are
//     filler: this file is for query timing, not for verify.
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "audit/database.h"
#include "egress/audit/store.h"

using namespace egress::audit;
using Clock = std::chrono::steady_clock;

namespace {

Event sample(std::uint64_t n, EventType type) {
  Event e;
  e.ts = std::chrono::system_clock::now();
  e.request_id = "bench" + std::to_string(n);
  e.event = type;
  e.mode = "self-hosted";
  e.role = "comfyui";
  e.client_addr = "172.20.1.5:40000";
  e.kind = "http";
  e.method = "GET";
  e.scheme = "http";
  e.host = "h" + std::to_string(n % 200) + ".example";
  e.port = 80;
  e.path = "/models/file.bin";
  e.decision = "allow";
  e.rule = "policy.yaml:3";
  e.reason = "host-allowed";
  e.upstream_addr = "10.1.2.3:80";
  if (type == EventType::Close) {
    e.status = 200;
    e.bytes_up = 512;
    e.bytes_down = 1 << 20;
    e.duration_ms = 40;
  }
  return e;
}

int writer(const std::string& path, double seconds, int sessions) {
  StoreOptions options;
  options.path = path;
  auto store = AuditStore::open(options);
  std::atomic<std::uint64_t> next{0}, requests{0};
  std::mutex mu;
  int active = sessions;
  std::vector<double> waits;  // commit wait per request, microseconds (mu held)
  waits.reserve(1 << 22);

  // As in serve, the commit callback (writer thread) only hands the result
  // over; a producer thread (the proxy's role) queues the close event and
  // the session's next decision, so the writer thread does writer work only.
  std::deque<std::pair<std::uint64_t, Clock::time_point>> ready;  // finished decisions (mu held)
  std::condition_variable ready_cv;
  auto start_request = [&] {
    const std::uint64_t n = next++;
    const auto queued = Clock::now();
    store->record(sample(n, EventType::Decision), [&, n, queued](bool ok) {
      if (!ok) std::fprintf(stderr, "commit failed\n");
      std::lock_guard lock(mu);
      ready.emplace_back(n, queued);
      ready_cv.notify_one();
    });
  };
  const auto t0 = Clock::now();
  const auto end = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  for (int i = 0; i < sessions; ++i) start_request();
  std::thread producer([&] {
    std::unique_lock lock(mu);
    while (active > 0) {
      ready_cv.wait_for(lock, std::chrono::milliseconds(10), [&] { return !ready.empty(); });
      auto done = std::move(ready);
      ready.clear();
      lock.unlock();
      const auto now = Clock::now();
      std::vector<double> local;
      for (const auto& [n, queued] : done) {
        local.push_back(std::chrono::duration<double, std::micro>(now - queued).count());
        store->record(sample(n, EventType::Close));
        ++requests;
        if (now < end) start_request();
      }
      lock.lock();
      waits.insert(waits.end(), local.begin(), local.end());
      if (now >= end) active -= static_cast<int>(done.size());
    }
  });
  producer.join();
  store->flush();
  const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  const auto stats = store->stats();
  std::sort(waits.begin(), waits.end());
  auto pct = [&](double p) { return waits.empty() ? 0.0 : waits[static_cast<std::size_t>(p * (waits.size() - 1))]; };
  std::printf("sessions %d, %.1f s: %llu events committed in %llu transactions\n", sessions, elapsed,
              static_cast<unsigned long long>(stats.committed_events), static_cast<unsigned long long>(stats.commits));
  std::printf("  %.0f events/s, %.0f requests/s (decision awaited + close queued)\n",
              static_cast<double>(stats.committed_events) / elapsed, static_cast<double>(requests.load()) / elapsed);
  std::printf("  commit wait per request: p50 %.0f us, p99 %.0f us, max %.0f us\n", pct(0.5), pct(0.99),
              waits.empty() ? 0.0 : waits.back());
  return 0;
}

int generate(const std::string& path, long long events) {
  DbPtr db = open_database(path, std::chrono::milliseconds(5000));
  const long long requests = events / 2;
  const auto span_us = 7LL * 86400 * 1000000;
  const auto now_us = std::chrono::duration_cast<std::chrono::microseconds>(
                          std::chrono::system_clock::now().time_since_epoch()).count();
  const long long start_us = now_us - span_us;
  const long long step_us = span_us / std::max(1LL, requests);
  // ts as fixed-width ISO text from a microsecond count, in SQL.
  const std::string ts_sql =
      "strftime('%Y-%m-%dT%H:%M:%S', (t / 1000000), 'unixepoch') || '.' || "
      "substr('000000' || (t % 1000000), -6) || 'Z'";
  const std::string sql =
      "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF; BEGIN;"
      "DROP INDEX events_ts; DROP INDEX events_host_ts; DROP INDEX events_request_id; "
      "DROP INDEX events_decision_ts;"
      "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < " +
      std::to_string(requests - 1) + "), r AS (SELECT i, " + std::to_string(start_us) + " + i * " +
      std::to_string(step_us) + " AS t0 FROM n), "
      // CROSS JOIN fixes the loop order: each decision, then its close.
      "e AS (SELECT i, t0 + k * 40000 AS t, k FROM r CROSS JOIN (SELECT 0 AS k UNION ALL SELECT 1)) "
      "INSERT INTO events (ts, request_id, event, mode, role, client_addr, kind, method, scheme, host, "
      "port, path, decision, rule, reason, upstream_addr, status, bytes_up, bytes_down, duration_ms, "
      "prev_hash, hash) SELECT " + ts_sql + ", printf('%016x', i), CASE k WHEN 0 THEN 'decision' ELSE "
      "'close' END, 'self-hosted', 'role' || (i % 5), '172.20.1.' || (i % 50) || ':40000', 'http', 'GET', "
      "'http', 'h' || (i % 200) || '.example', 80, '/p/' || i, CASE WHEN i % 10 = 0 THEN 'deny' ELSE "
      "'allow' END, 'policy.yaml:3', CASE WHEN i % 10 = 0 THEN 'not-allowed' ELSE 'host-allowed' END, "
      "'10.1.2.3:80', CASE k WHEN 1 THEN 200 END, CASE k WHEN 1 THEN 512 END, CASE k WHEN 1 THEN 4096 "
      "END, CASE k WHEN 1 THEN 40 END, 'x', 'x' FROM e;"
      "CREATE INDEX events_ts ON events (ts);"
      "CREATE INDEX events_host_ts ON events (host, ts);"
      "CREATE INDEX events_request_id ON events (request_id);"
      "CREATE INDEX events_decision_ts ON events (decision, ts);"
      "COMMIT; ANALYZE;";
  const auto t0 = Clock::now();
  char* err = nullptr;
  if (sqlite3_exec(db.get(), sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::fprintf(stderr, "generate: %s\n", err ? err : "?");
    sqlite3_free(err);
    return 1;
  }
  std::printf("generated %lld events (%lld requests, 7 days) in %.1f s\n", requests * 2, requests,
              std::chrono::duration<double>(Clock::now() - t0).count());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 3 && std::string(argv[1]) == "writer") {
    return writer(argv[2], argc > 3 ? std::atof(argv[3]) : 10.0, argc > 4 ? std::atoi(argv[4]) : 256);
  }
  if (argc >= 3 && std::string(argv[1]) == "generate") {
    return generate(argv[2], argc > 3 ? std::atoll(argv[3]) : 10'000'000LL);
  }
  std::fprintf(stderr, "usage: audit_bench writer DB [SECONDS] [SESSIONS] | generate DB [EVENTS]\n");
  return 2;
}
