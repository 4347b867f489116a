// The workers' seccomp profile. The guide's list (48 syscalls) is too short
// for python3 or curl to start (no openat, newfstatat, futex, getrandom,
// exit_group, ...), so this allowlist is what those two need, measured by
// running them under runsc with the profile in the OCI spec
// (tests/integration/test_sandbox_seccomp.py), plus the usual process,
// file, socket and time calls. Left out on purpose: mount, namespaces,
// ptrace, modules, kexec, bpf, keyrings, perf, userfaultfd, clocks and host
// names — calls a worker has no business making. Docker's and the OCI
// runtime spec's formats agree on the fields used here.
#include <boost/json.hpp>

#include <sstream>

#include "egress/sandbox/render.h"

namespace egress::sandbox {

const std::vector<std::string>& seccomp_allowed_syscalls() {
  static const std::vector<std::string> names = {
      // files
      "read", "write", "open", "openat", "openat2", "close", "close_range", "creat", "stat", "fstat", "lstat",
      "newfstatat", "statx", "statfs", "fstatfs", "lseek", "pread64", "pwrite64", "readv", "writev", "preadv",
      "pwritev", "preadv2", "pwritev2", "access", "faccessat", "faccessat2", "getdents", "getdents64", "getcwd",
      "chdir", "fchdir", "rename", "renameat", "renameat2", "mkdir", "mkdirat", "rmdir", "link", "linkat",
      "unlink", "unlinkat", "symlink", "symlinkat", "readlink", "readlinkat", "chmod", "fchmod", "fchmodat",
      "chown", "fchown", "lchown", "fchownat", "umask", "truncate", "ftruncate", "fallocate", "fsync",
      "fdatasync", "sync_file_range", "flock", "fcntl", "ioctl", "dup", "dup2", "dup3", "pipe", "pipe2",
      "sendfile", "splice", "tee", "copy_file_range", "utime", "utimes", "utimensat", "futimesat", "fadvise64",
      "readahead", "memfd_create", "inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch",
      "getxattr", "lgetxattr", "fgetxattr", "listxattr", "llistxattr", "flistxattr",
      // memory
      "mmap", "mprotect", "munmap", "mremap", "msync", "mincore", "madvise", "brk", "mlock", "munlock",
      "membarrier",
      // processes and threads
      "clone", "fork", "vfork", "execve", "execveat", "exit", "exit_group", "wait4", "waitid", "kill", "tgkill",
      "tkill", "getpid", "getppid", "gettid", "getpgid", "getpgrp", "setpgid", "getsid", "setsid", "getuid",
      "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups", "setuid", "setgid", "setreuid",
      "setregid", "setresuid", "setresgid", "setgroups", "setfsuid", "setfsgid", "capget", "prctl", "arch_prctl",
      "set_tid_address", "set_robust_list", "get_robust_list", "futex", "rseq", "sched_yield",
      "sched_getaffinity", "sched_setaffinity", "sched_getparam", "sched_getscheduler", "sched_get_priority_max",
      "sched_get_priority_min", "getpriority", "setpriority", "getrlimit", "setrlimit", "prlimit64", "getrusage",
      "uname", "sysinfo", "times", "getcpu", "getrandom", "restart_syscall",
      // signals
      "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigpending", "rt_sigtimedwait", "rt_sigqueueinfo",
      "rt_sigsuspend", "sigaltstack", "signalfd", "signalfd4", "pause", "alarm", "getitimer", "setitimer",
      // time
      "time", "gettimeofday", "clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep", "timer_create",
      "timer_settime", "timer_gettime", "timer_getoverrun", "timer_delete", "timerfd_create", "timerfd_settime",
      "timerfd_gettime",
      // polling
      "select", "pselect6", "poll", "ppoll", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait",
      "epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2",
      // sockets (the network namespace decides where they can go)
      "socket", "socketpair", "connect", "accept", "accept4", "bind", "listen", "shutdown", "getsockname",
      "getpeername", "setsockopt", "getsockopt", "sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg",
      "recvmmsg",
  };
  return names;
}

std::string render_seccomp(const RenderOptions&) {
  namespace json = boost::json;
  json::array allowed;
  for (const auto& n : seccomp_allowed_syscalls()) allowed.emplace_back(n);
  json::object allow_rule{{"names", std::move(allowed)}, {"action", "SCMP_ACT_ALLOW"}};
  // glibc falls back from clone3 to clone only on ENOSYS, not on EPERM.
  json::object clone3_rule{{"names", json::array{"clone3"}}, {"action", "SCMP_ACT_ERRNO"}, {"errnoRet", 38}};
  json::object profile{
      {"defaultAction", "SCMP_ACT_ERRNO"},
      {"architectures", json::array{"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"}},
      {"syscalls", json::array{std::move(allow_rule), std::move(clone3_rule)}},
  };
  // One syscall name per line keeps reviews of the list readable.
  std::ostringstream out;
  out << "{\n  \"defaultAction\": \"SCMP_ACT_ERRNO\",\n"
      << "  \"architectures\": " << json::serialize(profile["architectures"]) << ",\n"
      << "  \"syscalls\": [\n    {\n      \"names\": [\n";
  const auto& names = seccomp_allowed_syscalls();
  for (std::size_t i = 0; i < names.size(); ++i)
    out << "        \"" << names[i] << "\"" << (i + 1 < names.size() ? ",\n" : "\n");
  out << "      ],\n      \"action\": \"SCMP_ACT_ALLOW\"\n    },\n"
      << "    " << json::serialize(profile["syscalls"].as_array()[1]) << "\n  ]\n}\n";
  return out.str();
}

}  // namespace egress::sandbox
