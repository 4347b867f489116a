// Renderers for compose and AppArmor (text templates filled from
// RenderOptions) and the target and mode names. Pure. The Kubernetes files
// are in render_k8s.cpp and render_fleet.cpp, the daemon.json merge in
// daemon_json.cpp, the file writes in render_files.cpp.
#include "egress/sandbox/render.h"

#include <sstream>

namespace egress::sandbox {

namespace {

std::string proxy_url(const RenderOptions& o) {
  return "http://" + o.proxy_service + ":" + std::to_string(o.proxy_port);
}

}  // namespace

Target parse_target(std::string_view text) {
  if (text == "compose") return Target::Compose;
  if (text == "docker-daemon") return Target::DockerDaemon;
  if (text == "k8s") return Target::K8s;
  if (text == "seccomp") return Target::Seccomp;
  if (text == "apparmor") return Target::AppArmor;
  throw std::invalid_argument("unknown target '" + std::string(text) +
                              "'; use compose, docker-daemon, k8s, seccomp or apparmor");
}

policy::Mode parse_mode(std::string_view text) {
  if (text == "production") return policy::Mode::Production;
  if (text == "self-hosted") return policy::Mode::SelfHosted;
  if (text == "developer") return policy::Mode::Developer;
  throw std::invalid_argument("unknown mode '" + std::string(text) + "'; use production, self-hosted or developer");
}

std::string render_compose_override(const RenderOptions& o) {
  const auto url = proxy_url(o);
  const auto mode = policy::to_string(o.mode);
  std::ostringstream y;
  y << "# docker-compose.sandbox.yml, rendered by `egress sandbox render --mode " << mode << " --target compose`.\n"
    << "# Use: docker compose -f docker-compose.yml -f docker-compose.sandbox.yml up -d\n"
    << "# Workers run under gVisor (runtime: runsc) on the internal network `sandbox`\n"
    << "# only; " << o.proxy_service << " is the one service on both networks, so it is the only way out.\n"
    << "# Tested with Docker 20.10 and docker-compose 1.29 (docs/docker.md).\n"
    << "services:\n";
  const std::vector<std::string> workers =
      o.worker_services.empty() ? std::vector<std::string>{o.worker_service} : o.worker_services;
  for (const auto& worker : workers)
    y << "  " << worker << ":\n"
      << "    runtime: runsc\n"
      << "    user: \"65534:65534\"\n"
      << "    read_only: true\n"
      << "    privileged: false\n"
      << "    cap_drop: [ALL]\n"
      << "    security_opt:\n"
      << "      - no-new-privileges:true\n"
      << "    tmpfs:\n"
      << "      - /tmp:rw,nosuid,nodev,size=64m\n"
      // Docker's embedded DNS (127.0.0.11) forwards names it does not know to
      // these servers, from the worker's namespace; the daemon's default ones
      // would be dialled from the host's when they are loopback (CVE-2024-29018,
      // unfixed before Docker 26), so a worker on an internal network could
      // resolve, and tunnel through, outside names. 127.0.0.1 inside the worker
      // answers nothing: service names still resolve, outside names do not.
      << "    dns: [127.0.0.1]\n"
      << "    dns_opt: [\"timeout:1\", \"attempts:1\"]   # an outside name fails in a second, not in 15\n"
      << "    environment:\n"
      << "      # both letter cases: curl ignores upper-case HTTP_PROXY for http:// URLs\n"
      << "      HTTP_PROXY: " << url << "\n"
      << "      HTTPS_PROXY: " << url << "\n"
      << "      http_proxy: " << url << "\n"
      << "      https_proxy: " << url << "\n"
      << "    networks: [sandbox]\n";
  // The policy path is the one docker-compose.yml mounts (../policies).
  y << "  " << o.proxy_service << ":\n"
    << "    command: [\"serve\", \"--mode\", \"" << mode << "\", \"--listen\", \"0.0.0.0:" << o.proxy_port
    << "\", \"--policy\", \"/etc/egress/policies/" << mode << ".yaml\", \"--audit-db\", \"/var/lib/egress/audit.db\",\n"
    << "              \"--secrets-dir\", \"/run/secrets/egress-secrets\"]\n"
    << "    secrets: [egress-secrets]   # the credentials egress injects (docs/secrets.md); no worker gets them\n"
    << "    read_only: true\n"
    << "    cap_drop: [ALL]\n"
    << "    security_opt:\n"
    << "      - no-new-privileges:true\n"
    << "    networks: [sandbox, egress]\n"
    << "# docker-compose 1.29 replaces a network defined again in a later -f file\n"
    << "# whole: such a file must repeat `internal: true` (sandbox verify fails the\n"
    << "# network line of a worker whose network lost it).\n"
    << "networks:\n"
    << "  sandbox:\n"
    << "    internal: true   # Docker drops what leaves this bridge: nothing gets out except through " << o.proxy_service << "\n"
    << "  egress: {}\n"
    << "secrets:\n"
    << "  egress-secrets:\n"
    << "    file: ./secrets   # a directory, one file per secret: root:10001, 0750; files 0640\n";
  return y.str();
}

std::string render_apparmor(const RenderOptions& o) {
  std::ostringstream a;
  a << "# AppArmor profile for workers, after the sandboxing guide. Load it with\n"
    << "#   apparmor_parser -r /etc/apparmor.d/" << o.apparmor_name << "\n"
    << "# and apply it with security_opt: [\"apparmor=" << o.apparmor_name << "\"].\n"
    << "# gVisor does not apply AppArmor inside its sandbox (runsc ignores the OCI\n"
    << "# field); the profile confines workers that run under runc.\n"
    << "#include <tunables/global>\n"
    << "\n"
    << "profile " << o.apparmor_name << " flags=(attach_disconnected,mediate_deleted) {\n"
    << "  #include <abstractions/base>\n"
    << "\n"
    << "  # reading the image is needed (interpreters, libraries); writing is not\n"
    << "  /** r,\n"
    << "  /** ix,\n"
    << "  /tmp/** rw,\n"
    << "  owner /proc/@{pid}/** r,\n"
    << "\n"
    << "  deny /etc/shadow r,\n"
    << "  deny /etc/gshadow r,\n"
    << "  deny /etc/passwd w,\n"
    << "  deny /root/** rw,\n"
    << "  deny /home/** rw,\n"
    << "  deny @{PROC}/sys/kernel/** w,\n"
    << "  deny @{PROC}/sysrq-trigger rw,\n"
    << "  deny @{PROC}/kcore r,\n"
    << "  deny /sys/** w,\n"
    << "\n"
    << "  deny mount,\n"
    << "  deny umount,\n"
    << "  deny pivot_root,\n"
    << "  deny ptrace,\n"
    << "  deny capability,\n"
    << "\n"
    << "  # only TCP (to the proxy) and local sockets; no raw or packet sockets\n"
    << "  deny network raw,\n"
    << "  deny network packet,\n"
    << "  network inet stream,\n"
    << "  network inet6 stream,\n"
    << "  network unix,\n"
    << "}\n";
  return a.str();
}

}  // namespace egress::sandbox
