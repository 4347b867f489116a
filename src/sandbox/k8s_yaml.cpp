// See k8s_yaml.h.
#include "sandbox/k8s_yaml.h"

namespace egress::sandbox {

std::string k8s_object_head(const std::string& api_version, const std::string& kind, const std::string& name,
                            const std::string& k8s_namespace) {
  return "apiVersion: " + api_version + "\nkind: " + kind + "\nmetadata:\n  name: " + name +
         "\n  namespace: " + k8s_namespace + "\nspec:\n";
}

std::string network_policy_head(const std::string& name, const std::string& k8s_namespace, const std::string& app,
                                const std::string& types) {
  const std::string selector = app.empty() ? "  podSelector: {}\n" : "  podSelector:\n    matchLabels: {app: " + app + "}\n";
  return k8s_object_head("networking.k8s.io/v1", "NetworkPolicy", name, k8s_namespace) + selector +
         "  policyTypes: [" + types + "]\n";
}

std::string app_peer_rule(Direction direction, const std::string& app, const std::string& port) {
  return std::string(direction == Direction::To ? "    - to:\n" : "    - from:\n") +
         "        - podSelector:\n"
         "            matchLabels: {app: " + app + "}\n"
         "      ports:\n"
         "        - {protocol: TCP, port: " + port + "}\n";
}

}  // namespace egress::sandbox
