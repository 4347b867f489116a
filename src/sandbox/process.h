// Child processes for the sandbox launcher: fork/exec with an argv (never a
// shell), optionally inside a network namespace, always tied to our life by
// PR_SET_PDEATHSIG so that a SIGKILL of `egress sandbox run` takes every
// helper with it. The launcher is single-threaded, so fork() is safe.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace egress::sandbox {

struct SpawnOptions {
  std::vector<std::string> argv;
  int netns_fd = -1;          // setns(CLONE_NEWNET) before exec; -1 = ours
  int stdin_fd = -1;          // -1 = /dev/null
  int stdout_fd = -1;         // -1 = inherit ours
  int stderr_fd = -1;         // -1 = inherit ours
  bool own_process_group = false;  // a terminal's ^C then reaches only us
};

/// fork + execvp. The child dies with us (PDEATHSIG=SIGKILL), has every
/// signal unblocked and at its default, and keeps only fds 0-2. Throws
/// std::system_error when fork fails; an exec failure shows as exit 127.
pid_t spawn(const SpawnOptions& options);

/// Runs `fn` in a forked child (in `netns_fd` when given) and returns its
/// exit status: for the few things that must happen inside a namespace
/// (sysctls there are per namespace) without an external tool.
int run_in_child(int netns_fd, const std::function<int()>& fn);

struct CommandResult {
  int exit_code = -1;  // exit status, 128+signal, or -1 when it timed out
  std::string output;  // stdout and stderr, interleaved
  bool ok() const { return exit_code == 0; }
};

/// Runs argv to completion with a deadline (killed with SIGKILL at the
/// deadline), capturing its output; `input` is written to its stdin.
CommandResult run_command(const std::vector<std::string>& argv,
                          std::chrono::milliseconds timeout = std::chrono::seconds(20),
                          int netns_fd = -1, const std::string& input = {});

/// Like run_command but throws std::runtime_error naming the command and its
/// output when it fails: for setup steps that must not fail.
void must_run(const std::vector<std::string>& argv, int netns_fd = -1, const std::string& input = {});

/// Waits up to `timeout` for `pid` to exit; its wait status, or nullopt.
std::optional<int> wait_for(pid_t pid, std::chrono::milliseconds timeout);

/// Exit code convention of shells: status, or 128+signal.
int exit_code_of(int wait_status);

/// The absolute path of `name` on PATH, or "" when absent.
std::string find_program(const std::string& name);

}  // namespace egress::sandbox
