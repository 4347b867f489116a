// `sandbox run`: the launcher. States of one run, in order (each undone by
// Instance's destructor, by the reaper after a SIGKILL, or by the next sweep):
//
//   1. global lock /run/egress-sandbox/.lock   (serialises allocation)
//   2. sweep dead instances; ensure the fabric
//   3. instance dir <ID>/ + its lock (flock, held for life) + reaper fork
//   4. netns holder, veth pair, addresses, route   -> global lock released
//   5. bundle (config.json, resolv.conf, hosts), `runsc run` attached
//   6. relay stdout/stderr; signals and the timeout end it with `runsc kill`
//   7. teardown: `runsc delete --force`, cgroups, holder, veth, dir; tell
//      the reaper it is done
//
// Invariant: while an instance's lock is held (by the launcher or its
// reaper) nothing else touches it; once free, anyone may remove it.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "egress/policy/policy.h"
#include "egress/sandbox/oci.h"
#include "egress/sandbox/sandbox.h"
#include "sandbox/network.h"
#include "sandbox/process.h"

namespace egress::sandbox {
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

std::string instance_dir(const std::string& id) { return std::string(kRunDir) + "/" + id; }
std::string container_id(const std::string& id) { return kContainerPrefix + id; }

// `path` is `dir` or below it (both canonical).
bool is_within(const fs::path& path, const fs::path& dir) {
  return std::mismatch(dir.begin(), dir.end(), path.begin(), path.end()).first == dir.end();
}

bool is_instance_id(std::string_view name) {
  if (name.size() != 8) return false;
  for (char c : name)
    if (!std::isxdigit(static_cast<unsigned char>(c)) || std::isupper(static_cast<unsigned char>(c))) return false;
  return true;
}

std::string new_id() {
  unsigned char bytes[4];
  if (getrandom(bytes, sizeof bytes, 0) != sizeof bytes) throw SandboxError("getrandom failed");
  static const char* hex = "0123456789abcdef";
  std::string id;
  for (auto b : bytes) {
    id += hex[b >> 4];
    id += hex[b & 15];
  }
  return id;
}

std::string runsc_path() {
  const auto path = find_program("runsc");
  if (path.empty()) throw SandboxError("runsc not found on PATH; install it (scripts/install-deps.sh --test installs Debian's runsc)");
  return path;
}

void preflight() {
  if (geteuid() != 0) throw SandboxError("egress sandbox needs root (network namespaces, veths, nft, runsc); run it with sudo");
  runsc_path();
  for (const char* tool : {"ip", "nft"})
    if (find_program(tool).empty())
      throw SandboxError(std::string(tool) + " not found on PATH; install iproute2 and nftables");
  fs::create_directories(kRunDir);
  chmod(kRunDir, 0711);
}

// An exclusive flock with a bounded wait.
class FileLock {
 public:
  FileLock(const std::string& path, std::chrono::milliseconds wait) {
    fd_ = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ < 0) throw SandboxError("open " + path + ": " + std::strerror(errno));
    const auto deadline = Clock::now() + wait;
    while (flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      if (Clock::now() >= deadline) {
        close(fd_);
        throw SandboxError("timed out waiting for " + path + " (another egress sandbox command holds it)");
      }
      std::this_thread::sleep_for(20ms);
    }
  }
  ~FileLock() {
    if (fd_ >= 0) close(fd_);
  }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
};

// Removes one instance's leftovers. Safe to repeat; every step is best effort.
void cleanup_instance(const std::string& id) {
  const auto dir = instance_dir(id);
  const auto state = dir + "/state";
  const auto runsc = find_program("runsc");
  if (!runsc.empty() && fs::exists(state))
    run_command({runsc, "--root", state, "delete", "--force", container_id(id)}, 20s);
  // runsc delete removes the cgroups it made; these rmdirs cover a state
  // directory that was lost before runsc could record them. cgroup v1 has a
  // directory per controller, v2 one.
  std::error_code ec;
  for (int attempt = 0; attempt < 20; ++attempt) {
    bool left = false;
    for (const auto& controller : fs::directory_iterator("/sys/fs/cgroup", ec)) {
      const auto path = controller.path() / container_id(id);
      if (fs::exists(path, ec) && rmdir(path.c_str()) != 0) left = true;
    }
    const auto v2 = fs::path("/sys/fs/cgroup") / container_id(id);
    if (fs::exists(v2, ec) && rmdir(v2.c_str()) != 0) left = true;
    if (!left) break;
    std::this_thread::sleep_for(100ms);
  }
  delete_link(kHostLinkPrefix + id);
  fs::remove_all(dir, ec);
}

