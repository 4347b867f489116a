// Renderers for compose, Kubernetes and AppArmor (text templates filled from
// RenderOptions), the daemon.json merge (Boost.JSON, keys kept in their
// order) and the atomic file writes they share. Pure except for the last two
// functions, which write files.
#include "egress/sandbox/render.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/json.hpp>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

namespace egress::sandbox {
namespace {

namespace json = boost::json;

std::string mode_name(policy::Mode mode) {
  switch (mode) {
    case policy::Mode::Production: return "production";
    case policy::Mode::SelfHosted: return "self-hosted";
    case policy::Mode::Developer: return "developer";
  }
  return "self-hosted";
}

std::string proxy_url(const RenderOptions& o) {
  return "http://" + o.proxy_service + ":" + std::to_string(o.proxy_port);
}

// Boost.JSON serialises on one line; daemon.json is edited by people, so it
// is written indented, two spaces, keys in their original order.
void pretty(std::ostream& out, const json::value& v, int indent) {
  const std::string pad(static_cast<std::size_t>(indent) * 2, ' ');
  const std::string inner(static_cast<std::size_t>(indent + 1) * 2, ' ');
  if (v.is_object()) {
    const auto& obj = v.get_object();
    if (obj.empty()) {
      out << "{}";
      return;
    }
    out << "{\n";
    std::size_t i = 0;
    for (const auto& kv : obj) {
      out << inner << json::serialize(json::string(kv.key())) << ": ";
      pretty(out, kv.value(), indent + 1);
      out << (++i < obj.size() ? ",\n" : "\n");
    }
    out << pad << "}";
  } else if (v.is_array()) {
    const auto& arr = v.get_array();
    if (arr.empty()) {
      out << "[]";
      return;
    }
    out << "[\n";
    for (std::size_t i = 0; i < arr.size(); ++i) {
      out << inner;
      pretty(out, arr[i], indent + 1);
      out << (i + 1 < arr.size() ? ",\n" : "\n");
    }
    out << pad << "]";
  } else {
    out << json::serialize(v);
  }
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
  const auto mode = mode_name(o.mode);
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

std::vector<RenderedFile> render_k8s(const RenderOptions& o) {
  const auto port = std::to_string(o.proxy_port);
  const auto& ns = o.k8s_namespace;
  std::ostringstream rc;
  rc << "# RuntimeClass for gVisor workers: pods set `runtimeClassName: gvisor`.\n"
     << "# Nodes need gVisor's own release (containerd-shim-runsc-v1; Debian's runsc\n"
     << "# package lacks it) and containerd configured with:\n"
     << "#   [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runsc]\n"
     << "#     runtime_type = \"io.containerd.runsc.v1\"\n"
     << "apiVersion: node.k8s.io/v1\n"
     << "kind: RuntimeClass\n"
     << "metadata:\n"
     << "  name: gvisor\n"
     << "handler: runsc\n";

  std::ostringstream kata;
  kata << "# Alternative runtime: Kata Containers with Firecracker micro-VMs (needs KVM on\n"
       << "# the nodes; untested here, the build machines have no /dev/kvm). Pods set\n"
       << "# `runtimeClassName: kata-fc`; the NetworkPolicies apply unchanged.\n"
       << "apiVersion: node.k8s.io/v1\n"
       << "kind: RuntimeClass\n"
       << "metadata:\n"
       << "  name: kata-fc\n"
       << "handler: kata-fc\n"
       << "overhead:\n"
       << "  podFixed:\n"
       << "    memory: \"130Mi\"\n"
       << "    cpu: \"250m\"\n"
       << "scheduling:\n"
       << "  nodeSelector:\n"
       << "    katacontainers.io/kata-runtime: \"true\"\n";

  std::ostringstream np;
  np << "# NetworkPolicies (mode " << mode_name(o.mode) << "): workers reach only "
     << o.proxy_service << ":" << port << "; " << o.proxy_service << " takes\n"
     << "# connections only from workers. Needs an enforcing CNI (Calico, Cilium, ...).\n"
     << "# With no DNS for workers, give them the proxy by address:\n"
     << "#   HTTP_PROXY=http://$(EGRESS_SERVICE_HOST):" << port << " (and https_proxy, lower case too)\n"
     << "apiVersion: networking.k8s.io/v1\n"
     << "kind: NetworkPolicy\n"
     << "metadata:\n"
     << "  name: default-deny\n"
     << "  namespace: " << ns << "\n"
     << "spec:\n"
     << "  podSelector: {}\n"
     << "  policyTypes: [Ingress, Egress]\n"
     << "---\n"
     << "apiVersion: networking.k8s.io/v1\n"
     << "kind: NetworkPolicy\n"
     << "metadata:\n"
     << "  name: " << o.worker_service << "-egress-proxy-only\n"
     << "  namespace: " << ns << "\n"
     << "spec:\n"
     << "  podSelector:\n"
     << "    matchLabels: {app: " << o.worker_service << "}\n"
     << "  policyTypes: [Ingress, Egress]\n"
     << "  ingress: []\n"
     << "  egress:\n"
     << "    - to:\n"
     << "        - podSelector:\n"
     << "            matchLabels: {app: " << o.proxy_service << "}\n"
     << "      ports:\n"
     << "        - {protocol: TCP, port: " << port << "}\n"
     << "---\n"
     << "apiVersion: networking.k8s.io/v1\n"
     << "kind: NetworkPolicy\n"
     << "metadata:\n"
     << "  name: " << o.proxy_service << "-proxy\n"
     << "  namespace: " << ns << "\n"
     << "spec:\n"
     << "  podSelector:\n"
     << "    matchLabels: {app: " << o.proxy_service << "}\n"
     << "  policyTypes: [Ingress, Egress]\n"
     << "  ingress:\n"
     << "    - from:\n"
     << "        - podSelector:\n"
     << "            matchLabels: {app: " << o.worker_service << "}\n"
     << "      ports:\n"
     << "        - {protocol: TCP, port: " << port << "}\n"
     << "  egress:\n"
     << "    - to:   # cluster DNS: egress resolves names for the workers\n"
     << "        - namespaceSelector: {}\n"
     << "          podSelector:\n"
     << "            matchLabels: {k8s-app: kube-dns}\n"
     << "      ports:\n"
     << "        - {protocol: UDP, port: 53}\n"
     << "        - {protocol: TCP, port: 53}\n";
  if (o.mode == policy::Mode::Production) {
    np << "    - to:   # production: in-cluster services only (artifact store, RabbitMQ)\n"
       << "        - namespaceSelector: {}\n";
  } else {
    np << "    - to:   # the internet, but neither the cluster nor cloud metadata\n"
       << "        - ipBlock:\n"
       << "            cidr: 0.0.0.0/0\n"
       << "            except:\n";
    for (const auto& cidr : o.cluster_cidrs) np << "              - " << cidr << "\n";
    np << "              - 169.254.169.254/32\n";
  }
  return {{"runtimeclass-gvisor.yaml", rc.str()},
          {"networkpolicies.yaml", np.str()},
          {"runtimeclass-kata-fc.yaml", kata.str()},
          render_k8s_deployment(o)};
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

std::string merge_daemon_json(const std::string& existing, const RenderOptions& o) {
  json::value root = json::object();
  bool blank = existing.find_first_not_of(" \t\r\n") == std::string::npos;
  if (!blank) {
    std::error_code ec;
    json::value parsed = json::parse(existing, ec);
    if (ec) throw InvalidJson("daemon.json is not valid JSON (" + ec.message() + "); fix it or move it away, nothing was written");
    if (!parsed.is_object()) throw InvalidJson("daemon.json must hold a JSON object at the top; nothing was written");
    root = std::move(parsed);
  }
  auto& obj = root.as_object();
  if (auto* runtimes = obj.if_contains("runtimes"); runtimes && !runtimes->is_object())
    throw InvalidJson("daemon.json: \"runtimes\" is not an object; fix it, nothing was written");
  if (!obj.contains("runtimes")) obj["runtimes"] = json::object();
  json::array args;
  for (const auto& a : o.runsc_args) args.emplace_back(a);
  json::object runsc;
  runsc["path"] = "/usr/bin/runsc";
  runsc["runtimeArgs"] = std::move(args);
  obj["runtimes"].as_object()["runsc"] = std::move(runsc);
  std::ostringstream out;
  pretty(out, root, 0);
  out << "\n";
  return out.str();
}

void write_file_atomic(const std::string& path, const std::string& text, unsigned mode, Backup backup) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  if (backup == Backup::KeepOld && fs::exists(target)) {
    std::ifstream in(target, std::ios::binary);
    std::stringstream old;
    old << in.rdbuf();
    write_file_atomic(path + ".bak", old.str(), mode);
  }
  const std::string tmp = path + ".tmp." + std::to_string(getpid());
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "create " + tmp);
  auto fail = [&](const char* what) {
    const int e = errno;
    close(fd);
    unlink(tmp.c_str());
    throw std::system_error(e, std::generic_category(), std::string(what) + " " + tmp);
  };
  if (fchmod(fd, mode) != 0) fail("chmod");
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("write");
    }
    done += static_cast<std::size_t>(n);
  }
  if (fsync(fd) != 0) fail("fsync");
  close(fd);
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    unlink(tmp.c_str());
    throw std::system_error(e, std::generic_category(), "rename " + tmp + " to " + path);
  }
  // The rename is durable only once the directory is.
  const int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
}

