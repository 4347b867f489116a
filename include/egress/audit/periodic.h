// A pass run on a thread of its own: once at start, then every interval or
// when woken, until stopped. Checkpointer and Retention are built on it.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace egress::audit {

class Periodic {
 public:
  /// Starts the thread (named `name`, at most 15 characters) at once.
  /// `pass` runs on it and must not throw.
  Periodic(std::string name, std::chrono::milliseconds interval, std::function<void()> pass);
  ~Periodic();  // stop()
  Periodic(const Periodic&) = delete;
  Periodic& operator=(const Periodic&) = delete;

  /// Wakes the thread for a pass now instead of at the end of the interval.
  void run_now();
  /// Lets a running pass finish, then joins. Idempotent.
  void stop();
  /// Set once stop() has begun: a long pass checks it between steps.
  const std::atomic<bool>& stopping() const { return stopping_; }

 private:
  void run();

  const std::string name_;
  const std::chrono::milliseconds interval_;
  const std::function<void()> pass_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> stopping_{false};
  bool wake_ = false;
  std::thread thread_;  // last: starts after everything above is initialised
};

}  // namespace egress::audit
