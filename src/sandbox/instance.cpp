// See instance.h. States 1 and 3 of a run (launcher.cpp lists them all):
// the locks, the instance directory and the reaper, and state 7's cleanup.
#include "sandbox/instance.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>

#include "egress/sandbox/sandbox.h"
#include "sandbox/process.h"

namespace egress::sandbox {
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

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

// Whether the instance directory `dir` has its lock held by a live process.
bool lock_is_held(const fs::path& dir) {
  const UniqueFd fd(open((dir / "lock").c_str(), O_RDWR | O_CLOEXEC));
  return fd && flock(fd.get(), LOCK_EX | LOCK_NB) != 0;
}

// runsc delete removes the cgroups it made; these rmdirs cover a state
// directory that was lost before runsc could record them. cgroup v1 has a
// directory per controller, v2 one.
void remove_cgroups(const std::string& id) {
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
}

// The reaper child: waits on the pipe; a byte means "cleaned up, exit",
// end-of-file means the launcher died, so it cleans up itself.
[[noreturn]] void reaper_main(const std::string& id, int done_fd, int lock_fd) {
  setsid();  // a terminal's signals go to the launcher's group, not here
  const int null = open("/dev/null", O_RDWR);
  dup2(null, 0);
  dup2(null, 1);  // keeps no pipe of our caller open
  dup2(null, 2);
  for (int fd = 3; fd < 1024; ++fd)
    if (fd != done_fd && fd != lock_fd) close(fd);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE}) signal(sig, SIG_IGN);
  char byte = 0;
  ssize_t n;
  while ((n = read(done_fd, &byte, 1)) < 0 && errno == EINTR) {
  }
  if (n != 1) cleanup_instance(id);
  _exit(0);
}

}  // namespace

std::string instance_dir(const std::string& id) { return std::string(kRunDir) + "/" + id; }
std::string container_id(const std::string& id) { return kContainerPrefix + id; }

FileLock::FileLock(const std::string& path, std::chrono::milliseconds wait)
    : fd_(open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600)) {
  if (!fd_) throw SandboxError("open " + path + ": " + std::strerror(errno));
  const auto deadline = Clock::now() + wait;
  while (flock(fd_.get(), LOCK_EX | LOCK_NB) != 0) {
    if (Clock::now() >= deadline)
      throw SandboxError("timed out waiting for " + path + " (another egress sandbox command holds it)");
    std::this_thread::sleep_for(20ms);
  }
}

FileLock global_lock() { return FileLock(std::string(kRunDir) + "/.lock", 30s); }

void cleanup_instance(const std::string& id) {
  const auto dir = instance_dir(id);
  const auto state = dir + "/state";
  const auto runsc = find_program("runsc");
  if (!runsc.empty() && fs::exists(state))
    run_command({runsc, "--root", state, "delete", "--force", container_id(id)}, 20s);
  remove_cgroups(id);
  delete_link(kHostLinkPrefix + id);
  std::error_code ec;
  fs::remove_all(dir, ec);
}

int sweep_locked() {
  int removed = 0;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(kRunDir, ec)) {
    const auto id = entry.path().filename().string();
    if (!entry.is_directory() || !is_instance_id(id)) continue;
    // Held while the instance is cleaned up, so no one else starts on it.
    const UniqueFd fd(open((entry.path() / "lock").c_str(), O_RDWR | O_CLOEXEC));
    if (fd && flock(fd.get(), LOCK_EX | LOCK_NB) != 0) continue;  // alive
    cleanup_instance(id);
    ++removed;
  }
  // A worker link without an instance directory is an orphan.
  for (const auto& link : links_with_prefix(kHostLinkPrefix)) {
    const auto id = link.substr(std::strlen(kHostLinkPrefix));
    if (is_instance_id(id) && !fs::exists(instance_dir(id))) delete_link(link);
  }
  return removed;
}

std::vector<std::string> live_instances() {
  std::vector<std::string> ids;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(kRunDir, ec)) {
    const auto id = entry.path().filename().string();
    if (is_instance_id(id) && lock_is_held(entry.path())) ids.push_back(id);
  }
  return ids;
}

// Holds the instance's lock from a second process that outlives a SIGKILL
// of the launcher (reaper_main).
class Reaper {
 public:
  Reaper(const std::string& id, int lock_fd) {
    Pipe done = make_pipe();
    pid_ = fork_or_throw("the reaper");
    if (pid_ == 0) reaper_main(id, done.read.get(), lock_fd);
    fd_ = std::move(done.write);
  }
  /// The launcher cleaned up: let the reaper go.
  void release() {
    if (!fd_) return;
    const char done = 'd';
    if (write(fd_.get(), &done, 1) != 1) { /* the reaper is gone already; nothing to tell */ }
    fd_.reset();
    if (!wait_for(pid_, 5s)) kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, WNOHANG);
  }
  ~Reaper() { release(); }
  Reaper(const Reaper&) = delete;
  Reaper& operator=(const Reaper&) = delete;

 private:
  pid_t pid_ = -1;
  UniqueFd fd_;
};

Instance::Instance() : id_(new_id()), dir_(instance_dir(id_)) {
  if (mkdir(dir_.c_str(), 0711) != 0) throw SandboxError("mkdir " + dir_ + ": " + std::strerror(errno));
  lock_ = std::make_unique<FileLock>(dir_ + "/lock", 1s);
  reaper_ = std::make_unique<Reaper>(id_, lock_->fd());
}

Instance::~Instance() {
  if (holder_) holder_->stop();
  cleanup_instance(id_);
  if (reaper_) reaper_->release();
}

}  // namespace egress::sandbox