// Holds the instance's lock from a second process that outlives a SIGKILL
// of the launcher: it waits on a pipe; a byte means "cleaned up, exit",
// end-of-file means the launcher died, so it cleans up itself.
class Reaper {
 public:
  Reaper(const std::string& id, int lock_fd) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) throw SandboxError(std::string("pipe: ") + std::strerror(errno));
    pid_ = fork();
    if (pid_ < 0) {
      close(p[0]);
      close(p[1]);
      throw SandboxError(std::string("fork of the reaper: ") + std::strerror(errno));
    }
    if (pid_ == 0) {
      setsid();  // a terminal's signals go to the launcher's group, not here
      const int null = open("/dev/null", O_RDWR);
      dup2(null, 0);
      dup2(null, 1);  // keeps no pipe of our caller open
      dup2(null, 2);
      for (int fd = 3; fd < 1024; ++fd)
        if (fd != p[0] && fd != lock_fd) close(fd);
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE}) signal(sig, SIG_IGN);
      char byte = 0;
      ssize_t n;
      while ((n = read(p[0], &byte, 1)) < 0 && errno == EINTR) {
      }
      if (n != 1) cleanup_instance(id);
      _exit(0);
    }
    close(p[0]);
    fd_ = p[1];
  }
  /// The launcher cleaned up: let the reaper go.
  void release() {
    if (fd_ < 0) return;
    const char done = 'd';
    if (write(fd_, &done, 1) != 1) { /* the reaper is gone already; nothing to tell */ }
    close(fd_);
    fd_ = -1;
    if (!wait_for(pid_, 5s)) kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, WNOHANG);
  }
  ~Reaper() { release(); }
  Reaper(const Reaper&) = delete;
  Reaper& operator=(const Reaper&) = delete;

 private:
  pid_t pid_ = -1;
  int fd_ = -1;
};

int sweep_locked() {
  int removed = 0;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(kRunDir, ec)) {
    const auto id = entry.path().filename().string();
    if (!entry.is_directory() || !is_instance_id(id)) continue;
    const auto lock = entry.path() / "lock";
    const int fd = open(lock.c_str(), O_RDWR | O_CLOEXEC);
    if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) != 0) {
      close(fd);  // alive
      continue;
    }
    cleanup_instance(id);
    if (fd >= 0) close(fd);
    ++removed;
  }
  // A worker link without an instance directory is an orphan.
  for (const auto& link : links_with_prefix(kHostLinkPrefix)) {
    const auto id = link.substr(std::strlen(kHostLinkPrefix));
    if (is_instance_id(id) && !fs::exists(instance_dir(id))) delete_link(link);
  }
  return removed;
}

class Instance {
 public:
  Instance() : id_(new_id()), dir_(instance_dir(id_)) {
    if (mkdir(dir_.c_str(), 0711) != 0) throw SandboxError("mkdir " + dir_ + ": " + std::strerror(errno));
    lock_ = std::make_unique<FileLock>(dir_ + "/lock", 1s);
    reaper_ = std::make_unique<Reaper>(id_, lock_->fd());
  }
  ~Instance() {
    if (holder_) holder_->stop();
    cleanup_instance(id_);
    if (reaper_) reaper_->release();
  }
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

// Signals arrive through a signalfd so that a ^C during setup is held until
// the relay loop, which then tears down in order.
class SignalGuard {
 public:
  SignalGuard() {
    sigemptyset(&mask_);
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGCHLD}) sigaddset(&mask_, sig);
    sigprocmask(SIG_BLOCK, &mask_, &old_);
    fd_ = signalfd(-1, &mask_, SFD_CLOEXEC | SFD_NONBLOCK);
    old_pipe_ = signal(SIGPIPE, SIG_IGN);
  }
  ~SignalGuard() {
    close(fd_);
    signal(SIGPIPE, old_pipe_);
    sigprocmask(SIG_SETMASK, &old_, nullptr);
  }
  SignalGuard(const SignalGuard&) = delete;
  SignalGuard& operator=(const SignalGuard&) = delete;
  int fd() const { return fd_; }

 private:
  sigset_t mask_{}, old_{};
  int fd_ = -1;
  sighandler_t old_pipe_{};
};

policy::Cidr role_range(const std::string& policy_file, const std::string& role) {
  policy::PolicySnapshot snapshot;
  try {
    snapshot = policy::load_policy_file(policy_file);
  } catch (const std::exception& e) {
    throw SandboxError(std::string("cannot load the policy: ") + e.what());
  }
  for (const auto& r : snapshot->model().roles) {
    if (r.name != role) continue;
    for (const auto& cidr : r.sources)
      if (cidr.network.is_v4() && cidr.prefix_len <= 30) return cidr;
    throw SandboxError("role '" + role + "' in " + policy_file +
                       " has no IPv4 `sources` range of /30 or larger; add one, e.g. sources: [10.213.1.0/24], so "
                       "egress can tell this worker's role from its address");
  }
  throw SandboxError("role '" + role + "' is not in " + policy_file + "; use one of its `roles`");
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  if (!out) throw SandboxError("write " + path + " failed");
  chmod(path.c_str(), 0644);
}