std::vector<std::string> render_to_directory(Target target, const RenderOptions& options, const std::string& out) {
  namespace fs = std::filesystem;
  fs::create_directories(out);
  std::vector<RenderedFile> files;
  switch (target) {
    case Target::Compose: files.push_back({"docker-compose.sandbox.yml", render_compose_override(options)}); break;
    case Target::K8s: files = render_k8s(options); break;
    case Target::Seccomp: files.push_back({"seccomp-worker.json", render_seccomp(options)}); break;
    case Target::AppArmor: files.push_back({options.apparmor_name, render_apparmor(options)}); break;
    case Target::DockerDaemon: {
      const auto path = (fs::path(out) / "daemon.json").string();
      std::string existing;
      if (fs::exists(path)) {
        std::ifstream in(path, std::ios::binary);
        std::stringstream s;
        s << in.rdbuf();
        existing = s.str();
      }
      const auto merged = merge_daemon_json(existing, options);  // throws before anything is written
      write_file_atomic(path, merged, 0644, Backup::KeepOld);
      return {path};
    }
  }
  std::vector<std::string> written;
  for (const auto& f : files) {
    const auto path = (fs::path(out) / f.name).string();
    write_file_atomic(path, f.text, 0644);
    written.push_back(path);
  }
  return written;
}

}  // namespace egress::sandbox
