// See verify_services.h.
#include "sandbox/verify_services.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "egress/sandbox/sandbox.h"
#include "sandbox/process.h"

namespace egress::sandbox {
using namespace std::chrono_literals;

namespace {

sockaddr_in to_sockaddr(const policy::IpAddress& a, std::uint16_t port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  std::memcpy(&sa.sin_addr, a.bytes.data(), 4);
  return sa;
}

}  // namespace

// A listening socket in `netns_fd`'s namespace (-1: ours). A socket stays in
// the namespace it was made in, so we step in, make it, and step back.
int listen_in(int netns_fd, const policy::IpAddress& address, std::uint16_t port) {
  int home = -1;
  if (netns_fd >= 0) {
    home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (home < 0 || setns(netns_fd, CLONE_NEWNET) != 0) throw SandboxError("setns into the upstream namespace failed");
  }
  const int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  auto sa = to_sockaddr(address, port);
  const bool ok = s >= 0 && bind(s, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 && listen(s, 16) == 0;
  const int err = errno;
  if (home >= 0) {
    setns(home, CLONE_NEWNET);
    close(home);
  }
  if (!ok) {
    if (s >= 0) close(s);
    throw SandboxError("listen on " + address.to_string() + ":" + std::to_string(port) + ": " + std::strerror(err));
  }
  return s;
}

std::uint16_t port_of(int s) {
  sockaddr_in sa{};
  socklen_t len = sizeof sa;
  getsockname(s, reinterpret_cast<sockaddr*>(&sa), &len);
  return ntohs(sa.sin_port);
}

// A forked HTTP/1.0-style server on `listener`: every request gets `body`.
// Bounded by PDEATHSIG and alarm().
pid_t serve_http(int listener, const std::string& body) {
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) throw SandboxError(std::string("fork: ") + std::strerror(errno));
  if (pid > 0) {
    close(listener);
    return pid;
  }
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(0);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  signal(SIGPIPE, SIG_IGN);
  alarm(600);
  const std::string response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
                               std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
  for (int served = 0; served < 10000; ++served) {
    const int c = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    timeval tv{5, 0};
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string head;
    char buf[2048];
    while (head.find("\r\n\r\n") == std::string::npos && head.size() < 16384) {
      const ssize_t n = read(c, buf, sizeof buf);
      if (n <= 0) break;
      head.append(buf, static_cast<std::size_t>(n));
    }
    if (write(c, response.data(), response.size()) < 0) { /* the client left; next one */ }
    close(c);
  }
  _exit(0);
}

void stop_child(pid_t& pid, int sig) {
  if (pid <= 0) return;
  kill(pid, sig);
  if (!wait_for(pid, 15s)) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
  pid = -1;
}

}  // namespace egress::sandbox