void write_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // our reader went away; keep running the command
    data += n;
    size -= static_cast<std::size_t>(n);
  }
}

}  // namespace

std::optional<ProxyEndpoint> ProxyEndpoint::parse(std::string_view text) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  auto address = policy::IpAddress::parse(text.substr(0, colon));
  if (!address || !address->is_v4()) return std::nullopt;
  unsigned port = 0;
  const auto ptext = text.substr(colon + 1);
  auto [p, ec] = std::from_chars(ptext.data(), ptext.data() + ptext.size(), port);
  if (ec != std::errc() || p != ptext.data() + ptext.size() || port == 0 || port > 65535) return std::nullopt;
  return ProxyEndpoint{*address, static_cast<std::uint16_t>(port)};
}

std::string ProxyEndpoint::to_string() const { return address.to_string() + ":" + std::to_string(port); }

std::optional<std::uint64_t> parse_size(std::string_view text) {
  std::uint64_t value = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || p == text.data()) return std::nullopt;
  std::string_view unit(p, static_cast<std::size_t>(text.data() + text.size() - p));
  int shift = 0;
  if (unit == "" || unit == "B") shift = 0;
  else if (unit == "k" || unit == "K" || unit == "KiB") shift = 10;
  else if (unit == "m" || unit == "M" || unit == "MiB") shift = 20;
  else if (unit == "g" || unit == "G" || unit == "GiB") shift = 30;
  else return std::nullopt;
  if (value > (std::uint64_t{1} << (63 - shift))) return std::nullopt;
  return value << shift;
}

void setup_fabric(const ProxyEndpoint& proxy) {
  preflight();
  FileLock global(std::string(kRunDir) + "/.lock", 30s);
  ensure_fabric(proxy);
}

bool teardown_fabric(const std::optional<ProxyEndpoint>& proxy) {
  preflight();
  FileLock global(std::string(kRunDir) + "/.lock", 30s);
  sweep_locked();
  if (proxy) withdraw_proxy(*proxy);
  // Never drop the firewall under a live sandbox.
  if (!links_with_prefix(kHostLinkPrefix).empty()) return false;
  if (!proxy || !fabric_has_proxies()) delete_fabric();
  return true;
}

int sweep() {
  preflight();
  FileLock global(std::string(kRunDir) + "/.lock", 30s);
  return sweep_locked();
}

std::vector<std::string> live_instances() {
  std::vector<std::string> ids;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(kRunDir, ec)) {
    const auto id = entry.path().filename().string();
    if (!is_instance_id(id)) continue;
    const int fd = open((entry.path() / "lock").c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) continue;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) ids.push_back(id);
    close(fd);
  }
  return ids;
}

