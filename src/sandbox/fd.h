// Owning file descriptors for the launcher and its helpers: a setup step
// that throws half-way (the second pipe2, a fork) must not leak what the
// first steps opened, so every descriptor is closed by its owner's
// destructor, not by hand on each error path.
#pragma once

#include <unistd.h>

#include <utility>

namespace egress::sandbox {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  /// Gives the descriptor up without closing it.
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

/// Both ends of a pipe, close-on-exec.
struct Pipe {
  UniqueFd read, write;
};

/// pipe2(O_CLOEXEC); throws SandboxError naming errno when it fails.
Pipe make_pipe();

/// fork(); throws SandboxError("fork of <what>: <errno>") when it fails.
pid_t fork_or_throw(const char* what);

}  // namespace egress::sandbox
