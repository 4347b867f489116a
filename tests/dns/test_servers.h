// Real DNS servers on loopback for the resolver tests: the python fake
// (fake_dns_server.py, next to this file) and dnsmasq. Each is a child
// process started with posix_spawn, awaited until it says it is ready
// (bounded), and stopped by its PID in the destructor (SIGTERM, then SIGKILL).
// Header-only because tests/CMakeLists.txt builds only *_test.cpp files.
#pragma once

#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace egress::dns::testing {

class ChildProcess {
 public:
  /// Starts argv[0] (a path) and waits up to `wait` for a line of its
  /// stdout/stderr containing `ready_marker`.
  ChildProcess(std::vector<std::string> argv, const std::string& ready_marker,
               std::chrono::milliseconds wait = std::chrono::seconds(5)) {
    int fds[2];
    if (pipe(fds) != 0) throw std::runtime_error("test: pipe() failed");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 2);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    const int rc = posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    out_ = fds[0];
    if (rc != 0) {
      pid_ = -1;
      throw std::runtime_error("test: cannot start " + argv[0]);
    }
    try {
      ready_line_ = read_until(ready_marker, wait);
    } catch (...) {
      stop();  // a server that failed to start is not left behind
      throw;
    }
  }
  ~ChildProcess() { stop(); }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  const std::string& ready_line() const { return ready_line_; }

 private:
  void stop() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status = 0;
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(2);
      while (waitpid(pid_, &status, WNOHANG) == 0) {
        if (std::chrono::steady_clock::now() > give_up) {
          kill(pid_, SIGKILL);
          waitpid(pid_, &status, 0);
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
    if (out_ >= 0) close(out_);
    pid_ = -1;
    out_ = -1;
  }

  std::string read_until(const std::string& marker, std::chrono::milliseconds wait) {
    const auto deadline = std::chrono::steady_clock::now() + wait;
    std::string seen;
    while (true) {
      if (const auto at = seen.find(marker); at != std::string::npos) {
        const auto end = seen.find('\n', at);
        if (end != std::string::npos) {
          const auto newline = seen.rfind('\n', at);
          const auto begin = newline == std::string::npos ? 0 : newline + 1;
          return seen.substr(begin, end - begin);
        }
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd p{out_, POLLIN, 0};
      if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
      char buf[512];
      const auto n = read(out_, buf, sizeof buf);
      if (n <= 0) break;
      seen.append(buf, static_cast<std::size_t>(n));
    }
    throw std::runtime_error("test: server did not print \"" + marker + "\" in time; output: " +
                             seen);
  }

  pid_t pid_ = -1;
  int out_ = -1;
  std::string ready_line_;
};

inline std::string unique_temp_path(const std::string& stem) {
  static int counter = 0;
  return (std::filesystem::temp_directory_path() /
          (stem + "-" + std::to_string(getpid()) + "-" + std::to_string(++counter)))
      .string();
}

/// fake_dns_server.py with the given table flags (see its docstring).
class FakeDns {
 public:
  explicit FakeDns(std::vector<std::string> flags) : counts_(unique_temp_path("egress-dns-counts")) {
    const auto script = std::filesystem::path(__FILE__).parent_path() / "fake_dns_server.py";
    std::vector<std::string> argv{"/usr/bin/python3", script.string(), "--counts", counts_};
    argv.insert(argv.end(), flags.begin(), flags.end());
    process_ = std::make_unique<ChildProcess>(argv, "READY");
    port_ = std::stoi(process_->ready_line().substr(process_->ready_line().find(' ') + 1));
  }
  ~FakeDns() {
    process_.reset();
    std::error_code ignored;
    std::filesystem::remove(counts_, ignored);
  }

  std::string server() const { return "127.0.0.1:" + std::to_string(port_); }

  /// Queries seen so far for `name` and `type` ("A", "AAAA").
  int queries(const std::string& name, const std::string& type) const {
    std::ifstream in(counts_);
    std::string n, t;
    int count = 0;
    while (in >> n >> t >> count) {
      if (n == name && t == type) return count;
    }
    return 0;
  }

 private:
  std::string counts_;
  std::unique_ptr<ChildProcess> process_;
  int port_ = 0;
};

/// A loopback UDP port free right now (dnsmasq cannot report the one it took).
inline int free_udp_port() {
  const int fd = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    throw std::runtime_error("test: cannot find a free loopback UDP port");
  }
  close(fd);
  return ntohs(addr.sin_port);
}

/// dnsmasq answering only from --host-record/--address flags, on loopback.
class Dnsmasq {
 public:
  explicit Dnsmasq(const std::vector<std::string>& records) {
    // dnsmasq binds TCP as well as UDP on its port, and the UDP port found
    // free may be taken on TCP (or by then on UDP) by another test running
    // in parallel: a few fresh ports before giving up.
    for (int attempt = 1;; ++attempt) {
      port_ = free_udp_port();
      std::vector<std::string> argv{"/usr/sbin/dnsmasq", "--keep-in-foreground",
                                    "--port=" + std::to_string(port_), "--listen-address=127.0.0.1",
                                    "--bind-interfaces", "--no-resolv", "--no-hosts",
                                    "--conf-file=/dev/null", "--pid-file=", "--log-facility=-",
                                    "--local=/test/", "--local-ttl=1"};
      argv.insert(argv.end(), records.begin(), records.end());
      try {
        process_ = std::make_unique<ChildProcess>(argv, "started");
        return;
      } catch (const std::runtime_error& e) {
        if (attempt == 5 || std::string(e.what()).find("Address already in use") == std::string::npos) throw;
      }
    }
  }
  std::string server() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int port_ = 0;
  std::unique_ptr<ChildProcess> process_;
};

}  // namespace egress::dns::testing