RunResult run_sandbox(const RunOptions& options) {
  if (options.command.empty()) throw SandboxError("no command given; put it after --, e.g. -- python3 job.py");
  preflight();
  const auto runsc = runsc_path();
  const auto range = role_range(options.policy_file, options.role);
  const fs::path secrets_dir = options.secrets_dir.empty() ? fs::path() : fs::weakly_canonical(options.secrets_dir);
  for (const auto& b : options.binds)
    if (!secrets_dir.empty() && is_within(fs::weakly_canonical(b.source), secrets_dir))
      throw SandboxError("the bind " + b.source + " -> " + b.destination + " would put egress's secrets directory " +
                         options.secrets_dir + " into the worker; bind something outside it");
  SignalGuard signals;

  std::optional<Instance> instance;
  Subnet30 subnet;
  {
    FileLock global(std::string(kRunDir) + "/.lock", 30s);
    sweep_locked();
    ensure_fabric(options.proxy);
    instance.emplace();
    const auto allocated = allocate_subnet(range);
    if (!allocated)
      throw SandboxError("no free /30 left in " + range.to_string() + " (role " + options.role +
                         "); widen the role's sources or end some sandboxes");
    subnet = *allocated;
    instance->holder() = std::make_unique<NetnsHolder>();
    create_worker_link(instance->id(), *instance->holder(), subnet, options.proxy, options.breakage);
  }

  const auto& dir = instance->dir();
  WorkerSpec spec;
  spec.args = options.command;
  spec.env = options.env;
  spec.proxy_url = options.proxy.url();
  spec.rootfs = fs::absolute(options.rootfs).string();
  spec.netns_path = instance->holder()->path();
  spec.cgroups_path = std::string("/").append(container_id(instance->id()));  // append: GCC 12 -O3 -Wrestrict false positive on "/" + string
  spec.memory_bytes = options.memory_bytes;
  spec.pids_limit = options.pids_limit;
  spec.seccomp_profile_json = options.seccomp_profile_json;
  // No resolver: the one in resolv.conf is the worker's own loopback, where
  // nothing listens, so lookups fail at once instead of timing out. Only
  // onto paths that exist: runsc creates missing mount points on the host.
  write_text(dir + "/resolv.conf", "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n");
  write_text(dir + "/hosts", "127.0.0.1\tlocalhost\n");
  for (const char* f : {"/etc/resolv.conf", "/etc/hosts"})
    if (fs::exists(fs::path(spec.rootfs) / (f + 1))) spec.read_only_binds.push_back({dir + "/" + fs::path(f).filename().string(), f});
  for (const auto& b : options.binds) spec.read_only_binds.push_back(b);
  // The secrets directory, where the rootfs has it (the host's / does), is
  // covered so that the worker cannot even list the secrets' names.
  if (!options.secrets_dir.empty() && fs::exists(fs::path(spec.rootfs) / secrets_dir.relative_path()))
    spec.hidden_dirs.push_back(secrets_dir.string());
  write_text(dir + "/config.json", render_oci_spec(spec));
  fs::create_directories(dir + "/state");

  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) throw SandboxError("pipe failed");
  std::vector<std::string> argv{runsc, "--root", dir + "/state", "--network=host"};
  if (!options.platform.empty()) argv.push_back("--platform=" + options.platform);
  // runsc ignores linux.seccomp unless told to apply it inside the sandbox.
  if (!options.seccomp_profile_json.empty()) argv.push_back("--oci-seccomp");
  argv.insert(argv.end(), {"run", "--bundle", dir, container_id(instance->id())});
  // Pipes, never a file: gVisor writes a regular-file stdout at its own
  // offset and clobbers what is around it.
  const pid_t child = spawn({argv, -1, -1, out[1], err[1], true});
  close(out[1]);
  close(err[1]);

  RunResult result;
  result.id = instance->id();
  result.worker_address = subnet.worker().to_string();
  const auto deadline = options.timeout.count() > 0 ? Clock::now() + options.timeout : Clock::time_point::max();
  std::optional<int> child_status;
  int fds_open = 2;
  int stop_signal = 0;
  bool timed_out = false;
  std::optional<Clock::time_point> kill_sent, child_gone;

  auto stop_container = [&] {
    if (kill_sent) return;
    kill_sent = Clock::now();
    run_command({runsc, "--root", dir + "/state", "kill", container_id(instance->id()), "KILL"}, 10s);
  };

  pollfd fds[3] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}, {signals.fd(), POLLIN, 0}};
  for (;;) {
    const auto now = Clock::now();
    if (child_status && (fds_open == 0 || (child_gone && now - *child_gone > 2s))) break;
    if (!timed_out && now >= deadline) {
      timed_out = true;
      stop_container();
    }
    // The sandbox's own processes may hold the pipes after `runsc run` is
    // gone; and `runsc kill` may not take. Bound both waits.
    if (kill_sent && !child_status && now - *kill_sent > 5s) kill(child, SIGKILL);
    int wait_ms = 200;
    if (deadline != Clock::time_point::max())
      wait_ms = static_cast<int>(std::clamp<long>(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count(), 0, 200));
    if (poll(fds, 3, wait_ms) < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[16384];
      const ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        if (options.output == Output::PassThrough) write_all(i == 0 ? 1 : 2, buf, static_cast<std::size_t>(n));
        else (i == 0 ? result.stdout_text : result.stderr_text).append(buf, static_cast<std::size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --fds_open;
      }
    }
    if (fds[2].revents & POLLIN) {
      signalfd_siginfo info{};
      while (read(signals.fd(), &info, sizeof info) == sizeof info) {
        if (info.ssi_signo != SIGCHLD && !stop_signal) {
          stop_signal = static_cast<int>(info.ssi_signo);
          stop_container();
        }
      }
    }
    if (!child_status) {
      int status = 0;
      if (waitpid(child, &status, WNOHANG) == child) {
        child_status = status;
        child_gone = Clock::now();
      }
    }
  }
  for (int i = 0; i < 2; ++i)
    if (fds[i].fd >= 0) close(fds[i].fd);

  result.exit_code = timed_out ? kExitTimeout : stop_signal ? 128 + stop_signal : exit_code_of(*child_status);
  instance.reset();  // teardown before we return
  return result;
}

}  // namespace egress::sandbox
