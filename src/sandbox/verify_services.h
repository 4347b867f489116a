// The services `sandbox verify` stands up around the sandbox it tests: the
// upstream in its own namespace and the "host daemons" a worker must not
// reach. Tiny, forked, bounded by PDEATHSIG and alarm(); not a web server.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <cstdint>
#include <string>

#include "egress/policy/ip.h"

namespace egress::sandbox {

/// A listening socket in `netns_fd`'s namespace (-1: ours); throws
/// SandboxError naming the address when it cannot listen.
int listen_in(int netns_fd, const policy::IpAddress& address, std::uint16_t port);

/// The port `s` is bound to.
std::uint16_t port_of(int s);

/// A forked HTTP/1.0-style server on `listener` (which it takes and closes
/// here): every request gets `body`.
pid_t serve_http(int listener, const std::string& body);

/// Sends `sig`, waits up to 15 s (then SIGKILL) and sets `pid` to -1.
void stop_child(pid_t& pid, int sig = SIGKILL);

}  // namespace egress::sandbox
