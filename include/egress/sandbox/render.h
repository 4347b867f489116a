// Pure renderers for the deployment files of the sandboxing guide, with
// egress as the one way out: a compose override, a Docker daemon.json merge,
// Kubernetes RuntimeClasses and NetworkPolicies, a seccomp profile and an
// AppArmor profile. No I/O except write_rendered()/merge_daemon_json_file(),
// so every renderer is unit-tested on its text.
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "egress/policy/policy.h"

namespace egress::sandbox {

enum class Target { Compose, DockerDaemon, K8s, Seccomp, AppArmor };

/// "compose" | "docker-daemon" | "k8s" | "seccomp" | "apparmor"; throws
/// std::invalid_argument naming the valid values otherwise.
Target parse_target(std::string_view text);
policy::Mode parse_mode(std::string_view text);  // "production" | "self-hosted" | "developer"

struct RenderOptions {
  policy::Mode mode = policy::Mode::SelfHosted;
  std::string proxy_service = "egress";       // compose service / k8s app label of egress
  std::uint16_t proxy_port = 3128;
  std::string worker_service = "worker";     // k8s app label; the compose worker when worker_services is empty
  std::vector<std::string> worker_services;  // compose: one hardened block per worker service (--worker-service)
  std::string k8s_namespace = "sandbox";
  std::string image = "egress:latest";
  std::vector<std::string> cluster_cidrs = {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"};
  std::vector<std::string> runsc_args;        // daemon.json runtimeArgs (e.g. "--network=host", see docs/sandboxing.md)
  std::string apparmor_name = "egress-worker";
  int replicas = 2;                            // k8s: egress Deployment replicas
  std::string audit_secret = "egress-audit-db";  // k8s: Secret with the central store's dsn and password
  std::string credentials_secret = "egress-secrets";  // k8s: the credentials egress injects (docs/secrets.md)
};

/// One rendered file: its name inside --out and its text.
struct RenderedFile {
  std::string name;
  std::string text;
};

/// docker-compose.sandbox.yml: workers use runtime runsc, sit only on an
/// `internal: true` network, and egress is the one service on both.
std::string render_compose_override(const RenderOptions& options);

/// RuntimeClass gvisor, NetworkPolicies (workers → egress:port only; egress
/// ingress only from workers; egress's own egress: everything but the
/// cluster ranges and 169.254.169.254, or in production only in-cluster
/// services) and a Kata/Firecracker RuntimeClass variant.
std::vector<RenderedFile> render_k8s(const RenderOptions& options);

/// egress-deployment.yaml (part of render_k8s): the egress Deployment with
/// `replicas` pods replicating their audit logs to the central PostgreSQL
/// store (DSN and password from a Secret, the pod's name as replica name),
/// its Service, and the NetworkPolicy that lets it reach PostgreSQL
/// (docs/audit-fleet.md).
RenderedFile render_k8s_deployment(const RenderOptions& options);

/// A Docker/OCI seccomp profile for workers: default deny (EPERM), an
/// allowlist that python3 and curl need, clone3 answered with ENOSYS so libc
/// falls back to clone.
std::string render_seccomp(const RenderOptions& options);
/// The syscalls render_seccomp() allows (for tests and documentation).
const std::vector<std::string>& seccomp_allowed_syscalls();

std::string render_apparmor(const RenderOptions& options);

class InvalidJson : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Merges `runtimes.runsc` into an existing daemon.json text ("" = {}),
/// keeping every other key as it was. Throws InvalidJson (what() says where)
/// when `existing` is not a JSON object.
std::string merge_daemon_json(const std::string& existing, const RenderOptions& options);

enum class Backup { None, KeepOld };

/// Writes `path` atomically (temp file in the same directory, fsync, rename,
/// fsync of the directory) with `mode`. With Backup::KeepOld and an existing
/// `path`, its old contents are kept as `path.bak` first.
void write_file_atomic(const std::string& path, const std::string& text, unsigned mode = 0644,
                       Backup backup = Backup::None);

/// Renders `target` into directory `out` (created if missing) and returns
/// the paths written. For DockerDaemon, `out/daemon.json` is merged in place
/// (backup at daemon.json.bak); invalid JSON there throws InvalidJson and
/// leaves it untouched.
std::vector<std::string> render_to_directory(Target target, const RenderOptions& options, const std::string& out);

}  // namespace egress::sandbox
