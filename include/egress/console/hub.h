// The console's live feed: a narrow subscriber hook on the audit writer.
// The writer thread publishes each committed row (its JSON line, the same
// text as serve --audit-stream); each open Live page holds a Subscription
// with a bounded queue. A full queue drops the row and counts it, so a slow
// browser never slows the writer, and with no page open publish() is one
// relaxed atomic load.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace egress::console {

class EventHub;

/// One open event stream. Taken by the console thread only.
class Subscription {
 public:
  struct Batch {
    std::vector<std::string> lines;  // decision rows, oldest first
    std::uint64_t seen = 0;          // decision rows published since subscribe()
    std::uint64_t dropped = 0;       // of those, not queued: the queue was full (sampled out)
  };
  /// Everything queued since the last take().
  Batch take();
  ~Subscription();

 private:
  friend class EventHub;
  explicit Subscription(EventHub& hub) : hub_(hub) {}
  EventHub& hub_;
  std::deque<std::string> queue_;  // hub_.mu_ held
  std::uint64_t seen_ = 0, dropped_ = 0;
};

struct HubStats {
  std::size_t subscribers = 0;
  std::uint64_t published = 0;  // decision rows published while someone listened
  std::uint64_t dropped = 0;    // rows dropped from full queues, all subscribers
};

class EventHub {
 public:
  /// `queue_limit`: rows kept per subscriber between two take() calls.
  /// Small on purpose: a page is sent at most 25 rows per take (server.cpp),
  /// so under a flood the rest would only be copied to be thrown away; past
  /// the limit a row costs the writer a counter increment, not a copy.
  explicit EventHub(std::size_t queue_limit = 64) : queue_limit_(queue_limit) {}
  EventHub(const EventHub&) = delete;
  EventHub& operator=(const EventHub&) = delete;

  /// From the audit writer thread: one committed row as its JSON line.
  /// Only decision rows are kept (close rows are the details' business).
  void publish(const std::string& json_line);

  std::unique_ptr<Subscription> subscribe();
  HubStats stats() const;

 private:
  friend class Subscription;
  const std::size_t queue_limit_;
  mutable std::mutex mu_;
  std::vector<Subscription*> subscribers_;  // mu_ held
  std::atomic<std::size_t> count_{0};
  std::atomic<std::uint64_t> published_{0}, dropped_{0};
};

}  // namespace egress::console
