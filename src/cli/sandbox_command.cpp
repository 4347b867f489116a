// `egress sandbox run|verify|render|setup|teardown|sweep`: flags to
// options, then the sandbox component does the work.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "cli/guarded.h"
#include "egress/config/config.h"
#include "egress/sandbox/render.h"
#include "egress/sandbox/sandbox.h"
#include "egress/sandbox/verify.h"

namespace egress::cli {
namespace {

struct SandboxFlags {
  std::string policy, role, proxy = sandbox::kDefaultProxy, rootfs = "/", memory = "512M", timeout = "0s", platform;
  std::int64_t pids = 128;
  std::vector<std::string> env, command;
  std::string seccomp_file, breakage, secrets_dir;
  // render
  std::string mode = "self-hosted", target, out, proxy_service = "egress";
  std::uint16_t proxy_port = 3128;
  std::vector<std::string> runsc_args, worker_services;
  // verify
  std::string allowed_url, denied_url;
  std::vector<std::string> docker_workers;
  std::string compose_project, egress_container, upstream, docker_cli = "docker";
};

sandbox::ProxyEndpoint parse_proxy(const std::string& text) {
  auto p = sandbox::ProxyEndpoint::parse(text);
  if (!p) throw sandbox::SandboxError("--proxy " + text + ": expected IPV4:PORT, e.g. " + sandbox::kDefaultProxy);
  return *p;
}

sandbox::Breakage parse_breakage(const std::string& text) {
  if (text.empty()) return sandbox::Breakage::None;
  if (text == "default-route") return sandbox::Breakage::DefaultRoute;
  if (text == "secret-in-env") return sandbox::Breakage::SecretInEnv;
  throw sandbox::SandboxError("--break " + text + ": only default-route or secret-in-env");
}

// The flags both verify modes share.
void set_expectations(sandbox::VerifyExpectations& e, const SandboxFlags& f) {
  e.role = f.role;
  e.allowed_url = f.allowed_url;
  e.denied_url = f.denied_url;
  e.secrets_dir = f.secrets_dir;
  e.breakage = parse_breakage(f.breakage);
}

std::string self_path() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? "egress" : p.string();
}

// Every subcommand's errors read "egress sandbox: …", as they always have.
int guarded(const std::function<int()>& body, int failure_code = kExitUsage) {
  return run_reporting_errors("egress sandbox", body, failure_code);
}

}  // namespace

