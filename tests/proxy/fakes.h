// Test helpers for the proxy component: a resolver with canned answers (the
// pipeline's unit tests are about deciding, not DNS; tests/dns covers the
// real resolver), and a runner for one coroutine on a real io_context.
#pragma once

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "egress/audit/store.h"
#include "egress/dns/resolver.h"

namespace egress::proxy::testing {

/// Answers from a table; counts and records every lookup. A name that is
/// not in the table fails the test that asked for it (std::logic_error).
class FakeResolver final : public dns::Resolver {
 public:
  FakeResolver& answer(const std::string& host, std::vector<std::string> addresses) {
    dns::Resolution r;
    r.status = dns::ResolveStatus::Ok;
    for (const auto& a : addresses) r.addresses.push_back(boost::asio::ip::make_address(a));
    answers_[host] = std::move(r);
    return *this;
  }
  FakeResolver& fail(const std::string& host, dns::ResolveStatus status, std::string error) {
    dns::Resolution r;
    r.status = status;
    r.error = std::move(error);
    answers_[host] = std::move(r);
    return *this;
  }
  /// The next answers say they came from the cache.
  void set_from_cache(bool from_cache) { from_cache_ = from_cache; }

  boost::asio::awaitable<dns::Resolution> resolve(std::string host) override {
    lookups_.push_back(host);
    const auto it = answers_.find(host);
    if (it == answers_.end()) throw std::logic_error("FakeResolver: unexpected lookup of '" + host + "'");
    auto out = it->second;
    out.from_cache = from_cache_;
    co_return out;
  }

  const std::vector<std::string>& lookups() const { return lookups_; }

 private:
  std::map<std::string, dns::Resolution> answers_;
  std::vector<std::string> lookups_;
  bool from_cache_ = false;
};

/// An audit store that keeps what it is given in memory; commits succeed
/// unless `fail_commits` is set.
class RecordingStore final : public audit::AuditStore {
 public:
  bool fail_commits = false;
  bool full_sync = false;  // waits_for_commit(): decisions go through record(event, done)
  std::vector<audit::Event> events;

  bool record_durable(audit::Event event) override {
    if (fail_commits) return false;  // refused: recorded nowhere, like the real store
    events.push_back(std::move(event));
    return true;
  }
  void record(audit::Event event, audit::CommitCallback done) override {
    events.push_back(std::move(event));
    done(!fail_commits);
  }
  void record(audit::Event event) override { events.push_back(std::move(event)); }
  bool waits_for_commit() const override { return full_sync; }
  void flush() override {}
  bool healthy() const override { return !fail_commits; }
  std::size_t backlog() const override { return 0; }
  audit::StoreStats stats() const override { return {}; }

  std::size_t count(audit::EventType type) const {
    std::size_t n = 0;
    for (const auto& e : events) n += e.event == type ? 1 : 0;
    return n;
  }
};

/// Runs `awaitable` to completion on a fresh io_context and returns its
/// value (rethrowing what it threw).
template <typename T>
T run(boost::asio::awaitable<T> awaitable) {
  boost::asio::io_context ioc;
  auto future = boost::asio::co_spawn(ioc, std::move(awaitable), boost::asio::use_future);
  ioc.run();
  return future.get();
}

}  // namespace egress::proxy::testing
