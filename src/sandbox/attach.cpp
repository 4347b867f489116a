// See attach.h.
#include "sandbox/attach.h"

#include <poll.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <optional>

#include "sandbox/process.h"

namespace egress::sandbox {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

void write_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // our reader went away; keep running the command
    data += n;
    size -= static_cast<std::size_t>(n);
  }
}

// One run's relay state. Each step reads or changes only these members.
class Relay {
 public:
  Relay(AttachedChild child, const SignalGuard& signals, const RelayOptions& options)
      : child_(std::move(child)), signals_(signals), options_(options),
        deadline_(options.timeout.count() > 0 ? Clock::now() + options.timeout : Clock::time_point::max()) {}

  RelayOutcome run() {
    pollfd fds[3] = {{child_.out.get(), POLLIN, 0}, {child_.err.get(), POLLIN, 0}, {signals_.fd(), POLLIN, 0}};
    for (;;) {
      const auto now = Clock::now();
      if (over(now)) break;
      enforce_deadlines(now);
      if (poll(fds, 3, wait_ms(now)) < 0 && errno != EINTR) break;
      for (int i = 0; i < 2; ++i) read_output(fds[i], i == 0 ? child_.out : child_.err);
      if (fds[2].revents & POLLIN) read_signals();
      reap();
    }
    outcome_.exit_code = timed_out_ ? kExitTimeout : stop_signal_ ? 128 + stop_signal_ : exit_code_of(*child_status_);
    return std::move(outcome_);
  }

 private:
  bool over(Clock::time_point now) const {
    return child_status_ && (fds_open_ == 0 || (child_gone_ && now - *child_gone_ > 2s));
  }

  // The sandbox's own processes may hold the pipes after `runsc run` is
  // gone; and `runsc kill` may not take. Bound both waits.
  void enforce_deadlines(Clock::time_point now) {
    if (!timed_out_ && now >= deadline_) {
      timed_out_ = true;
      stop_container();
    }
    if (kill_sent_ && !child_status_ && now - *kill_sent_ > 5s) kill(child_.pid, SIGKILL);
  }

  int wait_ms(Clock::time_point now) const {
    if (deadline_ == Clock::time_point::max()) return 200;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - now).count();
    return static_cast<int>(std::clamp<long>(left, 0, 200));
  }

  void read_output(pollfd& p, UniqueFd& owner) {
    if (p.fd < 0 || !(p.revents & (POLLIN | POLLHUP | POLLERR))) return;
    char buf[16384];
    const ssize_t n = read(p.fd, buf, sizeof buf);
    if (n > 0) {
      const auto size = static_cast<std::size_t>(n);
      const bool is_out = &owner == &child_.out;
      if (options_.output == Output::PassThrough) write_all(is_out ? 1 : 2, buf, size);
      else (is_out ? outcome_.stdout_text : outcome_.stderr_text).append(buf, size);
    } else if (n == 0 || errno != EINTR) {
      owner.reset();
      p.fd = -1;
      --fds_open_;
    }
  }

  void read_signals() {
    signalfd_siginfo info{};
    while (read(signals_.fd(), &info, sizeof info) == sizeof info) {
      if (info.ssi_signo != SIGCHLD && !stop_signal_) {
        stop_signal_ = static_cast<int>(info.ssi_signo);
        stop_container();
      }
    }
  }

  void reap() {
    if (child_status_) return;
    int status = 0;
    if (waitpid(child_.pid, &status, WNOHANG) == child_.pid) {
      child_status_ = status;
      child_gone_ = Clock::now();
    }
  }

  void stop_container() {
    if (kill_sent_) return;
    kill_sent_ = Clock::now();
    options_.stop_container();
  }

  AttachedChild child_;
  const SignalGuard& signals_;
  const RelayOptions& options_;
  const Clock::time_point deadline_;
  RelayOutcome outcome_;
  std::optional<int> child_status_;
  int fds_open_ = 2;
  int stop_signal_ = 0;
  bool timed_out_ = false;
  std::optional<Clock::time_point> kill_sent_, child_gone_;
};

}  // namespace

SignalGuard::SignalGuard() {
  sigemptyset(&mask_);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGCHLD}) sigaddset(&mask_, sig);
  sigprocmask(SIG_BLOCK, &mask_, &old_);
  fd_.reset(signalfd(-1, &mask_, SFD_CLOEXEC | SFD_NONBLOCK));
  old_pipe_ = signal(SIGPIPE, SIG_IGN);
}

SignalGuard::~SignalGuard() {
  fd_.reset();
  signal(SIGPIPE, old_pipe_);
  sigprocmask(SIG_SETMASK, &old_, nullptr);
}

RelayOutcome relay_until_exit(AttachedChild child, const SignalGuard& signals, const RelayOptions& options) {
  return Relay(std::move(child), signals, options).run();
}

}  // namespace egress::sandbox
