// The pieces of Kubernetes YAML every rendered manifest repeats (object
// heads, NetworkPolicy heads and peer rules), written once so that the
// sandbox's policies (render_k8s.cpp) and the fleet's (render_fleet.cpp)
// cannot drift apart in shape. Pure.
#pragma once

#include <string>

namespace egress::sandbox {

/// "apiVersion: …\nkind: …\nmetadata:\n  name: …\n  namespace: …\nspec:\n".
std::string k8s_object_head(const std::string& api_version, const std::string& kind, const std::string& name,
                            const std::string& k8s_namespace);

/// A NetworkPolicy's head through `policyTypes: [types]`; its pods are
/// those labelled app=`app`, or every pod when `app` is empty.
std::string network_policy_head(const std::string& name, const std::string& k8s_namespace, const std::string& app,
                                const std::string& types);

enum class Direction { To, From };

/// One egress (`- to:`) or ingress (`- from:`) rule: the pods labelled
/// app=`app`, TCP `port`.
std::string app_peer_rule(Direction direction, const std::string& app, const std::string& port);

}  // namespace egress::sandbox
