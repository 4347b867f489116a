// The probe `sandbox verify` runs inside the sandbox (python3, as uid
// 65534). It prints one line per check: CHECK|id|PASS/FAIL|detail.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "egress/sandbox/sandbox.h"
#include "egress/secrets/secrets.h"
#include "sandbox/checklist.h"

namespace egress::sandbox {

extern const char* const kProbeScript;

/// How verify searches a worker for the secrets in `secrets_dir`: the probe
/// environment to add (KEY=VALUE; V_SECRETS is "name:length:sha256hex;" per
/// secret, so the probe recognises a value without ever being given one),
/// or, when no search can run, the
/// checklist line saying why. Throws SandboxError when the directory is
/// refused (as serve would refuse it).
struct SecretSearch {
  std::vector<std::string> probe_env;
  std::optional<Line> skipped;
};
SecretSearch secret_search(const std::string& secrets_dir, Breakage breakage);

inline constexpr const char* kSecretsLine = "Secrets not visible to workers";

}  // namespace egress::sandbox
