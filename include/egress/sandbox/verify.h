// `egress sandbox verify`: runs the sandboxing guide's "Testing Sandboxing
// Effectiveness" checks inside a real sandbox, plus the proxy path through
// egress, and prints the guide's Production Checklist with PASS, FAIL or
// SKIP (with why) per line.
#pragma once

#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "egress/sandbox/sandbox.h"

namespace egress::sandbox {

/// What both verify modes are told to expect, and what to search for.
struct VerifyExpectations {
  std::string role;                     // the role the audit rows must name (see each mode)
  std::string allowed_url, denied_url;  // URLs expected to get 200 / 403
  std::string secrets_dir;              // egress's secrets on this host: searched for in every worker
  Breakage breakage = Breakage::None;
};

struct VerifyOptions : VerifyExpectations {
  std::string egress_binary;  // started as `egress serve` in self-contained mode
  // policy_file and role both empty: self-contained (own egress, policy,
  // upstream, URLs). Both set: use the operator's egress at `proxy` and the
  // policy's role. secrets_dir is also hidden from the probe's sandbox.
  std::string policy_file;
  ProxyEndpoint proxy = *ProxyEndpoint::parse(kDefaultProxy);
  std::string rootfs = "/";
};

/// Prints the checklist to `out`; returns 0 when no line failed, 1 when one
/// did. Throws SandboxError when the checks cannot run at all.
int run_verify(const VerifyOptions& options, std::ostream& out);

/// `sandbox verify --docker`: the same checklist against a running Docker
/// deployment. The daemon's runtimes and the containers' configuration come
/// from `docker info` / `docker inspect`; the probe runs in each worker
/// through `docker exec`; the audit rows through `docker exec EGRESS egress audit`.
/// role empty: any role, but one.
struct DockerVerifyOptions : VerifyExpectations {
  std::string docker = "docker";      // the CLI; DOCKER_HOST and friends come from the environment
  std::vector<std::string> workers;   // container names or ids
  std::string compose_project;        // or: every running container of this project but the proxy service
  std::string proxy_service = "egress";
  std::string egress_container;       // default: the project's proxy service container, if any
  std::string upstream;               // IP:PORT a worker must not reach directly (default: egress's other leg)
};

/// Returns 0 when no line failed, 1 when one did; throws SandboxError when
/// Docker cannot be asked at all or no worker is found.
int run_verify_docker(const DockerVerifyOptions& options, std::ostream& out);

}  // namespace egress::sandbox
