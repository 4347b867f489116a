// See checkpointer.h.
#include "audit/checkpointer.h"

#include <spdlog/spdlog.h>
#include <sqlite3.h>

namespace egress::audit {

Checkpointer::Checkpointer(const std::string& path, std::chrono::milliseconds busy_timeout,
                           std::chrono::milliseconds interval)
    : path_(path), interval_(interval), db_(open_database(path, busy_timeout)), thread_([this] { run(); }) {}

Checkpointer::~Checkpointer() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  thread_.join();
}

void Checkpointer::run() {
  std::unique_lock lock(mu_);
  while (!stop_cv_.wait_for(lock, interval_, [this] { return stopping_; })) {
    lock.unlock();
    checkpoint();
    lock.lock();
  }
  lock.unlock();
  checkpoint();
}

void Checkpointer::checkpoint() {
  int wal_frames = 0;
  int checkpointed = 0;
  const int rc = sqlite3_wal_checkpoint_v2(db_.get(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &wal_frames, &checkpointed);
  if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
    // Not fatal: the WAL keeps growing until a later checkpoint succeeds,
    // and every commit is already durable in it.
    spdlog::warn("audit: {}: WAL checkpoint failed: {}", path_, sqlite3_errmsg(db_.get()));
  }
}

}  // namespace egress::audit
