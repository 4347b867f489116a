// See fd.h.
#include "sandbox/fd.h"

#include <fcntl.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "egress/sandbox/sandbox.h"

namespace egress::sandbox {

Pipe make_pipe() {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) throw SandboxError(std::string("pipe: ") + std::strerror(errno));
  return {UniqueFd(p[0]), UniqueFd(p[1])};
}

pid_t fork_or_throw(const char* what) {
  const pid_t pid = fork();
  if (pid < 0) throw SandboxError(std::string("fork of ") + what + ": " + std::strerror(errno));
  return pid;
}

}  // namespace egress::sandbox
