// The only writes of `sandbox render`: each rendered file written
// atomically, and daemon.json merged in place with a backup.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include "egress/sandbox/render.h"

namespace egress::sandbox {

void write_file_atomic(const std::string& path, const std::string& text, unsigned mode, Backup backup) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  if (backup == Backup::KeepOld && fs::exists(target)) {
    std::ifstream in(target, std::ios::binary);
    std::stringstream old;
    old << in.rdbuf();
    write_file_atomic(path + ".bak", old.str(), mode);
  }
  const std::string tmp = path + ".tmp." + std::to_string(getpid());
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "create " + tmp);
  auto fail = [&](const char* what) {
    const int e = errno;
    close(fd);
    unlink(tmp.c_str());
    throw std::system_error(e, std::generic_category(), std::string(what) + " " + tmp);
  };
  if (fchmod(fd, mode) != 0) fail("chmod");
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("write");
    }
    done += static_cast<std::size_t>(n);
  }
  if (fsync(fd) != 0) fail("fsync");
  close(fd);
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    unlink(tmp.c_str());
    throw std::system_error(e, std::generic_category(), "rename " + tmp + " to " + path);
  }
  // The rename is durable only once the directory is.
  const int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
}

std::vector<std::string> render_to_directory(Target target, const RenderOptions& options, const std::string& out) {
  namespace fs = std::filesystem;
  fs::create_directories(out);
  std::vector<RenderedFile> files;
  switch (target) {
    case Target::Compose: files.push_back({"docker-compose.sandbox.yml", render_compose_override(options)}); break;
    case Target::K8s: files = render_k8s(options); break;
    case Target::Seccomp: files.push_back({"seccomp-worker.json", render_seccomp(options)}); break;
    case Target::AppArmor: files.push_back({options.apparmor_name, render_apparmor(options)}); break;
    case Target::DockerDaemon: {
      const auto path = (fs::path(out) / "daemon.json").string();
      std::string existing;
      if (fs::exists(path)) {
        std::ifstream in(path, std::ios::binary);
        std::stringstream s;
        s << in.rdbuf();
        existing = s.str();
      }
      const auto merged = merge_daemon_json(existing, options);  // throws before anything is written
      write_file_atomic(path, merged, 0644, Backup::KeepOld);
      return {path};
    }
  }
  std::vector<std::string> written;
  for (const auto& f : files) {
    const auto path = (fs::path(out) / f.name).string();
    write_file_atomic(path, f.text, 0644);
    written.push_back(path);
  }
  return written;
}

}  // namespace egress::sandbox
