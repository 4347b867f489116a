// One sandbox instance's host-side life: its directory under kRunDir, the
// lock held for as long as it lives, and the reaper that cleans up after a
// SIGKILL of the launcher; plus the sweep that removes dead instances.
//
// Invariant: while an instance's lock is held (by the launcher or its
// reaper) nothing else touches it; once free, anyone may remove it.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sandbox/fd.h"
#include "sandbox/network.h"

namespace egress::sandbox {

std::string instance_dir(const std::string& id);
std::string container_id(const std::string& id);

/// An exclusive flock with a bounded wait; throws SandboxError naming the
/// file when another egress sandbox command keeps it longer.
class FileLock {
 public:
  FileLock(const std::string& path, std::chrono::milliseconds wait);
  int fd() const { return fd_.get(); }

 private:
  UniqueFd fd_;
};

/// The global lock (kRunDir/.lock) that serialises allocation.
FileLock global_lock();

/// Removes one instance's leftovers. Safe to repeat; every step is best effort.
void cleanup_instance(const std::string& id);

/// Removes every instance whose lock is free, and orphaned worker links.
/// Call under the global lock. Returns how many instances it removed.
int sweep_locked();

class Reaper;

/// A new instance: a fresh id, its directory, its lock and its reaper. The
/// destructor tears everything down (netns holder, runsc state, cgroups,
/// veth, directory) and lets the reaper go.
class Instance {
 public:
  Instance();
  ~Instance();
  Instance(const Instance&) = delete;
  Instance& operator=(const Instance&) = delete;

  const std::string& id() const { return id_; }
  const std::string& dir() const { return dir_; }
  std::unique_ptr<NetnsHolder>& holder() { return holder_; }

 private:
  std::string id_, dir_;
  std::unique_ptr<FileLock> lock_;
  std::unique_ptr<Reaper> reaper_;
  std::unique_ptr<NetnsHolder> holder_;
};

}  // namespace egress::sandbox
