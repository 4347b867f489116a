// The probe `sandbox verify` runs inside the sandbox (python3, as uid
// 65534). It prints one line per check: CHECK|id|PASS/FAIL|detail.
#pragma once

namespace egress::sandbox {
extern const char* const kProbeScript;
}
