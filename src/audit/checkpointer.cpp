// See checkpointer.h.
#include "audit/checkpointer.h"

#include <spdlog/spdlog.h>
#include <sqlite3.h>

namespace egress::audit {

Checkpointer::Checkpointer(const std::string& path, std::chrono::milliseconds busy_timeout,
                           std::chrono::milliseconds interval)
    : path_(path), db_(open_database(path, busy_timeout)), thread_("egress-ckpt", interval, [this] { checkpoint(); }) {}

Checkpointer::~Checkpointer() {
  thread_.stop();
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
