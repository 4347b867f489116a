// `sandbox render --target k8s`: the RuntimeClasses (gVisor, and Kata with
// Firecracker) and the NetworkPolicies that leave egress the workers' one
// way out. Pure. The egress Deployment is in render_fleet.cpp.
#include <sstream>

#include "egress/sandbox/render.h"
#include "sandbox/k8s_yaml.h"

namespace egress::sandbox {
namespace {

std::string runtime_class_gvisor() {
  return "# RuntimeClass for gVisor workers: pods set `runtimeClassName: gvisor`.\n"
         "# Nodes need gVisor's own release (containerd-shim-runsc-v1; Debian's runsc\n"
         "# package lacks it) and containerd configured with:\n"
         "#   [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runsc]\n"
         "#     runtime_type = \"io.containerd.runsc.v1\"\n"
         "apiVersion: node.k8s.io/v1\n"
         "kind: RuntimeClass\n"
         "metadata:\n"
         "  name: gvisor\n"
         "handler: runsc\n";
}

std::string runtime_class_kata() {
  return "# Alternative runtime: Kata Containers with Firecracker micro-VMs (needs KVM on\n"
         "# the nodes; untested here, the build machines have no /dev/kvm). Pods set\n"
         "# `runtimeClassName: kata-fc`; the NetworkPolicies apply unchanged.\n"
         "apiVersion: node.k8s.io/v1\n"
         "kind: RuntimeClass\n"
         "metadata:\n"
         "  name: kata-fc\n"
         "handler: kata-fc\n"
         "overhead:\n"
         "  podFixed:\n"
         "    memory: \"130Mi\"\n"
         "    cpu: \"250m\"\n"
         "scheduling:\n"
         "  nodeSelector:\n"
         "    katacontainers.io/kata-runtime: \"true\"\n";
}

// egress's own egress: cluster DNS, then in production in-cluster services
// only, otherwise the internet but neither the cluster nor cloud metadata.
void proxy_egress_rules(std::ostream& np, const RenderOptions& o) {
  np << "  egress:\n"
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
    return;
  }
  np << "    - to:   # the internet, but neither the cluster nor cloud metadata\n"
     << "        - ipBlock:\n"
     << "            cidr: 0.0.0.0/0\n"
     << "            except:\n";
  for (const auto& cidr : o.cluster_cidrs) np << "              - " << cidr << "\n";
  np << "              - 169.254.169.254/32\n";
}

std::string network_policies(const RenderOptions& o) {
  const auto port = std::to_string(o.proxy_port);
  const auto& ns = o.k8s_namespace;
  std::ostringstream np;
  np << "# NetworkPolicies (mode " << policy::to_string(o.mode) << "): workers reach only "
     << o.proxy_service << ":" << port << "; " << o.proxy_service << " takes\n"
     << "# connections only from workers. Needs an enforcing CNI (Calico, Cilium, ...).\n"
     << "# With no DNS for workers, give them the proxy by address:\n"
     << "#   HTTP_PROXY=http://$(EGRESS_SERVICE_HOST):" << port << " (and https_proxy, lower case too)\n"
     << network_policy_head("default-deny", ns, "", "Ingress, Egress")
     << "---\n"
     << network_policy_head(o.worker_service + "-egress-proxy-only", ns, o.worker_service, "Ingress, Egress")
     << "  ingress: []\n"
     << "  egress:\n"
     << app_peer_rule(Direction::To, o.proxy_service, port)
     << "---\n"
     << network_policy_head(o.proxy_service + "-proxy", ns, o.proxy_service, "Ingress, Egress")
     << "  ingress:\n"
     << app_peer_rule(Direction::From, o.worker_service, port);
  proxy_egress_rules(np, o);
  return np.str();
}

}  // namespace

std::vector<RenderedFile> render_k8s(const RenderOptions& o) {
  return {{"runtimeclass-gvisor.yaml", runtime_class_gvisor()},
          {"networkpolicies.yaml", network_policies(o)},
          {"runtimeclass-kata-fc.yaml", runtime_class_kata()},
          render_k8s_deployment(o)};
}

}  // namespace egress::sandbox
