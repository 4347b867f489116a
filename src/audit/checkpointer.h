// WAL checkpoints off the writer thread. SQLite's automatic checkpoint runs
// inside the committing transaction, so every ~1000 pages one commit (and
// every session waiting on it) stalls while the WAL is copied into the
// database and fsynced. The writer connection turns auto-checkpointing off;
// this thread runs PASSIVE checkpoints on its own connection instead, which
// never block the writer (WAL lets both proceed) and keep the WAL bounded.
#pragma once

#include <chrono>
#include <string>

#include "audit/database.h"
#include "egress/audit/periodic.h"

namespace egress::audit {

class Checkpointer {
 public:
  /// Opens its own connection to `path` (already migrated) and checkpoints
  /// every `interval`. Throws AuditError if the file cannot be opened.
  Checkpointer(const std::string& path, std::chrono::milliseconds busy_timeout,
               std::chrono::milliseconds interval);
  ~Checkpointer();  // stops, then one last checkpoint

  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

 private:
  void checkpoint();

  const std::string path_;
  DbPtr db_;
  Periodic thread_;  // last: starts after everything above is initialised
};

}  // namespace egress::audit
