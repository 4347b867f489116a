// State 6 of a run (launcher.cpp lists them): `runsc run` attached. Its
// stdout and stderr are relayed (or captured); a signal or the timeout ends
// the container with `runsc kill`; the run is over when the child is gone
// and its pipes are closed, or 2 s after it is gone (the sandbox's own
// processes may hold the pipes).
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>

#include "egress/sandbox/sandbox.h"
#include "sandbox/fd.h"

namespace egress::sandbox {

/// Signals arrive through a signalfd so that a ^C during setup is held until
/// the relay loop, which then tears down in order. SIGPIPE is ignored while
/// it lives.
class SignalGuard {
 public:
  SignalGuard();
  ~SignalGuard();
  SignalGuard(const SignalGuard&) = delete;
  SignalGuard& operator=(const SignalGuard&) = delete;
  int fd() const { return fd_.get(); }

 private:
  sigset_t mask_{}, old_{};
  UniqueFd fd_;
  sighandler_t old_pipe_{};
};

/// The attached `runsc run`: its pid and the read ends of its output pipes.
struct AttachedChild {
  pid_t pid = -1;
  UniqueFd out, err;
};

struct RelayOptions {
  Output output = Output::PassThrough;
  std::chrono::milliseconds timeout{0};  // 0 = none
  std::function<void()> stop_container;  // `runsc kill`: called at most once
};

struct RelayOutcome {
  int exit_code = 0;  // as RunResult::exit_code
  std::string stdout_text, stderr_text;  // Output::Capture only
};

/// Relays until the run is over (see the top of this file).
RelayOutcome relay_until_exit(AttachedChild child, const SignalGuard& signals, const RelayOptions& options);

}  // namespace egress::sandbox
