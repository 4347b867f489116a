// The metrics registry: the Prometheus text it renders (0.0.4), counting by
// labels, and readiness from its probes.
#include <catch2/catch.hpp>

#include <set>
#include <sstream>

#include "egress/admin/metrics.h"

using namespace egress;
using admin::Metrics;

namespace {

audit::Event close_event(std::string mode, std::string kind, std::string decision, std::string reason,
                         std::string role = "", std::int64_t up = 0, std::int64_t down = 0) {
  audit::Event event;
  event.event = audit::EventType::Close;
  event.mode = std::move(mode);
  event.kind = std::move(kind);
  event.decision = std::move(decision);
  event.reason = std::move(reason);
  event.role = std::move(role);
  event.bytes_up = up;
  event.bytes_down = down;
  return event;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

bool has_line(const std::string& text, const std::string& line) {
  for (const auto& l : lines_of(text)) {
    if (l == line) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("every family has one HELP and one TYPE line, egress_-prefixed, before its samples") {
  Metrics metrics;
  const auto text = metrics.render();
  REQUIRE(text.back() == '\n');
  std::set<std::string> seen;
  std::string current;
  for (const auto& line : lines_of(text)) {
    REQUIRE(!line.empty());
    if (line.rfind("# HELP ", 0) == 0) {
      current = line.substr(7, line.find(' ', 7) - 7);
      REQUIRE(current.rfind("egress_", 0) == 0);
      REQUIRE(seen.insert(current).second);  // declared once
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      REQUIRE(line.substr(7, current.size()) == current);
      const auto type = line.substr(8 + current.size());
      REQUIRE((type == "counter" || type == "gauge" || type == "histogram"));
      continue;
    }
    // A sample: its name is the family's, or a histogram's _bucket/_sum/_count.
    const auto name = line.substr(0, line.find_first_of("{ "));
    REQUIRE(name.rfind(current, 0) == 0);
    const auto value = line.substr(line.rfind(' ') + 1);
    REQUIRE_NOTHROW(std::stod(value));
  }
  REQUIRE(seen.size() == std::size(admin::kMetrics));
}

TEST_CASE("metric names follow egress_<component>_<name>, counters end in _total") {
  const std::set<std::string> components = {"proxy", "dns", "audit", "policy", "tls"};
  for (const auto& info : admin::kMetrics) {
    const std::string name(info.name);
    CAPTURE(name);
    REQUIRE(components.count(name.substr(0, name.find('_'))) == 1);
    for (const char c : name) REQUIRE(((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'));
    if (info.type == admin::MetricType::Counter) REQUIRE(name.ends_with("_total"));
  }
}

TEST_CASE("requests are counted by mode, kind, verdict and reason; bytes summed") {
  Metrics metrics;
  for (int i = 0; i < 3; ++i) {
    metrics.count_request(close_event("self-hosted", "http", "allow", "internal-rule", "ci", 10, 100),
                          policy::Reason::InternalRule);
  }
  metrics.count_request(close_event("self-hosted", "connect", "deny", "not-allowed", "ci"), policy::Reason::NotAllowed);
  metrics.count_request(close_event("developer", "http", "deny", "private-address"), policy::Reason::PrivateAddress);
  const auto text = metrics.render();
  CHECK(has_line(text,
                 "egress_proxy_requests_total{mode=\"self-hosted\",kind=\"http\",verdict=\"allow\",reason=\"internal-rule\"} 3"));
  CHECK(has_line(text,
                 "egress_proxy_requests_total{mode=\"self-hosted\",kind=\"connect\",verdict=\"deny\",reason=\"not-allowed\"} 1"));
  CHECK(has_line(text,
                 "egress_proxy_requests_total{mode=\"developer\",kind=\"http\",verdict=\"deny\",reason=\"private-address\"} 1"));
  CHECK(has_line(text, "egress_proxy_requests_by_role_total{role=\"ci\",verdict=\"allow\"} 3"));
  CHECK(has_line(text, "egress_proxy_requests_by_role_total{role=\"ci\",verdict=\"deny\"} 1"));
  CHECK(has_line(text, "egress_proxy_requests_by_role_total{role=\"\",verdict=\"deny\"} 1"));
  CHECK(has_line(text, "egress_proxy_bytes_up_total 30"));
  CHECK(has_line(text, "egress_proxy_bytes_down_total 300"));
  // Only non-zero request series are shown.
  CHECK(text.find("reason=\"sni-mismatch\"") == std::string::npos);
}

TEST_CASE("every reason code can be a label value (generated from EGRESS_REASONS)") {
  Metrics metrics;
#define EGRESS_TEST_REASON(name, code, status) \
  metrics.count_request(close_event("production", "http", "deny", code), policy::Reason::name);
  EGRESS_REASONS(EGRESS_TEST_REASON)
#undef EGRESS_TEST_REASON
  const auto text = metrics.render();
#define EGRESS_TEST_REASON(name, code, status)                                                                  \
  CHECK(has_line(text, std::string("egress_proxy_requests_total{mode=\"production\",kind=\"http\",") + \
                           "verdict=\"deny\",reason=\"" + code + "\"} 1"));
  EGRESS_REASONS(EGRESS_TEST_REASON)
#undef EGRESS_TEST_REASON
}

TEST_CASE("a failure after the decision is counted with the reason the worker was shown") {
  Metrics metrics;
  metrics.count_request(close_event("self-hosted", "http", "allow", "allow-rule"), policy::Reason::AuditUnavailable);
  const auto text = metrics.render();
  CHECK(has_line(text, "egress_proxy_failures_total{reason=\"audit-unavailable\"} 1"));
  CHECK(has_line(text,
                 "egress_proxy_requests_total{mode=\"self-hosted\",kind=\"http\",verdict=\"allow\",reason=\"allow-rule\"} 1"));
}

TEST_CASE("an event without a decision is not counted under made-up labels") {
  Metrics metrics;
  metrics.count_request(close_event("self-hosted", "http", "", ""), policy::Reason::BadRequest);
  CHECK(metrics.render().find("egress_proxy_requests_total{") == std::string::npos);
}

TEST_CASE("label values are escaped") {
  Metrics metrics;
  metrics.count_request(close_event("developer", "http", "allow", "developer-mode", "a\"b\\c\nd"),
                        policy::Reason::DeveloperMode);
  CHECK(has_line(metrics.render(), "egress_proxy_requests_by_role_total{role=\"a\\\"b\\\\c\\nd\",verdict=\"allow\"} 1"));
}

TEST_CASE("DNS lookups: cache hits, misses by status, a cumulative histogram") {
  Metrics metrics;
  dns::Resolution cached;
  cached.status = dns::ResolveStatus::Ok;
  cached.from_cache = true;
  dns::Resolution fresh;
  fresh.status = dns::ResolveStatus::Ok;
  dns::Resolution timeout;
  timeout.status = dns::ResolveStatus::Timeout;
  metrics.count_lookup(cached, std::chrono::microseconds(1));
  metrics.count_lookup(fresh, std::chrono::microseconds(300));     // le 0.0005
  metrics.count_lookup(fresh, std::chrono::milliseconds(20));      // le 0.025
  metrics.count_lookup(timeout, std::chrono::milliseconds(5000));  // +Inf
  const auto text = metrics.render();
  CHECK(has_line(text, "egress_dns_cache_hits_total 1"));
  CHECK(has_line(text, "egress_dns_cache_misses_total 3"));
  CHECK(has_line(text, "egress_dns_lookups_total{status=\"ok\"} 2"));
  CHECK(has_line(text, "egress_dns_lookups_total{status=\"timeout\"} 1"));
  CHECK(has_line(text, "egress_dns_lookups_total{status=\"nxdomain\"} 0"));
  CHECK(has_line(text, "egress_dns_lookup_duration_seconds_bucket{le=\"0.0005\"} 1"));
  CHECK(has_line(text, "egress_dns_lookup_duration_seconds_bucket{le=\"0.01\"} 1"));
  CHECK(has_line(text, "egress_dns_lookup_duration_seconds_bucket{le=\"0.025\"} 2"));
  CHECK(has_line(text, "egress_dns_lookup_duration_seconds_bucket{le=\"2.5\"} 2"));
  CHECK(has_line(text, "egress_dns_lookup_duration_seconds_bucket{le=\"+Inf\"} 3"));
  CHECK(has_line(text, "egress_dns_lookup_duration_seconds_count 3"));
  CHECK(has_line(text, "egress_dns_lookup_duration_seconds_sum 5.0203"));
}

TEST_CASE("scrape-time values come from the probes while they are registered") {
  Metrics metrics;
  CHECK(has_line(metrics.render(), "egress_policy_loaded 0"));
  {
    const auto serve = metrics.watch_serve([] { return admin::ServeState{true, 4, 2, 7, {3, 4}}; });
    const auto audit = metrics.watch_audit([] {
      admin::AuditState state;
      state.healthy = true;
      state.stats.queue_depth = 5;
      state.stats.commits = 11;
      state.stats.committed_events = 40;
      state.stats.commit_failures = 1;
      state.stats.last_commit_ms = 2.5;
      return state;
    });
    const auto tunnel = metrics.track_tunnel();
    const auto text = metrics.render();
    CHECK(has_line(text, "egress_policy_loaded 1"));
    CHECK(has_line(text, "egress_policy_reloads_total{result=\"success\"} 4"));
    CHECK(has_line(text, "egress_policy_reloads_total{result=\"failure\"} 2"));
    CHECK(has_line(text, "egress_proxy_active_connections 7"));
    CHECK(has_line(text, "egress_proxy_thread_connections{thread=\"0\"} 3"));
    CHECK(has_line(text, "egress_proxy_thread_connections{thread=\"1\"} 4"));
    CHECK(has_line(text, "egress_proxy_active_tunnels 1"));
    CHECK(has_line(text, "egress_audit_healthy 1"));
    CHECK(has_line(text, "egress_audit_queue_depth 5"));
    CHECK(has_line(text, "egress_audit_commits_total 11"));
    CHECK(has_line(text, "egress_audit_committed_events_total 40"));
    CHECK(has_line(text, "egress_audit_commit_failures_total 1"));
    CHECK(has_line(text, "egress_audit_last_commit_duration_seconds 0.0025"));
  }
  const auto text = metrics.render();
  CHECK(has_line(text, "egress_policy_loaded 0"));
  CHECK(has_line(text, "egress_proxy_active_tunnels 0"));
  CHECK(has_line(text, "egress_audit_healthy 0"));
}

TEST_CASE("readiness: policy loaded, audit healthy, DNS answering") {
  Metrics metrics;
  CHECK_FALSE(metrics.readiness().ready);
  bool healthy = true;
  const auto serve = metrics.watch_serve([] { return admin::ServeState{true, 0, 0, 0, {}}; });
  const auto audit = metrics.watch_audit([&healthy] {
    admin::AuditState state;
    state.healthy = healthy;
    return state;
  });
  CHECK(metrics.readiness().ready);  // no lookup yet: nothing says DNS is down
  CHECK(metrics.readiness().text == "ready");

  healthy = false;
  CHECK_FALSE(metrics.readiness().ready);
  CHECK(metrics.readiness().text == "not ready: the audit store cannot record events (see the log: disk full or unwritable)");
  healthy = true;

  dns::Resolution answer;
  answer.status = dns::ResolveStatus::NxDomain;  // a server replied
  metrics.count_lookup(answer, std::chrono::milliseconds(1));
  CHECK(metrics.readiness().ready);
  answer.status = dns::ResolveStatus::Timeout;
  metrics.count_lookup(answer, std::chrono::milliseconds(500));
  CHECK(metrics.readiness().text == "not ready: the last DNS lookup failed (timeout)");
  answer.status = dns::ResolveStatus::Ok;
  answer.from_cache = true;  // a cached answer says nothing about the servers
  metrics.count_lookup(answer, std::chrono::microseconds(1));
  CHECK_FALSE(metrics.readiness().ready);
  answer.from_cache = false;
  metrics.count_lookup(answer, std::chrono::milliseconds(1));
  CHECK(metrics.readiness().ready);
}

TEST_CASE("replication: its families only while replicating; readiness only past a set backlog bound") {
  struct Case {
    const char* name;
    bool replicating;
    std::int64_t backlog;
    std::uint64_t max_backlog;
    bool ready;
  };
  const Case cases[] = {
      {"not replicating", false, 0, 0, true},
      {"behind, no bound", true, 1'000'000, 0, true},
      {"behind, under the bound", true, 100, 100, true},
      {"behind, past the bound", true, 101, 100, false},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    Metrics metrics;
    const auto serve = metrics.watch_serve([] { return admin::ServeState{true, 0, 0, 0, {}}; });
    const auto audit = metrics.watch_audit([&c] {
      admin::AuditState state;
      state.healthy = true;
      state.max_backlog = c.max_backlog;
      if (c.replicating) {
        audit::ReplicationStats r;
        r.connected = false;
        r.backlog_rows = c.backlog;
        r.lag_seconds = 12.5;
        r.shipped_rows = 7;
        r.failures = 3;
        state.replication = r;
      }
      return state;
    });
    const auto text = metrics.render();
    CHECK(has_line(text, "egress_audit_replication_backlog_rows " + std::to_string(c.backlog)) == c.replicating);
    CHECK(has_line(text, "egress_audit_replication_lag_seconds 12.5") == c.replicating);
    CHECK(has_line(text, "egress_audit_replication_connected 0") == c.replicating);
    CHECK(has_line(text, "egress_audit_replication_shipped_rows_total 7") == c.replicating);
    CHECK(has_line(text, "egress_audit_replication_failures_total 3") == c.replicating);
    const auto readiness = metrics.readiness();
    CHECK(readiness.ready == c.ready);
    if (!c.ready) {
      CHECK(readiness.text == "not ready: the audit replication backlog (101 events) exceeds audit.max_backlog 100");
    }
  }
}
