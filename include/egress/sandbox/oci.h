// The OCI runtime spec (config.json) of a worker sandbox, as a pure
// function of WorkerSpec: what `egress sandbox run` hands to `runsc run`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace egress::sandbox {

struct BindMount {
  std::string source;       // host path
  std::string destination;  // path in the sandbox; must exist in the rootfs (runsc
                            // creates missing ones ON THE HOST when the rootfs is /)
};

struct WorkerSpec {
  std::vector<std::string> args;          // the command
  std::vector<std::string> env;           // extra KEY=VALUE
  std::string proxy_url;                  // http://ADDR:PORT -> HTTP(S)_PROXY, both cases
  std::string rootfs = "/";               // read-only
  std::string hostname = "egress-sandbox";
  std::string netns_path;                 // /proc/PID/ns/net: runsc joins it; "" = no network entry
  std::string cgroups_path;               // "" = none
  std::optional<std::uint64_t> memory_bytes;
  std::optional<std::int64_t> pids_limit;
  std::uint32_t uid = 65534, gid = 65534;
  std::string tmp_size = "64m";
  std::vector<BindMount> read_only_binds;  // e.g. resolv.conf, hosts
  std::vector<std::string> hidden_dirs;     // covered by an empty read-only tmpfs (egress's secrets directory)
  std::string seccomp_profile_json;        // "" = none; else a profile as render_seccomp() writes
};

/// The spec: uid/gid 65534, every capability set empty, noNewPrivileges,
/// read-only root, tmpfs /tmp (nosuid,nodev), the binds read-only, pid/ipc/
/// uts/mount namespaces plus the given network namespace, cgroup limits.
std::string render_oci_spec(const WorkerSpec& spec);

}  // namespace egress::sandbox
