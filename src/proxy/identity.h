// Who is asking: the worker's role, from its Proxy-Authorization token or,
// without one, its source address (policy `roles:` → `tokens` / `sources`).
// A token that matches no role is refused (407) rather than demoted to the
// global rules, so a typo never silently changes what a worker may reach.
// Pure; no I/O.
#pragma once

#include <string>
#include <string_view>

#include "egress/policy/policy.h"

namespace egress::proxy {

struct Identity {
  std::string role;     // "" when the worker has no role (global rules only)
  bool rejected = false;  // a token was presented and matches no role
  std::string error;    // why it was rejected, for the 407 body
};

/// `proxy_authorization` is the raw header value ("" when absent):
/// `Basic base64(user:token)` (the token is the password) or `Bearer token`.
Identity identify(const policy::Policy& policy, const policy::IpAddress& source,
                  std::string_view proxy_authorization);

}  // namespace egress::proxy
