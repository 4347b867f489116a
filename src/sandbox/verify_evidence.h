// The host-side evidence `sandbox verify` judges after the probe's sandbox
// is gone: the audit rows of the probe's requests, the Docker daemon's
// runtimes, what the sandbox left behind and what the probe wrote.
#pragma once

#include <string>

#include "sandbox/checklist.h"

namespace egress::sandbox {

/// The whole file, or "" when it cannot be read.
std::string read_text_file(const std::string& path);

/// Audit rows of the probe's two proxy requests: each must carry `role`,
/// and one must be an allow of allowed.*, one a deny of denied.*.
Line audit_line(const std::string& db_path, const std::string& role);

/// /etc/docker/daemon.json has runtimes.runsc (SKIP without the file).
Line docker_line();

/// Nothing of instance `id` is left: veth, instance directory, cgroup.
Line leftovers_line(const std::string& id);

/// Nothing the probe tried to write onto the host's / got there (what did
/// is removed).
Line host_write_line();

}  // namespace egress::sandbox
