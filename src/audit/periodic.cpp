// See periodic.h.
#include "egress/audit/periodic.h"

#include <pthread.h>

namespace egress::audit {

Periodic::Periodic(std::string name, std::chrono::milliseconds interval, std::function<void()> pass)
    : name_(std::move(name)), interval_(interval), pass_(std::move(pass)), thread_([this] { run(); }) {}

Periodic::~Periodic() { stop(); }

void Periodic::run_now() {
  {
    std::lock_guard lock(mu_);
    wake_ = true;
  }
  cv_.notify_all();
}

void Periodic::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Periodic::run() {
  pthread_setname_np(pthread_self(), name_.c_str());
  std::unique_lock lock(mu_);
  while (!stopping_) {
    lock.unlock();
    pass_();
    lock.lock();
    cv_.wait_for(lock, interval_, [this] { return stopping_.load() || wake_; });
    wake_ = false;
  }
}

}  // namespace egress::audit