void add_sandbox_command(CLI::App& app, int& exit_code) {
  auto f = std::make_shared<SandboxFlags>();
  auto* cmd = app.add_subcommand("sandbox", "run workers under gVisor behind egress; verify; render deployment files");
  cmd->require_subcommand(1);

  auto* run = cmd->add_subcommand("run", "run CMD under runsc in a network namespace whose only way out is egress");
  run->add_option("--policy", f->policy, "the policy egress serves (the role's `sources` give the worker's address)")->required();
  run->add_option("--role", f->role, "the worker's role")->required();
  run->add_option("--proxy", f->proxy, "egress's listener, IPV4:PORT (see `sandbox setup`)")->default_val(sandbox::kDefaultProxy);
  run->add_option("--rootfs", f->rootfs, "read-only root filesystem (default: the host's /)");
  run->add_option("--memory", f->memory, "memory limit (cgroup), e.g. 512M")->default_val("512M");
  run->add_option("--pids", f->pids, "process limit (cgroup)")->default_val(128);
  run->add_option("--timeout", f->timeout, "kill the command after this long (30s, 5m); 0s = never")->default_val("0s");
  run->add_option("--env", f->env, "extra KEY=VALUE for the command (repeatable)");
  run->add_option("--platform", f->platform, "runsc --platform (ptrace, kvm, systrap); default: runsc's");
  run->add_option("--seccomp", f->seccomp_file, "seccomp profile (JSON, as `render --target seccomp` writes) for the command");
  run->add_option("--secrets-dir", f->secrets_dir, "egress's secrets directory: covered by an empty tmpfs in the worker, never bound into it");
  run->add_option("command", f->command, "the command, after --")->required();
  run->callback([f, &exit_code] {
    exit_code = guarded(
        [&] {
          sandbox::RunOptions o;
          o.policy_file = f->policy;
          o.role = f->role;
          o.proxy = parse_proxy(f->proxy);
          o.rootfs = f->rootfs;
          o.memory_bytes = sandbox::parse_size(f->memory);
          if (!o.memory_bytes) throw sandbox::SandboxError("--memory " + f->memory + ": expected a size such as 512M");
          o.pids_limit = f->pids;
          const auto timeout = config::parse_duration(f->timeout);
          if (!timeout) throw sandbox::SandboxError("--timeout " + f->timeout + ": expected a duration such as 30s");
          o.timeout = *timeout;
          o.env = f->env;
          o.platform = f->platform;
          if (!f->seccomp_file.empty()) {
            std::ifstream in(f->seccomp_file);
            if (!in) throw sandbox::SandboxError("--seccomp " + f->seccomp_file + ": cannot read it");
            o.seccomp_profile_json.assign(std::istreambuf_iterator<char>(in), {});
          }
          o.command = f->command;
          o.secrets_dir = f->secrets_dir;
          return sandbox::run_sandbox(o).exit_code;
        },
        sandbox::kExitSetupFailed);
  });

  auto* verify = cmd->add_subcommand("verify", "run the guide's checks in a sandbox and print the Production Checklist");
  verify->add_option("--policy", f->policy, "use the running egress with this policy (else: self-contained)");
  verify->add_option("--role", f->role, "the role to verify (with --policy)");
  verify->add_option("--proxy", f->proxy, "the running egress (with --policy)")->default_val(sandbox::kDefaultProxy);
  verify->add_option("--allowed-url", f->allowed_url, "with --policy: a URL the role may fetch (expects 200)");
  verify->add_option("--denied-url", f->denied_url, "with --policy: a URL the role may not fetch (expects 403)");
  verify->add_option("--rootfs", f->rootfs, "root filesystem for the probe (needs python3 and curl)");
  verify->add_option("--docker", f->docker_workers, "verify this running worker container instead (repeatable)");
  verify->add_option("--compose-project", f->compose_project, "verify every worker of this compose project (all services but egress's)");
  verify->add_option("--egress-container", f->egress_container, "Docker: egress's container, for the audit rows");
  verify->add_option("--proxy-service", f->proxy_service, "Docker: egress's compose service name")->default_val("egress");
  verify->add_option("--upstream", f->upstream, "Docker: IP:PORT a worker must not reach directly (default: egress's other network)");
  verify->add_option("--docker-cli", f->docker_cli, "Docker: the docker client to run (DOCKER_HOST is honoured)")->default_val("docker");
  verify->add_option("--secrets-dir", f->secrets_dir,
                     "egress's secrets directory: each value is searched for in the worker (by hash; never sent in)");
  // Hidden: weakens the sandbox on purpose so the test sees verify fail.
  verify->add_option("--break", f->breakage, "")->group("");
  verify->callback([f, &exit_code] {
    exit_code = guarded(
        [&] {
          if (!f->docker_workers.empty() || !f->compose_project.empty()) {
            sandbox::DockerVerifyOptions d;
            set_expectations(d, *f);
            d.docker = f->docker_cli;
            d.workers = f->docker_workers;
            d.compose_project = f->compose_project;
            d.proxy_service = f->proxy_service;
            d.egress_container = f->egress_container;
            d.upstream = f->upstream;
            return sandbox::run_verify_docker(d, std::cout);
          }
          sandbox::VerifyOptions o;
          o.egress_binary = self_path();
          o.policy_file = f->policy;
          o.proxy = parse_proxy(f->proxy);
          set_expectations(o, *f);
          o.rootfs = f->rootfs;
          return sandbox::run_verify(o, std::cout);
        });
  });

  auto* render = cmd->add_subcommand("render", "write deployment files: compose, docker-daemon, k8s, seccomp, apparmor");
  render->add_option("--mode", f->mode, "production | self-hosted | developer")->default_val("self-hosted");
  render->add_option("--target", f->target, "compose | docker-daemon | k8s | seccomp | apparmor")->required();
  render->add_option("--out", f->out, "directory to write into (docker-daemon: merges DIR/daemon.json in place)")->required();
  render->add_option("--proxy-service", f->proxy_service, "egress's service name / app label")->default_val("egress");
  render->add_option("--proxy-port", f->proxy_port, "egress's port")->default_val(3128);
  render->add_option("--runsc-arg", f->runsc_args, "docker-daemon: a runtimeArgs entry for runsc (repeatable)");
  render->add_option("--worker-service", f->worker_services, "compose: a worker service to harden (repeatable; default: worker)");
  render->callback([f, &exit_code] {
    exit_code = guarded(
        [&] {
          sandbox::RenderOptions o;
          o.mode = sandbox::parse_mode(f->mode);
          o.proxy_service = f->proxy_service;
          o.proxy_port = f->proxy_port;
          o.runsc_args = f->runsc_args;
          o.worker_services = f->worker_services;
          for (const auto& path : sandbox::render_to_directory(sandbox::parse_target(f->target), o, f->out))
            std::cout << "wrote " << path << "\n";
          return kExitOk;
        });
  });

  auto* setup = cmd->add_subcommand("setup", "create the proxy address and the firewall table (before `egress serve`)");
  setup->add_option("--proxy", f->proxy, "egress's listener, IPV4:PORT")->default_val(sandbox::kDefaultProxy);
  setup->callback([f, &exit_code] {
    exit_code = guarded(
        [&] {
          const auto proxy = parse_proxy(f->proxy);
          sandbox::setup_fabric(proxy);
          std::cout << "proxy address " << proxy.to_string() << " ready (on lo, label " << sandbox::kProxyLabel << ")"
                    << "; start egress with --listen " << proxy.to_string() << "\n";
          return kExitOk;
        });
  });

  auto* teardown = cmd->add_subcommand("teardown", "remove the proxy address and the firewall table (sweeps first)");
  auto* teardown_proxy =
      teardown->add_option("--proxy", f->proxy, "withdraw only this endpoint; the rest goes when none is left");
  teardown->callback([f, teardown_proxy, &exit_code] {
    exit_code = guarded(
        [&] {
          std::optional<sandbox::ProxyEndpoint> proxy;
          if (teardown_proxy->count() > 0) proxy = parse_proxy(f->proxy);
          if (!sandbox::teardown_fabric(proxy)) {
            std::cerr << "egress sandbox: sandboxes are still running; the firewall table stays until they end\n";
            return 1;
          }
          return kExitOk;
        });
  });

  auto* sweep = cmd->add_subcommand("sweep", "remove what dead sandboxes left behind");
  sweep->callback([&exit_code] {
    exit_code = guarded(
        [&] {
          std::cout << "removed " << sandbox::sweep() << " dead sandbox(es)\n";
          return kExitOk;
        });
  });
}

}  // namespace egress::cli
