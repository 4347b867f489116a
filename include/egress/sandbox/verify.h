// `egress sandbox verify`: runs the sandboxing guide's "Testing Sandboxing
// Effectiveness" checks inside a real sandbox, plus the proxy path through
// egress, and prints the guide's Production Checklist with PASS, FAIL or
// SKIP (with why) per line.
#pragma once

#include <optional>
#include <ostream>
#include <string>

#include "egress/sandbox/sandbox.h"

namespace egress::sandbox {

struct VerifyOptions {
  std::string egress_binary;  // started as `egress serve` in self-contained mode
  // Both empty: self-contained (own egress, policy, upstream). Both set: use
  // the operator's egress at `proxy` and the policy's role.
  std::string policy_file, role;
  ProxyEndpoint proxy = *ProxyEndpoint::parse(kDefaultProxy);
  std::string allowed_url, denied_url;  // operator mode: URLs expected to get 200 / 403
  std::string rootfs = "/";
  Breakage breakage = Breakage::None;
};

/// Prints the checklist to `out`; returns 0 when no line failed, 1 when one
/// did. Throws SandboxError when the checks cannot run at all.
int run_verify(const VerifyOptions& options, std::ostream& out);

}  // namespace egress::sandbox
