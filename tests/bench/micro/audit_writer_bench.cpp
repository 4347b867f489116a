// Micro-benchmark for the audit writer with commit-before-connect on: a real
// SQLite file (WAL, synchronous=NORMAL, the serve default) in a fresh temp
// directory, and range(0) sessions kept in flight. Each session records its
// decision event and waits for the commit (as a session waits before it
// connects upstream); when the commit is reported, the driver queues that
// request's close event without waiting and starts the session's next
// request. One iteration is one request completed (two events committed).
//
// Counters: events_per_s (committed events per wall-clock second) and the
// commit wait each request paid, p50 and p99 in microseconds. The longer,
// configurable run is tests/bench/audit_bench.cpp (`audit_bench writer`).
#include <benchmark/benchmark.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "egress/audit/store.h"

using namespace egress::audit;
using Clock = std::chrono::steady_clock;

namespace {

Event sample(std::uint64_t n, EventType type) {
  Event e;
  e.ts = std::chrono::system_clock::now();
  e.request_id = "micro" + std::to_string(n);
  e.event = type;
  e.mode = "self-hosted";
  e.role = "builder";
  e.client_addr = "172.20.1.5:40000";
  e.kind = "http";
  e.method = "GET";
  e.scheme = "http";
  e.host = "h" + std::to_string(n % 200) + ".example";
  e.port = 80;
  e.path = "/simple/package-" + std::to_string(n % 1000) + "/";
  e.decision = "allow";
  e.rule = "policy.yaml:3";
  e.reason = "allow-rule";
  e.upstream_addr = "10.1.2.3:80";
  if (type == EventType::Close) {
    e.status = 200;
    e.bytes_up = 512;
    e.bytes_down = 64 * 1024;
    e.duration_ms = 12;
  }
  return e;
}

/// A temp directory removed with everything in it when the run ends.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "egress-micro-XXXXXX").string();
    if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    path = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
};

void BM_audit_commit_before_connect(benchmark::State& state) {
  const auto sessions = static_cast<int>(state.range(0));
  spdlog::set_level(spdlog::level::warn);  // one "applied migration" line per run is noise here
  TempDir dir;

  // Declared before the store, so they outlive it: the store's destructor
  // flushes, and the last callbacks still touch them.
  std::mutex mu;
  std::condition_variable ready_cv;
  std::deque<std::pair<std::uint64_t, Clock::time_point>> ready;  // committed decisions (mu held)
  bool failed = false;                                             // (mu held)
  std::vector<double> waits_us;
  std::uint64_t next = 0;

  StoreOptions options;
  options.path = (dir.path / "audit.db").string();
  AuditStorePtr store = AuditStore::open(options);

  auto start_request = [&] {
    const std::uint64_t n = next++;
    const auto queued = Clock::now();
    store->record(sample(n, EventType::Decision), [&, n, queued](bool ok) {
      std::lock_guard lock(mu);
      failed = failed || !ok;
      ready.emplace_back(n, queued);
      ready_cv.notify_one();
    });
  };
  for (int i = 0; i < sessions; ++i) start_request();

  for (auto _ : state) {
    std::unique_lock lock(mu);
    ready_cv.wait(lock, [&] { return !ready.empty(); });
    const auto [n, queued] = ready.front();
    ready.pop_front();
    if (failed) {
      lock.unlock();
      state.SkipWithError("an audit commit failed");
      break;
    }
    lock.unlock();
    waits_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - queued).count());
    store->record(sample(n, EventType::Close));
    start_request();
  }
  store->flush();
  const auto stats = store->stats();
  store.reset();

  std::sort(waits_us.begin(), waits_us.end());
  auto pct = [&](double p) { return waits_us.empty() ? 0.0 : waits_us[static_cast<std::size_t>(p * (waits_us.size() - 1))]; };
  // Two events per completed request; the in-flight decisions committed at
  // the end are not counted.
  state.counters["events_per_s"] = benchmark::Counter(2.0 * static_cast<double>(state.iterations()),
                                                      benchmark::Counter::kIsRate);
  state.counters["wait_p50_us"] = pct(0.50);
  state.counters["wait_p99_us"] = pct(0.99);
  state.counters["events_per_commit"] =
      stats.commits ? static_cast<double>(stats.committed_events) / static_cast<double>(stats.commits) : 0.0;
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_audit_commit_before_connect)
    ->ArgName("sessions")
    ->Arg(1)
    ->Arg(16)
    ->Arg(64)
    ->Arg(256)
    ->UseRealTime()
    ->MinTime(2.0)
    ->Unit(benchmark::kMicrosecond);

}  // namespace
