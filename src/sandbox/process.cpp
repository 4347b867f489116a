// fork/exec helpers. Why child processes at all: `runsc` is the sandbox and
// must be a process of its own; `ip` and `nft` are the tools whose netlink
// messages Debian tests and supports, and calling them with an argv (no
// shell) is less code to get wrong than hand-built netlink messages.
#include "sandbox/process.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <system_error>
#include <thread>

namespace egress::sandbox {
namespace {

using Clock = std::chrono::steady_clock;

// In the child, before exec: die with the parent, forget the parent's
// signal handling (the launcher blocks signals for its signalfd), enter the
// namespace. Only async-signal-safe calls from here on.
void prepare_child(pid_t parent, int netns_fd) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(126);  // the parent died before prctl
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int sig = 1; sig < NSIG; ++sig) signal(sig, SIG_DFL);
  if (netns_fd >= 0 && setns(netns_fd, CLONE_NEWNET) != 0) _exit(125);
}

void close_other_fds() {
  // close_range(3, ~0U, 0) without depending on the libc wrapper.
  for (int fd = 3; fd < 1024; ++fd) close(fd);
}

}  // namespace

pid_t spawn(const SpawnOptions& options) {
  std::vector<char*> argv;
  for (const auto& a : options.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) throw std::system_error(errno, std::generic_category(), "fork for " + options.argv.at(0));
  if (pid > 0) return pid;
  prepare_child(parent, options.netns_fd);
  if (options.own_process_group) setpgid(0, 0);
  int in = options.stdin_fd >= 0 ? options.stdin_fd : open("/dev/null", O_RDONLY);
  if (in != 0) dup2(in, 0);
  if (options.stdout_fd >= 0 && options.stdout_fd != 1) dup2(options.stdout_fd, 1);
  if (options.stderr_fd >= 0 && options.stderr_fd != 2) dup2(options.stderr_fd, 2);
  close_other_fds();
  execvp(argv[0], argv.data());
  _exit(127);
}

int run_in_child(int netns_fd, const std::function<int()>& fn) {
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) throw std::system_error(errno, std::generic_category(), "fork");
  if (pid == 0) {
    prepare_child(parent, netns_fd);
    _exit(fn());
  }
  const auto status = wait_for(pid, std::chrono::seconds(10));
  if (!status) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    return -1;
  }
  return exit_code_of(*status);
}

CommandResult run_command(const std::vector<std::string>& argv, std::chrono::milliseconds timeout, int netns_fd,
                          const std::string& input) {
  int out[2], in[2];
  if (pipe2(out, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe");
  if (pipe2(in, O_CLOEXEC) != 0) {
    close(out[0]);
    close(out[1]);
    throw std::system_error(errno, std::generic_category(), "pipe");
  }
  SpawnOptions options{argv, netns_fd, in[0], out[1], out[1], false};
  pid_t pid = -1;
  try {
    pid = spawn(options);
  } catch (...) {
    for (int fd : {out[0], out[1], in[0], in[1]}) close(fd);
    throw;
  }
  close(out[1]);
  close(in[0]);
  // Inputs are small (an nft ruleset): they fit the pipe buffer, so writing
  // them whole before reading cannot deadlock.
  if (!input.empty() && write(in[1], input.data(), input.size()) < 0) { /* the child exited early; its status says why */ }
  close(in[1]);

  CommandResult result;
  const auto deadline = Clock::now() + timeout;
  bool timed_out = false;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{out[0], POLLIN, 0};
    const int n = poll(&p, 1, static_cast<int>(left));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    char buf[4096];
    const ssize_t got = read(out[0], buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    result.output.append(buf, static_cast<std::size_t>(got));
  }
  close(out[0]);
  if (timed_out) kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.exit_code = timed_out ? -1 : exit_code_of(status);
  return result;
}

void must_run(const std::vector<std::string>& argv, int netns_fd, const std::string& input) {
  const auto result = run_command(argv, std::chrono::seconds(20), netns_fd, input);
  if (result.ok()) return;
  std::string line;
  for (const auto& a : argv) line += (line.empty() ? "" : " ") + a;
  throw std::runtime_error("`" + line + "` failed (exit " + std::to_string(result.exit_code) + "): " +
                           result.output);
}

std::optional<int> wait_for(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t got = waitpid(pid, &status, WNOHANG);
    if (got == pid) return status;
    if (got < 0 && errno != EINTR) return std::nullopt;
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

int exit_code_of(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return 1;
}

std::string find_program(const std::string& name) {
  if (name.find('/') != std::string::npos) return access(name.c_str(), X_OK) == 0 ? name : "";
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  std::size_t start = 0;
  while (start <= dirs.size()) {
    const auto end = std::min(dirs.find(':', start), dirs.size());
    const auto candidate = dirs.substr(start, end - start) + "/" + name;
    struct stat st {};
    if (end > start && stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(candidate.c_str(), X_OK) == 0)
      return candidate;
    start = end + 1;
  }
  return "";
}

}  // namespace egress::sandbox
